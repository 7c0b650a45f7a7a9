//! The namespace lab: build the namespaces of a VPC config, start a gateway
//! in the background, run commands in a host, tear it all down.
//!
//! Safety rules (docs/LAB.md): every namespace carries a run-unique prefix
//! (`ngw<pid>-`), nothing is added to the root namespace, and everything a
//! lab made is removed by `down`, on failure, and by the next run if a lab
//! died without cleaning up.

use super::config::{self, Vpc};
use super::daemon::namespace_name;
use super::socket::{self, Reply, Request};
use crate::io::netns;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Where lab state lives (tmpfs: gone after a reboot, as the namespaces are).
pub const STATE_ROOT: &str = "/run/natgw/labs";

/// Who forwards in a lab.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum LabKind {
    /// natgw, over TUN devices.
    #[default]
    Natgw,
    /// The Linux kernel: a router namespace, veth pairs, nftables (the reference).
    Kernel,
}

/// What `lab up` recorded about a lab.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct LabState {
    pub name: String,
    #[serde(default)]
    pub kind: LabKind,
    /// Prefix of every namespace and TUN device of this lab.
    pub prefix: String,
    /// The process that built the lab (alive while it is being built).
    pub owner_pid: u32,
    /// The gateway process, once started.
    pub gateway_pid: Option<u32>,
    pub namespaces: Vec<String>,
    /// (host or interface name, namespace).
    pub hosts: Vec<(String, String)>,
    pub config: PathBuf,
    pub socket: PathBuf,
    pub log: PathBuf,
    /// The `natgw web` process serving the lab's page, if asked for.
    #[serde(default)]
    pub web_pid: Option<u32>,
}

/// Lab errors, each with what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error(
        "lab `{name}` is already up (namespaces {prefix}-*, gateway pid {pid}); run `natgw lab down{flag}` first, or pick another name with --name"
    )]
    AlreadyUp { name: String, prefix: String, pid: u32, flag: String },
    #[error("no lab named `{0}` is up; start one with `natgw lab up`")]
    NotUp(String),
    #[error("lab name `{0}` is not valid: use up to 24 letters, digits or `-`")]
    BadName(String),
    #[error("no host `{host}` in lab `{lab}`; hosts: {known}")]
    NoHost { host: String, lab: String, known: String },
    #[error("the lab must run as root (it creates network namespaces and TUN devices)")]
    NotRoot,
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error(transparent)]
    Netns(#[from] netns::NetnsError),
    #[error("the gateway did not start: {reason}\n--- gateway log ({log}) ---\n{tail}")]
    GatewayFailed { reason: String, log: String, tail: String },
    #[error("the lab's page: {0}")]
    Web(String),
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
}

pub(super) fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> LabError {
    let what = what.into();
    move |source| LabError::Io { what, source }
}

impl LabState {
    pub fn dir(name: &str) -> PathBuf {
        Path::new(STATE_ROOT).join(name)
    }

    pub fn load(name: &str) -> Option<LabState> {
        let s = std::fs::read_to_string(Self::dir(name).join("state.json")).ok()?;
        serde_json::from_str(&s).ok()
    }

    fn save(&self) -> Result<(), LabError> {
        let dir = Self::dir(&self.name);
        std::fs::create_dir_all(&dir).map_err(io_err(format!("creating {}", dir.display())))?;
        let tmp = dir.join("state.json.tmp");
        let text = serde_json::to_string_pretty(self)
            .map_err(|e| LabError::Io { what: "state".into(), source: std::io::Error::other(e) })?;
        std::fs::write(&tmp, text).map_err(io_err(format!("writing {}", tmp.display())))?;
        std::fs::rename(&tmp, dir.join("state.json")).map_err(io_err("saving lab state"))
    }

    /// True while the builder or the gateway of this lab is alive (for a
    /// kernel lab, which has no process: while its namespaces exist).
    pub fn alive(&self) -> bool {
        if netns::alive(self.owner_pid as i32) {
            return true;
        }
        match self.kind {
            LabKind::Natgw => self.gateway_pid.is_some_and(|p| netns::alive(p as i32)),
            LabKind::Kernel => self.gateway_pid.is_none() && self.namespaces.iter().all(|n| netns::exists(n)),
        }
    }

    /// The namespace of a host (or `internet`, or the internet namespace's own name).
    pub fn namespace_of(&self, host: &str) -> Result<&str, LabError> {
        self.hosts
            .iter()
            .find(|(h, ns)| h == host || ns.strip_prefix(&format!("{}-", self.prefix)) == Some(host))
            .map(|(_, ns)| ns.as_str())
            .ok_or_else(|| LabError::NoHost {
                host: host.to_string(),
                lab: self.name.clone(),
                known: self.hosts.iter().map(|(h, _)| h.as_str()).collect::<Vec<_>>().join(", "),
            })
    }
}

/// Every lab with state on this machine.
pub fn all() -> Vec<LabState> {
    let mut v: Vec<LabState> = std::fs::read_dir(STATE_ROOT)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| LabState::load(&e.file_name().to_string_lossy()))
        .collect();
    v.sort_by(|a, b| a.name.cmp(&b.name));
    v
}

fn name_ok(n: &str) -> bool {
    !n.is_empty() && n.len() <= 24 && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

/// Removes what dead labs left behind: their namespaces (also ones that never
/// made it into a state file) and their state.
pub fn cleanup_leftovers() -> Vec<String> {
    let mut removed = Vec::new();
    let labs = all();
    for l in &labs {
        if !l.alive() {
            teardown(l);
            removed.push(format!("lab {}", l.name));
        }
    }
    let live: Vec<String> = labs.iter().filter(|l| l.alive()).map(|l| format!("{}-", l.prefix)).collect();
    for ns in netns::list() {
        // Our prefix: ngw<digits>- ; the digits are the pid of the builder.
        let Some(rest) = ns.strip_prefix("ngw") else {
            continue;
        };
        let Some((digits, _)) = rest.split_once('-') else {
            continue;
        };
        let Ok(pid) = digits.parse::<i32>() else {
            continue;
        };
        if live.iter().any(|p| ns.starts_with(p)) || netns::alive(pid) {
            continue;
        }
        if netns::delete(&ns).is_ok() {
            removed.push(format!("namespace {ns}"));
        }
    }
    removed
}

/// How to bring a lab up.
#[derive(Clone, Debug)]
pub struct UpOptions {
    pub name: String,
    /// (label for errors, TOML text).
    pub config: (String, String),
    pub workers: usize,
    pub offload: Option<bool>,
    /// `--steering` for the gateway; None: the config's.
    pub steering: Option<super::config::Steering>,
    /// The natgw binary to start the gateway with.
    pub exe: PathBuf,
    /// Build the kernel reference instead of starting natgw.
    pub kernel: bool,
    /// Start natgw in route-only mode.
    pub route_only: bool,
    /// Also start `natgw web` on this loopback address.
    pub web: Option<std::net::SocketAddr>,
}

fn is_root() -> bool {
    nix::unistd::Uid::effective().is_root()
}

/// Builds the lab's namespaces and starts its gateway in the background.
pub fn up(o: &UpOptions) -> Result<(LabState, Vpc), LabError> {
    if !name_ok(&o.name) {
        return Err(LabError::BadName(o.name.clone()));
    }
    if !is_root() {
        return Err(LabError::NotRoot);
    }
    if let Some(at) = o.web {
        super::web::loopback_only(at, "the lab's page").map_err(LabError::Web)?;
        // Taken already (another lab's page?): say so before building anything.
        std::net::TcpListener::bind(at).map_err(|e| LabError::Web(format!("--web {at}: {e}")))?;
    }
    let vpc = config::parse(&o.config.0, &o.config.1)?;
    cleanup_leftovers();
    if let Some(old) = LabState::load(&o.name) {
        if old.alive() {
            let flag = if o.name == "default" { String::new() } else { format!(" --name {}", o.name) };
            return Err(LabError::AlreadyUp {
                name: o.name.clone(),
                prefix: old.prefix.clone(),
                pid: old.gateway_pid.unwrap_or(old.owner_pid),
                flag,
            });
        }
        teardown(&old);
    }
    let prefix = format!("ngw{}", std::process::id());
    let dir = LabState::dir(&o.name);
    std::fs::create_dir_all(&dir).map_err(io_err(format!("creating {}", dir.display())))?;
    // A config from a file is used in place (its relative `route_files` paths
    // stay valid); the embedded one is written out for the gateway to read.
    let cfg = match std::fs::canonicalize(&o.config.0) {
        Ok(p) if p.is_file() => p,
        _ => {
            let cfg = dir.join("config.toml");
            std::fs::write(&cfg, &o.config.1).map_err(io_err(format!("writing {}", cfg.display())))?;
            cfg
        }
    };
    let mut namespaces: Vec<String> = vpc.namespaces().iter().map(|n| namespace_name(Some(&prefix), n)).collect();
    if o.kernel {
        namespaces.push(super::kernel_lab::router_namespace(&prefix));
    }
    let mut hosts: Vec<(String, String)> =
        vpc.attachments.iter().map(|a| (a.interface.clone(), namespace_name(Some(&prefix), &a.namespace))).collect();
    if !o.kernel {
        // The services' public doors (the kernel reference has no services).
        for ns in super::lab_services::public_namespaces(&vpc) {
            let full = namespace_name(Some(&prefix), &ns);
            if !namespaces.contains(&full) {
                namespaces.push(full.clone());
                hosts.push((ns, full));
            }
        }
    }
    let mut state = LabState {
        name: o.name.clone(),
        kind: if o.kernel { LabKind::Kernel } else { LabKind::Natgw },
        prefix: prefix.clone(),
        owner_pid: std::process::id(),
        gateway_pid: None,
        namespaces,
        hosts,
        config: cfg.clone(),
        socket: dir.join("control.sock"),
        log: dir.join("gateway.log"),
        web_pid: None,
    };
    // Record first, so a crash from here on leaves state the next run can clean.
    state.save()?;
    match start(&mut state, o, &vpc) {
        Ok(()) => Ok((state, vpc)),
        Err(e) => {
            teardown(&state);
            Err(e)
        }
    }
}

fn start(state: &mut LabState, o: &UpOptions, vpc: &Vpc) -> Result<(), LabError> {
    let names = vpc.lab_names();
    // Hosts of the VPC ask its resolver (only the first address: the
    // link-local one is for clients that want it by name).
    let servers = [vpc.dns.addresses[0]];
    let domain = vpc.dns.domain();
    let host_namespaces: Vec<String> = vpc
        .attachments
        .iter()
        .filter(|a| vpc.parts.hosts.iter().any(|h| h.name == a.interface))
        .map(|a| namespace_name(Some(&state.prefix), &a.namespace))
        .collect();
    for ns in &state.namespaces {
        netns::add(ns)?;
        let resolver = host_namespaces.contains(ns).then_some((&servers[..], domain.as_str()));
        netns::write_etc(ns, &names, resolver).map_err(io_err(format!("writing /etc/netns/{ns}")))?;
    }
    super::lab_services::aws_cli_env(vpc, &LabState::dir(&state.name))
        .map_err(io_err("writing the aws CLI's files"))?;
    if o.kernel {
        let rules = super::kernel_lab::build(vpc, &state.prefix)?;
        std::fs::write(LabState::dir(&state.name).join("nftables.conf"), rules)
            .map_err(io_err("writing nftables.conf"))?;
        return Ok(());
    }
    super::lab_services::link_public_doors(vpc, &state.prefix)?;
    let log = std::fs::File::create(&state.log).map_err(io_err(format!("creating {}", state.log.display())))?;
    let log2 = log.try_clone().map_err(io_err("log file"))?;
    let mut cmd = Command::new(&o.exe);
    cmd.arg("run")
        .arg("--config")
        .arg(&state.config)
        .args(["--netns-prefix", &state.prefix])
        .arg("--socket")
        .arg(&state.socket)
        .args(["--workers", &o.workers.to_string()]);
    match o.offload {
        Some(true) => {
            cmd.arg("--offload");
        }
        Some(false) => {
            cmd.arg("--no-offload");
        }
        None => {}
    }
    if o.route_only {
        cmd.arg("--route-only");
    }
    if let Some(s) = o.steering {
        cmd.args(["--steering", s.name()]);
    }
    // Its own process group: a Ctrl-C at the terminal reaches the demo, which
    // then stops the gateway in order, instead of killing it mid-way.
    use std::os::unix::process::CommandExt;
    cmd.stdin(Stdio::null()).stdout(log).stderr(log2).process_group(0);
    let mut child = cmd.spawn().map_err(io_err(format!("starting {}", o.exe.display())))?;
    state.gateway_pid = Some(child.id());
    state.save()?;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(gateway_failed(state, format!("it exited with {status}")));
        }
        if let Ok(Reply::Status { .. }) = socket::request(&state.socket, &Request::Status) {
            super::lab_services::start(vpc, state, &o.exe)?;
            return match o.web {
                Some(at) => start_web(state, &o.exe, at),
                None => Ok(()),
            };
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            return Err(gateway_failed(state, "no answer on the control socket after 20 s".into()));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Starts `natgw web` for the lab on `at` (a loopback address of the root
/// namespace, checked by `up`: it listens and changes nothing) and waits
/// until it answers.
fn start_web(state: &mut LabState, exe: &Path, at: std::net::SocketAddr) -> Result<(), LabError> {
    let log_path = LabState::dir(&state.name).join("web.log");
    let log = std::fs::File::create(&log_path).map_err(io_err(format!("creating {}", log_path.display())))?;
    let log2 = log.try_clone().map_err(io_err("log file"))?;
    use std::os::unix::process::CommandExt;
    let mut child = Command::new(exe)
        .arg("web")
        .arg("--socket")
        .arg(&state.socket)
        .args(["--listen", &at.to_string()])
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2)
        .process_group(0)
        .spawn()
        .map_err(io_err(format!("starting {} web", exe.display())))?;
    state.web_pid = Some(child.id());
    state.save()?;
    let failed = |why: String| {
        let tail = std::fs::read_to_string(&log_path).unwrap_or_default();
        LabError::Web(format!("{why}\n--- its log ({}) ---\n{tail}", log_path.display()))
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            // Reaped: its pid may be anyone's now.
            state.web_pid = None;
            let _ = state.save();
            return Err(failed(format!("natgw web on {at} exited with {status}")));
        }
        // Listening, and it is ours: it writes its banner once bound.
        let banner = std::fs::read_to_string(&log_path).is_ok_and(|l| l.contains("natgw web: serving"));
        if banner && std::net::TcpStream::connect_timeout(&at, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(failed(format!("natgw web did not listen on {at} after 10 s")));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn gateway_failed(state: &LabState, reason: String) -> LabError {
    let text = std::fs::read_to_string(&state.log).unwrap_or_default();
    let tail: Vec<&str> = text.lines().rev().take(20).collect();
    LabError::GatewayFailed {
        reason,
        log: state.log.display().to_string(),
        tail: tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
    }
}

/// Stops the gateway, kills every process in the lab's namespaces, deletes
/// them and the state. Does its best and never fails half-way.
pub fn teardown(state: &LabState) {
    if let Some(pid) = state.web_pid {
        stop_process(pid);
    }
    if let Some(pid) = state.gateway_pid {
        let _ = socket::request(&state.socket, &Request::Shutdown);
        let deadline = Instant::now() + Duration::from_secs(5);
        while netns::alive(pid as i32) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        stop_process(pid);
    }
    for ns in &state.namespaces {
        if let Err(e) = netns::delete(ns) {
            tracing::warn!(namespace = %ns, error = %e, "could not delete namespace");
        }
    }
    // Where the gateway parks detached interfaces, if it was killed before
    // it could delete it.
    let parked = super::daemon::namespace_name(Some(&state.prefix), super::config::ENI_DETACHED);
    if netns::exists(&parked) {
        let _ = netns::delete(&parked);
    }
    let _ = std::fs::remove_dir_all(LabState::dir(&state.name));
}

/// SIGTERM, then SIGKILL, to `pid` while it lives.
fn stop_process(pid: u32) {
    for sig in [nix::sys::signal::Signal::SIGTERM, nix::sys::signal::Signal::SIGKILL] {
        if !netns::alive(pid as i32) {
            break;
        }
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig);
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Tears down lab `name`.
pub fn down(name: &str) -> Result<LabState, LabError> {
    if !is_root() {
        return Err(LabError::NotRoot);
    }
    let state = LabState::load(name).ok_or_else(|| LabError::NotUp(name.to_string()))?;
    teardown(&state);
    Ok(state)
}

/// The state of a lab that is up.
pub fn get(name: &str) -> Result<LabState, LabError> {
    match LabState::load(name) {
        Some(s) if s.alive() => Ok(s),
        _ => Err(LabError::NotUp(name.to_string())),
    }
}

/// A command that runs `argv` inside host `host` of lab `name`.
pub fn exec_command(name: &str, host: &str, argv: &[String]) -> Result<Command, LabError> {
    let state = get(name)?;
    let ns = state.namespace_of(host)?;
    let mut c = netns::command(ns, argv);
    // The aws CLI finds the lab's services.
    c.envs(super::lab_services::lab_env(&LabState::dir(name)));
    Ok(c)
}
