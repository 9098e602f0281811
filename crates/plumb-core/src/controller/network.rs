//! Network operations: create, delete, list, inspect, prune.

use super::addresses::{first_host, Planned};
use super::state::NetEntry;
use super::{driver_err, encode, Controller, PREDEFINED};
use crate::error::{Error, Result};
use crate::events::{now_nanos, Event};
use crate::ids::NetworkId;
use crate::ipam::overlaps;
use crate::journal::Journal;
use crate::model::{validate_network_name, Endpoint, Network, NetworkSpec, Sandbox};
use crate::store::{network_key, Expect, Op};
use crate::validate;
use ipnet::IpNet;
use std::collections::BTreeMap;

/// A network with its endpoints and the sandboxes they are joined to.
#[derive(Debug, Clone)]
pub struct NetworkView {
    /// The network.
    pub network: Network,
    /// Its endpoints, each with the sandbox it is joined to.
    pub endpoints: Vec<(Endpoint, Option<Sandbox>)>,
    /// The ports published to each of its endpoints that is its sandbox's gateway.
    pub published: std::collections::HashMap<crate::EndpointId, Vec<crate::ports::PortMapping>>,
}

impl Controller {
    /// Creates a network. Nothing is left behind when it fails.
    pub async fn create_network(&self, spec: NetworkSpec) -> Result<Network> {
        if PREDEFINED.contains(&spec.name.as_str()) {
            return Err(Error::PredefinedNetwork {
                name: spec.name,
                action: "created",
            });
        }
        self.create_network_inner(spec, false).await
    }

    pub(super) async fn create_network_inner(
        &self,
        mut spec: NetworkSpec,
        predefined: bool,
    ) -> Result<Network> {
        validate_network_name(&spec.name)?;
        if spec.driver.is_empty() {
            spec.driver = "bridge".into();
        }
        if spec.ipam_driver.is_empty() {
            spec.ipam_driver = "default".into();
        }
        let ipam = self.ipam(&spec.ipam_driver).await?;
        let driver = self.resolve_driver(&spec.driver).await?;
        let caps = driver.capabilities();
        if caps.global && self.cluster().is_none() {
            return Err(Error::NoClusterStore {
                driver: spec.driver,
            });
        }
        if spec.scope == crate::model::Scope::Global && !caps.global {
            return Err(Error::invalid(
                "Scope",
                format!(
                    "{} networks are local to one host: a global network needs a driver that spans hosts (overlay)",
                    spec.driver
                ),
            ));
        }
        if caps.needs_addresses && !spec.enable_ipv4 && !spec.enable_ipv6 {
            return Err(Error::invalid(
                "EnableIPv4",
                format!(
                    "a {} network needs IPv4 or IPv6: enable one (--ipv6 for an IPv6-only network)",
                    spec.driver
                ),
            ));
        }
        spec.scope = if caps.global {
            crate::model::Scope::Global
        } else {
            crate::model::Scope::Local
        };
        let mut network = Network {
            id: NetworkId::random(),
            spec,
            pools: Vec::new(),
            created_unix_nanos: if predefined { 0 } else { now_nanos() },
            predefined,
            driver_options: BTreeMap::new(),
        };
        driver
            .probe(&network)
            .await
            .map_err(|e| driver_err(&network.spec.driver, e))?;
        let spec = network.spec.clone();
        let host_routes = if caps.needs_addresses {
            self.os
                .host_routes()
                .await
                .map_err(|e| driver_err(&spec.driver, e))?
        } else {
            Vec::new()
        };

        let mut st = self.lock().await;
        if st.net_names.contains_key(&spec.name) {
            return Err(Error::NetworkExists { name: spec.name });
        }
        if caps.singleton
            && st
                .networks
                .values()
                .any(|n| n.net.spec.driver == spec.driver)
        {
            return Err(Error::SingletonDriver {
                driver: spec.driver,
            });
        }
        let planned = if caps.needs_addresses {
            let others: Vec<(String, IpNet)> = st
                .networks
                .values()
                .flat_map(|n| {
                    n.net
                        .pools
                        .iter()
                        .map(|p| (n.net.spec.name.clone(), p.subnet))
                })
                .collect();
            let planned = self.plan_pools(&spec, &others)?;
            let mut avoid: Vec<IpNet> = others.iter().map(|(_, s)| *s).collect();
            avoid.extend(host_routes.iter().filter(|r| r.prefix_len() > 0));
            Some((planned, avoid))
        } else {
            if !spec.pools.is_empty() {
                return Err(Error::invalid(
                    "IPAM.Config",
                    format!("driver {} does not use addresses", spec.driver),
                ));
            }
            None
        };
        if let Err(e) = driver.check_options(&network) {
            return Err(match driver_err(&spec.driver, e) {
                e @ Error::InvalidParameter { .. } => e,
                e => Error::invalid("Options", e.to_string()),
            });
        }
        let pools = match planned {
            Some((planned, avoid)) => {
                let options = spec.ipam_options.clone().unwrap_or_default();
                self.grant_pools(&ipam, &spec, &planned, &avoid, &options)
                    .await?
            }
            None => Vec::new(),
        };
        network.pools = pools;
        network.driver_options = match driver.check_options(&network) {
            Ok(o) => o,
            Err(e) => {
                for p in &network.pools {
                    self.release_pool(&ipam, p).await;
                }
                return Err(match driver_err(&spec.driver, e) {
                    e @ Error::InvalidParameter { .. } => e,
                    e => Error::invalid("Options", e.to_string()),
                });
            }
        };
        let entry = NetEntry::new(network.clone(), 0);

        let key = network_key(&network.id);
        if let Some(c) = self.cluster() {
            c.set_global(&network.id, caps.global);
        }
        let rev = match self
            .commit(vec![Op::put(key.clone(), encode(&network), Expect::Absent)])
            .await
        {
            Ok(rev) => rev,
            Err(e) => {
                if let Some(c) = self.cluster() {
                    c.set_global(&network.id, false);
                }
                for p in &network.pools {
                    self.release_pool(&ipam, p).await;
                }
                return Err(e);
            }
        };
        let mut journal = Journal::new();
        let store = self.store_for(&key);
        // For a global network this also releases its claims (name, subnets, VNI).
        let forget = self.forget_network_ops(&network).await?;
        journal.push("forget network", async move {
            store.commit(forget).await.map(|_| ()).map_err(Into::into)
        });
        if let Err(e) = driver.create_network(&network).await {
            journal.rollback().await;
            for p in &network.pools {
                self.release_pool(&ipam, p).await;
            }
            let step = format!("creating network {}", network.spec.name);
            return Err(super::step_err(&network.spec.driver, step, e));
        }
        journal.commit();

        st.net_names
            .insert(network.spec.name.clone(), network.id.clone());
        st.networks
            .insert(network.id.clone(), NetEntry { rev, ..entry });
        drop(st);
        self.emit(network_event("create", &network));
        Ok(network)
    }

    /// Works out the pools of a new network from what the user asked: subnets checked and
    /// kept apart from other networks' (`others`), one pool to be picked by the IPAM driver
    /// for each enabled family the user gave no subnet of.
    fn plan_pools(&self, spec: &NetworkSpec, others: &[(String, IpNet)]) -> Result<Vec<Planned>> {
        let mut pools: Vec<Planned> = Vec::new();
        for (i, req) in spec.pools.iter().enumerate() {
            let field = |f: &str| format!("IPAM.Config[{i}].{f}");
            let Some(subnet) = req.subnet else {
                if req.ip_range.is_some() || req.gateway.is_some() || !req.aux_addresses.is_empty()
                {
                    return Err(Error::invalid(
                        field("Subnet"),
                        "ip-range, gateway and aux-address need a subnet",
                    ));
                }
                continue;
            };
            if subnet.trunc() != subnet {
                return Err(Error::invalid(
                    field("Subnet"),
                    format!(
                        "{subnet} has host bits set: did you mean {}?",
                        subnet.trunc()
                    ),
                ));
            }
            validate::subnet(&field("Subnet"), &subnet)?;
            let v6 = matches!(subnet, IpNet::V6(_));
            if v6 && !spec.enable_ipv6 {
                return Err(Error::invalid(
                    field("Subnet"),
                    format!("{subnet} is IPv6 but IPv6 is not enabled: add --ipv6"),
                ));
            }
            if !v6 && !spec.enable_ipv4 {
                return Err(Error::invalid(
                    field("Subnet"),
                    format!("{subnet} is IPv4 but IPv4 is disabled"),
                ));
            }
            if let Some((other, other_subnet)) = others
                .iter()
                .map(|(n, s)| (n.clone(), *s))
                .chain(
                    pools
                        .iter()
                        .filter_map(|p| Some((spec.name.clone(), p.subnet?))),
                )
                .find(|(_, s)| overlaps(s, &subnet))
            {
                return Err(Error::SubnetOverlap {
                    subnet: subnet.to_string(),
                    other,
                    other_subnet: other_subnet.to_string(),
                });
            }
            if let Some(r) = req.ip_range {
                if !subnet.contains(&r) {
                    return Err(Error::invalid(
                        field("IPRange"),
                        format!("{r} is not inside subnet {subnet}"),
                    ));
                }
            }
            if let Some(gw) = req.gateway {
                if !subnet.contains(&gw) {
                    return Err(Error::invalid(
                        field("Gateway"),
                        format!("{gw} is not inside subnet {subnet}"),
                    ));
                }
                validate::host_address(&field("Gateway"), gw, &subnet)?;
            }
            for (name, ip) in &req.aux_addresses {
                if !subnet.contains(ip) {
                    return Err(Error::invalid(
                        field("AuxiliaryAddresses"),
                        format!("{name}={ip} is not inside subnet {subnet}"),
                    ));
                }
                validate::host_address(&field("AuxiliaryAddresses"), *ip, &subnet)?;
            }
            let gateway = req.gateway.or_else(|| first_host(subnet));
            if let Some(gw) = gateway {
                if req.aux_addresses.values().any(|a| *a == gw) {
                    return Err(Error::invalid(
                        field("AuxiliaryAddresses"),
                        format!("{gw} is the gateway"),
                    ));
                }
            }
            pools.push(Planned {
                subnet: Some(subnet),
                ip_range: req.ip_range,
                gateway,
                aux: req.aux_addresses.clone(),
                v6,
            });
        }
        for v6 in [false, true] {
            let enabled = if v6 {
                spec.enable_ipv6
            } else {
                spec.enable_ipv4
            };
            if enabled && !pools.iter().any(|p| p.v6 == v6) {
                pools.push(Planned {
                    subnet: None,
                    ip_range: None,
                    gateway: None,
                    aux: BTreeMap::new(),
                    v6,
                });
            }
        }
        pools.sort_by_key(|p| p.v6);
        Ok(pools)
    }

    /// Deletes a network that has no endpoints.
    pub async fn delete_network(&self, name: &str) -> Result<()> {
        self.ready_driver_of(name).await?;
        let mut st = self.lock().await;
        let id = st.find_network(name)?;
        let entry = st.net(&id)?;
        let network = entry.net.clone();
        if network.predefined {
            return Err(Error::PredefinedNetwork {
                name: network.spec.name,
                action: "removed",
            });
        }
        if !entry.endpoints.is_empty() {
            let names: Vec<String> = entry
                .endpoints
                .iter()
                .filter_map(|e| st.endpoints.get(e).map(|(ep, _)| ep.name.clone()))
                .collect();
            return Err(Error::NetworkHasEndpoints {
                name: network.spec.name,
                endpoints: names.join(", "),
            });
        }
        let rev = entry.rev;
        let driver = self.driver(&network.spec.driver)?;
        if let Some(c) = self.cluster().filter(|c| c.is_global_network(&id)) {
            // Endpoints on other hosts: this host watches them only while it has one of its
            // own on the network, so ask the cluster store.
            let listing = c
                .cfg
                .store
                .list(&format!("endpoints/{id}/"))
                .await
                .map_err(super::cluster::unavailable)?;
            let names: Vec<String> = listing
                .entries
                .iter()
                .filter_map(|e| serde_json::from_slice::<Endpoint>(&e.value).ok())
                .map(|ep| ep.name)
                .collect();
            if !names.is_empty() {
                return Err(Error::NetworkHasEndpoints {
                    name: network.spec.name,
                    endpoints: names.join(", "),
                });
            }
        }
        self.commit(vec![Op::Delete {
            key: network_key(&id),
            expect: Expect::At(rev),
        }])
        .await?;
        if let Some(c) = self.cluster() {
            c.set_global(&id, false);
        }
        st.networks.remove(&id);
        st.net_names.remove(&network.spec.name);
        match self.ipam(&network.spec.ipam_driver).await {
            Ok(ipam) => {
                for p in &network.pools {
                    self.release_pool(&ipam, p).await;
                }
            }
            Err(e) => {
                tracing::warn!(network = %network.spec.name, error = %e, "IPAM driver gone: pools not released")
            }
        }
        drop(st);
        // The store no longer knows the network; if the kernel refuses now, the sweep at the
        // next start removes what is left.
        if let Err(e) = driver.delete_network(&network).await {
            tracing::warn!(network = %network.spec.name, error = %e, "removing kernel objects failed; the next start sweeps them");
        }
        self.emit(network_event("destroy", &network));
        Ok(())
    }

    /// All networks, by name.
    pub async fn networks(&self) -> Vec<NetworkView> {
        let st = self.snapshot();
        let mut v: Vec<NetworkView> = st.networks.values().map(|n| self.view(&st, n)).collect();
        v.sort_by(|a, b| a.network.spec.name.cmp(&b.network.spec.name));
        v
    }

    /// One network by full id, name or unique id prefix.
    pub async fn network(&self, name: &str) -> Result<NetworkView> {
        let st = self.snapshot();
        let id = st.find_network(name)?;
        Ok(self.view(&st, st.net(&id)?))
    }

    fn view(&self, st: &super::state::State, n: &NetEntry) -> NetworkView {
        let mut published = std::collections::HashMap::new();
        let endpoints = n
            .endpoints
            .iter()
            .filter_map(|e| st.endpoints.get(e))
            .map(|(ep, _)| {
                let entry = ep.sandbox.as_ref().and_then(|s| st.sandboxes.get(s));
                if let Some(sb) = entry {
                    if sb.gateway.as_ref() == Some(&ep.id) && !sb.programmed.is_empty() {
                        published.insert(ep.id.clone(), sb.programmed.clone());
                    }
                }
                (ep.clone(), entry.map(|s| s.sb.clone()))
            })
            .collect();
        NetworkView {
            network: n.net.clone(),
            endpoints,
            published,
        }
    }

    /// Deletes every user network without endpoints for which `keep` is false; returns their names.
    pub async fn prune_networks(&self, keep: impl Fn(&Network) -> bool) -> Result<Vec<String>> {
        let candidates: Vec<String> = {
            let st = self.lock().await;
            st.networks
                .values()
                .filter(|n| !n.net.predefined && n.endpoints.is_empty() && !keep(&n.net))
                .map(|n| n.net.id.to_string())
                .collect()
        };
        let mut deleted = Vec::new();
        for id in candidates {
            let name = match self.network(&id).await {
                Ok(v) => v.network.spec.name,
                Err(_) => continue,
            };
            match self.delete_network(&id).await {
                Ok(()) => deleted.push(name),
                // Gained an endpoint meanwhile, or gone: not an error for prune.
                Err(Error::NetworkHasEndpoints { .. } | Error::NetworkNotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        deleted.sort();
        Ok(deleted)
    }
}

pub(super) fn network_event(action: &'static str, n: &Network) -> Event {
    let mut attributes = BTreeMap::new();
    attributes.insert("name".into(), n.spec.name.clone());
    attributes.insert("type".into(), n.spec.driver.clone());
    Event {
        kind: "network",
        action,
        actor_id: n.id.to_string(),
        attributes,
        time_nanos: now_nanos(),
    }
}
