//! Network interfaces (ENIs) that move between instances at run time, as
//! EC2's DetachNetworkInterface and AttachNetworkInterface do them: `natgw
//! eni`. A host of the file is one interface; a host with `secondary = true`
//! is a secondary interface of the instance whose namespace it sits in, and
//! may move to another instance with its private address, its Elastic IP
//! and its groups. The topology does not change (the interface is the
//! same); the daemon moves its TUN device between namespaces.

use super::{ChangeError, Vpc};
use serde::{Deserialize, Serialize};

/// Where a detached interface waits (a namespace of the gateway's own, made
/// when first needed).
pub const DETACHED: &str = "eni-detached";

/// An interface as `natgw eni list` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EniView {
    pub name: String,
    pub ip: String,
    pub elastic_ip: Option<String>,
    pub groups: Vec<String>,
    /// The instance (a primary host) it is attached to; None: detached.
    pub instance: Option<String>,
    pub primary: bool,
}

/// A move the daemon carries out: interface (attachment) `index` from
/// namespace `from` to namespace `to` (as the file names them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EniMove {
    pub index: usize,
    pub from: String,
    pub to: String,
}

fn err(code: &str, text: String) -> ChangeError {
    ChangeError::Eip(format!("{code}: {text}"))
}

impl Vpc {
    /// The instance whose namespace is `ns`: its primary host.
    fn instance_of(&self, ns: &str) -> Option<&str> {
        self.parts
            .hosts
            .iter()
            .zip(&self.attachments)
            .find(|(_, a)| !a.secondary && a.namespace == ns)
            .map(|(h, _)| h.name.as_str())
    }

    /// Every host interface, with the instance it is attached to.
    pub fn eni_list(&self) -> Vec<EniView> {
        let groups = self.parts.security_groups.as_ref();
        self.parts
            .hosts
            .iter()
            .zip(&self.attachments)
            .map(|(h, a)| EniView {
                name: h.name.clone(),
                ip: h.ip.to_string(),
                elastic_ip: h.elastic_ip.map(|e| e.to_string()),
                groups: h
                    .groups
                    .iter()
                    .filter_map(|g| groups.and_then(|gs| gs.get(usize::from(g.0))).map(|g| g.name.clone()))
                    .collect(),
                instance: self.instance_of(&a.namespace).map(str::to_string),
                primary: !a.secondary,
            })
            .collect()
    }

    fn secondary_index(&self, eni: &str) -> Result<usize, ChangeError> {
        let i = self
            .parts
            .hosts
            .iter()
            .position(|h| h.name == eni)
            .ok_or_else(|| err("InvalidNetworkInterfaceID.NotFound", format!("no interface named `{eni}`")))?;
        if !self.attachments[i].secondary {
            return Err(err(
                "OperationNotPermitted",
                format!("`{eni}` is an instance's primary network interface, which cannot be detached or moved"),
            ));
        }
        Ok(i)
    }

    /// DetachNetworkInterface.
    pub fn eni_detach(&mut self, eni: &str) -> Result<EniMove, ChangeError> {
        let i = self.secondary_index(eni)?;
        let from = self.attachments[i].namespace.clone();
        if from == DETACHED {
            return Err(err("IncorrectState", format!("`{eni}` is not attached")));
        }
        self.eni_place(i, DETACHED);
        Ok(EniMove { index: i, from, to: DETACHED.to_string() })
    }

    /// AttachNetworkInterface to instance `instance` (a primary host), in the
    /// same subnet's VPC (natgw's subnets have no availability zone).
    pub fn eni_attach(&mut self, eni: &str, instance: &str) -> Result<EniMove, ChangeError> {
        let i = self.secondary_index(eni)?;
        let from = self.attachments[i].namespace.clone();
        if from != DETACHED {
            let at = self.instance_of(&from).unwrap_or("?");
            return Err(err("InvalidNetworkInterface.InUse", format!("`{eni}` is attached to {at}: detach it first")));
        }
        let Some(j) = self.parts.hosts.iter().position(|h| h.name == instance) else {
            return Err(err("InvalidInstanceID.NotFound", format!("no instance named `{instance}`")));
        };
        if self.attachments[j].secondary {
            return Err(err("InvalidInstanceID.NotFound", format!("`{instance}` is an interface, not an instance")));
        }
        if self.parts.hosts[j].vpc != self.parts.hosts[i].vpc {
            return Err(err("InvalidParameterCombination", format!("`{eni}` and `{instance}` are in different VPCs")));
        }
        let to = self.attachments[j].namespace.clone();
        self.eni_place(i, &to);
        Ok(EniMove { index: i, from, to })
    }

    /// Puts interface `i` in namespace `ns` (as the file names them; the
    /// detached interfaces' one marks it detached in the topology too).
    pub fn eni_place(&mut self, i: usize, ns: &str) {
        self.attachments[i].namespace = ns.to_string();
        self.parts.hosts[i].detached = ns == DETACHED;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = include_str!("../../../examples/scenarios/eni-move.toml");

    fn instance(v: &Vpc, eni: &str) -> Option<String> {
        v.eni_list().into_iter().find(|e| e.name == eni).and_then(|e| e.instance)
    }

    #[test]
    fn a_secondary_interface_moves_and_a_primary_one_does_not() {
        let mut v = super::super::parse("eni.toml", FILE).unwrap();
        assert_eq!(instance(&v, "eni-svc").as_deref(), Some("web1"));
        let e = v.eni_detach("web1").unwrap_err();
        assert!(e.to_string().contains("OperationNotPermitted"), "{e}");
        let e = v.eni_attach("eni-svc", "web2").unwrap_err();
        assert!(e.to_string().contains("InvalidNetworkInterface.InUse"), "{e}");
        let m = v.eni_detach("eni-svc").unwrap();
        assert_eq!((m.from.as_str(), m.to.as_str()), ("web1", DETACHED));
        assert_eq!(instance(&v, "eni-svc"), None);
        let e = v.eni_detach("eni-svc").unwrap_err();
        assert!(e.to_string().contains("IncorrectState"), "{e}");
        let e = v.eni_attach("eni-svc", "eni-svc").unwrap_err();
        assert!(e.to_string().contains("not an instance"), "{e}");
        let m = v.eni_attach("eni-svc", "web2").unwrap();
        assert_eq!((m.from.as_str(), m.to.as_str()), (DETACHED, "web2"));
        let view = v.eni_list().into_iter().find(|e| e.name == "eni-svc").unwrap();
        // It keeps its address, Elastic IP and groups.
        assert_eq!(
            (view.ip.as_str(), view.elastic_ip.as_deref(), view.groups.as_slice(), view.instance.as_deref()),
            ("10.0.0.50", Some("203.0.113.50"), &["svc-sg".to_string()][..], Some("web2"))
        );
    }

    #[test]
    fn a_secondary_interface_must_sit_in_an_instances_namespace() {
        let e = super::super::parse("eni.toml", &FILE.replace("namespace = \"web1\"", "namespace = \"nowhere\""))
            .unwrap_err();
        assert!(e.message.contains("not in an instance's namespace") && e.fix.contains("namespace = \"web1\""), "{e}");
    }
}
