//! The config pass for transit gateways: `[[transit_gateways]]` with their
//! VPC attachments and `[[transit_gateways.route_tables]]` (associations,
//! propagations, static and blackhole routes), checked as AWS checks them.
//! Runs after the subnets (an attachment names one) and before route
//! targets are resolved (a VPC route table may target `tgw-...`).

use super::vpcs::Vpcs;
use super::{ConfigError, Ctx, S, line_col, name_ok};
use crate::pipeline::topology::Subnet;
use crate::pipeline::transit::{
    Attachment, AttachmentId, RouteType, TransitGateway, TransitRoute, TransitTable, TransitTarget,
};
use serde::Deserialize;
use std::collections::HashMap;
use std::ops::Range;

/// A `[[transit_gateways]]` section.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TgwSection {
    /// Its id, the route target (`tgw-...`).
    pub name: S,
    #[serde(default)]
    attachments: Vec<AttachmentSection>,
    /// Its route tables; none: AWS's default route table, with every
    /// attachment associated and propagating.
    #[serde(default)]
    route_tables: Vec<TableSection>,
}

/// `attachments = [{ vpc = "...", subnet = "..." }]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AttachmentSection {
    /// `tgw-attach-...` (default: tgw-attach- and the VPC's name).
    name: Option<S>,
    vpc: S,
    /// The subnet the transit gateway's interface sits in.
    subnet: S,
}

/// A `[[transit_gateways.route_tables]]` section.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TableSection {
    name: S,
    /// Attachments (by name or by their VPC's name) whose traffic this table routes.
    #[serde(default)]
    associations: Vec<S>,
    /// Attachments whose VPC blocks become routes of this table.
    #[serde(default)]
    propagations: Vec<S>,
    #[serde(default)]
    routes: Vec<RouteSection>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RouteSection {
    destination: S,
    /// An attachment (by name or its VPC's name), or `blackhole`.
    target: S,
}

/// The pass. Warnings go to `warnings`.
pub(super) fn compile(
    cx: &Ctx<'_>,
    sections: &[TgwSection],
    vpcs: &Vpcs,
    subnets: &[Subnet],
    subnet_index: &HashMap<String, usize>,
    warnings: &mut Vec<String>,
) -> Result<Vec<TransitGateway>, ConfigError> {
    let mut tgws: Vec<TransitGateway> = Vec::new();
    for g in sections {
        let name = g.name.get_ref();
        super::prefixed_name(cx, &g.name, "tgw-", "transit gateway", "a transit gateway id", "tgw-hub")?;
        if tgws.iter().any(|t| &t.name == name) {
            return Err(cx.err(g.name.span(), format!("transit gateway `{name}` is defined twice"), "keep one"));
        }
        let attachments = attachments(cx, g, vpcs, subnets, subnet_index)?;
        let mut tgw = TransitGateway { name: name.clone(), attachments, tables: Vec::new() };
        if g.route_tables.is_empty() {
            // AWS's default route table: every attachment associated with it
            // and propagating into it.
            let routes = tgw.attachments.iter().enumerate().map(|(i, a)| propagated(vpcs, a, i)).collect();
            tgw.tables.push(TransitTable::new("tgw-rtb-default", routes));
            for a in &mut tgw.attachments {
                a.table = Some(0);
            }
        }
        let mut associated: HashMap<AttachmentId, Range<usize>> = HashMap::new();
        for t in &g.route_tables {
            let tname = t.name.get_ref();
            if !name_ok(tname) {
                return Err(cx.err(
                    t.name.span(),
                    format!("transit route table name `{tname}` is not valid"),
                    "use up to 32 letters, digits, `-` or `_` (e.g. \"tgw-rtb-spokes\")",
                ));
            }
            if tgw.tables.iter().any(|x| x.name == *tname) {
                return Err(cx.err(
                    t.name.span(),
                    format!("{name} already has a route table named `{tname}`"),
                    "give every route table of a transit gateway its own name",
                ));
            }
            let ti = tgw.tables.len();
            for r in &t.associations {
                let a = attachment_ref(cx, &tgw, vpcs, r)?;
                if let Some(prev) = associated.insert(a, r.span()) {
                    let (line, _) = line_col(cx.src, prev.start);
                    return Err(cx.err(
                        r.span(),
                        format!(
                            "attachment {} is already associated on line {line}",
                            tgw.attachments[usize::from(a)].name
                        ),
                        "AWS associates an attachment with exactly one transit route table: keep one association",
                    ));
                }
                tgw.attachments[usize::from(a)].table = Some(ti);
            }
            let mut routes = Vec::new();
            let mut seen: HashMap<AttachmentId, ()> = HashMap::new();
            for r in &t.propagations {
                let a = attachment_ref(cx, &tgw, vpcs, r)?;
                if seen.insert(a, ()).is_some() {
                    return Err(cx.err(r.span(), "this attachment already propagates into this table", "name it once"));
                }
                routes.push(propagated(vpcs, &tgw.attachments[usize::from(a)], usize::from(a)));
            }
            let mut statics: HashMap<crate::route::Prefix, Range<usize>> = HashMap::new();
            for r in &t.routes {
                let destination = cx.prefix(&r.destination, "transit route destination")?;
                if let Some(prev) = statics.insert(destination, r.destination.span()) {
                    let (line, _) = line_col(cx.src, prev.start);
                    return Err(cx.err(
                        r.destination.span(),
                        format!("route table `{tname}` already has a static route to {destination} (line {line})"),
                        "one static route per destination",
                    ));
                }
                let target = if r.target.get_ref() == "blackhole" {
                    TransitTarget::Blackhole
                } else {
                    TransitTarget::Attachment(attachment_ref(cx, &tgw, vpcs, &r.target)?)
                };
                routes.push(TransitRoute { destination, target, kind: RouteType::Static });
            }
            tgw.tables.push(TransitTable::new(tname, routes));
        }
        for a in tgw.attachments.iter().filter(|a| a.table.is_none()) {
            warnings.push(format!(
                "{}: attachment {} (VPC {}) is associated with no route table, so what its VPC sends to the transit gateway is dropped (transit_no_route); add it to a route table's `associations`",
                tgw.name,
                a.name,
                vpcs.name(a.vpc)
            ));
        }
        tgws.push(tgw);
    }
    Ok(tgws)
}

/// The attachments of one transit gateway: one per VPC, in a subnet of that
/// VPC, VPCs that do not overlap.
fn attachments(
    cx: &Ctx<'_>,
    g: &TgwSection,
    vpcs: &Vpcs,
    subnets: &[Subnet],
    subnet_index: &HashMap<String, usize>,
) -> Result<Vec<Attachment>, ConfigError> {
    let mut out: Vec<Attachment> = Vec::new();
    for a in &g.attachments {
        let vpc = vpcs.of(cx, Some(&a.vpc))?;
        let Some(&si) = subnet_index.get(a.subnet.get_ref()) else {
            return Err(cx.err(
                a.subnet.span(),
                format!("no subnet named `{}`", a.subnet.get_ref()),
                format!("name a subnet of VPC {} for the transit gateway's interface", vpcs.name(vpc)),
            ));
        };
        if subnets[si].vpc != vpc {
            return Err(cx.err(
                a.subnet.span(),
                format!(
                    "subnet `{}` is VPC {}'s, not VPC {}'s",
                    a.subnet.get_ref(),
                    vpcs.name(subnets[si].vpc),
                    vpcs.name(vpc)
                ),
                "an attachment's subnet is in the VPC it attaches",
            ));
        }
        if out.iter().any(|o| o.vpc == vpc) {
            return Err(cx.err(
                a.vpc.span(),
                format!("VPC {} is already attached to {}", vpcs.name(vpc), g.name.get_ref()),
                "attach a VPC once",
            ));
        }
        if let Some(o) = out.iter().find(|o| vpcs.cidr(o.vpc).overlaps(&vpcs.cidr(vpc))) {
            return Err(cx.err(
                a.vpc.span(),
                format!(
                    "VPC {} ({}) overlaps VPC {} ({}), already attached to {}: an address would be ambiguous",
                    vpcs.name(vpc),
                    vpcs.cidr(vpc),
                    vpcs.name(o.vpc),
                    vpcs.cidr(o.vpc),
                    g.name.get_ref()
                ),
                "attach VPCs whose blocks do not overlap (AWS does not propagate the second one's routes)",
            ));
        }
        let name = match &a.name {
            Some(n) => {
                super::prefixed_name(cx, n, "tgw-attach-", "attachment", "an attachment id", "tgw-attach-app")?;
                if out.iter().any(|o| o.name == *n.get_ref()) {
                    return Err(cx.err(n.span(), format!("attachment `{}` is defined twice", n.get_ref()), "keep one"));
                }
                n.get_ref().clone()
            }
            None => format!("tgw-attach-{}", vpcs.name(vpc)),
        };
        out.push(Attachment { name, vpc, subnet: si as u16, table: None });
    }
    Ok(out)
}

/// The propagated route of attachment `a`: its VPC's block.
fn propagated(vpcs: &Vpcs, a: &Attachment, i: usize) -> TransitRoute {
    TransitRoute {
        destination: vpcs.cidr(a.vpc),
        target: TransitTarget::Attachment(i as AttachmentId),
        kind: RouteType::Propagated,
    }
}

/// An attachment by its name or its VPC's name.
fn attachment_ref(cx: &Ctx<'_>, tgw: &TransitGateway, vpcs: &Vpcs, r: &S) -> Result<AttachmentId, ConfigError> {
    let n = r.get_ref();
    tgw.attachments.iter().position(|a| a.name == *n || vpcs.name(a.vpc) == n).map(|i| i as AttachmentId).ok_or_else(
        || {
            let known: Vec<String> =
                tgw.attachments.iter().map(|a| format!("{} ({})", a.name, vpcs.name(a.vpc))).collect();
            cx.err(
                r.span(),
                format!("{} has no attachment `{n}`", tgw.name),
                if known.is_empty() {
                    "attach a VPC first: attachments = [{ vpc = \"...\", subnet = \"...\" }]".to_string()
                } else {
                    format!("use one of: {} (an attachment or its VPC's name)", known.join(", "))
                },
            )
        },
    )
}
