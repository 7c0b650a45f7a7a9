//! `natgw web`: a live page of a running gateway's VPC, served on a
//! loopback address. The page (`/`, one file with no build step and
//! nothing fetched from elsewhere) draws the topology, lists the newest
//! flows with their translation, and plots the port pools and the drops,
//! updated by server-sent events (`/events`) once a second. `/metrics` is
//! `natgw metrics`' exposition. Every answer is one control-socket request
//! to the gateway: the packet path never meets an HTTP request.

use super::socket::{self, Reply, Request};
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

/// The page: HTML, CSS and script in one file.
const PAGE: &str = include_str!("web/page.html");

/// Requests answered at once (an event stream holds one while it lasts).
const MAX_REQUESTS: usize = 48;
/// Event streams open at once (a page that went away holds its stream
/// until a write fails, up to two seconds; a client that stops reading
/// holds it until the connection ends).
const MAX_STREAMS: usize = 32;
/// Flows a page lists of each kind unless it asks for fewer or more.
const DEFAULT_LIMIT: u32 = 200;

/// What `natgw web` serves.
pub struct Web {
    socket: PathBuf,
    listen: SocketAddr,
    stop: AtomicBool,
    streams: AtomicUsize,
}

/// A reply: status, content type, body.
type Answer = (u16, &'static str, String);

const JSON: &str = "application/json";
const TEXT: &str = "text/plain; charset=utf-8";

/// Checks that `listen` is a loopback address (the lab listens nowhere else).
pub fn loopback_only(listen: SocketAddr, what: &str) -> Result<(), String> {
    if listen.ip().is_loopback() {
        Ok(())
    } else {
        Err(format!("--listen {listen}: natgw serves {what} on a loopback address only, e.g. 127.0.0.1:8080"))
    }
}

/// Serves the page of the gateway behind `socket` on `listen`; stops after
/// `count` requests if given.
pub fn serve(listen: SocketAddr, socket: &Path, count: Option<u64>) -> Result<(), String> {
    loopback_only(listen, "its page")?;
    let server = tiny_http::Server::http(listen).map_err(|e| format!("--listen {listen}: {e}"))?;
    eprintln!("natgw web: serving http://{listen}/ (the page), /events, /metrics");
    let web = Web { socket: socket.to_path_buf(), listen, stop: AtomicBool::new(false), streams: AtomicUsize::new(0) };
    let busy = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for (served, req) in (1u64..).zip(server.incoming_requests()) {
            if busy.fetch_add(1, Ordering::AcqRel) >= MAX_REQUESTS {
                busy.fetch_sub(1, Ordering::AcqRel);
                respond(req, (503, TEXT, format!("natgw web is answering {MAX_REQUESTS} requests already\n")));
            } else {
                let (web, busy) = (&web, &busy);
                let spawned = std::thread::Builder::new().name("natgw-web".into()).spawn_scoped(scope, move || {
                    web.handle(req);
                    busy.fetch_sub(1, Ordering::AcqRel);
                });
                if spawned.is_err() {
                    busy.fetch_sub(1, Ordering::AcqRel);
                }
            }
            if count.is_some_and(|c| served >= c) {
                web.stop.store(true, Ordering::Relaxed);
                break;
            }
        }
    });
    Ok(())
}

fn respond(req: tiny_http::Request, (status, kind, body): Answer) {
    let header = tiny_http::Header::from_bytes("Content-Type", kind).expect("a constant header is valid");
    let no_store = tiny_http::Header::from_bytes("Cache-Control", "no-store").expect("a constant header is valid");
    let reply =
        tiny_http::Response::from_string(body).with_status_code(status).with_header(header).with_header(no_store);
    if let Err(e) = req.respond(reply) {
        tracing::debug!(error = %e, "a reply failed");
    }
}

/// The parameters of a query string.
fn params(url: &str) -> Vec<(String, String)> {
    let query = url.split_once('?').map_or("", |(_, q)| q);
    form_urlencoded::parse(query.as_bytes()).into_owned().collect()
}

fn param<'a>(p: &'a [(String, String)], name: &str) -> Option<&'a str> {
    p.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// `closing=1`: also list TCP flows after a FIN or a RST.
fn closing(p: &[(String, String)]) -> bool {
    matches!(param(p, "closing"), Some("1" | "true" | "yes"))
}

/// `limit=N` (1 to 1000), or the default.
fn limit(p: &[(String, String)]) -> Result<u32, String> {
    match param(p, "limit") {
        None => Ok(DEFAULT_LIMIT),
        Some(v) => match v.parse::<u32>() {
            Ok(n) if (1..=1000).contains(&n) => Ok(n),
            _ => Err(format!("limit={v}: give a number of flows from 1 to 1000")),
        },
    }
}

impl Web {
    /// The Host header names the address listened on (`127.0.0.1:PORT`,
    /// `localhost:PORT`); a request without one (HTTP/1.0) is let through.
    fn host_allowed(&self, headers: &[tiny_http::Header]) -> bool {
        let Some(h) = headers.iter().find(|h| h.field.equiv("Host")) else { return true };
        let port = self.listen.port();
        let host = h.value.as_str();
        host == self.listen.to_string() || host == format!("localhost:{port}")
    }

    fn ask(&self, req: &Request) -> Result<Reply, String> {
        match socket::request(&self.socket, req) {
            Ok(Reply::Error { message }) => Err(message),
            Ok(r) => Ok(r),
            Err(e) => Err(e.to_string()),
        }
    }

    fn json(&self, req: &Request) -> Answer {
        match self.ask(req) {
            Ok(Reply::Topology(t)) => (200, JSON, serde_json::to_string(&t).unwrap_or_default()),
            Ok(Reply::Flows(f)) => (200, JSON, serde_json::to_string(&f).unwrap_or_default()),
            Ok(_) => (502, TEXT, "the gateway answered something else\n".into()),
            Err(e) => (503, TEXT, format!("the gateway did not answer: {e}\n")),
        }
    }

    fn handle(&self, req: tiny_http::Request) {
        if *req.method() != tiny_http::Method::Get {
            return respond(req, (405, TEXT, "natgw web answers GET only\n".into()));
        }
        // Only a browser that asked for this address: a page elsewhere that
        // renamed itself to 127.0.0.1 (DNS rebinding) gets nothing.
        if !self.host_allowed(req.headers()) {
            return respond(req, (421, TEXT, format!("natgw web answers for {} only\n", self.listen)));
        }
        let url = req.url().to_string();
        let path = url.split('?').next().unwrap_or("");
        let p = params(&url);
        let answer = match path {
            "/" | "/index.html" => (200, "text/html; charset=utf-8", PAGE.to_string()),
            "/api/topology" => self.json(&Request::Topology),
            "/api/flows" => match limit(&p) {
                Ok(limit) => self.json(&Request::Flows { limit, with_closing: closing(&p) }),
                Err(e) => (400, TEXT, format!("{e}\n")),
            },
            "/api/trace" => self.trace(&p),
            "/metrics" => match self.ask(&Request::Stats) {
                Ok(Reply::Stats(s)) => {
                    (200, "application/openmetrics-text; version=1.0.0; charset=utf-8", super::metrics::render(&s))
                }
                Ok(_) => (502, TEXT, "the gateway answered something else\n".into()),
                Err(e) => (503, TEXT, format!("the gateway did not answer: {e}\n")),
            },
            "/events" => match limit(&p) {
                Ok(limit) => return self.stream(req, Request::Flows { limit, with_closing: closing(&p) }),
                Err(e) => (400, TEXT, format!("{e}\n")),
            },
            _ => {
                (404, TEXT, "natgw web serves /, /events, /api/topology, /api/flows, /api/trace and /metrics\n".into())
            }
        };
        respond(req, answer);
    }

    /// `natgw trace` of one flow: `src`, `dst`, `proto`, `port`, `sport`.
    fn trace(&self, p: &[(String, String)]) -> Answer {
        let port = |name: &str| -> Result<Option<u16>, String> {
            param(p, name)
                .filter(|v| !v.is_empty())
                .map(|v| v.parse().map_err(|_| format!("{name}={v}: not a port")))
                .transpose()
        };
        let query = (|| {
            let need = |name: &str| param(p, name).map(str::to_string).ok_or(format!("{name}= is missing"));
            Ok::<_, String>(super::trace::Query {
                src: need("src")?,
                dst: need("dst")?,
                proto: need("proto")?,
                port: port("port")?,
                sport: port("sport")?,
            })
        })();
        let query = match query {
            Ok(q) => q,
            Err(e) => return (400, TEXT, format!("{e} (the trace takes src, dst, proto, port, sport)\n")),
        };
        match socket::request(&self.socket, &Request::Trace { query }) {
            Ok(Reply::Trace { report }) => (200, TEXT, super::trace::render(&report)),
            // The gateway refused the query: a bad address, name or protocol.
            Ok(Reply::Error { message }) => (400, TEXT, format!("{message}\n")),
            Ok(_) => (502, TEXT, "the gateway answered something else\n".into()),
            Err(e) => (503, TEXT, format!("the gateway did not answer: {e}\n")),
        }
    }

    /// Server-sent events until the page goes away: `flows` once a second,
    /// `topology` whenever it changed, `gateway` when the gateway does not
    /// answer.
    fn stream(&self, req: tiny_http::Request, flows: Request) {
        if self.streams.fetch_add(1, Ordering::AcqRel) >= MAX_STREAMS {
            self.streams.fetch_sub(1, Ordering::AcqRel);
            return respond(req, (503, TEXT, format!("natgw web has {MAX_STREAMS} pages open already\n")));
        }
        let mut w = req.into_writer();
        let head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n";
        let mut last_topology = String::new();
        let mut ok = w.write_all(head.as_bytes()).is_ok();
        while ok && !self.stop.load(Ordering::Relaxed) {
            let mut out = String::new();
            match self.ask(&Request::Topology) {
                Ok(Reply::Topology(t)) => {
                    let text = serde_json::to_string(&t).unwrap_or_default();
                    if text != last_topology {
                        out.push_str(&format!("event: topology\ndata: {text}\n\n"));
                        last_topology = text;
                    }
                    match self.ask(&flows) {
                        Ok(Reply::Flows(f)) => out.push_str(&format!(
                            "event: flows\ndata: {}\n\n",
                            serde_json::to_string(&f).unwrap_or_default()
                        )),
                        other => out.push_str(&gateway_event(other)),
                    }
                }
                other => out.push_str(&gateway_event(other)),
            }
            ok = w.write_all(out.as_bytes()).and_then(|()| w.flush()).is_ok();
            std::thread::sleep(Duration::from_secs(1));
        }
        self.streams.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The event a page gets when the gateway did not answer as asked.
fn gateway_event(r: Result<Reply, String>) -> String {
    let why = match r {
        Err(e) => e,
        Ok(_) => "the gateway answered something else".into(),
    };
    format!("event: gateway\ndata: {}\n\n", serde_json::Value::String(why))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_string_is_decoded_and_a_limit_checked() {
        let p = params("/api/trace?src=10.0.1.10&dst=198.51.100.10&proto=tcp&port=80&sport=&note=a%20b");
        assert_eq!(param(&p, "src"), Some("10.0.1.10"));
        assert_eq!(param(&p, "note"), Some("a b"));
        assert_eq!(param(&p, "sport"), Some(""));
        assert_eq!(limit(&params("/events")), Ok(DEFAULT_LIMIT));
        assert_eq!(limit(&params("/events?limit=5")), Ok(5));
        assert!(limit(&params("/events?limit=0")).unwrap_err().contains("1 to 1000"));
        assert!(limit(&params("/events?limit=x")).is_err());
    }

    #[test]
    fn only_requests_for_the_address_listened_on_are_answered() {
        let web = Web {
            socket: PathBuf::new(),
            listen: "127.0.0.1:8080".parse().unwrap(),
            stop: AtomicBool::new(false),
            streams: AtomicUsize::new(0),
        };
        let host = |v: &str| vec![tiny_http::Header::from_bytes("Host", v).unwrap()];
        assert!(web.host_allowed(&host("127.0.0.1:8080")) && web.host_allowed(&host("localhost:8080")));
        assert!(!web.host_allowed(&host("attacker.example:8080")), "DNS rebinding");
        assert!(!web.host_allowed(&host("127.0.0.1:9090")));
        assert!(web.host_allowed(&[]), "HTTP/1.0 without Host");
    }

    #[test]
    fn only_a_loopback_address_is_served() {
        let e = serve("192.0.2.1:8080".parse().unwrap(), Path::new("/nonexistent"), Some(1)).unwrap_err();
        assert!(e.contains("loopback"), "{e}");
    }
}
