//! Security groups with AWS semantics: allow-only rules at a host's
//! interface, inbound and outbound, the rules of all of an interface's groups
//! unioned; a rule's peer is a CIDR or another group (the current private
//! addresses of the interfaces that carry it).
//!
//! This module decides one packet against one interface's groups and says
//! which group and rule allowed it. Statefulness (a reply passes whatever the
//! rules say) is the tracker's (`conntrack::tracker`), which the pipeline
//! consults first.

use crate::acl::{AclPacket, RuleProtocol};
use crate::route::Prefix;
use crate::wire::ipv4::protocol;
use std::fmt;

/// Index of a group in [`SecurityGroups`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupId(pub u16);

/// Groups one interface may carry (AWS's default quota).
pub const MAX_GROUPS_PER_INTERFACE: usize = 5;
/// Rules per direction of one group (AWS's default quota).
pub const MAX_RULES: usize = 60;

/// Which way a packet crosses the interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SgDirection {
    /// Arriving at the host.
    Inbound = 0,
    /// Leaving the host.
    Outbound = 1,
}

impl SgDirection {
    pub fn name(self) -> &'static str {
        match self {
            SgDirection::Inbound => "inbound",
            SgDirection::Outbound => "outbound",
        }
    }
}

/// The other end a rule allows: the source of inbound traffic, the
/// destination of outbound traffic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Peer {
    Cidr(Prefix),
    /// The members of a group (its name is kept for display).
    Group(GroupId),
}

/// One allow rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SgRule {
    pub protocol: RuleProtocol,
    /// Destination port range, inclusive (TCP and UDP); None: every port.
    pub ports: Option<(u16, u16)>,
    /// ICMP type and code; None: any.
    pub icmp_type: Option<u8>,
    pub icmp_code: Option<u8>,
    pub peer: Peer,
    pub description: String,
}

/// A security group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecurityGroup {
    pub name: String,
    pub description: String,
    pub inbound: Vec<SgRule>,
    pub outbound: Vec<SgRule>,
}

impl SecurityGroup {
    /// A VPC's default group: inbound all from its own members, outbound all.
    pub fn vpc_default(id: GroupId) -> SecurityGroup {
        SecurityGroup {
            name: "default".into(),
            description: "default VPC security group".into(),
            inbound: vec![SgRule::all(Peer::Group(id), "all traffic from members of this group")],
            outbound: vec![SgRule::all(Peer::Cidr(Prefix::DEFAULT), "all traffic")],
        }
    }

    pub fn rules(&self, dir: SgDirection) -> &[SgRule] {
        match dir {
            SgDirection::Inbound => &self.inbound,
            SgDirection::Outbound => &self.outbound,
        }
    }
}

impl SgRule {
    /// All traffic to or from `peer`.
    pub fn all(peer: Peer, description: &str) -> SgRule {
        SgRule {
            protocol: RuleProtocol::All,
            ports: None,
            icmp_type: None,
            icmp_code: None,
            peer,
            description: description.into(),
        }
    }

    /// Allows all `proto` traffic (every port) to or from everywhere: half of
    /// what makes a flow untracked.
    fn allows_everything_of(&self, proto: u8) -> bool {
        let proto_ok = match self.protocol {
            RuleProtocol::All => true,
            RuleProtocol::Number(p) => p == proto,
        };
        proto_ok
            && matches!(self.ports, None | Some((0, 65535)))
            && matches!(&self.peer, Peer::Cidr(p) if p.is_default())
    }
}

/// The rule that allowed a packet: its group and its place in the group's
/// list for that direction (0-based).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SgMatch {
    pub group: GroupId,
    pub rule: u16,
}

/// A rule as one interface's check reads it: every field a compare, 24
/// bytes, the rules of all of the interface's groups in one list.
#[derive(Clone, Copy, Debug)]
struct Compiled {
    /// Port range (every port: 0-65535).
    lo: u16,
    hi: u16,
    /// Protocol number, when `ANY_PROTO` is not in `flags`.
    proto: u8,
    icmp_type: u8,
    icmp_code: u8,
    flags: u8,
    /// A CIDR peer: network and mask. A group peer: `group`'s members.
    net: u32,
    mask: u32,
    group: u16,
    /// Where the rule came from, for the verdict.
    from_group: u16,
    from_rule: u16,
}

const ANY_PROTO: u8 = 0x01;
const HAS_TYPE: u8 = 0x02;
const HAS_CODE: u8 = 0x04;
const PORTS: u8 = 0x08;
const GROUP_PEER: u8 = 0x10;

impl Compiled {
    fn new(r: &SgRule, from_group: GroupId, from_rule: usize) -> Compiled {
        let mut flags = 0;
        let proto = match r.protocol {
            RuleProtocol::All => {
                flags |= ANY_PROTO;
                0
            }
            RuleProtocol::Number(n) => n,
        };
        let (lo, hi) = match r.ports {
            Some(p) => {
                flags |= PORTS;
                p
            }
            None => (0, 65535),
        };
        if r.icmp_type.is_some() {
            flags |= HAS_TYPE;
        }
        if r.icmp_code.is_some() {
            flags |= HAS_CODE;
        }
        let (net, mask, group) = match &r.peer {
            Peer::Cidr(p) => {
                let mask = if p.prefix_len() == 0 { 0 } else { u32::MAX << (32 - u32::from(p.prefix_len())) };
                (p.addr_u32() & mask, mask, 0)
            }
            Peer::Group(g) => {
                flags |= GROUP_PEER;
                (0, 0, g.0)
            }
        };
        Compiled {
            lo,
            hi,
            proto,
            icmp_type: r.icmp_type.unwrap_or(0),
            icmp_code: r.icmp_code.unwrap_or(0),
            flags,
            net,
            mask,
            group,
            from_group: from_group.0,
            from_rule: from_rule as u16,
        }
    }
}

/// Every group of a VPC, with each group's current members.
#[derive(Clone, Debug, Default)]
pub struct SecurityGroups {
    groups: Vec<SecurityGroup>,
    /// Per group, the private addresses of the interfaces that carry it, sorted.
    members: Vec<Vec<u32>>,
    /// Per interface (in the order given to [`SecurityGroups::new`]): the
    /// rules of all of its groups, inbound and outbound.
    interfaces: Vec<[RuleIndex; 2]>,
}

/// One interface's rules for one direction, indexed by port. Rules only
/// allow, so any rule that matches decides (the union AWS defines) and they
/// may be looked at in any order: rules with a port range are found through
/// the elementary intervals their bounds cut 0-65535 into (a binary search,
/// then the few rules covering that interval); the others are checked in turn.
#[derive(Clone, Debug, Default)]
struct RuleIndex {
    plain: Vec<Compiled>,
    ported: Vec<Compiled>,
    /// Starts of the elementary intervals, ascending, the first 0.
    starts: Vec<u16>,
    /// Per interval, its range in `ids`.
    spans: Vec<(u32, u32)>,
    /// Indexes into `ported`.
    ids: Vec<u16>,
}

impl RuleIndex {
    fn new(rules: Vec<Compiled>) -> RuleIndex {
        let (ported, plain): (Vec<Compiled>, Vec<Compiled>) = rules.into_iter().partition(|r| r.flags & PORTS != 0);
        let mut starts: Vec<u16> = vec![0];
        for r in &ported {
            starts.push(r.lo);
            if r.hi < u16::MAX {
                starts.push(r.hi + 1);
            }
        }
        starts.sort_unstable();
        starts.dedup();
        let (mut spans, mut ids) = (Vec::with_capacity(starts.len()), Vec::new());
        for &start in &starts {
            let from = ids.len() as u32;
            ids.extend(
                ported.iter().enumerate().filter(|(_, r)| r.lo <= start && start <= r.hi).map(|(i, _)| i as u16),
            );
            spans.push((from, ids.len() as u32));
        }
        RuleIndex { plain, ported, starts, spans, ids }
    }

    /// The ported rules covering `dport` (indexes into `ported`).
    #[inline]
    fn covering(&self, dport: Option<u16>) -> &[u16] {
        match dport {
            Some(d) if !self.ported.is_empty() => {
                let i = self.starts.partition_point(|s| *s <= d) - 1;
                let (a, b) = self.spans[i];
                &self.ids[a as usize..b as usize]
            }
            _ => &[],
        }
    }

    /// The rules that may allow a packet to `dport`: the ported ones
    /// covering it, then every plain one.
    #[cfg(test)]
    fn candidates(&self, dport: Option<u16>) -> impl Iterator<Item = &Compiled> {
        self.covering(dport).iter().map(|&i| &self.ported[usize::from(i)]).chain(self.plain.iter())
    }
}

impl SecurityGroups {
    /// `groups`, and per interface the groups it carries and its address.
    pub fn new(groups: Vec<SecurityGroup>, interfaces: &[(u32, Vec<GroupId>)]) -> SecurityGroups {
        let mut members = vec![Vec::new(); groups.len()];
        for (addr, gs) in interfaces {
            for g in gs {
                if let Some(m) = members.get_mut(usize::from(g.0)) {
                    m.push(*addr);
                }
            }
        }
        for m in &mut members {
            m.sort_unstable();
            m.dedup();
        }
        let compile = |gs: &[GroupId], dir: SgDirection| -> RuleIndex {
            let mut v = Vec::new();
            for &g in gs {
                if let Some(group) = groups.get(usize::from(g.0)) {
                    v.extend(group.rules(dir).iter().enumerate().map(|(i, r)| Compiled::new(r, g, i)));
                }
            }
            RuleIndex::new(v)
        };
        let interfaces = interfaces
            .iter()
            .map(|(_, gs)| [compile(gs, SgDirection::Inbound), compile(gs, SgDirection::Outbound)])
            .collect();
        SecurityGroups { groups, members, interfaces }
    }

    /// A rule of interface `ifc`'s groups that allows `p` crossing it in
    /// `dir` (any: they only allow); None: denied. `ifc` is the index in the
    /// list given to [`SecurityGroups::new`] (the host's id).
    #[inline]
    pub fn check(&self, ifc: usize, dir: SgDirection, p: &AclPacket) -> Option<SgMatch> {
        let index = &self.interfaces.get(ifc)?[dir as usize];
        let addr = match dir {
            SgDirection::Inbound => p.src,
            SgDirection::Outbound => p.dst,
        };
        let hit = |r: &Compiled| SgMatch { group: GroupId(r.from_group), rule: r.from_rule };
        for &i in index.covering(p.dport) {
            let r = &index.ported[usize::from(i)];
            // A ported rule is TCP or UDP and covers the port: the protocol and the peer are left.
            if r.proto == p.proto && self.peer_ok(r, addr) {
                return Some(hit(r));
            }
        }
        for r in &index.plain {
            if r.flags & ANY_PROTO == 0 && r.proto != p.proto {
                continue;
            }
            if r.flags & (HAS_TYPE | HAS_CODE) != 0 {
                let Some((t, c)) = p.icmp else { continue };
                if (r.flags & HAS_TYPE != 0 && r.icmp_type != t) || (r.flags & HAS_CODE != 0 && r.icmp_code != c) {
                    continue;
                }
            }
            if self.peer_ok(r, addr) {
                return Some(hit(r));
            }
        }
        None
    }

    #[inline]
    fn peer_ok(&self, r: &Compiled, addr: u32) -> bool {
        if r.flags & GROUP_PEER != 0 {
            self.members(GroupId(r.group)).binary_search(&addr).is_ok()
        } else {
            addr & r.mask == r.net
        }
    }

    pub fn groups(&self) -> &[SecurityGroup] {
        &self.groups
    }

    pub fn group(&self, id: GroupId) -> Option<&SecurityGroup> {
        self.groups.get(usize::from(id.0))
    }

    /// The group named `name`.
    pub fn by_name(&self, name: &str) -> Option<GroupId> {
        self.groups.iter().position(|g| g.name == name).map(|i| GroupId(i as u16))
    }

    /// The private addresses of `id`'s members.
    pub fn members(&self, id: GroupId) -> &[u32] {
        self.members.get(usize::from(id.0)).map_or(&[], Vec::as_slice)
    }

    /// The rules as written, for the tests' oracle of [`Self::check`].
    #[cfg(test)]
    fn peer_matches(&self, peer: &Peer, addr: u32) -> bool {
        match peer {
            Peer::Cidr(p) => p.contains_u32(addr),
            Peer::Group(g) => self.members(*g).binary_search(&addr).is_ok(),
        }
    }

    #[cfg(test)]
    fn rule_matches(&self, r: &SgRule, dir: SgDirection, p: &AclPacket) -> bool {
        if let RuleProtocol::Number(n) = r.protocol
            && n != p.proto
        {
            return false;
        }
        if let Some((lo, hi)) = r.ports {
            match p.dport {
                Some(port) if (lo..=hi).contains(&port) => {}
                _ => return false,
            }
        }
        if r.icmp_type.is_some() || r.icmp_code.is_some() {
            let Some((t, c)) = p.icmp else { return false };
            if r.icmp_type.is_some_and(|x| x != t) || r.icmp_code.is_some_and(|x| x != c) {
                return false;
            }
        }
        let addr = match dir {
            SgDirection::Inbound => p.src,
            SgDirection::Outbound => p.dst,
        };
        self.peer_matches(&r.peer, addr)
    }

    /// The first rule of `groups` (in order) that allows `p` crossing the
    /// interface in `dir`, read from the rules as written: the tests'
    /// oracle for the compiled [`Self::check`] the pipeline uses. None:
    /// denied (no rule allows it).
    #[cfg(test)]
    pub fn evaluate(&self, groups: &[GroupId], dir: SgDirection, p: &AclPacket) -> Option<SgMatch> {
        for &g in groups {
            let Some(group) = self.group(g) else { continue };
            for (i, r) in group.rules(dir).iter().enumerate() {
                if self.rule_matches(r, dir, p) {
                    return Some(SgMatch { group: g, rule: i as u16 });
                }
            }
        }
        None
    }

    /// True when `groups` allow all `proto` traffic to and from everywhere,
    /// both ways: AWS does not track such TCP and UDP flows (ICMP always is).
    pub fn untracked(&self, groups: &[GroupId], proto: u8) -> bool {
        if proto != protocol::TCP && proto != protocol::UDP {
            return false;
        }
        let any = |dir: SgDirection| {
            groups
                .iter()
                .filter_map(|g| self.group(*g))
                .any(|g| g.rules(dir).iter().any(|r| r.allows_everything_of(proto)))
        };
        any(SgDirection::Inbound) && any(SgDirection::Outbound)
    }

    /// A rule in words, as the AWS console lists it.
    pub fn describe(&self, r: &SgRule, dir: SgDirection) -> String {
        let proto = match r.protocol {
            RuleProtocol::All => "all traffic".to_string(),
            RuleProtocol::Number(6) => "tcp".into(),
            RuleProtocol::Number(17) => "udp".into(),
            RuleProtocol::Number(1) => "icmp".into(),
            RuleProtocol::Number(n) => format!("protocol {n}"),
        };
        let ports = match (r.ports, r.icmp_type, r.icmp_code) {
            (Some((lo, hi)), _, _) if lo == hi => format!(" port {lo}"),
            (Some((lo, hi)), _, _) => format!(" ports {lo}-{hi}"),
            (None, Some(t), Some(c)) => format!(" type {t} code {c}"),
            (None, Some(t), None) => format!(" type {t}"),
            _ => String::new(),
        };
        let peer = match &r.peer {
            Peer::Cidr(p) => p.to_string(),
            Peer::Group(g) => format!("group {}", self.group(*g).map_or("?", |g| g.name.as_str())),
        };
        let way = match dir {
            SgDirection::Inbound => "from",
            SgDirection::Outbound => "to",
        };
        format!("{proto}{ports} {way} {peer}")
    }
}

impl fmt::Display for GroupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn ip(s: &str) -> u32 {
        u32::from(s.parse::<Ipv4Addr>().unwrap())
    }

    fn tcp(src: &str, dst: &str, dport: u16) -> AclPacket {
        AclPacket { proto: 6, src: ip(src), dst: ip(dst), dport: Some(dport), icmp: None }
    }

    fn rule(protocol: RuleProtocol, ports: Option<(u16, u16)>, peer: Peer) -> SgRule {
        SgRule { protocol, ports, icmp_type: None, icmp_code: None, peer, description: String::new() }
    }

    /// frontend (10.0.1.10, 10.0.1.11) and backend (10.0.2.20); backend admits
    /// tcp 8080 from frontend members only.
    fn groups() -> SecurityGroups {
        let all_out = rule(RuleProtocol::All, None, Peer::Cidr(Prefix::DEFAULT));
        let frontend = SecurityGroup {
            name: "frontend".into(),
            description: String::new(),
            inbound: vec![rule(RuleProtocol::Number(6), Some((80, 80)), Peer::Cidr(Prefix::DEFAULT))],
            outbound: vec![all_out.clone()],
        };
        let backend = SecurityGroup {
            name: "backend".into(),
            description: String::new(),
            inbound: vec![rule(RuleProtocol::Number(6), Some((8080, 8080)), Peer::Group(GroupId(0)))],
            outbound: vec![all_out],
        };
        SecurityGroups::new(
            vec![frontend, backend],
            &[
                (ip("10.0.1.10"), vec![GroupId(0)]),
                (ip("10.0.1.11"), vec![GroupId(0)]),
                (ip("10.0.2.20"), vec![GroupId(1)]),
            ],
        )
    }

    #[test]
    fn a_group_reference_admits_its_members_and_nobody_else() {
        let g = groups();
        let backend = [GroupId(1)];
        let m = g.evaluate(&backend, SgDirection::Inbound, &tcp("10.0.1.11", "10.0.2.20", 8080));
        assert_eq!(m, Some(SgMatch { group: GroupId(1), rule: 0 }));
        assert_eq!(g.evaluate(&backend, SgDirection::Inbound, &tcp("10.0.3.30", "10.0.2.20", 8080)), None);
        assert_eq!(g.evaluate(&backend, SgDirection::Inbound, &tcp("10.0.1.10", "10.0.2.20", 22)), None);
        let r = &g.group(GroupId(1)).unwrap().inbound[0];
        assert_eq!(g.describe(r, SgDirection::Inbound), "tcp port 8080 from group frontend");
    }

    #[test]
    fn the_compiled_check_agrees_with_the_rules() {
        let g = groups();
        let hosts: [&[GroupId]; 3] = [&[GroupId(0)], &[GroupId(0)], &[GroupId(1)]];
        let srcs = ["10.0.1.10", "10.0.1.11", "10.0.2.20", "198.51.100.10", "10.0.3.30"];
        for (i, gs) in hosts.iter().enumerate() {
            for dir in [SgDirection::Inbound, SgDirection::Outbound] {
                for src in srcs {
                    for port in [22, 80, 8080] {
                        let mut p = tcp(src, src, port);
                        if port == 22 {
                            p.proto = 17;
                        }
                        let (a, b) = (g.check(i, dir, &p), g.evaluate(gs, dir, &p));
                        assert_eq!(a.is_some(), b.is_some(), "{i} {dir:?} {src} {port}");
                    }
                }
            }
            let ping =
                AclPacket { proto: 1, src: ip("10.0.1.10"), dst: ip("10.0.1.10"), dport: None, icmp: Some((8, 0)) };
            assert_eq!(g.check(i, SgDirection::Outbound, &ping), g.evaluate(gs, SgDirection::Outbound, &ping));
        }
    }

    #[test]
    fn the_port_index_finds_every_rule_that_covers_a_port() {
        let ranges = [(0, 65535), (80, 80), (1024, 65535), (443, 8443), (8080, 8080), (65535, 65535), (0, 0)];
        for skip in 0..ranges.len() {
            let rules: Vec<SgRule> = ranges
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != skip)
                .map(|(_, r)| rule(RuleProtocol::Number(6), Some(*r), Peer::Cidr(Prefix::DEFAULT)))
                .collect();
            let g = SecurityGroup {
                name: "g".into(),
                description: String::new(),
                inbound: rules.clone(),
                outbound: vec![],
            };
            let sg = SecurityGroups::new(vec![g], &[(1, vec![GroupId(0)])]);
            for port in [0u16, 1, 79, 80, 81, 443, 1000, 1023, 1024, 8080, 8443, 8444, 65534, 65535] {
                let p = tcp("198.51.100.10", "10.0.1.10", port);
                let want: Vec<u16> = rules
                    .iter()
                    .enumerate()
                    .filter(|(_, r)| r.ports.is_some_and(|(lo, hi)| lo <= port && port <= hi))
                    .map(|(i, _)| i as u16)
                    .collect();
                let got = sg.check(0, SgDirection::Inbound, &p).map(|m| m.rule);
                assert_eq!(got.is_some(), !want.is_empty(), "port {port} without {skip}");
                if let Some(r) = got {
                    assert!(want.contains(&r), "port {port}: rule {r} does not cover it");
                }
                let covering: Vec<u16> = sg.interfaces[0][0].candidates(Some(port)).map(|c| c.from_rule).collect();
                assert_eq!(covering, want, "port {port} without {skip}");
            }
        }
    }

    #[test]
    fn the_rules_of_every_group_are_unioned() {
        let g = groups();
        let both = [GroupId(1), GroupId(0)];
        let m = g.evaluate(&both, SgDirection::Inbound, &tcp("198.51.100.10", "10.0.2.20", 80));
        assert_eq!(m, Some(SgMatch { group: GroupId(0), rule: 0 }));
    }

    #[test]
    fn only_allow_everything_both_ways_is_untracked() {
        let g = groups();
        assert!(!g.untracked(&[GroupId(0)], 6), "inbound allows port 80 only");
        let open = SecurityGroup {
            name: "open".into(),
            description: String::new(),
            inbound: vec![rule(RuleProtocol::Number(6), Some((0, 65535)), Peer::Cidr(Prefix::DEFAULT))],
            outbound: vec![rule(RuleProtocol::All, None, Peer::Cidr(Prefix::DEFAULT))],
        };
        let g = SecurityGroups::new(vec![open], &[]);
        assert!(g.untracked(&[GroupId(0)], 6));
        assert!(!g.untracked(&[GroupId(0)], 17), "no inbound UDP rule");
        assert!(!g.untracked(&[GroupId(0)], 1), "ICMP is always tracked");
    }

    #[test]
    fn the_default_group_admits_its_members() {
        let g = SecurityGroups::new(
            vec![SecurityGroup::vpc_default(GroupId(0))],
            &[(ip("10.0.1.10"), vec![GroupId(0)]), (ip("10.0.2.20"), vec![GroupId(0)])],
        );
        let d = [GroupId(0)];
        assert!(g.evaluate(&d, SgDirection::Inbound, &tcp("10.0.1.10", "10.0.2.20", 5432)).is_some());
        assert!(g.evaluate(&d, SgDirection::Inbound, &tcp("198.51.100.10", "10.0.2.20", 80)).is_none());
        assert!(g.evaluate(&d, SgDirection::Outbound, &tcp("10.0.2.20", "198.51.100.10", 80)).is_some());
    }
}
