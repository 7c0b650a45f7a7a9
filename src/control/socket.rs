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
}

/// Any reply.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "lowercase")]
pub enum Reply {
    Status { pid: u32, uptime_secs: u64, interfaces: Vec<String> },
    Stats(Box<Stats>),
    Conntrack { nat: Vec<NatSessions> },
    Routes { tables: Vec<RouteTableView> },
    Events { nat: Vec<(String, Vec<crate::nat::gateway::NatEvent>)> },
    Ok,
    Error { message: String },
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

/// Reads one request from a connection (with a timeout, so a silent client
/// cannot hold the server).
pub fn read_request(s: &UnixStream) -> Result<Request, String> {
    s.set_read_timeout(Some(Duration::from_secs(2))).map_err(|e| e.to_string())?;
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line).map_err(|e| e.to_string())?;
    serde_json::from_str(&line).map_err(|e| format!("bad request: {e}"))
}

/// Writes a reply.
pub fn write_reply(mut s: &UnixStream, reply: &Reply) -> std::io::Result<()> {
    let mut line = serde_json::to_string(reply).map_err(std::io::Error::other)?;
    line.push('\n');
    s.write_all(line.as_bytes())
}
