//! The config pass for the VPCs themselves: the `[vpc]` section (the first
//! VPC), `[[vpcs]]` (more of them) and `[[peerings]]` (VPC peering
//! connections), checked as AWS checks them. Every later pass scopes what it
//! reads to a VPC through [`Vpcs::of`].

use super::{ConfigError, Ctx, S, VpcSection, line_col, name_ok, size_ok};
use crate::pipeline::topology::{Peering, TransitGateway, VpcId, VpcInfo};
use crate::route::{PeeringId, Prefix};
use serde::Deserialize;
use std::collections::HashMap;
use std::ops::Range;

/// A `[[vpcs]]` section: a further VPC.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct MoreVpcSection {
    name: S,
    cidr: S,
    /// Its id (`vpc-...`; default: from the name).
    id: Option<S>,
}

/// A `[[peerings]]` section: a VPC peering connection.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PeeringSection {
    /// Its id, the route target (`pcx-...`).
    pub name: S,
    /// The two VPCs, by name.
    vpcs: toml::Spanned<Vec<S>>,
}

/// The VPCs and their peerings, and the names they go by.
pub(super) struct Vpcs {
    pub infos: Vec<VpcInfo>,
    pub peerings: Vec<Peering>,
    names: HashMap<String, VpcId>,
    pub peering_names: HashMap<String, PeeringId>,
    /// Where each VPC's CIDR is written.
    spans: Vec<Range<usize>>,
}

impl Vpcs {
    /// The VPC a section names with `vpc = "..."` (the first VPC without one).
    pub fn of(&self, cx: &Ctx<'_>, name: Option<&S>) -> Result<VpcId, ConfigError> {
        let Some(n) = name else { return Ok(VpcId::FIRST) };
        self.names.get(n.get_ref()).copied().ok_or_else(|| {
            cx.err(
                n.span(),
                format!("no VPC named `{}`", n.get_ref()),
                format!("use one of: {} (the [vpc] section's name, or a [[vpcs]] name)", self.known()),
            )
        })
    }

    /// The VPC's name.
    pub fn name(&self, v: VpcId) -> &str {
        self.infos.get(v.index()).map_or("?", |i| i.name.as_str())
    }

    /// The VPC's CIDR block.
    pub fn cidr(&self, v: VpcId) -> Prefix {
        self.infos[v.index()].cidr
    }

    /// True when `ip` is inside any VPC.
    pub fn inside_any(&self, ip: std::net::Ipv4Addr) -> Option<&VpcInfo> {
        self.infos.iter().find(|v| v.cidr.contains(ip))
    }

    fn known(&self) -> String {
        self.infos.iter().map(|i| i.name.as_str()).collect::<Vec<_>>().join(", ")
    }
}

/// The pass: names, CIDRs and peerings.
pub(super) fn compile(
    cx: &Ctx<'_>,
    first: &VpcSection,
    more: &[MoreVpcSection],
    peerings: &[PeeringSection],
) -> Result<Vpcs, ConfigError> {
    let mut vpcs = Vpcs {
        infos: Vec::new(),
        peerings: Vec::new(),
        names: HashMap::new(),
        peering_names: HashMap::new(),
        spans: Vec::new(),
    };
    let first_name = first.name.clone().unwrap_or_else(|| "vpc".into());
    let sections = std::iter::once((None, &first.cidr, first.id.as_ref(), first_name.clone()))
        .chain(more.iter().map(|m| (Some(&m.name), &m.cidr, m.id.as_ref(), m.name.get_ref().clone())));
    for (name_span, cidr_s, id, name) in sections {
        let cidr = cx.prefix(cidr_s, "VPC CIDR")?;
        if !size_ok(&cidr) {
            return Err(cx.err(
                cidr_s.span(),
                format!("VPC CIDR {cidr} is /{}; AWS allows /16 to /28", cidr.prefix_len()),
                "use a block between /16 and /28, e.g. \"10.0.0.0/16\"",
            ));
        }
        if let Some(n) = name_span {
            if !name_ok(&name) {
                return Err(cx.err(
                    n.span(),
                    format!("VPC name `{name}` is not valid"),
                    "use up to 32 letters, digits, `-` or `_`",
                ));
            }
            if vpcs.names.contains_key(&name) {
                return Err(cx.err(
                    n.span(),
                    format!("the VPC name `{name}` is already used"),
                    "give every VPC its own name ([vpc] name = ... names the first)",
                ));
            }
        }
        let id = super::endpoints::vpc_id(cx, id, &name)?;
        if let Some(other) = vpcs.infos.iter().find(|v| v.id == id) {
            let span = name_span.map_or(cidr_s.span(), |n| n.span());
            return Err(cx.err(span, format!("VPC id {id} is also {}'s", other.name), "give every VPC its own id"));
        }
        vpcs.names.insert(name.clone(), VpcId(vpcs.infos.len() as u16));
        vpcs.spans.push(cidr_s.span());
        vpcs.infos.push(VpcInfo { name, id, cidr, zone: 0 });
    }
    if vpcs.infos.len() > 64 {
        return Err(cx.err(more[63].name.span(), "more than 64 VPCs", "split the lab into several files"));
    }
    for p in peerings {
        let name = p.name.get_ref();
        super::prefixed_name(cx, &p.name, "pcx-", "peering", "a peering id", "pcx-app-shared")?;
        if vpcs.peering_names.contains_key(name) {
            return Err(cx.err(p.name.span(), format!("peering `{name}` is defined twice"), "keep one"));
        }
        let [a, b] = match p.vpcs.get_ref().as_slice() {
            [a, b] => [vpcs.of(cx, Some(a))?, vpcs.of(cx, Some(b))?],
            _ => {
                return Err(cx.err(
                    p.vpcs.span(),
                    "a peering connects exactly two VPCs",
                    "write vpcs = [\"one\", \"other\"]",
                ));
            }
        };
        if a == b {
            return Err(cx.err(p.vpcs.span(), "a VPC cannot peer with itself", "name two different VPCs"));
        }
        let (ca, cb) = (vpcs.cidr(a), vpcs.cidr(b));
        if ca.overlaps(&cb) {
            return Err(cx.err(
                p.vpcs.span(),
                format!(
                    "VPCs {} ({ca}) and {} ({cb}) overlap: AWS refuses a peering between overlapping CIDR blocks",
                    vpcs.name(a),
                    vpcs.name(b)
                ),
                "give one of them a block that does not overlap, or connect them otherwise",
            ));
        }
        if let Some(q) = vpcs.peerings.iter().find(|q| q.other(a) == Some(b)) {
            return Err(cx.err(
                p.vpcs.span(),
                format!("{} already peers {} with {}", q.name, vpcs.name(a), vpcs.name(b)),
                "AWS allows one peering connection between two VPCs",
            ));
        }
        vpcs.peering_names.insert(name.clone(), vpcs.peerings.len() as PeeringId);
        vpcs.peerings.push(Peering { name: name.clone(), vpcs: [a, b] });
    }
    Ok(vpcs)
}

/// Two VPCs that peerings or transit gateways connect, directly or through
/// others (one connection tracking zone), must not overlap: an address would
/// be ambiguous to their tracker (a peer's peer may overlap on AWS; natgw
/// refuses it for now).
pub(super) fn check_zones(cx: &Ctx<'_>, vpcs: &Vpcs, tgws: &[TransitGateway]) -> Result<(), ConfigError> {
    let zones = crate::pipeline::topology::zones(&vpcs.infos, &vpcs.peerings, tgws);
    for (i, a) in vpcs.infos.iter().enumerate() {
        for (j, b) in vpcs.infos.iter().enumerate().skip(i + 1) {
            if zones[i] == zones[j] && a.cidr.overlaps(&b.cidr) {
                let (line, _) = line_col(cx.src, vpcs.spans[i].start);
                return Err(cx.err(
                    vpcs.spans[j].clone(),
                    format!(
                        "VPC {} ({}) overlaps VPC {} ({}, line {line}), and peerings or transit gateways connect them through a third",
                        b.name, b.cidr, a.name, a.cidr
                    ),
                    "natgw does not yet tell apart overlapping VPCs that share a peer or a hub: give one another block",
                ));
            }
        }
    }
    Ok(())
}
