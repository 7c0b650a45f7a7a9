//! One DNS query in, one response out: the resolver's logic, on the wire
//! format of `hickory-proto`. Pure (no I/O), so tests and the fuzzer drive
//! it directly.

use super::zone::{TTL, Zone};
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, PTR};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use std::net::{IpAddr, Ipv4Addr};

/// How the query came: UDP answers are cut to 512 bytes, or to the client's
/// EDNS size (RFC 6891), with TC set; TCP answers are not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

/// What kind of response was made, for the counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// NOERROR with at least one record.
    Records,
    /// NOERROR, no record of that type (the name exists).
    NoData,
    /// NXDOMAIN: no such name here (nothing is forwarded outside the lab).
    NxDomain,
    /// FORMERR: the query could not be read, or asks more than one question.
    FormErr,
    /// NOTIMP: an opcode other than QUERY.
    NotImp,
    /// REFUSED: a class other than IN.
    Refused,
}

/// Why a datagram got no response at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Silent {
    /// Shorter than a DNS header: there is not even an id to answer.
    Short,
    /// A response, not a query: answering would let two resolvers loop.
    NotAQuery,
}

/// The outcome of one query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Reply { bytes: Vec<u8>, answer: Answer, truncated: bool },
    Drop(Silent),
}

/// Largest UDP response without EDNS (RFC 1035 §4.2.1).
const PLAIN_UDP: usize = 512;
/// The largest UDP payload the resolver offers in its own OPT record (the
/// DNS flag day 2020 value, which avoids IP fragmentation).
const OFFERED_UDP: u16 = 1232;
/// DNS header length.
const HEADER: usize = 12;

/// Answers one query from `zone`.
pub fn answer(query: &[u8], zone: &Zone, transport: Transport) -> Outcome {
    if query.len() < HEADER {
        return Outcome::Drop(Silent::Short);
    }
    // The two header fields needed to answer a query that does not parse:
    // the id (bytes 0-1), QR and the opcode (byte 2).
    if query[2] & 0x80 != 0 {
        return Outcome::Drop(Silent::NotAQuery);
    }
    let id = u16::from_be_bytes([query[0], query[1]]);
    let opcode = OpCode::from_u8((query[2] >> 3) & 0x0f);
    let msg = match Message::from_vec(query) {
        Ok(m) => m,
        Err(_) => return error(id, opcode, ResponseCode::FormErr, Answer::FormErr),
    };
    if msg.metadata.message_type != MessageType::Query {
        return Outcome::Drop(Silent::NotAQuery);
    }
    if msg.metadata.op_code != OpCode::Query {
        return error(id, msg.metadata.op_code, ResponseCode::NotImp, Answer::NotImp);
    }
    let [q] = msg.queries.as_slice() else {
        return error(id, opcode, ResponseCode::FormErr, Answer::FormErr);
    };
    let mut resp = Message::response(id, OpCode::Query);
    resp.metadata.recursion_desired = msg.metadata.recursion_desired;
    resp.metadata.recursion_available = true;
    resp.metadata.checking_disabled = msg.metadata.checking_disabled;
    resp.add_query(q.clone());
    let max_udp = match &msg.edns {
        Some(e) => {
            let mut edns = Edns::new();
            edns.set_max_payload(OFFERED_UDP);
            resp.set_edns(edns);
            usize::from(e.max_payload()).max(PLAIN_UDP)
        }
        None => PLAIN_UDP,
    };
    let kind = if q.query_class() != DNSClass::IN {
        resp.metadata.response_code = ResponseCode::Refused;
        Answer::Refused
    } else {
        lookup(zone, q, &mut resp)
    };
    let Ok(bytes) = resp.to_vec() else {
        return error(id, opcode, ResponseCode::ServFail, Answer::FormErr);
    };
    if transport == Transport::Udp && bytes.len() > max_udp {
        return match resp.truncate().to_vec() {
            Ok(bytes) => Outcome::Reply { bytes, answer: kind, truncated: true },
            Err(_) => error(id, opcode, ResponseCode::ServFail, Answer::FormErr),
        };
    }
    Outcome::Reply { bytes, answer: kind, truncated: false }
}

/// Fills the answer section of `resp` for question `q`.
fn lookup(zone: &Zone, q: &Query, resp: &mut Message) -> Answer {
    let name = q.name();
    let text = name.to_ascii();
    if q.query_type() == RecordType::PTR
        && let Some(ip) = arpa_v4(name)
    {
        return match zone.ptr(ip) {
            Some(target) => match Name::from_ascii(format!("{target}.")) {
                Ok(t) => {
                    resp.add_answer(Record::from_rdata(name.clone(), TTL, RData::PTR(PTR(t))));
                    Answer::Records
                }
                Err(_) => nx(resp),
            },
            None => nx(resp),
        };
    }
    let Some(addrs) = zone.a(&text) else { return nx(resp) };
    match q.query_type() {
        RecordType::A | RecordType::ANY => {
            for ip in addrs {
                resp.add_answer(Record::from_rdata(name.clone(), TTL, RData::A(A(*ip))));
            }
            Answer::Records
        }
        _ => Answer::NoData,
    }
}

fn nx(resp: &mut Message) -> Answer {
    resp.metadata.response_code = ResponseCode::NXDomain;
    Answer::NxDomain
}

/// The address of a `d.c.b.a.in-addr.arpa.` name, if it names one whole address.
fn arpa_v4(name: &Name) -> Option<Ipv4Addr> {
    let net = name.parse_arpa_name().ok()?;
    match (net.addr(), net.prefix_len()) {
        (IpAddr::V4(ip), 32) => Some(ip),
        _ => None,
    }
}

fn error(id: u16, op: OpCode, code: ResponseCode, answer: Answer) -> Outcome {
    let mut m = Message::error_msg(id, op, code);
    m.metadata.recursion_available = true;
    match m.to_vec() {
        Ok(bytes) => Outcome::Reply { bytes, answer, truncated: false },
        Err(_) => Outcome::Drop(Silent::Short),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zone() -> Zone {
        let mut z = Zone::default();
        z.add("ip-10-0-1-10.ec2.internal", Ipv4Addr::new(10, 0, 1, 10));
        z.add("app", Ipv4Addr::new(10, 0, 1, 10));
        for i in 0..100u8 {
            z.add_forward("many.example.internal", Ipv4Addr::new(10, 0, 9, i));
        }
        z
    }

    fn ask(name: &str, t: RecordType, edns: Option<u16>) -> Vec<u8> {
        let mut m = Message::new(0x1234, MessageType::Query, OpCode::Query);
        m.metadata.recursion_desired = true;
        m.add_query(Query::query(Name::from_ascii(name).expect("name"), t));
        if let Some(size) = edns {
            let mut e = Edns::new();
            e.set_max_payload(size);
            m.set_edns(e);
        }
        m.to_vec().expect("encode")
    }

    fn reply(o: Outcome) -> (Message, Answer, bool) {
        match o {
            Outcome::Reply { bytes, answer, truncated } => {
                (Message::from_vec(&bytes).expect("decode"), answer, truncated)
            }
            Outcome::Drop(s) => panic!("dropped: {s:?}"),
        }
    }

    #[test]
    fn a_record_of_a_host() {
        let (m, a, _) = reply(answer(&ask("ip-10-0-1-10.ec2.internal.", RecordType::A, None), &zone(), Transport::Udp));
        assert_eq!(a, Answer::Records);
        assert_eq!(m.metadata.id, 0x1234);
        assert_eq!(m.metadata.message_type, MessageType::Response);
        assert!(m.metadata.recursion_desired && m.metadata.recursion_available);
        assert_eq!(m.answers.len(), 1);
        assert_eq!(m.answers[0].data, RData::A(A(Ipv4Addr::new(10, 0, 1, 10))));
        assert_eq!(m.answers[0].ttl, TTL);
    }

    #[test]
    fn unknown_names_are_nxdomain_and_other_types_nodata() {
        let (m, a, _) = reply(answer(&ask("s3.amazonaws.com.", RecordType::A, None), &zone(), Transport::Udp));
        assert_eq!((a, m.metadata.response_code), (Answer::NxDomain, ResponseCode::NXDomain));
        let (m, a, _) = reply(answer(&ask("app.", RecordType::AAAA, None), &zone(), Transport::Udp));
        assert_eq!((a, m.metadata.response_code, m.answers.len()), (Answer::NoData, ResponseCode::NoError, 0));
    }

    #[test]
    fn reverse_lookup() {
        let (m, a, _) = reply(answer(&ask("10.1.0.10.in-addr.arpa.", RecordType::PTR, None), &zone(), Transport::Udp));
        assert_eq!(a, Answer::Records);
        let RData::PTR(PTR(n)) = &m.answers[0].data else { panic!("not a PTR: {:?}", m.answers) };
        assert_eq!(n.to_ascii(), "ip-10-0-1-10.ec2.internal.");
        let (_, a, _) = reply(answer(&ask("99.1.0.10.in-addr.arpa.", RecordType::PTR, None), &zone(), Transport::Udp));
        assert_eq!(a, Answer::NxDomain);
    }

    #[test]
    fn big_answers_are_truncated_on_udp_only() {
        let q = ask("many.example.internal.", RecordType::A, None);
        let (m, _, tc) = reply(answer(&q, &zone(), Transport::Udp));
        assert!(tc && m.metadata.truncation && m.answers.is_empty());
        let (m, _, tc) = reply(answer(&q, &zone(), Transport::Tcp));
        assert!(!tc && m.answers.len() == 100);
        // EDNS raises the limit: 100 answers are 12 + ~30 + 100 * 16 bytes.
        let (m, _, tc) =
            reply(answer(&ask("many.example.internal.", RecordType::A, Some(4096)), &zone(), Transport::Udp));
        assert!(!tc && m.answers.len() == 100 && m.edns.is_some());
    }

    #[test]
    fn malformed_queries_get_formerr_or_nothing() {
        assert_eq!(answer(&[1, 2, 3], &zone(), Transport::Udp), Outcome::Drop(Silent::Short));
        // A response is never answered.
        let mut r = ask("app.", RecordType::A, None);
        r[2] |= 0x80;
        assert_eq!(answer(&r, &zone(), Transport::Udp), Outcome::Drop(Silent::NotAQuery));
        // A header that promises a question the datagram does not carry.
        let mut q = ask("app.", RecordType::A, None);
        q.truncate(14);
        let (m, a, _) = reply(answer(&q, &zone(), Transport::Udp));
        assert_eq!((a, m.metadata.response_code, m.metadata.id), (Answer::FormErr, ResponseCode::FormErr, 0x1234));
        // Two questions.
        let mut m2 = Message::new(7, MessageType::Query, OpCode::Query);
        m2.add_query(Query::query(Name::from_ascii("app.").expect("name"), RecordType::A));
        m2.add_query(Query::query(Name::from_ascii("web.").expect("name"), RecordType::A));
        let (_, a, _) = reply(answer(&m2.to_vec().expect("encode"), &zone(), Transport::Udp));
        assert_eq!(a, Answer::FormErr);
    }

    #[test]
    fn other_opcodes_and_classes() {
        let mut q = ask("app.", RecordType::A, None);
        q[2] = (q[2] & !0x78) | (2 << 3); // STATUS
        let (_, a, _) = reply(answer(&q, &zone(), Transport::Udp));
        assert_eq!(a, Answer::NotImp);
        let mut m = Message::new(9, MessageType::Query, OpCode::Query);
        let mut query = Query::query(Name::from_ascii("version.bind.").expect("name"), RecordType::TXT);
        query.set_query_class(DNSClass::CH);
        m.add_query(query);
        let (_, a, _) = reply(answer(&m.to_vec().expect("encode"), &zone(), Transport::Udp));
        assert_eq!(a, Answer::Refused);
    }

    #[test]
    fn random_bytes_never_panic() {
        // A deterministic xorshift: every length, every byte pattern class.
        let mut s = 0x9e37_79b9_7f4a_7c15u64;
        let base = ask("ip-10-0-1-10.ec2.internal.", RecordType::A, Some(1232));
        for i in 0..20_000 {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            let mut q = if i % 2 == 0 { base.clone() } else { vec![0u8; (s % 300) as usize] };
            for _ in 0..(s % 8) {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                if !q.is_empty() {
                    let at = (s as usize) % q.len();
                    q[at] = (s >> 32) as u8;
                }
            }
            q.truncate((s >> 40) as usize % (q.len() + 1));
            let _ = answer(&q, &zone(), Transport::Udp);
        }
    }
}
