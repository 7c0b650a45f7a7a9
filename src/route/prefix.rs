//! IPv4 prefixes (CIDR blocks).

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// An IPv4 prefix in canonical form: no bits set past the length.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Prefix {
    addr: u32,
    len: u8,
}

/// Why a string is not a prefix.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PrefixError {
    /// Not of the form a.b.c.d/n.
    #[error("`{0}` is not a CIDR block like 10.0.0.0/16")]
    Syntax(String),
    /// The length is above 32.
    #[error("`{0}`: prefix length must be 0 to 32")]
    Length(String),
    /// Host bits are set (AWS refuses these too).
    #[error("`{input}` has host bits set; did you mean {canonical}?")]
    NotCanonical { input: String, canonical: Prefix },
}

impl Prefix {
    /// The default route 0.0.0.0/0.
    pub const DEFAULT: Prefix = Prefix { addr: 0, len: 0 };

    /// A prefix from an address and a length; host bits are cleared.
    pub fn new(addr: Ipv4Addr, len: u8) -> Prefix {
        let len = len.min(32);
        Prefix { addr: u32::from(addr) & mask(len), len }
    }

    /// A /32 for one address.
    pub fn host(addr: Ipv4Addr) -> Prefix {
        Prefix::new(addr, 32)
    }

    pub fn addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.addr)
    }

    pub fn addr_u32(&self) -> u32 {
        self.addr
    }

    pub fn prefix_len(&self) -> u8 {
        self.len
    }

    /// True for 0.0.0.0/0.
    pub fn is_default(&self) -> bool {
        self.len == 0
    }

    /// The netmask as a number.
    pub fn mask(&self) -> u32 {
        mask(self.len)
    }

    pub fn contains(&self, a: Ipv4Addr) -> bool {
        self.contains_u32(u32::from(a))
    }

    pub fn contains_u32(&self, a: u32) -> bool {
        a & mask(self.len) == self.addr
    }

    /// True when every address of `other` is in `self`.
    pub fn covers(&self, other: &Prefix) -> bool {
        other.len >= self.len && self.contains_u32(other.addr)
    }

    /// True when the two prefixes share an address.
    pub fn overlaps(&self, other: &Prefix) -> bool {
        self.covers(other) || other.covers(self)
    }

    /// The last address (broadcast for a subnet).
    pub fn last(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.addr | !mask(self.len))
    }

    /// The n-th address of the prefix (0 = network address).
    pub fn nth(&self, n: u32) -> Ipv4Addr {
        Ipv4Addr::from(self.addr.wrapping_add(n))
    }

    /// Number of addresses (saturating at u32::MAX for /0).
    pub fn size(&self) -> u32 {
        if self.len == 0 { u32::MAX } else { 1u32 << (32 - self.len) }
    }

    /// Parses strictly: host bits must be zero, as AWS requires of CIDR blocks.
    pub fn parse_canonical(s: &str) -> Result<Prefix, PrefixError> {
        let (a, l) = parse_parts(s)?;
        let p = Prefix::new(a, l);
        if u32::from(a) != p.addr {
            return Err(PrefixError::NotCanonical { input: s.to_string(), canonical: p });
        }
        Ok(p)
    }
}

fn parse_parts(s: &str) -> Result<(Ipv4Addr, u8), PrefixError> {
    let (a, l) = s.trim().split_once('/').ok_or_else(|| PrefixError::Syntax(s.to_string()))?;
    let a: Ipv4Addr = a.parse().map_err(|_| PrefixError::Syntax(s.to_string()))?;
    let l: u8 = l.parse().map_err(|_| PrefixError::Syntax(s.to_string()))?;
    if l > 32 {
        return Err(PrefixError::Length(s.to_string()));
    }
    Ok((a, l))
}

/// Netmask of a prefix length.
pub fn mask(len: u8) -> u32 {
    if len == 0 { 0 } else { u32::MAX << (32 - u32::from(len.min(32))) }
}

impl FromStr for Prefix {
    type Err = PrefixError;
    /// Lenient parse: host bits are cleared (route table files often carry them).
    fn from_str(s: &str) -> Result<Prefix, PrefixError> {
        let (a, l) = parse_parts(s)?;
        Ok(Prefix::new(a, l))
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", Ipv4Addr::from(self.addr), self.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_contains() {
        let p: Prefix = "10.0.1.0/24".parse().unwrap();
        assert!(p.contains(Ipv4Addr::new(10, 0, 1, 200)));
        assert!(!p.contains(Ipv4Addr::new(10, 0, 2, 1)));
        assert_eq!(p.last(), Ipv4Addr::new(10, 0, 1, 255));
        assert_eq!(p.to_string(), "10.0.1.0/24");
        assert_eq!("0.0.0.0/0".parse::<Prefix>().unwrap(), Prefix::DEFAULT);
        assert!(Prefix::DEFAULT.contains(Ipv4Addr::new(1, 2, 3, 4)));
    }

    #[test]
    fn canonical_is_strict() {
        let e = Prefix::parse_canonical("10.0.1.5/24").unwrap_err();
        assert_eq!(e.to_string(), "`10.0.1.5/24` has host bits set; did you mean 10.0.1.0/24?");
        assert!(Prefix::parse_canonical("10.0.0.0/33").is_err());
        assert!(Prefix::parse_canonical("10.0.0/8").is_err());
        assert!(Prefix::parse_canonical("nonsense").is_err());
    }

    #[test]
    fn overlap() {
        let a: Prefix = "10.0.0.0/16".parse().unwrap();
        let b: Prefix = "10.0.1.0/24".parse().unwrap();
        let c: Prefix = "10.1.0.0/24".parse().unwrap();
        assert!(a.covers(&b) && !b.covers(&a) && a.overlaps(&b) && b.overlaps(&a));
        assert!(!a.overlaps(&c));
    }
}
