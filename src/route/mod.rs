//! Routing: IPv4 prefixes, route tables with AWS VPC semantics, and the
//! compiled longest-prefix-match structure behind them.

pub mod lpm;
pub mod prefix;
pub mod table;

pub use lpm::Lpm;
pub use prefix::{Prefix, PrefixError};
pub use table::{EndpointId, HostId, NatId, PeeringId, Route, RouteState, RouteTable, Target, TgwId};
