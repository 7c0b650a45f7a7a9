//! The one route-target resolver: a route's target by name, scoped to the
//! route table's VPC. The config compiler and run-time route changes
//! (`natgw route add`) both ask it.

use crate::pipeline::topology::{Host, NatGatewayInfo, Peering, Subnet, TransitGateway, VpcId};
use crate::route::Target;

/// Why a target name does not resolve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetError {
    /// `local` is added by AWS, never written.
    Local,
    /// The internet gateway, but the file has no `[internet]` side.
    NoInternet,
    /// A NAT gateway or host of another VPC.
    OtherVpc { name: String, kind: &'static str, vpc: String, table_vpc: String },
    /// A peering that does not end in the table's VPC.
    NotPeered { name: String, table_vpc: String },
    /// A transit gateway the table's VPC is not attached to.
    NotAttached { name: String, table_vpc: String },
    /// Nothing by that name; the names that would do.
    Unknown { name: String, known: Vec<String> },
}

impl std::fmt::Display for TargetError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TargetError::Local => f.write_str("the local route is added automatically"),
            TargetError::NoInternet => {
                f.write_str("a route to the internet gateway, but there is no [internet] section")
            }
            TargetError::OtherVpc { name, kind, vpc, table_vpc } => {
                write!(f, "route target `{name}` is a {kind} of VPC {vpc}, not of this table's VPC {table_vpc}")
            }
            TargetError::NotPeered { name, table_vpc } => {
                write!(f, "peering `{name}` does not connect this table's VPC {table_vpc}")
            }
            TargetError::NotAttached { name, table_vpc } => {
                write!(f, "this table's VPC {table_vpc} has no attachment to transit gateway `{name}`")
            }
            TargetError::Unknown { name, .. } => write!(f, "route target `{name}` does not exist"),
        }
    }
}

impl TargetError {
    /// How to fix it.
    pub fn fix(&self) -> String {
        match self {
            TargetError::Local => "remove this route".into(),
            TargetError::NoInternet => "add an [internet] section or remove the route".into(),
            TargetError::OtherVpc { .. } => {
                "route to a target of the table's own VPC (another VPC is reached through a peering, pcx-...)".into()
            }
            TargetError::NotPeered { .. } => "use a peering one of whose `vpcs` is this table's VPC".into(),
            TargetError::NotAttached { table_vpc, .. } => {
                format!("add attachments = [{{ vpc = \"{table_vpc}\", subnet = \"...\" }}] to the transit gateway")
            }
            TargetError::Unknown { known, .. } => format!("use one of: {}", known.join(", ")),
        }
    }
}

/// True when a route of a table of the VPC with block `own` to `destination`
/// would leave the VPC for one of its own addresses (through a peering or a
/// transit gateway): refused, the address would be ambiguous.
pub fn inside_own_vpc(target: Target, own: crate::route::Prefix, destination: crate::route::Prefix) -> bool {
    matches!(target, Target::Peering(_) | Target::TransitGateway(_)) && own.covers(&destination)
}

/// The names a route may target.
pub struct Targets<'a> {
    pub igw_name: &'a str,
    pub internet: bool,
    pub nats: &'a [NatGatewayInfo],
    pub hosts: &'a [Host],
    pub subnets: &'a [Subnet],
    pub peerings: &'a [Peering],
    pub tgws: &'a [TransitGateway],
    pub vpc_names: &'a [String],
}

impl Targets<'_> {
    fn vpc_of(&self, subnet: u16) -> VpcId {
        self.subnets.get(usize::from(subnet)).map_or(VpcId::FIRST, |s| s.vpc)
    }

    fn vpc_name(&self, v: VpcId) -> String {
        self.vpc_names.get(v.index()).cloned().unwrap_or_else(|| "?".into())
    }

    /// The target `name` means in a table of VPC `vpc`. A NAT gateway that
    /// was deleted (no Elastic IPs left) is no target.
    pub fn resolve(&self, name: &str, vpc: VpcId) -> Result<Target, TargetError> {
        let other = |kind: &'static str, theirs: VpcId| TargetError::OtherVpc {
            name: name.to_string(),
            kind,
            vpc: self.vpc_name(theirs),
            table_vpc: self.vpc_name(vpc),
        };
        if name == "local" {
            return Err(TargetError::Local);
        }
        if name == "blackhole" {
            return Ok(Target::Blackhole);
        }
        if name == self.igw_name || name == "igw" {
            return if self.internet { Ok(Target::InternetGateway) } else { Err(TargetError::NoInternet) };
        }
        if let Some(i) = self.nats.iter().position(|n| n.name == name && !n.public_ips.is_empty()) {
            let theirs = self.vpc_of(self.nats[i].subnet);
            return if theirs == vpc { Ok(Target::NatGateway(i as u16)) } else { Err(other("NAT gateway", theirs)) };
        }
        if let Some(i) = self.hosts.iter().position(|h| h.name == name) {
            let theirs = self.vpc_of(self.hosts[i].subnet);
            return if theirs == vpc { Ok(Target::Host(i as u16)) } else { Err(other("host", theirs)) };
        }
        if let Some(i) = self.peerings.iter().position(|p| p.name == name) {
            return match self.peerings[i].other(vpc) {
                Some(_) => Ok(Target::Peering(i as u16)),
                None => Err(TargetError::NotPeered { name: name.to_string(), table_vpc: self.vpc_name(vpc) }),
            };
        }
        if let Some(i) = self.tgws.iter().position(|t| t.name == name) {
            return match self.tgws[i].attachment_of(vpc) {
                Some(_) => Ok(Target::TransitGateway(i as u16)),
                None => Err(TargetError::NotAttached { name: name.to_string(), table_vpc: self.vpc_name(vpc) }),
            };
        }
        let mut known: Vec<String> = vec![self.igw_name.to_string(), "blackhole".into()];
        known.extend(self.nats.iter().filter(|n| self.vpc_of(n.subnet) == vpc).map(|n| n.name.clone()));
        known.extend(self.hosts.iter().filter(|h| self.vpc_of(h.subnet) == vpc).map(|h| h.name.clone()));
        known.extend(self.peerings.iter().filter(|p| p.other(vpc).is_some()).map(|p| p.name.clone()));
        known.extend(self.tgws.iter().filter(|t| t.attachment_of(vpc).is_some()).map(|t| t.name.clone()));
        known.sort();
        known.dedup();
        Err(TargetError::Unknown { name: name.to_string(), known })
    }
}
