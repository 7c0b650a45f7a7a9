//! The harness of the namespace tests: a lab per test, built and torn down
//! through the `natgw` binary, one lab at a time on the machine.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::Read;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const NATGW: &str = env!("CARGO_BIN_EXE_natgw");

/// Fails the test with a clear message unless we can do real namespace work.
pub fn require_root() -> bool {
    if std::env::var("NATGW_SKIP_NETNS").is_ok_and(|v| v == "1") {
        eprintln!("NATGW_SKIP_NETNS=1: skipping a namespace test");
        return false;
    }
    assert!(
        nix_is_root(),
        "namespace tests need root (run `sudo scripts/test`), or set NATGW_SKIP_NETNS=1 to skip them explicitly"
    );
    for tool in [
        "ip",
        "ping",
        "curl",
        "iperf3",
        "traceroute",
        "tcpdump",
        "socat",
        "wrk",
        "nginx",
        "hping3",
        "python3",
        "ss",
        "taskset",
        "nft",
        "turnserver",
        "turnutils_natdiscovery",
        "/usr/sbin/sshd",
        "ssh-keygen",
        "nc",
        "dig",
        "nslookup",
        "dnsperf",
        "/usr/bin/aws",
    ] {
        assert!(
            Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .stdout(Stdio::null())
                .status()
                .unwrap()
                .success(),
            "`{tool}` is missing: run scripts/setup"
        );
    }
    true
}

fn nix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(2) == Some("0")))
        .unwrap_or(false)
}

/// A lab that goes down when dropped (also when the test fails).
pub struct TestLab {
    pub name: String,
    _lock: std::fs::File,
}

pub fn natgw(args: &[&str]) -> Output {
    Command::new(NATGW).args(args).stdin(Stdio::null()).output().expect("run natgw")
}

pub fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// One lab test at a time on the machine, whatever runs the tests (threads of
/// `cargo test` or processes of `cargo nextest`): an exclusive file lock,
/// released when the file closes, also when the test panics.
pub fn machine_lock() -> std::fs::File {
    std::fs::create_dir_all("/run/natgw").unwrap();
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open("/run/natgw/netns-tests.lock")
        .unwrap();
    lock.lock().expect("lock");
    lock
}

impl TestLab {
    /// `natgw lab up --name t-NAME [extra...]`.
    pub fn up(name: &str, extra: &[&str]) -> TestLab {
        let lock = machine_lock();
        let name = format!("t-{name}");
        let _ = natgw(&["lab", "down", "--name", &name]);
        let mut args = vec!["lab", "up", "--name", &name];
        args.extend_from_slice(extra);
        let o = natgw(&args);
        assert!(o.status.success(), "lab up failed:\n{}", text(&o));
        TestLab { name, _lock: lock }
    }

    /// Runs a command in a host; returns (success, stdout+stderr).
    pub fn exec(&self, host: &str, cmd: &[&str]) -> (bool, String) {
        let mut args = vec!["lab", "exec", host, "--name", &self.name, "--"];
        args.extend_from_slice(cmd);
        let o = natgw(&args);
        (o.status.success(), text(&o))
    }

    /// Like `exec`, through a shell.
    pub fn sh(&self, host: &str, script: &str) -> (bool, String) {
        self.exec(host, &["sh", "-c", script])
    }

    /// Starts a background process in a host.
    pub fn spawn(&self, host: &str, cmd: &[&str]) -> Child {
        let mut args = vec!["lab", "exec", host, "--name", &self.name, "--"];
        args.extend_from_slice(cmd);
        use std::os::unix::process::CommandExt;
        // Its own process group, so `finish` can stop it and anything it forked.
        Command::new(NATGW)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .expect("spawn")
    }

    /// Waits until `host` listens on `port` (`-ltn` or `-lun`).
    pub fn wait_listen(&self, host: &str, ss_flag: &str, port: u16) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let (_, out) = self.exec(host, &["ss", ss_flag]);
            if out.contains(&format!(":{port} ")) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("nothing listens on {port} in {host}");
    }

    pub fn conntrack(&self) -> String {
        text(&natgw(&["conntrack", "--lab", &self.name]))
    }

    pub fn stats_json(&self) -> serde_json::Value {
        let o = natgw(&["stats", "--lab", &self.name, "--json"]);
        assert!(o.status.success(), "{}", text(&o));
        serde_json::from_slice(&o.stdout).expect("stats json")
    }

    /// What `natgw lab up` recorded about this lab (prefix, gateway pid, ...).
    pub fn state(&self) -> serde_json::Value {
        let s = std::fs::read_to_string(format!("/run/natgw/labs/{}/state.json", self.name)).unwrap();
        serde_json::from_str(&s).unwrap()
    }

    /// The namespace prefix of this lab.
    pub fn prefix(&self) -> String {
        self.state()["prefix"].as_str().unwrap().to_string()
    }

    /// The gateway's process id.
    pub fn gateway_pid(&self) -> i32 {
        self.state()["gateway_pid"].as_i64().unwrap() as i32
    }

    /// The TUN device of an interface, inside its namespace.
    pub fn device(&self, host: &str) -> String {
        let (_, out) = self.exec(host, &["ip", "-o", "link"]);
        let p = self.prefix();
        out.split_whitespace().find(|w| w.starts_with(&p)).map(|w| w.trim_end_matches(':').to_string()).expect("device")
    }
}

impl Drop for TestLab {
    fn drop(&mut self) {
        let o = natgw(&["lab", "down", "--name", &self.name]);
        if !o.status.success() {
            eprintln!("lab down: {}", text(&o));
        }
        // The files this test wrote: its config (`lab_config`) and captures.
        let short = self.name.trim_start_matches("t-");
        for ext in ["toml", "pcap", "conf", "pid", "log"] {
            let _ = std::fs::remove_file(format!("/run/natgw/test-{short}.{ext}"));
            let _ = std::fs::remove_file(format!("/run/natgw/test-{}.{ext}", self.name));
        }
    }
}

/// The default lab with text replacements, written to a file for `--config`.
pub fn lab_config(name: &str, edits: &[(&str, &str)]) -> String {
    config_from(name, "default-lab.toml", edits)
}

/// `examples/FILE` with text replacements, written to a file for `--config`
/// (removed with the lab).
pub fn config_from(name: &str, file: &str, edits: &[(&str, &str)]) -> String {
    let mut text = std::fs::read_to_string(format!("{}/examples/{file}", env!("CARGO_MANIFEST_DIR"))).unwrap();
    for (a, b) in edits {
        assert!(text.contains(a), "`{a}` not in {file}");
        text = text.replacen(a, b, 1);
    }
    std::fs::create_dir_all("/run/natgw").unwrap();
    let path = format!("/run/natgw/test-{name}.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Starts a STUN server with RFC 5780 support on both of web's addresses
/// and runs the discovery client in `host`; returns its verdict lines.
pub fn rfc5780(lab: &TestLab, host: &str, flags: &[&str]) -> String {
    let server = lab.spawn(
        "web",
        &[
            "turnserver",
            "-L",
            "198.51.100.10",
            "-L",
            "198.51.100.11",
            "-z",
            "--no-tls",
            "--no-dtls",
            "--no-cli",
            "-n",
            "--log-file",
            "stdout",
        ],
    );
    lab.wait_listen("web", "-lun", 3478);
    let mut args = vec!["turnutils_natdiscovery"];
    args.extend_from_slice(flags);
    args.push("198.51.100.10");
    let (_, out) = lab.exec(host, &args);
    finish(server);
    out.lines()
        .filter(|l| l.starts_with("NAT ") || l.contains("hairpinning") || l.starts_with("No ALG"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Reads what a child wrote so far after killing it.
pub fn finish(mut c: Child) -> String {
    // The child leads its own process group (see `spawn`): signal the group
    // with the syscall, never by shelling out to kill(1) with a negative pid.
    let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(c.id() as i32), nix::sys::signal::Signal::SIGKILL);
    let _ = c.kill();
    let mut s = String::new();
    if let Some(mut o) = c.stdout.take() {
        let _ = o.read_to_string(&mut s);
    }
    if let Some(mut e) = c.stderr.take() {
        let _ = e.read_to_string(&mut s);
    }
    let _ = c.wait();
    s
}

/// Sends `sig` to process `pid`.
pub fn signal(pid: i32, sig: nix::sys::signal::Signal) {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig);
}

/// Namespaces whose name starts with `prefix-`.
pub fn namespaces_with(prefix: &str) -> Vec<String> {
    let o = Command::new("ip").args(["netns", "list"]).output().unwrap();
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(&format!("{prefix}-")))
        .map(str::to_string)
        .collect()
}
