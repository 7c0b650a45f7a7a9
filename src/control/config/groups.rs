//! The config pass for security groups: `[[security_groups]]` sections and
//! each host's `security_groups`, checked as AWS checks them.

use super::{Ctx, S, rule_ports, rule_protocol};
use crate::acl::RuleProtocol;
use crate::pipeline::topology::VpcId;
use crate::route::Prefix;
use crate::sg::{GroupId, MAX_GROUPS_PER_INTERFACE, MAX_RULES, Peer, SecurityGroup, SgDirection, SgRule};
use serde::Deserialize;
use std::collections::HashMap;
use toml::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SgSection {
    name: S,
    /// Its VPC (default: the `[vpc]` section's).
    vpc: Option<S>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    inbound: Vec<Spanned<SgRuleSection>>,
    /// Absent: a new group's outbound rule, all traffic to everywhere (AWS).
    outbound: Option<Vec<Spanned<SgRuleSection>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SgRuleSection {
    protocol: Option<S>,
    ports: Option<S>,
    /// -1: any (AWS's way of writing it).
    icmp_type: Option<Spanned<i32>>,
    icmp_code: Option<Spanned<i32>>,
    source: Option<S>,
    destination: Option<S>,
    description: Option<String>,
    /// Refused unless "allow": groups have no deny rules.
    action: Option<S>,
    /// Refused: group rules have no numbers.
    rule: Option<Spanned<i64>>,
}

/// What the pass produces: the groups (each VPC's `default` first, in VPC
/// order) and each host's groups, in host order. None when the file declares
/// no group and no host names one.
pub(super) type Compiled = Option<(Vec<SecurityGroup>, Vec<Vec<GroupId>>)>;

/// Group names, each VPC's apart: a host or a rule names groups of its own VPC.
type Index = HashMap<(VpcId, String), GroupId>;

pub(super) fn compile(
    cx: &Ctx<'_>,
    vpcs: &super::vpcs::Vpcs,
    sections: &[SgSection],
    hosts: &[Option<Spanned<Vec<S>>>],
    host_vpcs: &[VpcId],
) -> Result<Compiled, crate::control::config::ConfigError> {
    if sections.is_empty() && hosts.iter().all(Option::is_none) {
        return Ok(None);
    }
    // Names first: a rule may name any group of its VPC, defined before it or after.
    let n = vpcs.infos.len();
    let mut index: Index = (0..n).map(|v| ((VpcId(v as u16), "default".to_string()), GroupId(v as u16))).collect();
    let mut order: Vec<Option<&SgSection>> = vec![None; n];
    let mut group_vpcs: Vec<VpcId> = (0..n).map(|v| VpcId(v as u16)).collect();
    for s in sections {
        let name = s.name.get_ref();
        let vpc = vpcs.of(cx, s.vpc.as_ref())?;
        if !super::name_ok(name) {
            return Err(cx.err(
                s.name.span(),
                format!("security group name `{name}` is not valid"),
                "use up to 32 letters, digits, `-` or `_`",
            ));
        }
        if name == "default" {
            if order[vpc.index()].is_some() {
                return Err(cx.err(
                    s.name.span(),
                    format!("VPC {}'s default group is defined twice", vpcs.name(vpc)),
                    "keep one `default` group a VPC",
                ));
            }
            order[vpc.index()] = Some(s);
            continue;
        }
        if index.contains_key(&(vpc, name.clone())) {
            return Err(cx.err(
                s.name.span(),
                format!("the security group name `{name}` is already used in VPC {}", vpcs.name(vpc)),
                "give every group of a VPC its own name",
            ));
        }
        index.insert((vpc, name.clone()), GroupId(order.len() as u16));
        order.push(Some(s));
        group_vpcs.push(vpc);
    }
    let mut groups = Vec::new();
    for (i, s) in order.iter().enumerate() {
        let id = GroupId(i as u16);
        let Some(s) = s else {
            groups.push(SecurityGroup::vpc_default(id));
            continue;
        };
        let vpc = group_vpcs[i];
        let inbound = rules(cx, &index, vpc, &s.inbound, SgDirection::Inbound)?;
        let outbound = match &s.outbound {
            Some(r) => rules(cx, &index, vpc, r, SgDirection::Outbound)?,
            None => vec![SgRule::all(Peer::Cidr(Prefix::DEFAULT), "all traffic (a new group's default)")],
        };
        groups.push(SecurityGroup {
            name: s.name.get_ref().clone(),
            description: s.description.clone().unwrap_or_default(),
            inbound,
            outbound,
        });
    }
    let mut per_host = Vec::new();
    for (h, vpc) in hosts.iter().zip(host_vpcs) {
        let vpc = *vpc;
        let Some(list) = h else {
            per_host.push(vec![GroupId(vpc.0)]);
            continue;
        };
        if list.get_ref().is_empty() || list.get_ref().len() > MAX_GROUPS_PER_INTERFACE {
            return Err(cx.err(
                list.span(),
                format!("an interface carries 1 to {MAX_GROUPS_PER_INTERFACE} security groups"),
                "name one to five groups, or leave `security_groups` out for the VPC's default group",
            ));
        }
        let mut ids = Vec::new();
        for n in list.get_ref() {
            let id = *index.get(&(vpc, n.get_ref().clone())).ok_or_else(|| {
                cx.err(
                    n.span(),
                    format!("no security group named `{}` in the host's VPC {}", n.get_ref(), vpcs.name(vpc)),
                    format!(
                        "define [[security_groups]] name = \"{}\" (with vpc = \"{}\"), or use one of: {}",
                        n.get_ref(),
                        vpcs.name(vpc),
                        known(&index, vpc)
                    ),
                )
            })?;
            if ids.contains(&id) {
                return Err(cx.err(n.span(), format!("group `{}` is named twice", n.get_ref()), "name it once"));
            }
            ids.push(id);
        }
        per_host.push(ids);
    }
    Ok(Some((groups, per_host)))
}

fn known(index: &Index, vpc: VpcId) -> String {
    let mut v: Vec<&str> = index.keys().filter(|(v, _)| *v == vpc).map(|(_, n)| n.as_str()).collect();
    v.sort();
    v.join(", ")
}

fn rules(
    cx: &Ctx<'_>,
    index: &Index,
    vpc: VpcId,
    list: &[Spanned<SgRuleSection>],
    dir: SgDirection,
) -> Result<Vec<SgRule>, crate::control::config::ConfigError> {
    if list.len() > MAX_RULES {
        let span = list[MAX_RULES].span();
        return Err(cx.err(
            span,
            format!("more than {MAX_RULES} {} rules in one group", dir.name()),
            "AWS allows 60 rules a direction; split them over several groups",
        ));
    }
    list.iter().map(|r| rule(cx, index, vpc, r, dir)).collect()
}

fn rule(
    cx: &Ctx<'_>,
    index: &Index,
    vpc: VpcId,
    spanned: &Spanned<SgRuleSection>,
    dir: SgDirection,
) -> Result<SgRule, crate::control::config::ConfigError> {
    let r = spanned.get_ref();
    if let Some(a) = &r.action
        && !a.get_ref().eq_ignore_ascii_case("allow")
    {
        return Err(cx.err(
            a.span(),
            format!("security groups have only allow rules, not `{}`", a.get_ref()),
            "remove the rule (what no rule allows is denied), or deny it with a network ACL rule",
        ));
    }
    if let Some(n) = &r.rule {
        return Err(cx.err(
            n.span(),
            "security group rules have no numbers (all of them apply, in any order)",
            "remove `rule`; numbered rules belong to network ACLs",
        ));
    }
    let (peer, wrong, key) = match dir {
        SgDirection::Inbound => (&r.source, &r.destination, "source"),
        SgDirection::Outbound => (&r.destination, &r.source, "destination"),
    };
    if let Some(w) = wrong {
        return Err(cx.err(
            w.span(),
            format!("{} rules name a `{key}`: the other end is the host itself", dir.name()),
            format!("write `{key} = \"{}\"`", w.get_ref()),
        ));
    }
    let Some(peer) = peer else {
        return Err(cx.err(
            spanned.span(),
            format!("this {} rule has no `{key}`", dir.name()),
            format!("add `{key} = \"0.0.0.0/0\"`, a CIDR, or a security group's name"),
        ));
    };
    let peer = if peer.get_ref().contains('/') {
        Peer::Cidr(cx.prefix(peer, &format!("rule {key}"))?)
    } else {
        Peer::Group(*index.get(&(vpc, peer.get_ref().clone())).ok_or_else(|| {
            cx.err(
                peer.span(),
                format!("`{}` is neither a CIDR block nor a security group of this VPC", peer.get_ref()),
                format!("write a CIDR such as \"203.0.113.0/24\", or one of: {}", known(index, vpc)),
            )
        })?)
    };
    let protocol = match &r.protocol {
        None => RuleProtocol::All,
        Some(p) => rule_protocol(cx, p)?,
    };
    let ports = r.ports.as_ref().map(|p| rule_ports(cx, p, protocol)).transpose()?;
    let icmp = |v: &Option<Spanned<i32>>, what: &str| -> Result<Option<u8>, crate::control::config::ConfigError> {
        let Some(v) = v else { return Ok(None) };
        if protocol != RuleProtocol::Number(1) {
            return Err(cx.err(v.span(), format!("{what} applies to ICMP rules only"), "set protocol = \"icmp\""));
        }
        match *v.get_ref() {
            -1 => Ok(None),
            n @ 0..=255 => Ok(Some(n as u8)),
            n => Err(cx.err(v.span(), format!("{what} {n} is out of range"), "write 0 to 255, or -1 for any")),
        }
    };
    let icmp_type = icmp(&r.icmp_type, "icmp_type")?;
    let icmp_code = icmp(&r.icmp_code, "icmp_code")?;
    Ok(SgRule { protocol, ports, icmp_type, icmp_code, peer, description: r.description.clone().unwrap_or_default() })
}
