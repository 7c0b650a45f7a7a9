//! The flow log step: which records a packet adds, at which interfaces
//! (see [`crate::flowlog`] for the aggregation and the formats).
//!
//! A forwarded packet is counted as ACCEPT at the host interface it left
//! (egress), at the NAT gateway's interface it crossed (twice: in from one
//! side, out to the other, with AWS's addresses: the NAT gateway's private
//! address as `dstaddr` or `srcaddr`, the real ends as `pkt-srcaddr` and
//! `pkt-dstaddr`; the Elastic IP never shows), and at the host interface it
//! reached (ingress). A packet a security group or a network ACL refused is
//! counted as REJECT at the host interface it was leaving or bound for.

use super::topology::IfKind;
use super::{Action, DropReason, IfId, Meta, Pipeline};
use crate::clock::Timestamp;
use crate::conntrack::{Dir, FlowKey};
use crate::flowlog::RecordKey;
use crate::route::NatId;

impl Pipeline {
    fn kind(&self, i: IfId) -> Option<IfKind> {
        self.topo.interfaces.get(usize::from(i)).map(|x| x.kind)
    }

    fn is_host(&self, i: IfId) -> bool {
        matches!(self.kind(i), Some(IfKind::Host(_)))
    }

    /// A group or ACL refused the packet on its way into host interface
    /// `at`: that interface gets the REJECT record (else the sender's does).
    pub(super) fn rejected_at(&self, at: IfId) {
        let mut trace = self.trace.get();
        trace.reject_at = Some(at);
        self.trace.set(trace);
    }

    /// After the walk: the records of its verdict.
    pub(super) fn log_walk(
        &mut self,
        now: Timestamp,
        ingress: IfId,
        orig: &FlowKey,
        action: Action,
        m: &Meta,
        len: usize,
    ) {
        let flags = m.tcp_flags();
        // The VPC resolver's traffic is not logged (AWS).
        let dns = |i: IfId| self.kind(i) == Some(IfKind::Dns);
        if dns(ingress) || matches!(action, Action::Forward(e) if dns(e)) {
            return;
        }
        match action {
            Action::Forward(egress) => {
                let trace = self.trace.get();
                let nat = trace.nat.map(|(n, d, _)| (n, d));
                let fin = m.flow_key();
                // The flow cache learns where the records are on its first hit.
                self.log_forward(now, ingress, orig, egress, &fin, nat, len, flags);
            }
            Action::Drop(DropReason::SgDeny | DropReason::AclDeny) => {
                let (eni, flow) = match self.trace.get().reject_at {
                    Some(at) => (at, m.flow_key()),
                    None if self.is_host(ingress) => (ingress, *orig),
                    None => return,
                };
                let key = RecordKey {
                    eni,
                    flow,
                    pkt_src: flow.src,
                    pkt_dst: flow.dst,
                    reject: true,
                    ingress: eni != ingress,
                };
                if let Some(t) = self.flow_log.as_mut() {
                    t.add(now.secs(), &key, len, flags);
                }
            }
            _ => {}
        }
    }

    /// The ACCEPT records of a forwarded packet that came in as `orig` and
    /// left as `fin`, through NAT gateway session `nat` if any; where they
    /// are, for the flow's next packets.
    #[allow(clippy::too_many_arguments)]
    #[inline]
    pub(super) fn log_forward(
        &mut self,
        now: Timestamp,
        ingress: IfId,
        orig: &FlowKey,
        egress: IfId,
        fin: &FlowKey,
        nat: Option<(NatId, Dir)>,
        len: usize,
        flags: u8,
    ) -> crate::flowlog::Refs {
        let (from_host, to_host) = (self.is_host(ingress), self.is_host(egress));
        let nat_eni = nat.and_then(|(n, d)| {
            let private = u32::from(self.topo.nat_gateways.get(usize::from(n))?.private_ip);
            Some((self.topo.interfaces.len() as u16 + n, d, private))
        });
        let Some(t) = self.flow_log.as_mut() else { return crate::flowlog::Refs::default() };
        let secs = now.secs();
        let mut refs = crate::flowlog::Refs { epoch: t.epoch(), ..Default::default() };
        let mut complete = true;
        let mut put = |r: Option<u16>| match r {
            Some(i) if usize::from(refs.n) < refs.slots.len() => {
                refs.slots[usize::from(refs.n)] = i;
                refs.n += 1;
            }
            _ => complete = false,
        };
        let rec = |eni, flow: FlowKey, pkt_src, pkt_dst, ingress| RecordKey {
            eni,
            flow,
            pkt_src,
            pkt_dst,
            reject: false,
            ingress,
        };
        if from_host {
            put(t.add(secs, &rec(ingress, *orig, orig.src, orig.dst, false), len, flags));
        }
        if let Some((eni, dir, private)) = nat_eni {
            let (inbound, outbound) = match dir {
                // app -> NAT (to the remote), then NAT -> remote from the external port.
                Dir::Original => (
                    rec(eni, FlowKey { dst: private, ..*orig }, orig.src, orig.dst, true),
                    rec(eni, FlowKey { src: private, ..*fin }, private, fin.dst, false),
                ),
                // remote -> NAT (the external port), then NAT -> app.
                Dir::Reply => (
                    rec(eni, FlowKey { dst: private, ..*orig }, orig.src, private, true),
                    rec(eni, FlowKey { src: private, ..*fin }, orig.src, fin.dst, false),
                ),
            };
            put(t.add(secs, &inbound, len, flags));
            put(t.add(secs, &outbound, len, flags));
        }
        if to_host {
            put(t.add(secs, &rec(egress, *fin, fin.src, fin.dst, true), len, flags));
        }
        // A skipped record: no shortcut, the next packet tries again.
        if !complete {
            refs.epoch = 0;
        }
        refs
    }
}
