//! The config pass for the lab's AWS services (`[[services]]`) and the VPC's
//! endpoints to them (`[[endpoints]]`), validated as AWS validates them:
//! gateway endpoints for S3 and DynamoDB only, one per service per route
//! table; interface endpoint subnets inside the VPC, at most one per subnet
//! and endpoint; private DNS needs DNS support and DNS hostnames on.

use super::{Ctx, S};
use crate::services::Kind;
use serde::Deserialize;
use std::collections::HashMap;
use std::net::Ipv4Addr;
use toml::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ServiceSection {
    /// `s3` or `dynamodb`.
    service: S,
    /// Its public address, on the internet side (e.g. 192.0.2.10).
    address: S,
    /// The public door's namespace (default: the service's name).
    namespace: Option<S>,
    #[serde(default)]
    buckets: Vec<BucketSection>,
    #[serde(default)]
    tables: Vec<TableSection>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BucketSection {
    name: S,
    /// The bucket policy (JSON).
    policy: Option<S>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TableSection {
    name: S,
    /// The partition key's attribute name.
    key: S,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct EndpointSection {
    /// `vpce-` and 8 to 17 hex digits.
    id: S,
    /// `s3` or `dynamodb` (or AWS's `com.amazonaws.<region>.s3`).
    service: S,
    /// `gateway` or `interface`.
    #[serde(rename = "type")]
    kind: S,
    /// Gateway endpoints: the route tables that get its prefix-list route.
    route_tables: Option<Spanned<Vec<S>>>,
    /// Interface endpoints: one network interface in each subnet.
    subnets: Option<Spanned<Vec<S>>>,
    /// Interface endpoints: the service's public name answers its private
    /// addresses inside the VPC (AWS's default: on).
    private_dns: Option<Spanned<bool>>,
    /// Interface endpoints: the groups of its network interfaces (default: the VPC's default).
    security_groups: Option<Spanned<Vec<S>>>,
    /// The endpoint policy (JSON; default: full access).
    policy: Option<S>,
}

/// A service, compiled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceSettings {
    pub kind: Kind,
    pub address: Ipv4Addr,
    /// The public door's namespace, as written (the lab adds its prefix).
    pub namespace: String,
    /// (bucket, its policy).
    pub buckets: Vec<(String, Option<String>)>,
    /// (table, its key attribute).
    pub tables: Vec<(String, String)>,
}

/// What kind of endpoint, compiled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EndpointKind {
    /// Routes `prefix_list` (the service's addresses) to the endpoint in these route tables.
    Gateway { prefix_list: String, route_tables: Vec<usize> },
    /// A network interface in each subnet: (subnet, its private address, its host index).
    Interface { enis: Vec<(usize, Ipv4Addr)>, private_dns: bool },
}

/// An endpoint, compiled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointSettings {
    pub id: String,
    /// Index into [`super::Vpc::services`].
    pub service: usize,
    pub kind: EndpointKind,
    pub policy: Option<String>,
    /// Interface endpoints: the groups named (None: the VPC's default).
    pub(super) groups: Option<Spanned<Vec<S>>>,
}

impl EndpointSettings {
    /// The namespace of a gateway endpoint's door, or of an interface
    /// endpoint's network interface in a subnet.
    pub fn namespace(&self, subnet: Option<&str>) -> String {
        match subnet {
            Some(s) => format!("{}-{s}", self.id),
            None => self.id.clone(),
        }
    }
}

/// A stable 32-bit hash (FNV-1a) for the ids natgw derives.
fn fnv(s: &str) -> u32 {
    s.bytes().fold(0x811c_9dc5, |h, b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193))
}

/// An AWS resource id: `prefix` and 8 to 17 lower-case hex digits.
fn aws_id_ok(id: &str, prefix: &str) -> bool {
    let hex = id.strip_prefix(prefix).unwrap_or("");
    (8..=17).contains(&hex.len()) && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The prefix list a gateway endpoint routes (AWS: `pl-` and 8 hex digits,
/// one per service and region); ours is derived from both.
pub fn prefix_list_id(kind: Kind, region: &str) -> String {
    format!("pl-{:08x}", fnv(&kind.endpoint_service(region)))
}

/// `[vpc] id`, checked; without one, derived from the VPC's name.
pub(super) fn vpc_id(cx: &Ctx<'_>, id: Option<&S>, name: &str) -> Result<String, super::ConfigError> {
    match id {
        Some(i) if !aws_id_ok(i.get_ref(), "vpc-") => {
            Err(cx.err(i.span(), format!("`{}` is not a VPC id", i.get_ref()), "write e.g. \"vpc-0a1b2c3d\""))
        }
        Some(i) => Ok(i.get_ref().clone()),
        None => Ok(format!("vpc-{:08x}", fnv(name))),
    }
}

fn kind_of(cx: &Ctx<'_>, s: &S, region: &str) -> Result<Kind, super::ConfigError> {
    let name = s.get_ref().as_str();
    let short = name.strip_prefix(&format!("com.amazonaws.{region}.")).unwrap_or(name);
    match short {
        "s3" => Ok(Kind::S3),
        "dynamodb" => Ok(Kind::Dynamodb),
        _ => Err(cx.err(
            s.span(),
            format!("service `{name}` is not one the lab has"),
            format!("write \"s3\" or \"dynamodb\" (or com.amazonaws.{region}.s3)"),
        )),
    }
}

fn policy(cx: &Ctx<'_>, p: &Option<S>, what: &str) -> Result<Option<String>, super::ConfigError> {
    match p {
        Some(p) => {
            crate::services::policy::Policy::parse(p.get_ref()).map_err(|e| {
                cx.err(p.span(), format!("{what}: {e}"), "see docs/ENDPOINTS.md for the policy grammar")
            })?;
            Ok(Some(p.get_ref().clone()))
        }
        None => Ok(None),
    }
}

pub(super) fn services(
    cx: &Ctx<'_>,
    sections: &[ServiceSection],
    vpc: crate::route::Prefix,
    has_internet: bool,
    region: &str,
) -> Result<Vec<ServiceSettings>, super::ConfigError> {
    let mut out: Vec<ServiceSettings> = Vec::new();
    for s in sections {
        let kind = kind_of(cx, &s.service, region)?;
        if !has_internet {
            return Err(cx.err(
                s.service.span(),
                "a service's public address is on the internet side, but there is no [internet] section",
                "add an [internet] section",
            ));
        }
        if out.iter().any(|o| o.kind == kind) {
            return Err(cx.err(s.service.span(), format!("service `{}` is declared twice", kind.name()), "keep one"));
        }
        let address = cx.ip(&s.address, "service address")?;
        if vpc.contains(address) {
            return Err(cx.err(
                s.address.span(),
                format!("service address {address} is inside the VPC"),
                "use a documentation address such as 192.0.2.10",
            ));
        }
        if let Some(o) = out.iter().find(|o| o.address == address) {
            return Err(cx.err(
                s.address.span(),
                format!("{address} is already {}'s address", o.kind.name()),
                "give each service its own",
            ));
        }
        let namespace = s.namespace.as_ref().map_or_else(|| kind.name().to_string(), |n| n.get_ref().clone());
        let span = s.namespace.as_ref().map_or_else(|| s.service.span(), |n| n.span());
        if !super::name_ok(&namespace) {
            return Err(cx.err(
                span,
                format!("namespace `{namespace}` is not valid"),
                "use up to 32 letters, digits, `-` or `_`",
            ));
        }
        if let Some(o) = out.iter().find(|o| o.namespace == namespace) {
            return Err(cx.err(
                span,
                format!("namespace `{namespace}` is already {}'s door", o.kind.name()),
                format!("give this service a namespace of its own, e.g. namespace = \"{}-door\"", kind.name()),
            ));
        }
        let mut buckets = Vec::new();
        for b in &s.buckets {
            if kind != Kind::S3 {
                return Err(cx.err(b.name.span(), "only S3 has buckets", "use `tables` for DynamoDB"));
            }
            if !crate::services::s3::bucket_name_ok(b.name.get_ref()) {
                return Err(cx.err(
                    b.name.span(),
                    format!("`{}` is not a valid bucket name", b.name.get_ref()),
                    "3 to 63 lower-case letters, digits, `-` or `.`",
                ));
            }
            buckets.push((b.name.get_ref().clone(), policy(cx, &b.policy, "bucket policy")?));
        }
        let mut tables = Vec::new();
        for t in &s.tables {
            if kind != Kind::Dynamodb {
                return Err(cx.err(t.name.span(), "only DynamoDB has tables", "use `buckets` for S3"));
            }
            tables.push((t.name.get_ref().clone(), t.key.get_ref().clone()));
        }
        out.push(ServiceSettings { kind, address, namespace, buckets, tables });
    }
    Ok(out)
}

/// A service's public door is a namespace of its own: none of the lab's
/// other namespaces (hosts, the internet side, the resolver, endpoints'
/// doors and interfaces) may be it.
pub(super) fn check_doors(
    cx: &Ctx<'_>,
    sections: &[ServiceSection],
    services: &[ServiceSettings],
    taken: &[(String, String)],
) -> Result<(), super::ConfigError> {
    for (s, raw) in services.iter().zip(sections) {
        if let Some((_, whose)) = taken.iter().find(|(ns, _)| *ns == s.namespace) {
            let span = raw.namespace.as_ref().map_or_else(|| raw.service.span(), |n| n.span());
            return Err(cx.err(
                span,
                format!("namespace `{}` is {whose}'s and also {}'s public door", s.namespace, s.kind.name()),
                format!("give the service a namespace of its own, e.g. namespace = \"{}-door\"", s.kind.name()),
            ));
        }
    }
    Ok(())
}

/// What [`endpoints`] needs of the rest of the file.
pub(super) struct Scope<'a> {
    pub services: &'a [ServiceSettings],
    pub subnets: &'a HashMap<String, usize>,
    pub tables: &'a HashMap<String, usize>,
    pub subnet_cidrs: &'a [crate::route::Prefix],
    pub region: &'a str,
    pub dns_support: bool,
    pub dns_hostnames: bool,
}

pub(super) fn endpoints(
    cx: &Ctx<'_>,
    sections: &[EndpointSection],
    sc: &Scope<'_>,
    mut take_address: impl FnMut(usize) -> Option<Ipv4Addr>,
) -> Result<Vec<EndpointSettings>, super::ConfigError> {
    let mut out: Vec<EndpointSettings> = Vec::new();
    // (service, route table) pairs that have a gateway endpoint already.
    let mut routed: HashMap<(Kind, usize), String> = HashMap::new();
    for e in sections {
        let id = e.id.get_ref();
        if !aws_id_ok(id, "vpce-") {
            return Err(cx.err(
                e.id.span(),
                format!("endpoint id `{id}` is not a VPC endpoint id"),
                "write `vpce-` and 8 to 17 lower-case hex digits, e.g. \"vpce-1a2b3c4d\"",
            ));
        }
        if out.iter().any(|o| &o.id == id) {
            return Err(cx.err(e.id.span(), format!("endpoint `{id}` is declared twice"), "give each its own id"));
        }
        let kind = kind_of(cx, &e.service, sc.region).map_err(|mut err| {
            if e.kind.get_ref() == "gateway" {
                err.message =
                    format!("AWS has gateway endpoints for S3 and DynamoDB only, not `{}`", e.service.get_ref());
                err.fix = "write service = \"s3\" or \"dynamodb\", or use type = \"interface\"".into();
            }
            err
        })?;
        let Some(service) = sc.services.iter().position(|s| s.kind == kind) else {
            return Err(cx.err(
                e.service.span(),
                format!("no [[services]] section declares `{}`", kind.name()),
                format!("add [[services]] service = \"{}\" with its address", kind.name()),
            ));
        };
        let policy = policy(cx, &e.policy, "endpoint policy")?;
        let kind_spec = match e.kind.get_ref().as_str() {
            "gateway" => {
                if let Some(s) = &e.subnets {
                    return Err(cx.err(
                        s.span(),
                        "a gateway endpoint has route tables, not subnets",
                        "write `route_tables = [...]`",
                    ));
                }
                if let Some(p) = &e.private_dns {
                    return Err(cx.err(
                        p.span(),
                        "private DNS is a setting of interface endpoints",
                        "remove `private_dns`",
                    ));
                }
                if let Some(g) = &e.security_groups {
                    return Err(cx.err(
                        g.span(),
                        "a gateway endpoint has no security groups (it is a route target)",
                        "remove `security_groups`",
                    ));
                }
                let Some(names) = &e.route_tables else {
                    return Err(cx.err(
                        e.kind.span(),
                        "a gateway endpoint needs route tables",
                        "add `route_tables = [\"private\"]`",
                    ));
                };
                let mut route_tables = Vec::new();
                for n in names.get_ref() {
                    let t = *sc.tables.get(n.get_ref()).ok_or_else(|| {
                        cx.err(
                            n.span(),
                            format!("no route table named `{}`", n.get_ref()),
                            "name a [[route_tables]] table",
                        )
                    })?;
                    if let Some(other) = routed.insert((kind, t), id.clone()) {
                        return Err(cx.err(
                            n.span(),
                            format!(
                                "route table `{}` already has gateway endpoint {other} for {}",
                                n.get_ref(),
                                kind.name()
                            ),
                            "AWS allows one gateway endpoint per service in a route table: remove it from one of them",
                        ));
                    }
                    route_tables.push(t);
                }
                EndpointKind::Gateway { prefix_list: prefix_list_id(kind, sc.region), route_tables }
            }
            "interface" => {
                if let Some(t) = &e.route_tables {
                    return Err(cx.err(
                        t.span(),
                        "an interface endpoint has subnets, not route tables",
                        "write `subnets = [...]`",
                    ));
                }
                let Some(names) = &e.subnets else {
                    return Err(cx.err(
                        e.kind.span(),
                        "an interface endpoint needs subnets",
                        "add `subnets = [\"private\"]`",
                    ));
                };
                let private_dns = e.private_dns.as_ref().is_none_or(|p| *p.get_ref());
                if private_dns && !(sc.dns_support && sc.dns_hostnames) {
                    let span = e.private_dns.as_ref().map_or(e.kind.span(), |p| p.span());
                    return Err(cx.err(
                        span,
                        "private DNS needs enable_dns_support and enable_dns_hostnames on (AWS refuses it too)",
                        "set both in [vpc], or private_dns = false",
                    ));
                }
                let mut enis: Vec<(usize, Ipv4Addr)> = Vec::new();
                for n in names.get_ref() {
                    let s = *sc.subnets.get(n.get_ref()).ok_or_else(|| {
                        cx.err(
                            n.span(),
                            format!("no subnet named `{}` in this VPC", n.get_ref()),
                            "an interface endpoint's subnets are the VPC's own: name a [[subnets]] subnet",
                        )
                    })?;
                    if enis.iter().any(|(o, _)| *o == s) {
                        return Err(cx.err(
                            n.span(),
                            format!("subnet `{}` is listed twice", n.get_ref()),
                            "one network interface per subnet",
                        ));
                    }
                    let ip = take_address(s).ok_or_else(|| {
                        cx.err(
                            n.span(),
                            format!("subnet `{}` ({}) has no free address", n.get_ref(), sc.subnet_cidrs[s]),
                            "use a larger subnet",
                        )
                    })?;
                    enis.push((s, ip));
                }
                EndpointKind::Interface { enis, private_dns }
            }
            other => {
                return Err(cx.err(
                    e.kind.span(),
                    format!("endpoint type `{other}` is not known"),
                    "write \"gateway\" or \"interface\"",
                ));
            }
        };
        out.push(EndpointSettings {
            id: id.clone(),
            service,
            kind: kind_spec,
            policy,
            groups: e.security_groups.clone(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use crate::control::config::{ConfigError, DEFAULT_LAB, EndpointKind, Vpc, parse, zone_of};
    use std::net::Ipv4Addr;

    const S3: &str =
        "\n[[services]]\nservice = \"s3\"\naddress = \"192.0.2.10\"\nbuckets = [{ name = \"lab-bucket\" }]\n";

    fn lab(extra: &str) -> Result<Vpc, ConfigError> {
        parse("lab.toml", &format!("{DEFAULT_LAB}{S3}{extra}"))
    }

    /// The error, and the line its text `needle` is on.
    fn refused(extra: &str, needle: &str) -> ConfigError {
        let e = lab(extra).expect_err("refused");
        let text = format!("{DEFAULT_LAB}{S3}{extra}");
        let line = text.lines().position(|l| l.contains(needle)).expect("needle") + 1;
        assert_eq!(e.line, line, "{e}");
        assert!(!e.fix.is_empty(), "{e}");
        e
    }

    #[test]
    fn a_gateway_endpoint_routes_its_prefix_list_in_its_tables() {
        let v = lab("[[endpoints]]\nid = \"vpce-1a2b3c4d\"\nservice = \"s3\"\ntype = \"gateway\"\nroute_tables = [\"private\"]\n")
            .expect("loads");
        let EndpointKind::Gateway { prefix_list, route_tables } = &v.endpoints[0].kind else { panic!() };
        assert!(prefix_list.starts_with("pl-") && prefix_list.len() == 11);
        let private = v.parts.route_tables.iter().position(|t| t.name == "private").expect("table");
        assert_eq!(route_tables, &vec![private]);
        let r = v.parts.route_tables[private].lookup(u32::from(Ipv4Addr::new(192, 0, 2, 10))).expect("route");
        assert_eq!((r.target, r.target_name.as_str()), (crate::route::Target::Endpoint(0), "vpce-1a2b3c4d"));
        // The door is an attachment of its own, holding the service's address.
        let door = v.attachments.iter().find(|a| a.interface == "vpce-1a2b3c4d").expect("door");
        assert_eq!(door.addresses, vec![(Ipv4Addr::new(192, 0, 2, 10), 32)]);
        assert_eq!(zone_of(&v).a("s3.ap-northeast-2.amazonaws.com"), Some(&[Ipv4Addr::new(192, 0, 2, 10)][..]));
        assert_eq!(
            zone_of(&v).a("lab-bucket.s3.ap-northeast-2.amazonaws.com"),
            Some(&[Ipv4Addr::new(192, 0, 2, 10)][..])
        );
    }

    #[test]
    fn private_dns_answers_the_interface_endpoints_addresses() {
        let ep = |dns: bool| {
            format!(
                "[[endpoints]]\nid = \"vpce-11112222\"\nservice = \"s3\"\ntype = \"interface\"\nsubnets = [\"private\", \"public\"]\nprivate_dns = {dns}\n"
            )
        };
        let on = lab(&ep(true)).expect("loads");
        let want = [Ipv4Addr::new(10, 0, 1, 254), Ipv4Addr::new(10, 0, 0, 254)];
        assert_eq!(zone_of(&on).a("s3.ap-northeast-2.amazonaws.com"), Some(&want[..]));
        assert_eq!(zone_of(&on).a("vpce-11112222.s3.ap-northeast-2.vpce.amazonaws.com"), Some(&want[..]));
        assert!(on.parts.hosts.iter().any(|h| h.name == "vpce-11112222-private" && h.ip == want[0]));
        let off = lab(&ep(false)).expect("loads");
        assert_eq!(zone_of(&off).a("s3.ap-northeast-2.amazonaws.com"), Some(&[Ipv4Addr::new(192, 0, 2, 10)][..]));
        assert_eq!(zone_of(&off).a("vpce-11112222.s3.ap-northeast-2.vpce.amazonaws.com"), Some(&want[..]));
    }

    #[test]
    fn what_aws_refuses_is_refused_with_the_line_and_the_fix() {
        let e = refused(
            "[[endpoints]]\nid = \"vpce-1a2b3c4d\"\nservice = \"sqs\"\ntype = \"gateway\"\nroute_tables = [\"private\"]\n",
            "\"sqs\"",
        );
        assert!(e.message.contains("S3 and DynamoDB only"), "{e}");
        let e = refused(
            "[[endpoints]]\nid = \"vpce-1a2b3c4d\"\nservice = \"s3\"\ntype = \"gateway\"\nroute_tables = [\"private\"]\n\n[[endpoints]]\nid = \"vpce-5e6f7a8b\"\nservice = \"s3\"\ntype = \"gateway\"\nroute_tables = [\"public\", \"private\"]\n",
            "[\"public\", \"private\"]",
        );
        assert!(e.message.contains("already has gateway endpoint vpce-1a2b3c4d"), "{e}");
        let e = refused(
            "[[endpoints]]\nid = \"vpce-11112222\"\nservice = \"s3\"\ntype = \"interface\"\nsubnets = [\"elsewhere\"]\n",
            "\"elsewhere\"",
        );
        assert!(e.message.contains("no subnet named `elsewhere` in this VPC"), "{e}");
        let e = refused(
            "[[endpoints]]\nid = \"endpoint-1\"\nservice = \"s3\"\ntype = \"gateway\"\nroute_tables = [\"private\"]\n",
            "endpoint-1",
        );
        assert!(e.message.contains("not a VPC endpoint id"), "{e}");
        let e = refused(
            "[[endpoints]]\nid = \"vpce-1a2b3c4d\"\nservice = \"dynamodb\"\ntype = \"gateway\"\nroute_tables = [\"private\"]\n",
            "\"dynamodb\"",
        );
        assert!(e.message.contains("no [[services]] section declares `dynamodb`"), "{e}");
        let e = refused(
            "[[endpoints]]\nid = \"vpce-1a2b3c4d\"\nservice = \"s3\"\ntype = \"gateway\"\nroute_tables = [\"private\"]\npolicy = '{\"Statement\":[{\"Effect\":\"Allow\",\"Action\":\"*\",\"Condition\":{\"DateLessThan\":{}}}]}'\n",
            "policy =",
        );
        assert!(e.message.contains("DateLessThan"), "{e}");
        // Private DNS needs DNS hostnames on (the default lab has them on).
        let text = DEFAULT_LAB.replace("enable_dns_hostnames = true", "enable_dns_hostnames = false");
        let e = parse(
            "lab.toml",
            &format!("{text}{S3}[[endpoints]]\nid = \"vpce-11112222\"\nservice = \"s3\"\ntype = \"interface\"\nsubnets = [\"private\"]\n"),
        )
        .expect_err("refused");
        assert!(e.message.contains("private DNS needs") && e.fix.contains("private_dns = false"), "{e}");
        let e = refused("\n[[services]]\nservice = \"dynamodb\"\naddress = \"10.0.1.99\"\n", "10.0.1.99");
        assert!(e.message.contains("inside the VPC"), "{e}");
        let e = lab("\n[[services]]\nservice = \"s3\"\naddress = \"192.0.2.11\"\n").expect_err("refused");
        assert!(e.message.contains("declared twice"), "{e}");
    }

    #[test]
    fn each_door_has_a_namespace_of_its_own() {
        let ddb = |ns: &str| {
            format!("\n[[services]]\nservice = \"dynamodb\"\naddress = \"192.0.2.20\"\nnamespace = \"{ns}\"\n")
        };
        let e = refused(&ddb("s3"), "namespace = \"s3\"");
        assert!(e.message.contains("already s3's door"), "{e}");
        let e = refused(&ddb("app"), "namespace = \"app\"");
        assert!(e.message.contains("`app` is app's and also dynamodb's public door"), "{e}");
        let Err(e) = lab(&ddb("web")) else { panic!("accepted") };
        assert!(e.message.contains("`web` is internet's"), "{e}");
        let e = refused(&ddb("a b/c"), "namespace = \"a b/c\"");
        assert!(e.message.contains("not valid"), "{e}");
        // A gateway endpoint's door is its id's namespace.
        let e = refused(
            &format!(
                "{}[[endpoints]]\nid = \"vpce-1a2b3c4d\"\nservice = \"s3\"\ntype = \"gateway\"\nroute_tables = [\"private\"]\n",
                ddb("vpce-1a2b3c4d")
            ),
            "namespace = \"vpce-1a2b3c4d\"",
        );
        assert!(e.message.contains("vpce-1a2b3c4d's and also dynamodb's"), "{e}");
        lab(&ddb("ddb-door")).expect("a namespace of its own");
    }

    #[test]
    fn an_endpoint_in_the_nat_gateways_table_is_warned_of() {
        let gw = |table: &str| {
            format!(
                "[[endpoints]]\nid = \"vpce-1a2b3c4d\"\nservice = \"s3\"\ntype = \"gateway\"\nroute_tables = [\"{table}\"]\n"
            )
        };
        let v = lab(&gw("public")).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            v.warnings.iter().any(|w| w.contains("NAT gateway `nat-1`'s subnet") && w.contains("nat_to_endpoint")),
            "{:?}",
            v.warnings
        );
        let v = lab(&gw("private")).unwrap_or_else(|e| panic!("{e}"));
        assert!(v.warnings.iter().all(|w| !w.contains("nat_to_endpoint")), "{:?}", v.warnings);
    }
}
