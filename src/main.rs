//! The `natgw` command.

use clap::{Args, Parser, Subcommand};
use natgw::control::config::{self, Vpc};
use natgw::control::daemon::{self, Daemon};
use natgw::control::socket::{self, Reply, Request};
use natgw::control::{demo, lab, render};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "natgw", version, about = "A userspace NAT gateway and VPC router over TUN, with a namespace lab")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the gateway in the foreground for a VPC config whose namespaces exist.
    Run(RunArgs),
    /// Build, use and tear down a lab of namespaces.
    #[command(subcommand)]
    Lab(LabCmd),
    /// List the tracked flows and NAT translations of a running gateway (like
    /// `conntrack -L`), or with --events follow them (like `conntrack -E`).
    Conntrack {
        #[command(flatten)]
        target: Target,
        /// Print [NEW], [UPDATE] and [DESTROY] events as they happen (Ctrl-C stops).
        #[arg(long)]
        events: bool,
        /// With --events: stop after this many.
        #[arg(long)]
        count: Option<usize>,
    },
    /// Print the counters of a running gateway: traffic, NAT metrics, drops by reason.
    Stats(Target),
    /// Print the NAT's abuse-tracing log (port blocks; mappings with log_mappings).
    Events(Target),
    /// Print route tables as the AWS console does.
    Routes {
        #[command(flatten)]
        target: Target,
        /// Read the tables from this config instead of a running gateway.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Change a running gateway's route tables (swapped in without stopping traffic).
    #[command(subcommand)]
    Route(RouteCmd),
    /// Delete a NAT gateway of a running gateway: routes to it become blackholes.
    #[command(name = "nat-gateway", subcommand)]
    NatGateway(NatGatewayCmd),
    /// Elastic IPs of a running gateway: list, allocate, associate (move), disassociate, release.
    #[command(subcommand)]
    Eip(EipCmd),
    /// Network interfaces of a running gateway: list, detach and attach a secondary one.
    #[command(subcommand)]
    Eni(EniCmd),
    /// Explain what would happen to a packet and to its reply, hop by hop
    /// (e.g. `natgw trace app 198.51.100.10 tcp 80`), without touching any state.
    Trace {
        #[command(flatten)]
        target: Target,
        /// SRC DST PROTO [PORT]: a host's name or an address (outside the VPC:
        /// from the internet), a host's name or an address, tcp, udp or icmp,
        /// the destination port. With --live: a filter, e.g. `tcp 198.51.100.10 port 80`.
        words: Vec<String>,
        /// Print the decisions of the next real packets that match instead.
        #[arg(long)]
        live: bool,
        /// With --live: packets to trace (1-100).
        #[arg(long, default_value_t = 10)]
        count: u32,
        /// With --live: seconds to wait at most (1-60).
        #[arg(long, default_value_t = 10)]
        seconds: u32,
        /// Source port (default 40000) or ICMP identifier (default 1).
        #[arg(long)]
        sport: Option<u16>,
        /// Trace on this config file instead of a running gateway.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Per NAT gateway: ports in use, held down and free per Elastic IP and
    /// protocol, the ports each host holds, the latest mappings.
    Ports(Target),
    /// A running gateway's counters in Prometheus's text format: printed once,
    /// or served at http://ADDRESS/metrics with --listen (loopback only).
    Metrics {
        #[command(flatten)]
        target: Target,
        /// Serve /metrics here, e.g. 127.0.0.1:9108.
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
        /// With --listen: stop after this many requests.
        #[arg(long)]
        count: Option<u64>,
    },
    /// Serve a live page of a running gateway's VPC (topology, flows with their
    /// translation, port pools, drops; a flow's trace on a click) and its
    /// /metrics, on a loopback address.
    Web {
        #[command(flatten)]
        target: Target,
        /// Where to listen (loopback only).
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: std::net::SocketAddr,
        /// Stop after this many requests.
        #[arg(long)]
        count: Option<u64>,
    },
    /// Capture what the gateway reads and writes for a host, the internet
    /// gateway or a NAT gateway, before and after translation: as pcapng
    /// (one interface block per side) with -w, or as text lines.
    Capture {
        #[command(flatten)]
        target: Target,
        /// A host, the internet gateway (igw) or a NAT gateway (nat-1).
        what: String,
        /// A filter: tcp, udp or icmp, an address, `port N` (e.g. `udp port 53`).
        filter: Vec<String>,
        /// Write pcapng to this file (`-`: standard output, e.g. `| tshark -r -`).
        #[arg(short = 'w', long = "write")]
        write: Option<PathBuf>,
        /// Stop after this many packets.
        #[arg(long, default_value_t = 1000)]
        count: u64,
        /// Stop after this many seconds.
        #[arg(long, default_value_t = 60)]
        seconds: u64,
    },
    /// Print the VPC Flow Log records a running gateway wrote (AWS's format).
    #[command(name = "flow-logs")]
    FlowLogs {
        #[command(flatten)]
        target: Target,
        /// Keep printing records as they are written (Ctrl-C stops).
        #[arg(long)]
        follow: bool,
        /// Stop after this many records.
        #[arg(long)]
        count: Option<usize>,
    },
    /// Read a running gateway's config file again: route tables, network ACLs,
    /// security groups, hosts' groups and Elastic IPs change without a stop.
    Reload {
        #[command(flatten)]
        target: Target,
        /// The changed file (the one the gateway started from, edited).
        file: PathBuf,
    },
    /// Print the VPC file that the minimal form's flags stand for.
    Config {
        #[command(flatten)]
        minimal: Minimal,
        #[arg(long, hide = true)]
        config: Option<PathBuf>,
    },
    /// Serve one door of a lab service (the S3-like store or the DynamoDB
    /// stand-in); the lab starts one per door, inside its namespace.
    Service(ServiceArgs),
    /// Check a VPC config file and print what it describes.
    Check {
        /// The file (default: the embedded default lab).
        file: Option<PathBuf>,
    },
}

#[derive(Args)]
struct ServiceArgs {
    #[arg(long, value_enum)]
    kind: natgw::services::Kind,
    /// ADDRESS:PORT to listen on (the service's public address, or an interface endpoint's).
    #[arg(long)]
    listen: std::net::SocketAddr,
    /// The data directory every door of the service shares.
    #[arg(long)]
    data: PathBuf,
    /// `internet`, or the VPC endpoint this door is (e.g. vpce-0a1b2c3d).
    #[arg(long, default_value = "internet")]
    via: String,
    /// The endpoint's VPC id (with --via vpce-...).
    #[arg(long, default_value = "")]
    vpc: String,
    /// The endpoint's policy (JSON file); default: full access.
    #[arg(long)]
    policy: Option<PathBuf>,
    #[arg(long, default_value = "us-east-1")]
    region: String,
    #[arg(long, default_value_t = 8)]
    threads: usize,
}

/// The minimal form: one private namespace, one public namespace, one public address.
#[derive(Args, Clone)]
struct Minimal {
    /// The private host: NAMESPACE:ADDRESS/LEN (e.g. app:10.0.1.10/24).
    #[arg(long, requires_all = ["public", "public_ip"], conflicts_with = "config")]
    private: Option<String>,
    /// The public side: NAMESPACE:ADDRESS/LEN (e.g. web:198.51.100.10/24).
    #[arg(long, requires = "private")]
    public: Option<String>,
    /// The NAT gateway's public address (e.g. 203.0.113.5).
    #[arg(long, requires = "private")]
    public_ip: Option<String>,
}

impl Minimal {
    /// The VPC file the flags stand for, if they were given.
    fn config(&self) -> Result<Option<(String, String)>, String> {
        match (&self.private, &self.public, &self.public_ip) {
            (Some(a), Some(b), Some(c)) => Ok(Some(("(command line)".into(), config::minimal(a, b, c)?))),
            _ => Ok(None),
        }
    }
}

#[derive(Args)]
struct RunArgs {
    /// The VPC config file (TOML); or the minimal form's three flags.
    #[arg(long, required_unless_present = "private")]
    config: Option<PathBuf>,
    #[command(flatten)]
    minimal: Minimal,
    /// Prefix added to every namespace name in the config (`PREFIX-name`).
    #[arg(long)]
    netns_prefix: Option<String>,
    /// Control socket path.
    #[arg(long, default_value = "/run/natgw/natgw.sock")]
    socket: PathBuf,
    /// Worker threads (0: one per core).
    #[arg(long, default_value_t = 0)]
    workers: usize,
    /// Use TUN offloads (TSO, checksum offload).
    #[arg(long, conflicts_with = "no_offload")]
    offload: bool,
    /// Do not use TUN offloads.
    #[arg(long)]
    no_offload: bool,
    /// Benchmark ceiling: forward by destination only (no NAT, no ACL, no TTL).
    #[arg(long)]
    route_only: bool,
    /// Microseconds a worker keeps polling after traffic before it sleeps (overrides the config).
    #[arg(long)]
    busy_poll_us: Option<u64>,
    /// Which worker takes a packet: `flow` (the kernel's choice), `cpu` (the
    /// sender's core: lower latency, less throughput) or `auto` (`cpu` while
    /// traffic is light, `flow` while it is heavy); overrides the config.
    #[arg(long, value_enum)]
    steering: Option<config::Steering>,
}

#[derive(Subcommand)]
enum LabCmd {
    /// Create the namespaces and start the gateway in the background.
    Up {
        #[arg(long, default_value = "default")]
        name: String,
        /// A VPC config (default: the embedded default lab).
        #[arg(long)]
        config: Option<PathBuf>,
        #[command(flatten)]
        minimal: Minimal,
        #[arg(long, default_value_t = 0)]
        workers: usize,
        #[arg(long)]
        no_offload: bool,
        /// Which worker takes a packet: `flow` (the kernel's choice), `cpu` (the
        /// sender's core: lower latency, less throughput) or `auto` (`cpu` while
        /// traffic is light, `flow` while it is heavy).
        #[arg(long, value_enum)]
        steering: Option<config::Steering>,
        /// Build the same VPC from the Linux kernel instead (a router namespace,
        /// veth pairs, nftables masquerade): the reference to compare with.
        #[arg(long, conflicts_with = "route_only")]
        kernel: bool,
        /// Run natgw in route-only mode (the benchmark's TUN ceiling: no NAT, no ACL).
        #[arg(long)]
        route_only: bool,
        /// Also serve the lab's live page here (`natgw web`; loopback only),
        /// e.g. 127.0.0.1:8080; `natgw lab down` stops it.
        #[arg(long, conflicts_with = "kernel")]
        web: Option<std::net::SocketAddr>,
    },
    /// The study notes' experiments, each one command that checks itself:
    /// `natgw lab scenario list`, `natgw lab scenario run NAME`.
    #[command(subcommand)]
    Scenario(ScenarioCmd),
    /// Stop the gateway and remove the namespaces.
    Down {
        #[arg(long, default_value = "default")]
        name: String,
    },
    /// Run a command inside a host of the lab, like `ip netns exec`.
    Exec {
        host: String,
        #[arg(long, default_value = "default")]
        name: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        cmd: Vec<String>,
    },
    /// Build the lab, show traffic crossing the NAT and the translations, tear down.
    Demo {
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long)]
        no_offload: bool,
    },
    /// List the labs that are up.
    List,
}

#[derive(Subcommand)]
enum RouteCmd {
    /// Add a route: DESTINATION (a CIDR) -> TARGET (igw, a NAT gateway, a host, blackhole).
    Add {
        #[command(flatten)]
        target: Target,
        #[arg(long)]
        table: String,
        destination: String,
        via: String,
    },
    /// Delete the route to DESTINATION.
    Delete {
        #[command(flatten)]
        target: Target,
        #[arg(long)]
        table: String,
        destination: String,
    },
}

#[derive(Subcommand)]
enum ScenarioCmd {
    /// List the scenarios.
    List,
    /// Build a scenario's lab, run it, check it, tear it down.
    Run { name: String },
}

#[derive(Subcommand)]
enum EniCmd {
    /// List every interface and the instance it is attached to.
    List(Target),
    /// Detach secondary interface ENI from its instance.
    Detach {
        #[command(flatten)]
        target: Target,
        eni: String,
    },
    /// Attach detached interface ENI to INSTANCE (a host that is no secondary interface).
    Attach {
        #[command(flatten)]
        target: Target,
        eni: String,
        instance: String,
    },
}

#[derive(Subcommand)]
enum EipCmd {
    /// List every Elastic IP and what it is associated with.
    List(Target),
    /// Allocate one (from the lab's pool 203.0.113.0/24; at most 5 a region).
    Allocate {
        #[command(flatten)]
        target: Target,
        /// This address instead of the pool's lowest free one.
        #[arg(long)]
        address: Option<std::net::Ipv4Addr>,
    },
    /// Associate ADDRESS with HOST (its previous Elastic IP, if any, stays allocated).
    Associate {
        #[command(flatten)]
        target: Target,
        address: std::net::Ipv4Addr,
        host: String,
        /// Move it even if another host has it.
        #[arg(long)]
        allow_reassociation: bool,
    },
    /// Take ADDRESS off its host (it stays allocated).
    Disassociate {
        #[command(flatten)]
        target: Target,
        address: std::net::Ipv4Addr,
    },
    /// Give ADDRESS back (only when associated with nothing).
    Release {
        #[command(flatten)]
        target: Target,
        address: std::net::Ipv4Addr,
    },
}

#[derive(Subcommand)]
enum NatGatewayCmd {
    /// Delete the NAT gateway NAME.
    Delete {
        #[command(flatten)]
        target: Target,
        name: String,
    },
}

#[derive(Args)]
struct Target {
    /// The lab whose gateway to ask.
    #[arg(long, default_value = "default")]
    lab: String,
    /// Ask the gateway behind this control socket instead.
    #[arg(long)]
    socket: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

impl Target {
    fn socket(&self) -> PathBuf {
        match &self.socket {
            Some(s) => s.clone(),
            None => lab::LabState::dir(&self.lab).join("control.sock"),
        }
    }
}

fn main() -> ExitCode {
    natgw::io::default_sigpipe();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("NATGW_LOG").unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match real_main(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("natgw: {e}");
            ExitCode::FAILURE
        }
    }
}

fn read_config(path: Option<&Path>) -> Result<(String, String), String> {
    match path {
        Some(p) => std::fs::read_to_string(p)
            .map(|s| (p.display().to_string(), s))
            .map_err(|e| format!("{}: {e}", p.display())),
        None => Ok(("default-lab.toml (embedded)".into(), config::DEFAULT_LAB.to_string())),
    }
}

fn load(path: Option<&Path>) -> Result<Vpc, String> {
    let (label, src) = read_config(path)?;
    let v = config::parse(&label, &src).map_err(|e| e.to_string())?;
    for w in &v.warnings {
        eprintln!("natgw: warning: {w}");
    }
    Ok(v)
}

/// Prints what a change did and the list after it (`--json`: the list only).
fn show_change<T: serde::Serialize>(
    t: &Target,
    done: &str,
    items: &[T],
    render: fn(&[T]) -> String,
) -> Result<ExitCode, String> {
    if t.json {
        println!("{}", serde_json::to_string_pretty(items).map_err(|e| e.to_string())?);
    } else {
        if !done.is_empty() {
            println!("{done}");
        }
        print!("{}", render(items));
    }
    Ok(ExitCode::SUCCESS)
}

fn ask(t: &Target, r: &Request) -> Result<Reply, String> {
    match socket::request(&t.socket(), r).map_err(|e| e.to_string())? {
        Reply::Error { message } => Err(message),
        other => Ok(other),
    }
}

fn exe() -> Result<PathBuf, String> {
    std::env::current_exe().map_err(|e| format!("cannot find the natgw binary: {e}"))
}

fn service(a: ServiceArgs) -> Result<ExitCode, String> {
    use natgw::services::{Door, Options, policy::Policy};
    let door = match a.via.as_str() {
        "internet" => Door::Internet,
        v if v.starts_with("vpce-") => Door::Endpoint { vpce: v.to_string(), vpc: a.vpc.clone() },
        v => return Err(format!("--via {v}: write `internet` or a VPC endpoint id (vpce-...)")),
    };
    let endpoint_policy = match &a.policy {
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?;
            Some(Policy::parse(&text).map_err(|e| format!("{}: {e}", p.display()))?)
        }
        None => None,
    };
    let o = Options {
        kind: a.kind,
        listen: a.listen,
        data: a.data,
        door,
        endpoint_policy,
        region: a.region,
        threads: a.threads,
    };
    tracing::info!(kind = o.kind.name(), listen = %o.listen, door = ?o.door, "serving");
    natgw::services::serve(o).map_err(|e| format!("--listen {}: {e}", a.listen))?;
    Ok(ExitCode::SUCCESS)
}

fn real_main(cli: Cli) -> Result<ExitCode, String> {
    match cli.cmd {
        Cmd::Service(a) => service(a),
        Cmd::Run(a) => {
            let vpc = match a.minimal.config()? {
                Some((label, text)) => config::parse(&label, &text).map_err(|e| e.to_string())?,
                None => load(a.config.as_deref())?,
            };
            let offload = if a.offload {
                Some(true)
            } else if a.no_offload {
                Some(false)
            } else {
                None
            };
            let opts = daemon::Options {
                netns_prefix: a.netns_prefix,
                socket: a.socket.clone(),
                workers: a.workers,
                offload,
                route_only: a.route_only,
                busy_poll_us: a.busy_poll_us,
                steering: a.steering,
            };
            let d = Daemon::start(vpc, &opts).map_err(|e| e.to_string())?;
            for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
                signal_hook::flag::register(sig, d.stop_flag()).map_err(|e| e.to_string())?;
            }
            // SIGHUP: reload the file the gateway started from, as `natgw reload` does.
            let hup = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            signal_hook::flag::register(signal_hook::consts::SIGHUP, hup.clone()).map_err(|e| e.to_string())?;
            let file = a.config.as_deref().map(|p| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf()));
            tracing::info!(socket = %a.socket.display(), offload = ?d.offload, "natgw running");
            d.wait(&hup, file.as_deref());
            tracing::info!("stopping");
            d.shutdown();
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Lab(LabCmd::Up { name, config, minimal, workers, no_offload, steering, kernel, route_only, web }) => {
            let cfg = match minimal.config()? {
                Some(c) => c,
                None => read_config(config.as_deref())?,
            };
            let opts = lab::UpOptions {
                name: name.clone(),
                config: cfg,
                workers,
                offload: no_offload.then_some(false),
                steering,
                exe: exe()?,
                kernel,
                route_only,
                web,
            };
            let (state, vpc) = lab::up(&opts).map_err(|e| e.to_string())?;
            for w in &vpc.warnings {
                eprintln!("natgw: warning: {w}");
            }
            let flag = if name == "default" { String::new() } else { format!(" --name {name}") };
            match state.gateway_pid {
                Some(pid) => {
                    println!("lab `{name}` is up: gateway pid {pid}, namespaces {}", state.namespaces.join(", "))
                }
                None => println!(
                    "lab `{name}` is up, forwarded by the Linux kernel (nftables masquerade): namespaces {}",
                    state.namespaces.join(", ")
                ),
            }
            for (h, ns) in &state.hosts {
                println!("  {h:<10} natgw lab exec{flag} {h} -- <command>      (ip netns exec {ns} <command>)");
            }
            let lab_flag = if name == "default" { String::new() } else { format!(" --lab {name}") };
            if let Some(at) = web {
                println!(
                    "the live page: http://{at}/   (its log: {})",
                    lab::LabState::dir(&name).join("web.log").display()
                );
            }
            println!(
                "see the NAT: natgw conntrack{lab_flag}   counters: natgw stats{lab_flag}   stop: natgw lab down{flag}"
            );
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Lab(LabCmd::Down { name }) => {
            let s = lab::down(&name).map_err(|e| e.to_string())?;
            println!("lab `{name}` is down: removed {}", s.namespaces.join(", "));
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Lab(LabCmd::Exec { host, name, cmd }) => {
            let mut c = lab::exec_command(&name, &host, &cmd).map_err(|e| e.to_string())?;
            let status = c.status().map_err(|e| format!("running {}: {e}", cmd.join(" ")))?;
            Ok(ExitCode::from(status.code().unwrap_or(1).clamp(0, 255) as u8))
        }
        Cmd::Lab(LabCmd::Demo { config, no_offload }) => {
            let cfg = read_config(config.as_deref())?;
            demo::run(cfg, &exe()?, no_offload.then_some(false)).map_err(|e| format!("demo: {e}"))?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Lab(LabCmd::Scenario(ScenarioCmd::List)) => {
            print!("{}", natgw::control::scenario::list());
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Lab(LabCmd::Scenario(ScenarioCmd::Run { name })) => {
            natgw::control::scenario::run(&name, &exe()?).map_err(|e| format!("scenario {name}: {e}"))?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Lab(LabCmd::List) => {
            let labs = lab::all();
            if labs.is_empty() {
                println!("no labs are up");
            }
            for l in labs {
                let alive = if l.alive() { "up" } else { "dead (will be cleaned by the next `lab up`)" };
                println!(
                    "{:<16} {alive:<10} gateway pid {:<8} namespaces {}",
                    l.name,
                    l.gateway_pid.unwrap_or(0),
                    l.namespaces.join(" ")
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Conntrack { target, events: true, count } => {
            let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
                signal_hook::flag::register(sig, stop.clone()).map_err(|e| e.to_string())?;
            }
            // The first ask arms the events; only what happens after it is shown.
            let (mut after, mut shown, mut first) = (0u64, 0usize, true);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let Reply::ConntrackEvents { events, .. } = ask(&target, &Request::ConntrackEvents { after })? else {
                    return Err("unexpected answer".into());
                };
                for (seq, e) in events {
                    after = seq;
                    if first {
                        continue;
                    }
                    if target.json {
                        println!("{}", serde_json::to_string(&e).map_err(|e| e.to_string())?);
                    } else {
                        println!("{}", render::event(&e));
                    }
                    shown += 1;
                    if count.is_some_and(|c| shown >= c) {
                        return Ok(ExitCode::SUCCESS);
                    }
                }
                first = false;
                std::thread::sleep(std::time::Duration::from_millis(200));
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Conntrack { target: t, .. } => match ask(&t, &Request::Conntrack)? {
            Reply::Conntrack { nat, tracked } => {
                if t.json {
                    let v = serde_json::json!({ "nat": nat, "tracked": tracked });
                    println!("{}", serde_json::to_string_pretty(&v).map_err(|e| e.to_string())?);
                } else {
                    print!("{}", render::conntrack(&nat, &tracked));
                }
                Ok(ExitCode::SUCCESS)
            }
            other => Err(format!("unexpected answer: {other:?}")),
        },
        Cmd::Metrics { target, listen, count } => {
            let fetch = || match ask(&target, &Request::Stats)? {
                Reply::Stats(s) => Ok(*s),
                other => Err(format!("unexpected reply: {other:?}")),
            };
            match listen {
                Some(at) => natgw::control::metrics::serve(at, count, fetch)?,
                None => print!("{}", natgw::control::metrics::render(&fetch()?)),
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Capture { target, what, filter, write, count, seconds } => {
            let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
                signal_hook::flag::register(sig, stop.clone()).map_err(|e| e.to_string())?;
            }
            let o = natgw::control::capture::Options { target: what, filter, write, count, seconds };
            let sum = natgw::control::capture::run(&target.socket(), &o, &stop)?;
            eprintln!(
                "natgw capture: {} packets, each as read and as written; {} dropped because the reader was slow",
                sum.packets, sum.dropped
            );
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Web { target, listen, count } => {
            natgw::control::web::serve(listen, &target.socket(), count)?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Stats(t) => match ask(&t, &Request::Stats)? {
            Reply::Stats(s) => {
                if t.json {
                    println!("{}", serde_json::to_string_pretty(&s).map_err(|e| e.to_string())?);
                } else {
                    print!("{}", render::stats(&s));
                }
                Ok(ExitCode::SUCCESS)
            }
            other => Err(format!("unexpected answer: {other:?}")),
        },
        Cmd::Events(t) => match ask(&t, &Request::Events)? {
            Reply::Events { nat } => {
                if t.json {
                    println!("{}", serde_json::to_string_pretty(&nat).map_err(|e| e.to_string())?);
                } else {
                    print!("{}", render::events(&nat));
                }
                Ok(ExitCode::SUCCESS)
            }
            other => Err(format!("unexpected answer: {other:?}")),
        },
        Cmd::Routes { target, config } => {
            let tables = match config {
                Some(p) => daemon::route_views(&load(Some(&p))?),
                None => match ask(&target, &Request::Routes)? {
                    Reply::Routes { tables } => tables,
                    other => return Err(format!("unexpected answer: {other:?}")),
                },
            };
            print!("{}", render::routes(&tables));
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Route(RouteCmd::Add { target, table, destination, via }) => {
            ask(
                &target,
                &Request::RouteAdd { table: table.clone(), destination: destination.clone(), target: via.clone() },
            )?;
            println!("route table {table}: {destination} -> {via} added");
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Route(RouteCmd::Delete { target, table, destination }) => {
            ask(&target, &Request::RouteDelete { table: table.clone(), destination: destination.clone() })?;
            println!("route table {table}: route to {destination} deleted");
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Eni(cmd) => {
            let (target, request) = match cmd {
                EniCmd::List(t) => (t, Request::EniList),
                EniCmd::Detach { target, eni } => (target, Request::EniDetach { eni }),
                EniCmd::Attach { target, eni, instance } => (target, Request::EniAttach { eni, instance }),
            };
            let Reply::Enis { enis, done } = ask(&target, &request)? else {
                return Err("unexpected answer".into());
            };
            show_change(&target, &done, &enis, render::enis)
        }
        Cmd::Eip(cmd) => {
            let (target, request) = match cmd {
                EipCmd::List(t) => (t, Request::EipList),
                EipCmd::Allocate { target, address } => (target, Request::EipAllocate { address }),
                EipCmd::Associate { target, address, host, allow_reassociation } => {
                    (target, Request::EipAssociate { address, host, allow_reassociation })
                }
                EipCmd::Disassociate { target, address } => (target, Request::EipDisassociate { address }),
                EipCmd::Release { target, address } => (target, Request::EipRelease { address }),
            };
            let Reply::Eips { eips, done } = ask(&target, &request)? else {
                return Err("unexpected answer".into());
            };
            show_change(&target, &done, &eips, render::eips)
        }
        Cmd::NatGateway(NatGatewayCmd::Delete { target, name }) => {
            ask(&target, &Request::NatGatewayDelete { name: name.clone() })?;
            println!("NAT gateway {name} deleted; routes to it are blackholes now (natgw routes)");
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Trace { target, words, live: true, count, seconds, .. } => {
            let filter = natgw::pipeline::live::Filter::parse(&words)?;
            let Reply::TraceLive { traced } = ask(&target, &Request::TraceLive { filter, count, seconds })? else {
                return Err("unexpected answer".into());
            };
            if target.json {
                println!("{}", serde_json::to_string_pretty(&traced).map_err(|e| e.to_string())?);
            } else {
                for t in &traced {
                    println!("{} (in on {})", t.packet, t.ingress);
                    for (i, h) in t.hops.iter().enumerate() {
                        println!("  {:>2}. {:<26} {}", i + 1, h.step, h.detail);
                    }
                }
                println!("natgw: {} packet(s) traced", traced.len());
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Trace { target, words, sport, config, .. } => {
            let (src, dst, proto, port) = match words.as_slice() {
                [s, d, p] => (s.clone(), d.clone(), p.clone(), None),
                [s, d, p, port] => {
                    let port = port.parse().map_err(|_| format!("`{port}` is not a port"))?;
                    (s.clone(), d.clone(), p.clone(), Some(port))
                }
                _ => return Err("trace SRC DST PROTO [PORT], e.g. `natgw trace app 198.51.100.10 tcp 80`".into()),
            };
            let query = natgw::control::trace::Query { src, dst, proto, port, sport };
            let report = match config {
                Some(p) => natgw::control::trace::trace(&load(Some(&p))?, &query)?,
                None => match ask(&target, &Request::Trace { query })? {
                    Reply::Trace { report } => *report,
                    other => return Err(format!("unexpected answer: {other:?}")),
                },
            };
            if target.json {
                println!("{}", serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?);
            } else {
                print!("{}", natgw::control::trace::render(&report));
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Ports(t) => match ask(&t, &Request::Ports)? {
            Reply::Ports { nat } => {
                if t.json {
                    println!("{}", serde_json::to_string_pretty(&nat).map_err(|e| e.to_string())?);
                } else {
                    print!("{}", render::ports(&nat));
                }
                Ok(ExitCode::SUCCESS)
            }
            other => Err(format!("unexpected answer: {other:?}")),
        },
        Cmd::FlowLogs { target, follow, count } => {
            let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
                signal_hook::flag::register(sig, stop.clone()).map_err(|e| e.to_string())?;
            }
            let (mut after, mut shown) = (0u64, 0usize);
            loop {
                let Reply::FlowLogs { lines, status } = ask(&target, &Request::FlowLogs { after })? else {
                    return Err("unexpected answer".into());
                };
                if after == 0 && !target.json {
                    eprintln!(
                        "natgw: flow logs to {} every {} s ({} records written, {} write errors, {} lost, {} skipped{})",
                        status.path,
                        status.interval,
                        status.records_written,
                        status.write_errors,
                        status.records_lost,
                        status.records_skipped,
                        if status.last_error.is_empty() {
                            String::new()
                        } else {
                            format!("; last error: {}", status.last_error)
                        }
                    );
                }
                for (seq, line) in lines {
                    after = seq;
                    println!("{line}");
                    shown += 1;
                    if count.is_some_and(|c| shown >= c) {
                        return Ok(ExitCode::SUCCESS);
                    }
                }
                if !follow || stop.load(std::sync::atomic::Ordering::Relaxed) {
                    return Ok(ExitCode::SUCCESS);
                }
                std::thread::sleep(std::time::Duration::from_millis(300));
            }
        }
        Cmd::Reload { target, file } => {
            // Checked here first, so that a mistake is named before anything is sent.
            let v = load(Some(&file))?;
            let path = std::fs::canonicalize(&file).map_err(|e| format!("{}: {e}", file.display()))?;
            ask(&target, &Request::Reload { path: path.display().to_string() })?;
            let groups = v.parts.security_groups.as_ref().map_or(0, Vec::len);
            println!(
                "reloaded {}: {} route tables, {} network ACLs, {groups} security groups swapped in; tracked flows carry on",
                file.display(),
                v.parts.route_tables.len(),
                v.parts.acls.len() - 1
            );
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Config { minimal, .. } => match minimal.config()? {
            Some((_, text)) => {
                print!("{text}");
                Ok(ExitCode::SUCCESS)
            }
            None => Err("give --private NS:ADDR/LEN --public NS:ADDR/LEN --public-ip ADDR".into()),
        },
        Cmd::Check { file } => {
            let t = std::time::Instant::now();
            let v = load(file.as_deref())?;
            let took = t.elapsed();
            println!(
                "{}: {} {}{}, {} subnets, {} hosts, {} NAT gateways, {} route tables, {} network ACLs: OK",
                file.as_ref().map_or("default lab".to_string(), |p| p.display().to_string()),
                if v.parts.vpcs.len() > 1 { "VPCs" } else { "VPC" },
                v.parts.vpcs.iter().map(|x| format!("{} ({})", x.name, x.cidr)).collect::<Vec<_>>().join(", "),
                match (v.parts.peerings.len(), v.parts.transit_gateways.len()) {
                    (0, 0) => String::new(),
                    (p, 0) => format!(", {p} peerings"),
                    (0, t) => format!(", {t} transit gateways"),
                    (p, t) => format!(", {p} peerings, {t} transit gateways"),
                },
                v.parts.subnets.len(),
                v.parts.hosts.len(),
                v.nats.len(),
                v.parts.route_tables.len(),
                v.parts.acls.len() - 1,
            );
            let big: Vec<String> = v
                .parts
                .route_tables
                .iter()
                .filter(|t| t.len() > 20)
                .map(|t| format!("{}: {} routes, LPM {:.1} MiB", t.name, t.len(), t.lpm_bytes() as f64 / 1048576.0))
                .collect();
            if big.is_empty() {
                print!("{}", render::routes(&daemon::route_views(&v)));
            } else {
                println!("loaded and compiled in {:.0} ms; {}", took.as_secs_f64() * 1e3, big.join("; "));
            }
            Ok(if v.warnings.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(2) })
        }
    }
}
