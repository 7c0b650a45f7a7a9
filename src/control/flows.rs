//! Tracked flows for display: each flow the security groups' tracker holds,
//! with the rewrite that applies to it (a NAT gateway's mapping, a host's
//! Elastic IP at the internet gateway), for `natgw conntrack`.

use crate::conntrack::{Dir, FlowKey, SessionView};
use crate::pipeline::{Gateway, Topology};
use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;

/// One tracked flow.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TrackedFlow {
    #[serde(flatten)]
    pub flow: SessionView,
    /// The rewrite its packets get: `nat-1 203.0.113.5:40123` (a NAT
    /// gateway's external endpoint), `elastic-ip 203.0.113.10`, or empty.
    pub rewrite: String,
}

/// Every tracked flow of `gw`, live at `now_secs`.
pub fn tracked(gw: &Gateway, now_secs: u32) -> Vec<TrackedFlow> {
    let topo = gw.topology();
    gw.tracker()
        .flows(now_secs)
        .into_iter()
        .map(|(key, flow)| {
            let rewrite = nat_rewrite(gw, &key)
                .or_else(|| eip_rewrite(&topo, &key).map(|(e, _)| format!("elastic-ip {e}")))
                .unwrap_or_default();
            TrackedFlow { flow, rewrite }
        })
        .collect()
}

/// The Elastic IP endpoint a flow tracked as `key` has on the internet: a
/// host's Elastic IP and port, when one end is that host and the other is
/// outside the VPC.
pub fn eip_rewrite(topo: &Topology, key: &FlowKey) -> Option<(Ipv4Addr, u16)> {
    let inside = |a: u32| topo.vpc_cidrs.iter().any(|c| c.contains_u32(a));
    let eip = |host: u32| topo.host_in_zone(key.zone, host).and_then(|h| topo.hosts[usize::from(h)].elastic_ip);
    if !inside(key.dst) {
        eip(key.src).map(|e| (e, key.sport))
    } else if !inside(key.src) {
        eip(key.dst).map(|e| (e, key.dport))
    } else {
        None
    }
}

/// The NAT gateway session of a flow tracked as `key` (from the inside, or
/// from the outside after translation), as `name external-endpoint`.
pub fn nat_rewrite(gw: &Gateway, key: &FlowKey) -> Option<String> {
    for nat in gw.nats() {
        for k in [*key, key.reply()] {
            if let Some((s, Dir::Original)) = nat.session(&k) {
                let ext = s.reply();
                return Some(format!("{} {}:{}", nat.name, Ipv4Addr::from(ext.dst), ext.dport));
            }
        }
    }
    None
}
