//! The config pass for the VPC's DNS: `[vpc]`'s `region`,
//! `enable_dns_support` and `enable_dns_hostnames`, and the `[dns]` section
//! (the resolver's namespace, its rate limit, a private hosted zone's records).

use super::{Ctx, S};
use crate::dns::zone::{self, Zone};
use crate::route::Prefix;
use serde::Deserialize;
use std::net::Ipv4Addr;
use toml::Spanned;

/// The `[dns]` section.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DnsSection {
    /// The resolver's namespace (default `dns`).
    namespace: Option<S>,
    /// Queries a second one source may send (AWS: 1024 packets per network
    /// interface); 0 turns the limit off (benchmarks).
    rate_limit: Option<u32>,
    /// A private hosted zone's A records, answered inside the VPC.
    #[serde(default)]
    records: Vec<RecordSection>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RecordSection {
    name: S,
    address: S,
}

/// The `[vpc]` keys this pass reads.
pub(super) struct VpcDnsKeys<'a> {
    pub region: Option<&'a S>,
    pub support: Option<&'a Spanned<bool>>,
    pub hostnames: Option<&'a Spanned<bool>>,
}

/// The VPC's DNS, compiled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsSettings {
    /// `enable_dns_support`: the resolver answers (default on, as on AWS).
    pub support: bool,
    /// `enable_dns_hostnames`: public addresses get public names, which
    /// resolve to the private address inside the VPC (default off, as for a
    /// VPC that is not the default one).
    pub hostnames: bool,
    pub region: String,
    /// The VPC's base + 2, and 169.254.169.253.
    pub addresses: [Ipv4Addr; 2],
    /// The resolver's namespace, as written (the lab adds its prefix).
    pub namespace: String,
    /// Queries a second per source; 0: no limit.
    pub rate_limit: u32,
    /// The private hosted zone's records.
    pub records: Vec<(String, Ipv4Addr)>,
}

impl DnsSettings {
    /// The domain of the hosts' private names.
    pub fn domain(&self) -> String {
        zone::private_domain(&self.region)
    }
}

pub(super) fn compile(
    cx: &Ctx<'_>,
    keys: &VpcDnsKeys<'_>,
    section: Option<&DnsSection>,
    vpc: Prefix,
    host_namespaces: &[String],
) -> Result<DnsSettings, super::ConfigError> {
    let region = match keys.region {
        None => "us-east-1".to_string(),
        Some(r) => {
            let ok = r.get_ref().split('-').count() >= 3
                && r.get_ref().bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
            if !ok {
                return Err(cx.err(
                    r.span(),
                    format!("region `{}` is not a region name", r.get_ref()),
                    "write e.g. \"ap-northeast-2\" or \"us-east-1\"",
                ));
            }
            r.get_ref().clone()
        }
    };
    let support = keys.support.is_none_or(|s| *s.get_ref());
    let hostnames = keys.hostnames.is_some_and(|h| *h.get_ref());
    if hostnames
        && !support
        && let Some(h) = keys.hostnames
    {
        return Err(cx.err(
            h.span(),
            "enable_dns_hostnames needs enable_dns_support (AWS refuses it too)",
            "set enable_dns_support = true, or enable_dns_hostnames = false",
        ));
    }
    let default = DnsSection::default();
    let s = section.unwrap_or(&default);
    let namespace = s.namespace.as_ref().map_or_else(|| "dns".to_string(), |n| n.get_ref().clone());
    if let Some(n) = &s.namespace
        && !super::name_ok(n.get_ref())
    {
        return Err(cx.err(n.span(), format!("namespace `{}` is not valid", n.get_ref()), "use letters, digits, `-`"));
    }
    if support && host_namespaces.contains(&namespace) {
        let span = s.namespace.as_ref().map_or(0..0, |n| n.span());
        return Err(cx.err(
            span,
            format!("namespace `{namespace}` is the resolver's and also a host's"),
            "name the resolver's namespace in [dns], e.g. namespace = \"vpc-dns\"",
        ));
    }
    let mut records = Vec::new();
    for r in &s.records {
        let name = r.name.get_ref().trim_end_matches('.').to_ascii_lowercase();
        let valid = !name.is_empty()
            && name.len() <= 253
            && name.split('.').all(|l| {
                !l.is_empty() && l.len() <= 63 && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            });
        if !valid {
            return Err(cx.err(
                r.name.span(),
                format!("`{}` is not a DNS name", r.name.get_ref()),
                "write e.g. \"db.corp.internal\" (labels of letters, digits, `-`, at most 63 bytes each)",
            ));
        }
        records.push((name, cx.ip(&r.address, "record address")?));
    }
    Ok(DnsSettings {
        support,
        hostnames,
        region,
        addresses: [vpc.nth(2), crate::dns::LINK_LOCAL],
        namespace,
        rate_limit: s.rate_limit.unwrap_or(crate::dns::AWS_RATE_LIMIT),
        records,
    })
}

/// The zone the resolver answers from, for a compiled VPC: every host's
/// private name (and its PTR), the lab's own names, public names of public
/// addresses (with DNS hostnames on), the private hosted zone.
pub fn zone_of(vpc: &super::Vpc) -> Zone {
    let d = &vpc.dns;
    let mut z = Zone::default();
    // The resolver is the first VPC's: its hosts' names only.
    for h in vpc.parts.hosts.iter().filter(|h| h.vpc == crate::pipeline::topology::VpcId::FIRST) {
        z.add(&zone::private_name(h.ip, &d.region), h.ip);
        if d.hostnames
            && let Some(e) = h.elastic_ip
        {
            // Inside the VPC a public name answers with the private address (AWS).
            z.add_forward(&zone::public_name(e, &d.region), h.ip);
        }
    }
    for (ip, name) in vpc.lab_names() {
        z.add_forward(&name, ip);
    }
    for (name, ip) in &d.records {
        z.add(name, *ip);
    }
    // The services' names: their public addresses, or, with an interface
    // endpoint's private DNS on, that endpoint's private addresses (AWS's
    // private hosted zone for the service). An interface endpoint's own
    // name always answers its addresses.
    for (i, s) in vpc.services.iter().enumerate() {
        let mut addrs = vec![s.address];
        for e in vpc.endpoints.iter().filter(|e| e.service == i) {
            if let super::EndpointKind::Interface { enis, private_dns } = &e.kind {
                let ips: Vec<Ipv4Addr> = enis.iter().map(|(_, ip)| *ip).collect();
                for ip in &ips {
                    z.add_forward(&format!("{}.{}.{}.vpce.amazonaws.com", e.id, s.kind.name(), d.region), *ip);
                }
                if *private_dns {
                    addrs = ips;
                }
            }
        }
        let mut names = vec![s.kind.hostname(&d.region)];
        names.extend(s.buckets.iter().map(|(b, _)| format!("{b}.{}", s.kind.hostname(&d.region))));
        for n in names {
            for ip in &addrs {
                z.add_forward(&n, *ip);
            }
        }
    }
    z
}
