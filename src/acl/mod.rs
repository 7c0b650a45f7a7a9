//! Network ACLs with AWS semantics: stateless, numbered rules evaluated
//! lowest number first, the first match decides, and a final `*` rule denies
//! whatever no rule matched. Applied where traffic crosses a subnet boundary,
//! never between hosts of one subnet.
//!
//! Inbound rules match the packet's source against their CIDR, outbound rules
//! its destination; a port range always matches the destination port. Being
//! stateless, an ACL must allow replies explicitly: a client's replies come
//! back to its ephemeral port (1024-65535 for the NAT gateway).

use crate::route::Prefix;
use crate::wire::ipv4::protocol;
use std::fmt;

/// Allow or deny.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuleAction {
    Allow,
    Deny,
}

/// The protocol a rule matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuleProtocol {
    /// Every protocol (AWS `-1`).
    All,
    /// One IP protocol number (6 = TCP, 17 = UDP, 1 = ICMP).
    Number(u8),
}

/// Which traffic a rule list applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AclDirection {
    /// Entering the subnet.
    Inbound,
    /// Leaving the subnet.
    Outbound,
}

/// One numbered rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AclRule {
    /// 1 to 32766; lower is evaluated first.
    pub number: u16,
    pub action: RuleAction,
    pub protocol: RuleProtocol,
    /// Source CIDR for inbound rules, destination CIDR for outbound rules.
    pub cidr: Prefix,
    /// Destination port range, inclusive (TCP and UDP rules only).
    pub ports: Option<(u16, u16)>,
    /// ICMP type and code (None = any), for ICMP rules.
    pub icmp_type: Option<u8>,
    pub icmp_code: Option<u8>,
}

/// The fields of a packet that rules look at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AclPacket {
    pub proto: u8,
    pub src: u32,
    pub dst: u32,
    /// Destination port, if the packet has one (TCP, UDP, first fragment).
    pub dport: Option<u16>,
    /// ICMP type and code, for ICMP.
    pub icmp: Option<(u8, u8)>,
}

/// The decision and the rule that made it (None = the final `*` rule).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AclVerdict {
    pub action: RuleAction,
    pub rule: Option<u16>,
}

impl AclRule {
    fn matches(&self, dir: AclDirection, p: &AclPacket) -> bool {
        if let RuleProtocol::Number(n) = self.protocol
            && n != p.proto
        {
            return false;
        }
        let addr = match dir {
            AclDirection::Inbound => p.src,
            AclDirection::Outbound => p.dst,
        };
        if !self.cidr.contains_u32(addr) {
            return false;
        }
        if let Some((lo, hi)) = self.ports {
            match p.dport {
                Some(port) if (lo..=hi).contains(&port) => {}
                _ => return false,
            }
        }
        if self.icmp_type.is_some() || self.icmp_code.is_some() {
            let Some((t, c)) = p.icmp else { return false };
            if self.icmp_type.is_some_and(|x| x != t) || self.icmp_code.is_some_and(|x| x != c) {
                return false;
            }
        }
        true
    }
}

/// A network ACL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Acl {
    pub name: String,
    inbound: Vec<AclRule>,
    outbound: Vec<AclRule>,
    /// Both lists are the single rule "100 allow all" (skip the walk).
    allow_all: bool,
}

impl Acl {
    /// An ACL from its rules (any order; sorted here by number).
    pub fn new(name: &str, mut inbound: Vec<AclRule>, mut outbound: Vec<AclRule>) -> Acl {
        inbound.sort_by_key(|r| r.number);
        outbound.sort_by_key(|r| r.number);
        let all = |v: &[AclRule]| {
            v.first().is_some_and(|r| {
                r.action == RuleAction::Allow
                    && r.protocol == RuleProtocol::All
                    && r.cidr.is_default()
                    && r.ports.is_none()
                    && r.icmp_type.is_none()
                    && r.icmp_code.is_none()
            })
        };
        let allow_all = all(&inbound) && all(&outbound);
        Acl { name: name.to_string(), inbound, outbound, allow_all }
    }

    /// The default ACL of a VPC: rule 100 allows all traffic both ways.
    pub fn default_allow(name: &str) -> Acl {
        let rule = AclRule {
            number: 100,
            action: RuleAction::Allow,
            protocol: RuleProtocol::All,
            cidr: Prefix::DEFAULT,
            ports: None,
            icmp_type: None,
            icmp_code: None,
        };
        Acl::new(name, vec![rule.clone()], vec![rule])
    }

    /// A new custom ACL: no rules, so the `*` rule denies everything.
    pub fn deny_all(name: &str) -> Acl {
        Acl::new(name, Vec::new(), Vec::new())
    }

    pub fn rules(&self, dir: AclDirection) -> &[AclRule] {
        match dir {
            AclDirection::Inbound => &self.inbound,
            AclDirection::Outbound => &self.outbound,
        }
    }

    /// True when the ACL allows everything both ways.
    pub fn is_allow_all(&self) -> bool {
        self.allow_all
    }

    /// Evaluates the rules for `dir`: lowest number first, first match wins.
    #[inline]
    pub fn evaluate(&self, dir: AclDirection, p: &AclPacket) -> AclVerdict {
        if self.allow_all {
            return AclVerdict { action: RuleAction::Allow, rule: self.rules(dir).first().map(|r| r.number) };
        }
        for r in self.rules(dir) {
            if r.matches(dir, p) {
                return AclVerdict { action: r.action, rule: Some(r.number) };
            }
        }
        AclVerdict { action: RuleAction::Deny, rule: None }
    }

    /// Warnings about rules that look like a stateless-ACL mistake: inbound
    /// TCP or UDP allowed only to low ports, so replies to the subnet's own
    /// outbound connections (to ephemeral ports 1024-65535) would be denied.
    pub fn lint(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        for proto in [protocol::TCP, protocol::UDP] {
            let allows_outbound = self.outbound.iter().any(|r| {
                r.action == RuleAction::Allow
                    && match r.protocol {
                        RuleProtocol::All => true,
                        RuleProtocol::Number(p) => p == proto,
                    }
            });
            if !allows_outbound {
                continue;
            }
            // Probe three ephemeral ports from anywhere: all denied means replies are lost.
            let denied = [1024u16, 32768, 61000].iter().all(|&port| {
                let p = AclPacket {
                    proto,
                    src: u32::from(std::net::Ipv4Addr::new(198, 51, 100, 10)),
                    dst: 0,
                    dport: Some(port),
                    icmp: None,
                };
                self.evaluate(AclDirection::Inbound, &p).action == RuleAction::Deny
            });
            if denied {
                let name = if proto == protocol::TCP { "TCP" } else { "UDP" };
                warnings.push(format!(
                    "network ACL `{}` allows outbound {name} but denies inbound {name} to the ephemeral ports 1024-65535: \
                     replies to connections from this subnet will be dropped (ACLs are stateless). \
                     Add an inbound rule such as `{{ rule = 200, action = \"allow\", protocol = \"{}\", cidr = \"0.0.0.0/0\", ports = \"1024-65535\" }}`",
                    self.name,
                    name.to_lowercase()
                ));
            }
        }
        warnings
    }
}

impl fmt::Display for RuleAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RuleAction::Allow => "ALLOW",
            RuleAction::Deny => "DENY",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn rule(number: u16, action: RuleAction, proto: RuleProtocol, cidr: &str, ports: Option<(u16, u16)>) -> AclRule {
        AclRule {
            number,
            action,
            protocol: proto,
            cidr: cidr.parse().unwrap(),
            ports,
            icmp_type: None,
            icmp_code: None,
        }
    }

    fn tcp(src: &str, dport: u16) -> AclPacket {
        AclPacket {
            proto: 6,
            src: u32::from(src.parse::<Ipv4Addr>().unwrap()),
            dst: u32::from(Ipv4Addr::new(10, 0, 1, 10)),
            dport: Some(dport),
            icmp: None,
        }
    }

    #[test]
    fn lowest_number_first_match_wins() {
        let acl = Acl::new(
            "web",
            vec![
                rule(200, RuleAction::Allow, RuleProtocol::Number(6), "0.0.0.0/0", Some((80, 80))),
                rule(100, RuleAction::Deny, RuleProtocol::All, "198.51.100.66/32", None),
            ],
            vec![],
        );
        let v = acl.evaluate(AclDirection::Inbound, &tcp("198.51.100.66", 80));
        assert_eq!(v, AclVerdict { action: RuleAction::Deny, rule: Some(100) });
        let v = acl.evaluate(AclDirection::Inbound, &tcp("198.51.100.10", 80));
        assert_eq!(v, AclVerdict { action: RuleAction::Allow, rule: Some(200) });
        let v = acl.evaluate(AclDirection::Inbound, &tcp("198.51.100.10", 22));
        assert_eq!(v, AclVerdict { action: RuleAction::Deny, rule: None }, "the * rule");
    }

    #[test]
    fn defaults() {
        let p = tcp("1.2.3.4", 5);
        assert_eq!(Acl::default_allow("d").evaluate(AclDirection::Inbound, &p).action, RuleAction::Allow);
        assert_eq!(Acl::deny_all("c").evaluate(AclDirection::Outbound, &p).action, RuleAction::Deny);
    }

    #[test]
    fn icmp_type_and_code() {
        let mut r = rule(10, RuleAction::Deny, RuleProtocol::Number(1), "0.0.0.0/0", None);
        r.icmp_type = Some(8);
        let acl = Acl::new("x", vec![r, rule(20, RuleAction::Allow, RuleProtocol::All, "0.0.0.0/0", None)], vec![]);
        let ping = AclPacket { proto: 1, src: 1, dst: 2, dport: None, icmp: Some((8, 0)) };
        let reply = AclPacket { icmp: Some((0, 0)), ..ping };
        assert_eq!(acl.evaluate(AclDirection::Inbound, &ping).action, RuleAction::Deny);
        assert_eq!(acl.evaluate(AclDirection::Inbound, &reply).action, RuleAction::Allow);
    }

    #[test]
    fn port_rule_does_not_match_portless_packets() {
        let acl = Acl::new(
            "x",
            vec![rule(1, RuleAction::Allow, RuleProtocol::Number(6), "0.0.0.0/0", Some((1, 65535)))],
            vec![],
        );
        let frag = AclPacket { dport: None, ..tcp("1.2.3.4", 0) };
        assert_eq!(acl.evaluate(AclDirection::Inbound, &frag).action, RuleAction::Deny);
    }

    #[test]
    fn lint_spots_missing_ephemeral_range() {
        let out = vec![rule(100, RuleAction::Allow, RuleProtocol::All, "0.0.0.0/0", None)];
        let bad = Acl::new(
            "private",
            vec![rule(100, RuleAction::Allow, RuleProtocol::Number(6), "0.0.0.0/0", Some((22, 22)))],
            out.clone(),
        );
        let w = bad.lint();
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(w[0].contains("ephemeral"));
        let good = Acl::new(
            "private",
            vec![rule(100, RuleAction::Allow, RuleProtocol::All, "0.0.0.0/0", Some((1024, 65535)))],
            out,
        );
        assert!(good.lint().is_empty());
    }
}
