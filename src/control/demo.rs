//! `natgw lab demo`: build the lab, send real traffic from a private host to
//! the internet through the NAT gateway, show what the other side saw and the
//! translations natgw made, then tear everything down. It checks what it
//! shows: a wrong translation makes it fail.

use super::lab::{self, LabState, UpOptions};
use super::render;
use super::socket::{self, Reply, Request};
use crate::io::netns;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Why the demo failed.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error(transparent)]
    Lab(#[from] lab::LabError),
    #[error("interrupted")]
    Interrupted,
    #[error("{0}")]
    Check(String),
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
}

pub(super) struct Demo {
    pub(super) state: LabState,
    pub(super) stop: Arc<AtomicBool>,
    pub(super) failures: Vec<String>,
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

pub(super) fn indent(s: &str) -> String {
    s.lines().map(|l| format!("    {l}\n")).collect()
}

impl Demo {
    pub(super) fn check_stop(&self) -> Result<(), DemoError> {
        if self.stop.load(Ordering::Relaxed) { Err(DemoError::Interrupted) } else { Ok(()) }
    }

    pub(super) fn ns(&self, host: &str) -> Result<String, DemoError> {
        Ok(self.state.namespace_of(host)?.to_string())
    }

    /// Runs `argv` in `host`, printing the command the user would type and its output.
    pub(super) fn show(&self, host: &str, argv: &[&str]) -> Result<(bool, String), DemoError> {
        self.check_stop()?;
        let shown: Vec<String> =
            argv.iter().map(|a| if a.contains(' ') { format!("'{a}'") } else { a.to_string() }).collect();
        let lab = if self.state.name == "default" { String::new() } else { format!(" --name {}", self.state.name) };
        println!("$ natgw lab exec{lab} {host} -- {}", shown.join(" "));
        let argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
        let out = netns::command(&self.ns(host)?, &argv)
            .envs(super::lab_services::lab_env(&super::lab::LabState::dir(&self.state.name)))
            .stdin(Stdio::null())
            .output()
            .map_err(|source| DemoError::Io { what: format!("running {}", argv[0]), source })?;
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        print!("{}", indent(&text));
        Ok((out.status.success(), text))
    }

    /// Starts a long-running process in `host`, its output in `log`.
    pub(super) fn background(&self, host: &str, argv: &[&str], log: &Path) -> Result<Child, DemoError> {
        let f =
            std::fs::File::create(log).map_err(|source| DemoError::Io { what: log.display().to_string(), source })?;
        let f2 = f.try_clone().map_err(|source| DemoError::Io { what: "log".into(), source })?;
        let argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
        netns::command(&self.ns(host)?, &argv)
            .stdin(Stdio::null())
            .stdout(f)
            .stderr(f2)
            .spawn()
            .map_err(|source| DemoError::Io { what: format!("starting {}", argv[0]), source })
    }

    /// Waits until something listens on `port` (`tcp` or `udp`) in `host`.
    pub(super) fn wait_listening(&self, host: &str, proto: &str, port: u16) -> Result<(), DemoError> {
        let flag = if proto == "tcp" { "-ltn" } else { "-lun" };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            self.check_stop()?;
            let out = netns::command(&self.ns(host)?, &["ss".into(), flag.into()]).output();
            if let Ok(o) = out
                && String::from_utf8_lossy(&o.stdout).contains(&format!(":{port} "))
            {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(DemoError::Check(format!("nothing listens on {proto} port {port} in {host} after 10 s")))
    }

    pub(super) fn expect(&mut self, ok: bool, what: &str) {
        if ok {
            println!("  ok: {what}");
        } else {
            println!("  FAILED: {what}");
            self.failures.push(what.to_string());
        }
    }

    pub(super) fn request(&self, r: &Request) -> Option<Reply> {
        socket::request(&self.state.socket, r).ok()
    }
}

fn heading(n: usize, total: usize, text: &str) {
    println!("\n[{n}/{total}] {text}");
}

/// Runs the demo on `config` (label, TOML).
pub fn run(config: (String, String), exe: &Path, offload: Option<bool>) -> Result<(), DemoError> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        let _ = signal_hook::flag::register(sig, stop.clone());
    }
    let name = format!("demo-{}", std::process::id());
    println!("natgw lab demo: building the lab in namespaces with a run-unique prefix ...");
    let opts = UpOptions {
        name: name.clone(),
        config,
        workers: 0,
        offload,
        steering: None,
        exe: exe.to_path_buf(),
        kernel: false,
        route_only: false,
        web: None,
    };
    let (state, vpc) = lab::up(&opts)?;
    let mut demo = Demo { state, stop, failures: Vec::new() };
    let result = steps(&mut demo, &vpc);
    println!("\nTearing down: stopping the gateway, removing namespaces {}-* ...", demo.state.prefix);
    lab::teardown(&demo.state);
    let left: Vec<String> =
        netns::list().into_iter().filter(|n| n.starts_with(&format!("{}-", demo.state.prefix))).collect();
    if left.is_empty() {
        println!("  done: nothing left behind.");
    } else {
        println!("  FAILED to remove: {}", left.join(", "));
        demo.failures.push("cleanup".into());
    }
    result?;
    if demo.failures.is_empty() {
        println!("\nnatgw lab demo: all checks passed.");
        Ok(())
    } else {
        Err(DemoError::Check(format!("{} check(s) failed: {}", demo.failures.len(), demo.failures.join("; "))))
    }
}

fn steps(d: &mut Demo, vpc: &super::config::Vpc) -> Result<(), DemoError> {
    let total = 8;
    let dir = LabState::dir(&d.state.name);
    let nat = vpc.parts.nat_gateways.first().ok_or_else(|| DemoError::Check("the demo needs a NAT gateway".into()))?;
    let nat_ip = *nat.public_ips.first().ok_or_else(|| DemoError::Check("the NAT gateway has no Elastic IP".into()))?;
    let web = vpc
        .attachments
        .iter()
        .find(|a| a.interface == "internet")
        .ok_or_else(|| DemoError::Check("the demo needs an [internet] section".into()))?;
    let web_ip = web
        .addresses
        .first()
        .map(|a| a.0)
        .ok_or_else(|| DemoError::Check("the internet side has no address".into()))?;
    let private =
        vpc.parts.hosts.iter().find(|h| !vpc.parts.subnets[usize::from(h.subnet)].public && h.elastic_ip.is_none());
    let private = private.ok_or_else(|| DemoError::Check("the demo needs a host in a private subnet".into()))?;
    let app = private.name.clone();
    let app_ip = private.ip;
    let (lo, hi) = {
        let r = &vpc.nats[0].1.ports.range;
        (*r.start(), *r.end())
    };

    heading(1, total, "The lab");
    for a in &vpc.attachments {
        let addrs: Vec<String> = a.addresses.iter().map(|(ip, l)| format!("{ip}/{l}")).collect();
        let extra = vpc
            .parts
            .hosts
            .iter()
            .find(|h| h.name == a.interface)
            .map(|h| {
                let s = &vpc.parts.subnets[usize::from(h.subnet)];
                let kind = if s.public { "public" } else { "private" };
                let eip = h.elastic_ip.map_or(String::new(), |e| format!(", Elastic IP {e}"));
                format!("{kind} subnet {} {}{eip}", s.name, s.cidr)
            })
            .unwrap_or_else(
                || if a.interface == "dns" { "the VPC's DNS resolver".into() } else { "the internet".into() },
            );
        println!("  {:<10} {:<36} namespace {:<20} {extra}", a.interface, addrs.join(" "), d.ns(&a.interface)?);
    }
    for (n, c) in &vpc.nats {
        let info = vpc.parts.nat_gateways.iter().find(|i| &i.name == n);
        let profile = if c.timeouts.tcp_rst_on_expired { "aws: 350 s idle timeout" } else { "rfc timeouts" };
        println!(
            "  NAT gateway {n}: private {} Elastic IP(s) {} ports {}-{}, profile {profile}",
            info.map_or(String::new(), |i| i.private_ip.to_string()),
            c.public_ips.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "),
            c.ports.range.start(),
            c.ports.range.end()
        );
    }
    println!("  Every packet between these namespaces crosses natgw: ip_forward is 0 everywhere.");

    heading(
        2,
        total,
        &format!(
            "Servers on the internet side: HTTP on {web_ip}:80 and a UDP service on {web_ip}:7 that answers with the address it saw"
        ),
    );
    let www = dir.join("www");
    std::fs::create_dir_all(&www).map_err(|source| DemoError::Io { what: www.display().to_string(), source })?;
    std::fs::write(www.join("index.html"), "hello from web\n")
        .map_err(|source| DemoError::Io { what: "index.html".into(), source })?;
    let http_log = dir.join("http.log");
    let www_s = www.display().to_string();
    let ip_s = web_ip.to_string();
    d.background(
        "internet",
        &["python3", "-u", "-m", "http.server", "80", "--bind", &ip_s, "--directory", &www_s],
        &http_log,
    )?;
    let udp_log = dir.join("udp.log");
    let listen = format!("UDP4-RECVFROM:7,bind={web_ip},fork");
    d.background(
        "internet",
        &["socat", "-T2", &listen, "SYSTEM:echo \"web saw you as $SOCAT_PEERADDR:$SOCAT_PEERPORT\""],
        &udp_log,
    )?;
    d.wait_listening("internet", "tcp", 80)?;
    d.wait_listening("internet", "udp", 7)?;
    println!("  started (their processes live in the internet namespace and go with it)");

    heading(3, total, &format!("ping from {app} ({app_ip}, private, no public address) to {web_ip}"));
    let (ok, text) = d.show(&app, &["ping", "-c", "3", "-i", "0.2", "-W", "2", &ip_s])?;
    d.expect(ok && text.contains(" 0% packet loss"), "ping crossed the NAT both ways");

    heading(4, total, &format!("HTTP from {app}, and what {web_ip} saw"));
    let tcpdump = if have("tcpdump") {
        let dev = super::daemon::tun_name(
            Some(&d.state.prefix),
            vpc.attachments.iter().position(|a| a.interface == "internet").unwrap_or(0),
        );
        let mut c = netns::command(
            &d.ns("internet")?,
            &[
                "tcpdump".into(),
                "-l".into(),
                "-n".into(),
                "-c".into(),
                "2".into(),
                "-i".into(),
                dev,
                "tcp dst port 80".into(),
            ],
        );
        let child = c.stdout(Stdio::piped()).stderr(Stdio::piped()).stdin(Stdio::null()).spawn().ok();
        // Wait for "listening on" so the capture sees the first packet.
        child.map(|mut ch| {
            if let Some(err) = ch.stderr.take() {
                let mut r = BufReader::new(err);
                let mut line = String::new();
                while r.read_line(&mut line).is_ok_and(|n| n > 0) && !line.starts_with("listening on") {
                    line.clear();
                }
            }
            ch
        })
    } else {
        None
    };
    let url = format!("http://{web_ip}/");
    let (ok, text) = d.show(&app, &["curl", "-sS", "--max-time", "5", &url])?;
    d.expect(ok && text.contains("hello from web"), "the page came back through the NAT");
    std::thread::sleep(Duration::from_millis(300));
    let log = std::fs::read_to_string(&http_log).unwrap_or_default();
    let line = log.lines().find(|l| l.contains("GET /")).unwrap_or("(no request logged)").to_string();
    println!("{web_ip}'s HTTP server logged the client as:\n    {line}");
    d.expect(line.starts_with(&format!("{nat_ip} ")), &format!("web saw {nat_ip}, never {app_ip}"));
    if let Some(mut ch) = tcpdump {
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline && matches!(ch.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = ch.kill();
        let mut cap = String::new();
        if let Some(mut o) = ch.stdout.take() {
            let _ = o.read_to_string(&mut cap);
        }
        let _ = ch.wait();
        println!("tcpdump on the internet side of natgw:\n{}", indent(cap.trim_end()));
        d.expect(!cap.contains(&app_ip.to_string()), &format!("tcpdump never saw {app_ip} on the internet side"));
    }

    heading(5, total, &format!("UDP from {app}"));
    let target = format!("UDP4:{web_ip}:7");
    let (ok, text) = d.show(&app, &["sh", "-c", &format!("echo hello | socat -T2 - {target}")])?;
    let seen = text.lines().find_map(|l| l.strip_prefix("web saw you as ")).unwrap_or("").trim().to_string();
    let port = seen.rsplit(':').next().and_then(|p| p.parse::<u16>().ok()).unwrap_or(0);
    let addr_ok = seen.starts_with(&format!("{nat_ip}:"));
    d.expect(ok && addr_ok && (lo..=hi).contains(&port), &format!("web saw {nat_ip} and a port in {lo}-{hi} ({seen})"));

    heading(6, total, &format!("traceroute from {app}: the subnet router, then the NAT gateway"));
    if have("traceroute") {
        let (_, text) = d.show(&app, &["traceroute", "-n", "-q", "1", "-w", "1", "-m", "5", &ip_s])?;
        let router = vpc.parts.subnets[usize::from(private.subnet)].router().to_string();
        d.expect(
            text.contains(&format!(" {router} ")) || text.contains(&format!("{router}  ")),
            &format!("hop 1 is the subnet router {router}"),
        );
        let nat = vpc.parts.nat_gateways.first().map_or(String::new(), |n| n.private_ip.to_string());
        d.expect(
            text.lines().any(|l| l.trim_start().starts_with('2') && l.contains(&format!(" {nat} "))),
            &format!("hop 2 is the NAT gateway {nat} (its private address answers, as on AWS)"),
        );
        d.expect(
            text.lines().any(|l| l.trim_start().starts_with('3') && l.contains(&ip_s)),
            &format!("hop 3 is {web_ip} (its ICMP reply was translated back)"),
        );
    } else {
        println!("  (skipped: traceroute is not installed; scripts/setup installs it)");
    }

    heading(7, total, "The translations natgw made");
    let lab_flag = format!("--lab {}", d.state.name);
    println!("$ natgw conntrack {lab_flag}");
    match d.request(&Request::Conntrack) {
        Some(Reply::Conntrack { nat, tracked }) => {
            print!("{}", indent(&render::conntrack(&nat, &tracked)));
            println!("In words:");
            print!("{}", indent(&render::translations(&nat)));
            let mine: Vec<_> =
                nat.iter().flat_map(|n| &n.sessions).filter(|s| s.orig_src == app_ip.to_string()).collect();
            // Ports, not ICMP identifiers: an identifier below 1024 (ping's is
            // random) keeps its class, as a port would (docs/NAT.md).
            let all_public = !mine.is_empty()
                && mine
                    .iter()
                    .all(|s| s.reply_dst == nat_ip.to_string() && (s.proto == 1 || (lo..=hi).contains(&s.reply_dport)));
            d.expect(
                all_public,
                &format!("every session of {app} maps to {nat_ip}, its TCP and UDP ports in {lo}-{hi}"),
            );
            let udp_port_ok = mine.iter().any(|s| s.proto == 17 && s.reply_dport == port);
            d.expect(udp_port_ok, "the UDP port web saw is the one in the table");
        }
        _ => d.expect(false, "natgw conntrack answered"),
    }

    heading(8, total, &format!("Nothing on the internet can open a connection to {app}"));
    let to_nat = format!("http://{nat_ip}/");
    let (ok1, _) = d.show("internet", &["curl", "-sS", "--max-time", "2", &to_nat])?;
    let to_app = format!("http://{app_ip}/");
    let (ok2, _) = d.show("internet", &["curl", "-sS", "--max-time", "2", &to_app])?;
    d.expect(!ok1 && !ok2, "both attempts failed");

    println!("\n$ natgw stats {lab_flag}");
    match d.request(&Request::Stats) {
        Some(Reply::Stats(s)) => {
            print!("{}", indent(&render::stats(&s)));
            d.expect(s.totals.drop_count("nat_no_session") > 0, "the unsolicited SYNs were counted (nat_no_session)");
        }
        _ => d.expect(false, "natgw stats answered"),
    }
    Ok(())
}
