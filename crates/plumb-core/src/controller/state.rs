//! The controller's in-memory view of the store, with the indexes lookups need.

use crate::error::{Error, Result};
use crate::ids::{is_full_id, is_id_prefix, EndpointId, NetworkId, SandboxId};
use crate::ipam::Holder;
use crate::model::{Endpoint, Network, Sandbox};
use crate::ports::{PortMapping, Proto};
use crate::store::Revision;
use std::collections::BTreeSet;

/// A network with the addresses held in it and its endpoints. The addresses themselves come
/// from the network's IPAM driver; `held` names who holds each, for clear errors.
#[derive(Clone)]
pub(super) struct NetEntry {
    pub net: Network,
    pub rev: Revision,
    pub held: imbl::HashMap<std::net::IpAddr, Holder>,
    pub endpoints: imbl::OrdSet<EndpointId>,
    /// Endpoint names in use, for O(1) uniqueness checks.
    pub names: imbl::HashSet<String>,
}

impl NetEntry {
    /// The entry of a network whose gateway and auxiliary addresses are held.
    pub fn new(net: Network, rev: Revision) -> Self {
        let mut held = imbl::HashMap::new();
        for p in &net.pools {
            if let Some(gw) = p.gateway {
                held.insert(gw, Holder::Gateway);
            }
            for (name, ip) in &p.aux_addresses {
                held.insert(*ip, Holder::Aux(name.clone()));
            }
        }
        NetEntry {
            net,
            rev,
            held,
            endpoints: imbl::OrdSet::new(),
            names: Default::default(),
        }
    }

    /// The pool whose subnet holds `ip`.
    pub fn pool_for(&self, ip: std::net::IpAddr) -> Option<&crate::model::Pool> {
        self.net.pools.iter().find(|p| p.subnet.contains(&ip))
    }

    /// The first pool of the family.
    pub fn pool_of_family(&self, v6: bool) -> Option<&crate::model::Pool> {
        self.net
            .pools
            .iter()
            .find(|p| matches!(p.subnet, ipnet::IpNet::V6(_)) == v6)
    }

    /// Records an endpoint as a member.
    pub fn add_member(&mut self, ep: &Endpoint) {
        self.endpoints.insert(ep.id.clone());
        self.names.insert(ep.name.clone());
    }

    /// Forgets a member (addresses are released separately).
    pub fn remove_member(&mut self, ep: &Endpoint) {
        self.endpoints.remove(&ep.id);
        self.names.remove(&ep.name);
    }
}

/// A sandbox with its endpoints.
#[derive(Clone)]
pub(super) struct SbEntry {
    pub sb: Sandbox,
    pub rev: Revision,
    pub endpoints: imbl::OrdSet<EndpointId>,
    pub gateway: Option<EndpointId>,
    /// The ports programmed on the gateway endpoint now.
    pub programmed: Vec<PortMapping>,
}

/// Everything the controller knows. The maps are persistent (structurally shared), so a
/// snapshot for readers costs a few reference counts, whatever the number of objects.
#[derive(Default, Clone)]
pub(super) struct State {
    pub networks: imbl::HashMap<NetworkId, NetEntry>,
    pub net_names: imbl::HashMap<String, NetworkId>,
    pub endpoints: imbl::HashMap<EndpointId, (Endpoint, Revision)>,
    pub sandboxes: imbl::HashMap<SandboxId, SbEntry>,
    pub sb_names: imbl::HashMap<String, SandboxId>,
    /// Published ports by (protocol, host port), for O(1) conflict checks.
    pub published: imbl::HashMap<(Proto, u16), Vec<(PortMapping, SandboxId)>>,
    /// Timing of the operation holding the lock.
    pub phases: crate::timing::Phases,
    /// Endpoints whose connect is between allocation and completion (the operation lock is
    /// let go meanwhile): counted as members, not yet listed.
    pub pending: imbl::HashSet<EndpointId>,
}

impl State {
    /// True when `ep` is joined to a sandbox of this host (not another controller's).
    pub fn joined_here(&self, ep: &Endpoint) -> bool {
        ep.sandbox
            .as_ref()
            .is_some_and(|s| self.sandboxes.contains_key(s))
    }

    /// Checks `ports` against the published ones and against each other.
    pub fn check_ports(&self, ports: &[PortMapping]) -> Result<()> {
        for (i, m) in ports.iter().enumerate() {
            if m.host_port == 0 {
                // A free port is picked for it.
                continue;
            }
            let holder = self
                .published
                .get(&(m.proto, m.host_port))
                .and_then(|v| v.iter().find(|(p, _)| p.conflicts(m)))
                .map(|(_, sb)| {
                    self.sandboxes
                        .get(sb)
                        .map(|s| s.sb.spec.name.clone())
                        .unwrap_or_else(|| sb.to_string())
                })
                .or_else(|| {
                    ports[..i]
                        .iter()
                        .any(|p| p.conflicts(m))
                        .then(|| "this request (twice)".to_owned())
                });
            if let Some(holder) = holder {
                return Err(Error::PortInUse {
                    port: m.to_string(),
                    holder,
                });
            }
        }
        Ok(())
    }

    /// Records a sandbox's published ports.
    pub fn publish(&mut self, sb: &SandboxId, ports: &[PortMapping]) {
        for m in ports {
            self.published
                .entry((m.proto, m.host_port))
                .or_default()
                .push((*m, sb.clone()));
        }
    }

    /// Forgets a sandbox's published ports.
    pub fn unpublish(&mut self, sb: &SandboxId, ports: &[PortMapping]) {
        for m in ports {
            let key = (m.proto, m.host_port);
            if let Some(v) = self.published.get_mut(&key) {
                v.retain(|(p, s)| !(p == m && s == sb));
                if v.is_empty() {
                    self.published.remove(&key);
                }
            }
        }
    }

    /// Every port a sandbox publishes: its own and those of its joined endpoints, sorted.
    pub fn sandbox_ports(&self, sb: &SandboxId) -> Vec<PortMapping> {
        let Some(entry) = self.sandboxes.get(sb) else {
            return Vec::new();
        };
        let mut ports = entry.sb.spec.ports.clone();
        for e in &entry.endpoints {
            if let Some((ep, _)) = self.endpoints.get(e) {
                ports.extend_from_slice(&ep.ports);
            }
        }
        ports.sort();
        ports
    }

    /// Resolves a network by full id, exact name, then unique id prefix.
    pub fn find_network(&self, key: &str) -> Result<NetworkId> {
        if is_full_id(key) {
            if let Some(id) = NetworkId::parse(key).filter(|id| self.networks.contains_key(id)) {
                return Ok(id);
            }
        }
        if let Some(id) = self.net_names.get(key) {
            return Ok(id.clone());
        }
        if is_id_prefix(key) {
            let mut hits = self
                .networks
                .keys()
                .filter(|id| id.as_str().starts_with(key));
            if let Some(first) = hits.next() {
                let rest = hits.count();
                if rest > 0 {
                    return Err(Error::NetworkAmbiguous {
                        name: key.to_owned(),
                        count: rest + 1,
                    });
                }
                return Ok(first.clone());
            }
        }
        Err(Error::NetworkNotFound {
            name: key.to_owned(),
        })
    }

    /// Resolves a sandbox by full id, exact name, then unique id prefix.
    pub fn find_sandbox(&self, key: &str) -> Result<SandboxId> {
        if let Some(id) = SandboxId::parse(key).filter(|id| self.sandboxes.contains_key(id)) {
            return Ok(id);
        }
        if let Some(id) = self.sb_names.get(key) {
            return Ok(id.clone());
        }
        if is_id_prefix(key) {
            let hits: Vec<&SandboxId> = self
                .sandboxes
                .keys()
                .filter(|id| id.as_str().starts_with(key))
                .collect();
            if hits.len() == 1 {
                return Ok(hits[0].clone());
            }
        }
        Err(Error::SandboxNotFound {
            name: key.to_owned(),
        })
    }

    /// The network entry (internal invariant: ids come from the maps).
    pub fn net(&self, id: &NetworkId) -> Result<&NetEntry> {
        self.networks.get(id).ok_or_else(|| Error::NetworkNotFound {
            name: id.to_string(),
        })
    }

    /// Mutable network entry.
    pub fn net_mut(&mut self, id: &NetworkId) -> Result<&mut NetEntry> {
        self.networks
            .get_mut(id)
            .ok_or_else(|| Error::NetworkNotFound {
                name: id.to_string(),
            })
    }

    /// The sandbox entry.
    pub fn sb(&self, id: &SandboxId) -> Result<&SbEntry> {
        self.sandboxes
            .get(id)
            .ok_or_else(|| Error::SandboxNotFound {
                name: id.to_string(),
            })
    }

    /// Mutable sandbox entry.
    pub fn sb_mut(&mut self, id: &SandboxId) -> Result<&mut SbEntry> {
        self.sandboxes
            .get_mut(id)
            .ok_or_else(|| Error::SandboxNotFound {
                name: id.to_string(),
            })
    }

    /// The endpoint with its revision.
    pub fn ep(&self, id: &EndpointId) -> Result<&(Endpoint, Revision)> {
        self.endpoints
            .get(id)
            .ok_or_else(|| Error::EndpointNotFound {
                name: id.to_string(),
            })
    }

    /// The endpoint of `sandbox` on `network`, if any.
    pub fn endpoint_on(&self, sandbox: &SandboxId, network: &NetworkId) -> Option<EndpointId> {
        let sb = self.sandboxes.get(sandbox)?;
        sb.endpoints
            .iter()
            .find(|e| {
                self.endpoints
                    .get(*e)
                    .is_some_and(|(ep, _)| &ep.network == network)
            })
            .cloned()
    }

    /// The lowest free `ethN` in a sandbox.
    pub fn free_ifname(&self, sandbox: &SandboxId) -> String {
        let used = self.used_ifnames(sandbox);
        (0..)
            .map(|i| format!("eth{i}"))
            .find(|n| !used.contains(n.as_str()))
            .unwrap_or_else(|| "eth0".into())
    }

    /// The interface names the sandbox's endpoints have.
    pub fn used_ifnames(&self, sandbox: &SandboxId) -> BTreeSet<&str> {
        self.sandboxes
            .get(sandbox)
            .map(|sb| {
                sb.endpoints
                    .iter()
                    .filter_map(|e| self.endpoints.get(e))
                    .filter_map(|(ep, _)| ep.ifname.as_deref())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The interface name for a new endpoint in `sandbox`: the one its driver options ask for
    /// (Docker's `com.docker.network.endpoint.ifname`, what CNI runtimes pass as
    /// CNI_IFNAME), or the next free `ethN`.
    pub fn ifname_for(
        &self,
        sandbox: &SandboxId,
        opts: &std::collections::BTreeMap<String, String>,
    ) -> crate::Result<String> {
        let Some(want) = opts.get(IFNAME_OPTION) else {
            return Ok(self.free_ifname(sandbox));
        };
        let ok = !want.is_empty()
            && want.len() <= 15
            && want != "lo"
            && !want.starts_with('.')
            && want
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if !ok {
            return Err(crate::Error::invalid(
                "DriverOpts",
                format!("{IFNAME_OPTION}={want:?}: an interface name is 1-15 letters, digits, '-', '_' or '.'"),
            ));
        }
        if self.used_ifnames(sandbox).contains(want.as_str()) {
            return Err(crate::Error::invalid(
                "DriverOpts",
                format!("{IFNAME_OPTION}={want}: the sandbox has an interface of that name"),
            ));
        }
        Ok(want.clone())
    }
}

/// Docker's endpoint option naming the interface inside the sandbox.
pub const IFNAME_OPTION: &str = "com.docker.network.endpoint.ifname";
