//! Network address translation: port allocation, mappings and sessions (the
//! NAT gateway), the rewrite of packet bytes, and ICMP error translation.
//!
//! Standards: RFC 4787 (UDP), RFC 5382 (TCP), RFC 5508 (ICMP), RFC 6888 and
//! RFC 7857 (operator requirements and updates). docs/COMPLIANCE.md maps every
//! requirement to the test that shows it.

pub mod gateway;
pub mod icmp_error;
pub mod ports;
pub mod rewrite;

pub use gateway::{
    Carried, DeferredSyn, ExhaustionReply, Filtering, Mapping, NatConfig, NatError, NatGateway, Translated,
    UnsolicitedSyn,
};
pub use rewrite::{L4Checksum, L4Kind, Side};
