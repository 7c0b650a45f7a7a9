//! The lab's AWS services: their data, their doors, and what the `aws` CLI
//! needs to reach them from a lab host.
//!
//! A service's public door is a namespace of its own behind the internet
//! namespace (a veth pair; the internet namespace routes the service's
//! address to it, as the internet would), so a path through a NAT gateway
//! reaches it from the NAT gateway's public address. A gateway endpoint's
//! door is a namespace natgw attaches to (it holds the same public address);
//! an interface endpoint's door is its network interface's namespace. One
//! `natgw service` process serves each door; all doors of a service share a
//! data directory. See docs/ENDPOINTS.md.

use super::config::{EndpointKind, Vpc};
use super::daemon::namespace_name;
use super::lab::{LabError, LabState, io_err};
use crate::io::netns;
use crate::services::Kind;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The address the internet namespace holds on each service's link.
const INTERNET_SIDE: Ipv4Addr = Ipv4Addr::new(169, 254, 100, 1);
/// The port every door listens on (plain HTTP: the lab has no certificates).
pub const PORT: u16 = 80;

/// The public doors' namespaces, as written (the lab adds its prefix).
pub fn public_namespaces(vpc: &Vpc) -> Vec<String> {
    vpc.services.iter().map(|s| s.namespace.clone()).collect()
}

/// One door: where it is and what it is.
struct Door {
    kind: Kind,
    namespace: String,
    listen: Ipv4Addr,
    via: Option<(String, Option<String>)>,
}

fn doors(vpc: &Vpc, prefix: &str) -> Vec<Door> {
    let mut v: Vec<Door> = vpc
        .services
        .iter()
        .map(|s| Door {
            kind: s.kind,
            namespace: namespace_name(Some(prefix), &s.namespace),
            listen: s.address,
            via: None,
        })
        .collect();
    for e in &vpc.endpoints {
        let s = &vpc.services[e.service];
        let via = Some((e.id.clone(), e.policy.clone()));
        match &e.kind {
            EndpointKind::Gateway { .. } => v.push(Door {
                kind: s.kind,
                namespace: namespace_name(Some(prefix), &e.namespace(None)),
                listen: s.address,
                via,
            }),
            EndpointKind::Interface { enis, .. } => {
                for (sub, ip) in enis {
                    let name = &vpc.parts.subnets[*sub].name;
                    v.push(Door {
                        kind: s.kind,
                        namespace: namespace_name(Some(prefix), &e.namespace(Some(name))),
                        listen: *ip,
                        via: via.clone(),
                    });
                }
            }
        }
    }
    v
}

/// Links each public door to the internet namespace. Before the gateway
/// starts: the internet namespace's TUN comes later and does not matter here.
pub fn link_public_doors(vpc: &Vpc, prefix: &str) -> Result<(), LabError> {
    let Some(internet) = vpc.attachments.iter().find(|a| a.interface == "internet") else { return Ok(()) };
    let inet = namespace_name(Some(prefix), &internet.namespace);
    if !vpc.services.is_empty() {
        // The internet namespace forwards between natgw and the services.
        netns::sysctl(&inet, "net.ipv4.ip_forward", "1")?;
    }
    for (i, s) in vpc.services.iter().enumerate() {
        let ns = namespace_name(Some(prefix), &s.namespace);
        let dev = format!("svc{i}");
        netns::ip(&["-n", &inet, "link", "add", &dev, "type", "veth", "peer", "name", "eth0", "netns", &ns])?;
        netns::ip(&["-n", &inet, "addr", "add", &format!("{INTERNET_SIDE}/32"), "dev", &dev])?;
        netns::ip(&["-n", &inet, "link", "set", &dev, "up"])?;
        netns::ip(&["-n", &inet, "route", "add", &format!("{}/32", s.address), "dev", &dev, "scope", "link"])?;
        netns::ip(&["-n", &ns, "addr", "add", &format!("{}/32", s.address), "dev", "eth0"])?;
        netns::ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
        netns::ip(&["-n", &ns, "route", "add", "default", "via", &INTERNET_SIDE.to_string(), "dev", "eth0", "onlink"])?;
    }
    Ok(())
}

/// The services' shared data, made from the config: buckets and their
/// policies, tables and their keys.
fn seed(vpc: &Vpc, data: &Path) -> Result<(), LabError> {
    for s in &vpc.services {
        let dir = data.join(s.kind.name());
        match s.kind {
            Kind::S3 => {
                let store = crate::services::s3::Store::open(&dir).map_err(io_err("the S3 store"))?;
                for (b, policy) in &s.buckets {
                    store.create_bucket(b).map_err(io_err(format!("bucket {b}")))?;
                    if let Some(p) = policy {
                        store.set_policy(b, p).map_err(io_err(format!("bucket {b}'s policy")))?;
                    }
                }
            }
            Kind::Dynamodb => {
                let t = crate::services::dynamodb::Tables::open(&dir).map_err(io_err("the tables"))?;
                for (name, key) in &s.tables {
                    t.create(name, key).map_err(io_err(format!("table {name}")))?;
                }
            }
        }
    }
    Ok(())
}

/// Starts every door's server (once natgw has configured the namespaces)
/// and waits until each accepts connections.
pub fn start(vpc: &Vpc, state: &LabState, exe: &Path) -> Result<(), LabError> {
    if vpc.services.is_empty() {
        return Ok(());
    }
    let dir = LabState::dir(&state.name);
    let data = dir.join("services");
    seed(vpc, &data)?;
    let mut waiting = Vec::new();
    for (i, d) in doors(vpc, &state.prefix).iter().enumerate() {
        let log_path = dir.join(format!("service-{i}.log"));
        let log = std::fs::File::create(&log_path).map_err(io_err(format!("creating {}", log_path.display())))?;
        let log2 = log.try_clone().map_err(io_err("log file"))?;
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &d.namespace])
            .arg(exe)
            .args(["service", "--kind", d.kind.name(), "--listen", &format!("{}:{PORT}", d.listen)])
            .arg("--data")
            .arg(data.join(d.kind.name()))
            .args(["--region", &vpc.dns.region]);
        match &d.via {
            None => {
                cmd.args(["--via", "internet"]);
            }
            Some((id, policy)) => {
                cmd.args(["--via", id, "--vpc", &vpc.id]);
                if let Some(p) = policy {
                    let f = dir.join(format!("{id}.policy.json"));
                    std::fs::write(&f, p).map_err(io_err(format!("writing {}", f.display())))?;
                    cmd.arg("--policy").arg(f);
                }
            }
        }
        // Each door's log says which requests it denied and why (info level,
        // whatever the lab's own level is).
        cmd.env("NATGW_LOG", "info");
        use std::os::unix::process::CommandExt;
        cmd.stdin(Stdio::null()).stdout(log).stderr(log2).process_group(0);
        cmd.spawn().map_err(io_err(format!("starting the {} door in {}", d.kind.name(), d.namespace)))?;
        waiting.push((d.namespace.clone(), SocketAddr::from((d.listen, PORT)), log_path));
    }
    for (ns, addr, log) in waiting {
        wait_listening(&ns, addr, &log)?;
    }
    Ok(())
}

fn wait_listening(ns: &str, addr: SocketAddr, log: &Path) -> Result<(), LabError> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let up = netns::run_in(&netns::path(ns), move || {
            std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).map(|_| ())
        });
        if up.is_ok() {
            return Ok(());
        }
        if Instant::now() > deadline {
            let tail = std::fs::read_to_string(log).unwrap_or_default();
            return Err(LabError::Io {
                what: format!(
                    "the service door {addr} in {ns} did not answer within 10 s (log {}):\n{tail}",
                    log.display()
                ),
                source: std::io::Error::other("not listening"),
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The `aws` CLI's files for the lab's hosts: a config with the region,
/// path-style S3 addressing and placeholder credentials (the services do
/// not check signatures), and a plugin that points each service's commands
/// at `http://<service>.<region>.amazonaws.com`, which the VPC's resolver
/// answers. Returns the environment a lab command gets.
pub fn aws_cli_env(vpc: &Vpc, dir: &Path) -> std::io::Result<Vec<(String, String)>> {
    let aws = dir.join("aws");
    let plugin = aws.join("plugin");
    std::fs::create_dir_all(&plugin)?;
    std::fs::write(plugin.join("natgw_endpoint.py"), PLUGIN)?;
    let config = format!(
        "# written by natgw for this lab: the aws CLI against the lab's services\n[default]\nregion = {region}\naws_access_key_id = AKIDNATGWLAB\naws_secret_access_key = natgw-lab-no-secret\ns3 =\n    addressing_style = path\n\n[plugins]\ncli_legacy_plugin_path = {}\nnatgw = natgw_endpoint\n",
        plugin.display(),
        region = vpc.dns.region
    );
    let path = aws.join("config");
    std::fs::write(&path, config)?;
    Ok(env(&path, &vpc.dns.region))
}

fn env(config: &Path, region: &str) -> Vec<(String, String)> {
    vec![
        ("AWS_CONFIG_FILE".into(), config.display().to_string()),
        ("AWS_SHARED_CREDENTIALS_FILE".into(), "/dev/null".into()),
        ("AWS_EC2_METADATA_DISABLED".into(), "true".into()),
        ("AWS_PAGER".into(), String::new()),
        ("NATGW_LAB_REGION".into(), region.to_string()),
    ]
}

/// The environment of a lab command, if the lab wrote the CLI's files.
pub fn lab_env(dir: &Path) -> Vec<(String, String)> {
    let config: PathBuf = dir.join("aws").join("config");
    let region = std::fs::read_to_string(&config)
        .ok()
        .and_then(|c| c.lines().find_map(|l| l.strip_prefix("region = ").map(str::to_string)))
        .unwrap_or_else(|| "us-east-1".into());
    if config.exists() { env(&config, &region) } else { Vec::new() }
}

const PLUGIN: &str = r#""""natgw lab: send the aws CLI to the lab's services over plain HTTP, by name.

Written by natgw. Debian's aws CLI (2.9) has no AWS_ENDPOINT_URL; this plugin
sets --endpoint-url for s3, s3api and dynamodb commands unless one is given.
"""
import os

SERVICES = {"s3": "s3", "s3api": "s3", "dynamodb": "dynamodb"}


def awscli_initialize(cli):
    cli.register("top-level-args-parsed", _endpoint)


def _endpoint(parsed_args, session=None, **kwargs):
    service = SERVICES.get(getattr(parsed_args, "command", None))
    if service is None or getattr(parsed_args, "endpoint_url", None):
        return
    region = getattr(parsed_args, "region", None) or os.environ.get("NATGW_LAB_REGION", "us-east-1")
    parsed_args.endpoint_url = "http://%s.%s.amazonaws.com" % (service, region)
"#;
