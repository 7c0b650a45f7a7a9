//! The VPC config file (TOML): parse, validate as AWS does, compile.
//!
//! Every error names the file, the line and a fix. The default lab of
//! `docs/LAB.md` is this format, embedded ([`DEFAULT_LAB`]) and shipped as
//! `examples/default-lab.toml`.

use crate::acl::{Acl, AclRule, RuleAction, RuleProtocol};
use crate::conntrack::{Profile, Timeouts};
use crate::nat::ports::PortPolicy;
use crate::nat::{ExhaustionReply, Filtering, Mapping, NatConfig};
use crate::pipeline::topology::{Host, NatGatewayInfo, Subnet, TopologyParts, VpcId};
use crate::route::{Prefix, Route, RouteState, RouteTable, Target};
use crate::wire::checksum::Delta;
use serde::Deserialize;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::Ipv4Addr;
use std::ops::Range;
use toml::Spanned;

mod conntrack;
mod dns;
mod eips;
mod endpoints;
mod enis;
mod groups;
mod targets;
mod transit;
mod vpcs;

pub use eips::{EipView, REGION_LIMIT as EIP_REGION_LIMIT, allocation_id as eips_allocation_id};
pub use enis::{DETACHED as ENI_DETACHED, EniMove, EniView};
pub use targets::{TargetError, Targets};

pub use dns::{DnsSettings, zone_of};
pub use endpoints::{EndpointKind, EndpointSettings, ServiceSettings, prefix_list_id};

/// The default lab, embedded (also `examples/default-lab.toml`).
pub const DEFAULT_LAB: &str = include_str!("../../examples/default-lab.toml");

/// A config error: where, what, and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
    pub fix: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: {}", self.file, self.line, self.column, self.message)?;
        if !self.fix.is_empty() {
            write!(f, "\n  fix: {}", self.fix)?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

// ---------------------------------------------------------------- file format

type S = Spanned<String>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    vpc: VpcSection,
    /// More VPCs, after the `[vpc]` section's.
    #[serde(default)]
    vpcs: Vec<vpcs::MoreVpcSection>,
    #[serde(default)]
    peerings: Vec<vpcs::PeeringSection>,
    #[serde(default)]
    transit_gateways: Vec<transit::TgwSection>,
    #[serde(default)]
    gateway: GatewaySection,
    internet: Option<InternetSection>,
    internet_gateway: Option<IgwSection>,
    #[serde(default)]
    subnets: Vec<SubnetSection>,
    #[serde(default)]
    hosts: Vec<HostSection>,
    #[serde(default)]
    nat_gateways: Vec<NatSection>,
    #[serde(default)]
    route_tables: Vec<RouteTableSection>,
    #[serde(default)]
    network_acls: Vec<AclSection>,
    #[serde(default)]
    security_groups: Vec<groups::SgSection>,
    flow_logs: Option<FlowLogSection>,
    dns: Option<dns::DnsSection>,
    #[serde(default)]
    services: Vec<endpoints::ServiceSection>,
    #[serde(default)]
    endpoints: Vec<endpoints::EndpointSection>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FlowLogSection {
    /// The file records are appended to (relative to the config's directory).
    path: S,
    /// Aggregation interval in seconds: AWS's 600 or 60, or shorter for a lab.
    interval: Option<Spanned<u32>>,
    /// AWS's custom format (`${field} ...`); default: the default format.
    format: Option<S>,
    account_id: Option<S>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct VpcSection {
    #[serde(default)]
    name: Option<String>,
    /// The VPC's id (`vpc-...`), as `aws:SourceVpc` reports it (default: from the name).
    id: Option<S>,
    cidr: S,
    /// The region, for DNS names (default us-east-1).
    region: Option<S>,
    /// The VPC's resolver answers (default true, as on AWS).
    enable_dns_support: Option<Spanned<bool>>,
    /// Public addresses get public DNS names (default false, as on AWS for a
    /// VPC that is not the default one).
    enable_dns_hostnames: Option<Spanned<bool>>,
}

/// Which queue of a TUN device (so which worker) the kernel puts a packet on.
/// The same names in the file (serde) and on the command line (clap).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, serde::Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Steering {
    /// The kernel's choice: the queue that last wrote the packet's flow.
    Flow,
    /// The queue of the core that sent the packet (an eBPF program), each
    /// worker pinned to the cores of its queue: wake-ups stay on one core.
    Cpu,
    /// `Cpu` while traffic is light, `Flow` (workers unpinned) while it is
    /// heavy (see `control::steering`).
    #[default]
    Auto,
}

impl Steering {
    /// The name in the file and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Steering::Flow => "flow",
            Steering::Cpu => "cpu",
            Steering::Auto => "auto",
        }
    }
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct GatewaySection {
    workers: Option<usize>,
    mtu: Option<u16>,
    mss_clamp: Option<bool>,
    flow_cache: Option<bool>,
    busy_poll_us: Option<u64>,
    steering: Option<Steering>,
    txqueuelen: Option<u32>,
    offload: Option<bool>,
    icmp_rate: Option<u32>,
    icmp_burst: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InternetSection {
    /// natgw's own address on the internet link.
    gateway: S,
    /// Addresses (with prefix length) of the namespace that stands for the internet.
    #[serde(default)]
    addresses: Vec<S>,
    namespace: Option<S>,
    /// MTU of the internet link (default: the gateway's).
    mtu: Option<u16>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct IgwSection {
    name: S,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SubnetSection {
    name: S,
    /// Its VPC (default: the `[vpc]` section's).
    vpc: Option<S>,
    cidr: S,
    route_table: Option<S>,
    network_acl: Option<S>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HostSection {
    name: S,
    subnet: S,
    ip: S,
    elastic_ip: Option<S>,
    namespace: Option<S>,
    #[serde(default = "yes")]
    source_dest_check: bool,
    /// MTU of the host's link (default: the gateway's).
    mtu: Option<u16>,
    /// The security groups of its interface (default: the VPC's `default`).
    security_groups: Option<Spanned<Vec<S>>>,
    /// Its interface's connection tracking timeouts (default: AWS's).
    connection_tracking: Option<conntrack::ConnTrackSection>,
    /// A secondary ENI of the instance `namespace` names (another host's).
    secondary: Option<Spanned<bool>>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NatSection {
    name: S,
    subnet: S,
    private_ip: S,
    elastic_ips: Spanned<Vec<S>>,
    #[serde(default)]
    options: NatOptions,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct NatOptions {
    profile: Option<Profile>,
    port_range: Option<S>,
    mapping: Option<Spanned<Mapping>>,
    filtering: Option<Spanned<Filtering>>,
    port_preservation: Option<bool>,
    port_parity: Option<bool>,
    keep_port_class: Option<bool>,
    hold_down: Option<u32>,
    max_sessions: Option<usize>,
    max_ports_per_host: Option<u32>,
    max_sessions_per_host: Option<u32>,
    fair_share: Option<bool>,
    early_drop: Option<bool>,
    on_exhaustion: Option<ExhaustionReply>,
    unsolicited_syn: Option<crate::nat::UnsolicitedSyn>,
    port_overlapping: Option<Spanned<bool>>,
    port_block: Option<Spanned<u16>>,
    log_mappings: Option<bool>,
    #[serde(default)]
    timeouts: TimeoutOverrides,
    seed: Option<u64>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct TimeoutOverrides {
    udp: Option<u32>,
    tcp_established: Option<u32>,
    tcp_opening: Option<u32>,
    tcp_closing: Option<u32>,
    tcp_reset: Option<u32>,
    icmp: Option<u32>,
    tcp_rst_on_expired: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RouteTableSection {
    name: S,
    /// Its VPC (default: the `[vpc]` section's).
    vpc: Option<S>,
    #[serde(default)]
    main: bool,
    #[serde(default)]
    routes: Vec<RouteSection>,
    /// Routes read from files: one CIDR a line (gzip if the name ends in .gz),
    /// all to one target. For a full internet table.
    #[serde(default)]
    route_files: Vec<RouteFileSection>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RouteFileSection {
    path: S,
    target: S,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RouteSection {
    destination: S,
    target: S,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AclSection {
    name: S,
    /// Its VPC (default: the `[vpc]` section's).
    vpc: Option<S>,
    #[serde(default)]
    inbound: Vec<RuleSection>,
    #[serde(default)]
    outbound: Vec<RuleSection>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleSection {
    rule: Spanned<i64>,
    action: S,
    #[serde(default = "all")]
    protocol: S,
    cidr: S,
    ports: Option<S>,
    icmp_type: Option<u8>,
    icmp_code: Option<u8>,
}

fn all() -> S {
    Spanned::new(0..0, "all".to_string())
}

// ---------------------------------------------------------------- compiled form

/// How natgw attaches to one namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attachment {
    /// Interface name (the host's name, or `internet`).
    pub interface: String,
    /// The namespace, as written in the file (the lab adds its prefix).
    pub namespace: String,
    /// Addresses to configure on the TUN device.
    pub addresses: Vec<(Ipv4Addr, u8)>,
    /// The default route's next hop (the subnet router, or natgw's internet address).
    pub gateway: Ipv4Addr,
    /// The link's MTU.
    pub mtu: u16,
    /// A secondary network interface (ENI) of the instance whose namespace
    /// it is in: no default route of its own, its address answered through
    /// it by a routing rule, and movable at run time (`natgw eni`).
    pub secondary: bool,
}

/// Gateway-wide settings from the `[gateway]` section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GatewaySettings {
    /// Worker threads (0 = one per core).
    pub workers: usize,
    pub mtu: u16,
    /// Use TUN offloads (IFF_VNET_HDR, TSO, checksum offload).
    pub offload: bool,
    pub icmp_rate: u32,
    pub icmp_burst: u32,
    pub mss_clamp: bool,
    /// Remember each flow's forwarding decision (see `pipeline::flow_cache`).
    pub flow_cache: bool,
    /// Microseconds a worker keeps polling after traffic before it sleeps.
    pub busy_poll_us: u64,
    /// Which worker's queue the kernel puts a packet on.
    pub steering: Steering,
    /// Queue length of the TUN devices on the hosts' side.
    pub txqueuelen: u32,
}

/// A validated, compiled VPC.
#[derive(Clone, Debug)]
pub struct Vpc {
    pub name: String,
    pub parts: TopologyParts,
    /// NAT gateway configurations, in topology order.
    pub nats: Vec<(String, NatConfig)>,
    /// One per interface, in interface order (hosts, then the internet).
    pub attachments: Vec<Attachment>,
    pub gateway: GatewaySettings,
    /// The first VPC's main route table, if the file has one.
    pub main_table: Option<usize>,
    /// Each route table's VPC, in table order.
    pub table_vpcs: Vec<VpcId>,
    /// The internet gateway's name (a route target).
    pub igw_name: String,
    /// Things that load but are probably mistakes (stateless ACLs without the
    /// ephemeral range, ...).
    pub warnings: Vec<String>,
    /// VPC Flow Logs, if the file asks for them.
    pub flow_logs: Option<FlowLogSettings>,
    /// The VPC's DNS resolver.
    pub dns: DnsSettings,
    /// The VPC's id (`vpc-...`).
    pub id: String,
    /// The lab's AWS services.
    pub services: Vec<ServiceSettings>,
    /// The VPC's endpoints to them.
    pub endpoints: Vec<EndpointSettings>,
    /// Interfaces' own connection tracking timeouts: a host's
    /// `ct_profile` n > 0 is entry n - 1 (0 is AWS's defaults).
    pub conntrack_timeouts: Vec<Timeouts>,
    /// Elastic IPs allocated and associated with nothing (`natgw eip
    /// allocate`, an address a host gave up, a deleted NAT gateway's); the
    /// associated ones are the hosts' and NAT gateways'.
    pub idle_eips: Vec<Ipv4Addr>,
    /// Elastic IPs allocated while running (`natgw eip allocate`, not
    /// released yet), associated or not: a reload keeps them allocated.
    pub runtime_eips: Vec<Ipv4Addr>,
}

/// The `[flow_logs]` section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlowLogSettings {
    pub path: std::path::PathBuf,
    pub interval: u32,
    pub format: crate::flowlog::Format,
    pub account_id: String,
}

// ---------------------------------------------------------------- validation

struct Ctx<'a> {
    file: &'a str,
    src: &'a str,
}

/// Reads a route file: one CIDR a line, `#` comments, gzip if it ends in `.gz`.
fn read_route_file(path: &std::path::Path) -> Result<Vec<Prefix>, String> {
    use std::io::{BufRead, BufReader, Read};
    let f = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let r: Box<dyn Read> = if path.extension().is_some_and(|e| e == "gz") {
        Box::new(flate2::read::GzDecoder::new(f))
    } else {
        Box::new(f)
    };
    let mut v = Vec::new();
    for (i, line) in BufReader::new(r).lines().enumerate() {
        let line = line.map_err(|e| e.to_string())?;
        let t = line.split('#').next().unwrap_or("").trim();
        if t.is_empty() {
            continue;
        }
        v.push(t.parse::<Prefix>().map_err(|e| format!("line {}: {e}", i + 1))?);
    }
    Ok(v)
}

impl Ctx<'_> {
    /// A path from the file, relative to the file's directory.
    fn relative(&self, p: &str) -> std::path::PathBuf {
        let p = std::path::Path::new(p);
        if p.is_absolute() {
            return p.to_path_buf();
        }
        std::path::Path::new(self.file).parent().map_or_else(|| p.to_path_buf(), |d| d.join(p))
    }

    fn err(&self, span: Range<usize>, message: impl Into<String>, fix: impl Into<String>) -> ConfigError {
        let (line, column) = line_col(self.src, span.start);
        ConfigError { file: self.file.to_string(), line, column, message: message.into(), fix: fix.into() }
    }

    fn prefix(&self, s: &S, what: &str) -> Result<Prefix, ConfigError> {
        Prefix::parse_canonical(s.get_ref()).map_err(|e| {
            let fix = match &e {
                crate::route::PrefixError::NotCanonical { canonical, .. } => {
                    format!("write \"{canonical}\"")
                }
                _ => "write a CIDR block such as \"10.0.0.0/16\"".to_string(),
            };
            self.err(s.span(), format!("{what}: {e}"), fix)
        })
    }

    fn ip(&self, s: &S, what: &str) -> Result<Ipv4Addr, ConfigError> {
        s.get_ref().parse().map_err(|_| {
            self.err(
                s.span(),
                format!("{what}: `{}` is not an IPv4 address", s.get_ref()),
                "write an address such as \"10.0.1.10\"",
            )
        })
    }
}

fn line_col(src: &str, offset: usize) -> (usize, usize) {
    let before = &src[..offset.min(src.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, column)
}

fn name_ok(n: &str) -> bool {
    !n.is_empty() && n.len() <= 32 && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn port_range(s: &str) -> Option<(u16, u16)> {
    let (a, b) = match s.split_once('-') {
        Some((a, b)) => (a.trim().parse().ok()?, b.trim().parse().ok()?),
        None => {
            let p: u16 = s.trim().parse().ok()?;
            (p, p)
        }
    };
    (a <= b).then_some((a, b))
}

/// Parses and validates a VPC config. `file` names the source in errors.
pub fn parse(file: &str, src: &str) -> Result<Vpc, ConfigError> {
    let cx = Ctx { file, src };
    let f: File = toml::from_str(src).map_err(|e| {
        let (line, column) = e.span().map_or((1, 1), |s| line_col(src, s.start));
        ConfigError {
            file: file.to_string(),
            line,
            column,
            message: e.message().trim().to_string(),
            fix: "see examples/default-lab.toml for the format".to_string(),
        }
    })?;
    compile(&cx, f)
}

/// Reads and parses a config file.
pub fn load(path: &std::path::Path) -> Result<Vpc, ConfigError> {
    let src = std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: path.display().to_string(),
        line: 0,
        column: 0,
        message: format!("cannot read: {e}"),
        fix: "check the path".to_string(),
    })?;
    parse(&path.display().to_string(), &src)
}

fn size_ok(p: &Prefix) -> bool {
    (16..=28).contains(&p.prefix_len())
}

fn compile(cx: &Ctx<'_>, f: File) -> Result<Vpc, ConfigError> {
    // The VPCs first: every later section belongs to one.
    let vpcs = vpcs::compile(cx, &f.vpc, &f.vpcs, &f.peerings)?;
    // The first VPC's block: its resolver, endpoints and services live there.
    let vpc = vpcs.cidr(VpcId::FIRST);
    let mut warnings = Vec::new();

    // Names are unique per kind; hosts, NAT gateways and the internet gateway
    // share one kind because a route may target any of them.
    let mut names: HashMap<(&str, String), Range<usize>> = HashMap::new();
    let mut claim = |n: &S, what: &'static str| -> Result<(), ConfigError> {
        if !name_ok(n.get_ref()) {
            return Err(cx.err(
                n.span(),
                format!("{what} name `{}` is not valid", n.get_ref()),
                "use up to 32 letters, digits, `-` or `_`",
            ));
        }
        let kind = match what {
            "host" | "NAT gateway" | "internet gateway" | "transit gateway" | "peering" => "route target",
            other => other,
        };
        if kind == "route target" && ["local", "blackhole"].contains(&n.get_ref().as_str()) {
            return Err(cx.err(
                n.span(),
                format!("`{}` is a reserved route target", n.get_ref()),
                "choose another name",
            ));
        }
        if let Some(prev) = names.insert((kind, n.get_ref().clone()), n.span()) {
            let (line, _) = line_col(cx.src, prev.start);
            return Err(cx.err(
                n.span(),
                format!("the {kind} name `{}` is already used on line {line}", n.get_ref()),
                format!("give every {kind} its own name"),
            ));
        }
        Ok(())
    };

    // Internet gateway.
    let igw_name = f.internet_gateway.as_ref().map_or("igw".to_string(), |i| i.name.get_ref().clone());
    if let Some(i) = &f.internet_gateway {
        claim(&i.name, "internet gateway")?;
    }
    for g in &f.transit_gateways {
        claim(&g.name, "transit gateway")?;
    }
    for p in &f.peerings {
        claim(&p.name, "peering")?;
    }

    // Route tables (targets resolved after hosts and NAT gateways are known).
    let mut table_index: HashMap<String, usize> = HashMap::new();
    let mut table_vpcs = Vec::new();
    for (i, t) in f.route_tables.iter().enumerate() {
        claim(&t.name, "route table")?;
        table_index.insert(t.name.get_ref().clone(), i);
        table_vpcs.push(vpcs.of(cx, t.vpc.as_ref())?);
    }
    // One main table per VPC.
    let mut mains: HashMap<VpcId, usize> = HashMap::new();
    for (i, t) in f.route_tables.iter().enumerate().filter(|(_, t)| t.main) {
        if mains.insert(table_vpcs[i], i).is_some() {
            return Err(cx.err(
                t.name.span(),
                format!("more than one main route table in VPC {}", vpcs.name(table_vpcs[i])),
                "keep `main = true` on one table of each VPC",
            ));
        }
    }
    let main_table = mains.get(&VpcId::FIRST).copied();

    // ACLs.
    // The default ACL (allow all) is every VPC's.
    let mut acls = vec![Acl::default_allow("default")];
    let mut acl_vpcs: Vec<Option<VpcId>> = vec![None];
    let mut acl_index: HashMap<String, usize> = HashMap::from([("default".to_string(), 0)]);
    for a in &f.network_acls {
        claim(&a.name, "network ACL")?;
        acl_vpcs.push(Some(vpcs.of(cx, a.vpc.as_ref())?));
        let inbound = a.inbound.iter().map(|r| rule(cx, r)).collect::<Result<Vec<_>, _>>()?;
        let outbound = a.outbound.iter().map(|r| rule(cx, r)).collect::<Result<Vec<_>, _>>()?;
        for list in [&a.inbound, &a.outbound] {
            let mut seen = HashMap::new();
            for r in list {
                if let Some(prev) = seen.insert(*r.rule.get_ref(), r.rule.span()) {
                    let (line, _) = line_col(cx.src, prev.start);
                    return Err(cx.err(
                        r.rule.span(),
                        format!("rule number {} is already used on line {line}", r.rule.get_ref()),
                        "number every rule of one direction differently",
                    ));
                }
            }
        }
        let acl = Acl::new(a.name.get_ref(), inbound, outbound);
        warnings.extend(acl.lint());
        acl_index.insert(a.name.get_ref().clone(), acls.len());
        acls.push(acl);
    }

    // Subnets.
    let mut subnets: Vec<Subnet> = Vec::new();
    let mut subnet_index: HashMap<String, usize> = HashMap::new();
    for s in &f.subnets {
        claim(&s.name, "subnet")?;
        let in_vpc = vpcs.of(cx, s.vpc.as_ref())?;
        let vpc = vpcs.cidr(in_vpc);
        let cidr = cx.prefix(&s.cidr, "subnet CIDR")?;
        if !size_ok(&cidr) {
            return Err(cx.err(
                s.cidr.span(),
                format!("subnet CIDR {cidr} is /{}; AWS allows /16 to /28", cidr.prefix_len()),
                "use a block between /16 and /28",
            ));
        }
        if !vpc.covers(&cidr) {
            return Err(cx.err(
                s.cidr.span(),
                format!("subnet {cidr} is not inside the VPC {vpc}"),
                format!("choose a block inside {vpc}"),
            ));
        }
        if let Some(o) = subnets.iter().find(|o| o.vpc == in_vpc && o.cidr.overlaps(&cidr)) {
            return Err(cx.err(
                s.cidr.span(),
                format!("subnet {cidr} overlaps subnet `{}` ({})", o.name, o.cidr),
                "subnets of one VPC must not overlap",
            ));
        }
        let route_table = match &s.route_table {
            Some(t) => *table_index.get(t.get_ref()).ok_or_else(|| {
                cx.err(
                    t.span(),
                    format!("no route table named `{}`", t.get_ref()),
                    format!(
                        "define [[route_tables]] name = \"{}\", or use one of: {}",
                        t.get_ref(),
                        list(&table_index)
                    ),
                )
            })?,
            None => mains.get(&in_vpc).copied().ok_or_else(|| {
                cx.err(
                    s.name.span(),
                    format!(
                        "subnet `{}` has no route table and VPC {} has no main table",
                        s.name.get_ref(),
                        vpcs.name(in_vpc)
                    ),
                    "add `route_table = \"...\"` to the subnet, or `main = true` to a route table of its VPC",
                )
            })?,
        };
        if table_vpcs[route_table] != in_vpc {
            let t = s.route_table.as_ref().map_or(s.name.span(), |t| t.span());
            return Err(cx.err(
                t,
                format!(
                    "route table `{}` is VPC {}'s, subnet `{}` is in VPC {}",
                    f.route_tables[route_table].name.get_ref(),
                    vpcs.name(table_vpcs[route_table]),
                    s.name.get_ref(),
                    vpcs.name(in_vpc)
                ),
                "associate a route table of the subnet's own VPC",
            ));
        }
        let acl = match &s.network_acl {
            Some(a) => *acl_index.get(a.get_ref()).ok_or_else(|| {
                cx.err(
                    a.span(),
                    format!("no network ACL named `{}`", a.get_ref()),
                    format!("define [[network_acls]] name = \"{}\", or use one of: {}", a.get_ref(), list(&acl_index)),
                )
            })?,
            None => 0,
        };
        if let Some(theirs) = acl_vpcs[acl].filter(|v| *v != in_vpc) {
            let a = s.network_acl.as_ref().map_or(s.name.span(), |a| a.span());
            return Err(cx.err(
                a,
                format!(
                    "network ACL `{}` is VPC {}'s, not VPC {}'s",
                    acls[acl].name,
                    vpcs.name(theirs),
                    vpcs.name(in_vpc)
                ),
                "associate a network ACL of the subnet's own VPC",
            ));
        }
        subnet_index.insert(s.name.get_ref().clone(), subnets.len());
        subnets.push(Subnet { name: s.name.get_ref().clone(), vpc: in_vpc, cidr, route_table, acl, public: false });
    }

    // Transit gateways: their attachments sit in subnets, VPC route tables target them.
    let tgws = transit::compile(cx, &f.transit_gateways, &vpcs, &subnets, &subnet_index, &mut warnings)?;
    vpcs::check_zones(cx, &vpcs, &tgws)?;

    // Addresses taken inside the VPC, and public ones.
    let mut private_taken: HashMap<(VpcId, Ipv4Addr), Range<usize>> = HashMap::new();
    let mut public_taken: HashMap<Ipv4Addr, Range<usize>> = HashMap::new();
    let reserved = |cidr: &Prefix, ip: Ipv4Addr| {
        let off = u32::from(ip) - cidr.addr_u32();
        off <= 3 || ip == cidr.last()
    };
    let mut check_private = |ip: Ipv4Addr, span: Range<usize>, subnet: &Subnet| -> Result<(), ConfigError> {
        if !subnet.cidr.contains(ip) {
            return Err(cx.err(
                span,
                format!("{ip} is not in subnet `{}` ({})", subnet.name, subnet.cidr),
                format!("choose an address in {}", subnet.cidr),
            ));
        }
        if reserved(&subnet.cidr, ip) {
            return Err(cx.err(
                span,
                format!("{ip} is reserved in subnet {} (AWS keeps the first four addresses and the last)", subnet.cidr),
                format!(
                    "choose an address from {} to {}",
                    subnet.cidr.nth(4),
                    Ipv4Addr::from(u32::from(subnet.cidr.last()) - 1)
                ),
            ));
        }
        if let Some(prev) = private_taken.insert((subnet.vpc, ip), span.clone()) {
            let (line, _) = line_col(cx.src, prev.start);
            return Err(cx.err(
                span,
                format!("{ip} is already used on line {line}"),
                "give every host its own address",
            ));
        }
        Ok(())
    };
    let mut check_public = |ip: Ipv4Addr, span: Range<usize>| -> Result<(), ConfigError> {
        if let Some(v) = vpcs.inside_any(ip) {
            return Err(cx.err(
                span,
                format!("Elastic IP {ip} is inside the VPC {} ({})", v.name, v.cidr),
                "use a public address, e.g. from 203.0.113.0/24",
            ));
        }
        if let Some(prev) = public_taken.insert(ip, span.clone()) {
            let (line, _) = line_col(cx.src, prev.start);
            return Err(cx.err(
                span,
                format!("Elastic IP {ip} is already used on line {line}"),
                "an Elastic IP belongs to one host or NAT gateway",
            ));
        }
        Ok(())
    };

    // Hosts.
    let mut hosts = Vec::new();
    let mut ct_profiles = conntrack::Profiles::default();
    let mut host_index: HashMap<String, usize> = HashMap::new();
    let mut attachments = Vec::new();
    for h in &f.hosts {
        claim(&h.name, "host")?;
        if h.name.get_ref() == "internet" {
            return Err(cx.err(
                h.name.span(),
                "`internet` is the name of the internet side",
                "choose another host name",
            ));
        }
        let si = *subnet_index.get(h.subnet.get_ref()).ok_or_else(|| {
            cx.err(
                h.subnet.span(),
                format!("no subnet named `{}`", h.subnet.get_ref()),
                format!("use one of: {}", list(&subnet_index)),
            )
        })?;
        let ip = cx.ip(&h.ip, "host address")?;
        check_private(ip, h.ip.span(), &subnets[si])?;
        let elastic_ip = match &h.elastic_ip {
            Some(e) => {
                let a = cx.ip(e, "Elastic IP")?;
                check_public(a, e.span())?;
                Some(a)
            }
            None => None,
        };
        host_index.insert(h.name.get_ref().clone(), hosts.len());
        attachments.push(Attachment {
            interface: h.name.get_ref().clone(),
            namespace: h.namespace.as_ref().map_or_else(|| h.name.get_ref().clone(), |n| n.get_ref().clone()),
            addresses: vec![(ip, subnets[si].cidr.prefix_len())],
            gateway: subnets[si].router(),
            mtu: h.mtu.unwrap_or(0),
            secondary: h.secondary.as_ref().is_some_and(|s| *s.get_ref()),
        });
        hosts.push(Host {
            name: h.name.get_ref().clone(),
            subnet: si as u16,
            vpc: subnets[si].vpc,
            zone: 0,
            ip,
            elastic_ip,
            interface: 0,
            source_dest_check: h.source_dest_check,
            eip_delta: Delta::ZERO,
            groups: Vec::new(),
            untracked: [true, true],
            ct_profile: ct_profiles.intern(cx, h.connection_tracking.as_ref())?,
            detached: false,
        });
    }
    // A secondary ENI sits in an instance's namespace: a primary host's.
    let primaries: Vec<&String> = attachments.iter().filter(|a| !a.secondary).map(|a| &a.namespace).collect();
    for (h, a) in f.hosts.iter().zip(&attachments) {
        if a.namespace == enis::DETACHED {
            let span = h.namespace.as_ref().map_or_else(|| h.name.span(), |n| n.span());
            return Err(cx.err(
                span,
                format!("the namespace `{}` is where the gateway parks detached interfaces", enis::DETACHED),
                "choose another name",
            ));
        }
        if a.secondary && !primaries.contains(&&a.namespace) {
            let span = h.namespace.as_ref().map_or_else(|| h.name.span(), |n| n.span());
            return Err(cx.err(
                span,
                format!("secondary interface `{}` is not in an instance's namespace", h.name.get_ref()),
                format!(
                    "name the instance it is attached to: namespace = \"{}\" (a host without `secondary`)",
                    primaries.first().map_or("...", |p| p.as_str())
                ),
            ));
        }
    }

    // NAT gateways.
    let mut nat_infos = Vec::new();
    let mut nats = Vec::new();
    let mut nat_index: HashMap<String, usize> = HashMap::new();
    for n in &f.nat_gateways {
        claim(&n.name, "NAT gateway")?;
        let si = *subnet_index.get(n.subnet.get_ref()).ok_or_else(|| {
            cx.err(
                n.subnet.span(),
                format!("no subnet named `{}`", n.subnet.get_ref()),
                format!("use one of: {}", list(&subnet_index)),
            )
        })?;
        let private_ip = cx.ip(&n.private_ip, "NAT gateway private address")?;
        check_private(private_ip, n.private_ip.span(), &subnets[si])?;
        if n.elastic_ips.get_ref().is_empty() || n.elastic_ips.get_ref().len() > 8 {
            return Err(cx.err(
                n.elastic_ips.span(),
                "a NAT gateway needs 1 to 8 Elastic IPs",
                "list one to eight public addresses",
            ));
        }
        let mut public_ips = Vec::new();
        for e in n.elastic_ips.get_ref() {
            let a = cx.ip(e, "Elastic IP")?;
            check_public(a, e.span())?;
            public_ips.push(a);
        }
        let config = nat_config(cx, &n.options, public_ips.clone())?;
        nat_index.insert(n.name.get_ref().clone(), nat_infos.len());
        nat_infos.push(NatGatewayInfo { name: n.name.get_ref().clone(), subnet: si as u16, private_ip, public_ips });
        nats.push((n.name.get_ref().clone(), config));
    }

    // The lab's services and the VPC's endpoints. An interface endpoint's
    // network interfaces are hosts of their subnets (after the file's hosts),
    // each on the highest free address, as AWS picks one for you.
    let region = f.vpc.region.as_ref().map_or("us-east-1", |r| r.get_ref().as_str());
    let services = endpoints::services(cx, &f.services, vpc, f.internet.is_some(), region)?;
    let subnet_cidrs: Vec<Prefix> = subnets.iter().map(|s| s.cidr).collect();
    // Endpoints are the first VPC's (docs/VPCS.md): they see its subnets and tables only.
    let first_subnets: HashMap<String, usize> =
        subnet_index.iter().filter(|(_, i)| subnets[**i].vpc == VpcId::FIRST).map(|(n, i)| (n.clone(), *i)).collect();
    let first_tables: HashMap<String, usize> =
        table_index.iter().filter(|(_, i)| table_vpcs[**i] == VpcId::FIRST).map(|(n, i)| (n.clone(), *i)).collect();
    let scope = endpoints::Scope {
        services: &services,
        subnets: &first_subnets,
        tables: &first_tables,
        subnet_cidrs: &subnet_cidrs,
        region,
        dns_support: f.vpc.enable_dns_support.as_ref().is_none_or(|s| *s.get_ref()),
        dns_hostnames: f.vpc.enable_dns_hostnames.as_ref().is_some_and(|h| *h.get_ref()),
    };
    let take_address = |s: usize| {
        let c = subnet_cidrs[s];
        (4..c.size().saturating_sub(1))
            .rev()
            .map(|i| c.nth(i))
            .find(|ip| !private_taken.contains_key(&(VpcId::FIRST, *ip)))
            .inspect(|ip| {
                private_taken.insert((VpcId::FIRST, *ip), 0..0);
            })
    };
    let vpc_endpoints = endpoints::endpoints(cx, &f.endpoints, &scope, take_address)?;
    let mut endpoint_groups = Vec::new();
    for e in &vpc_endpoints {
        let EndpointKind::Interface { enis, .. } = &e.kind else { continue };
        for (s, ip) in enis {
            let subnet = &subnets[*s];
            let name = e.namespace(Some(&subnet.name));
            attachments.push(Attachment {
                interface: name.clone(),
                namespace: name.clone(),
                addresses: vec![(*ip, subnet.cidr.prefix_len())],
                gateway: subnet.router(),
                mtu: 0,
                secondary: false,
            });
            hosts.push(Host {
                name,
                subnet: *s as u16,
                vpc: VpcId::FIRST,
                zone: 0,
                ip: *ip,
                elastic_ip: None,
                interface: 0,
                source_dest_check: true,
                eip_delta: Delta::ZERO,
                groups: Vec::new(),
                untracked: [true, true],
                ct_profile: 0,
                detached: false,
            });
            endpoint_groups.push(e.groups.clone());
        }
    }
    // Gateway endpoints, in `Target::Endpoint` order: (endpoint, its prefix list, its tables).
    let gateway_endpoints: Vec<(&EndpointSettings, &String, &Vec<usize>)> = vpc_endpoints
        .iter()
        .filter_map(|e| match &e.kind {
            EndpointKind::Gateway { prefix_list, route_tables } => Some((e, prefix_list, route_tables)),
            EndpointKind::Interface { .. } => None,
        })
        .collect();

    // Route targets by name, scoped to the table's VPC (one resolver, `targets`).
    let vpc_names: Vec<String> = vpcs.infos.iter().map(|v| v.name.clone()).collect();
    let targets = Targets {
        igw_name: &igw_name,
        internet: f.internet.is_some(),
        nats: &nat_infos,
        hosts: &hosts,
        subnets: &subnets,
        peerings: &vpcs.peerings,
        tgws: &tgws,
        vpc_names: &vpc_names,
    };
    let resolve_target = |t: &S, in_vpc: VpcId| -> Result<Target, ConfigError> {
        targets.resolve(t.get_ref(), in_vpc).map_err(|e| cx.err(t.span(), e.to_string(), e.fix()))
    };
    // Routes: the local route first (AWS adds it to every table), then the file's.
    let mut route_tables = Vec::new();
    for (ti, t) in f.route_tables.iter().enumerate() {
        let in_vpc = table_vpcs[ti];
        let vpc = vpcs.cidr(in_vpc);
        let mut routes = vec![Route {
            destination: vpc,
            target: Target::Local,
            target_name: "local".into(),
            state: RouteState::Active,
        }];
        let mut seen: HashMap<Prefix, Range<usize>> = HashMap::from([(vpc, t.name.span())]);
        for r in &t.routes {
            let destination = cx.prefix(&r.destination, "route destination")?;
            if let Some(prev) = seen.insert(destination, r.destination.span()) {
                let (line, _) = line_col(cx.src, prev.start);
                let what =
                    if destination == vpc { "the VPC's local route".to_string() } else { format!("line {line}") };
                return Err(cx.err(
                    r.destination.span(),
                    format!("route table `{}` already has a route to {destination} ({what})", t.name.get_ref()),
                    "one route per destination",
                ));
            }
            let name = r.target.get_ref().as_str();
            let target = resolve_target(&r.target, in_vpc)?;
            if let Target::Host(h) = target
                && hosts[usize::from(h)].source_dest_check
            {
                warnings.push(format!(
                    "route table `{}` sends {destination} to host `{name}` (line {}), whose source/destination check is on: AWS accepts the route and the host never gets that traffic (dropped as source_check); set source_dest_check = false on `{name}` (a NAT instance or middlebox)",
                    t.name.get_ref(),
                    line_col(cx.src, r.destination.span().start).0
                ));
            }
            if targets::inside_own_vpc(target, vpc, destination) {
                let fix = match target {
                    Target::Peering(p) => {
                        let peer = vpcs.peerings[usize::from(p)].other(in_vpc).unwrap_or(in_vpc);
                        format!("route the peer VPC's block ({}) or a part of it", vpcs.cidr(peer))
                    }
                    _ => "route the other VPCs' blocks (or 0.0.0.0/0) to the transit gateway".to_string(),
                };
                return Err(cx.err(
                    r.destination.span(),
                    format!(
                        "{destination} is inside the table's own VPC {} ({vpc}): the address would be ambiguous",
                        vpcs.name(in_vpc)
                    ),
                    fix,
                ));
            }
            if let Target::Peering(p) = target {
                let pcx = &vpcs.peerings[usize::from(p)];
                let peer = pcx.other(in_vpc).unwrap_or(in_vpc);
                if !vpcs.cidr(peer).covers(&destination) {
                    warnings.push(format!(
                        "route table `{}` sends {destination} to {} (line {}), beyond the peer VPC {} ({}): a peering carries traffic to its peer's own addresses only (not transitive), so the rest is dropped (peering_transit)",
                        t.name.get_ref(), pcx.name, line_col(cx.src, r.destination.span().start).0, vpcs.name(peer), vpcs.cidr(peer)
                    ));
                }
            }
            routes.push(Route { destination, target, target_name: name.to_string(), state: RouteState::Active });
        }
        for rf in &t.route_files {
            let target = resolve_target(&rf.target, in_vpc)?;
            let path = cx.relative(rf.path.get_ref());
            let loaded = read_route_file(&path).map_err(|e| {
                cx.err(
                    rf.path.span(),
                    format!("{}: {e}", path.display()),
                    "give a readable file of CIDR blocks, one a line (.gz allowed)",
                )
            })?;
            for destination in loaded {
                // The file's routes never override the table's own (they come first).
                if seen.contains_key(&destination) {
                    continue;
                }
                if targets::inside_own_vpc(target, vpc, destination) {
                    return Err(cx.err(
                        rf.path.span(),
                        format!(
                            "{}: {destination} is inside the table's own VPC {} ({vpc}): the address would be ambiguous",
                            path.display(),
                            vpcs.name(in_vpc)
                        ),
                        "remove it from the file",
                    ));
                }
                seen.insert(destination, rf.path.span());
                routes.push(Route {
                    destination,
                    target,
                    target_name: rf.target.get_ref().clone(),
                    state: RouteState::Active,
                });
            }
        }
        // Gateway endpoints' prefix-list routes (the service's address).
        for (i, (e, _, tables)) in gateway_endpoints.iter().enumerate() {
            if !tables.contains(&ti) {
                continue;
            }
            let destination = Prefix::host(services[e.service].address);
            if let Some(prev) = seen.get(&destination) {
                let (line, _) = line_col(cx.src, prev.start);
                return Err(cx.err(
                    t.name.span(),
                    format!(
                        "route table `{}` has a route to {destination} (line {line}), which endpoint {}'s prefix list also routes",
                        t.name.get_ref(),
                        e.id
                    ),
                    "remove that route: the endpoint's route covers the service",
                ));
            }
            routes.push(Route {
                destination,
                target: Target::Endpoint(i as u16),
                target_name: e.id.clone(),
                state: RouteState::Active,
            });
        }
        route_tables.push(RouteTable::new(t.name.get_ref(), routes));
    }
    // A subnet is public when its table sends something to the internet gateway.
    for s in &mut subnets {
        s.public = route_tables[s.route_table].routes_sorted().iter().any(|r| r.target == Target::InternetGateway);
    }
    for (n, info) in f.nat_gateways.iter().zip(&nat_infos) {
        let s = &subnets[usize::from(info.subnet)];
        if !s.public {
            return Err(cx.err(n.subnet.span(), format!("NAT gateway `{}` is in subnet `{}`, which is private (its route table has no route to the internet gateway)", info.name, s.name), "put the NAT gateway in a public subnet"));
        }
    }
    for info in &nat_infos {
        let table = &route_tables[subnets[usize::from(info.subnet)].route_table];
        for r in table.routes_sorted().iter().filter(|r| matches!(r.target, Target::Endpoint(_))) {
            warnings.push(format!(
                "route table `{}` (NAT gateway `{}`'s subnet) routes {} to gateway endpoint {}: traffic the NAT gateway translates toward it is dropped (nat_to_endpoint), since natgw's NAT gateway leaves as its Elastic IP; add the endpoint to the private subnets' route tables instead",
                table.name, info.name, r.destination, r.target_name
            ));
        }
    }
    for (h, spec) in hosts.iter().zip(&f.hosts) {
        if h.elastic_ip.is_some() && !subnets[usize::from(h.subnet)].public {
            warnings.push(format!(
                "host `{}` has an Elastic IP but subnet `{}` has no route to the internet gateway: the address will not be reachable (line {})",
                h.name,
                subnets[usize::from(h.subnet)].name,
                line_col(cx.src, spec.name.span().start).0
            ));
        }
    }

    // The internet side.
    let internet_gateway_ip = match &f.internet {
        Some(i) => {
            let gw = cx.ip(&i.gateway, "internet gateway address")?;
            let mut addresses = Vec::new();
            for a in &i.addresses {
                let (ip, len) = a
                    .get_ref()
                    .split_once('/')
                    .and_then(|(ip, l)| {
                        Some((ip.parse::<Ipv4Addr>().ok()?, l.parse::<u8>().ok().filter(|l| *l <= 32)?))
                    })
                    .ok_or_else(|| {
                        cx.err(
                            a.span(),
                            format!("`{}` is not an address with a prefix length", a.get_ref()),
                            "write e.g. \"198.51.100.10/24\"",
                        )
                    })?;
                if vpcs.inside_any(ip).is_some() {
                    return Err(cx.err(
                        a.span(),
                        format!("internet address {ip} is inside a VPC"),
                        "use a public address",
                    ));
                }
                addresses.push((ip, len));
            }
            attachments.push(Attachment {
                interface: "internet".into(),
                namespace: i.namespace.as_ref().map_or_else(|| "internet".to_string(), |n| n.get_ref().clone()),
                addresses,
                gateway: gw,
                mtu: i.mtu.unwrap_or(0),
                secondary: false,
            });
            Some(gw)
        }
        None => None,
    };

    // The VPC's resolver: an interface of its own after the internet side.
    let host_namespaces: Vec<String> = attachments.iter().map(|a| a.namespace.clone()).collect();
    let dns_keys = dns::VpcDnsKeys {
        region: f.vpc.region.as_ref(),
        support: f.vpc.enable_dns_support.as_ref(),
        hostnames: f.vpc.enable_dns_hostnames.as_ref(),
    };
    let dns = dns::compile(cx, &dns_keys, f.dns.as_ref(), vpc, &host_namespaces)?;
    if dns.support {
        attachments.push(Attachment {
            interface: "dns".into(),
            namespace: dns.namespace.clone(),
            addresses: dns.addresses.iter().map(|a| (*a, 32)).collect(),
            gateway: subnets.first().map_or(vpc.nth(1), |s| s.router()),
            mtu: 0,
            secondary: false,
        });
    }

    // Gateway endpoints' doors: an interface each, after the resolver's; the
    // door holds the service's public address and routes the VPC back to us.
    for (e, _, _) in &gateway_endpoints {
        attachments.push(Attachment {
            interface: e.id.clone(),
            namespace: e.namespace(None),
            addresses: vec![(services[e.service].address, 32)],
            gateway: vpc.nth(1),
            mtu: 0,
            secondary: false,
        });
    }

    let taken: Vec<(String, String)> = attachments.iter().map(|a| (a.namespace.clone(), a.interface.clone())).collect();
    endpoints::check_doors(cx, &f.services, &services, &taken)?;

    // Security groups, once every host is known (a group's members).
    let mut host_groups: Vec<Option<Spanned<Vec<S>>>> = f.hosts.iter().map(|h| h.security_groups.clone()).collect();
    host_groups.extend(endpoint_groups);
    let host_vpcs: Vec<VpcId> = hosts.iter().map(|h| h.vpc).collect();
    let security_groups = match groups::compile(cx, &vpcs, &f.security_groups, &host_groups, &host_vpcs)? {
        Some((groups, per_host)) => {
            for (h, g) in hosts.iter_mut().zip(per_host) {
                h.groups = g;
            }
            Some(groups)
        }
        None => None,
    };

    let flow_logs = match &f.flow_logs {
        None => None,
        Some(fl) => {
            let interval = fl.interval.as_ref().map_or(600, |i| *i.get_ref());
            if let Some(i) = &fl.interval
                && !(1..=600).contains(i.get_ref())
            {
                return Err(cx.err(
                    i.span(),
                    format!("a flow log interval of {} s", i.get_ref()),
                    "AWS aggregates over 600 or 60 seconds; a lab may use 1 to 600",
                ));
            }
            let format = match &fl.format {
                Some(s) => crate::flowlog::Format::parse(s.get_ref())
                    .map_err(|e| cx.err(s.span(), e, "see docs/FLOW-LOGS.md for the fields"))?,
                None => crate::flowlog::Format::parse(crate::flowlog::DEFAULT_FORMAT).expect("the default format"),
            };
            let account_id = fl.account_id.as_ref().map_or_else(|| "123456789012".to_string(), |a| a.get_ref().clone());
            if account_id.len() != 12 || !account_id.bytes().all(|b| b.is_ascii_digit()) {
                let span = fl.account_id.as_ref().map_or(fl.path.span(), |a| a.span());
                return Err(cx.err(
                    span,
                    format!("account id `{account_id}` is not 12 digits"),
                    "write e.g. \"123456789012\"",
                ));
            }
            Some(FlowLogSettings { path: cx.relative(fl.path.get_ref()), interval, format, account_id })
        }
    };

    let g = &f.gateway;
    let gateway = GatewaySettings {
        workers: g.workers.unwrap_or(0),
        mtu: g.mtu.unwrap_or(1500).clamp(576, 65535),
        offload: g.offload.unwrap_or(true),
        icmp_rate: g.icmp_rate.unwrap_or(1000),
        icmp_burst: g.icmp_burst.unwrap_or(100),
        mss_clamp: g.mss_clamp.unwrap_or(true),
        flow_cache: g.flow_cache.unwrap_or(true),
        busy_poll_us: g.busy_poll_us.unwrap_or(0),
        steering: g.steering.unwrap_or_default(),
        txqueuelen: g.txqueuelen.unwrap_or(500),
    };
    // Links without their own MTU take the gateway's; none below IPv4's 576.
    for a in &mut attachments {
        a.mtu = if a.mtu == 0 { gateway.mtu } else { a.mtu.clamp(576, 65535) };
    }
    let parts = TopologyParts {
        vpc_cidrs: vpcs.infos.iter().map(|v| v.cidr).collect(),
        vpcs: vpcs.infos.clone(),
        peerings: vpcs.peerings.clone(),
        transit_gateways: tgws,
        subnets,
        hosts,
        route_tables,
        acls,
        nat_gateways: nat_infos,
        internet_gateway_ip,
        mtu: gateway.mtu,
        interface_mtus: attachments.iter().map(|a| a.mtu).collect(),
        security_groups,
        dns: Some(crate::pipeline::topology::DnsParts { addresses: dns.addresses, serving: dns.support }),
        endpoints: gateway_endpoints.iter().map(|(e, pl, _)| (e.id.clone(), (*pl).clone())).collect(),
    };
    let name = vpcs.name(VpcId::FIRST).to_string();
    let id = vpcs.infos[0].id.clone();
    Ok(Vpc {
        table_vpcs,
        name,
        id,
        services,
        endpoints: vpc_endpoints,
        parts,
        nats,
        attachments,
        gateway,
        main_table,
        igw_name,
        warnings,
        flow_logs,
        dns,
        conntrack_timeouts: ct_profiles.extra(),
        idle_eips: Vec::new(),
        runtime_eips: Vec::new(),
    })
}

/// Each VPC's connection tracking zone, from the parts that decide it.
fn zones(p: &TopologyParts) -> Vec<u16> {
    crate::pipeline::topology::zones(&p.vpcs, &p.peerings, &p.transit_gateways)
}

/// Checks a name that is an AWS id with a fixed prefix (`pcx-`, `tgw-`,
/// `tgw-attach-`), 32 characters at most. `what` names the kind (`peering`),
/// `an_id` says what it is not (`a peering id`).
fn prefixed_name(cx: &Ctx<'_>, n: &S, prefix: &str, what: &str, an_id: &str, example: &str) -> Result<(), ConfigError> {
    let name = n.get_ref();
    if name.starts_with(prefix) && name_ok(name) {
        return Ok(());
    }
    Err(cx.err(
        n.span(),
        format!("{what} name `{name}` is not {an_id}"),
        format!("write e.g. \"{example}\" ({prefix} and up to {} letters, digits, `-` or `_`)", 32 - prefix.len()),
    ))
}

fn list<V>(m: &HashMap<String, V>) -> String {
    let mut v: Vec<&String> = m.keys().collect();
    v.sort();
    v.into_iter().map(String::as_str).collect::<Vec<_>>().join(", ")
}

fn rule(cx: &Ctx<'_>, r: &RuleSection) -> Result<AclRule, ConfigError> {
    let n = *r.rule.get_ref();
    if !(1..=32766).contains(&n) {
        return Err(cx.err(
            r.rule.span(),
            format!("rule number {n} is out of range"),
            "AWS rule numbers run from 1 to 32766",
        ));
    }
    let action = match r.action.get_ref().to_ascii_lowercase().as_str() {
        "allow" => RuleAction::Allow,
        "deny" => RuleAction::Deny,
        other => {
            return Err(cx.err(
                r.action.span(),
                format!("action `{other}` is neither allow nor deny"),
                "write \"allow\" or \"deny\"",
            ));
        }
    };
    let protocol = rule_protocol(cx, &r.protocol)?;
    let cidr = cx.prefix(&r.cidr, "rule CIDR")?;
    let ports = r.ports.as_ref().map(|p| rule_ports(cx, p, protocol)).transpose()?;
    if (r.icmp_type.is_some() || r.icmp_code.is_some()) && protocol != RuleProtocol::Number(1) {
        return Err(cx.err(
            r.protocol.span(),
            "icmp_type and icmp_code apply to ICMP rules only",
            "set protocol = \"icmp\"",
        ));
    }
    Ok(AclRule { number: n as u16, action, protocol, cidr, ports, icmp_type: r.icmp_type, icmp_code: r.icmp_code })
}

/// A rule's protocol (network ACLs and security groups): a name or a number.
fn rule_protocol(cx: &Ctx<'_>, p: &S) -> Result<RuleProtocol, ConfigError> {
    Ok(match p.get_ref().to_ascii_lowercase().as_str() {
        "all" | "-1" => RuleProtocol::All,
        "tcp" => RuleProtocol::Number(6),
        "udp" => RuleProtocol::Number(17),
        "icmp" => RuleProtocol::Number(1),
        other => other.parse::<u8>().map(RuleProtocol::Number).map_err(|_| {
            cx.err(
                p.span(),
                format!("protocol `{other}` is not known"),
                "write \"all\", \"tcp\", \"udp\", \"icmp\" or a protocol number",
            )
        })?,
    })
}

/// A rule's port range, which only TCP and UDP rules have.
fn rule_ports(cx: &Ctx<'_>, p: &S, protocol: RuleProtocol) -> Result<(u16, u16), ConfigError> {
    if !matches!(protocol, RuleProtocol::Number(6 | 17)) {
        return Err(cx.err(
            p.span(),
            "a port range applies to TCP and UDP rules only",
            "remove `ports`, or set protocol = \"tcp\" or \"udp\"",
        ));
    }
    port_range(p.get_ref()).ok_or_else(|| {
        cx.err(p.span(), format!("`{}` is not a port range", p.get_ref()), "write \"443\" or \"1024-65535\"")
    })
}

fn nat_config(cx: &Ctx<'_>, o: &NatOptions, public_ips: Vec<Ipv4Addr>) -> Result<NatConfig, ConfigError> {
    let profile = o.profile.unwrap_or_default();
    let mut t = Timeouts::profile(profile);
    let ov = &o.timeouts;
    t.udp = ov.udp.unwrap_or(t.udp);
    t.tcp_established = ov.tcp_established.unwrap_or(t.tcp_established);
    t.tcp_opening = ov.tcp_opening.unwrap_or(t.tcp_opening);
    t.tcp_closing = ov.tcp_closing.unwrap_or(t.tcp_closing);
    t.tcp_reset = ov.tcp_reset.unwrap_or(t.tcp_reset);
    t.icmp = ov.icmp.unwrap_or(t.icmp);
    t.tcp_rst_on_expired = ov.tcp_rst_on_expired.unwrap_or(t.tcp_rst_on_expired);
    let range = match &o.port_range {
        Some(p) => {
            let (lo, hi) = port_range(p.get_ref()).ok_or_else(|| {
                cx.err(p.span(), format!("`{}` is not a port range", p.get_ref()), "write e.g. \"1024-65535\"")
            })?;
            if lo == 0 {
                return Err(cx.err(p.span(), "port 0 cannot be used", "start the range at 1 or above"));
            }
            lo..=hi
        }
        None => 1024..=65535,
    };
    let mapping = o.mapping.as_ref().map_or_else(Mapping::default, |m| *m.get_ref());
    let filtering = o.filtering.as_ref().map_or_else(Filtering::default, |f| *f.get_ref());
    // RFC 4787 §5: a filter looser than the mapping lets in what the mapping
    // would never have paired with the internal endpoint.
    let order = |m: Mapping| match m {
        Mapping::EndpointIndependent => 0,
        Mapping::AddressDependent => 1,
        Mapping::AddressAndPortDependent => 2,
    };
    let forder = |f: Filtering| match f {
        Filtering::EndpointIndependent => 0,
        Filtering::AddressDependent => 1,
        Filtering::AddressAndPortDependent => 2,
    };
    if forder(filtering) < order(mapping) {
        let span = o.filtering.as_ref().map_or(0..0, |f| f.span());
        return Err(cx.err(
            span,
            format!("filtering {filtering:?} is looser than mapping {mapping:?}: an inbound packet could reach a mapping made for another destination"),
            "use a filtering behaviour at least as strict as the mapping (e.g. mapping address-dependent with filtering address-dependent or address-and-port-dependent)",
        ));
    }
    let overlapping = o.port_overlapping.as_ref().is_some_and(|b| *b.get_ref());
    if overlapping && mapping != Mapping::AddressAndPortDependent {
        let span = o.port_overlapping.as_ref().map_or(0..0, |b| b.span());
        return Err(cx.err(
            span,
            "port overlapping needs address-and-port-dependent mapping: with endpoint-independent mapping one external port stands for one internal endpoint towards every destination",
            "set mapping = \"address-and-port-dependent\" (and filtering = \"address-and-port-dependent\"), or remove port_overlapping",
        ));
    }
    if let Some(b) = &o.port_block {
        let size = *b.get_ref();
        if overlapping {
            return Err(cx.err(
                b.span(),
                "port blocks and port overlapping exclude each other",
                "keep one of port_block and port_overlapping",
            ));
        }
        if !(1..=4096).contains(&size) {
            return Err(cx.err(
                b.span(),
                format!("port block size {size} is out of range"),
                "use a size from 1 to 4096, e.g. 64",
            ));
        }
        if u32::from(size) > u32::from(*range.end()) - u32::from(*range.start()) + 1 {
            return Err(cx.err(
                b.span(),
                format!("a block of {size} ports does not fit the port range"),
                "use a smaller block or a wider port_range",
            ));
        }
    }
    let defaults = NatConfig::default();
    Ok(NatConfig {
        public_ips,
        ports: PortPolicy {
            range,
            low_range: 1..=1023,
            keep_class: o.keep_port_class.unwrap_or(true),
            keep_parity: o.port_parity.unwrap_or(true),
            // AWS rewrites ports; the RFC profile keeps them when free, as Linux does.
            preserve: o.port_preservation.unwrap_or(profile == Profile::Rfc),
        },
        timeouts: t,
        mapping,
        filtering,
        hold_down_secs: o.hold_down.unwrap_or(defaults.hold_down_secs),
        max_sessions: o.max_sessions.unwrap_or(defaults.max_sessions),
        max_ports_per_subscriber: o.max_ports_per_host.unwrap_or(defaults.max_ports_per_subscriber),
        max_sessions_per_subscriber: o.max_sessions_per_host.unwrap_or(defaults.max_sessions_per_subscriber),
        fair_share: o.fair_share.unwrap_or(defaults.fair_share),
        // netfilter's early drop, as the kernel's masquerade does; the RFC
        // profile keeps RFC 6888 REQ-11 (d) to the letter.
        early_drop: o.early_drop.unwrap_or(profile == Profile::Aws),
        exhaustion_reply: o.on_exhaustion.unwrap_or_default(),
        inbound_refresh: true,
        seed: o.seed,
        unsolicited_syn: o.unsolicited_syn.unwrap_or_default(),
        port_overlapping: overlapping,
        port_block: o.port_block.as_ref().map(|b| *b.get_ref()),
        log_mappings: o.log_mappings.unwrap_or(false),
    })
}

impl Vpc {
    /// The names a route table's routes point to, for `natgw routes`.
    pub fn subnets_of_table(&self, table: usize) -> Vec<String> {
        self.parts.subnets.iter().filter(|s| s.route_table == table).map(|s| s.name.clone()).collect()
    }

    /// The lab's own names: every host, `<host>-public` for its Elastic IP,
    /// the NAT gateways (their first Elastic IP), the internet namespace.
    pub fn lab_names(&self) -> Vec<(Ipv4Addr, String)> {
        let mut v: Vec<(Ipv4Addr, String)> = self.parts.hosts.iter().map(|h| (h.ip, h.name.clone())).collect();
        for h in &self.parts.hosts {
            if let Some(e) = h.elastic_ip {
                v.push((e, format!("{}-public", h.name)));
            }
        }
        for n in &self.parts.nat_gateways {
            if let Some(e) = n.public_ips.first() {
                v.push((*e, n.name.clone()));
            }
        }
        for a in self.attachments.iter().filter(|a| a.interface == "internet") {
            if let Some((ip, _)) = a.addresses.first() {
                v.push((*ip, a.namespace.clone()));
            }
        }
        v
    }

    /// The attachment of the VPC's resolver, if it answers.
    pub fn dns_attachment(&self) -> Option<&Attachment> {
        self.attachments.iter().find(|a| a.interface == "dns")
    }

    /// Namespaces this VPC attaches to, without duplicates, in order.
    pub fn namespaces(&self) -> Vec<String> {
        let mut seen = HashSet::new();
        self.attachments.iter().filter(|a| seen.insert(a.namespace.clone())).map(|a| a.namespace.clone()).collect()
    }
}

impl Vpc {
    /// The gateway for this VPC: its topology and one NAT gateway state per
    /// NAT gateway.
    pub fn build(&self) -> std::sync::Arc<crate::pipeline::Gateway> {
        self.build_with(false)
    }

    /// [`Vpc::build`], optionally in route-only mode (the benchmark's ceiling).
    pub fn build_with(&self, route_only: bool) -> std::sync::Arc<crate::pipeline::Gateway> {
        let topo = crate::pipeline::Topology::new(self.parts.clone());
        let nats =
            self.nats.iter().map(|(n, c)| std::sync::Arc::new(crate::nat::NatGateway::new(n, c.clone()))).collect();
        let settings = crate::pipeline::Settings {
            icmp_rate: self.gateway.icmp_rate,
            icmp_burst: self.gateway.icmp_burst,
            mss_clamp: self.gateway.mss_clamp,
            flow_cache: self.gateway.flow_cache,
            route_only,
            flow_log_interval: self.flow_logs.as_ref().map(|f| f.interval),
            conntrack_timeouts: self.conntrack_timeouts.clone(),
            ..crate::pipeline::Settings::default()
        };
        crate::pipeline::Gateway::new(topo, nats, settings)
    }
}

/// The minimal form: one private namespace, one public namespace, one public
/// address, from three command-line values. Returns the equivalent VPC file,
/// so the user can start from it. `private` and `public` are `NS:ADDR/LEN`.
pub fn minimal(private: &str, public: &str, public_ip: &str) -> Result<String, String> {
    let split = |s: &str, what: &str| -> Result<(String, Ipv4Addr, u8), String> {
        let (ns, cidr) = s
            .split_once(':')
            .ok_or_else(|| format!("--{what} `{s}`: write NAMESPACE:ADDRESS/LEN, e.g. app:10.0.1.10/24"))?;
        let (a, l) = cidr
            .split_once('/')
            .ok_or_else(|| format!("--{what} `{s}`: the address needs a prefix length, e.g. 10.0.1.10/24"))?;
        let a: Ipv4Addr = a.parse().map_err(|_| format!("--{what} `{s}`: `{a}` is not an IPv4 address"))?;
        let l: u8 = l.parse().ok().filter(|l| *l <= 32).ok_or_else(|| format!("--{what} `{s}`: bad prefix length"))?;
        if ns.is_empty() || !name_ok(ns) {
            return Err(format!("--{what} `{s}`: bad namespace name"));
        }
        Ok((ns.to_string(), a, l))
    };
    let (pns, pip, plen) = split(private, "private")?;
    let (ons, oip, olen) = split(public, "public")?;
    let eip: Ipv4Addr = public_ip.parse().map_err(|_| format!("--public-ip `{public_ip}` is not an IPv4 address"))?;
    if !(16..=28).contains(&plen) {
        return Err(format!(
            "--private: a /{plen} network; the private side must be /17 to /28 (a VPC is at most /16 and needs room for the NAT gateway)"
        ));
    }
    if plen == 16 {
        return Err("--private: use at most a /17, so the NAT gateway's subnet fits in the /16 VPC".into());
    }
    let private_net = Prefix::new(pip, plen);
    let vpc = Prefix::new(pip, 16);
    // The NAT gateway's public subnet: the last /28 of the VPC that is not the private network.
    let public_net = [vpc.size() / 16 - 1, 0]
        .into_iter()
        .map(|k| Prefix::new(vpc.nth(k * 16), 28))
        .find(|p| !p.overlaps(&private_net))
        .ok_or("no room for the NAT gateway's subnet")?;
    let outside = Prefix::new(oip, olen);
    let gw = if oip == outside.nth(1) { Ipv4Addr::from(u32::from(outside.last()) - 1) } else { outside.nth(1) };
    Ok(format!(
        r#"# Generated by natgw from --private {private} --public {public} --public-ip {public_ip}
[vpc]
name = "minimal"
cidr = "{vpc}"

[internet]
gateway = "{gw}"
addresses = ["{oip}/{olen}"]
namespace = "{ons}"

[[subnets]]
name = "private"
cidr = "{private_net}"
route_table = "private"

[[subnets]]
name = "public"
cidr = "{public_net}"
route_table = "public"

[[hosts]]
name = "{pns}"
subnet = "private"
ip = "{pip}"
namespace = "{pns}"

[[nat_gateways]]
name = "nat"
subnet = "public"
private_ip = "{nat_ip}"
elastic_ips = ["{eip}"]

[[route_tables]]
name = "public"
routes = [ {{ destination = "0.0.0.0/0", target = "igw" }} ]

[[route_tables]]
name = "private"
main = true
routes = [ {{ destination = "0.0.0.0/0", target = "nat" }} ]
"#,
        nat_ip = public_net.nth(4),
    ))
}

/// Why a change to a running VPC was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChangeError {
    #[error("no route table named `{0}`")]
    NoTable(String),
    #[error("{0}")]
    BadDestination(String),
    #[error("route target `{0}` does not exist")]
    NoTarget(String),
    #[error("{0}")]
    BadTarget(String),
    #[error("route table `{table}` already has a route to {destination}")]
    Exists { table: String, destination: String },
    #[error("route table `{table}` has no route to {destination}")]
    NoRoute { table: String, destination: String },
    #[error("the local route cannot be changed")]
    Local,
    #[error("no NAT gateway named `{0}`")]
    NoNatGateway(String),
    /// An Elastic IP request refused, with AWS's error code.
    #[error("{0}")]
    Eip(String),
    #[error(
        "{0}: a reload changes route tables, network ACLs, security groups and hosts' groups, Elastic IPs and source/destination checks; restart natgw for this"
    )]
    Reload(String),
}

impl Vpc {
    /// The connection tracking timeouts of profile `p`.
    pub fn timeouts_of(&self, p: u8) -> Timeouts {
        match p {
            0 => Timeouts::security_groups(),
            n => self.conntrack_timeouts.get(usize::from(n) - 1).copied().unwrap_or_else(Timeouts::security_groups),
        }
    }

    fn table_index(&self, table: &str) -> Result<usize, ChangeError> {
        self.parts
            .route_tables
            .iter()
            .position(|t| t.name == table)
            .ok_or_else(|| ChangeError::NoTable(table.to_string()))
    }

    /// A target by name for a route of table `table` (the resolver the
    /// compiler uses, on the running parts).
    fn target_named(&self, table: usize, name: &str) -> Result<Target, ChangeError> {
        let vpc_names: Vec<String> = self.parts.vpcs.iter().map(|v| v.name.clone()).collect();
        let targets = Targets {
            igw_name: &self.igw_name,
            internet: self.parts.internet_gateway_ip.is_some(),
            nats: &self.parts.nat_gateways,
            hosts: &self.parts.hosts,
            subnets: &self.parts.subnets,
            peerings: &self.parts.peerings,
            tgws: &self.parts.transit_gateways,
            vpc_names: &vpc_names,
        };
        let vpc = self.table_vpcs.get(table).copied().unwrap_or(VpcId::FIRST);
        targets.resolve(name, vpc).map_err(|e| match e {
            TargetError::Unknown { name, .. } => ChangeError::NoTarget(name),
            TargetError::Local => ChangeError::Local,
            other => ChangeError::BadTarget(format!("{other}: {}", other.fix())),
        })
    }

    fn rebuild_table(&mut self, i: usize, routes: Vec<Route>) {
        let name = self.parts.route_tables[i].name.clone();
        self.parts.route_tables[i] = RouteTable::new(&name, routes);
    }

    /// CreateRoute: adds `destination -> target` to a table.
    pub fn add_route(&mut self, table: &str, destination: &str, target: &str) -> Result<(), ChangeError> {
        let i = self.table_index(table)?;
        let d = Prefix::parse_canonical(destination).map_err(|e| ChangeError::BadDestination(e.to_string()))?;
        let t = self.target_named(i, target)?;
        let vpc = self.table_vpcs.get(i).and_then(|v| self.parts.vpcs.get(v.index()));
        if let Some(v) = vpc
            && targets::inside_own_vpc(t, v.cidr, d)
        {
            return Err(ChangeError::BadTarget(format!(
                "{d} is inside the table's own VPC {} ({}): the address would be ambiguous; route another VPC's block",
                v.name, v.cidr
            )));
        }
        let mut routes = self.parts.route_tables[i].routes().to_vec();
        if routes.iter().any(|r| r.destination == d) {
            return Err(ChangeError::Exists { table: table.to_string(), destination: d.to_string() });
        }
        routes.push(Route { destination: d, target: t, target_name: target.to_string(), state: RouteState::Active });
        self.rebuild_table(i, routes);
        Ok(())
    }

    /// DeleteRoute.
    pub fn delete_route(&mut self, table: &str, destination: &str) -> Result<(), ChangeError> {
        let i = self.table_index(table)?;
        let d = Prefix::parse_canonical(destination).map_err(|e| ChangeError::BadDestination(e.to_string()))?;
        let mut routes = self.parts.route_tables[i].routes().to_vec();
        let Some(at) = routes.iter().position(|r| r.destination == d) else {
            return Err(ChangeError::NoRoute { table: table.to_string(), destination: d.to_string() });
        };
        if routes[at].target == Target::Local {
            return Err(ChangeError::Local);
        }
        routes.remove(at);
        self.rebuild_table(i, routes);
        Ok(())
    }

    /// Takes `new`'s route tables, network ACLs, security groups and hosts'
    /// groups and Elastic IPs, when nothing else differs: the interfaces,
    /// namespaces and addresses, the NAT gateways and the gateway settings
    /// belong to the running process. A NAT gateway deleted while running
    /// stays deleted.
    pub fn reload(&mut self, mut new: Vpc) -> Result<(), ChangeError> {
        let refuse = |what: &str| Err(ChangeError::Reload(what.to_string()));
        // A secondary interface's namespace is where `natgw eni` put it, not
        // necessarily the file's.
        let placed = |v: &Vpc| -> Vec<Attachment> {
            v.attachments
                .iter()
                .cloned()
                .map(|mut a| {
                    if a.secondary {
                        a.namespace.clear();
                    }
                    a
                })
                .collect()
        };
        if placed(&new) != placed(self) {
            return refuse("the interfaces (hosts, namespaces, addresses or MTUs) differ");
        }
        if new.gateway != self.gateway {
            return refuse("the [gateway] settings differ");
        }
        if new.flow_logs != self.flow_logs {
            return refuse("the [flow_logs] section differs");
        }
        let profiles =
            |v: &Vpc| -> Vec<Timeouts> { v.parts.hosts.iter().map(|h| v.timeouts_of(h.ct_profile)).collect() };
        if profiles(&new) != profiles(self) {
            return refuse("the hosts' connection_tracking timeouts differ");
        }
        if new.dns.rate_limit != self.dns.rate_limit {
            return refuse("the [dns] rate_limit differs");
        }
        // Flows are tracked per zone (VPCs joined by peerings or transit
        // gateways share one): the VPCs and how they are joined stay as the
        // running trackers know them.
        let vpcs = |v: &Vpc| -> Vec<(String, Prefix, String)> {
            v.parts.vpcs.iter().map(|x| (x.name.clone(), x.cidr, x.id.clone())).collect()
        };
        let subnet_vpcs =
            |v: &Vpc| -> Vec<(String, VpcId)> { v.parts.subnets.iter().map(|s| (s.name.clone(), s.vpc)).collect() };
        if vpcs(&new) != vpcs(self) || subnet_vpcs(&new) != subnet_vpcs(self) || zones(&new.parts) != zones(&self.parts)
        {
            return refuse(
                "the VPCs, their subnets, or which VPCs peerings and transit gateways join differ: flows are tracked per set of joined VPCs as the gateway started (restart it)",
            );
        }
        if new.services != self.services || new.id != self.id {
            return refuse("the [[services]] (or the VPC id) differ: their doors run as they started");
        }
        // A gateway endpoint's route tables may change (ModifyVpcEndpoint);
        // the rest of an endpoint belongs to its running door.
        let endpoint_id = |v: &Vpc| -> Vec<EndpointSettings> {
            v.endpoints
                .iter()
                .cloned()
                .map(|mut e| {
                    match &mut e.kind {
                        EndpointKind::Gateway { route_tables, .. } => route_tables.clear(),
                        // Private DNS is the resolver's, which a reload rebuilds.
                        EndpointKind::Interface { private_dns, .. } => *private_dns = false,
                    }
                    e
                })
                .collect()
        };
        if endpoint_id(&new) != endpoint_id(self) {
            return refuse("the [[endpoints]] differ beyond gateway endpoints' route tables and private DNS");
        }
        let nat_id = |v: &Vpc| -> Vec<String> {
            v.parts
                .nat_gateways
                .iter()
                .zip(&v.nats)
                .map(|(i, (_, c))| format!("{} {} {} {:?}", i.name, i.subnet, i.private_ip, c))
                .collect()
        };
        if nat_id(&new) != nat_id(self) {
            return refuse("the NAT gateways differ");
        }
        // A host's source/destination check may change (ModifyInstanceAttribute).
        let old_hosts = self.parts.hosts.iter().map(|h| (&h.name, h.subnet, h.ip));
        if !old_hosts.eq(new.parts.hosts.iter().map(|h| (&h.name, h.subnet, h.ip))) {
            return refuse("the hosts differ");
        }
        for (old, n) in self.parts.nat_gateways.iter().zip(&new.parts.nat_gateways.clone()) {
            if old.public_ips.is_empty() {
                new.delete_nat_gateway(&n.name)?;
            }
        }
        // Addresses allocated while running stay allocated (idle unless the
        // file now uses them); the hosts' associations are the file's again.
        for a in &self.runtime_eips {
            if !new.allocated(*a) {
                new.idle_eips.push(*a);
            }
        }
        new.runtime_eips = self.runtime_eips.clone();
        // Secondary interfaces stay where `natgw eni` moved them.
        for (n, o) in new.attachments.iter_mut().zip(&self.attachments) {
            if o.secondary {
                n.namespace = o.namespace.clone();
            }
        }
        for (nh, oh) in new.parts.hosts.iter_mut().zip(&self.parts.hosts) {
            nh.detached = oh.detached;
        }
        *self = new;
        Ok(())
    }

    /// DeleteNatGateway: its Elastic IPs go, and routes to it become blackholes.
    pub fn delete_nat_gateway(&mut self, name: &str) -> Result<(), ChangeError> {
        let n = self.parts.nat_gateways.iter().position(|g| g.name == name && !g.public_ips.is_empty());
        let n = n.ok_or_else(|| ChangeError::NoNatGateway(name.to_string()))?;
        // AWS keeps a deleted NAT gateway's Elastic IPs allocated, idle.
        let freed = std::mem::take(&mut self.parts.nat_gateways[n].public_ips);
        self.idle_eips.extend(freed);
        for i in 0..self.parts.route_tables.len() {
            let mut routes = self.parts.route_tables[i].routes().to_vec();
            let mut changed = false;
            for r in &mut routes {
                if r.target == Target::NatGateway(n as u16) {
                    r.state = RouteState::Blackhole;
                    changed = true;
                }
            }
            if changed {
                self.rebuild_table(i, routes);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_lab_loads() {
        let v = parse("default-lab.toml", DEFAULT_LAB).unwrap();
        assert_eq!(v.parts.hosts.len(), 2);
        assert_eq!(v.nats.len(), 1);
        assert_eq!(v.nats[0].1.public_ips, vec![Ipv4Addr::new(203, 0, 113, 5)]);
        assert!(v.parts.subnets.iter().any(|s| s.name == "public" && s.public));
        assert!(v.parts.subnets.iter().any(|s| s.name == "private" && !s.public));
        // app, bastion, the internet, the VPC's resolver.
        assert_eq!(v.attachments.len(), 4);
        assert!(v.warnings.is_empty(), "{:?}", v.warnings);
    }

    #[test]
    fn a_reload_takes_routes_but_not_new_connection_tracking_timeouts() {
        let mut v = parse("lab.toml", DEFAULT_LAB).unwrap();
        let same = parse("lab.toml", DEFAULT_LAB).unwrap();
        assert_eq!(v.reload(same), Ok(()));
        let own = DEFAULT_LAB.replacen(
            "ip = \"10.0.1.10\"",
            "ip = \"10.0.1.10\"\nconnection_tracking = { udp_timeout = 60 }",
            1,
        );
        let new = parse("lab.toml", &own).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(new.timeouts_of(new.parts.hosts.iter().find(|h| h.name == "app").unwrap().ct_profile).udp, 60);
        let Err(ChangeError::Reload(why)) = v.reload(new) else { panic!("reloaded new timeouts") };
        assert!(why.contains("connection_tracking"), "{why}");
    }

    #[test]
    fn the_vpc_resolver_as_aws_configures_it() {
        let v = parse("default-lab.toml", DEFAULT_LAB).unwrap();
        assert_eq!(v.dns.addresses, [Ipv4Addr::new(10, 0, 0, 2), Ipv4Addr::new(169, 254, 169, 253)]);
        assert!(v.dns.support && v.dns.hostnames);
        assert_eq!(v.dns.rate_limit, 1024);
        let a = v.dns_attachment().unwrap();
        assert_eq!((a.namespace.as_str(), a.addresses.len()), ("dns", 2));
        let z = zone_of(&v);
        let app = Ipv4Addr::new(10, 0, 1, 10);
        assert_eq!(z.a("ip-10-0-1-10.ap-northeast-2.compute.internal"), Some(&[app][..]));
        assert_eq!(z.ptr(app), Some("ip-10-0-1-10.ap-northeast-2.compute.internal"));
        assert_eq!(z.a("app"), Some(&[app][..]));
        // Inside the VPC, the bastion's public name answers its private address.
        let bastion = Ipv4Addr::new(10, 0, 0, 10);
        assert_eq!(z.a("ec2-203-0-113-10.ap-northeast-2.compute.amazonaws.com"), Some(&[bastion][..]));
        // Hostnames off: no public names; support off: no resolver interface.
        let off = with("enable_dns_hostnames = true", "enable_dns_hostnames = false").unwrap();
        assert_eq!(zone_of(&off).a("ec2-203-0-113-10.ap-northeast-2.compute.amazonaws.com"), None);
        let none =
            with("enable_dns_support = true\nenable_dns_hostnames = true", "enable_dns_support = false").unwrap();
        assert!(none.dns_attachment().is_none() && none.attachments.len() == 3);
        let t = crate::pipeline::Topology::new(none.parts.clone());
        assert!(t.dns.is_some_and(|d| d.interface.is_none() && d.is_resolver(u32::from(Ipv4Addr::new(10, 0, 0, 2)))));
    }

    #[test]
    fn dns_settings_are_checked() {
        let e = with("enable_dns_support = true", "enable_dns_support = false").unwrap_err();
        assert!(e.message.contains("needs enable_dns_support") && e.fix.contains("enable_dns_support = true"), "{e}");
        assert_eq!(e.line, line_of("enable_dns_hostnames = true"));
        let e = with("region = \"ap-northeast-2\"", "region = \"Seoul\"").unwrap_err();
        assert!(e.message.contains("not a region") && e.fix.contains("ap-northeast-2"), "{e}");
        let rec = "\n[dns]\nrate_limit = 0\nrecords = [{ name = \"db.corp.internal\", address = \"10.0.1.20\" }]\n";
        let v = parse("lab.toml", &format!("{DEFAULT_LAB}{rec}")).unwrap();
        assert_eq!(v.dns.rate_limit, 0);
        assert_eq!(zone_of(&v).a("DB.corp.internal."), Some(&[Ipv4Addr::new(10, 0, 1, 20)][..]));
        let bad = "\n[dns]\nrecords = [{ name = \"bad..name\", address = \"10.0.1.20\" }]\n";
        let e = parse("lab.toml", &format!("{DEFAULT_LAB}{bad}")).unwrap_err();
        assert!(e.message.contains("not a DNS name"), "{e}");
        let clash = "\n[dns]\nnamespace = \"app\"\n";
        let e = parse("lab.toml", &format!("{DEFAULT_LAB}{clash}")).unwrap_err();
        assert!(e.message.contains("also a host's"), "{e}");
    }

    fn with(replace: &str, by: &str) -> Result<Vpc, ConfigError> {
        assert!(DEFAULT_LAB.contains(replace), "fixture text `{replace}` not found");
        parse("lab.toml", &DEFAULT_LAB.replacen(replace, by, 1))
    }

    fn line_of(needle: &str) -> usize {
        DEFAULT_LAB.lines().position(|l| l.contains(needle)).unwrap() + 1
    }

    #[test]
    fn errors_name_the_line_and_the_fix() {
        let e = with("cidr = \"10.0.1.0/24\"", "cidr = \"10.0.1.5/24\"").unwrap_err();
        assert_eq!(e.line, line_of("cidr = \"10.0.1.0/24\""));
        assert!(e.message.contains("host bits"), "{e}");
        assert!(e.fix.contains("10.0.1.0/24"), "{e}");
        assert!(e.to_string().starts_with("lab.toml:"));
    }

    #[test]
    fn refuses_what_aws_refuses() {
        let cases = [
            ("cidr = \"10.0.0.0/16\"", "cidr = \"10.0.0.0/8\"", "/16 to /28"),
            ("cidr = \"10.0.1.0/24\"", "cidr = \"10.1.1.0/24\"", "not inside the VPC"),
            ("cidr = \"10.0.1.0/24\"", "cidr = \"10.0.0.128/25\"", "overlaps"),
            ("ip = \"10.0.1.10\"", "ip = \"10.0.1.3\"", "reserved"),
            ("ip = \"10.0.1.10\"", "ip = \"10.0.1.255\"", "reserved"),
            ("ip = \"10.0.1.10\"", "ip = \"10.0.0.10\"", "not in subnet"),
            ("target = \"nat-1\"", "target = \"nat-9\"", "does not exist"),
            ("subnet = \"public\"\nprivate_ip", "subnet = \"private\"\nprivate_ip", "private"),
            ("elastic_ips = [\"203.0.113.5\"]", "elastic_ips = [\"203.0.113.10\"]", "already used"),
            ("[vpc]", "[vpc]\nbogus = 1", "unknown field"),
        ];
        for (a, b, want) in cases {
            let e = with(a, b).unwrap_err();
            assert!(e.message.contains(want), "{a} -> {b}: {e}");
            assert!(e.line > 0, "{e}");
        }
    }

    #[test]
    fn steering_is_auto_unless_asked_and_checked() {
        assert_eq!(parse("x.toml", DEFAULT_LAB).unwrap().gateway.steering, Steering::Auto);
        let v = with("[vpc]", "[gateway]\nsteering = \"cpu\"\n\n[vpc]").unwrap();
        assert_eq!(v.gateway.steering, Steering::Cpu);
        let v = with("[vpc]", "[gateway]\nsteering = \"flow\"\n\n[vpc]").unwrap();
        assert_eq!(v.gateway.steering, Steering::Flow);
        let e = with("[vpc]", "[gateway]\nsteering = \"core\"\n\n[vpc]").unwrap_err();
        assert!(e.message.contains("flow") && e.message.contains("cpu"), "{e}");
        assert_eq!(e.line, line_of("[vpc]") + 1, "{e}");
    }

    #[test]
    fn acl_rules_are_checked_and_linted() {
        let extra = r#"
[[network_acls]]
name = "strict"
inbound = [ { rule = 100, action = "allow", protocol = "tcp", cidr = "0.0.0.0/0", ports = "22" } ]
outbound = [ { rule = 100, action = "allow", protocol = "all", cidr = "0.0.0.0/0" } ]
"#;
        let v = parse("x.toml", &format!("{DEFAULT_LAB}{extra}")).unwrap();
        assert!(v.warnings.iter().any(|w| w.contains("ephemeral")), "{:?}", v.warnings);
        let bad = extra.replace(
            "rule = 100, action = \"allow\", protocol = \"tcp\"",
            "rule = 40000, action = \"allow\", protocol = \"tcp\"",
        );
        let e = parse("x.toml", &format!("{DEFAULT_LAB}{bad}")).unwrap_err();
        assert!(e.message.contains("out of range"), "{e}");
        let bad = extra.replace("protocol = \"all\", cidr", "protocol = \"all\", ports = \"80\", cidr");
        let e = parse("x.toml", &format!("{DEFAULT_LAB}{bad}")).unwrap_err();
        assert!(e.message.contains("TCP and UDP"), "{e}");
    }

    #[test]
    fn route_changes_and_deleted_targets() {
        let mut v = parse("lab.toml", DEFAULT_LAB).unwrap();
        v.add_route("private", "192.0.2.0/24", "blackhole").unwrap();
        assert_eq!(
            v.add_route("private", "192.0.2.0/24", "igw").unwrap_err(),
            ChangeError::Exists { table: "private".into(), destination: "192.0.2.0/24".into() }
        );
        assert!(matches!(v.add_route("private", "192.0.2.1/24", "igw"), Err(ChangeError::BadDestination(_))));
        assert_eq!(v.add_route("nope", "192.0.3.0/24", "igw").unwrap_err(), ChangeError::NoTable("nope".into()));
        assert_eq!(v.add_route("private", "192.0.3.0/24", "nat-9").unwrap_err(), ChangeError::NoTarget("nat-9".into()));
        assert_eq!(v.delete_route("private", "10.0.0.0/16").unwrap_err(), ChangeError::Local);
        v.delete_route("private", "192.0.2.0/24").unwrap();
        v.delete_nat_gateway("nat-1").unwrap();
        let t = &v.parts.route_tables[v.table_index("private").unwrap()];
        let r = t.lookup(u32::from(Ipv4Addr::new(8, 8, 8, 8))).unwrap();
        assert_eq!((r.state, r.effective()), (RouteState::Blackhole, Target::Blackhole));
        assert_eq!(v.delete_nat_gateway("nat-1").unwrap_err(), ChangeError::NoNatGateway("nat-1".into()));
    }

    #[test]
    fn the_minimal_form_makes_a_valid_vpc() {
        let text = minimal("app:10.0.1.10/24", "web:198.51.100.10/24", "203.0.113.5").unwrap();
        let v = parse("minimal", &text).unwrap();
        assert_eq!(v.parts.hosts[0].ip, Ipv4Addr::new(10, 0, 1, 10));
        assert_eq!(v.nats[0].1.public_ips, vec![Ipv4Addr::new(203, 0, 113, 5)]);
        assert_eq!(v.attachments.iter().map(|a| a.namespace.as_str()).collect::<Vec<_>>(), ["app", "web", "dns"]);
        assert!(minimal("app:10.0.1.10", "web:198.51.100.10/24", "203.0.113.5").unwrap_err().contains("prefix length"));
        assert!(minimal("app:10.0.0.10/16", "web:198.51.100.10/24", "203.0.113.5").unwrap_err().contains("/17"));
        assert!(minimal("app:10.0.1.10/24", "web:198.51.100.10/24", "nope").unwrap_err().contains("--public-ip"));
    }

    #[test]
    fn a_full_table_loads_from_a_route_file() {
        let Some(data) = shared_table() else { return };
        let src = DEFAULT_LAB.replace(
            "  { destination = \"0.0.0.0/0\", target = \"igw\" },\n]",
            &format!("  {{ destination = \"0.0.0.0/0\", target = \"igw\" }},\n]\nroute_files = [ {{ path = \"{}\", target = \"igw\" }} ]", data.display()),
        );
        let v = parse("lab.toml", &src).unwrap();
        let t = &v.parts.route_tables[v.table_index("public").unwrap()];
        assert!(t.len() > 1_000_000, "{}", t.len());
        let a = Ipv4Addr::new(1, 0, 128, 1);
        let r = t.lookup(u32::from(a)).unwrap();
        // The file has 1.0.128.0/17, /18 and more specifics: the longest wins.
        assert!(r.destination.contains(a) && r.destination.prefix_len() >= 18, "{}", r.destination);
        assert_eq!(r.target, Target::InternetGateway);
    }

    /// The 1M-prefix table of ../shared/data, if this checkout sits beside it.
    fn shared_table() -> Option<std::path::PathBuf> {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/ris-ipv4-20260511.txt.gz");
        if p.exists() {
            return Some(p);
        }
        eprintln!("SKIPPED: {} is not beside this checkout", p.display());
        None
    }

    #[test]
    fn invalid_mapping_filtering_combination_is_refused() {
        let e = with(
            "mapping = \"endpoint-independent\"\nfiltering = \"address-and-port-dependent\"",
            "mapping = \"address-and-port-dependent\"\nfiltering = \"endpoint-independent\"",
        )
        .unwrap_err();
        assert!(e.message.contains("looser"), "{e}");
        assert_eq!(e.line, line_of("filtering = "));
    }
}
