//! The lab's AWS services: an S3-like object store and a DynamoDB stand-in,
//! each a real HTTP server that the real `aws` CLI talks to.
//!
//! A service has *doors*: its public address on the internet side, and one
//! per VPC endpoint. Each door is a process (`natgw service`) in a namespace
//! of its own, all doors of a service sharing one data directory. A door
//! knows what it is from its command line, so every request it serves carries
//! what AWS would know of it: through an endpoint `aws:SourceVpce`,
//! `aws:SourceVpc` and `aws:VpcSourceIp` (the host's private address, which
//! arrives untranslated), from the internet `aws:SourceIp` (the NAT gateway's
//! or Elastic IP's public address). See docs/ENDPOINTS.md.

pub mod dynamodb;
pub mod http;
pub mod policy;
pub mod s3;

use policy::{Decision, Policy, RequestContext};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

/// Which service a door serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Deserialize, serde::Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    S3,
    Dynamodb,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::S3 => "s3",
            Kind::Dynamodb => "dynamodb",
        }
    }

    /// The service's endpoint name in a region (`s3.ap-northeast-2.amazonaws.com`).
    pub fn hostname(self, region: &str) -> String {
        format!("{}.{region}.amazonaws.com", self.name())
    }

    /// AWS's service name of its endpoints (`com.amazonaws.<region>.s3`).
    pub fn endpoint_service(self, region: &str) -> String {
        format!("com.amazonaws.{region}.{}", self.name())
    }
}

/// How requests reach this door.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Door {
    /// The service's public address, from the internet.
    Internet,
    /// A VPC endpoint of a VPC.
    Endpoint { vpce: String, vpc: String },
}

impl Door {
    /// The condition keys a request through this door carries (IAM names, lower case).
    pub fn keys(&self, peer: IpAddr) -> Vec<(String, String)> {
        let mut keys = vec![("aws:securetransport".to_string(), "false".to_string())];
        match self {
            Door::Internet => keys.push(("aws:sourceip".into(), peer.to_string())),
            Door::Endpoint { vpce, vpc } => {
                keys.push(("aws:sourcevpce".into(), vpce.clone()));
                keys.push(("aws:sourcevpc".into(), vpc.clone()));
                keys.push(("aws:vpcsourceip".into(), peer.to_string()));
            }
        }
        keys
    }
}

/// One door's settings (`natgw service`).
#[derive(Clone, Debug)]
pub struct Options {
    pub kind: Kind,
    pub listen: SocketAddr,
    /// Shared by every door of the service.
    pub data: PathBuf,
    pub door: Door,
    /// The endpoint's policy (None: AWS's default, full access).
    pub endpoint_policy: Option<Policy>,
    pub region: String,
    /// Request threads.
    pub threads: usize,
}

/// The account every lab request is treated as (the bucket owner's).
pub const ACCOUNT: &str = "123456789012";

/// Why a request was refused, for the log and the error body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The endpoint's policy denied it, or allowed nothing that matches.
    EndpointPolicy(Decision),
    /// The resource's policy denied it.
    ResourcePolicy(String),
}

/// IAM for one request: the endpoint policy must allow it (when the request
/// came through an endpoint), and no statement of the resource's policy may
/// deny it. Same-account requests need no Allow in the resource policy (we
/// treat every request as the owner's, whose identity policy allows all).
pub fn authorize(o: &Options, rq: &RequestContext, resource_policy: Option<&Policy>) -> Result<(), Refusal> {
    if let Door::Endpoint { .. } = o.door {
        let d = o.endpoint_policy.as_ref().map_or(Decision::Allow("default".into()), |p| p.evaluate(rq));
        if !matches!(d, Decision::Allow(_)) {
            return Err(Refusal::EndpointPolicy(d));
        }
    }
    if let Some(p) = resource_policy
        && let Decision::Deny(sid) = p.evaluate(rq)
    {
        return Err(Refusal::ResourcePolicy(sid));
    }
    Ok(())
}

/// A request context for `action` on `resource` from `peer` through this door.
pub fn context(o: &Options, action: &str, resource: String, peer: IpAddr) -> RequestContext {
    let principal = format!("arn:aws:iam::{ACCOUNT}:root");
    let mut keys = o.door.keys(peer);
    keys.push(("aws:principalaccount".into(), ACCOUNT.into()));
    keys.push(("aws:principalarn".into(), principal.clone()));
    RequestContext { action: action.to_string(), resource, principal, keys }
}

/// Writes a file whole or not at all (a temporary file, renamed), so that
/// the doors sharing a data directory never read half of one.
pub(crate) fn write_atomic(path: &std::path::Path, data: &[u8]) -> std::io::Result<()> {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = path.with_extension(format!("tmp{}-{n}", std::process::id()));
    std::fs::write(&tmp, data)?;
    std::fs::rename(&tmp, path)
}

/// Serves until the process is killed.
pub fn serve(o: Options) -> std::io::Result<()> {
    let server = std::sync::Arc::new(tiny_http::Server::http(o.listen).map_err(std::io::Error::other)?);
    let o = std::sync::Arc::new(o);
    match o.kind {
        Kind::S3 => {
            s3::Store::open(&o.data)?;
        }
        Kind::Dynamodb => {
            dynamodb::Tables::open(&o.data)?;
        }
    };
    let threads: Vec<_> = (0..o.threads.max(1))
        .map(|_| {
            let server = server.clone();
            let o = o.clone();
            std::thread::spawn(move || {
                while let Ok(rq) = server.recv() {
                    let r = match o.kind {
                        Kind::S3 => s3::handle(&o, rq),
                        Kind::Dynamodb => dynamodb::handle(&o, rq),
                    };
                    if let Err(e) = r {
                        tracing::warn!(error = %e, "answering a request");
                    }
                }
            })
        })
        .collect();
    for t in threads {
        let _ = t.join();
    }
    Ok(())
}
