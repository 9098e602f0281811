//! Start-up: load the store, make the kernel match it, sweep leftovers, add predefined networks.

use super::state::{NetEntry, SbEntry};
use super::{decode, Controller};
use crate::error::{Error, Result};
use crate::model::{Endpoint, Network, NetworkSpec, Sandbox};

impl Controller {
    pub(super) async fn load_and_reconcile(&self) -> Result<()> {
        let mut st = self.lock().await;
        // The follower starts at this listing's revision: what the later listings see
        // beyond it comes again through the watch, and applying it twice is harmless.
        // Global networks and their endpoints come from the cluster store, the rest from
        // the local one; the follower watches the cluster store when there is one.
        let mut stores = vec![self.store.clone()];
        let pending = self
            .cluster_pending
            .load(std::sync::atomic::Ordering::SeqCst);
        if let Some(c) = self.cluster().filter(|_| !pending) {
            stores.push(c.cfg.store.clone());
        }
        let mut network_entries = Vec::new();
        for (i, store) in stores.iter().enumerate() {
            let listing = store
                .list("networks/")
                .await
                .map_err(super::cluster::unavailable)?;
            if i == stores.len() - 1 {
                self.loaded_revision
                    .store(listing.revision, std::sync::atomic::Ordering::SeqCst);
            }
            network_entries.extend(listing.entries.into_iter().map(|e| (i > 0, e)));
        }
        for (global, e) in network_entries {
            let mut n: Network = decode(&e.key, &e.value)?;
            if let Some(c) = self.cluster() {
                c.set_global(&n.id, global);
            }
            self.restore_pools(&mut n).await?;
            st.net_names.insert(n.spec.name.clone(), n.id.clone());
            st.networks
                .insert(n.id.clone(), NetEntry::new(n, e.revision));
        }
        for e in self.store.list("sandboxes/").await?.entries {
            let sb: Sandbox = decode(&e.key, &e.value)?;
            st.sb_names.insert(sb.spec.name.clone(), sb.id.clone());
            let (id, ports) = (sb.id.clone(), sb.spec.ports.clone());
            st.sandboxes.insert(
                sb.id.clone(),
                SbEntry {
                    sb,
                    rev: e.revision,
                    endpoints: imbl::OrdSet::new(),
                    gateway: None,
                    programmed: Vec::new(),
                },
            );
            self.restore_ports(&mut st, &id, &ports);
        }
        let mut joined = Vec::new();
        let mut endpoint_entries = Vec::new();
        for store in &stores {
            let listing = store
                .list("endpoints/")
                .await
                .map_err(super::cluster::unavailable)?;
            endpoint_entries.extend(listing.entries);
        }
        // Endpoints of other hosts are kept only on global networks this host has an
        // endpoint on (those whose endpoints it watches).
        let mut decoded = Vec::with_capacity(endpoint_entries.len());
        for e in endpoint_entries {
            let ep: Endpoint = decode(&e.key, &e.value)?;
            decoded.push((ep, e.revision));
        }
        let with_local: std::collections::HashSet<crate::NetworkId> = decoded
            .iter()
            .filter(|(ep, _)| st.joined_here(ep))
            .map(|(ep, _)| ep.network.clone())
            .collect();
        for (ep, revision) in decoded {
            let global = self
                .cluster()
                .is_some_and(|c| c.is_global_network(&ep.network));
            let local = st.joined_here(&ep);
            if global && !local && !with_local.contains(&ep.network) {
                continue;
            }
            let Some(n) = st.networks.get_mut(&ep.network) else {
                tracing::warn!(endpoint = %ep.name, "endpoint of an unknown network ignored");
                continue;
            };
            self.restore_addresses(n, &ep).await?;
            n.add_member(&ep);
            if ep.sandbox.is_some() {
                joined.push((ep.clone(), revision));
            }
            st.endpoints.insert(ep.id.clone(), (ep, revision));
        }

        // Kernel: networks first, then sandboxes, then their endpoints.
        let networks: Vec<Network> = st.networks.values().map(|n| n.net.clone()).collect();
        for n in &networks {
            // A plugin keeps its own state: its networks are not created again, and the
            // plugin is looked for when one of them is next used.
            let Some(driver) = self.drivers.get(&n.spec.driver) else {
                continue;
            };
            if driver.capabilities().keeps_state {
                continue;
            }
            driver
                .create_network(n)
                .await
                .map_err(|e| super::driver_err(&n.spec.driver, e))?;
        }
        let sandboxes: Vec<Sandbox> = st.sandboxes.values().map(|s| s.sb.clone()).collect();
        for sb in &sandboxes {
            if sb.spec.netns.is_some() && !self.os.exists(sb).await {
                // Its runtime removed it while plumbd was away: nothing to plumb; the
                // sandbox stays until it is removed (as a runtime's DEL does).
                tracing::warn!(sandbox = %sb.spec.name, netns = %sb.key, "adopted namespace gone");
                continue;
            }
            if !self.os.exists(sb).await {
                tracing::info!(sandbox = %sb.spec.name, "namespace missing; recreating it");
            }
            self.os.create(sb).await.map_err(|e| Error::Os {
                sandbox: sb.spec.name.clone(),
                source: e,
            })?;
            if let (Some(r), false) = (&self.config.resolver, sb.spec.host_mode) {
                r.attach(sb).await.map_err(|e| Error::Os {
                    sandbox: sb.spec.name.clone(),
                    source: e,
                })?;
            }
        }
        for (ep, rev) in joined {
            let sb_ok = st.joined_here(&ep);
            if !sb_ok {
                // Joined in a sandbox of another controller sharing this store.
                let internal = st
                    .networks
                    .get(&ep.network)
                    .is_some_and(|n| n.net.spec.internal);
                self.add_remote_names(&ep, internal);
                if let Some(n) = st.networks.get(&ep.network) {
                    self.add_peer(&n.net, &ep).await;
                }
                continue;
            }
            if let Some(sb) = &ep.sandbox {
                self.restore_ports(&mut st, sb, &ep.ports);
            }
            let kept = self
                .drivers
                .get(&self.network_driver_name(&st, &ep))
                .is_none_or(|d| d.capabilities().keeps_state);
            if kept {
                // Still plumbed: the plugin made it and the namespace kept it. Only the
                // bookkeeping (route, names, hosts, ports) is done again.
                let info = crate::driver::JoinInfo {
                    gateway_v4: ep.gateway_v4,
                    gateway_v6: ep.gateway_v6,
                    ifname: None,
                };
                if let Err(e) = self.finish_join(&mut st, ep.clone(), rev, info).await {
                    tracing::error!(endpoint = %ep.name, error = %e, "could not restore endpoint");
                }
                continue;
            }
            if let Err(e) = self.plumb_in(&mut st, ep.clone(), rev).await {
                tracing::error!(endpoint = %ep.name, error = %e, "could not restore endpoint");
            }
        }
        for id in st.sandboxes.keys().cloned().collect::<Vec<_>>() {
            if let Err(e) = self.refresh_sandbox(&mut st, &id).await {
                tracing::warn!(error = %e, "could not refresh sandbox");
            }
        }

        // Sweep what the store does not know.
        let nets: Vec<&Network> = networks.iter().collect();
        let eps: Vec<&Endpoint> = st
            .endpoints
            .values()
            .map(|(e, _)| e)
            .filter(|e| e.sandbox.is_some())
            .collect();
        for driver in self.drivers.known() {
            if pending && driver.capabilities().global {
                // Global state is not loaded: what looks unknown may be live.
                continue;
            }
            if let Err(e) = driver.sweep(&nets, &eps).await {
                tracing::warn!(driver = driver.name(), error = %e, "sweep failed");
            }
        }
        let sbs: Vec<&Sandbox> = sandboxes.iter().collect();
        if let Err(e) = self.os.sweep(&sbs).await {
            tracing::warn!(error = %e, "sandbox sweep failed");
        }
        Ok(())
    }

    /// The driver name of the network of `ep`.
    fn network_driver_name(&self, st: &super::state::State, ep: &Endpoint) -> String {
        st.networks
            .get(&ep.network)
            .map(|n| n.net.spec.driver.clone())
            .unwrap_or_default()
    }

    pub(super) async fn ensure_predefined(&self) -> Result<()> {
        let have: Vec<String> = {
            let st = self.lock().await;
            st.net_names.keys().cloned().collect()
        };
        let mut specs = Vec::new();
        if self.drivers.get("bridge").is_some() {
            let mut options = std::collections::BTreeMap::new();
            options.insert(
                "com.docker.network.bridge.name".to_owned(),
                self.config.default_bridge.clone(),
            );
            options.insert(
                "com.docker.network.bridge.default_bridge".to_owned(),
                "true".to_owned(),
            );
            specs.push(NetworkSpec {
                name: "bridge".into(),
                driver: "bridge".into(),
                enable_ipv4: true,
                options,
                ..Default::default()
            });
        }
        for (name, driver) in [("host", "host"), ("none", "null")] {
            if self.drivers.get(driver).is_some() {
                specs.push(NetworkSpec {
                    name: name.into(),
                    driver: driver.into(),
                    ..Default::default()
                });
            }
        }
        for spec in specs {
            if !have.contains(&spec.name) {
                self.create_network_inner(spec, true).await?;
            }
        }
        Ok(())
    }
}
