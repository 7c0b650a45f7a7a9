//! TCP header view (RFC 9293).
//!
//! Only the fields a NAT needs: ports, flags, sequence numbers for the state
//! tracker, and the MSS option for clamping.

use super::WireError;

mod field {
    use std::ops::Range;
    pub const SRC_PORT: Range<usize> = 0..2;
    pub const DST_PORT: Range<usize> = 2..4;
    pub const SEQ: Range<usize> = 4..8;
    pub const ACK: Range<usize> = 8..12;
    pub const DATA_OFF: usize = 12;
    pub const FLAGS: usize = 13;
    pub const WINDOW: Range<usize> = 14..16;
    pub const CHECKSUM: Range<usize> = 16..18;
    pub const OPTIONS: usize = 20;
}

/// Length of a TCP header without options.
pub const HEADER_LEN: usize = 20;
/// Offset of the checksum field within the TCP header.
pub const CHECKSUM_OFFSET: usize = 16;

/// TCP flag bits (the low byte of the flags word).
pub mod flags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
    pub const URG: u8 = 0x20;
}

/// Option kinds used here.
mod option {
    pub const END: u8 = 0;
    pub const NOP: u8 = 1;
    pub const MSS: u8 = 2;
}

/// A view of a TCP segment.
#[derive(Debug)]
pub struct TcpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> TcpPacket<T> {
    pub fn new_unchecked(buffer: T) -> Self {
        TcpPacket { buffer }
    }

    /// Validates: a whole 20-byte header, a data offset of at least 5 words that
    /// fits the buffer.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let p = Self::new_unchecked(buffer);
        let len = p.buffer.as_ref().len();
        if len < HEADER_LEN {
            return Err(WireError::Truncated);
        }
        let hl = p.header_len();
        if hl < HEADER_LEN || hl > len {
            return Err(WireError::BadHeaderLen);
        }
        Ok(p)
    }

    fn u16_at(&self, r: std::ops::Range<usize>) -> u16 {
        let b = &self.buffer.as_ref()[r];
        u16::from_be_bytes([b[0], b[1]])
    }

    fn u32_at(&self, r: std::ops::Range<usize>) -> u32 {
        let b = &self.buffer.as_ref()[r];
        u32::from_be_bytes([b[0], b[1], b[2], b[3]])
    }

    pub fn src_port(&self) -> u16 {
        self.u16_at(field::SRC_PORT)
    }

    pub fn dst_port(&self) -> u16 {
        self.u16_at(field::DST_PORT)
    }

    pub fn seq_number(&self) -> u32 {
        self.u32_at(field::SEQ)
    }

    pub fn ack_number(&self) -> u32 {
        self.u32_at(field::ACK)
    }

    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::DATA_OFF] >> 4) * 4
    }

    /// The flag byte (FIN, SYN, RST, PSH, ACK, URG, ECE, CWR).
    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS]
    }

    pub fn window(&self) -> u16 {
        self.u16_at(field::WINDOW)
    }

    pub fn checksum(&self) -> u16 {
        self.u16_at(field::CHECKSUM)
    }

    /// The value of the MSS option and its byte offset in the header, if present.
    pub fn mss_option(&self) -> Option<(u16, usize)> {
        let b = self.buffer.as_ref();
        let end = self.header_len().min(b.len());
        let mut i = field::OPTIONS;
        while i < end {
            match b[i] {
                option::END => return None,
                option::NOP => i += 1,
                kind => {
                    let len = usize::from(*b.get(i + 1)?);
                    if len < 2 || i + len > end {
                        return None;
                    }
                    if kind == option::MSS && len == 4 {
                        return Some((u16::from_be_bytes([b[i + 2], b[i + 3]]), i + 2));
                    }
                    i += len;
                }
            }
        }
        None
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> TcpPacket<T> {
    fn set_u16_at(&mut self, r: std::ops::Range<usize>, v: u16) {
        self.buffer.as_mut()[r].copy_from_slice(&v.to_be_bytes());
    }

    pub fn set_src_port(&mut self, v: u16) {
        self.set_u16_at(field::SRC_PORT, v);
    }

    pub fn set_dst_port(&mut self, v: u16) {
        self.set_u16_at(field::DST_PORT, v);
    }

    pub fn set_seq_number(&mut self, v: u32) {
        self.buffer.as_mut()[field::SEQ].copy_from_slice(&v.to_be_bytes());
    }

    pub fn set_ack_number(&mut self, v: u32) {
        self.buffer.as_mut()[field::ACK].copy_from_slice(&v.to_be_bytes());
    }

    pub fn set_header_len(&mut self, len: usize) {
        self.buffer.as_mut()[field::DATA_OFF] = ((len / 4) as u8) << 4;
    }

    pub fn set_flags(&mut self, v: u8) {
        self.buffer.as_mut()[field::FLAGS] = v;
    }

    /// Sets the flag byte and, unless the checksum is left to offload
    /// (`partial`: the field holds the pseudo-header sum, which covers no
    /// flags), adjusts the checksum for it (RFC 1624).
    pub fn set_flags_adjusting_checksum(&mut self, v: u8, partial: bool) {
        let word = |p: &Self| u16::from_be_bytes([p.buffer.as_ref()[field::DATA_OFF], p.buffer.as_ref()[field::FLAGS]]);
        let old = word(self);
        self.set_flags(v);
        if !partial {
            let c = crate::wire::checksum::Delta::ZERO.word(old, word(self)).apply(self.checksum());
            self.set_checksum(c);
        }
    }

    pub fn set_window(&mut self, v: u16) {
        self.set_u16_at(field::WINDOW, v);
    }

    pub fn set_checksum(&mut self, v: u16) {
        self.set_u16_at(field::CHECKSUM, v);
    }

    /// Writes a 16-bit value at `at` (an offset found by [`TcpPacket::mss_option`]).
    pub fn set_u16_raw(&mut self, at: usize, v: u16) {
        self.buffer.as_mut()[at..at + 2].copy_from_slice(&v.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A SYN from port 40000 to 80 with options MSS 1460, NOP, NOP, SACK-permitted.
    const SYN: [u8; 28] = [
        0x9c,
        0x40,
        0x00,
        0x50,
        0,
        0,
        0,
        1,
        0,
        0,
        0,
        0,
        0x70,
        flags::SYN,
        0xfa,
        0xf0,
        0,
        0,
        0,
        0, //
        2,
        4,
        0x05,
        0xb4,
        1,
        1,
        4,
        2,
    ];

    #[test]
    fn parses_syn() {
        let p = TcpPacket::new_checked(&SYN[..]).unwrap();
        assert_eq!(p.src_port(), 40000);
        assert_eq!(p.dst_port(), 80);
        assert_eq!(p.seq_number(), 1);
        assert_eq!(p.header_len(), 28);
        assert_eq!(p.flags(), flags::SYN);
        assert_eq!(p.mss_option(), Some((1460, 22)));
    }

    #[test]
    fn rejects_bad_offsets() {
        assert_eq!(TcpPacket::new_checked(&SYN[..19]).unwrap_err(), WireError::Truncated);
        let mut b = SYN;
        b[12] = 0x40;
        assert_eq!(TcpPacket::new_checked(&b[..]).unwrap_err(), WireError::BadHeaderLen);
        let mut b = SYN;
        b[12] = 0xf0;
        assert_eq!(TcpPacket::new_checked(&b[..]).unwrap_err(), WireError::BadHeaderLen);
    }

    #[test]
    fn malformed_options_end_the_search() {
        let mut b = SYN;
        b[21] = 0; // option length 0
        assert_eq!(TcpPacket::new_checked(&b[..]).unwrap().mss_option(), None);
        let mut b = SYN;
        b[21] = 40; // runs past the header
        assert_eq!(TcpPacket::new_checked(&b[..]).unwrap().mss_option(), None);
    }
}
