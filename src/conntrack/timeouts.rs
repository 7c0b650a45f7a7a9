//! Session timeouts and the two profiles (`rfc`, `aws`).
//!
//! | profile | UDP | TCP established | TCP opening/closing | after RST | ICMP |
//! |---|---|---|---|---|---|
//! | `rfc` (RFC 4787 REQ-5, RFC 5382 REQ-5, RFC 5508 REQ-1, RFC 7857 §2.2) | 300 | 7440 | 240 | 240 | 60 |
//! | `aws` (AWS NAT gateway: 350 s idle for every connection) | 350 | 350 | 350 | 350 | 350 |

use super::tcp::TcpPhase;
use crate::wire::ipv4::protocol;
use serde::{Deserialize, Serialize};

/// Named timeout profiles.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    /// The minimums and recommendations of the RFCs.
    Rfc,
    /// The AWS NAT gateway: 350 s idle for everything, and a RST for a packet
    /// on a TCP connection that timed out.
    #[default]
    Aws,
}

/// Idle timeouts in seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timeouts {
    pub udp: u32,
    pub tcp_established: u32,
    /// Opening states (SYN_SENT, SYN_RECV, SYN_SENT2).
    pub tcp_opening: u32,
    /// Closing states (FIN_WAIT, CLOSE_WAIT, LAST_ACK, TIME_WAIT).
    pub tcp_closing: u32,
    /// After a RST was seen (CLOSE).
    pub tcp_reset: u32,
    pub icmp: u32,
    /// UDP flows that are streams (more than one request-response: at least
    /// two packets each way) get this instead of `udp`; 0: no distinction.
    #[serde(default)]
    pub udp_stream: u32,
    /// Send a TCP RST to the inside host for a packet on a connection that
    /// timed out (AWS behaviour), instead of dropping it silently.
    pub tcp_rst_on_expired: bool,
}

impl Timeouts {
    pub fn profile(p: Profile) -> Timeouts {
        match p {
            Profile::Rfc => Timeouts {
                udp: 300,
                tcp_established: 7440,
                tcp_opening: 240,
                tcp_closing: 240,
                tcp_reset: 240,
                icmp: 60,
                udp_stream: 0,
                tcp_rst_on_expired: false,
            },
            Profile::Aws => Timeouts {
                udp: 350,
                tcp_established: 350,
                tcp_opening: 350,
                tcp_closing: 350,
                tcp_reset: 350,
                icmp: 350,
                udp_stream: 0,
                tcp_rst_on_expired: true,
            },
        }
    }

    /// Security groups' connection tracking (AWS's defaults, per interface
    /// configurable there): TCP established 432,000 s (5 days), UDP one way or
    /// one request-response 30 s, UDP streams 180 s. AWS names no figure for
    /// the other TCP states nor for ICMP: natgw uses netfilter's (SYN_SENT
    /// 120 s, FIN and TIME_WAIT 120 s, CLOSE 10 s) and 30 s for ICMP.
    pub fn security_groups() -> Timeouts {
        Timeouts {
            udp: 30,
            tcp_established: 432_000,
            tcp_opening: 120,
            tcp_closing: 120,
            tcp_reset: 10,
            icmp: 30,
            udp_stream: 180,
            tcp_rst_on_expired: false,
        }
    }

    /// The timeout of a session of `proto` in TCP phase `phase` (ignored for UDP, ICMP).
    pub fn for_session(&self, proto: u8, phase: TcpPhase) -> u32 {
        match proto {
            protocol::TCP => match phase {
                TcpPhase::Opening => self.tcp_opening,
                TcpPhase::Established => self.tcp_established,
                TcpPhase::Closing => self.tcp_closing,
                TcpPhase::Reset => self.tcp_reset,
            },
            protocol::ICMP => self.icmp,
            _ => self.udp,
        }
    }
}

impl Default for Timeouts {
    fn default() -> Timeouts {
        Timeouts::profile(Profile::default())
    }
}
