//! IPv4 header view (RFC 791).
//!
//! [`Ipv4Packet::new_checked`] validates once (RFC 1812 §5.2.2: version, header
//! length, total length, header checksum); after that no accessor can panic.

use super::WireError;
use super::checksum;
use std::net::Ipv4Addr;

/// Byte offsets of the IPv4 header fields.
mod field {
    use std::ops::Range;
    pub const VER_IHL: usize = 0;
    pub const TOS: usize = 1;
    pub const LENGTH: Range<usize> = 2..4;
    pub const IDENT: Range<usize> = 4..6;
    pub const FLAGS_FRAG: Range<usize> = 6..8;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: Range<usize> = 10..12;
    pub const SRC: Range<usize> = 12..16;
    pub const DST: Range<usize> = 16..20;
}

/// Length of an IPv4 header without options.
pub const HEADER_LEN: usize = 20;

/// IP protocol numbers the gateway understands.
pub mod protocol {
    pub const ICMP: u8 = 1;
    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
}

/// A view of an IPv4 packet in a caller-owned buffer.
#[derive(Debug)]
pub struct Ipv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    /// Wraps a buffer without checking it. Accessors may panic unless
    /// [`Ipv4Packet::check`] succeeded; use [`Ipv4Packet::new_checked`].
    pub fn new_unchecked(buffer: T) -> Self {
        Ipv4Packet { buffer }
    }

    /// Wraps and validates: the buffer holds a whole header, version 4, a header
    /// length of at least 20, a total length that covers the header and fits the
    /// buffer. The header checksum is not checked here: see [`Ipv4Packet::verify_checksum`].
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let p = Self::new_unchecked(buffer);
        p.check()?;
        Ok(p)
    }

    /// The structural checks of [`Ipv4Packet::new_checked`].
    pub fn check(&self) -> Result<(), WireError> {
        let b = self.buffer.as_ref();
        if b.len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        if b[field::VER_IHL] >> 4 != 4 {
            return Err(WireError::BadVersion);
        }
        let hl = self.header_len();
        if hl < HEADER_LEN || hl > b.len() {
            return Err(WireError::BadHeaderLen);
        }
        let tl = usize::from(self.total_len());
        if tl < hl || tl > b.len() {
            return Err(WireError::BadTotalLen);
        }
        Ok(())
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn as_bytes(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    fn u16_at(&self, r: std::ops::Range<usize>) -> u16 {
        let b = &self.buffer.as_ref()[r];
        u16::from_be_bytes([b[0], b[1]])
    }

    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_IHL] >> 4
    }

    /// Header length in bytes (IHL * 4).
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::VER_IHL] & 0x0f) * 4
    }

    pub fn tos(&self) -> u8 {
        self.buffer.as_ref()[field::TOS]
    }

    pub fn total_len(&self) -> u16 {
        self.u16_at(field::LENGTH)
    }

    pub fn ident(&self) -> u16 {
        self.u16_at(field::IDENT)
    }

    pub fn dont_frag(&self) -> bool {
        self.u16_at(field::FLAGS_FRAG) & 0x4000 != 0
    }

    pub fn more_frags(&self) -> bool {
        self.u16_at(field::FLAGS_FRAG) & 0x2000 != 0
    }

    /// Fragment offset in bytes.
    pub fn frag_offset(&self) -> u16 {
        (self.u16_at(field::FLAGS_FRAG) & 0x1fff) * 8
    }

    /// True for any fragment: more fragments follow, or this is not the first.
    pub fn is_fragment(&self) -> bool {
        self.u16_at(field::FLAGS_FRAG) & 0x3fff != 0
    }

    pub fn ttl(&self) -> u8 {
        self.buffer.as_ref()[field::TTL]
    }

    pub fn protocol(&self) -> u8 {
        self.buffer.as_ref()[field::PROTOCOL]
    }

    pub fn checksum(&self) -> u16 {
        self.u16_at(field::CHECKSUM)
    }

    pub fn src_addr(&self) -> Ipv4Addr {
        self.src_bytes().into()
    }

    pub fn dst_addr(&self) -> Ipv4Addr {
        self.dst_bytes().into()
    }

    pub fn src_bytes(&self) -> [u8; 4] {
        let b = &self.buffer.as_ref()[field::SRC];
        [b[0], b[1], b[2], b[3]]
    }

    pub fn dst_bytes(&self) -> [u8; 4] {
        let b = &self.buffer.as_ref()[field::DST];
        [b[0], b[1], b[2], b[3]]
    }

    /// True when the header checksum is correct (sums the header only, 20-60 bytes).
    pub fn verify_checksum(&self) -> bool {
        checksum::fold(checksum::sum(&self.buffer.as_ref()[..self.header_len()])) == 0xffff
    }

    /// The header, options included.
    pub fn header(&self) -> &[u8] {
        &self.buffer.as_ref()[..self.header_len()]
    }

    /// Everything after the header in the buffer, whatever the total length
    /// says (see [`Ipv4Packet::split_at_header_mut`]).
    pub fn rest(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..]
    }

    /// The payload up to the total length (a longer buffer is padding).
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..usize::from(self.total_len())]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4Packet<T> {
    fn set_u16_at(&mut self, r: std::ops::Range<usize>, v: u16) {
        self.buffer.as_mut()[r].copy_from_slice(&v.to_be_bytes());
    }

    pub fn set_version_and_header_len(&mut self, header_len: usize) {
        self.buffer.as_mut()[field::VER_IHL] = 0x40 | ((header_len / 4) as u8 & 0x0f);
    }

    pub fn set_tos(&mut self, v: u8) {
        self.buffer.as_mut()[field::TOS] = v;
    }

    pub fn set_total_len(&mut self, v: u16) {
        self.set_u16_at(field::LENGTH, v);
    }

    pub fn set_ident(&mut self, v: u16) {
        self.set_u16_at(field::IDENT, v);
    }

    /// Sets the flags and fragment offset word (DF = 0x4000, MF = 0x2000).
    pub fn set_flags_frag(&mut self, v: u16) {
        self.set_u16_at(field::FLAGS_FRAG, v);
    }

    pub fn set_ttl(&mut self, v: u8) {
        self.buffer.as_mut()[field::TTL] = v;
    }

    pub fn set_protocol(&mut self, v: u8) {
        self.buffer.as_mut()[field::PROTOCOL] = v;
    }

    pub fn set_checksum(&mut self, v: u16) {
        self.set_u16_at(field::CHECKSUM, v);
    }

    pub fn set_src(&mut self, a: [u8; 4]) {
        self.buffer.as_mut()[field::SRC].copy_from_slice(&a);
    }

    pub fn set_dst(&mut self, a: [u8; 4]) {
        self.buffer.as_mut()[field::DST].copy_from_slice(&a);
    }

    /// Decrements the TTL and adjusts the header checksum incrementally
    /// (RFC 1624 §4: the TTL shares a 16-bit word with the protocol).
    pub fn decrement_ttl(&mut self) {
        let ttl = self.ttl();
        let proto = self.protocol();
        let old = u16::from_be_bytes([ttl, proto]);
        let new = u16::from_be_bytes([ttl.wrapping_sub(1), proto]);
        self.set_ttl(ttl.wrapping_sub(1));
        let c = checksum::Delta::ZERO.word(old, new).apply(self.checksum());
        self.set_checksum(c);
    }

    /// Recomputes the header checksum from scratch (header only).
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let hl = self.header_len();
        let c = checksum::checksum(&self.buffer.as_ref()[..hl]);
        self.set_checksum(c);
    }

    /// The payload, mutable, up to the total length.
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let hl = self.header_len();
        let tl = usize::from(self.total_len());
        &mut self.buffer.as_mut()[hl..tl]
    }

    /// The header and everything after it in the buffer, mutable, split at the
    /// header length whatever the total length says: for a datagram quoted in
    /// an ICMP error, which is cut short (RFC 792).
    pub fn split_at_header_mut(&mut self) -> (&mut [u8], &mut [u8]) {
        let hl = self.header_len();
        self.buffer.as_mut().split_at_mut(hl)
    }

    /// The header and the payload, mutable, at once.
    pub fn split_mut(&mut self) -> (&mut [u8], &mut [u8]) {
        let hl = self.header_len();
        let tl = usize::from(self.total_len());
        let (h, rest) = self.buffer.as_mut()[..tl].split_at_mut(hl);
        (h, rest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An ICMP echo request 10.0.1.10 -> 198.51.100.10, as Linux ping sends it.
    pub const ECHO: [u8; 28] = [
        0x45, 0x00, 0x00, 0x1c, 0x12, 0x34, 0x40, 0x00, 0x40, 0x01, 0x00, 0x00, 10, 0, 1, 10, 198, 51, 100,
        10, // ip
        0x08, 0x00, 0xf7, 0xfe, 0x00, 0x01, 0x00, 0x00, // icmp echo id 1 seq 0
    ];

    fn with_checksum(mut b: Vec<u8>) -> Vec<u8> {
        let mut p = Ipv4Packet::new_unchecked(&mut b[..]);
        p.fill_checksum();
        b
    }

    #[test]
    fn parses_fields() {
        let b = with_checksum(ECHO.to_vec());
        let p = Ipv4Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.version(), 4);
        assert_eq!(p.header_len(), 20);
        assert_eq!(p.total_len(), 28);
        assert_eq!(p.ident(), 0x1234);
        assert!(p.dont_frag());
        assert!(!p.is_fragment());
        assert_eq!(p.ttl(), 64);
        assert_eq!(p.protocol(), protocol::ICMP);
        assert_eq!(p.src_addr(), Ipv4Addr::new(10, 0, 1, 10));
        assert_eq!(p.dst_addr(), Ipv4Addr::new(198, 51, 100, 10));
        assert!(p.verify_checksum());
        assert_eq!(p.payload().len(), 8);
        // Cross-check with an independent parser.
        let (h, _) = etherparse::Ipv4Header::from_slice(&b).unwrap();
        assert_eq!(h.header_checksum, p.checksum());
        assert_eq!(h.calc_header_checksum(), p.checksum());
    }

    #[test]
    fn rejects_malformed() {
        assert_eq!(Ipv4Packet::new_checked(&ECHO[..19]).unwrap_err(), WireError::Truncated);
        let mut b = ECHO;
        b[0] = 0x65;
        assert_eq!(Ipv4Packet::new_checked(&b[..]).unwrap_err(), WireError::BadVersion);
        let mut b = ECHO;
        b[0] = 0x44;
        assert_eq!(Ipv4Packet::new_checked(&b[..]).unwrap_err(), WireError::BadHeaderLen);
        let mut b = ECHO;
        b[0] = 0x4f; // 60-byte header in a 28-byte buffer
        assert_eq!(Ipv4Packet::new_checked(&b[..]).unwrap_err(), WireError::BadHeaderLen);
        let mut b = ECHO;
        b[3] = 29;
        assert_eq!(Ipv4Packet::new_checked(&b[..]).unwrap_err(), WireError::BadTotalLen);
        let mut b = ECHO;
        b[3] = 19;
        assert_eq!(Ipv4Packet::new_checked(&b[..]).unwrap_err(), WireError::BadTotalLen);
    }

    #[test]
    fn padding_beyond_total_len_is_ignored() {
        let mut b = with_checksum(ECHO.to_vec());
        b.extend_from_slice(&[0xee; 6]);
        let p = Ipv4Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.payload().len(), 8);
    }

    #[test]
    fn ttl_decrement_keeps_checksum_valid() {
        let mut b = with_checksum(ECHO.to_vec());
        let mut p = Ipv4Packet::new_checked(&mut b[..]).unwrap();
        p.decrement_ttl();
        assert_eq!(p.ttl(), 63);
        assert!(p.verify_checksum());
    }
}
