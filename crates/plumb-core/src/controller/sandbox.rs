//! Sandbox operations: create, delete (with all its endpoints), list, inspect.

use super::repair::RepairAction;
use super::state::SbEntry;
use super::{encode, Controller};
use crate::error::{Error, Result};
use crate::events::{now_nanos, Event};
use crate::ids::SandboxId;
use crate::model::{validate_name, Endpoint, Network, Sandbox, SandboxSpec};
use crate::store::{endpoint_key, sandbox_key, Expect, Op};
use std::collections::BTreeMap;

/// A sandbox with its endpoints and their networks.
#[derive(Debug, Clone)]
pub struct SandboxView {
    /// The sandbox.
    pub sandbox: Sandbox,
    /// Its endpoints with their networks, by interface name.
    pub endpoints: Vec<(Endpoint, Network)>,
    /// The endpoint giving the default route.
    pub gateway_endpoint: Option<crate::EndpointId>,
    /// Every port it publishes: its own and its endpoints'.
    pub ports: Vec<crate::ports::PortMapping>,
}

impl Controller {
    /// Takes back what creating `sb` did outside the store (its resolver, its namespace and
    /// files); what cannot be removed now becomes a repair item.
    async fn undo_sandbox_os(&self, sb: &Sandbox) {
        if let Some(r) = &self.config.resolver {
            r.detach(sb).await;
        }
        if let Err(undo) = self.os.delete(sb).await {
            let action = RepairAction::DeleteSandbox(Box::new(sb.clone()));
            self.repairs
                .record("remove namespace", &sb.spec.name, action, &undo);
        }
    }

    /// Creates a sandbox: a network namespace with loopback up, hosts and resolv.conf.
    pub async fn create_sandbox(&self, mut spec: SandboxSpec) -> Result<Sandbox> {
        validate_name("Name", &spec.name)?;
        check_files_input(&spec)?;
        let mut st = self.lock().await;
        st.phases.start();
        if st.sb_names.contains_key(&spec.name) {
            return Err(Error::SandboxExists { name: spec.name });
        }
        if spec.host_mode && !spec.ports.is_empty() {
            return Err(Error::invalid(
                "Ports",
                "a host-mode sandbox uses the host's ports directly: publish nothing",
            ));
        }
        let id = SandboxId::random();
        if let Some(path) = &spec.netns {
            self.check_adoption(&st, &spec, path).await?;
        }
        let hold = !spec.runtime_holds_ports;
        self.reserve_ports_as(&mut st, &id, &mut spec.ports, hold)?;
        st.phases.mark("ports");
        let sb = Sandbox {
            key: match &spec.netns {
                Some(path) => self.os.adopted_key(&id, path),
                None => self.os.key_for(&id),
            },
            dir: self.os.dir_for(&id),
            id,
            spec,
            created_unix_nanos: now_nanos(),
        };
        let key = sandbox_key(&sb.id);
        // The record and the kernel side at once (as a connect does): a crash between them
        // leaves either a record the start heals or a namespace the start-up sweep removes.
        let commit = self.commit(vec![Op::Put {
            key: key.clone(),
            value: encode(&sb),
            expect: Expect::Absent,
            lease: None,
        }]);
        let kernel = async {
            let os_result = match self.os.create(&sb).await {
                Ok(()) => self.os.write_hosts(&sb, &[]).await,
                Err(e) => Err(e),
            };
            match (os_result, &self.config.resolver) {
                (Ok(()), Some(r)) if !sb.spec.host_mode => r.attach(&sb).await,
                (r, _) => r,
            }
        };
        let (committed, os_result) = tokio::join!(commit, kernel);
        st.phases.mark("commit_and_namespace");
        let rev = match committed {
            Ok(rev) => rev,
            Err(e) => {
                self.undo_sandbox_os(&sb).await;
                self.release_ports(&mut st, &sb.id, &sb.spec.ports);
                return Err(e);
            }
        };
        if let Err(e) = os_result {
            self.undo_sandbox_os(&sb).await;
            self.release_ports(&mut st, &sb.id, &sb.spec.ports);
            if let Err(undo) = self
                .commit(vec![Op::delete(key.clone(), Expect::Any)])
                .await
            {
                let action = RepairAction::StoreWrite { key, value: None };
                self.repairs
                    .record("unrecord sandbox", &sb.spec.name, action, &undo);
            }
            return Err(Error::Os {
                sandbox: sb.spec.name.clone(),
                source: e,
            });
        }
        st.sb_names.insert(sb.spec.name.clone(), sb.id.clone());
        st.sandboxes.insert(
            sb.id.clone(),
            SbEntry {
                sb: sb.clone(),
                rev,
                endpoints: imbl::OrdSet::new(),
                gateway: None,
                programmed: Vec::new(),
            },
        );
        st.phases.finish("create_sandbox");
        drop(st);
        self.emit(sandbox_event("create", &sb));
        Ok(sb)
    }

    /// Deletes a sandbox: its endpoints leave and are deleted, then its namespace goes.
    pub async fn delete_sandbox(&self, name: &str) -> Result<()> {
        // The drivers of its networks at hand (plugins are found again after a restart);
        // one that cannot be found does not keep the sandbox: its namespace goes anyway.
        for net in self.networks_of_sandbox(name) {
            if let Err(e) = self.ready_driver_of(net.as_str()).await {
                tracing::warn!(sandbox = name, error = %e, "driver not at hand for removal");
            }
        }
        let (_, _sandbox) = self.lock_sandbox(name).await?;
        let mut st = self.lock().await;
        let id = st.find_sandbox(name)?;
        let entry = st.sb(&id)?;
        let sb = entry.sb.clone();
        let rev = entry.rev;
        let entry_gateway = entry.gateway.clone();
        let programmed = entry.programmed.clone();
        let eps: Vec<Endpoint> = entry
            .endpoints
            .iter()
            .filter_map(|e| st.endpoints.get(e).map(|(ep, _)| ep.clone()))
            .collect();
        let mut ops: Vec<Op> = eps
            .iter()
            .map(|ep| Op::Delete {
                key: endpoint_key(&ep.network, &ep.id),
                expect: Expect::Any,
            })
            .collect();
        ops.push(Op::Delete {
            key: sandbox_key(&id),
            expect: Expect::At(rev),
        });
        self.commit(ops).await?;
        if let Some(r) = &self.config.resolver {
            r.detach(&sb).await;
        }
        // Withdrawing only: a failure becomes a repair item inside, never an error here.
        let was = (entry_gateway.as_ref(), programmed.as_slice());
        if let Err(e) = self.sync_external(&st, &sb, was, (None, &[])).await {
            tracing::warn!(sandbox = %sb.spec.name, error = %e, "withdrawing published ports failed");
        }
        self.release_ports(&mut st, &id, &sb.spec.ports);
        for ep in &eps {
            self.release_ports(&mut st, &id, &ep.ports);
            self.names.remove(&ep.id);
            let net = st.net(&ep.network)?.net.clone();
            if let Ok(driver) = self.driver(&net.spec.driver) {
                if let Err(e) = driver.leave(&net, ep, &sb).await {
                    tracing::warn!(endpoint = %ep.name, error = %e, "leave failed; the namespace removal takes the interface");
                }
            }
            self.driver_delete_endpoint(&net, ep).await;
            if let Some(n) = st.networks.get_mut(&ep.network) {
                self.release_addresses(n, ep).await;
                n.remove_member(ep);
            }
            st.endpoints.remove(&ep.id);
        }
        st.sandboxes.remove(&id);
        st.sb_names.remove(&sb.spec.name);
        self.drop_sandbox_lock(&id);
        if let Err(e) = self.os.delete(&sb).await {
            tracing::warn!(sandbox = %sb.spec.name, error = %e, "removing the namespace failed; the next start sweeps it");
        }
        drop(st);
        self.emit(sandbox_event("destroy", &sb));
        Ok(())
    }

    /// Refuses a namespace that cannot be adopted: not an absolute path, not a network
    /// namespace, plumbd's own, another sandbox's, or asked for with host mode.
    async fn check_adoption(
        &self,
        st: &super::state::State,
        spec: &SandboxSpec,
        path: &str,
    ) -> Result<()> {
        let clean = path.starts_with('/')
            && path.len() <= 4096
            && !path.chars().any(char::is_control)
            && !path.split('/').any(|c| c == "..");
        if !clean {
            return Err(Error::invalid(
                "Netns",
                format!("{path:?} is not an absolute path to a network namespace"),
            ));
        }
        if spec.host_mode {
            return Err(Error::invalid(
                "Netns",
                "a host-mode sandbox has no namespace of its own to adopt",
            ));
        }
        let taken = |s: &&super::state::SbEntry| {
            s.sb.key == path || s.sb.spec.netns.as_deref() == Some(path)
        };
        if let Some(other) = st.sandboxes.values().find(taken) {
            return Err(Error::NamespaceAdopted {
                path: path.to_owned(),
                sandbox: other.sb.spec.name.clone(),
            });
        }
        self.os
            .check_adoptable(path)
            .await
            .map_err(|reason| Error::invalid("Netns", reason))
    }

    /// The ids of the networks the sandbox called `name` has endpoints on (none if unknown).
    fn networks_of_sandbox(&self, name: &str) -> Vec<crate::NetworkId> {
        let st = self.snapshot();
        let Ok(id) = st.find_sandbox(name) else {
            return Vec::new();
        };
        st.sb(&id)
            .map(|sb| {
                sb.endpoints
                    .iter()
                    .filter_map(|e| st.endpoints.get(e).map(|(ep, _)| ep.network.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// What the driver of `net` wants its users to know (see [`NetworkDriver::notes`]); empty
    /// when the driver is not at hand.
    ///
    /// [`NetworkDriver::notes`]: crate::driver::NetworkDriver::notes
    pub fn network_notes(&self, net: &crate::model::Network) -> Vec<String> {
        self.drivers
            .get(&net.spec.driver)
            .map(|d| d.notes(net))
            .unwrap_or_default()
    }

    /// What the driver of `ep`'s network tells of it (a plugin's `EndpointOperInfo`); empty
    /// when the driver has nothing to say, is not at hand, or fails (logged). Never waits for
    /// a plugin to be found.
    pub async fn endpoint_driver_info(
        &self,
        net: &crate::model::Network,
        ep: &Endpoint,
    ) -> std::collections::BTreeMap<String, serde_json::Value> {
        let Some(driver) = self.drivers.get(&net.spec.driver) else {
            return Default::default();
        };
        match driver.endpoint_info(net, ep).await {
            Ok(m) => m,
            Err(e) => {
                tracing::debug!(endpoint = %ep.name, error = %e, "no driver information");
                Default::default()
            }
        }
    }

    /// The sandboxes that follow the life of a process (`AutoRemove`): (id, name, owner).
    pub fn owned_sandboxes(&self) -> Vec<(SandboxId, String, crate::model::Owner)> {
        self.snapshot()
            .sandboxes
            .values()
            .filter_map(|s| Some((s.sb.id.clone(), s.sb.spec.name.clone(), s.sb.spec.owner?)))
            .collect()
    }

    /// All sandboxes, by name.
    pub async fn sandboxes(&self) -> Vec<SandboxView> {
        let st = self.snapshot();
        let mut v: Vec<SandboxView> = st.sandboxes.values().map(|s| view(&st, s)).collect();
        v.sort_by(|a, b| a.sandbox.spec.name.cmp(&b.sandbox.spec.name));
        v
    }

    /// One sandbox by full id, name or unique id prefix.
    pub async fn sandbox(&self, name: &str) -> Result<SandboxView> {
        let st = self.snapshot();
        let id = st.find_sandbox(name)?;
        Ok(view(&st, st.sb(&id)?))
    }
}

fn view(st: &super::state::State, s: &SbEntry) -> SandboxView {
    let mut endpoints: Vec<(Endpoint, Network)> = s
        .endpoints
        .iter()
        .filter_map(|e| st.endpoints.get(e))
        .filter_map(|(ep, _)| {
            st.networks
                .get(&ep.network)
                .map(|n| (ep.clone(), n.net.clone()))
        })
        .collect();
    endpoints.sort_by(|a, b| a.0.ifname.cmp(&b.0.ifname));
    SandboxView {
        sandbox: s.sb.clone(),
        endpoints,
        gateway_endpoint: s.gateway.clone(),
        ports: st.sandbox_ports(&s.sb.id),
    }
}

fn sandbox_event(action: &'static str, sb: &Sandbox) -> Event {
    let mut attributes = BTreeMap::new();
    attributes.insert("name".into(), sb.spec.name.clone());
    Event {
        kind: "sandbox",
        action,
        actor_id: sb.id.to_string(),
        attributes,
        time_nanos: now_nanos(),
    }
}

/// Checks everything of `spec` that is written into the sandbox's hostname, hosts and
/// resolv.conf files, so that no value can add a line of its own.
fn check_files_input(spec: &SandboxSpec) -> Result<()> {
    use crate::validate;
    if !spec.hostname.is_empty() {
        if spec.hostname.len() > 63 {
            return Err(Error::invalid("Hostname", "at most 63 characters"));
        }
        validate::hostname("Hostname", &spec.hostname)?;
    }
    if !spec.domainname.is_empty() {
        validate::hostname("Domainname", &spec.domainname)?;
    }
    for (name, _) in &spec.extra_hosts {
        validate::hostname("ExtraHosts", name)?;
    }
    for ip in &spec.dns {
        validate::nameserver(ip)?;
    }
    for d in &spec.dns_search {
        validate::search_domain(d)?;
    }
    for o in &spec.dns_options {
        validate::dns_option(o)?;
    }
    Ok(())
}
