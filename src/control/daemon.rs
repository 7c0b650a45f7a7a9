//! A running gateway: TUN devices in the namespaces of a VPC, the workers,
//! the reaper, and the control socket.

use super::config::{Steering, Vpc};
use super::socket::{self, NatSessions, NatStatus, Reply, Request, RouteTableView, Stats};
use super::steering::{self, Auto, Steer};
use crate::clock::Clock;
use crate::io::steer::Steerer;
use crate::io::{OffloadLevel, TunOptions, netns, tun};
use crate::pipeline::{Gateway, Totals};
use crate::worker::Workers;
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

/// How to start a gateway.
#[derive(Clone, Debug)]
pub struct Options {
    /// Prepended (with `-`) to every namespace name of the VPC file (the lab's run-unique prefix).
    pub netns_prefix: Option<String>,
    /// Where the control socket goes.
    pub socket: PathBuf,
    /// Worker threads (0: one per core).
    pub workers: usize,
    /// Use TUN offloads; None takes the config's choice.
    pub offload: Option<bool>,
    /// The benchmark's ceiling: forward by destination only (no NAT, no ACL).
    pub route_only: bool,
    /// Overrides the config's `busy_poll_us`.
    pub busy_poll_us: Option<u64>,
    /// Overrides the config's `steering`.
    pub steering: Option<Steering>,
}

/// Why a gateway did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("namespace `{0}` does not exist (create it first, or use `natgw lab up`)")]
    NoNamespace(String),
    #[error("creating TUN device {dev} in namespace {ns}: {source} (run as root; is /dev/net/tun there?)")]
    Tun { dev: String, ns: String, source: std::io::Error },
    #[error(
        "TUN device {dev} exists already in namespace {ns}: is another natgw running on these namespaces? \
         (`natgw lab list`; give this one other namespaces with --netns-prefix)"
    )]
    TunExists { dev: String, ns: String },
    #[error(transparent)]
    Netns(#[from] netns::NetnsError),
    #[error("starting the VPC's DNS resolver in namespace {ns}: {source} (is port 53 taken there?)")]
    Dns { ns: String, source: std::io::Error },
    #[error("control socket {path}: {source}")]
    Socket { path: String, source: std::io::Error },
    #[error("control socket {0} belongs to a running natgw: give this one its own with --socket")]
    SocketInUse(String),
    #[error("starting workers: {0}")]
    Workers(std::io::Error),
    #[error(
        "steering = \"cpu\": attaching the eBPF queue-steering program failed: {0} (needs root or CAP_BPF and a kernel with BPF; use steering = \"flow\" or --steering flow)"
    )]
    Steering(std::io::Error),
}

/// The namespace an attachment lives in, given the lab prefix.
pub fn namespace_name(prefix: Option<&str>, ns: &str) -> String {
    match prefix {
        Some(p) => format!("{p}-{ns}"),
        None => ns.to_string(),
    }
}

/// The namespace of attachment `a`. Outside a lab the resolver's namespace
/// is the gateway's own, named as a lab's would be (`ngw<pid>-dns`): it
/// never lands in a namespace of the user's, and a dead gateway's is found
/// and removed by the next `natgw lab up`.
pub fn attachment_namespace(prefix: Option<&str>, a: &super::config::Attachment) -> String {
    match prefix {
        None if a.interface == "dns" => format!("ngw{}-{}", std::process::id(), a.namespace),
        _ => namespace_name(prefix, &a.namespace),
    }
}

/// The routing table a secondary interface `i`'s own address leaves by.
pub fn eni_table(i: usize) -> u32 {
    100 + i as u32
}

/// The TUN device name of interface `i` (at most 15 bytes).
pub fn tun_name(prefix: Option<&str>, i: usize) -> String {
    let base = prefix.map_or_else(|| format!("ngw{}", std::process::id() % 10_000_000), str::to_string);
    let mut n = format!("{base}-t{i}");
    n.truncate(15);
    n
}

/// A running gateway.
pub struct Daemon {
    gw: Arc<Gateway>,
    workers: Option<Workers>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    socket: PathBuf,
    pub offload: OffloadLevel,
    resolver: Option<Arc<crate::dns::Resolver>>,
    /// The resolver's namespace, when this gateway made it (outside a lab).
    own_namespace: OwnNamespace,
    /// Detached interfaces' namespace, if one was made.
    parked: Arc<parking_lot::Mutex<Option<String>>>,
}

/// A namespace the gateway made for itself; deleted when dropped.
struct OwnNamespace(Option<String>);

impl Drop for OwnNamespace {
    fn drop(&mut self) {
        if let Some(ns) = self.0.take()
            && let Err(e) = netns::delete(&ns)
        {
            tracing::warn!(namespace = %ns, error = %e, "could not delete the resolver's namespace");
        }
    }
}

struct Shared {
    gw: Arc<Gateway>,
    /// The VPC as configured and changed since; the topology is compiled from it.
    vpc: parking_lot::Mutex<Vpc>,
    counters: Vec<Arc<crate::pipeline::Counters>>,
    clock: Clock,
    offload: OffloadLevel,
    /// The steering asked for.
    steering: Steering,
    /// The eBPF steering, if in use (`cpu` or `auto`, more than one worker).
    steer: Option<Arc<Steer>>,
    stop: Arc<AtomicBool>,
    /// VPC Flow Logs' writer, if the file asks for flow logs.
    flow_logs: Option<super::flow_writer::FlowLogWriter>,
    /// When `natgw conntrack --events` last asked (clock seconds): the
    /// events stay armed for 5 s after.
    events_asked: std::sync::atomic::AtomicU32,
    /// When `natgw capture` last asked (clock seconds): a capture whose
    /// reader went away stops 5 s after.
    capture_asked: std::sync::atomic::AtomicU32,
    /// The VPC's DNS resolver, if `enable_dns_support` is on.
    resolver: Option<Arc<crate::dns::Resolver>>,
    /// The lab's namespace prefix (None: namespaces as the file names them).
    prefix: Option<String>,
    /// Where detached interfaces wait, once one has been detached: the
    /// gateway's own namespace, deleted when it stops.
    parked: Arc<parking_lot::Mutex<Option<String>>>,
    /// Held while an interface moves: one move at a time.
    eni_moving: parking_lot::Mutex<()>,
}

impl Daemon {
    /// Creates the devices, configures the namespaces, starts everything.
    pub fn start(vpc: Vpc, opts: &Options) -> Result<Daemon, StartError> {
        let prefix = opts.netns_prefix.as_deref();
        let workers = if opts.workers == 0 {
            if vpc.gateway.workers > 0 {
                vpc.gateway.workers
            } else {
                std::thread::available_parallelism().map_or(1, |n| n.get())
            }
        } else {
            opts.workers
        };
        let offload = opts.offload.unwrap_or(vpc.gateway.offload);
        let mut own_namespace = OwnNamespace(None);
        for a in &vpc.attachments {
            let ns = attachment_namespace(prefix, a);
            if !netns::exists(&ns) {
                // The resolver's namespace is the gateway's own: made if missing.
                if a.interface == "dns" {
                    netns::add(&ns)?;
                    own_namespace.0 = Some(ns);
                    continue;
                }
                return Err(StartError::NoNamespace(ns));
            }
        }
        let mut queues = Vec::new();
        let mut level = OffloadLevel::None;
        for (i, a) in vpc.attachments.iter().enumerate() {
            let ns = attachment_namespace(prefix, a);
            let dev = tun_name(prefix, i);
            let (q, l) =
                tun::create_in_netns(&netns::path(&ns), &TunOptions { name: dev.clone(), queues: workers, offload })
                    .map_err(|source| match source.kind() {
                        std::io::ErrorKind::AlreadyExists => StartError::TunExists { dev: dev.clone(), ns: ns.clone() },
                        _ => StartError::Tun { dev: dev.clone(), ns: ns.clone(), source },
                    })?;
            level = l;
            netns::configure_link(&ns, &dev, a.mtu, &a.addresses, a.gateway, a.secondary.then(|| eni_table(i)))?;
            netns::set_txqueuelen(&ns, &dev, vpc.gateway.txqueuelen)?;
            tracing::info!(interface = %a.interface, namespace = %ns, device = %dev, queues = workers, ?l, "attached");
            queues.push(q);
        }
        let resolver = match vpc.dns_attachment() {
            Some(a) => {
                let ns = attachment_namespace(prefix, a);
                let addrs: Vec<std::net::Ipv4Addr> = a.addresses.iter().map(|(ip, _)| *ip).collect();
                let zone = super::config::zone_of(&vpc);
                let r = crate::dns::Resolver::start(&netns::path(&ns), &addrs, zone, vpc.dns.rate_limit)
                    .map_err(|source| StartError::Dns { ns: ns.clone(), source })?;
                tracing::info!(namespace = %ns, addresses = ?addrs, names = r.zone().len(), "VPC resolver answering");
                Some(Arc::new(r))
            }
            None => None,
        };
        // The control socket before any thread: a failure here leaves nothing running.
        let listener = claim_socket(&opts.socket)?;
        let mut unbind = Unbind(Some(&opts.socket));
        let gw = vpc.build_with(opts.route_only);
        let clock = Clock::start();
        let busy = opts.busy_poll_us.unwrap_or(vpc.gateway.busy_poll_us);
        let mode = opts.steering.unwrap_or(vpc.gateway.steering);
        // One worker takes every queue: nothing to steer. Asked for, CPU
        // steering must work; `auto` falls back to flow steering.
        let steerer = match mode {
            Steering::Cpu | Steering::Auto if workers > 1 => {
                match Steerer::new(queues.iter().filter_map(|d| d.first())) {
                    Ok(s) => Some(s),
                    Err(e) if mode == Steering::Cpu => return Err(StartError::Steering(e)),
                    Err(e) => {
                        tracing::warn!(error = %e, "steering = \"auto\": no eBPF queue steering, staying with flow steering");
                        None
                    }
                }
            }
            _ => None,
        };
        let workers =
            Workers::start(&gw, queues, clock, std::time::Duration::from_micros(busy)).map_err(StartError::Workers)?;
        let steer = match steerer.map(|s| start_steering(s, workers.thread_ids())) {
            None => None,
            Some(Ok(s)) => Some(Arc::new(s)),
            Some(Err(e)) if mode == Steering::Cpu => {
                workers.stop();
                return Err(StartError::Steering(e));
            }
            Some(Err(e)) => {
                tracing::warn!(error = %e, "steering = \"auto\": pinning the workers failed, staying with flow steering");
                None
            }
        };
        let stop = Arc::new(AtomicBool::new(false));
        // The clock's second 0 in Unix time, for the flow logs' start and end.
        let unix_now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let flow_logs =
            super::flow_writer::FlowLogWriter::new(&vpc, unix_now.saturating_sub(u64::from(clock.now().secs())));
        let parked = Arc::new(parking_lot::Mutex::new(None));
        let shared = Arc::new(Shared {
            prefix: opts.netns_prefix.clone(),
            parked: parked.clone(),
            eni_moving: parking_lot::Mutex::new(()),
            resolver: resolver.clone(),
            flow_logs,
            events_asked: std::sync::atomic::AtomicU32::new(0),
            capture_asked: std::sync::atomic::AtomicU32::new(0),
            gw: gw.clone(),
            vpc: parking_lot::Mutex::new(vpc),
            counters: workers.counters().to_vec(),
            clock,
            offload: level,
            steering: mode,
            steer: steer.clone(),
            stop: stop.clone(),
        });
        let mut threads = Vec::new();
        if mode == Steering::Auto
            && let Some(steer) = steer
        {
            let s = shared.clone();
            threads.push(
                std::thread::Builder::new()
                    .name("natgw-steer".into())
                    .spawn(move || auto_steer(&s, &steer))
                    .map_err(StartError::Workers)?,
            );
        }
        let s = shared.clone();
        threads.push(
            std::thread::Builder::new()
                .name("natgw-reaper".into())
                .spawn(move || reaper(&s))
                .map_err(StartError::Workers)?,
        );
        if shared.flow_logs.is_some() {
            let s = shared.clone();
            threads.push(
                std::thread::Builder::new()
                    .name("natgw-flowlogs".into())
                    .spawn(move || flow_log_writer(&s))
                    .map_err(StartError::Workers)?,
            );
        }
        let s = shared.clone();
        threads.push(
            std::thread::Builder::new()
                .name("natgw-control".into())
                .spawn(move || serve(&s, listener))
                .map_err(StartError::Workers)?,
        );
        unbind.0 = None; // started: the socket is the daemon's now
        Ok(Daemon {
            gw,
            workers: Some(workers),
            stop,
            threads,
            socket: opts.socket.clone(),
            offload: level,
            resolver,
            own_namespace,
            parked,
        })
    }

    pub fn gateway(&self) -> &Arc<Gateway> {
        &self.gw
    }

    /// True once a stop was asked for (signal or control socket).
    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// A flag that stops the daemon when set (for signal handlers).
    pub fn stop_flag(&self) -> Arc<AtomicBool> {
        self.stop.clone()
    }

    /// Waits until a stop is asked for. Each time `hup` is set (SIGHUP),
    /// reloads `file`, the one the gateway started from, through the control
    /// socket: the same checks as `natgw reload`, and a refused file leaves
    /// the gateway as it was.
    pub fn wait(&self, hup: &AtomicBool, file: Option<&std::path::Path>) {
        while !self.stopping() {
            std::thread::sleep(Duration::from_millis(100));
            if hup.swap(false, Ordering::Relaxed) {
                self.reload_on_hup(file);
            }
        }
    }

    fn reload_on_hup(&self, file: Option<&std::path::Path>) {
        let Some(file) = file else {
            tracing::warn!(
                "SIGHUP: this gateway runs from the command line's minimal form; there is no file to reload"
            );
            return;
        };
        match super::socket::request(&self.socket, &Request::Reload { path: file.display().to_string() }) {
            Ok(Reply::Ok) => tracing::info!(file = %file.display(), "SIGHUP: reloaded"),
            Ok(Reply::Error { message }) => {
                tracing::warn!(file = %file.display(), "SIGHUP: refused, the gateway runs as it was: {message}")
            }
            Ok(other) => tracing::warn!("SIGHUP: unexpected reply {other:?}"),
            Err(e) => tracing::warn!("SIGHUP: the control socket did not answer: {e}"),
        }
    }

    /// Stops everything; the TUN devices vanish with their descriptors.
    pub fn shutdown(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(w) = self.workers.take() {
            w.stop();
        }
        // Wake the control thread out of accept().
        let _ = std::os::unix::net::UnixStream::connect(&self.socket);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        if let Some(r) = self.resolver.take() {
            r.stop();
        }
        let _ = std::fs::remove_file(&self.socket);
        drop(std::mem::replace(&mut self.own_namespace, OwnNamespace(None)));
        drop(OwnNamespace(self.parked.lock().take()));
    }
}

/// Binds the control socket. A socket file nobody answers on is a dead
/// gateway's and is replaced; one that answers belongs to a running gateway
/// and is refused (unlinking it would cut that gateway off from its tools).
fn claim_socket(path: &std::path::Path) -> Result<UnixListener, StartError> {
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        return Err(StartError::SocketInUse(path.display().to_string()));
    }
    let err = |source| StartError::Socket { path: path.display().to_string(), source };
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
        socket::check_dir(dir).map_err(err)?;
    }
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path).map_err(err)?;
    // Only the gateway's own user (root) may talk to it: the socket's mode,
    // and each connection's peer credentials (`socket::peer_allowed`).
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(err)?;
    Ok(listener)
}

/// Removes the control socket's file when a start fails after binding it.
struct Unbind<'a>(Option<&'a std::path::Path>);

impl Drop for Unbind<'_> {
    fn drop(&mut self) {
        if let Some(p) = self.0 {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Switches CPU steering on for workers `tids`; on failure, back off to
/// flow steering as far as possible.
fn start_steering(steerer: Steerer, tids: &[i32]) -> std::io::Result<Steer> {
    let steer = Steer::new(steerer, tids.to_vec())?;
    if let Err(e) = steer.set(true) {
        let _ = steer.set(false);
        return Err(e);
    }
    Ok(steer)
}

/// `steering = "auto"`: CPU steering while traffic is light, flow steering
/// while it is heavy (see `control::steering`).
fn auto_steer(s: &Shared, steer: &Steer) {
    let mut auto = Auto::default();
    let read = || s.counters.iter().map(|c| c.packets_read()).sum::<u64>();
    let mut last = read();
    while !s.stop.load(Ordering::Relaxed) {
        std::thread::sleep(steering::TICK);
        let now = read();
        if let Some(by_cpu) = auto.tick(now - last) {
            match steer.set(by_cpu) {
                Ok(()) => tracing::debug!(by_cpu, "steering switched"),
                Err(e) => tracing::warn!(error = %e, by_cpu, "switching the steering failed"),
            }
        }
        last = now;
    }
}

/// Writes the flow log records the workers flushed, twice a second.
fn flow_log_writer(s: &Shared) {
    let Some(w) = &s.flow_logs else { return };
    while !s.stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(500));
        w.pass(&s.gw, s.clock.now().secs());
    }
    w.pass(&s.gw, u32::MAX);
}

/// Ends sessions as they time out, and port hold-downs, with bounded work per pass.
fn reaper(s: &Shared) {
    while !s.stop.load(Ordering::Relaxed) {
        s.gw.collect_garbage();
        let now = s.clock.now().secs();
        // Nobody has asked for events for 5 s: stop making them.
        if s.gw.events().armed() && now > s.events_asked.load(Ordering::Relaxed).saturating_add(5) {
            s.gw.events().arm(false);
        }
        if s.gw.capture().armed() && now > s.capture_asked.load(Ordering::Acquire).saturating_add(5) {
            tracing::info!("a capture's reader went away: capture stopped");
            s.gw.capture().disarm(None);
        }
        for nat in s.gw.nats() {
            // Bounded passes: yield between them so the slow path gets the lock.
            for _ in 0..100 {
                if !nat.expire(now, 10_000).more {
                    break;
                }
            }
        }
        for _ in 0..100 {
            if !s.gw.tracker().expire(now, 10_000) {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Requests answered at once; more are told to try again (a client that
/// connects and says nothing holds one for at most `socket::READ_TIMEOUT`).
const MAX_CLIENTS: usize = 8;

fn serve(s: &Shared, listener: UnixListener) {
    let busy = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for conn in listener.incoming() {
            if s.stop.load(Ordering::Relaxed) {
                break;
            }
            let Ok(conn) = conn else { continue };
            if let Err(message) = socket::peer_allowed(&conn) {
                let _ = socket::write_reply(&conn, &Reply::Error { message });
                continue;
            }
            if busy.fetch_add(1, Ordering::AcqRel) >= MAX_CLIENTS {
                busy.fetch_sub(1, Ordering::AcqRel);
                let message = format!("the gateway is answering {MAX_CLIENTS} requests already: try again");
                let _ = socket::write_reply(&conn, &Reply::Error { message });
                continue;
            }
            let busy = &busy;
            let spawned = std::thread::Builder::new().name("natgw-request".into()).spawn_scoped(scope, move || {
                let reply = match socket::read_request(&conn) {
                    Ok(req) => answer(s, &req),
                    Err(message) => Reply::Error { message },
                };
                let _ = socket::write_reply(&conn, &reply);
                busy.fetch_sub(1, Ordering::AcqRel);
            });
            if spawned.is_err() {
                busy.fetch_sub(1, Ordering::AcqRel);
            }
        }
    });
}

fn answer(s: &Shared, req: &Request) -> Reply {
    let now = s.clock.now();
    let topo = s.gw.topology();
    match req {
        Request::Status => Reply::Status {
            pid: std::process::id(),
            uptime_secs: now.secs().into(),
            interfaces: topo.interface_names(),
        },
        Request::Stats => {
            let names = topo.interface_names();
            let totals = Totals::sum(&names, s.counters.iter().map(|c| &**c));
            let per_worker = s.counters.iter().map(|c| c.packets_read()).collect();
            let nat =
                s.gw.nats()
                    .iter()
                    .map(|n| NatStatus {
                        name: n.name.clone(),
                        public_ips: n.config().public_ips.iter().map(ToString::to_string).collect(),
                        profile: if n.config().timeouts.tcp_rst_on_expired { "aws".into() } else { "rfc".into() },
                        sessions: n.session_count(),
                        mappings: n.mapping_count(),
                        ports_in_use: n.ports_in_use().into_iter().map(|(a, p, c)| (a.to_string(), p, c)).collect(),
                        idle_timeouts: n.stats.idle_timeouts.get(),
                        early_drops: n.stats.early_drops.get(),
                    })
                    .collect();
            Reply::Stats(Box::new(Stats {
                uptime_secs: now.secs().into(),
                workers: s.counters.len(),
                offload: format!("{:?}", s.offload),
                steering: match &s.steer {
                    Some(st) if s.steering == Steering::Auto => {
                        let now = if st.by_cpu() { Steering::Cpu } else { Steering::Flow };
                        format!("auto (now {})", now.name())
                    }
                    Some(_) => Steering::Cpu.name().into(),
                    None => Steering::Flow.name().into(),
                },
                per_worker,
                totals,
                nat,
                dns: s.resolver.as_ref().map(|r| r.stats()),
            }))
        }
        Request::Conntrack => Reply::Conntrack {
            nat: s
                .gw
                .nats()
                .iter()
                .map(|n| NatSessions { name: n.name.clone(), sessions: n.sessions(now.secs()) })
                .collect(),
            tracked: super::flows::tracked(&s.gw, now.secs()),
        },
        Request::Routes => Reply::Routes { tables: route_views(&s.vpc.lock()) },
        Request::RouteAdd { table, destination, target } => change(s, |v| v.add_route(table, destination, target)),
        Request::RouteDelete { table, destination } => change(s, |v| v.delete_route(table, destination)),
        Request::NatGatewayDelete { name } => change(s, |v| v.delete_nat_gateway(name)),
        Request::EniList => Reply::Enis { enis: s.vpc.lock().eni_list(), done: String::new() },
        Request::EniDetach { eni } => eni_move(s, eni, None),
        Request::EniAttach { eni, instance } => eni_move(s, eni, Some(instance)),
        Request::EipList => Reply::Eips { eips: s.vpc.lock().eip_list(), done: String::new() },
        Request::EipAllocate { address } => eip_change(s, |v| {
            v.eip_allocate(*address).map(|a| format!("allocated {a} ({})", super::config::eips_allocation_id(a)))
        }),
        Request::EipAssociate { address, host, allow_reassociation } => eip_change(s, |v| {
            v.eip_associate(*address, host, *allow_reassociation).map(|prev| match prev {
                Some(p) => format!("{address} associated with {host}; its previous Elastic IP {p} is idle now"),
                None => format!("{address} associated with {host}"),
            })
        }),
        Request::EipDisassociate { address } => {
            eip_change(s, |v| v.eip_disassociate(*address).map(|h| format!("{address} disassociated from {h}")))
        }
        Request::EipRelease { address } => {
            eip_change(s, |v| v.eip_release(*address).map(|()| format!("{address} released")))
        }
        Request::TraceLive { filter, count, seconds } => {
            if *count == 0 || *count > 100 || *seconds == 0 || *seconds > 60 {
                return Reply::Error { message: "trace --live takes 1 to 100 packets and 1 to 60 seconds".into() };
            }
            let live = s.gw.live();
            live.arm(filter.clone(), *count);
            let deadline = std::time::Instant::now() + Duration::from_secs(u64::from(*seconds));
            while live.left() > 0 && std::time::Instant::now() < deadline && !s.stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(20));
            }
            live.disarm();
            // A packet taken just before the disarm finishes its walk first.
            std::thread::sleep(Duration::from_millis(20));
            Reply::TraceLive { traced: live.results() }
        }
        Request::ConntrackEvents { after } => {
            s.events_asked.store(now.secs(), Ordering::Relaxed);
            let hub = s.gw.events();
            hub.arm(true);
            Reply::ConntrackEvents { events: hub.after(*after), lost: hub.lost.load(Ordering::Relaxed) }
        }
        Request::Topology => Reply::Topology(Box::new(super::views::topology(&s.vpc.lock()))),
        Request::Flows { limit, with_closing } => {
            if *limit == 0 || *limit > 1000 {
                return Reply::Error { message: "flows takes a limit of 1 to 1000".into() };
            }
            let totals = Totals::sum(&topo.interface_names(), s.counters.iter().map(|c| &**c));
            Reply::Flows(Box::new(super::views::flows(&s.gw, &totals, now.secs(), *limit as usize, *with_closing)))
        }
        Request::CaptureStart { target, filter } => {
            let igw = s.vpc.lock().igw_name.clone();
            match super::capture::select(&topo, &igw, target) {
                Ok(select) => {
                    s.capture_asked.store(now.secs(), Ordering::Release);
                    match s.gw.capture().try_arm(select, filter.clone()) {
                        Some(generation) => Reply::CaptureStarted { generation },
                        None => Reply::Error {
                            message: "a capture is running already (one at a time; it stops 5 s after its reader does)"
                                .into(),
                        },
                    }
                }
                Err(message) => Reply::Error { message },
            }
        }
        Request::CaptureRead { generation } => {
            s.capture_asked.store(now.secs(), Ordering::Release);
            match s.gw.capture().take(*generation) {
                Some(records) => Reply::Captured {
                    packets: records.iter().map(|r| super::capture::Captured::of(r, &topo)).collect(),
                    dropped: s.gw.capture().dropped.load(Ordering::Relaxed),
                    now_ns: s.clock.now().nanos(),
                },
                None => {
                    Reply::Error { message: "this capture has ended (it stops 5 s after its reader last asked)".into() }
                }
            }
        }
        Request::CaptureStop { generation } => {
            s.gw.capture().disarm(Some(*generation));
            Reply::Ok
        }
        Request::Ports => Reply::Ports { nat: s.gw.nats().iter().map(|n| n.port_report()).collect() },
        Request::FlowLogs { after } => match &s.flow_logs {
            Some(w) => Reply::FlowLogs { lines: w.lines_after(*after), status: w.status() },
            None => Reply::Error { message: "this gateway's VPC file has no [flow_logs] section".into() },
        },
        Request::Trace { query } => {
            let vpc = s.vpc.lock().clone();
            match super::trace::trace(&vpc, query) {
                Ok(r) => Reply::Trace { report: Box::new(r) },
                Err(message) => Reply::Error { message },
            }
        }
        Request::Reload { path } => match super::config::load(std::path::Path::new(path)) {
            Ok(new) => change(s, |v| v.reload(new)),
            Err(e) => Reply::Error { message: e.to_string() },
        },
        Request::Events => Reply::Events { nat: s.gw.nats().iter().map(|n| (n.name.clone(), n.events())).collect() },
        Request::Shutdown => {
            s.stop.store(true, Ordering::Relaxed);
            Reply::Ok
        }
    }
}

/// The namespace an interface's placement `ns` (as the file names it)
/// means: detached interfaces wait in one of the gateway's own, named for
/// the lab or, outside one, for this process.
fn eni_namespace(prefix: Option<&str>, ns: &str) -> String {
    match (prefix, ns == super::config::ENI_DETACHED) {
        (None, true) => format!("ngw{}-{ns}", std::process::id()),
        _ => namespace_name(prefix, ns),
    }
}

/// Detaches interface `eni` (to: None) or attaches it to instance `to`: its
/// TUN device moves to the detached interfaces' namespace or to the
/// instance's, with its address and its routing rule, and the topology
/// marks it detached or not. One move at a time, and the `ip` commands run
/// without the VPC's lock (other requests go on meanwhile).
fn eni_move(s: &Shared, eni: &str, to: Option<&str>) -> Reply {
    let _one = s.eni_moving.lock();
    let (m, a) = {
        let mut vpc = s.vpc.lock();
        let moved = match to {
            None => vpc.eni_detach(eni),
            Some(i) => vpc.eni_attach(eni, i),
        };
        match moved {
            Ok(m) => {
                let a = vpc.attachments[m.index].clone();
                (m, a)
            }
            Err(e) => return Reply::Error { message: e.to_string() },
        }
    };
    let prefix = s.prefix.as_deref();
    let (from, dest) = (eni_namespace(prefix, &m.from), eni_namespace(prefix, &m.to));
    let dev = tun_name(prefix, m.index);
    let table = eni_table(m.index);
    if to.is_none() && s.parked.lock().is_none() {
        if !netns::exists(&dest)
            && let Err(e) = netns::add(&dest)
        {
            s.vpc.lock().eni_place(m.index, &m.from);
            return Reply::Error { message: format!("making namespace {dest}: {e}") };
        }
        *s.parked.lock() = Some(dest.clone());
    }
    if let Err(e) = netns::move_link(&from, &dev, &dest) {
        s.vpc.lock().eni_place(m.index, &m.from);
        return Reply::Error { message: format!("moving {eni}'s device {dev} from {from} to {dest}: {e}") };
    }
    // Moved: the rest is configuration; its failure is reported, the
    // placement stays true.
    let mut trouble = Vec::new();
    if m.from != super::config::ENI_DETACHED
        && let Err(e) = netns::drop_rules(&from, &a.addresses, table)
    {
        trouble.push(format!("removing its routing rule in {from}: {e}"));
    }
    if to.is_some()
        && let Err(e) = netns::configure_link(&dest, &dev, a.mtu, &a.addresses, a.gateway, Some(table))
    {
        trouble.push(format!("configuring it in {dest}: {e}"));
    }
    let vpc = s.vpc.lock();
    s.gw.set_topology(crate::pipeline::Topology::new(vpc.parts.clone()));
    tracing::info!(interface = eni, from = %from, to = %dest, "interface moved");
    if !trouble.is_empty() {
        return Reply::Error { message: format!("{eni} moved to {dest}, but {}", trouble.join("; ")) };
    }
    let done = match to {
        Some(i) => format!("{eni} attached to {i} (its device {dev} is in namespace {dest} now)"),
        None => format!("{eni} detached (its device {dev} waits in namespace {dest})"),
    };
    Reply::Enis { enis: vpc.eni_list(), done }
}

/// An Elastic IP change: swapped in like any change, answered with the
/// addresses after it.
fn eip_change(s: &Shared, f: impl FnOnce(&mut Vpc) -> Result<String, super::config::ChangeError>) -> Reply {
    let mut done = String::new();
    match change(s, |v| f(v).map(|d| done = d)) {
        Reply::Ok => Reply::Eips { eips: s.vpc.lock().eip_list(), done },
        other => other,
    }
}

/// Applies a change to the VPC and swaps in the topology compiled from it:
/// workers keep forwarding with the old one until their next wake-up.
fn change(s: &Shared, f: impl FnOnce(&mut Vpc) -> Result<(), super::config::ChangeError>) -> Reply {
    let t = std::time::Instant::now();
    let mut vpc = s.vpc.lock();
    match f(&mut vpc) {
        Ok(()) => {
            s.gw.set_topology(crate::pipeline::Topology::new(vpc.parts.clone()));
            if let Some(r) = &s.resolver {
                r.set_zone(super::config::zone_of(&vpc));
            }
            tracing::info!(took_ms = t.elapsed().as_millis() as u64, "topology swapped");
            Reply::Ok
        }
        Err(e) => Reply::Error { message: e.to_string() },
    }
}

/// Route tables as the AWS console shows them.
pub fn route_views(vpc: &Vpc) -> Vec<RouteTableView> {
    vpc.parts
        .route_tables
        .iter()
        .enumerate()
        .map(|(i, t)| RouteTableView {
            name: t.name.clone(),
            main: vpc.main_table == Some(i),
            subnets: vpc.subnets_of_table(i),
            routes: t
                .routes_sorted()
                .into_iter()
                .map(|r| {
                    // A gateway endpoint's route shows its prefix list, as the console does.
                    let destination = match r.target {
                        crate::route::Target::Endpoint(e) => vpc
                            .parts
                            .endpoints
                            .get(usize::from(e))
                            .map_or_else(|| r.destination.to_string(), |(_, pl)| format!("{pl} ({})", r.destination)),
                        _ => r.destination.to_string(),
                    };
                    (destination, r.target_name.clone(), r.state.to_string())
                })
                .collect(),
            transit: None,
        })
        .chain(transit_views(vpc))
        .collect()
}

/// The transit gateways' route tables, as the console shows them: the
/// attachments associated with each, its routes with their type.
fn transit_views(vpc: &Vpc) -> impl Iterator<Item = RouteTableView> + '_ {
    use crate::pipeline::transit::TransitTarget;
    vpc.parts.transit_gateways.iter().flat_map(|g| {
        g.tables.iter().enumerate().map(move |(i, t)| RouteTableView {
            name: t.name.clone(),
            main: false,
            subnets: g.attachments.iter().filter(|a| a.table == Some(i)).map(|a| a.name.clone()).collect(),
            routes: t
                .routes()
                .iter()
                .map(|r| {
                    let state = if r.target == TransitTarget::Blackhole { "blackhole" } else { "active" };
                    let target = format!("{} ({})", g.target_name(r.target), r.kind.name());
                    (r.destination.to_string(), target, state.to_string())
                })
                .collect(),
            transit: Some(g.name.clone()),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_live_control_socket_is_refused_and_a_stale_one_replaced() {
        let dir = std::env::temp_dir().join(format!("natgw-sock-{}", std::process::id()));
        let path = dir.join("natgw.sock");
        let live = claim_socket(&path).expect("a fresh path binds");
        match claim_socket(&path) {
            Err(StartError::SocketInUse(p)) => assert_eq!(p, path.display().to_string()),
            other => panic!("a second gateway on a live socket: {:?}", other.map(|_| ())),
        }
        drop(live); // the file stays, as after a crash
        assert!(path.exists());
        let again = claim_socket(&path).expect("a stale socket file is replaced");
        drop(again);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
