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
        let networks = self.store.list("networks/").await?;
        self.loaded_revision
            .store(networks.revision, std::sync::atomic::Ordering::SeqCst);
        for e in networks.entries {
            let mut n: Network = decode(&e.key, &e.value)?;
            self.restore_pools(&mut n).await?;
            st.net_names.insert(n.spec.name.clone(), n.id.clone());
            st.networks
                .insert(n.id.clone(), NetEntry::new(n, e.revision));
        }
        for e in self.store.list("sandboxes/").await?.entries {
            let sb: Sandbox = decode(&e.key, &e.value)?;
            st.sb_names.insert(sb.spec.name.clone(), sb.id.clone());
            self.restore_ports(&mut st, &sb.id, &sb.spec.ports);
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
        }
        let mut joined = Vec::new();
        for e in self.store.list("endpoints/").await?.entries {
            let ep: Endpoint = decode(&e.key, &e.value)?;
            let Some(n) = st.networks.get_mut(&ep.network) else {
                tracing::warn!(endpoint = %ep.name, "endpoint of an unknown network ignored");
                continue;
            };
            self.restore_addresses(n, &ep).await?;
            n.add_member(&ep);
            if ep.sandbox.is_some() {
                joined.push((ep.clone(), e.revision));
            }
            st.endpoints.insert(ep.id.clone(), (ep, e.revision));
        }

        // Kernel: networks first, then sandboxes, then their endpoints.
        let networks: Vec<Network> = st.networks.values().map(|n| n.net.clone()).collect();
        for n in &networks {
            let driver = self.drivers.resolve(&n.spec.driver).await?;
            driver
                .create_network(n)
                .await
                .map_err(|e| super::driver_err(&n.spec.driver, e))?;
        }
        let sandboxes: Vec<Sandbox> = st.sandboxes.values().map(|s| s.sb.clone()).collect();
        for sb in &sandboxes {
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
            let sb_ok = ep
                .sandbox
                .as_ref()
                .is_some_and(|s| st.sandboxes.contains_key(s));
            if !sb_ok {
                // Joined in a sandbox of another controller sharing this store.
                let internal = st
                    .networks
                    .get(&ep.network)
                    .is_some_and(|n| n.net.spec.internal);
                self.add_remote_names(&ep, internal);
                continue;
            }
            if let Some(sb) = &ep.sandbox {
                self.restore_ports(&mut st, sb, &ep.ports);
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

    pub(super) async fn ensure_predefined(&self) -> Result<()> {
        let have: Vec<String> = {
            let st = self.lock().await;
            st.net_names.keys().cloned().collect()
        };
        let mut specs = Vec::new();
        if self.drivers.get("bridge").is_ok() {
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
            if self.drivers.get(driver).is_ok() {
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
