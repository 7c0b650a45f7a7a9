//! UDP header view (RFC 768).

use super::WireError;

/// Length of the UDP header.
pub const HEADER_LEN: usize = 8;
/// Offset of the checksum field within the UDP header.
pub const CHECKSUM_OFFSET: usize = 6;

/// A view of a UDP datagram.
#[derive(Debug)]
pub struct UdpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> UdpPacket<T> {
    pub fn new_unchecked(buffer: T) -> Self {
        UdpPacket { buffer }
    }

    /// Validates that the 8-byte header is present. The length field is not
    /// trusted for anything, so it is not checked against the buffer.
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

    pub fn src_port(&self) -> u16 {
        self.u16_at(0)
    }

    pub fn dst_port(&self) -> u16 {
        self.u16_at(2)
    }

    pub fn len(&self) -> u16 {
        self.u16_at(4)
    }

    pub fn is_empty(&self) -> bool {
        self.len() <= HEADER_LEN as u16
    }

    pub fn checksum(&self) -> u16 {
        self.u16_at(CHECKSUM_OFFSET)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> UdpPacket<T> {
    fn set_u16_at(&mut self, at: usize, v: u16) {
        self.buffer.as_mut()[at..at + 2].copy_from_slice(&v.to_be_bytes());
    }

    pub fn set_src_port(&mut self, v: u16) {
        self.set_u16_at(0, v);
    }

    pub fn set_dst_port(&mut self, v: u16) {
        self.set_u16_at(2, v);
    }

    pub fn set_len(&mut self, v: u16) {
        self.set_u16_at(4, v);
    }

    pub fn set_checksum(&mut self, v: u16) {
        self.set_u16_at(CHECKSUM_OFFSET, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_header() {
        let b = [0x9c, 0x40, 0x00, 0x35, 0x00, 0x0c, 0xab, 0xcd, 1, 2, 3, 4];
        let p = UdpPacket::new_checked(&b[..]).unwrap();
        assert_eq!((p.src_port(), p.dst_port(), p.len(), p.checksum()), (40000, 53, 12, 0xabcd));
        assert_eq!(UdpPacket::new_checked(&b[..7]).unwrap_err(), WireError::Truncated);
    }
}
