//! The Internet checksum (RFC 1071) and its incremental update (RFC 1624).
//!
//! The per-packet path never sums a payload: it rewrites a few 16-bit words and
//! adjusts the stored checksum with [`Delta`], computed once when a flow is created.
//! Full sums ([`checksum`]) are for headers, for messages the gateway builds itself
//! (ICMP errors, a few hundred bytes), and for tests.

/// Ones' complement sum of `data` read as big-endian 16-bit words, not yet folded.
/// An odd trailing byte is padded with zero (RFC 1071 §4.1).
///
/// Reads four bytes at a time: a big-endian 32-bit word is `hi * 2^16 + lo`,
/// and 2^16 is 1 in ones' complement arithmetic (modulo 0xffff), so adding
/// the 32-bit words adds the 16-bit ones (RFC 1071 §2(C), "parallel
/// summation"); `fold` brings the carries back in.
pub fn sum(data: &[u8]) -> u64 {
    let mut acc: u64 = 0;
    let mut chunks = data.chunks_exact(4);
    for w in &mut chunks {
        acc += u64::from(u32::from_be_bytes([w[0], w[1], w[2], w[3]]));
    }
    let rest = chunks.remainder();
    if rest.len() >= 2 {
        acc += u64::from(u16::from_be_bytes([rest[0], rest[1]]));
    }
    if rest.len() % 2 == 1 {
        acc += u64::from(rest[rest.len() - 1]) << 8;
    }
    acc
}

/// Folds a ones' complement sum to 16 bits (end-around carry). Four fixed
/// steps cover any `u64`: 64 to 33 bits, then 16 bits with at most two
/// carries left, which the last two steps take in.
#[inline]
pub fn fold(mut acc: u64) -> u16 {
    acc = (acc & 0xffff_ffff) + (acc >> 32);
    acc = (acc & 0xffff) + (acc >> 16);
    acc = (acc & 0xffff) + (acc >> 16);
    acc = (acc & 0xffff) + (acc >> 16);
    acc as u16
}

/// The checksum to store in a header: the complement of the folded sum.
pub fn checksum(data: &[u8]) -> u16 {
    !fold(sum(data))
}

/// Sum of the IPv4 pseudo-header used by TCP and UDP (RFC 793 §3.1, RFC 768).
pub fn pseudo_header_sum(src: [u8; 4], dst: [u8; 4], protocol: u8, l4_len: u16) -> u64 {
    sum(&src) + sum(&dst) + u64::from(protocol) + u64::from(l4_len)
}

/// Completes a checksum left to offload: the 16-bit field at
/// `start + offset` holds the pseudo-header sum, and the checksum covers
/// everything from `start` to the end. Returns false if the offsets do not
/// fit the packet. (For the rare packet the gateway must fragment itself.)
pub fn complete_partial(packet: &mut [u8], start: usize, offset: usize) -> bool {
    let at = start + offset;
    if at + 2 > packet.len() || start > packet.len() {
        return false;
    }
    let c = !fold(sum(&packet[start..]));
    packet[at..at + 2].copy_from_slice(&c.to_be_bytes());
    true
}

/// A precomputed checksum adjustment: the ones' complement sum of `!old + new` over
/// every 16-bit word that a rewrite changes (RFC 1624 eqn. 3, `HC' = ~(~HC + ~m + m')`).
///
/// Deltas add up, so one delta can cover an address and a port; the negation of a
/// delta ([`Delta::reversed`]) undoes it, which is the rewrite of the reply direction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Delta(u16);

impl Delta {
    /// No change.
    pub const ZERO: Delta = Delta(0);

    /// Adds the change of one 16-bit word from `old` to `new`.
    #[must_use]
    pub fn word(self, old: u16, new: u16) -> Delta {
        Delta(fold(u64::from(self.0) + u64::from(!old) + u64::from(new)))
    }

    /// Adds the change of a 32-bit field (an IPv4 address) from `old` to `new`.
    #[must_use]
    pub fn addr(self, old: [u8; 4], new: [u8; 4]) -> Delta {
        self.word(u16::from_be_bytes([old[0], old[1]]), u16::from_be_bytes([new[0], new[1]]))
            .word(u16::from_be_bytes([old[2], old[3]]), u16::from_be_bytes([new[2], new[3]]))
    }

    /// The delta of the inverse rewrite (new back to old).
    #[must_use]
    pub fn reversed(self) -> Delta {
        Delta(!self.0)
    }

    /// Applies the delta to a stored (complemented) checksum.
    #[must_use]
    pub fn apply(self, stored: u16) -> u16 {
        !add16(!stored, self.0)
    }

    /// Applies the delta to a UDP checksum, where 0 means "no checksum" and stays 0,
    /// and a computed 0 is sent as 0xffff (RFC 768).
    #[must_use]
    pub fn apply_udp(self, stored: u16) -> u16 {
        if stored == 0 {
            return 0;
        }
        match self.apply(stored) {
            0 => 0xffff,
            c => c,
        }
    }

    /// Applies the delta to an uncomplemented partial sum: the value a TCP or UDP
    /// checksum field holds when the checksum is left to offload (CHECKSUM_PARTIAL,
    /// virtio `NEEDS_CSUM`), which is the folded pseudo-header sum only.
    #[must_use]
    pub fn apply_partial(self, partial: u16) -> u16 {
        add16(partial, self.0)
    }
}

impl std::ops::Add for Delta {
    type Output = Delta;

    /// Both changes at once.
    fn add(self, other: Delta) -> Delta {
        Delta(add16(self.0, other.0))
    }
}

/// Ones' complement sum of two 16-bit values: at most 0x1fffe, so one
/// end-around carry folds it (no loop on the per-packet path).
#[inline]
fn add16(a: u16, b: u16) -> u16 {
    let s = u32::from(a) + u32::from(b);
    ((s & 0xffff) + (s >> 16)) as u16
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// RFC 1071 §3 worked example: words 0001 f203 f4f5 f6f7 sum to ddf2 (folded).
    #[test]
    fn rfc1071_example() {
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(fold(sum(&data)), 0xddf2);
        assert_eq!(checksum(&data), !0xddf2);
    }

    proptest! {
        #[test]
        fn fold_matches_the_end_around_carry_loop(acc in any::<u64>()) {
            let mut slow = acc;
            while slow > 0xffff {
                slow = (slow & 0xffff) + (slow >> 16);
            }
            prop_assert_eq!(u64::from(fold(acc)), slow);
        }
    }

    #[test]
    fn odd_length_pads_with_zero() {
        assert_eq!(sum(&[0x12, 0x34, 0x56]), 0x1234 + 0x5600);
    }

    #[test]
    fn completing_a_partial_checksum() {
        // A UDP datagram 10.0.0.1:1 -> 10.0.0.2:2 with payload "hi": the field
        // first holds the folded pseudo-header sum, as offload leaves it.
        let mut d = [0u8, 1, 0, 2, 0, 10, 0, 0, b'h', b'i'];
        let partial = fold(pseudo_header_sum([10, 0, 0, 1], [10, 0, 0, 2], 17, 10));
        d[6..8].copy_from_slice(&partial.to_be_bytes());
        assert!(complete_partial(&mut d, 0, 6));
        let full = fold(
            pseudo_header_sum([10, 0, 0, 1], [10, 0, 0, 2], 17, 10)
                + sum(&{
                    let mut z = d;
                    z[6] = 0;
                    z[7] = 0;
                    z
                }),
        );
        assert_eq!(u16::from_be_bytes([d[6], d[7]]), !full);
        assert!(!complete_partial(&mut d, 0, 9));
    }

    #[test]
    fn udp_zero_checksum_stays_zero() {
        let d = Delta::ZERO.addr([10, 0, 1, 10], [203, 0, 113, 5]);
        assert_eq!(d.apply_udp(0), 0);
    }

    fn put(buf: &mut [u8], at: usize, v: u16) {
        buf[at..at + 2].copy_from_slice(&v.to_be_bytes());
    }

    proptest! {
        /// An incremental update gives the same checksum as a full recomputation.
        #[test]
        fn incremental_matches_full(mut data in proptest::collection::vec(any::<u8>(), 4..200),
                                    edits in proptest::collection::vec((any::<usize>(), any::<u16>()), 1..6)) {
            let len = data.len() & !1;
            data.truncate(len);
            // Word 0 holds the checksum.
            put(&mut data, 0, 0);
            let c = checksum(&data);
            put(&mut data, 0, c);
            let mut delta = Delta::ZERO;
            for (at, new) in edits {
                let at = 2 + (at % ((len - 2) / 2).max(1)) * 2;
                if at + 2 > len { continue; }
                let old = u16::from_be_bytes([data[at], data[at + 1]]);
                delta = delta.word(old, new);
                put(&mut data, at, new);
            }
            let stored = u16::from_be_bytes([data[0], data[1]]);
            let updated = delta.apply(stored);
            put(&mut data, 0, updated);
            // A correct checksum makes the whole sum fold to 0xffff (RFC 1071 §1).
            prop_assert_eq!(fold(sum(&data)), 0xffff);
        }

        /// Reversing a delta undoes it.
        #[test]
        fn reversed_undoes(c in any::<u16>(), a in any::<[u8; 4]>(), b in any::<[u8; 4]>()) {
            prop_assume!(c != 0xffff); // 0xffff and 0x0000 are both "-0": one maps to the other.
            let d = Delta::ZERO.addr(a, b);
            let there = d.apply(c);
            let back = d.reversed().apply(there);
            prop_assert!(back == c || (back == 0xffff && c == 0) || (back == 0 && c == 0xffff));
        }

        /// A partial (pseudo-header) sum adjusted for an address change equals the
        /// partial sum computed from scratch with the new address.
        #[test]
        fn partial_follows_address(src in any::<[u8; 4]>(), dst in any::<[u8; 4]>(), new_src in any::<[u8; 4]>(), len in 20u16..65000) {
            let before = fold(pseudo_header_sum(src, dst, 6, len));
            let after = fold(pseudo_header_sum(new_src, dst, 6, len));
            let got = Delta::ZERO.addr(src, new_src).apply_partial(before);
            // Equal as ones' complement numbers (0 and 0xffff are the same value).
            prop_assert!(got == after || (got == 0 && after == 0xffff) || (got == 0xffff && after == 0));
        }
    }
}
