//! Transit gateways as the pipeline sees them: attachments (a VPC through
//! one of its subnets), transit route tables (each attachment associated with
//! one, its VPC's block propagated into any), static and blackhole routes.
//!
//! Built by the config compiler (`control::config::transit`), immutable like
//! the rest of the topology.

use super::topology::{SubnetId, VpcId};
use crate::route::Prefix;

/// Index of an attachment within its transit gateway.
pub type AttachmentId = u16;

/// A transit gateway (`tgw-...`).
#[derive(Clone, Debug)]
pub struct TransitGateway {
    pub name: String,
    pub attachments: Vec<Attachment>,
    pub tables: Vec<TransitTable>,
}

/// A VPC attachment (`tgw-attach-...`): the transit gateway's interface in
/// one subnet of the VPC. Traffic enters the VPC there and is routed by that
/// subnet's route table.
#[derive(Clone, Debug)]
pub struct Attachment {
    pub name: String,
    pub vpc: VpcId,
    pub subnet: SubnetId,
    /// The transit route table it is associated with (which table routes
    /// what it sends); None: its traffic has no routes.
    pub table: Option<usize>,
}

/// Where a transit route sends traffic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransitTarget {
    Attachment(AttachmentId),
    /// Dropped (a blackhole route).
    Blackhole,
}

/// How a transit route came to be, as the console shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RouteType {
    Static,
    /// An attachment's VPC block, propagated into the table.
    Propagated,
}

impl RouteType {
    /// As the console shows it.
    pub fn name(self) -> &'static str {
        match self {
            RouteType::Static => "static",
            RouteType::Propagated => "propagated",
        }
    }
}

/// One transit route.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransitRoute {
    pub destination: Prefix,
    pub target: TransitTarget,
    pub kind: RouteType,
}

/// A transit gateway route table (`tgw-rtb-...`).
#[derive(Clone, Debug)]
pub struct TransitTable {
    pub name: String,
    /// Most specific first; for one destination the static route first (AWS
    /// prefers it to a propagated one).
    routes: Vec<TransitRoute>,
}

impl TransitTable {
    pub fn new(name: &str, mut routes: Vec<TransitRoute>) -> TransitTable {
        routes.sort_by_key(|r| (std::cmp::Reverse(r.destination.prefix_len()), r.kind != RouteType::Static));
        TransitTable { name: name.to_string(), routes }
    }

    /// The route for `dst`: the longest prefix, a static route before a
    /// propagated one. Transit tables are short (one route per attachment
    /// and a few static ones), so a scan.
    #[inline]
    pub fn lookup(&self, dst: u32) -> Option<&TransitRoute> {
        self.routes.iter().find(|r| r.destination.contains_u32(dst))
    }

    /// The routes, most specific first.
    pub fn routes(&self) -> &[TransitRoute] {
        &self.routes
    }
}

impl TransitGateway {
    /// The attachment of VPC `v`, if it has one.
    #[inline]
    pub fn attachment_of(&self, v: VpcId) -> Option<&Attachment> {
        self.attachments.iter().find(|a| a.vpc == v)
    }

    /// The name of what a route sends to.
    pub fn target_name(&self, t: TransitTarget) -> &str {
        match t {
            TransitTarget::Attachment(a) => self.attachments.get(usize::from(a)).map_or("?", |a| a.name.as_str()),
            TransitTarget::Blackhole => "blackhole",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(d: &str, target: TransitTarget, kind: RouteType) -> TransitRoute {
        TransitRoute { destination: d.parse().unwrap(), target, kind }
    }

    #[test]
    fn the_longest_prefix_wins_and_a_static_route_beats_a_propagated_one() {
        let t = TransitTable::new(
            "t",
            vec![
                route("10.1.0.0/16", TransitTarget::Attachment(1), RouteType::Propagated),
                route("0.0.0.0/0", TransitTarget::Attachment(2), RouteType::Static),
                route("10.1.5.0/24", TransitTarget::Blackhole, RouteType::Static),
                route("10.2.0.0/16", TransitTarget::Attachment(3), RouteType::Propagated),
                route("10.2.0.0/16", TransitTarget::Attachment(4), RouteType::Static),
            ],
        );
        let at = |a: [u8; 4]| t.lookup(u32::from_be_bytes(a)).map(|r| r.target);
        assert_eq!(at([10, 1, 9, 9]), Some(TransitTarget::Attachment(1)));
        assert_eq!(at([10, 1, 5, 1]), Some(TransitTarget::Blackhole));
        assert_eq!(at([10, 2, 0, 1]), Some(TransitTarget::Attachment(4)));
        assert_eq!(at([192, 0, 2, 1]), Some(TransitTarget::Attachment(2)));
        let empty = TransitTable::new("e", vec![]);
        assert_eq!(empty.lookup(1), None);
    }
}
