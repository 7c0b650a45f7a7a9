//! The TCP connection tracker: a state machine in the manner of Linux
//! nf_conntrack (RFC 5382 REQ-2/X1, RFC 7857 §2.2).
//!
//! A middlebox sees both directions but not the endpoints' state, so the
//! machine is a table indexed by (direction, segment class, state), the design
//! netfilter has used for twenty years. The states are netfilter's, so
//! `natgw conntrack` reads like `conntrack -L`. Two refinements: a FIN
//! retransmitted by the side that already closed does not count as the second
//! FIN, and `SYN_SENT2` covers simultaneous open (RFC 9293 §3.5 figure 7).

use crate::wire::tcp::flags;

/// Connection states, named as conntrack(8) prints them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum TcpState {
    None = 0,
    SynSent = 1,
    SynRecv = 2,
    Established = 3,
    FinWait = 4,
    CloseWait = 5,
    LastAck = 6,
    TimeWait = 7,
    Close = 8,
    /// Simultaneous open: a SYN seen from both sides.
    SynSent2 = 9,
}

impl TcpState {
    pub fn from_u8(v: u8) -> TcpState {
        use TcpState::*;
        match v {
            1 => SynSent,
            2 => SynRecv,
            3 => Established,
            4 => FinWait,
            5 => CloseWait,
            6 => LastAck,
            7 => TimeWait,
            8 => Close,
            9 => SynSent2,
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        use TcpState::*;
        match self {
            None => "NONE",
            SynSent => "SYN_SENT",
            SynRecv => "SYN_RECV",
            Established => "ESTABLISHED",
            FinWait => "FIN_WAIT",
            CloseWait => "CLOSE_WAIT",
            LastAck => "LAST_ACK",
            TimeWait => "TIME_WAIT",
            Close => "CLOSE",
            SynSent2 => "SYN_SENT2",
        }
    }

    /// Which timer applies (RFC 5382 REQ-5, RFC 7857 §2.2 X2: opening and closing
    /// states have their own, shorter timers).
    pub fn phase(self) -> TcpPhase {
        use TcpState::*;
        match self {
            None | SynSent | SynRecv | SynSent2 => TcpPhase::Opening,
            Established => TcpPhase::Established,
            FinWait | CloseWait | LastAck | TimeWait => TcpPhase::Closing,
            Close => TcpPhase::Reset,
        }
    }
}

/// Timer classes of a TCP session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TcpPhase {
    Opening,
    Established,
    Closing,
    /// After a RST: RFC 7857 §2.2 keeps the session 4 minutes (X3).
    Reset,
}

/// Direction of a packet relative to the session's first packet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Dir {
    /// The direction of the packet that created the session (for NAT: outbound).
    #[default]
    Original = 0,
    Reply = 1,
}

impl Dir {
    pub fn index(self) -> usize {
        self as usize
    }

    /// The other direction.
    pub fn reverse(self) -> Dir {
        match self {
            Dir::Original => Dir::Reply,
            Dir::Reply => Dir::Original,
        }
    }
}

/// Segment classes, in netfilter's order of precedence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Segment {
    Syn = 0,
    SynAck = 1,
    Fin = 2,
    Ack = 3,
    Rst = 4,
    None = 5,
}

impl Segment {
    pub fn classify(f: u8) -> Segment {
        if f & flags::RST != 0 {
            Segment::Rst
        } else if f & flags::SYN != 0 {
            if f & flags::ACK != 0 { Segment::SynAck } else { Segment::Syn }
        } else if f & flags::FIN != 0 {
            Segment::Fin
        } else if f & flags::ACK != 0 {
            Segment::Ack
        } else {
            Segment::None
        }
    }
}

/// What the tracker makes of a segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Move to this state (possibly the same one).
    Move(TcpState),
    /// Out of place for the state but harmless (a retransmitted SYN after the
    /// handshake, a stray SYN-ACK): forward, state unchanged.
    Ignore,
    /// Impossible for the state (a SYN-ACK from the opener, a bare segment):
    /// forward, state unchanged, counted as `tcp_invalid`.
    Invalid,
}

// Table cells. `IG` = ignore, `IV` = invalid.
const SS: u8 = TcpState::SynSent as u8;
const SR: u8 = TcpState::SynRecv as u8;
const ES: u8 = TcpState::Established as u8;
const FW: u8 = TcpState::FinWait as u8;
const CW: u8 = TcpState::CloseWait as u8;
const LA: u8 = TcpState::LastAck as u8;
const TW: u8 = TcpState::TimeWait as u8;
const CL: u8 = TcpState::Close as u8;
const S2: u8 = TcpState::SynSent2 as u8;
const IG: u8 = 0xfe;
const IV: u8 = 0xff;

/// `TABLE[dir][segment][state]`, columns in `TcpState` order:
/// NONE, SYN_SENT, SYN_RECV, ESTABLISHED, FIN_WAIT, CLOSE_WAIT, LAST_ACK, TIME_WAIT, CLOSE, SYN_SENT2.
#[rustfmt::skip]
const TABLE: [[[u8; 10]; 6]; 2] = [
    // ORIGINAL (the side that opened)
    [
        // A SYN opens (or, after TIME_WAIT/CLOSE, reopens) the connection; after a
        // handshake it is a stale retransmission and ignored.
        /* syn    */ [SS, SS, IG, IG, IG, IG, IG, SS, SS, S2],
        // The opener never sends a SYN-ACK, except in a simultaneous open.
        /* synack */ [IV, IV, SR, IV, IV, IV, IV, IV, IV, SR],
        // First FIN: FIN_WAIT; a FIN after the other side's FIN: LAST_ACK.
        /* fin    */ [IV, IV, FW, FW, LA, LA, LA, TW, CL, IV],
        // The ACK that ends the handshake; the last ACK after both FINs.
        /* ack    */ [ES, IV, ES, ES, CW, CW, TW, TW, CL, IV],
        /* rst    */ [IV, CL, CL, CL, CL, CL, CL, CL, CL, CL],
        /* none   */ [IV, IV, IV, IV, IV, IV, IV, IV, IV, IV],
    ],
    // REPLY (the side that was called)
    [
        // A SYN from the called side while ours is outstanding: simultaneous open.
        /* syn    */ [IV, S2, IV, IV, IV, IV, IV, IV, IV, S2],
        /* synack */ [IV, SR, IG, IG, IG, IG, IG, IG, IG, SR],
        /* fin    */ [IV, IV, FW, FW, LA, LA, LA, TW, CL, IV],
        /* ack    */ [IV, IG, SR, ES, CW, CW, TW, TW, CL, IG],
        /* rst    */ [IV, CL, CL, CL, CL, CL, CL, CL, CL, CL],
        /* none   */ [IV, IV, IV, IV, IV, IV, IV, IV, IV, IV],
    ],
];

/// Bits kept beside the state (see [`TcpTrack`]).
const FIN_SEEN_ORIG: u8 = 0x10;
const FIN_SEEN_REPLY: u8 = 0x20;

/// A TCP session's tracking state packed in one byte-pair: the state and which
/// sides have sent a FIN.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct TcpTrack(pub u8);

impl TcpTrack {
    pub fn state(self) -> TcpState {
        TcpState::from_u8(self.0 & 0x0f)
    }

    fn fin_bit(dir: Dir) -> u8 {
        match dir {
            Dir::Original => FIN_SEEN_ORIG,
            Dir::Reply => FIN_SEEN_REPLY,
        }
    }

    /// The tracker's verdict on a segment, and the new packed state.
    pub fn step(self, dir: Dir, tcp_flags: u8) -> (Verdict, TcpTrack) {
        let seg = Segment::classify(tcp_flags);
        let state = self.state();
        // A FIN retransmitted by a side that already sent one is not the other
        // side's FIN: the state stays (netfilter's table alone would move on).
        if seg == Segment::Fin && self.0 & Self::fin_bit(dir) != 0 {
            return (Verdict::Ignore, self);
        }
        let cell = TABLE[dir.index()][seg as usize][state as usize];
        match cell {
            IG => (Verdict::Ignore, self),
            IV => (Verdict::Invalid, self),
            s => {
                let mut bits = self.0 & 0xf0;
                if seg == Segment::Fin {
                    bits |= Self::fin_bit(dir);
                }
                if s == SS && state != TcpState::SynSent {
                    // A fresh open after TIME_WAIT/CLOSE forgets the old FINs.
                    bits = 0;
                }
                (Verdict::Move(TcpState::from_u8(s)), TcpTrack(bits | s))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Dir::*;
    use TcpState::*;

    const SYN: u8 = flags::SYN;
    const SYNACK: u8 = flags::SYN | flags::ACK;
    const ACK: u8 = flags::ACK;
    const FIN: u8 = flags::FIN | flags::ACK;
    const RST: u8 = flags::RST;

    fn run(steps: &[(Dir, u8)]) -> Vec<TcpState> {
        let mut t = TcpTrack::default();
        steps
            .iter()
            .map(|&(d, f)| {
                t = t.step(d, f).1;
                t.state()
            })
            .collect()
    }

    #[test]
    fn three_way_handshake_and_close() {
        let states = run(&[
            (Original, SYN),
            (Reply, SYNACK),
            (Original, ACK),
            (Original, ACK),
            (Original, FIN),
            (Reply, ACK),
            (Reply, FIN),
            (Original, ACK),
        ]);
        assert_eq!(states, [SynSent, SynRecv, Established, Established, FinWait, CloseWait, LastAck, TimeWait]);
    }

    /// RFC 5382 REQ-2: simultaneous open must work (RFC 9293 §3.5).
    #[test]
    fn simultaneous_open() {
        let states = run(&[(Original, SYN), (Reply, SYN), (Original, SYNACK), (Reply, SYNACK), (Original, ACK)]);
        assert_eq!(states, [SynSent, SynSent2, SynRecv, SynRecv, Established]);
    }

    #[test]
    fn rst_closes_from_any_state() {
        for prefix in [&[(Original, SYN)][..], &[(Original, SYN), (Reply, SYNACK), (Original, ACK)][..]] {
            let mut steps = prefix.to_vec();
            steps.push((Reply, RST));
            assert_eq!(*run(&steps).last().unwrap(), Close);
        }
    }

    #[test]
    fn retransmitted_fin_is_not_the_second_fin() {
        let states =
            run(&[(Original, SYN), (Reply, SYNACK), (Original, ACK), (Original, FIN), (Original, FIN), (Reply, ACK)]);
        assert_eq!(states[3..], [FinWait, FinWait, CloseWait]);
    }

    #[test]
    fn reopen_after_time_wait() {
        let mut steps =
            vec![(Original, SYN), (Reply, SYNACK), (Original, ACK), (Original, FIN), (Reply, FIN), (Original, ACK)];
        steps.push((Original, SYN));
        let states = run(&steps);
        assert_eq!(states[5..], [TimeWait, SynSent]);
    }

    #[test]
    fn invalid_and_ignored() {
        let t = TcpTrack::default().step(Original, SYN).1;
        assert_eq!(t.step(Original, SYNACK).0, Verdict::Invalid);
        assert_eq!(t.step(Reply, ACK).0, Verdict::Ignore);
        assert_eq!(t.step(Original, 0).0, Verdict::Invalid);
    }

    #[test]
    fn phases() {
        assert_eq!(SynSent.phase(), TcpPhase::Opening);
        assert_eq!(Established.phase(), TcpPhase::Established);
        assert_eq!(TimeWait.phase(), TcpPhase::Closing);
        assert_eq!(Close.phase(), TcpPhase::Reset);
    }
}
