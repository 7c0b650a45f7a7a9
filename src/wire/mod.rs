//! Typed zero-copy views over packet bytes: IPv4, TCP, UDP, ICMPv4, and the
//! Internet checksum with RFC 1624 incremental updates.
//!
//! Every view follows one pattern: `new_checked` validates once, then accessors
//! cannot panic. No header offset appears outside this module.

pub mod build;
pub mod checksum;
pub mod icmpv4;
pub mod ipv4;
pub mod tcp;
pub mod udp;

pub use icmpv4::Icmpv4Packet;
pub use ipv4::Ipv4Packet;
pub use tcp::TcpPacket;
pub use udp::UdpPacket;

/// Why a buffer is not a valid header of the expected kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Shorter than the fixed header.
    #[error("truncated header")]
    Truncated,
    /// IP version is not 4.
    #[error("IP version is not 4")]
    BadVersion,
    /// Header length field below the minimum or past the end.
    #[error("bad header length")]
    BadHeaderLen,
    /// IPv4 total length below the header length or past the end of the buffer.
    #[error("bad total length")]
    BadTotalLen,
}
