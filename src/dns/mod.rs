//! The VPC's own DNS resolver (AWS's "Amazon-provided DNS", Route 53 Resolver
//! at the VPC's base + 2 and at 169.254.169.253).
//!
//! - [`zone`]: the names the resolver knows, built from the VPC by the
//!   control plane: hosts' private names, public names (with DNS hostnames
//!   on), the lab's own names, a private hosted zone's records.
//! - [`answer`]: one query in, one response (or a counted drop) out, on the
//!   DNS wire format of `hickory-proto` (no hand-written parser).
//! - [`server`]: the threads that answer, on real UDP and TCP sockets inside
//!   the resolver's own namespace. The workers only forward packets to it, as
//!   to any interface: the DNS library allocates, and never runs on their
//!   per-packet path.

pub mod answer;
pub mod server;
pub mod zone;

pub use answer::{Answer, Outcome, Transport, answer};
pub use server::{DnsCounters, DnsStats, Resolver};
pub use zone::Zone;

/// The link-local address of the resolver in every VPC (AWS).
pub const LINK_LOCAL: std::net::Ipv4Addr = std::net::Ipv4Addr::new(169, 254, 169, 253);

/// AWS's limit: packets a network interface may send to the resolver each
/// second (more are dropped).
pub const AWS_RATE_LIMIT: u32 = 1024;
