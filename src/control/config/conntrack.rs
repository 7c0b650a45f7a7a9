//! The config pass for a host's `connection_tracking` table: the idle
//! timeouts of the flows its security groups track, as AWS's per-interface
//! connection tracking configuration sets them (ConnectionTrackingSpecification
//! of an ENI: TcpEstablishedTimeout, UdpStreamTimeout, UdpTimeout).
//!
//! Distinct sets are interned: the tracker knows them by a small number, 0
//! for AWS's defaults, which every flow of an interface without its own
//! settings gets.

use super::{ConfigError, Ctx};
use crate::conntrack::Timeouts;
use serde::Deserialize;
use toml::Spanned;

/// A host's `connection_tracking = { ... }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ConnTrackSection {
    /// Established TCP, seconds (AWS: 60 to 432,000; default 432,000).
    tcp_established_timeout: Option<Spanned<u32>>,
    /// UDP flows that saw more than one request-response (AWS: 60 to 180;
    /// default 180).
    udp_stream_timeout: Option<Spanned<u32>>,
    /// Other UDP flows (AWS: 30 to 60; default 30).
    udp_timeout: Option<Spanned<u32>>,
}

/// The timeout sets of a VPC's interfaces: index 0 is AWS's defaults.
#[derive(Debug)]
pub(super) struct Profiles {
    sets: Vec<Timeouts>,
}

impl Default for Profiles {
    fn default() -> Profiles {
        Profiles { sets: vec![Timeouts::security_groups()] }
    }
}

impl Profiles {
    /// The profile of an interface whose table is `section` (None: 0).
    pub(super) fn intern(&mut self, cx: &Ctx<'_>, section: Option<&ConnTrackSection>) -> Result<u8, ConfigError> {
        let Some(s) = section else { return Ok(0) };
        let mut t = Timeouts::security_groups();
        let field = |v: &Option<Spanned<u32>>, name: &str, lo: u32, hi: u32, default: u32| match v {
            None => Ok(default),
            Some(v) if (lo..=hi).contains(v.get_ref()) => Ok(*v.get_ref()),
            Some(v) => Err(cx.err(
                v.span(),
                format!("connection_tracking.{name} = {}: AWS allows {lo} to {hi} seconds", v.get_ref()),
                format!("write a value from {lo} to {hi} (default {default})"),
            )),
        };
        t.tcp_established =
            field(&s.tcp_established_timeout, "tcp_established_timeout", 60, 432_000, t.tcp_established)?;
        t.udp_stream = field(&s.udp_stream_timeout, "udp_stream_timeout", 60, 180, t.udp_stream)?;
        t.udp = field(&s.udp_timeout, "udp_timeout", 30, 60, t.udp)?;
        if let Some(i) = self.sets.iter().position(|x| *x == t) {
            return Ok(i as u8);
        }
        if self.sets.len() > usize::from(u8::MAX) {
            let span = s.udp_timeout.as_ref().or(s.udp_stream_timeout.as_ref()).or(s.tcp_established_timeout.as_ref());
            return Err(cx.err(
                span.map_or(0..0, |v| v.span()),
                "more than 255 different connection_tracking settings",
                "give interfaces fewer distinct sets of timeouts",
            ));
        }
        self.sets.push(t);
        Ok((self.sets.len() - 1) as u8)
    }

    /// The sets beyond AWS's defaults, profile 1 first.
    pub(super) fn extra(self) -> Vec<Timeouts> {
        self.sets.into_iter().skip(1).collect()
    }
}
