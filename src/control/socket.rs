//! The control socket: one JSON request per connection, one JSON reply.
//!
//! `natgw stats`, `natgw conntrack`, `natgw routes` and `natgw lab down`
//! talk to a running gateway through it.

use crate::conntrack::SessionView;
use crate::pipeline::Totals;
use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// What a client asks.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "cmd", rename_all = "lowercase")]
pub enum Request {
    Status,
    Stats,
    Conntrack,
    Routes,
    Events,
    /// CreateRoute.
    RouteAdd {
        table: String,
        destination: String,
        target: String,
    },
    /// DeleteRoute.
    RouteDelete {
        table: String,
        destination: String,
    },
    /// DeleteNatGateway: routes to it become blackholes.
    NatGatewayDelete {
        name: String,
    },
    /// DescribeAddresses.
    EipList,
    /// AllocateAddress (the pool's lowest free address, or this one).
    EipAllocate {
        address: Option<std::net::Ipv4Addr>,
    },
    /// AssociateAddress.
    EipAssociate {
        address: std::net::Ipv4Addr,
        host: String,
        #[serde(default)]
        allow_reassociation: bool,
    },
    /// DisassociateAddress.
    EipDisassociate {
        address: std::net::Ipv4Addr,
    },
    /// ReleaseAddress.
    EipRelease {
        address: std::net::Ipv4Addr,
    },
    /// DescribeNetworkInterfaces.
    EniList,
    /// DetachNetworkInterface.
    EniDetach {
        eni: String,
    },
    /// AttachNetworkInterface.
    EniAttach {
        eni: String,
        instance: String,
    },
    /// Read the config file again and swap in what may change while running.
    Reload {
        path: String,
    },
    /// Ports per NAT gateway: pools, hosts, latest mappings.
    Ports,
    /// Connection tracking events after sequence number `after` (asking
    /// keeps the events armed for 5 s).
    ConntrackEvents {
        after: u64,
    },
    /// The recorded decisions of the next `count` real packets matching
    /// `filter`, waiting at most `seconds`.
    TraceLive {
        filter: crate::pipeline::live::Filter,
        count: u32,
        seconds: u32,
    },
    /// Flow log lines written after sequence number `after`.
    FlowLogs {
        after: u64,
    },
    /// The VPC as the console lists it (for `natgw web`).
    Topology,
    /// The live flows (the newest `limit` of each kind, 1 to 1000; TCP
    /// flows after a FIN or a RST only `with_closing`), port pools and drops
    /// (for `natgw web`).
    Flows {
        limit: u32,
        #[serde(default)]
        with_closing: bool,
    },
    /// Start capturing what `target` (a host, the internet gateway, a NAT
    /// gateway) reads and writes that `filter` matches.
    CaptureStart {
        target: String,
        filter: crate::pipeline::live::Filter,
    },
    /// The packets capture `generation` took since the last ask (asking
    /// keeps it running for 5 s).
    CaptureRead {
        generation: u64,
    },
    CaptureStop {
        generation: u64,
    },
    /// What the current VPC would do with a packet (no state is touched).
    Trace {
        query: crate::control::trace::Query,
    },
    Shutdown,
}

/// A NAT gateway's state summary.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct NatStatus {
    pub name: String,
    pub public_ips: Vec<String>,
    pub profile: String,
    pub sessions: usize,
    pub mappings: usize,
    /// (public address, protocol, ports in use including held down).
    pub ports_in_use: Vec<(String, u8, u32)>,
    pub idle_timeouts: u64,
    /// Sessions without a reply ended at a full table (`early_drop`).
    #[serde(default)]
    pub early_drops: u64,
}

/// The reply to `stats`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Stats {
    pub uptime_secs: u64,
    pub workers: usize,
    pub offload: String,
    /// How packets are spread over the workers: `flow`, `cpu`, or `auto`
    /// with what it does now (`auto (now cpu)`).
    #[serde(default)]
    pub steering: String,
    /// Packets each worker has read, in worker order.
    #[serde(default)]
    pub per_worker: Vec<u64>,
    pub totals: Totals,
    pub nat: Vec<NatStatus>,
    /// The VPC resolver's counters, if it answers.
    #[serde(default)]
    pub dns: Option<crate::dns::DnsStats>,
}

/// One NAT gateway's sessions.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NatSessions {
    pub name: String,
    pub sessions: Vec<SessionView>,
}

/// One route table for display.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct RouteTableView {
    pub name: String,
    pub main: bool,
    pub subnets: Vec<String>,
    /// (destination, target, state), most specific first.
    pub routes: Vec<(String, String, String)>,
    /// A transit gateway's route table: the gateway's name (`subnets` then
    /// holds the attachments associated with it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transit: Option<String>,
}

/// Any reply.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "lowercase")]
pub enum Reply {
    Status {
        pid: u32,
        uptime_secs: u64,
        interfaces: Vec<String>,
    },
    Stats(Box<Stats>),
    Conntrack {
        nat: Vec<NatSessions>,
        /// Flows the security groups track, with the rewrite that applies.
        #[serde(default)]
        tracked: Vec<crate::control::flows::TrackedFlow>,
    },
    Routes {
        tables: Vec<RouteTableView>,
    },
    /// The network interfaces after a request, and what it did.
    Enis {
        enis: Vec<crate::control::config::EniView>,
        done: String,
    },
    /// The Elastic IPs after a request, and what it did.
    Eips {
        eips: Vec<crate::control::config::EipView>,
        done: String,
    },
    Events {
        nat: Vec<(String, Vec<crate::nat::gateway::NatEvent>)>,
    },
    Trace {
        report: Box<crate::control::trace::Report>,
    },
    Ports {
        nat: Vec<crate::nat::gateway::PortReport>,
    },
    Topology(Box<crate::control::views::TopologyView>),
    /// A capture started: its generation names it in later requests.
    CaptureStarted {
        generation: u64,
    },
    Captured {
        packets: Vec<crate::control::capture::Captured>,
        /// Packets selected while the gateway's ring was full.
        dropped: u64,
        /// The gateway's clock now (to date the packets).
        now_ns: u64,
    },
    Flows(Box<crate::control::views::FlowsView>),
    TraceLive {
        traced: Vec<crate::pipeline::live::Traced>,
    },
    ConntrackEvents {
        events: Vec<(u64, crate::conntrack::events::Event)>,
        lost: u64,
    },
    FlowLogs {
        lines: Vec<(u64, String)>,
        status: crate::control::flow_writer::FlowLogStatus,
    },
    Ok,
    Error {
        message: String,
    },
}

/// Client errors.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach the gateway at {path}: {source} (is it running? `natgw lab up` starts one)")]
    Connect { path: String, source: std::io::Error },
    #[error("talking to the gateway at {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("the gateway answered something unreadable: {0}")]
    Decode(#[from] serde_json::Error),
}

/// Sends one request and reads the reply.
pub fn request(path: &Path, req: &Request) -> Result<Reply, ClientError> {
    let p = path.display().to_string();
    let mut s = UnixStream::connect(path).map_err(|source| ClientError::Connect { path: p.clone(), source })?;
    let io = |source| ClientError::Io { path: p.clone(), source };
    s.set_read_timeout(Some(Duration::from_secs(10))).map_err(io)?;
    let mut line = serde_json::to_string(req)?;
    line.push('\n');
    s.write_all(line.as_bytes()).map_err(io)?;
    let mut r = BufReader::new(s);
    let mut answer = String::new();
    r.read_line(&mut answer).map_err(io)?;
    Ok(serde_json::from_str(&answer)?)
}

/// How long a client may take to send its request.
pub const READ_TIMEOUT: Duration = Duration::from_secs(2);
/// The longest request line (the largest real one is a route of a few dozen bytes).
pub const MAX_REQUEST: u64 = 64 * 1024;

/// Reads one request from a connection (with a timeout, so a silent client
/// cannot hold the server, and a length limit).
pub fn read_request(s: &UnixStream) -> Result<Request, String> {
    s.set_read_timeout(Some(READ_TIMEOUT)).map_err(|e| e.to_string())?;
    let mut r = BufReader::new(std::io::Read::take(s, MAX_REQUEST + 1));
    let mut line = Vec::new();
    r.read_until(b'\n', &mut line).map_err(|e| match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
            format!("no request within {} s: send one JSON line", READ_TIMEOUT.as_secs())
        }
        _ => e.to_string(),
    })?;
    if line.len() as u64 > MAX_REQUEST {
        return Err(format!("request longer than {} KiB: send one JSON line", MAX_REQUEST / 1024));
    }
    serde_json::from_slice(&line).map_err(|e| format!("bad request: {e}"))
}

/// Only the gateway's own user (root) may use the control socket: the
/// connecting process's credentials, from the kernel.
pub fn peer_allowed(s: &UnixStream) -> Result<(), String> {
    let cred = nix::sys::socket::getsockopt(s, nix::sys::socket::sockopt::PeerCredentials)
        .map_err(|e| format!("reading the client's credentials: {e}"))?;
    let me = nix::unistd::geteuid().as_raw();
    if cred.uid() == 0 || cred.uid() == me {
        Ok(())
    } else {
        Err(format!("only root may use the gateway's control socket (you are uid {})", cred.uid()))
    }
}

/// The control socket's directory must be the gateway user's and writable by
/// nobody else, or another user could put a socket of their own in its place.
pub fn check_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(dir)?;
    let me = nix::unistd::geteuid().as_raw();
    if m.uid() != me && m.uid() != 0 {
        return Err(std::io::Error::other(format!(
            "its directory {} belongs to uid {}, not to this user: use a directory of root's (--socket)",
            dir.display(),
            m.uid()
        )));
    }
    if m.mode() & 0o022 != 0 && m.mode() & 0o1000 == 0 {
        return Err(std::io::Error::other(format!(
            "its directory {} is writable by other users (mode {:o}): `chmod go-w {}` or use another (--socket)",
            dir.display(),
            m.mode() & 0o7777,
            dir.display()
        )));
    }
    Ok(())
}

/// Writes a reply.
pub fn write_reply(mut s: &UnixStream, reply: &Reply) -> std::io::Result<()> {
    let mut line = serde_json::to_string(reply).map_err(std::io::Error::other)?;
    line.push('\n');
    s.write_all(line.as_bytes())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn sent(bytes: Vec<u8>) -> Result<Request, String> {
        let (a, mut b) = UnixStream::pair().unwrap();
        let writer = std::thread::spawn(move || {
            let _ = b.write_all(&bytes);
            b
        });
        let r = read_request(&a);
        drop(a); // a writer still blocked on the rest gets EPIPE
        drop(writer.join());
        r
    }

    #[test]
    fn a_request_is_one_json_line() {
        assert_eq!(sent(b"{\"cmd\":\"stats\"}\n".to_vec()), Ok(Request::Stats));
        let e = sent(b"stats please\n".to_vec()).unwrap_err();
        assert!(e.starts_with("bad request"), "{e}");
    }

    #[test]
    fn an_oversized_request_is_refused_without_reading_it_all() {
        let e = sent(vec![b' '; 1 << 20]).unwrap_err();
        assert!(e.contains("longer than 64 KiB"), "{e}");
    }

    #[test]
    fn a_client_that_says_nothing_is_answered_after_the_timeout() {
        let (a, _b) = UnixStream::pair().unwrap();
        let t = std::time::Instant::now();
        let e = read_request(&a).unwrap_err();
        assert!(e.contains("no request within 2 s"), "{e}");
        assert!(t.elapsed() < READ_TIMEOUT * 2);
    }

    #[test]
    fn the_gateways_own_user_may_connect() {
        let (a, _b) = UnixStream::pair().unwrap();
        assert_eq!(peer_allowed(&a), Ok(()));
    }

    #[test]
    fn a_directory_others_may_write_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("natgw-sock-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = check_dir(&dir).unwrap_err().to_string();
        assert!(e.contains("writable by other users") && e.contains("chmod go-w"), "{e}");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o1777)).unwrap();
        assert!(check_dir(&dir).is_ok(), "a sticky directory (like /tmp) keeps others from replacing the socket");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert!(check_dir(&dir).is_ok());
        let _ = std::fs::remove_dir(&dir);
    }
}
