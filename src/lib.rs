//! # natgw: a userspace NAT gateway and VPC router
//!
//! natgw does for namespaces what an AWS VPC does for its subnets: a VPC
//! router with route tables, an internet gateway with 1:1 NAT for Elastic
//! IPs, NAT gateways with stateful connection tracking, and network ACLs. It
//! attaches to each host through a TUN device and forwards every packet in
//! userspace.
//!
//! ## The packet walk
//!
//! ```text
//!  TUN queue ──read──▶ worker ──▶ pipeline::Pipeline::process(now, ingress, &mut buf) ──▶ Action
//!  (io/)               (worker/)  │                                                        │
//!                                 ├─ wire/       validate IPv4 + transport header once     ├─ Forward(if) ─▶ write to that TUN queue
//!                                 ├─ from a host: source check, same subnet? deliver       ├─ Reply{if}   ─▶ ICMP error / echo reply / RST
//!                                 ├─ TTL: Time Exceeded, or decrement                      └─ Drop(reason) ─▶ counter per reason
//!                                 ├─ route/      LPM in the subnet's route table
//!                                 │    local ──▶ host        blackhole ──▶ drop
//!                                 │    nat-N ──▶ nat/ + conntrack/: translate source, route on from the NAT's subnet
//!                                 │    igw   ──▶ 1:1 NAT for Elastic IPs, out to the internet (or hairpin back in)
//!                                 ├─ acl/        network ACL at every subnet boundary crossed
//!                                 └─ from the internet: Elastic IP ──▶ host; NAT address ──▶ session ──▶ host
//! ```
//!
//! The pipeline does no I/O, reads no clock (time is passed in) and allocates
//! nothing per packet; checksums are updated incrementally (RFC 1624). The
//! flow table is shared by all workers because a reply may arrive on another
//! queue. `unsafe` lives only in [`io`].
//!
//! ## Modules, in the order a packet meets them
//! - [`io`]: TUN devices (multi-queue), namespaces; every syscall.
//! - [`worker`]: threads, one per TUN queue, bounded work per wake-up.
//! - [`wire`]: typed views of IPv4, TCP, UDP, ICMP; checksums.
//! - [`pipeline`]: `process`, actions, drop reasons, counters, the topology.
//! - [`route`]: prefixes, route tables, the LPM.
//! - [`acl`]: network ACLs.
//! - [`sg`]: security groups.
//! - [`conntrack`]: flow keys, sessions, the TCP state machine, timeouts.
//! - [`nat`]: port allocation, mappings, rewrites, ICMP error translation.
//! - [`flowlog`]: VPC Flow Logs: per-worker aggregation, formats.
//! - [`control`]: config files, the lab, the control socket.

pub mod acl;
pub mod clock;
pub mod conntrack;
pub mod control;
pub mod counter;
pub mod dns;
pub mod flowlog;
pub mod io;
pub mod nat;
pub mod pipeline;
pub mod route;
pub mod services;
pub mod sg;
pub mod wire;
pub mod worker;

pub use clock::Timestamp;
pub use pipeline::{Action, DropReason, Gateway, PacketBuf, Pipeline};
