//! The VPC as the pipeline sees it: interfaces, subnets, hosts, route tables,
//! NAT gateways, the internet side, and the indexes the packet walk needs.
//!
//! Built by the control plane (`control::config`) and immutable: a change
//! builds a new topology that is swapped in whole.

pub use super::transit::TransitGateway;
use crate::acl::Acl;
use crate::route::{EndpointId, HostId, NatId, Prefix, RouteTable};
use crate::sg::{GroupId, SecurityGroups};
use crate::wire::checksum::Delta;
use std::collections::HashMap;
use std::net::Ipv4Addr;

/// Index of an interface (a TUN device).
pub type IfId = u16;
/// Index of a subnet.
pub type SubnetId = u16;

/// A VPC of the gateway, issued by the config compiler in file order (the
/// `[vpc]` section's is 0). Every address lookup a packet makes is scoped to
/// one: VPCs that are not connected may overlap.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VpcId(pub u16);

impl VpcId {
    /// The first VPC (the `[vpc]` section's).
    pub const FIRST: VpcId = VpcId(0);

    pub fn index(self) -> usize {
        usize::from(self.0)
    }
}

/// One VPC: its name, id and CIDR block.
#[derive(Clone, Debug)]
pub struct VpcInfo {
    pub name: String,
    /// `vpc-...`.
    pub id: String,
    pub cidr: Prefix,
    /// Its connection tracking zone: VPCs joined by peerings share one (their
    /// addresses cannot overlap), others have their own, so two flows with
    /// the same 5-tuple in two overlapping VPCs are two flows (set by
    /// [`Topology::new`]).
    pub zone: u16,
}

/// A VPC peering connection (`pcx-...`) between two VPCs.
#[derive(Clone, Debug)]
pub struct Peering {
    pub name: String,
    pub vpcs: [VpcId; 2],
}

impl Peering {
    /// The VPC at the other end from `v`, if `v` is one of its ends.
    #[inline]
    pub fn other(&self, v: VpcId) -> Option<VpcId> {
        match self.vpcs {
            [a, b] if a == v => Some(b),
            [a, b] if b == v => Some(a),
            _ => None,
        }
    }
}

/// What sits behind an interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IfKind {
    /// One host (its network interface, in AWS terms).
    Host(HostId),
    /// The internet, behind the internet gateway.
    Internet,
    /// The VPC's DNS resolver (AWS's Amazon-provided DNS at base + 2).
    Dns,
    /// A gateway VPC endpoint: the service's private door.
    Endpoint(EndpointId),
}

/// One interface of the gateway.
#[derive(Clone, Debug)]
pub struct Interface {
    pub name: String,
    pub kind: IfKind,
    /// The link MTU.
    pub mtu: u16,
    /// A host's interface detached from every instance (its host's
    /// `detached`, kept here for the delivery step's one look).
    pub detached: bool,
}

/// A subnet of the VPC.
#[derive(Clone, Debug)]
pub struct Subnet {
    pub name: String,
    /// The VPC it belongs to.
    pub vpc: VpcId,
    pub cidr: Prefix,
    /// Index into [`Topology::route_tables`] (its association, or the main table).
    pub route_table: usize,
    /// Index into [`Topology::acls`].
    pub acl: usize,
    /// True when its route table sends something to the internet gateway (AWS's definition).
    pub public: bool,
}

impl Subnet {
    /// The VPC router's address in the subnet: the base + 1 (AWS reserves it).
    pub fn router(&self) -> Ipv4Addr {
        self.cidr.nth(1)
    }
}

/// A host (an instance with one network interface).
#[derive(Clone, Debug)]
pub struct Host {
    pub name: String,
    pub subnet: SubnetId,
    /// Its subnet's VPC (set by [`Topology::new`]).
    pub vpc: VpcId,
    /// Its VPC's connection tracking zone (set by [`Topology::new`]).
    pub zone: u16,
    pub ip: Ipv4Addr,
    pub elastic_ip: Option<Ipv4Addr>,
    pub interface: IfId,
    /// AWS source/destination check: drop packets from this host whose source
    /// is not its own address (turned off for middleboxes and NAT instances).
    pub source_dest_check: bool,
    /// Checksum delta of the 1:1 NAT from `ip` to `elastic_ip`.
    pub eip_delta: Delta,
    /// The security groups of its interface (its ENI), at most 5.
    pub groups: Vec<GroupId>,
    /// Its groups allow all TCP (index 0) or UDP (index 1) traffic to and
    /// from everywhere both ways: such flows are not tracked (set by
    /// [`Topology::new`]).
    pub untracked: [bool; 2],
    /// Which connection tracking timeouts its interface's flows get (the
    /// gateway's tracker's profile; 0: AWS's defaults).
    pub ct_profile: u8,
    /// A secondary interface detached from its instance (`natgw eni
    /// detach`): what is routed to it is dropped (`eni_detached`).
    pub detached: bool,
}

impl Host {
    /// Whether flows of `proto` at this host's interface go untracked.
    #[inline]
    pub fn untracked(&self, proto: u8) -> bool {
        match proto {
            crate::wire::ipv4::protocol::TCP => self.untracked[0],
            crate::wire::ipv4::protocol::UDP => self.untracked[1],
            _ => false,
        }
    }
}

/// A NAT gateway's place in the VPC (its state lives in `nat::NatGateway`).
#[derive(Clone, Debug)]
pub struct NatGatewayInfo {
    pub name: String,
    pub subnet: SubnetId,
    pub private_ip: Ipv4Addr,
    pub public_ips: Vec<Ipv4Addr>,
}

/// The internet side.
#[derive(Clone, Debug)]
pub struct InternetSide {
    pub interface: IfId,
    /// The gateway's own address on the internet link (source of its ICMP errors there).
    pub gateway_ip: Ipv4Addr,
}

/// The VPC's resolver as the walk sees it.
#[derive(Clone, Copy, Debug)]
pub struct DnsSide {
    /// Its interface, or None with `enable_dns_support = false` (queries
    /// are then dropped as `dns_disabled`).
    pub interface: Option<IfId>,
    /// The VPC's base + 2 and 169.254.169.253.
    pub addresses: [u32; 2],
}

impl DnsSide {
    /// True for the resolver's addresses.
    #[inline]
    pub fn is_resolver(&self, ip: u32) -> bool {
        ip == self.addresses[0] || ip == self.addresses[1]
    }
}

/// What the config says of the resolver.
#[derive(Clone, Copy, Debug)]
pub struct DnsParts {
    pub addresses: [std::net::Ipv4Addr; 2],
    /// `enable_dns_support`: it has an interface, after the internet side's.
    pub serving: bool,
}

/// A gateway VPC endpoint as the walk sees it.
#[derive(Clone, Debug)]
pub struct EndpointSide {
    /// Its id (`vpce-...`).
    pub name: String,
    /// The prefix list its routes stand for (`pl-...`).
    pub prefix_list: String,
    pub interface: IfId,
}

/// Who owns a public address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PublicOwner {
    /// A host's Elastic IP (1:1 NAT in the internet gateway).
    Host(HostId),
    /// A NAT gateway's Elastic IP.
    Nat(NatId),
}

/// What the gateway knows about one address.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct AddrInfo {
    host: Option<HostId>,
    public: Option<PublicOwner>,
    own: bool,
}

/// The key of address `a` in VPC `v` (public addresses: in [`PUBLIC`]).
#[inline]
fn scoped(v: u16, a: u32) -> u64 {
    (u64::from(v) << 32) | u64::from(a)
}

/// The scope of public addresses (Elastic IPs), which are the internet's.
const PUBLIC: u16 = u16::MAX;

/// Every address the walk asks about (hosts, public addresses, the gateway's
/// own), each under its VPC, in one open-addressing table with an unkeyed
/// multiplicative hash: one short probe per question. Built by the control
/// plane only, so no packet can add to it or steer its layout.
#[derive(Clone, Debug)]
struct AddrTable {
    slots: Vec<(u64, AddrInfo)>,
    shift: u32,
}

impl AddrTable {
    fn build(entries: &HashMap<u64, AddrInfo>) -> AddrTable {
        // At most half full; key 0 (0.0.0.0 in the first VPC, never a valid
        // address here) marks a free slot; 0.0.0.0 is never entered.
        let cap = (entries.len() * 2).next_power_of_two().max(16);
        let shift = 64 - cap.trailing_zeros();
        let mut t = AddrTable { slots: vec![(0, AddrInfo::default()); cap], shift };
        for (&a, &info) in entries {
            if a as u32 == 0 {
                continue;
            }
            let mut i = t.home(a);
            while t.slots[i].0 != 0 {
                i = (i + 1) & (cap - 1);
            }
            t.slots[i] = (a, info);
        }
        t
    }

    #[inline]
    fn home(&self, a: u64) -> usize {
        (a.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> self.shift) as usize
    }

    #[inline]
    fn get(&self, a: u64) -> Option<&AddrInfo> {
        let mask = self.slots.len() - 1;
        let mut i = self.home(a);
        loop {
            let (k, ref info) = self.slots[i];
            if k == a && a != 0 {
                return Some(info);
            }
            if k == 0 {
                return None;
            }
            i = (i + 1) & mask;
        }
    }
}

/// The compiled VPCs.
#[derive(Clone, Debug)]
pub struct Topology {
    /// The VPCs, by [`VpcId`].
    pub vpcs: Vec<VpcInfo>,
    /// VPC peering connections, by [`PeeringId`].
    pub peerings: Vec<Peering>,
    /// Transit gateways, by [`crate::route::TgwId`].
    pub transit_gateways: Vec<TransitGateway>,
    /// Every VPC's CIDR, the first VPC's first.
    pub vpc_cidrs: Vec<Prefix>,
    pub interfaces: Vec<Interface>,
    pub subnets: Vec<Subnet>,
    pub hosts: Vec<Host>,
    pub route_tables: Vec<RouteTable>,
    pub acls: Vec<Acl>,
    pub nat_gateways: Vec<NatGatewayInfo>,
    pub internet: Option<InternetSide>,
    /// The VPC's security groups; None: the file declares none, and no host
    /// interface filters (natgw before groups).
    pub security_groups: Option<SecurityGroups>,
    /// The VPC's resolver.
    pub dns: Option<DnsSide>,
    /// Gateway endpoints, each with its interface (after the resolver's).
    pub endpoints: Vec<EndpointSide>,
    addrs: AddrTable,
}

/// The parts a topology is built from.
#[derive(Clone, Debug, Default)]
pub struct TopologyParts {
    /// The VPCs (their zones are assigned by [`Topology::new`]).
    pub vpcs: Vec<VpcInfo>,
    pub peerings: Vec<Peering>,
    pub transit_gateways: Vec<TransitGateway>,
    pub vpc_cidrs: Vec<Prefix>,
    pub subnets: Vec<Subnet>,
    /// Hosts; their `interface` field is assigned by [`Topology::new`].
    pub hosts: Vec<Host>,
    pub route_tables: Vec<RouteTable>,
    pub acls: Vec<Acl>,
    pub nat_gateways: Vec<NatGatewayInfo>,
    /// The internet side's gateway address, if the VPC has an internet side.
    pub internet_gateway_ip: Option<Ipv4Addr>,
    /// Link MTU of every interface without its own.
    pub mtu: u16,
    /// Per interface, in interface order (hosts, then the internet): its MTU, or 0.
    pub interface_mtus: Vec<u16>,
    /// The groups; their members are the hosts that name them.
    pub security_groups: Option<Vec<crate::sg::SecurityGroup>>,
    /// The VPC's resolver (None: no resolver addresses at all, as in tests).
    pub dns: Option<DnsParts>,
    /// Gateway endpoints' ids and prefix lists, in `Target::Endpoint` order.
    pub endpoints: Vec<(String, String)>,
}

impl Topology {
    /// Builds the indexes. Interfaces: one per host, in host order, then the
    /// internet side, then the VPC's resolver, then the gateway endpoints.
    pub fn new(mut parts: TopologyParts) -> Topology {
        let mtu = if parts.mtu == 0 { 1500 } else { parts.mtu };
        if parts.vpcs.is_empty()
            && let Some(cidr) = parts.vpc_cidrs.first()
        {
            parts.vpcs.push(VpcInfo { name: "vpc".into(), id: String::new(), cidr: *cidr, zone: 0 });
        }
        zone_vpcs(&mut parts.vpcs, &links(&parts.peerings, &parts.transit_gateways));
        for h in &mut parts.hosts {
            h.vpc = parts.subnets.get(usize::from(h.subnet)).map_or(VpcId::FIRST, |s| s.vpc);
            h.zone = parts.vpcs.get(h.vpc.index()).map_or(0, |v| v.zone);
        }
        // An interface's own MTU, or the gateway's.
        let own_mtus = std::mem::take(&mut parts.interface_mtus);
        let mtu_of = |i: usize| own_mtus.get(i).copied().filter(|m| *m > 0).unwrap_or(mtu);
        let mut interfaces = Vec::new();
        for (i, h) in parts.hosts.iter_mut().enumerate() {
            h.interface = interfaces.len() as IfId;
            h.eip_delta = match h.elastic_ip {
                Some(e) => Delta::ZERO.addr(h.ip.octets(), e.octets()),
                None => Delta::ZERO,
            };
            interfaces.push(Interface {
                name: h.name.clone(),
                kind: IfKind::Host(i as HostId),
                mtu: mtu_of(i),
                detached: h.detached,
            });
        }
        let internet = parts.internet_gateway_ip.map(|gateway_ip| {
            let interface = interfaces.len() as IfId;
            interfaces.push(Interface {
                name: "internet".into(),
                kind: IfKind::Internet,
                mtu: mtu_of(usize::from(interface)),
                detached: false,
            });
            InternetSide { interface, gateway_ip }
        });
        let dns = parts.dns.map(|d| {
            let interface = d.serving.then(|| {
                let interface = interfaces.len() as IfId;
                interfaces.push(Interface {
                    name: "dns".into(),
                    kind: IfKind::Dns,
                    mtu: mtu_of(usize::from(interface)),
                    detached: false,
                });
                interface
            });
            DnsSide { interface, addresses: d.addresses.map(u32::from) }
        });
        let endpoints = parts
            .endpoints
            .iter()
            .enumerate()
            .map(|(i, (name, prefix_list))| {
                let interface = interfaces.len() as IfId;
                let kind = IfKind::Endpoint(i as EndpointId);
                interfaces.push(Interface {
                    name: name.clone(),
                    kind,
                    mtu: mtu_of(usize::from(interface)),
                    detached: false,
                });
                EndpointSide { name: name.clone(), prefix_list: prefix_list.clone(), interface }
            })
            .collect::<Vec<_>>();
        let security_groups = parts.security_groups.take().map(|groups| {
            let members: Vec<(u32, Vec<GroupId>)> =
                parts.hosts.iter().map(|h| (u32::from(h.ip), h.groups.clone())).collect();
            SecurityGroups::new(groups, &members)
        });
        for h in &mut parts.hosts {
            h.untracked = match &security_groups {
                Some(sg) => [sg.untracked(&h.groups, 6), sg.untracked(&h.groups, 17)],
                None => [true, true],
            };
        }
        let mut addrs: HashMap<u64, AddrInfo> = HashMap::new();
        let vpc_of = |s: SubnetId| parts.subnets.get(usize::from(s)).map_or(0, |s| s.vpc.0);
        for (i, h) in parts.hosts.iter().enumerate() {
            addrs.entry(scoped(h.vpc.0, u32::from(h.ip))).or_default().host = Some(i as HostId);
            if let Some(e) = h.elastic_ip {
                addrs.entry(scoped(PUBLIC, u32::from(e))).or_default().public = Some(PublicOwner::Host(i as HostId));
            }
        }
        for (i, n) in parts.nat_gateways.iter().enumerate() {
            addrs.entry(scoped(vpc_of(n.subnet), u32::from(n.private_ip))).or_default().own = true;
            for ip in &n.public_ips {
                addrs.entry(scoped(PUBLIC, u32::from(*ip))).or_default().public = Some(PublicOwner::Nat(i as NatId));
            }
        }
        for s in &parts.subnets {
            addrs.entry(scoped(s.vpc.0, u32::from(s.router()))).or_default().own = true;
        }
        if let Some(i) = &internet {
            // Every VPC's own: one probe answers from anywhere.
            for v in (0..parts.vpcs.len().max(1) as u16).chain([PUBLIC]) {
                addrs.entry(scoped(v, u32::from(i.gateway_ip))).or_default().own = true;
            }
        }
        Topology {
            vpcs: parts.vpcs,
            peerings: parts.peerings,
            transit_gateways: parts.transit_gateways,
            vpc_cidrs: parts.vpc_cidrs,
            interfaces,
            subnets: parts.subnets,
            hosts: parts.hosts,
            route_tables: parts.route_tables,
            acls: parts.acls,
            nat_gateways: parts.nat_gateways,
            internet,
            security_groups,
            dns,
            endpoints,
            addrs: AddrTable::build(&addrs),
        }
    }

    /// The host of VPC `vpc` whose private address is `ip`.
    #[inline]
    pub fn host_by_ip(&self, vpc: VpcId, ip: u32) -> Option<HostId> {
        self.addrs.get(scoped(vpc.0, ip)).and_then(|i| i.host)
    }

    /// The host whose private address is `ip` in any VPC (the first VPC's
    /// first): for the control plane, which names hosts by address.
    pub fn host_anywhere(&self, ip: u32) -> Option<HostId> {
        (0..self.vpcs.len().max(1) as u16).find_map(|v| self.host_by_ip(VpcId(v), ip))
    }

    /// The host whose private address is `ip` in a VPC of connection
    /// tracking zone `zone` (a tracked flow's key names its zone).
    pub fn host_in_zone(&self, zone: u16, ip: u32) -> Option<HostId> {
        (0..self.vpcs.len().max(1) as u16)
            .filter(|v| self.zone_of(VpcId(*v)) == zone)
            .find_map(|v| self.host_by_ip(VpcId(v), ip))
    }

    /// The VPC whose CIDR holds `ip` (the first such).
    pub fn vpc_holding(&self, ip: u32) -> Option<VpcId> {
        self.vpcs.iter().position(|v| v.cidr.contains_u32(ip)).map(|i| VpcId(i as u16))
    }

    /// The owner of a public address.
    #[inline]
    pub fn public_owner(&self, ip: u32) -> Option<PublicOwner> {
        self.addrs.get(scoped(PUBLIC, ip)).and_then(|i| i.public)
    }

    /// True for the gateway's own addresses in VPC `vpc` (its subnet routers,
    /// its NAT gateways' private addresses, the internet-side address).
    #[inline]
    pub fn is_own(&self, vpc: VpcId, ip: u32) -> bool {
        self.addrs.get(scoped(vpc.0, ip)).is_some_and(|i| i.own)
    }

    /// The VPC of subnet `s`.
    #[inline]
    pub fn vpc_of(&self, s: SubnetId) -> VpcId {
        self.subnets.get(usize::from(s)).map_or(VpcId::FIRST, |s| s.vpc)
    }

    /// True when `addr` is inside VPC `v`'s own block (a peering or a
    /// gateway endpoint carries that VPC's own traffic only).
    #[inline]
    pub fn inside(&self, v: VpcId, addr: u32) -> bool {
        self.vpcs.get(v.index()).is_some_and(|x| x.cidr.contains_u32(addr))
    }

    /// The connection tracking zone of VPC `v`.
    #[inline]
    pub fn zone_of(&self, v: VpcId) -> u16 {
        self.vpcs.get(v.index()).map_or(0, |v| v.zone)
    }

    /// Interface names, in interface order.
    pub fn interface_names(&self) -> Vec<String> {
        self.interfaces.iter().map(|i| i.name.clone()).collect()
    }
}

/// Each VPC's connection tracking zone, as [`Topology::new`] assigns them.
pub fn zones(vpcs: &[VpcInfo], peerings: &[Peering], tgws: &[TransitGateway]) -> Vec<u16> {
    let mut v = vpcs.to_vec();
    zone_vpcs(&mut v, &links(peerings, tgws));
    v.iter().map(|v| v.zone).collect()
}

/// The pairs of VPCs that can reach each other: the ends of every peering,
/// and every two VPCs attached to one transit gateway.
fn links(peerings: &[Peering], tgws: &[TransitGateway]) -> Vec<[VpcId; 2]> {
    let mut l: Vec<[VpcId; 2]> = peerings.iter().map(|p| p.vpcs).collect();
    for t in tgws {
        for pair in t.attachments.windows(2) {
            l.push([pair[0].vpc, pair[1].vpc]);
        }
    }
    l
}

/// Gives VPCs joined by peerings or transit gateways (directly or not) one
/// connection tracking zone, the lowest VPC id among them; others their own.
fn zone_vpcs(vpcs: &mut [VpcInfo], links: &[[VpcId; 2]]) {
    for (i, v) in vpcs.iter_mut().enumerate() {
        v.zone = i as u16;
    }
    // Few VPCs: relax until nothing changes.
    loop {
        let mut changed = false;
        for l in links {
            let [a, b] = l.map(VpcId::index);
            if a >= vpcs.len() || b >= vpcs.len() {
                continue;
            }
            let z = vpcs[a].zone.min(vpcs[b].zone);
            for i in [a, b] {
                if vpcs[i].zone != z {
                    vpcs[i].zone = z;
                    changed = true;
                }
            }
        }
        if !changed {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peered_vpcs_share_a_zone_and_others_keep_their_own() {
        let v = |n: &str| VpcInfo { name: n.into(), id: String::new(), cidr: "10.0.0.0/16".parse().unwrap(), zone: 9 };
        let mut vpcs = vec![v("a"), v("b"), v("c"), v("d")];
        let p = |a: u16, b: u16| Peering { name: String::new(), vpcs: [VpcId(a), VpcId(b)] };
        zone_vpcs(&mut vpcs, &links(&[p(2, 1), p(1, 3)], &[]));
        assert_eq!(vpcs.iter().map(|v| v.zone).collect::<Vec<_>>(), [0, 1, 1, 1]);
    }

    #[test]
    fn address_table_finds_every_entry_and_nothing_else() {
        let mut m = HashMap::new();
        for i in 1..=1000u32 {
            m.insert(
                scoped((i % 3) as u16, i.wrapping_mul(2_654_435_761)),
                AddrInfo { host: Some(i as HostId), public: None, own: i % 2 == 0 },
            );
        }
        let t = AddrTable::build(&m);
        for (a, info) in &m {
            assert_eq!(t.get(*a), Some(info));
        }
        for probe in [0u64, 1, 2, 3, 0xffff_ffff, 12345, scoped(5, 2_654_435_761)] {
            assert_eq!(t.get(probe).is_some(), m.contains_key(&probe) && probe != 0);
        }
    }
}
