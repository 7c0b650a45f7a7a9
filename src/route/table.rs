//! Route tables with AWS VPC semantics: destination CIDR -> target, the most
//! specific route wins, a route whose target is gone is a blackhole.
//!
//! A table is immutable once built: it holds its routes and their compiled
//! [`Lpm`]. A change builds a new table, and the topology snapshot that holds
//! it is swapped atomically (workers never wait).

use super::lpm::Lpm;
use super::prefix::Prefix;
use std::fmt;

/// Index of a host (network interface) in the topology.
pub type HostId = u16;
/// Index of a NAT gateway in the topology.
pub type NatId = u16;
/// Index of a gateway endpoint in the topology.
pub type EndpointId = u16;
/// Index of a VPC peering connection in the topology.
pub type PeeringId = u16;
/// Index of a transit gateway in the topology.
pub type TgwId = u16;

/// Where a route sends traffic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Target {
    /// Inside the VPC: delivered to the host that has the address.
    Local,
    /// Out through the internet gateway.
    InternetGateway,
    /// Through a NAT gateway.
    NatGateway(NatId),
    /// To a host's network interface (a middlebox or a NAT instance).
    Host(HostId),
    /// To a gateway VPC endpoint (a prefix-list route): the service, privately.
    Endpoint(EndpointId),
    /// Through a VPC peering connection (`pcx-...`): to a host of the peer VPC only.
    Peering(PeeringId),
    /// To a transit gateway (`tgw-...`): its route table for the VPC's attachment decides.
    TransitGateway(TgwId),
    /// Dropped.
    Blackhole,
}

/// Whether a route works (AWS shows `active` or `blackhole`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RouteState {
    Active,
    /// The target was deleted: traffic matching the route is dropped.
    Blackhole,
}

/// One route.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    pub destination: Prefix,
    pub target: Target,
    /// The target as the user named it (`local`, `igw`, `nat-1`, `app`, ...).
    pub target_name: String,
    pub state: RouteState,
}

impl Route {
    /// The target that applies: a blackholed route drops.
    pub fn effective(&self) -> Target {
        match self.state {
            RouteState::Active => self.target,
            RouteState::Blackhole => Target::Blackhole,
        }
    }
}

/// A compiled route table. Cloning is cheap (the routes and the compiled
/// structure are shared), so a new topology can reuse unchanged tables.
#[derive(Clone, Debug)]
pub struct RouteTable {
    pub name: String,
    routes: std::sync::Arc<[Route]>,
    lpm: std::sync::Arc<Lpm>,
}

impl RouteTable {
    /// Builds a table; among routes with the same destination the last wins.
    pub fn new(name: &str, routes: Vec<Route>) -> RouteTable {
        let lpm = Lpm::build(routes.iter().enumerate().map(|(i, r)| (r.destination, i as u32)));
        RouteTable { name: name.to_string(), routes: routes.into(), lpm: std::sync::Arc::new(lpm) }
    }

    /// The most specific route for `dst`.
    #[inline]
    pub fn lookup(&self, dst: u32) -> Option<&Route> {
        self.lpm.lookup(dst).and_then(|i| self.routes.get(i as usize))
    }

    /// The routes, in the order given.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// The routes, most specific first (as `natgw routes` prints them).
    pub fn routes_sorted(&self) -> Vec<&Route> {
        let mut v: Vec<&Route> = self.routes.iter().collect();
        v.sort_by(|a, b| {
            b.destination.prefix_len().cmp(&a.destination.prefix_len()).then(a.destination.cmp(&b.destination))
        });
        v
    }

    pub fn len(&self) -> usize {
        self.routes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// Bytes used by the compiled lookup structure.
    pub fn lpm_bytes(&self) -> usize {
        self.lpm.memory_bytes()
    }
}

impl fmt::Display for RouteState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RouteState::Active => "active",
            RouteState::Blackhole => "blackhole",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(d: &str, t: Target, name: &str) -> Route {
        Route { destination: d.parse().unwrap(), target: t, target_name: name.into(), state: RouteState::Active }
    }

    #[test]
    fn lookup_prefers_specific_and_honours_blackhole() {
        let mut r = vec![
            route("10.0.0.0/16", Target::Local, "local"),
            route("0.0.0.0/0", Target::NatGateway(0), "nat-1"),
            route("10.0.1.0/24", Target::Host(3), "firewall"),
        ];
        r[1].state = RouteState::Blackhole;
        let t = RouteTable::new("private", r);
        let ip = |s: &str| u32::from(s.parse::<std::net::Ipv4Addr>().unwrap());
        assert_eq!(t.lookup(ip("10.0.2.5")).unwrap().effective(), Target::Local);
        assert_eq!(t.lookup(ip("10.0.1.5")).unwrap().effective(), Target::Host(3));
        assert_eq!(t.lookup(ip("8.8.8.8")).unwrap().effective(), Target::Blackhole);
        let sorted: Vec<String> = t.routes_sorted().iter().map(|r| r.destination.to_string()).collect();
        assert_eq!(sorted, ["10.0.1.0/24", "10.0.0.0/16", "0.0.0.0/0"]);
    }
}
