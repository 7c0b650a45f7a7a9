//! Network namespaces and the links in them, through iproute2 (`ip`), so
//! every step is a command a reader can run by hand.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A failed namespace operation.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    /// `ip` (or another tool) could not be started.
    #[error("cannot run `{cmd}`: {source} (is iproute2 installed? run as root)")]
    Spawn { cmd: String, source: std::io::Error },
    /// The command ran and failed.
    #[error("`{cmd}` failed: {stderr}")]
    Failed { cmd: String, stderr: String },
}

/// Runs `ip ARGS...`; its output, or what it said on failure.
pub fn ip(args: &[&str]) -> Result<Output, NetnsError> {
    let cmd = format!("ip {}", args.join(" "));
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|source| NetnsError::Spawn { cmd: cmd.clone(), source })?;
    if !out.status.success() {
        return Err(NetnsError::Failed { cmd, stderr: String::from_utf8_lossy(&out.stderr).trim().to_string() });
    }
    Ok(out)
}

/// The file that stands for namespace `name`.
pub fn path(name: &str) -> PathBuf {
    PathBuf::from("/run/netns").join(name)
}

pub fn exists(name: &str) -> bool {
    path(name).exists()
}

/// Every named namespace.
pub fn list() -> Vec<String> {
    match ip(&["netns", "list"]) {
        Ok(o) => String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .map(str::to_string)
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// Creates namespace `name` with its loopback up and IPv6 off (the lab is IPv4).
pub fn add(name: &str) -> Result<(), NetnsError> {
    ip(&["netns", "add", name])?;
    ip(&["-n", name, "link", "set", "lo", "up"])?;
    let _ = sysctl(name, "net.ipv6.conf.all.disable_ipv6", "1");
    let _ = sysctl(name, "net.ipv6.conf.default.disable_ipv6", "1");
    Ok(())
}

/// Sets a sysctl inside a namespace.
pub fn sysctl(ns: &str, key: &str, value: &str) -> Result<(), NetnsError> {
    ip(&["netns", "exec", ns, "sysctl", "-q", "-w", &format!("{key}={value}")]).map(|_| ())
}

/// Gives namespace `name` its own /etc/hosts and /etc/resolv.conf (which
/// `ip netns exec` mounts over the real ones): the lab's names resolve, and
/// DNS goes to `resolver` (nameservers and a search domain), the VPC's own
/// resolver; without one, nothing inside tries to reach a DNS server.
pub fn write_etc(
    name: &str,
    hosts: &[(Ipv4Addr, String)],
    resolver: Option<(&[Ipv4Addr], &str)>,
) -> std::io::Result<()> {
    let dir = PathBuf::from("/etc/netns").join(name);
    std::fs::create_dir_all(&dir)?;
    let mut h = String::from("# written by natgw for this lab namespace\n127.0.0.1\tlocalhost\n");
    for (ip, n) in hosts {
        h.push_str(&format!("{ip}\t{n}\n"));
    }
    std::fs::write(dir.join("hosts"), h)?;
    let conf = match resolver {
        Some((servers, search)) => {
            let mut c = String::from("# written by natgw: the VPC's resolver (AmazonProvidedDNS)\n");
            for s in servers {
                c.push_str(&format!("nameserver {s}\n"));
            }
            c.push_str(&format!("search {search}\noptions timeout:1 attempts:2\n"));
            c
        }
        // No resolver: lookups of unknown names fail at once.
        None => "# written by natgw: no DNS here\nnameserver 127.0.0.1\noptions timeout:1 attempts:1\n".to_string(),
    };
    std::fs::write(dir.join("resolv.conf"), conf)
}

/// Processes living in namespace `name`.
pub fn pids(name: &str) -> Vec<i32> {
    match ip(&["netns", "pids", name]) {
        Ok(o) => String::from_utf8_lossy(&o.stdout).split_whitespace().filter_map(|p| p.parse().ok()).collect(),
        Err(_) => Vec::new(),
    }
}

/// Kills every process in the namespace, then deletes it. Killing first
/// matters: a process keeps its namespace alive after the name is gone.
pub fn delete(name: &str) -> Result<(), NetnsError> {
    if !exists(name) {
        return Ok(());
    }
    let me = std::process::id() as i32;
    for sig in [nix::sys::signal::Signal::SIGTERM, nix::sys::signal::Signal::SIGKILL] {
        let victims: Vec<i32> = pids(name).into_iter().filter(|&p| p != me).collect();
        if victims.is_empty() {
            break;
        }
        for p in &victims {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(*p), sig);
        }
        let deadline = Instant::now() + Duration::from_millis(500);
        while Instant::now() < deadline && victims.iter().any(|&p| alive(p)) {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let _ = std::fs::remove_dir_all(PathBuf::from("/etc/netns").join(name));
    // The parent too, if this left it empty (remove_dir refuses otherwise).
    let _ = std::fs::remove_dir("/etc/netns");
    ip(&["netns", "del", name]).map(|_| ())
}

/// True if process `pid` exists.
pub fn alive(pid: i32) -> bool {
    if pid <= 0 {
        return false;
    }
    // A zombie is not alive for our purposes.
    if let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        && let Some(state) = s.rsplit(')').next().and_then(|r| r.split_whitespace().next())
    {
        return state != "Z";
    }
    false
}

/// Brings up a TUN device inside a namespace with its addresses and a
/// default route through `gateway`.
pub fn configure_link(
    ns: &str,
    dev: &str,
    mtu: u16,
    addrs: &[(Ipv4Addr, u8)],
    gateway: Ipv4Addr,
    secondary: Option<u32>,
) -> Result<(), NetnsError> {
    let _ = sysctl(ns, &format!("net.ipv6.conf.{dev}.disable_ipv6"), "1");
    ip(&["-n", ns, "link", "set", "dev", dev, "mtu", &mtu.to_string(), "up"])?;
    for (a, l) in addrs {
        ip(&["-n", ns, "addr", "add", &format!("{a}/{l}"), "dev", dev])?;
    }
    // The gateway may be outside the device's own prefix: say it is on-link.
    let gw = gateway.to_string();
    match secondary {
        None => {
            ip(&["-n", ns, "route", "replace", "default", "via", &gw, "dev", dev, "onlink"])?;
        }
        // A secondary interface leaves the namespace's default route to the
        // primary one; what is sent from its own address goes out through it
        // (table `t`), as EC2's ec2-net-utils set it up.
        Some(table) => {
            let t = table.to_string();
            ip(&["-n", ns, "route", "replace", "default", "via", &gw, "dev", dev, "onlink", "table", &t])?;
            // No rule left from an earlier stay in this namespace.
            let _ = drop_rules(ns, addrs, table);
            for (a, _) in addrs {
                ip(&["-n", ns, "rule", "add", "from", &a.to_string(), "table", &t])?;
            }
        }
    }
    Ok(())
}

/// Moves device `dev` from namespace `from` to `to` (its addresses and
/// routes are lost on the way; `configure_link` gives them again).
pub fn move_link(from: &str, dev: &str, to: &str) -> Result<(), NetnsError> {
    ip(&["-n", from, "link", "set", "dev", dev, "netns", to]).map(|_| ())
}

/// Removes the routing rules namespace `ns` holds for `addrs` in `table`
/// (a secondary interface's, after it moved away).
pub fn drop_rules(ns: &str, addrs: &[(Ipv4Addr, u8)], table: u32) -> Result<(), NetnsError> {
    let t = table.to_string();
    for (a, _) in addrs {
        ip(&["-n", ns, "rule", "del", "from", &a.to_string(), "table", &t])?;
    }
    Ok(())
}

/// Sets the transmit queue length of a device in a namespace.
pub fn set_txqueuelen(ns: &str, dev: &str, len: u32) -> Result<(), NetnsError> {
    ip(&["-n", ns, "link", "set", "dev", dev, "txqueuelen", &len.to_string()]).map(|_| ())
}

/// A command that runs `argv` inside namespace `ns`.
pub fn command(ns: &str, argv: &[String]) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns]).args(argv);
    c
}

/// Runs `f` on a fresh thread that has entered namespace file `netns`, and
/// returns what it made (sockets keep the namespace they were made in). Every
/// other thread's namespace is untouched.
pub fn run_in<T: Send + 'static>(
    netns: &std::path::Path,
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    use std::os::fd::AsFd;
    let ns =
        std::fs::File::open(netns).map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", netns.display())))?;
    std::thread::Builder::new()
        .name("netns-enter".into())
        .spawn(move || -> std::io::Result<T> {
            nix::sched::setns(ns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)?;
            f()
        })?
        .join()
        .map_err(|_| std::io::Error::other("namespace thread panicked"))?
}
