//! Hostile input: random bytes and mutated packets never panic the pipeline,
//! and every packet not forwarded is counted under a drop reason.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure

mod common;
use common::*;
use natgw::pipeline::{Action, DropReason};
use proptest::prelude::*;

fn total_drops(lab: &Lab) -> u64 {
    lab.totals().drops.iter().map(|(_, n)| n).sum()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200), from in 0usize..3) {
        let mut lab = Lab::new();
        let ifc = ["app", "bastion", "internet"][from];
        let (a, _) = lab.send(ifc, &bytes);
        if let Action::Drop(_) | Action::Reply { .. } = a {
            prop_assert_eq!(total_drops(&lab), 1);
        }
    }

    #[test]
    fn mutated_packets_never_panic(flip in proptest::collection::vec((0usize..64, any::<u8>()), 1..6),
                                   kind in 0usize..5, cut in 0usize..80) {
        let mut lab = Lab::new();
        // Establish a session first so mutations also hit the NAT paths.
        let sent = lab.pass("app", "internet", &udp(APP, 40000, WEB, 53, b"q"));
        let ext = seen(&sent).sport;
        let base = match kind {
            0 => udp(WEB, 53, NAT_IP, ext, b"reply payload"),
            1 => tcp(WEB, 80, NAT_IP, ext, "SA", 1, 2),
            2 => icmp_error(WEB, NAT_IP, port_unreachable(), &sent),
            3 => echo_reply(WEB, NAT_IP, ext, 1),
            _ => udp(WEB, 53, BASTION_EIP, 22, b"x"),
        };
        let mut v = base.clone();
        for (at, x) in flip {
            if let Some(b) = v.get_mut(at) { *b ^= x; }
        }
        v.truncate(v.len().saturating_sub(cut % (v.len() + 1)));
        let before = total_drops(&lab);
        let (a, _) = lab.send("internet", &v);
        match a {
            Action::Forward(_) | Action::Held => prop_assert_eq!(total_drops(&lab), before),
            Action::Drop(_) | Action::Reply { .. } => prop_assert_eq!(total_drops(&lab), before + 1),
        }
    }
}

#[test]
fn a_flood_of_unsolicited_packets_leaves_no_state() {
    let mut lab = Lab::new();
    for i in 0..5000u32 {
        let src = [198, 51, 100, (i % 200) as u8 + 1];
        let (a, _) = lab.send("internet", &udp(src, (i % 60000) as u16 + 1, NAT_IP, (i % 64000) as u16 + 1024, b"x"));
        assert_eq!(a, Action::Drop(DropReason::NatNoSession));
    }
    assert_eq!(lab.gw.nats()[0].session_count(), 0);
    assert_eq!(lab.totals().drop_count("nat_no_session"), 5000);
}
