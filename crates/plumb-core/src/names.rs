//! The DNS name index: which names each sandbox can resolve, kept up to date by the
//! controller on every join and leave, read by the resolver without the controller's lock.
//!
//! A joined endpoint registers, on its network, its sandbox's name and hostname, its own name
//! and its aliases (case-insensitive). A sandbox sees the names of the networks it is joined
//! to and nothing else.

use crate::ids::{EndpointId, NetworkId, SandboxId};
use crate::model::{Endpoint, Sandbox};
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::RwLock;

/// One address record: which endpoint holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    endpoint: EndpointId,
    addr: IpAddr,
}

#[derive(Default)]
struct Inner {
    /// network -> lowercase name -> addresses (nested so a lookup borrows, never allocates).
    by_name: HashMap<NetworkId, HashMap<String, Vec<Entry>>>,
    /// (network, address) -> the name PTR answers with.
    by_addr: HashMap<(NetworkId, IpAddr), String>,
    /// What each endpoint registered, to undo it.
    registered: HashMap<EndpointId, (NetworkId, SandboxId, Vec<String>, Vec<IpAddr>)>,
    /// Networks each sandbox is joined to, with whether the network is internal.
    sandbox_nets: HashMap<SandboxId, HashMap<NetworkId, bool>>,
}

/// What a lookup found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// The name is known on the sandbox's networks: these addresses of the asked family
    /// (possibly none, when the name only has the other family).
    Found(Vec<IpAddr>),
    /// Not a name of the sandbox's networks.
    Unknown,
}

/// The index. Cheap to read concurrently.
#[derive(Default)]
pub struct NameIndex {
    inner: RwLock<Inner>,
}

fn names_of(sb: &Sandbox, ep: &Endpoint) -> Vec<String> {
    let mut v: Vec<String> = Vec::with_capacity(3 + ep.aliases.len());
    v.push(sb.spec.name.to_ascii_lowercase());
    v.push(sb.hostname().to_ascii_lowercase());
    v.push(ep.name.to_ascii_lowercase());
    v.extend(ep.aliases.iter().map(|a| a.to_ascii_lowercase()));
    let mut seen = HashSet::new();
    v.retain(|n| seen.insert(n.clone()));
    v
}

impl NameIndex {
    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|p| p.into_inner())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a joined endpoint (replacing what it registered before).
    pub fn add(&self, sb: &Sandbox, ep: &Endpoint, internal: bool) {
        self.remove(&ep.id);
        let names = names_of(sb, ep);
        let addrs: Vec<IpAddr> = [ep.ipv4, ep.ipv6]
            .into_iter()
            .flatten()
            .map(|a| a.addr())
            .collect();
        let mut g = self.write();
        for n in &names {
            let list = g
                .by_name
                .entry(ep.network.clone())
                .or_default()
                .entry(n.clone())
                .or_default();
            for a in &addrs {
                list.push(Entry {
                    endpoint: ep.id.clone(),
                    addr: *a,
                });
            }
        }
        for a in &addrs {
            g.by_addr
                .insert((ep.network.clone(), *a), sb.spec.name.to_ascii_lowercase());
        }
        g.sandbox_nets
            .entry(sb.id.clone())
            .or_default()
            .insert(ep.network.clone(), internal);
        g.registered.insert(
            ep.id.clone(),
            (ep.network.clone(), sb.id.clone(), names, addrs),
        );
    }

    /// Forgets what an endpoint registered.
    pub fn remove(&self, ep: &EndpointId) {
        let mut g = self.write();
        let Some((net, sb, names, addrs)) = g.registered.remove(ep) else {
            return;
        };
        if let Some(net_names) = g.by_name.get_mut(&net) {
            for n in names {
                if let Some(list) = net_names.get_mut(&n) {
                    list.retain(|e| &e.endpoint != ep);
                    if list.is_empty() {
                        net_names.remove(&n);
                    }
                }
            }
            if net_names.is_empty() {
                g.by_name.remove(&net);
            }
        }
        for a in addrs {
            g.by_addr.remove(&(net.clone(), a));
        }
        // A sandbox has at most one endpoint per network: it has left this one.
        if let Some(nets) = g.sandbox_nets.get_mut(&sb) {
            nets.remove(&net);
            if nets.is_empty() {
                g.sandbox_nets.remove(&sb);
            }
        }
    }

    /// Addresses of `name` (lowercase, without trailing dot) visible to `sandbox`.
    pub fn lookup(&self, sandbox: &SandboxId, name: &str, v6: bool) -> Lookup {
        let g = self.read();
        let Some(nets) = g.sandbox_nets.get(sandbox) else {
            return Lookup::Unknown;
        };
        let mut found = false;
        let mut out = Vec::new();
        for net in nets.keys() {
            if let Some(list) = g.by_name.get(net).and_then(|m| m.get(name)) {
                found = true;
                out.extend(list.iter().map(|e| e.addr).filter(|a| a.is_ipv6() == v6));
            }
        }
        out.sort();
        out.dedup();
        if found {
            Lookup::Found(out)
        } else {
            Lookup::Unknown
        }
    }

    /// The name of the endpoint holding `addr` on one of `sandbox`'s networks.
    pub fn reverse(&self, sandbox: &SandboxId, addr: IpAddr) -> Option<String> {
        let g = self.read();
        let nets = g.sandbox_nets.get(sandbox)?;
        nets.keys()
            .find_map(|n| g.by_addr.get(&(n.clone(), addr)).cloned())
    }

    /// True when the sandbox may send other names upstream: it has a non-internal network,
    /// or no network at all joined yet.
    pub fn may_forward(&self, sandbox: &SandboxId) -> bool {
        let g = self.read();
        match g.sandbox_nets.get(sandbox) {
            Some(nets) => nets.values().any(|internal| !internal),
            None => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::SandboxSpec;

    fn sb(name: &str) -> Sandbox {
        Sandbox {
            id: SandboxId::random(),
            spec: SandboxSpec {
                name: name.into(),
                hostname: format!("{name}-host"),
                ..Default::default()
            },
            key: String::new(),
            dir: String::new(),
            created_unix_nanos: 0,
        }
    }

    fn ep(net: &NetworkId, name: &str, ip: &str, aliases: &[&str]) -> Endpoint {
        Endpoint {
            id: EndpointId::random(),
            name: name.into(),
            network: net.clone(),
            mac: None,
            ipv4: Some(format!("{ip}/24").parse().unwrap()),
            ipv6: None,
            aliases: aliases.iter().map(|s| s.to_string()).collect(),
            gw_priority: 0,
            driver_opts: Default::default(),
            sandbox: None,
            ifname: None,
            gateway_v4: None,
            gateway_v6: None,
            node: None,
            ports: vec![],
        }
    }

    #[test]
    fn visibility_aliases_and_removal() {
        let idx = NameIndex::default();
        let (n1, n2) = (NetworkId::random(), NetworkId::random());
        let (a, b, c) = (sb("a"), sb("b"), sb("c"));
        let ea = ep(&n1, "a", "10.0.0.2", &["db"]);
        let eb = ep(&n1, "b", "10.0.0.3", &["db"]);
        let ec = ep(&n2, "c", "10.1.0.2", &[]);
        idx.add(&a, &ea, false);
        idx.add(&b, &eb, false);
        idx.add(&c, &ec, true);
        let ip = |s: &str| -> IpAddr { s.parse().unwrap() };
        assert_eq!(
            idx.lookup(&a.id, "b", false),
            Lookup::Found(vec![ip("10.0.0.3")])
        );
        assert_eq!(
            idx.lookup(&a.id, "b-host", false),
            Lookup::Found(vec![ip("10.0.0.3")])
        );
        assert_eq!(
            idx.lookup(&a.id, "db", false),
            Lookup::Found(vec![ip("10.0.0.2"), ip("10.0.0.3")])
        );
        assert_eq!(idx.lookup(&a.id, "db", true), Lookup::Found(vec![]));
        assert_eq!(
            idx.lookup(&a.id, "c", false),
            Lookup::Unknown,
            "no leak across networks"
        );
        assert_eq!(idx.reverse(&a.id, ip("10.0.0.3")).as_deref(), Some("b"));
        assert_eq!(idx.reverse(&a.id, ip("10.1.0.2")), None);
        assert!(idx.may_forward(&a.id));
        assert!(!idx.may_forward(&c.id), "internal only: no forwarding");
        idx.remove(&eb.id);
        assert_eq!(
            idx.lookup(&a.id, "db", false),
            Lookup::Found(vec![ip("10.0.0.2")])
        );
        assert_eq!(idx.lookup(&a.id, "b", false), Lookup::Unknown);
        assert_eq!(
            idx.lookup(&b.id, "a", false),
            Lookup::Unknown,
            "b left: sees nothing"
        );
    }
}
