//! The resolver's threads: real UDP and TCP sockets on port 53 of each
//! resolver address, made inside the resolver's namespace (the lab's `dns`
//! namespace, whose TUN device the workers forward to like any other).
//!
//! Bounded everywhere: a per-source rate limit (AWS: 1024 packets a second
//! per network interface), at most [`MAX_TCP`] TCP connections at once, each
//! with a 5 s idle limit and at most [`MAX_TCP_QUERIES`] queries. Everything
//! refused or dropped is counted ([`DnsStats`]).

use super::answer::{Answer, Outcome, Silent, Transport, answer};
use super::zone::Zone;
use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::io::{Read, Seek, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsFd;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// TCP connections served at once; more are closed at once and counted.
pub const MAX_TCP: usize = 64;
/// Queries one TCP connection may ask before it is closed.
pub const MAX_TCP_QUERIES: usize = 1000;
/// Idle limit of a TCP connection.
const TCP_IDLE: Duration = Duration::from_secs(5);
/// How often the threads look at the stop flag.
const TICK: Duration = Duration::from_millis(200);
/// Distinct sources the rate limiter follows in one second; queries from
/// further sources in that second are refused (only VPC hosts reach here).
const MAX_SOURCES: usize = 65_536;

macro_rules! dns_counters {
    ($( $(#[doc = $doc:literal])* $name:ident, )*) => {
        /// The resolver's counters (relaxed atomics, bumped by its threads).
        #[derive(Debug, Default)]
        pub struct DnsCounters { $( $(#[doc = $doc])* pub $name: AtomicU64, )* }

        /// A snapshot of [`DnsCounters`], as `natgw stats` shows it.
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
        pub struct DnsStats { $( $(#[doc = $doc])* #[serde(default)] pub $name: u64, )* }

        impl DnsCounters {
            pub fn snapshot(&self) -> DnsStats {
                DnsStats { $( $name: self.$name.load(Ordering::Relaxed), )* }
            }
        }

        impl DnsStats {
            /// (name, value) of every counter, in order.
            pub fn fields(&self) -> Vec<(&'static str, u64)> {
                vec![$( (stringify!($name), self.$name), )*]
            }
        }
    };
}

dns_counters! {
    /// Datagrams that arrived on UDP port 53.
    udp_queries,
    /// Queries read from TCP connections.
    tcp_queries,
    /// NOERROR answers with records.
    answered,
    /// NOERROR answers without records of the asked type.
    nodata,
    /// NXDOMAIN answers (nothing is forwarded outside the lab).
    nxdomain,
    /// FORMERR answers (unreadable queries).
    formerr,
    /// NOTIMP answers (opcodes other than QUERY).
    notimp,
    /// REFUSED answers (classes other than IN).
    refused,
    /// UDP answers cut short with TC set (the client retries over TCP).
    truncated,
    /// Queries over the per-source rate limit: not answered.
    rate_limited,
    /// Datagrams shorter than a DNS header: not answered.
    short,
    /// DNS responses sent to the resolver: never answered.
    not_a_query,
    /// TCP connections closed at once because [`MAX_TCP`] were open.
    tcp_refused,
    /// TCP connections closed for a bad length, idleness or too many queries.
    tcp_closed_bad,
    /// Datagrams the resolver namespace's kernel dropped for a full socket
    /// buffer (its `/proc/net/snmp` `Udp: RcvbufErrors`).
    rcvbuf_errors,
    /// Answers that could not be sent.
    send_errors,
}

/// Queries a second per source address; 0: no limit.
#[derive(Debug)]
struct Limiter {
    limit: u32,
    start: Instant,
    state: parking_lot::Mutex<(u64, HashMap<IpAddr, u32>)>,
}

impl Limiter {
    fn allow(&self, src: IpAddr) -> bool {
        if self.limit == 0 {
            return true;
        }
        let sec = self.start.elapsed().as_secs();
        let mut st = self.state.lock();
        if st.0 != sec {
            st.0 = sec;
            st.1.clear();
        }
        let full = st.1.len() >= MAX_SOURCES;
        match st.1.get_mut(&src) {
            Some(n) if *n >= self.limit => false,
            Some(n) => {
                *n += 1;
                true
            }
            None if full => false,
            None => {
                st.1.insert(src, 1);
                true
            }
        }
    }
}

struct Shared {
    zone: ArcSwap<Zone>,
    counters: DnsCounters,
    limiter: Limiter,
    stop: AtomicBool,
    tcp_open: AtomicUsize,
    /// The resolver namespace's `/proc/net/snmp`, opened inside it.
    snmp: parking_lot::Mutex<Option<std::fs::File>>,
}

/// A running resolver.
pub struct Resolver {
    shared: Arc<Shared>,
    threads: parking_lot::Mutex<Vec<JoinHandle<()>>>,
    pub addresses: Vec<Ipv4Addr>,
}

impl Resolver {
    /// Binds UDP and TCP port 53 on each address inside namespace file
    /// `netns` (the addresses must be configured there) and starts answering.
    pub fn start(netns: &Path, addresses: &[Ipv4Addr], zone: Zone, rate_limit: u32) -> std::io::Result<Resolver> {
        let addrs = addresses.to_vec();
        let (udps, tcps, snmp) = crate::io::netns::run_in(netns, move || {
            let mut udps = Vec::new();
            let mut tcps = Vec::new();
            for a in &addrs {
                let u = UdpSocket::bind((*a, 53))?;
                // Room for a burst: a flood fills this, not the workers' queues.
                let _ = nix::sys::socket::setsockopt(&u, nix::sys::socket::sockopt::RcvBuf, &(4 << 20));
                u.set_read_timeout(Some(TICK))?;
                udps.push(u);
                let t = TcpListener::bind((*a, 53))?;
                t.set_nonblocking(true)?;
                tcps.push(t);
            }
            let snmp = std::fs::File::open("/proc/thread-self/net/snmp").ok();
            Ok((udps, tcps, snmp))
        })?;
        let shared = Arc::new(Shared {
            zone: ArcSwap::from_pointee(zone),
            counters: DnsCounters::default(),
            limiter: Limiter {
                limit: rate_limit,
                start: Instant::now(),
                state: parking_lot::Mutex::new((0, HashMap::new())),
            },
            stop: AtomicBool::new(false),
            tcp_open: AtomicUsize::new(0),
            snmp: parking_lot::Mutex::new(snmp),
        });
        let mut threads = Vec::new();
        for (i, u) in udps.into_iter().enumerate() {
            let s = shared.clone();
            threads.push(std::thread::Builder::new().name(format!("dns-udp{i}")).spawn(move || serve_udp(&s, &u))?);
        }
        let s = shared.clone();
        threads.push(std::thread::Builder::new().name("dns-tcp".into()).spawn(move || serve_tcp(&s, &tcps))?);
        Ok(Resolver { shared, threads: parking_lot::Mutex::new(threads), addresses: addresses.to_vec() })
    }

    /// Swaps in a new zone (a reload); queries in flight finish with the old one.
    pub fn set_zone(&self, zone: Zone) {
        self.shared.zone.store(Arc::new(zone));
    }

    /// The zone answered from now.
    pub fn zone(&self) -> Arc<Zone> {
        self.shared.zone.load_full()
    }

    pub fn stats(&self) -> DnsStats {
        let mut s = self.shared.counters.snapshot();
        if let Some(f) = self.shared.snmp.lock().as_mut() {
            s.rcvbuf_errors = udp_rcvbuf_errors(f).unwrap_or(0);
        }
        s
    }

    /// Stops every thread (within [`TICK`], and TCP connections within their idle limit).
    pub fn stop(&self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        for t in self.threads.lock().drain(..) {
            let _ = t.join();
        }
    }
}

/// `Udp: ... RcvbufErrors ...` of an open `/proc/net/snmp`.
fn udp_rcvbuf_errors(f: &mut std::fs::File) -> Option<u64> {
    f.rewind().ok()?;
    let mut text = String::new();
    f.read_to_string(&mut text).ok()?;
    let mut udp = text.lines().filter(|l| l.starts_with("Udp:"));
    let (names, values) = (udp.next()?, udp.next()?);
    let i = names.split_whitespace().position(|n| n == "RcvbufErrors")?;
    values.split_whitespace().nth(i)?.parse().ok()
}

fn count(c: &DnsCounters, a: Answer, truncated: bool) {
    let k = match a {
        Answer::Records => &c.answered,
        Answer::NoData => &c.nodata,
        Answer::NxDomain => &c.nxdomain,
        Answer::FormErr => &c.formerr,
        Answer::NotImp => &c.notimp,
        Answer::Refused => &c.refused,
    };
    k.fetch_add(1, Ordering::Relaxed);
    if truncated {
        c.truncated.fetch_add(1, Ordering::Relaxed);
    }
}

/// One query from `src`: the response to send, if any (counted either way).
fn respond(s: &Shared, src: IpAddr, query: &[u8], t: Transport) -> Option<Vec<u8>> {
    let c = &s.counters;
    if !s.limiter.allow(src) {
        c.rate_limited.fetch_add(1, Ordering::Relaxed);
        return None;
    }
    match answer(query, &s.zone.load(), t) {
        Outcome::Reply { bytes, answer, truncated } => {
            count(c, answer, truncated);
            Some(bytes)
        }
        Outcome::Drop(Silent::Short) => {
            c.short.fetch_add(1, Ordering::Relaxed);
            None
        }
        Outcome::Drop(Silent::NotAQuery) => {
            c.not_a_query.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}

fn serve_udp(s: &Shared, sock: &UdpSocket) {
    let mut buf = vec![0u8; 65_536];
    while !s.stop.load(Ordering::Relaxed) {
        let (n, from) = match sock.recv_from(&mut buf) {
            Ok(x) => x,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                tracing::warn!(error = %e, "dns: udp receive failed");
                std::thread::sleep(TICK);
                continue;
            }
        };
        s.counters.udp_queries.fetch_add(1, Ordering::Relaxed);
        if let Some(out) = respond(s, from.ip(), &buf[..n], Transport::Udp)
            && sock.send_to(&out, from).is_err()
        {
            s.counters.send_errors.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn serve_tcp(s: &Arc<Shared>, listeners: &[TcpListener]) {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    while !s.stop.load(Ordering::Relaxed) {
        let mut fds: Vec<PollFd<'_>> = listeners.iter().map(|l| PollFd::new(l.as_fd(), PollFlags::POLLIN)).collect();
        let timeout = PollTimeout::try_from(TICK.as_millis() as i32).unwrap_or(PollTimeout::NONE);
        if poll(&mut fds, timeout).unwrap_or(0) <= 0 {
            continue;
        }
        for l in listeners {
            while let Ok((stream, from)) = l.accept() {
                if s.tcp_open.fetch_add(1, Ordering::Relaxed) >= MAX_TCP {
                    s.tcp_open.fetch_sub(1, Ordering::Relaxed);
                    s.counters.tcp_refused.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                let s2 = s.clone();
                let spawned = std::thread::Builder::new().name("dns-tcp-conn".into()).spawn(move || {
                    serve_conn(&s2, stream, from);
                    s2.tcp_open.fetch_sub(1, Ordering::Relaxed);
                });
                if spawned.is_err() {
                    s.tcp_open.fetch_sub(1, Ordering::Relaxed);
                    s.counters.tcp_refused.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}

/// DNS over TCP (RFC 1035 §4.2.2, RFC 7766): two-byte length, message, repeated.
fn serve_conn(s: &Shared, mut stream: TcpStream, from: SocketAddr) {
    if stream.set_nonblocking(false).is_err()
        || stream.set_read_timeout(Some(TCP_IDLE)).is_err()
        || stream.set_write_timeout(Some(TCP_IDLE)).is_err()
    {
        return;
    }
    let mut buf = vec![0u8; 65_535];
    for _ in 0..MAX_TCP_QUERIES {
        if s.stop.load(Ordering::Relaxed) {
            return;
        }
        let mut len = [0u8; 2];
        match stream.read_exact(&mut len) {
            Ok(()) => {}
            // The client closed between queries: the normal end.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return,
            Err(_) => {
                s.counters.tcp_closed_bad.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
        let n = usize::from(u16::from_be_bytes(len));
        if stream.read_exact(&mut buf[..n]).is_err() {
            s.counters.tcp_closed_bad.fetch_add(1, Ordering::Relaxed);
            return;
        }
        s.counters.tcp_queries.fetch_add(1, Ordering::Relaxed);
        let Some(out) = respond(s, from.ip(), &buf[..n], Transport::Tcp) else { continue };
        let Ok(l) = u16::try_from(out.len()) else { continue };
        let mut framed = Vec::with_capacity(out.len() + 2);
        framed.extend_from_slice(&l.to_be_bytes());
        framed.extend_from_slice(&out);
        if stream.write_all(&framed).is_err() {
            s.counters.send_errors.fetch_add(1, Ordering::Relaxed);
            return;
        }
    }
    s.counters.tcp_closed_bad.fetch_add(1, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limiter_counts_per_source_per_second() {
        let l = Limiter { limit: 3, start: Instant::now(), state: parking_lot::Mutex::new((0, HashMap::new())) };
        let a: IpAddr = Ipv4Addr::new(10, 0, 1, 10).into();
        let b: IpAddr = Ipv4Addr::new(10, 0, 1, 11).into();
        let got: Vec<bool> = (0..5).map(|_| l.allow(a)).collect();
        // Unless the second turned over mid-way, the fourth and fifth are refused.
        if l.start.elapsed() < Duration::from_millis(900) {
            assert_eq!(got, [true, true, true, false, false]);
        }
        assert!(l.allow(b));
        let off = Limiter { limit: 0, start: Instant::now(), state: parking_lot::Mutex::new((0, HashMap::new())) };
        assert!((0..10_000).all(|_| off.allow(a)));
    }

    #[test]
    fn reads_rcvbuf_errors_from_snmp() {
        let dir = std::env::temp_dir().join(format!("natgw-snmp-{}", std::process::id()));
        std::fs::write(
            &dir,
            "Ip: Forwarding\nIp: 2\nUdp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors\nUdp: 10 0 3 9 7 0\n",
        )
        .expect("write");
        let mut f = std::fs::File::open(&dir).expect("open");
        assert_eq!(udp_rcvbuf_errors(&mut f), Some(7));
        let _ = std::fs::remove_file(&dir);
    }
}
