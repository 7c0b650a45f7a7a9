//! Security groups at each host's interface, both ways, with the tracker
//! (`conntrack::tracker`) for their statefulness.
//!
//! A packet meets at most two interfaces with groups: its sender's (on the
//! way out, [`Pipeline::sg_leave`], before any translation) and its
//! receiver's (on the way in, [`Pipeline::sg_arrive`], after the internet
//! gateway's or the NAT gateway's). At the first of them the tracker is asked
//! whether the flow is tracked: if so, the packet passes both, whatever the
//! rules say now. Otherwise the rules decide at each; an ICMP error about a
//! tracked flow passes as that flow's (netfilter's RELATED). A new flow both
//! allowed is tracked once forwarded, under its key at the first interface,
//! unless every interface's groups allow all of its protocol both ways (AWS
//! does not track those TCP and UDP flows, so a rule removed cuts them at
//! once).

use super::topology::IfKind;
use super::{Action, DropReason, IfId, L4, Meta, PacketBuf, Pipeline};
use crate::clock::Timestamp;
use crate::conntrack::{Dir, FlowKey};
use crate::nat::icmp_error;
use crate::route::HostId;
use crate::sg::SgDirection;
use crate::wire::Ipv4Packet;
use crate::wire::icmpv4;

/// What the groups' steps noted about the packet, for the steps after them
/// and for the flow cache.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct SgNote {
    /// The first interface with groups was met.
    pub checked: bool,
    /// The flow's key there (None: an ICMP error about a tracked flow).
    pub key: Option<FlowKey>,
    /// The flow is tracked, and the packet travels this way in it.
    pub tracked: Option<Dir>,
    /// Allowed as a new flow: track it once forwarded.
    pub track: bool,
    /// Tracked by a NAT gateway's session, not the tracker.
    pub via_nat: bool,
    /// The connection tracking profile of the first interface (its host's).
    pub profile: u8,
}

impl Meta {
    /// The 5-tuple the tracker knows the packet by (ICMP: the identifier for
    /// both ports; other protocols: no ports).
    pub(super) fn flow_key(&self) -> FlowKey {
        let (sport, dport) = match self.l4 {
            L4::Tcp { sport, dport, .. } | L4::Udp { sport, dport } => (sport, dport),
            L4::Icmp { ident, .. } => (ident, ident),
            L4::Opaque => (0, 0),
        };
        FlowKey { src: self.src, dst: self.dst, sport, dport, proto: self.proto, zone: self.zone }
    }

    /// A TCP SYN (no ACK, no RST): the first packet of a connection.
    fn opens_connection(&self) -> bool {
        use crate::wire::tcp::flags;
        matches!(self.l4, L4::Tcp { flags: f, .. } if f & (flags::SYN | flags::ACK | flags::RST) == flags::SYN)
    }

    /// Whether the packet may start a tracked flow: anything but ICMP
    /// messages other than query requests.
    fn opens_flow(&self) -> bool {
        match self.l4 {
            L4::Icmp { kind, .. } => crate::nat::NatGateway::opens_icmp_session(kind),
            _ => true,
        }
    }
}

impl Pipeline {
    /// Leaving host `h`'s interface `ingress`.
    #[inline]
    pub(super) fn sg_leave(
        &self,
        now: Timestamp,
        h: HostId,
        ingress: IfId,
        pkt: &PacketBuf,
        m: &Meta,
    ) -> Result<(), Action> {
        if self.topo.security_groups.is_none() {
            return Ok(());
        }
        let host = &self.topo.hosts[usize::from(h)];
        let key = m.flow_key();
        // A SYN is decided by the rules (see `passes_tracked`), also without
        // the NAT sessions' lookup.
        let nat = || if m.opens_connection() { None } else { self.nat_tracked(now, host, m, &key) };
        let note = match self.passes_tracked(now, pkt, m, key, nat) {
            Some(note) => {
                self.note_tracked(&note, host, SgDirection::Outbound);
                note
            }
            None if self.sg_rules(h, ingress, SgDirection::Outbound, m) => SgNote {
                checked: true,
                key: Some(key),
                track: m.opens_flow() && !host.untracked(m.proto),
                profile: host.ct_profile,
                ..SgNote::default()
            },
            None => return Err(Action::Drop(DropReason::SgDeny)),
        };
        self.note_sg(note);
        Ok(())
    }

    /// On the way out of `egress`: the receiving host's inbound rules, and
    /// the tracking of a new flow both ends allowed.
    #[inline]
    pub(super) fn sg_arrive(&self, now: Timestamp, egress: IfId, pkt: &PacketBuf, m: &Meta) -> Result<(), Action> {
        let topo = &*self.topo;
        if topo.security_groups.is_none() {
            return Ok(());
        }
        let mut note = self.trace.get().sg;
        if note.tracked.is_some() || (note.checked && note.key.is_none()) {
            return Ok(());
        }
        if let Some(IfKind::Host(h)) = topo.interfaces.get(usize::from(egress)).map(|i| i.kind) {
            let host = &topo.hosts[usize::from(h)];
            if !note.checked {
                // From the internet: the first interface with groups is this one.
                let key = m.flow_key();
                // A reply through a NAT session this packet did not create.
                let trace = self.trace.get();
                let nat = || match trace.nat {
                    Some((_, dir, _)) if !trace.nat_created && !host.untracked(m.proto) => Some(dir),
                    _ => None,
                };
                if let Some(tracked) = self.passes_tracked(now, pkt, m, key, nat) {
                    self.note_tracked(&tracked, host, SgDirection::Inbound);
                    self.note_sg(tracked);
                    return Ok(());
                }
                note = SgNote {
                    checked: true,
                    key: Some(key),
                    track: m.opens_flow() && !host.untracked(m.proto),
                    profile: host.ct_profile,
                    ..SgNote::default()
                };
            } else if !note.track && m.opens_flow() && !host.untracked(m.proto) {
                // The sender's groups leave it untracked, this host's do not:
                // tracked here, with this interface's timeouts.
                note.track = true;
                note.profile = host.ct_profile;
            }
            if !self.sg_rules(h, egress, SgDirection::Inbound, m) {
                return Err(Action::Drop(DropReason::SgDeny));
            }
        }
        if note.track && self.trace.get().nat.is_some() {
            // Its NAT session, created on the way, tracks it.
            self.note("security group", || "new flow tracked by its NAT gateway session".to_string());
            note.track = false;
            note.via_nat = true;
            note.tracked = Some(Dir::Original);
        }
        if note.track
            && let Some(key) = note.key
        {
            if self.gw.tracker.track(now.secs(), &key, m.tcp_flags(), pkt.len(), note.profile).is_err() {
                return Err(self.drop(DropReason::ConntrackFull));
            }
            self.note("security group", || {
                let whose = if note.profile == 0 { "AWS's default" } else { "the interface's own" };
                format!("new flow tracked: {key:?} ({whose} connection tracking timeouts)")
            });
            note.track = false;
            note.tracked = Some(Dir::Original);
        }
        self.note_sg(note);
        Ok(())
    }

    /// At the first interface with groups: the note of a packet that passes
    /// without the rules, as part of a tracked flow (the tracker's, or the
    /// NAT session `nat` finds) or as an ICMP error about one. A SYN is not
    /// looked up in the tracker: the rules decide it (a retransmitted one
    /// finds its entry when it is tracked again), which saves a lookup per
    /// new connection.
    fn passes_tracked(
        &self,
        now: Timestamp,
        pkt: &PacketBuf,
        m: &Meta,
        key: FlowKey,
        nat: impl FnOnce() -> Option<Dir>,
    ) -> Option<SgNote> {
        let note = SgNote { checked: true, key: Some(key), ..SgNote::default() };
        if !m.opens_connection()
            && let Some(dir) = self.gw.tracker.lookup(now.secs(), &key, m.tcp_flags(), pkt.len())
        {
            return Some(SgNote { tracked: Some(dir), ..note });
        }
        if let Some(dir) = nat() {
            return Some(SgNote { tracked: Some(dir), via_nat: true, ..note });
        }
        // An ICMP error: passes here and at the receiver (no key).
        self.related(now, pkt, m).then_some(SgNote { key: None, ..note })
    }

    /// A packet leaving `host` as `key` on a live NAT session: tracked by it
    /// (unless `host`'s groups leave the protocol untracked).
    fn nat_tracked(
        &self,
        now: Timestamp,
        host: &crate::pipeline::topology::Host,
        m: &Meta,
        key: &FlowKey,
    ) -> Option<Dir> {
        if host.untracked(m.proto) {
            return None;
        }
        self.gw.nats.iter().find_map(|n| n.live_dir(now.secs(), key))
    }

    /// Host `h`'s rules for a packet crossing its interface `ifc` in `dir`:
    /// allowed, or counted as denied there. Recorded either way.
    fn sg_rules(&self, h: HostId, ifc: IfId, dir: SgDirection, m: &Meta) -> bool {
        let Some(sg) = &self.topo.security_groups else { return true };
        let host = &self.topo.hosts[usize::from(h)];
        match sg.check(usize::from(h), dir, &m.acl_packet()) {
            Some(hit) => {
                self.note("security group", || {
                    let g = sg.group(hit.group);
                    let rule = g.and_then(|g| g.rules(dir).get(usize::from(hit.rule)));
                    format!(
                        "{} {}: group {} {} rule {} ({}) allows",
                        host.name,
                        dir.name(),
                        g.map_or("?", |g| g.name.as_str()),
                        dir.name(),
                        hit.rule + 1,
                        rule.map_or(String::new(), |r| sg.describe(r, dir))
                    )
                });
                true
            }
            None => {
                self.counters.sg_denied(usize::from(ifc), dir);
                if dir == SgDirection::Inbound {
                    self.rejected_at(ifc);
                }
                self.note("security group", || {
                    let names: Vec<&str> =
                        host.groups.iter().filter_map(|g| sg.group(*g)).map(|g| g.name.as_str()).collect();
                    format!("{} {}: no rule of {} allows it", host.name, dir.name(), names.join(", "))
                });
                self.note("verdict", || format!("dropped ({})", DropReason::SgDeny));
                false
            }
        }
    }

    /// Records why a packet passed a host's groups without their rules.
    fn note_tracked(&self, note: &SgNote, host: &crate::pipeline::topology::Host, dir: SgDirection) {
        if !self.recording {
            return;
        }
        let why = match (note.tracked, note.via_nat, note.key) {
            (Some(d), true, _) => format!("a tracked flow ({d:?} direction of a NAT gateway session)"),
            (Some(d), false, _) => format!("a tracked flow ({d:?} direction)"),
            (None, _, None) => "an ICMP error about a tracked flow".to_string(),
            _ => return,
        };
        self.note("security group", || format!("{} {}: {why}: passes whatever the rules say", host.name, dir.name()));
    }

    fn note_sg(&self, note: SgNote) {
        let mut trace = self.trace.get();
        trace.sg = note;
        self.trace.set(trace);
    }

    /// An ICMP error whose quoted packet belongs to a tracked flow (in the
    /// tracker, or a NAT session).
    fn related(&self, now: Timestamp, pkt: &PacketBuf, m: &Meta) -> bool {
        let L4::Icmp { kind, .. } = m.l4 else { return false };
        if !icmpv4::is_error(kind) || m.is_fragment {
            return false;
        }
        let b = pkt.bytes();
        let ihl = Ipv4Packet::new_unchecked(b).header_len();
        match icmp_error::parse(&b[ihl..]) {
            Ok(q) => {
                let key = q.key.in_zone(m.zone);
                self.gw.tracker.contains(now.secs(), &key)
                    || self.gw.nats.iter().any(|n| n.live_dir(now.secs(), &key).is_some())
            }
            Err(_) => false,
        }
    }
}
