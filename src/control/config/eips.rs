//! Elastic IPs at run time, as EC2's AllocateAddress, AssociateAddress,
//! DisassociateAddress and ReleaseAddress do them: `natgw eip ...`. The
//! daemon swaps the topology compiled from the changed parts in, as it does
//! for routes; flows of other hosts never notice.

use super::{ChangeError, Vpc};
use crate::route::Prefix;
use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;

/// AWS's default quota: 5 Elastic IPs a region (every one allocated counts,
/// a NAT gateway's too).
pub const REGION_LIMIT: usize = 5;

/// Where the lab's Elastic IPs come from: TEST-NET-3 (RFC 5737), never a
/// real public address (docs/LAB.md).
pub fn pool() -> Prefix {
    Prefix::new(Ipv4Addr::new(203, 0, 113, 0), 24)
}

/// An Elastic IP as `natgw eip list` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EipView {
    /// `eipalloc-` and the address in hex (stable for the address).
    pub allocation_id: String,
    pub address: String,
    /// `host NAME`, `NAT gateway NAME`, or None (allocated, not associated).
    pub association: Option<String>,
}

/// The allocation id of `a`.
pub fn allocation_id(a: Ipv4Addr) -> String {
    format!("eipalloc-{:08x}", u32::from(a))
}

fn err(code: &str, text: String) -> ChangeError {
    ChangeError::Eip(format!("{code}: {text}"))
}

impl Vpc {
    /// Every allocated Elastic IP: hosts', NAT gateways', then the idle ones.
    pub fn eip_list(&self) -> Vec<EipView> {
        let view = |a: Ipv4Addr, association: Option<String>| EipView {
            allocation_id: allocation_id(a),
            address: a.to_string(),
            association,
        };
        let mut out: Vec<EipView> = Vec::new();
        for h in &self.parts.hosts {
            if let Some(e) = h.elastic_ip {
                out.push(view(e, Some(format!("host {}", h.name))));
            }
        }
        for n in &self.parts.nat_gateways {
            for e in &n.public_ips {
                out.push(view(*e, Some(format!("NAT gateway {}", n.name))));
            }
        }
        out.extend(self.idle_eips.iter().map(|e| view(*e, None)));
        out
    }

    /// Every allocated address: hosts', NAT gateways', idle.
    fn addresses(&self) -> impl Iterator<Item = Ipv4Addr> + '_ {
        let hosts = self.parts.hosts.iter().filter_map(|h| h.elastic_ip);
        let nats = self.parts.nat_gateways.iter().flat_map(|n| n.public_ips.iter().copied());
        hosts.chain(nats).chain(self.idle_eips.iter().copied())
    }

    pub(super) fn allocated(&self, a: Ipv4Addr) -> bool {
        self.addresses().any(|x| x == a)
    }

    /// AllocateAddress: `address`, or the lowest free one of the pool.
    pub fn eip_allocate(&mut self, address: Option<Ipv4Addr>) -> Result<Ipv4Addr, ChangeError> {
        let held = self.addresses().count();
        if held >= REGION_LIMIT {
            return Err(err(
                "AddressLimitExceeded",
                format!(
                    "{held} Elastic IPs are allocated, AWS's default quota is {REGION_LIMIT} a region: release one"
                ),
            ));
        }
        let a = match address {
            Some(a) => {
                if !pool().contains(a) || a == pool().nth(0) || a == pool().last() {
                    return Err(err(
                        "InvalidParameterValue",
                        format!("{a} is not in the lab's pool {} (TEST-NET-3, never a real address)", pool()),
                    ));
                }
                if !self.free(a) {
                    return Err(err("InvalidAddress.InUse", format!("{a} is allocated or used already")));
                }
                a
            }
            None => (1..255)
                .map(|n| pool().nth(n))
                .find(|a| self.free(*a))
                .ok_or_else(|| err("AddressLimitExceeded", format!("no free address left in {}", pool())))?,
        };
        self.idle_eips.push(a);
        self.runtime_eips.push(a);
        Ok(a)
    }

    /// True when `a` may become an Elastic IP: not allocated, inside no VPC,
    /// no address of the internet side.
    fn free(&self, a: Ipv4Addr) -> bool {
        !self.allocated(a)
            && !self.parts.vpcs.iter().any(|v| v.cidr.contains(a))
            && self.parts.internet_gateway_ip != Some(a)
            && !self.attachments.iter().any(|x| x.interface == "internet" && x.addresses.iter().any(|(ip, _)| *ip == a))
    }

    /// AssociateAddress with host `host`. An address associated elsewhere
    /// moves only with `allow_reassociation`; the host's previous Elastic IP,
    /// if any, stays allocated and idle. Returns that previous address.
    pub fn eip_associate(
        &mut self,
        a: Ipv4Addr,
        host: &str,
        allow_reassociation: bool,
    ) -> Result<Option<Ipv4Addr>, ChangeError> {
        let h = self
            .parts
            .hosts
            .iter()
            .position(|x| x.name == host)
            .ok_or_else(|| err("InvalidInstanceID.NotFound", format!("no host named `{host}`")))?;
        if let Some(n) = self.parts.nat_gateways.iter().find(|n| n.public_ips.contains(&a)) {
            return Err(err(
                "InvalidIPAddress.InUse",
                format!("{a} is NAT gateway {}'s: a NAT gateway keeps its addresses until it is deleted", n.name),
            ));
        }
        let owner = self.parts.hosts.iter().position(|x| x.elastic_ip == Some(a));
        match owner {
            Some(o) if o == h => return Ok(None),
            Some(o) if !allow_reassociation => {
                return Err(err(
                    "Resource.AlreadyAssociated",
                    format!(
                        "{a} is associated with host {}: pass --allow-reassociation to move it",
                        self.parts.hosts[o].name
                    ),
                ));
            }
            Some(o) => self.parts.hosts[o].elastic_ip = None,
            None => {
                let Some(i) = self.idle_eips.iter().position(|e| *e == a) else {
                    return Err(err(
                        "InvalidAddress.NotFound",
                        format!("{a} is not allocated: natgw eip allocate first"),
                    ));
                };
                self.idle_eips.remove(i);
            }
        }
        let previous = self.parts.hosts[h].elastic_ip.replace(a);
        if let Some(p) = previous {
            self.idle_eips.push(p);
        }
        Ok(previous)
    }

    /// DisassociateAddress: the host keeps its private address only; the
    /// Elastic IP stays allocated (and billed).
    pub fn eip_disassociate(&mut self, a: Ipv4Addr) -> Result<String, ChangeError> {
        if self.parts.nat_gateways.iter().any(|n| n.public_ips.contains(&a)) {
            return Err(err(
                "InvalidIPAddress.InUse",
                format!("{a} is a NAT gateway's: delete the NAT gateway instead"),
            ));
        }
        let Some(h) = self.parts.hosts.iter_mut().find(|x| x.elastic_ip == Some(a)) else {
            return Err(err("InvalidAssociationID.NotFound", format!("{a} is associated with nothing")));
        };
        h.elastic_ip = None;
        let name = h.name.clone();
        self.idle_eips.push(a);
        Ok(name)
    }

    /// ReleaseAddress: only an address associated with nothing.
    pub fn eip_release(&mut self, a: Ipv4Addr) -> Result<(), ChangeError> {
        if let Some(i) = self.idle_eips.iter().position(|e| *e == a) {
            self.idle_eips.remove(i);
            self.runtime_eips.retain(|e| *e != a);
            return Ok(());
        }
        if self.allocated(a) {
            return Err(err("InvalidIPAddress.InUse", format!("{a} is associated: disassociate it first")));
        }
        Err(err("InvalidAddress.NotFound", format!("{a} is not allocated")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lab() -> Vpc {
        super::super::parse("lab.toml", include_str!("../../../examples/default-lab.toml")).unwrap()
    }

    #[test]
    fn allocate_associate_move_disassociate_release() {
        let mut v = lab();
        let before = v.eip_list();
        assert!(before.iter().all(|e| e.association.is_some()), "{before:?}");
        let a = v.eip_allocate(None).unwrap();
        assert!(pool().contains(a));
        assert_eq!(v.eip_list().iter().find(|e| e.address == a.to_string()).unwrap().association, None);
        let host = v.parts.hosts.iter().find(|h| h.elastic_ip.is_none()).unwrap().name.clone();
        assert_eq!(v.eip_associate(a, &host, false).unwrap(), None);
        // Moving it needs --allow-reassociation; the host it leaves keeps
        // none, the host it joins gives its own back, idle.
        let other = v.parts.hosts.iter().find(|h| h.name != host).expect("the lab has two hosts").name.clone();
        let e = v.eip_associate(a, &other, false).unwrap_err();
        assert!(e.to_string().contains("Resource.AlreadyAssociated"), "{e}");
        let own = v.eip_associate(a, &other, true).unwrap().expect("the other host had an Elastic IP");
        assert!(v.parts.hosts.iter().find(|h| h.name == host).unwrap().elastic_ip.is_none());
        let e = v.eip_release(a).unwrap_err();
        assert!(e.to_string().contains("InvalidIPAddress.InUse"), "{e}");
        v.eip_disassociate(a).unwrap();
        v.eip_associate(own, &other, false).unwrap();
        v.eip_release(a).unwrap();
        assert_eq!(v.eip_list(), before);
    }

    #[test]
    fn the_quota_the_pool_and_nat_gateways_addresses_are_kept() {
        let mut v = lab();
        let held = v.eip_list().len();
        for _ in held..REGION_LIMIT {
            v.eip_allocate(None).unwrap();
        }
        let e = v.eip_allocate(None).unwrap_err();
        assert!(e.to_string().contains("AddressLimitExceeded"), "{e}");
        let mut v = lab();
        let e = v.eip_allocate(Some(Ipv4Addr::new(8, 8, 8, 8))).unwrap_err();
        assert!(e.to_string().contains("not in the lab's pool"), "{e}");
        let nat = v.parts.nat_gateways[0].public_ips[0];
        let e = v.eip_allocate(Some(nat)).unwrap_err();
        assert!(e.to_string().contains("InvalidAddress.InUse"), "{e}");
        let host = v.parts.hosts[0].name.clone();
        let e = v.eip_associate(nat, &host, true).unwrap_err();
        assert!(e.to_string().contains("NAT gateway"), "{e}");
        let e = v.eip_associate(Ipv4Addr::new(203, 0, 113, 99), &host, false).unwrap_err();
        assert!(e.to_string().contains("InvalidAddress.NotFound"), "{e}");
        let e = v.eip_associate(nat, "nobody", false).unwrap_err();
        assert!(e.to_string().contains("InvalidInstanceID.NotFound"), "{e}");
    }
}
