//! What `natgw web` draws: the VPC's topology as the console lists it, and
//! a bounded snapshot of the live flows, port pools and drops. Both are
//! built on the control path from the running gateway; a snapshot lists
//! at most `limit` flows of each kind (the newest) with the totals, so a
//! table of 100,000 sessions never reaches a browser whole.

use super::config::Vpc;
use super::socket::RouteTableView;
use crate::conntrack::SessionView;
use crate::pipeline::{Gateway, Totals};
use serde::{Deserialize, Serialize};

/// One subnet.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct SubnetView {
    pub name: String,
    pub cidr: String,
    /// Its route table sends something to the internet gateway.
    pub public: bool,
    pub route_table: String,
    pub acl: String,
}

/// One host (an instance and its interface).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct HostView {
    pub name: String,
    pub subnet: String,
    pub private_ip: String,
    pub elastic_ip: Option<String>,
    pub groups: Vec<String>,
}

/// One NAT gateway.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct NatGatewayView {
    pub name: String,
    pub subnet: String,
    pub private_ip: String,
    pub elastic_ips: Vec<String>,
}

/// The VPC as the console shows it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct TopologyView {
    pub name: String,
    pub id: String,
    pub cidrs: Vec<String>,
    pub subnets: Vec<SubnetView>,
    pub hosts: Vec<HostView>,
    /// The internet gateway's name, if the VPC has an internet side.
    pub internet_gateway: Option<String>,
    pub nat_gateways: Vec<NatGatewayView>,
    pub route_tables: Vec<RouteTableView>,
    /// Gateway endpoints: (id, prefix list).
    pub endpoints: Vec<(String, String)>,
}

/// The topology of `vpc`.
pub fn topology(vpc: &Vpc) -> TopologyView {
    let p = &vpc.parts;
    let subnet_name = |i: usize| p.subnets.get(i).map(|s| s.name.clone()).unwrap_or_default();
    let groups = p.security_groups.as_deref().unwrap_or(&[]);
    TopologyView {
        name: vpc.name.clone(),
        id: vpc.id.clone(),
        cidrs: p.vpc_cidrs.iter().map(ToString::to_string).collect(),
        subnets: p
            .subnets
            .iter()
            .map(|s| SubnetView {
                name: s.name.clone(),
                cidr: s.cidr.to_string(),
                public: s.public,
                route_table: p.route_tables.get(s.route_table).map(|t| t.name.clone()).unwrap_or_default(),
                acl: p.acls.get(s.acl).map(|a| a.name.clone()).unwrap_or_default(),
            })
            .collect(),
        hosts: p
            .hosts
            .iter()
            .map(|h| HostView {
                name: h.name.clone(),
                subnet: subnet_name(usize::from(h.subnet)),
                private_ip: h.ip.to_string(),
                elastic_ip: h.elastic_ip.map(|e| e.to_string()),
                groups: h.groups.iter().filter_map(|g| groups.get(usize::from(g.0)).map(|g| g.name.clone())).collect(),
            })
            .collect(),
        internet_gateway: p.internet_gateway_ip.map(|_| vpc.igw_name.clone()),
        nat_gateways: p
            .nat_gateways
            .iter()
            .map(|n| NatGatewayView {
                name: n.name.clone(),
                subnet: subnet_name(usize::from(n.subnet)),
                private_ip: n.private_ip.to_string(),
                elastic_ips: n.public_ips.iter().map(ToString::to_string).collect(),
            })
            .collect(),
        route_tables: super::daemon::route_views(vpc),
        endpoints: p.endpoints.clone(),
    }
}

/// One live flow as the page lists it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct FlowRow {
    /// The NAT gateway that translates it, `elastic-ip` (the internet
    /// gateway's 1:1 NAT), or empty (tracked by security groups, no rewrite).
    pub via: String,
    /// `tcp`, `udp`, `icmp`, or the number.
    pub proto: String,
    /// The endpoint that opened it, as it sent.
    pub source: String,
    pub destination: String,
    /// The VPC end's endpoint as the internet sees it: the NAT gateway's
    /// external address and port, or the host's Elastic IP (empty: no rewrite).
    pub translated: String,
    pub state: Option<String>,
    /// Original direction, reply direction.
    pub packets: [u64; 2],
    pub bytes: [u64; 2],
    pub age: u32,
    pub expires_in: u32,
}

/// One port pool of a NAT gateway.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct PoolRow {
    pub nat_gateway: String,
    pub elastic_ip: String,
    pub proto: String,
    pub in_use: u32,
    pub held: u32,
    pub free: u32,
}

/// A bounded snapshot of what moves.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct FlowsView {
    pub uptime_secs: u64,
    /// Live NAT gateway sessions, all of them.
    pub nat_sessions: usize,
    /// Live flows the security groups track without a NAT gateway.
    pub tracked_flows: usize,
    /// Of both, TCP flows after a FIN or a RST (still held until their
    /// timeout; listed only when asked for).
    pub closing: usize,
    /// The newest `limit` NAT sessions (over all NAT gateways), then the
    /// newest `limit` other tracked flows, each newest first.
    pub flows: Vec<FlowRow>,
    pub pools: Vec<PoolRow>,
    /// Every drop reason with its count (also 0).
    pub drops: Vec<(String, u64)>,
}

fn endpoint(addr: &str, port: u16, proto: u8) -> String {
    if proto == crate::wire::ipv4::protocol::ICMP { format!("{addr} id {port}") } else { format!("{addr}:{port}") }
}

fn row(via: String, s: &SessionView, translated: String) -> FlowRow {
    FlowRow {
        via,
        proto: crate::conntrack::key::proto_name(s.proto).to_string(),
        source: endpoint(&s.orig_src, s.orig_sport, s.proto),
        destination: endpoint(&s.orig_dst, s.orig_dport, s.proto),
        translated,
        state: s.state.clone(),
        packets: s.packets,
        bytes: s.bytes,
        age: s.age,
        expires_in: s.expires_in,
    }
}

/// The snapshot of `gw` at `now_secs`: at most `limit` NAT sessions and
/// `limit` other tracked flows, the closing ones only `with_closing`.
pub fn flows(gw: &Gateway, totals: &Totals, now_secs: u32, limit: usize, with_closing: bool) -> FlowsView {
    let mut rows = Vec::new();
    let (mut nat_sessions, mut closing) = (0, 0);
    let mut pools = Vec::new();
    for nat in gw.nats() {
        let page = nat.newest_sessions(now_secs, limit, with_closing);
        nat_sessions += page.live;
        closing += page.closing;
        for s in &page.items {
            // The reply comes back to the external endpoint.
            let translated = endpoint(&s.reply_dst, s.reply_dport, s.proto);
            rows.push(row(nat.name.clone(), s, translated));
        }
        for p in nat.port_report().pools {
            pools.push(PoolRow {
                nat_gateway: nat.name.clone(),
                elastic_ip: p.addr,
                proto: crate::conntrack::key::proto_name(p.proto).to_string(),
                in_use: p.in_use,
                held: p.held,
                free: p.free,
            });
        }
    }
    // The newest `limit` over all NAT gateways.
    rows.sort_by_key(|r| r.age);
    rows.truncate(limit);
    // A flow a NAT gateway translates is listed once, as its session.
    let tracked = gw.tracker().newest(now_secs, limit, with_closing, |k| super::flows::nat_rewrite(gw, k).is_none());
    closing += tracked.closing;
    let topo = gw.topology();
    for (key, s) in &tracked.items {
        let (via, translated) = match super::flows::eip_rewrite(&topo, key) {
            Some((e, port)) => ("elastic-ip".to_string(), endpoint(&e.to_string(), port, key.proto)),
            None => (String::new(), String::new()),
        };
        rows.push(row(via, s, translated));
    }
    FlowsView {
        uptime_secs: now_secs.into(),
        nat_sessions,
        tracked_flows: tracked.live,
        closing,
        flows: rows,
        pools,
        drops: crate::pipeline::DropReason::ALL
            .iter()
            .map(|r| (r.label().to_string(), totals.drop_count(r.label())))
            .collect(),
    }
}
