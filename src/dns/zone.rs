//! The names the VPC's resolver answers for, as AWS forms them.

use std::collections::HashMap;
use std::net::Ipv4Addr;

/// TTL of every answer, seconds (AWS answers its private names with 60).
pub const TTL: u32 = 60;

/// Names to addresses and addresses to names. Immutable once built; a
/// change (a reload) builds a new one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Zone {
    /// Lowercase, without the trailing dot.
    names: HashMap<String, Vec<Ipv4Addr>>,
    /// The first name given to an address answers its PTR query.
    reverse: HashMap<Ipv4Addr, String>,
}

impl Zone {
    /// Adds `name -> ip` (and, unless the address has a name already, the reverse).
    pub fn add(&mut self, name: &str, ip: Ipv4Addr) {
        let n = normalize(name);
        let v = self.names.entry(n.clone()).or_default();
        if !v.contains(&ip) {
            v.push(ip);
        }
        self.reverse.entry(ip).or_insert(n);
    }

    /// Adds `name -> ip` without a reverse entry (a name that is not the
    /// address's own, such as a public name answered with a private address).
    pub fn add_forward(&mut self, name: &str, ip: Ipv4Addr) {
        let v = self.names.entry(normalize(name)).or_default();
        if !v.contains(&ip) {
            v.push(ip);
        }
    }

    /// The addresses of `name` (any case, with or without the trailing dot).
    pub fn a(&self, name: &str) -> Option<&[Ipv4Addr]> {
        self.names.get(&normalize(name)).map(Vec::as_slice)
    }

    /// The name of `ip`, for a PTR query.
    pub fn ptr(&self, ip: Ipv4Addr) -> Option<&str> {
        self.reverse.get(&ip).map(String::as_str)
    }

    /// Number of names.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Every name with its addresses, sorted by name.
    pub fn entries(&self) -> Vec<(&str, &[Ipv4Addr])> {
        let mut v: Vec<(&str, &[Ipv4Addr])> = self.names.iter().map(|(n, a)| (n.as_str(), a.as_slice())).collect();
        v.sort();
        v
    }
}

fn normalize(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// The domain of private host names: `ec2.internal` in us-east-1, else
/// `<region>.compute.internal`.
pub fn private_domain(region: &str) -> String {
    if region == "us-east-1" { "ec2.internal".to_string() } else { format!("{region}.compute.internal") }
}

/// A host's private DNS name: `ip-10-0-1-10.<private domain>`.
pub fn private_name(ip: Ipv4Addr, region: &str) -> String {
    let [a, b, c, d] = ip.octets();
    format!("ip-{a}-{b}-{c}-{d}.{}", private_domain(region))
}

/// A public address's DNS name: `ec2-203-0-113-10.compute-1.amazonaws.com`
/// in us-east-1, else `ec2-...<region>.compute.amazonaws.com`.
pub fn public_name(ip: Ipv4Addr, region: &str) -> String {
    let [a, b, c, d] = ip.octets();
    let zone = if region == "us-east-1" {
        "compute-1.amazonaws.com".to_string()
    } else {
        format!("{region}.compute.amazonaws.com")
    };
    format!("ec2-{a}-{b}-{c}-{d}.{zone}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_as_aws_forms_them() {
        let ip = Ipv4Addr::new(10, 0, 1, 10);
        assert_eq!(private_name(ip, "us-east-1"), "ip-10-0-1-10.ec2.internal");
        assert_eq!(private_name(ip, "ap-northeast-2"), "ip-10-0-1-10.ap-northeast-2.compute.internal");
        let p = Ipv4Addr::new(203, 0, 113, 10);
        assert_eq!(public_name(p, "us-east-1"), "ec2-203-0-113-10.compute-1.amazonaws.com");
        assert_eq!(public_name(p, "eu-west-1"), "ec2-203-0-113-10.eu-west-1.compute.amazonaws.com");
    }

    #[test]
    fn lookups_ignore_case_and_the_root_dot() {
        let mut z = Zone::default();
        z.add("App.Example.internal", Ipv4Addr::new(10, 0, 1, 10));
        z.add_forward("ec2-203-0-113-10.compute-1.amazonaws.com", Ipv4Addr::new(10, 0, 1, 10));
        assert_eq!(z.a("app.example.INTERNAL."), Some(&[Ipv4Addr::new(10, 0, 1, 10)][..]));
        assert_eq!(z.ptr(Ipv4Addr::new(10, 0, 1, 10)), Some("app.example.internal"));
        assert_eq!(z.a("nothing"), None);
        assert_eq!(z.len(), 2);
    }
}
