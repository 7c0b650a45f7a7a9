//! `natgw metrics`: a running gateway's counters in Prometheus's text
//! exposition format (OpenMetrics), encoded by `prometheus-client`. The
//! gateway itself serves nothing: the command asks its control socket for
//! `stats` at each scrape, so the packet path never meets an HTTP request.
//! With `--listen` it serves `/metrics` on a loopback address only (the lab
//! never opens a port outside its namespaces but on the host's loopback).

use super::socket::Stats;
use prometheus_client::encoding::EncodeMetric;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::TypedMetric;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::net::SocketAddr;

type Labels = Vec<(String, String)>;

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// A family of `M` registered under `name` (the encoder adds `_total` to
/// a counter's).
fn family<M>(r: &mut Registry, name: &str, help: &str) -> Family<Labels, M>
where
    M: Default + EncodeMetric + TypedMetric + std::fmt::Debug + Send + Sync + 'static,
{
    let f = Family::<Labels, M>::default();
    r.register(name, help, f.clone());
    f
}

fn gauge_value(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// The exposition of `s`: every counter `natgw stats` shows, by interface,
/// drop reason (every reason, also at 0), NAT gateway and worker.
pub fn render(s: &Stats) -> String {
    let mut r = Registry::with_prefix("natgw");
    let t = &s.totals;
    let uptime = Gauge::<i64>::default();
    uptime.set(gauge_value(s.uptime_secs));
    r.register("uptime_seconds", "Seconds since the gateway started", uptime);
    let rx_p = family::<Counter>(&mut r, "interface_receive_packets", "Packets read from an interface");
    let rx_b = family::<Counter>(&mut r, "interface_receive_bytes", "Bytes read from an interface");
    let tx_p = family::<Counter>(&mut r, "interface_transmit_packets", "Packets written to an interface");
    let tx_b = family::<Counter>(&mut r, "interface_transmit_bytes", "Bytes written to an interface");
    for (name, rp, rb, tp, tb) in &t.interfaces {
        let l = labels(&[("interface", name)]);
        rx_p.get_or_create(&l).inc_by(*rp);
        rx_b.get_or_create(&l).inc_by(*rb);
        tx_p.get_or_create(&l).inc_by(*tp);
        tx_b.get_or_create(&l).inc_by(*tb);
    }
    let drops = family::<Counter>(&mut r, "drops", "Packets dropped, by reason (natgw stats' names)");
    for reason in crate::pipeline::DropReason::ALL {
        drops.get_or_create(&labels(&[("reason", reason.label())])).inc_by(t.drop_count(reason.label()));
    }
    let sg =
        family::<Counter>(&mut r, "security_group_denied_packets", "Packets an interface's security groups denied");
    for (name, inbound, outbound) in &t.sg_denied {
        sg.get_or_create(&labels(&[("interface", name), ("direction", "inbound")])).inc_by(*inbound);
        sg.get_or_create(&labels(&[("interface", name), ("direction", "outbound")])).inc_by(*outbound);
    }
    // The NAT gateway metrics, one each, under CloudWatch's meaning (summed
    // over the NAT gateways: the workers count them together).
    for (counter, v) in &t.nat {
        let help = match crate::pipeline::counters::cloudwatch_name(counter) {
            Some(cw) => format!("CloudWatch {cw}, all NAT gateways together"),
            None => format!("NAT: {}, all NAT gateways together", counter.replace('_', " ")),
        };
        let c = Counter::<u64>::default();
        c.inc_by(*v);
        r.register(format!("nat_{counter}"), help, c);
    }
    for (name, help, values) in [
        ("generated_packets", "Packets the gateway made itself (ICMP errors, RSTs)", &t.generated),
        ("flow_cache_events", "The workers' flow caches", &t.cache),
        ("io_events", "Reads, writes and their errors", &t.io),
    ] {
        let f = family::<Counter>(&mut r, name, help);
        for (event, v) in values {
            f.get_or_create(&labels(&[("event", event)])).inc_by(*v);
        }
    }
    let sessions = family::<Gauge>(
        &mut r,
        "nat_gateway_sessions",
        "A NAT gateway's live sessions, every protocol (CloudWatch ActiveConnectionCount counts TCP's)",
    );
    let mappings = family::<Gauge>(&mut r, "nat_gateway_mappings", "A NAT gateway's live mappings");
    let ports = family::<Gauge>(
        &mut r,
        "nat_gateway_ports_in_use",
        "Ports in use (held down included), by Elastic IP and protocol",
    );
    let idle = family::<Counter>(
        &mut r,
        "nat_gateway_idle_timeouts",
        "Sessions a NAT gateway ended as idle (CloudWatch IdleTimeoutCount)",
    );
    let early = family::<Counter>(&mut r, "nat_gateway_early_drops", "Sessions without a reply ended at a full table");
    for n in &s.nat {
        let l = labels(&[("nat_gateway", &n.name)]);
        sessions.get_or_create(&l).set(gauge_value(n.sessions as u64));
        mappings.get_or_create(&l).set(gauge_value(n.mappings as u64));
        idle.get_or_create(&l).inc_by(n.idle_timeouts);
        early.get_or_create(&l).inc_by(n.early_drops);
        for (ip, proto, used) in &n.ports_in_use {
            let proto = crate::conntrack::key::proto_name(*proto);
            ports
                .get_or_create(&labels(&[("nat_gateway", &n.name), ("elastic_ip", ip), ("protocol", proto)]))
                .set(i64::from(*used));
        }
    }
    let workers = family::<Counter>(&mut r, "worker_read_packets", "Packets each worker read");
    for (i, p) in s.per_worker.iter().enumerate() {
        workers.get_or_create(&labels(&[("worker", &i.to_string())])).inc_by(*p);
    }
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = encode(&mut out, &r);
    out
}

/// Serves `/metrics` on `listen` (a loopback address), each scrape from
/// `fetch`; stops after `count` scrapes if given.
pub fn serve(listen: SocketAddr, count: Option<u64>, fetch: impl Fn() -> Result<Stats, String>) -> Result<(), String> {
    if !listen.ip().is_loopback() {
        return Err(format!("--listen {listen}: natgw serves metrics on a loopback address only, e.g. 127.0.0.1:9108"));
    }
    let server = tiny_http::Server::http(listen).map_err(|e| format!("--listen {listen}: {e}"))?;
    eprintln!("natgw metrics: serving http://{listen}/metrics");
    for (n, req) in (1u64..).zip(server.incoming_requests()) {
        let (status, body, kind) = match (req.method(), req.url()) {
            (tiny_http::Method::Get, "/metrics") => match fetch() {
                Ok(s) => (200, render(&s), "application/openmetrics-text; version=1.0.0; charset=utf-8"),
                Err(e) => (503, format!("the gateway did not answer: {e}\n"), "text/plain; charset=utf-8"),
            },
            _ => (404, "natgw serves /metrics only\n".to_string(), "text/plain; charset=utf-8"),
        };
        let header = tiny_http::Header::from_bytes("Content-Type", kind).map_err(|()| "bad header".to_string())?;
        let reply = tiny_http::Response::from_string(body).with_status_code(status).with_header(header);
        if let Err(e) = req.respond(reply) {
            eprintln!("natgw metrics: a reply failed: {e}");
        }
        if count.is_some_and(|c| n >= c) {
            break;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::socket::NatStatus;

    #[test]
    fn every_counter_is_named_and_labelled() {
        let mut s = Stats {
            uptime_secs: 12,
            workers: 2,
            offload: String::new(),
            steering: "flow".into(),
            per_worker: vec![5, 7],
            totals: Default::default(),
            nat: vec![NatStatus {
                name: "nat-1".into(),
                public_ips: vec!["203.0.113.5".into()],
                profile: "aws".into(),
                sessions: 3,
                mappings: 2,
                ports_in_use: vec![("203.0.113.5".into(), 6, 4)],
                idle_timeouts: 1,
                early_drops: 0,
            }],
            dns: None,
        };
        s.totals.interfaces = vec![("app".into(), 10, 1000, 9, 900)];
        s.totals.drops = vec![("sg_deny".into(), 4)];
        s.totals.nat = vec![("connection_attempts".into(), 6)];
        s.totals.sg_denied = vec![("app".into(), 4, 0)];
        let text = render(&s);
        for line in [
            "natgw_uptime_seconds 12",
            "natgw_interface_receive_packets_total{interface=\"app\"} 10",
            "natgw_interface_transmit_bytes_total{interface=\"app\"} 900",
            "natgw_drops_total{reason=\"sg_deny\"} 4",
            "natgw_drops_total{reason=\"no_route\"} 0",
            "natgw_nat_connection_attempts_total 6",
            "# HELP natgw_nat_connection_attempts CloudWatch ConnectionAttemptCount, all NAT gateways together.",
            "natgw_security_group_denied_packets_total{interface=\"app\",direction=\"inbound\"} 4",
            "natgw_nat_gateway_sessions{nat_gateway=\"nat-1\"} 3",
            "natgw_nat_gateway_ports_in_use{nat_gateway=\"nat-1\",elastic_ip=\"203.0.113.5\",protocol=\"tcp\"} 4",
            "natgw_worker_read_packets_total{worker=\"1\"} 7",
            "# EOF",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
    }

    #[test]
    fn the_grafana_dashboard_asks_only_for_metrics_natgw_exposes() {
        let mut totals = crate::pipeline::Totals::sum(&["app".into()], [&crate::pipeline::Counters::new(1)]);
        // Listed once an interface's groups denied something.
        totals.sg_denied = vec![("app".into(), 0, 0)];
        let text = render(&Stats {
            uptime_secs: 1,
            workers: 1,
            offload: String::new(),
            steering: String::new(),
            per_worker: vec![1],
            totals,
            nat: vec![NatStatus {
                name: "nat-1".into(),
                public_ips: vec![],
                profile: "aws".into(),
                sessions: 0,
                mappings: 0,
                ports_in_use: vec![("203.0.113.5".into(), 6, 0)],
                idle_timeouts: 0,
                early_drops: 0,
            }],
            dns: None,
        });
        let exposed: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("# TYPE ")?.split(' ').next()).collect();
        let dash: serde_json::Value =
            serde_json::from_str(include_str!("../../docs/grafana/natgw.json")).expect("the dashboard is JSON");
        let mut asked = 0;
        for p in dash["panels"].as_array().unwrap() {
            for t in p["targets"].as_array().unwrap() {
                let expr = t["expr"].as_str().unwrap();
                for word in expr.split(|c: char| !(c.is_alphanumeric() || c == '_')).filter(|w| w.starts_with("natgw_"))
                {
                    let family = word.strip_suffix("_total").unwrap_or(word);
                    assert!(exposed.contains(&family), "the dashboard asks for {word}, natgw has {exposed:?}");
                    asked += 1;
                }
            }
        }
        assert!(asked >= 10, "{asked}");
    }

    #[test]
    fn only_a_loopback_address_is_served() {
        let e = serve("192.0.2.1:9108".parse().unwrap(), Some(1), || Err("unused".into())).unwrap_err();
        assert!(e.contains("loopback"), "{e}");
    }
}
