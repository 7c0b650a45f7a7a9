//! ICMPv4 message view (RFC 792, RFC 1191 for "fragmentation needed").

use super::WireError;

/// Length of the fixed ICMP header (type, code, checksum, rest of header).
pub const HEADER_LEN: usize = 8;

/// Message types the gateway handles.
pub mod kind {
    pub const ECHO_REPLY: u8 = 0;
    pub const DEST_UNREACHABLE: u8 = 3;
    pub const SOURCE_QUENCH: u8 = 4;
    pub const REDIRECT: u8 = 5;
    pub const ECHO_REQUEST: u8 = 8;
    pub const TIME_EXCEEDED: u8 = 11;
    pub const PARAM_PROBLEM: u8 = 12;
    pub const TIMESTAMP: u8 = 13;
    pub const TIMESTAMP_REPLY: u8 = 14;
}

/// Destination Unreachable codes (RFC 792, RFC 1812 §5.2.7.1).
pub mod unreachable {
    pub const NET: u8 = 0;
    pub const HOST: u8 = 1;
    pub const PROTOCOL: u8 = 2;
    pub const PORT: u8 = 3;
    pub const FRAG_NEEDED: u8 = 4;
    pub const ADMIN_PROHIBITED: u8 = 13;
}

/// True for the error messages that quote an offending datagram (RFC 1812 §4.3.2.3).
pub fn is_error(kind: u8) -> bool {
    matches!(
        kind,
        kind::DEST_UNREACHABLE | kind::SOURCE_QUENCH | kind::REDIRECT | kind::TIME_EXCEEDED | kind::PARAM_PROBLEM
    )
}

/// True for query messages whose identifier names a session (RFC 5508 §3).
pub fn is_query(kind: u8) -> bool {
    matches!(kind, kind::ECHO_REQUEST | kind::ECHO_REPLY | kind::TIMESTAMP | kind::TIMESTAMP_REPLY)
}

/// A view of an ICMPv4 message.
#[derive(Debug)]
pub struct Icmpv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Icmpv4Packet<T> {
    pub fn new_unchecked(buffer: T) -> Self {
        Icmpv4Packet { buffer }
    }

    /// Validates that the 8-byte header is present.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        if buffer.as_ref().len() < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        Ok(Self::new_unchecked(buffer))
    }

    fn u16_at(&self, at: usize) -> u16 {
        let b = self.buffer.as_ref();
        u16::from_be_bytes([b[at], b[at + 1]])
    }

    pub fn msg_type(&self) -> u8 {
        self.buffer.as_ref()[0]
    }

    pub fn code(&self) -> u8 {
        self.buffer.as_ref()[1]
    }

    pub fn checksum(&self) -> u16 {
        self.u16_at(2)
    }

    /// Query identifier (echo, timestamp).
    pub fn ident(&self) -> u16 {
        self.u16_at(4)
    }

    pub fn seq_number(&self) -> u16 {
        self.u16_at(6)
    }

    /// Next-hop MTU of a "fragmentation needed" message (RFC 1191 §4).
    pub fn next_hop_mtu(&self) -> u16 {
        self.u16_at(6)
    }

    /// The data after the 8-byte header: for errors, the quoted datagram.
    pub fn data(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }

    /// True when the checksum over the whole message is correct.
    pub fn verify_checksum(&self) -> bool {
        super::checksum::fold(super::checksum::sum(self.buffer.as_ref())) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Icmpv4Packet<T> {
    fn set_u16_at(&mut self, at: usize, v: u16) {
        self.buffer.as_mut()[at..at + 2].copy_from_slice(&v.to_be_bytes());
    }

    pub fn set_msg_type(&mut self, v: u8) {
        self.buffer.as_mut()[0] = v;
    }

    pub fn set_code(&mut self, v: u8) {
        self.buffer.as_mut()[1] = v;
    }

    pub fn set_checksum(&mut self, v: u16) {
        self.set_u16_at(2, v);
    }

    pub fn set_ident(&mut self, v: u16) {
        self.set_u16_at(4, v);
    }

    pub fn set_seq_number(&mut self, v: u16) {
        self.set_u16_at(6, v);
    }

    /// Sets the 32-bit "rest of header" word (unused = 0, or next-hop MTU in the low half).
    pub fn set_rest_of_header(&mut self, v: u32) {
        self.buffer.as_mut()[4..8].copy_from_slice(&v.to_be_bytes());
    }

    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[HEADER_LEN..]
    }

    /// Recomputes the checksum over the whole message (for messages we build).
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let c = super::checksum::checksum(self.buffer.as_ref());
        self.set_checksum(c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_fields_and_checksum() {
        let mut b = [8u8, 0, 0, 0, 0x12, 0x34, 0x00, 0x07, b'h', b'i'];
        let mut p = Icmpv4Packet::new_checked(&mut b[..]).unwrap();
        p.fill_checksum();
        assert!(p.verify_checksum());
        assert_eq!((p.msg_type(), p.code(), p.ident(), p.seq_number()), (8, 0, 0x1234, 7));
        assert_eq!(p.data(), b"hi");
        let (h, _) = etherparse::Icmpv4Header::from_slice(&b).unwrap();
        assert_eq!(h.checksum, h.icmp_type.calc_checksum(b"hi"));
    }

    #[test]
    fn classifies() {
        assert!(is_error(kind::TIME_EXCEEDED) && is_error(kind::DEST_UNREACHABLE));
        assert!(!is_error(kind::ECHO_REQUEST));
        assert!(is_query(kind::ECHO_REQUEST) && !is_query(kind::PARAM_PROBLEM));
    }
}
