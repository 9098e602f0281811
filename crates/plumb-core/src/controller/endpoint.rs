//! Endpoint operations: create, delete, join, leave, and connect/disconnect (both at once).

use super::gateway::{self, Candidate};
use super::repair::RepairAction;
use super::state::State;
use super::{encode, step_err, Controller};
use crate::driver::DefaultRoute;
use crate::error::{Error, Result};
use crate::events::{now_nanos, Event};
use crate::ids::{is_id_prefix, EndpointId, NetworkId, SandboxId};
use crate::model::{validate_name, Endpoint, EndpointSpec, MacAddr};
use crate::store::{endpoint_key, Expect, Op};
use std::collections::BTreeMap;
use std::net::IpAddr;

impl Controller {
    /// Creates an endpoint on a network, with its addresses; it joins no sandbox yet.
    pub async fn create_endpoint(&self, network: &str, spec: EndpointSpec) -> Result<Endpoint> {
        self.ready_driver_of(network).await?;
        let mut st = self.lock().await;
        let net_id = st.find_network(network)?;
        let mut ep = self.allocate(&mut st, &net_id, spec).await?;
        let net = st.net(&net_id)?.net.clone();
        if let Err(e) = self.driver_create_endpoint(&net, &mut ep).await {
            self.release_addresses(st.net_mut(&net_id)?, &ep).await;
            return Err(e);
        }
        let key = endpoint_key(&net_id, &ep.id);
        let rev = match self
            .commit(vec![Op::put(key, encode(&ep), Expect::Absent)])
            .await
        {
            Ok(rev) => rev,
            Err(e) => {
                self.driver_delete_endpoint(&net, &ep).await;
                self.release_addresses(st.net_mut(&net_id)?, &ep).await;
                return Err(e);
            }
        };
        st.net_mut(&net_id)?.add_member(&ep);
        st.endpoints.insert(ep.id.clone(), (ep.clone(), rev));
        Ok(ep)
    }

    /// Deletes an endpoint that is joined to no sandbox, releasing its addresses.
    pub async fn delete_endpoint(&self, network: &str, endpoint: &str) -> Result<()> {
        self.ready_driver_of(network).await?;
        let mut st = self.lock().await;
        let net_id = st.find_network(network)?;
        let ep_id = find_endpoint(&st, &net_id, endpoint)?;
        let (ep, rev) = st.ep(&ep_id)?.clone();
        if let Some(sb) = &ep.sandbox {
            return Err(Error::EndpointInUse {
                name: ep.name,
                sandbox: sandbox_name(&st, sb),
            });
        }
        self.commit(vec![Op::Delete {
            key: endpoint_key(&net_id, &ep_id),
            expect: Expect::At(rev),
        }])
        .await?;
        let net = st.net(&net_id)?.net.clone();
        self.driver_delete_endpoint(&net, &ep).await;
        self.forget_endpoint(&mut st, &ep).await;
        Ok(())
    }

    /// Joins an existing endpoint to a sandbox.
    pub async fn join(&self, network: &str, endpoint: &str, sandbox: &str) -> Result<Endpoint> {
        self.ready_driver_of(network).await?;
        let (_, _sandbox) = self.lock_sandbox(sandbox).await?;
        let mut st = self.lock().await;
        let net_id = st.find_network(network)?;
        let ep_id = find_endpoint(&st, &net_id, endpoint)?;
        let sb_id = st.find_sandbox(sandbox)?;
        let (mut ep, rev) = st.ep(&ep_id)?.clone();
        if let Some(other) = &ep.sandbox {
            return Err(Error::EndpointInUse {
                name: ep.name,
                sandbox: sandbox_name(&st, other),
            });
        }
        self.check_attachable(&st, &net_id, &sb_id)?;
        ep.node = self.node_for(&st, &net_id);
        ep.sandbox = Some(sb_id.clone());
        ep.ifname = Some(st.ifname_for(&sb_id, &ep.driver_opts)?);
        self.reserve_ports(&mut st, &sb_id, &mut ep.ports)?;
        let new_rev = match self
            .commit(vec![Op::Put {
                key: endpoint_key(&net_id, &ep_id),
                value: encode(&ep),
                expect: Expect::At(rev),
                lease: None,
            }])
            .await
        {
            Ok(r) => r,
            Err(e) => {
                self.release_ports(&mut st, &sb_id, &ep.ports);
                return Err(e);
            }
        };
        let previous = st.ep(&ep_id)?.clone();
        if let Err(e) = self.plumb_in(&mut st, ep.clone(), new_rev).await {
            self.release_ports(&mut st, &sb_id, &ep.ports);
            let (old, _) = previous.clone();
            let key = endpoint_key(&net_id, &ep_id);
            if let Err(undo) = self
                .commit(vec![Op::put(key.clone(), encode(&old), Expect::Any)])
                .await
            {
                let action = RepairAction::StoreWrite {
                    key,
                    value: Some(encode(&old)),
                };
                self.repairs
                    .record("unrecord join", &old.name, action, &undo);
            }
            st.endpoints.insert(ep_id, previous);
            return Err(e);
        }
        let ep = st.ep(&ep_id)?.0.clone();
        self.emit(connect_event("connect", &st, &ep));
        Ok(ep)
    }

    /// Takes an endpoint out of its sandbox; it keeps its addresses.
    pub async fn leave(&self, network: &str, endpoint: &str, sandbox: &str) -> Result<Endpoint> {
        self.ready_driver_of(network).await?;
        let (_, _sandbox) = self.lock_sandbox(sandbox).await?;
        let mut st = self.lock().await;
        let net_id = st.find_network(network)?;
        let ep_id = find_endpoint(&st, &net_id, endpoint)?;
        let sb_id = st.find_sandbox(sandbox)?;
        let (ep, rev) = st.ep(&ep_id)?.clone();
        if ep.sandbox.as_ref() != Some(&sb_id) {
            return Err(Error::EndpointNotJoined {
                name: ep.name,
                sandbox: sandbox.to_owned(),
            });
        }
        let event = connect_event("disconnect", &st, &ep);
        self.unplumb(&mut st, &ep).await?;
        let mut left = ep.clone();
        left.sandbox = None;
        left.ifname = None;
        left.gateway_v4 = None;
        left.gateway_v6 = None;
        let rev = match self
            .commit(vec![Op::Put {
                key: endpoint_key(&net_id, &ep_id),
                value: encode(&left),
                expect: Expect::At(rev),
                lease: None,
            }])
            .await
        {
            Ok(r) => r,
            Err(e) => {
                // Put it back as it was.
                let name = ep.name.clone();
                if let Err(undo) = self.plumb_in(&mut st, ep, rev).await {
                    let action = RepairAction::Replumb(ep_id);
                    self.repairs
                        .record("plumb endpoint again", name, action, &undo);
                }
                return Err(e);
            }
        };
        self.release_ports(&mut st, &sb_id, &ep.ports);
        st.endpoints.insert(ep_id, (left.clone(), rev));
        self.emit(event);
        Ok(left)
    }

    /// Creates an endpoint on `network` and joins it to `sandbox`, as one operation.
    pub async fn connect(
        &self,
        network: &str,
        sandbox: &str,
        spec: EndpointSpec,
    ) -> Result<Endpoint> {
        self.ready_driver_of(network).await?;
        let dynamic = spec.ipv4.is_none() && spec.ipv6.is_none();
        let mut attempt = 0;
        let ep = loop {
            match self.connect_once(network, sandbox, spec.clone()).await {
                // Another host claimed the address first (global networks): take the next.
                Err(Error::AddressInUse { holder, .. })
                    if dynamic && holder == super::cluster::CLAIMED_ELSEWHERE && attempt < 32 =>
                {
                    attempt += 1;
                    self.hold_claimed(network).await;
                }
                r => break r?,
            }
        };
        if ep.node.is_some() {
            self.joined_global(&ep.network);
        }
        if self.needs_gateway_bridge(network) {
            if let Err(e) = self.sync_gateway_bridge(sandbox).await {
                // All or nothing: without its way out the connect is undone.
                if let Err(undo) = Box::pin(self.disconnect(network, sandbox)).await {
                    tracing::warn!(error = %undo, "undoing a connect whose gateway bridge failed");
                }
                return Err(e);
            }
        }
        Ok(ep)
    }

    async fn connect_once(
        &self,
        network: &str,
        sandbox: &str,
        mut spec: EndpointSpec,
    ) -> Result<Endpoint> {
        let (locked, _sandbox) = self.lock_sandbox(sandbox).await?;
        let mut st = self.lock().await;
        st.phases.start();
        let net_id = st.find_network(network)?;
        let sb_id = st.find_sandbox(sandbox)?;
        if sb_id != locked {
            // Removed and made anew under the same name meanwhile: not the one we locked.
            return Err(Error::SandboxNotFound {
                name: sandbox.to_owned(),
            });
        }
        self.check_attachable(&st, &net_id, &sb_id)?;
        if spec.name.is_empty() {
            spec.name = st.sb(&sb_id)?.sb.spec.name.clone();
        }
        // Checked before anything is allocated.
        let ifname = st.ifname_for(&sb_id, &spec.driver_opts)?;
        let mut ep = self.allocate(&mut st, &net_id, spec).await?;
        ep.node = self.node_for(&st, &net_id);
        ep.sandbox = Some(sb_id.clone());
        ep.ifname = Some(ifname);
        if let Err(e) = self.reserve_ports(&mut st, &sb_id, &mut ep.ports) {
            self.release_addresses(st.net_mut(&net_id)?, &ep).await;
            return Err(e);
        }
        st.phases.mark("allocate");
        let key = endpoint_key(&net_id, &ep.id);
        // The endpoint counts as a member (its name and addresses are held, its network
        // cannot be removed) while the operation lock is let go for the slow half: the
        // intent's commit (an fsync) and the kernel half of the join, run at the same time.
        // Operations on other sandboxes proceed meanwhile; this sandbox's lock keeps its own
        // operations out. Whichever half fails, the other is undone; after a crash between
        // them, start-up reconciliation re-plumbs a recorded endpoint or sweeps a stray veth.
        st.net_mut(&net_id)?.add_member(&ep);
        st.pending.insert(ep.id.clone());
        let net = st.net(&net_id)?.net.clone();
        let sb = st.sb(&sb_id)?.sb.clone();
        let mut phases = std::mem::take(&mut st.phases);
        drop(st);
        if let Err(e) = self.driver_create_endpoint(&net, &mut ep).await {
            let mut st = self.lock().await;
            st.pending.remove(&ep.id);
            self.release_ports(&mut st, &sb_id, &ep.ports);
            let entry = st.net_mut(&net_id)?;
            entry.remove_member(&ep);
            self.release_addresses(entry, &ep).await;
            return Err(e);
        }
        let commit = self.commit(vec![Op::put(key.clone(), encode(&ep), Expect::Absent)]);
        let (committed, joined) = tokio::join!(commit, self.join_kernel_of(&net, &sb, &ep));
        let mut st = self.lock().await;
        st.pending.remove(&ep.id);
        phases.mark("commit_and_driver_join");
        st.phases = phases;
        let rev = match (committed, joined) {
            (Ok(rev), Ok(info)) => Ok((rev, info)),
            // Recorded but not plumbed: undone below like any failed join.
            (Ok(_), Err(e)) => Err(e),
            (Err(e), joined) => {
                if joined.is_ok() {
                    self.undo_join_kernel(&st, &ep).await;
                }
                self.driver_delete_endpoint(&net, &ep).await;
                self.release_ports(&mut st, &sb_id, &ep.ports);
                let entry = st.net_mut(&net_id)?;
                entry.remove_member(&ep);
                self.release_addresses(entry, &ep).await;
                return Err(e);
            }
        };
        let finished = match rev {
            Ok((rev, info)) => self.finish_join(&mut st, ep.clone(), rev, info).await,
            Err(e) => Err(e),
        };
        if let Err(e) = finished {
            self.release_ports(&mut st, &sb_id, &ep.ports);
            if let Err(undo) = self
                .commit(vec![Op::delete(key.clone(), Expect::Any)])
                .await
            {
                let action = RepairAction::StoreWrite { key, value: None };
                self.repairs
                    .record("unrecord endpoint", &ep.name, action, &undo);
            }
            self.driver_delete_endpoint(&net, &ep).await;
            self.forget_endpoint(&mut st, &ep).await;
            return Err(e);
        }
        let ep = st.ep(&ep.id)?.0.clone();
        self.emit(connect_event("connect", &st, &ep));
        st.phases.finish("connect");
        Ok(ep)
    }

    /// Takes the sandbox's endpoint on `network` out and deletes it.
    pub async fn disconnect(&self, network: &str, sandbox: &str) -> Result<()> {
        self.ready_driver_of(network).await?;
        let overlay = self.needs_gateway_bridge(network);
        let global = {
            let snap = self.snapshot();
            snap.find_network(network)
                .ok()
                .filter(|id| self.cluster().is_some_and(|c| c.is_global_network(id)))
        };
        self.disconnect_only(network, sandbox).await?;
        if let Some(id) = global {
            self.left_global(&id).await;
        }
        if overlay {
            // Its way out goes with its last overlay endpoint.
            if let Err(e) = self.sync_gateway_bridge(sandbox).await {
                tracing::warn!(sandbox, error = %e, "leaving the gateway bridge failed");
            }
        }
        Ok(())
    }

    async fn disconnect_only(&self, network: &str, sandbox: &str) -> Result<()> {
        let (_, _sandbox) = self.lock_sandbox(sandbox).await?;
        let mut st = self.lock().await;
        let net_id = st.find_network(network)?;
        let sb_id = st.find_sandbox(sandbox)?;
        let Some(ep_id) = st.endpoint_on(&sb_id, &net_id) else {
            return Err(Error::NotAttached {
                sandbox: sandbox.to_owned(),
                network: network.to_owned(),
            });
        };
        let (ep, rev) = st.ep(&ep_id)?.clone();
        let event = connect_event("disconnect", &st, &ep);
        self.unplumb(&mut st, &ep).await?;
        if let Err(e) = self
            .commit(vec![Op::Delete {
                key: endpoint_key(&net_id, &ep_id),
                expect: Expect::At(rev),
            }])
            .await
        {
            let name = ep.name.clone();
            if let Err(undo) = self.plumb_in(&mut st, ep, rev).await {
                let action = RepairAction::Replumb(ep_id);
                self.repairs
                    .record("plumb endpoint again", name, action, &undo);
            }
            return Err(e);
        }
        self.release_ports(&mut st, &sb_id, &ep.ports);
        let net = st.net(&net_id)?.net.clone();
        self.driver_delete_endpoint(&net, &ep).await;
        self.forget_endpoint(&mut st, &ep).await;
        self.emit(event);
        Ok(())
    }

    /// Refuses joins that break the model: two endpoints of one network in a sandbox, or
    /// mixing host mode with other networks.
    fn check_attachable(&self, st: &State, net_id: &NetworkId, sb_id: &SandboxId) -> Result<()> {
        let net = &st.net(net_id)?.net;
        let sb = st.sb(sb_id)?;
        if st.endpoint_on(sb_id, net_id).is_some() {
            return Err(Error::AlreadyAttached {
                sandbox: sb.sb.spec.name.clone(),
                network: net.spec.name.clone(),
            });
        }
        let host_driver = self.driver(&net.spec.driver)?.capabilities().host_mode;
        if host_driver != sb.sb.spec.host_mode {
            let reason = if host_driver {
                "only sandboxes created in host mode can join the host network".to_owned()
            } else {
                format!(
                    "a host-mode sandbox shares the host's stack and cannot join network {}",
                    net.spec.name
                )
            };
            return Err(Error::HostModeMismatch {
                sandbox: sb.sb.spec.name.clone(),
                reason,
            });
        }
        Ok(())
    }

    /// Takes addresses and a MAC for a new endpoint. On error nothing stays held.
    async fn allocate(
        &self,
        st: &mut State,
        net_id: &NetworkId,
        spec: EndpointSpec,
    ) -> Result<Endpoint> {
        validate_name("EndpointName", &spec.name)?;
        for a in &spec.aliases {
            validate_dns_name(a)?;
        }
        if let Some(m) = &spec.mac {
            crate::validate::mac("MacAddress", m)?;
        }
        let entry = st.net(net_id)?;
        let net_name = entry.net.spec.name.clone();
        let driver = entry.net.spec.driver.clone();
        if entry.names.contains(&spec.name) {
            return Err(Error::EndpointExists {
                name: spec.name,
                network: net_name,
            });
        }
        let caps = self.driver(&driver)?.capabilities();
        let needs = caps.needs_addresses;
        let entry = st.net_mut(net_id)?;
        let mut ep = Endpoint {
            id: EndpointId::random(),
            name: spec.name,
            network: net_id.clone(),
            mac: spec.mac,
            ipv4: None,
            ipv6: None,
            aliases: spec.aliases,
            gw_priority: spec.gw_priority,
            driver_opts: spec.driver_opts,
            sandbox: None,
            ifname: None,
            gateway_v4: None,
            gateway_v6: None,
            node: None,
            ports: spec.ports,
        };
        if !needs {
            if !ep.ports.is_empty() {
                return Err(Error::invalid(
                    "Ports",
                    format!("network {net_name} ({driver}) cannot publish ports"),
                ));
            }
            if spec.ipv4.is_some() || spec.ipv6.is_some() {
                return Err(Error::invalid(
                    "IPAMConfig",
                    format!("network {net_name} ({driver}) does not assign addresses"),
                ));
            }
            return Ok(ep);
        }
        self.take_addresses(entry, &mut ep, [(spec.ipv4, false), (spec.ipv6, true)])
            .await?;
        if ep.mac.is_none() && !caps.picks_mac {
            ep.mac = Some(match ep.ipv4.map(|a| a.addr()) {
                Some(IpAddr::V4(v4)) => MacAddr::from_ipv4(v4),
                _ => MacAddr::random(),
            });
        }
        Ok(ep)
    }

    /// Plumbs a persisted, joined endpoint into its sandbox and records it; on failure the
    /// kernel is left as before and the in-memory state unchanged.
    pub(super) async fn plumb_in(
        &self,
        st: &mut State,
        ep: Endpoint,
        rev: crate::store::Revision,
    ) -> Result<()> {
        if ep.sandbox.is_none() {
            return Ok(());
        }
        let info = self.join_kernel(st, &ep).await?;
        st.phases.mark("driver_join");
        self.finish_join(st, ep, rev, info).await
    }

    /// The kernel half of a join: the driver plumbs the endpoint into its sandbox.
    async fn join_kernel(&self, st: &State, ep: &Endpoint) -> Result<crate::driver::JoinInfo> {
        let net = &st.net(&ep.network)?.net;
        let Some(sb_id) = &ep.sandbox else {
            return Ok(Default::default());
        };
        let sb = &st.sb(sb_id)?.sb;
        self.join_kernel_of(net, sb, ep).await
    }

    /// [`Controller::join_kernel`] with the network and sandbox given.
    async fn join_kernel_of(
        &self,
        net: &crate::model::Network,
        sb: &crate::model::Sandbox,
        ep: &Endpoint,
    ) -> Result<crate::driver::JoinInfo> {
        let driver = self.driver(&net.spec.driver)?;
        let ifname = ep.ifname.clone().unwrap_or_else(|| "eth0".into());
        driver.join(net, ep, sb, &ifname).await.map_err(|e| {
            let step = format!(
                "joining endpoint {} of network {} to sandbox {}",
                ep.name, net.spec.name, sb.spec.name
            );
            step_err(&net.spec.driver, step, e)
        })
    }

    /// Undoes [`Controller::join_kernel`] (its failure becomes a repair item).
    async fn undo_join_kernel(&self, st: &State, ep: &Endpoint) {
        let (Ok(n), Some(Ok(s))) = (st.net(&ep.network), ep.sandbox.as_ref().map(|s| st.sb(s)))
        else {
            return;
        };
        let (net, sb) = (n.net.clone(), s.sb.clone());
        let Ok(driver) = self.driver(&net.spec.driver) else {
            return;
        };
        if let Err(undo) = driver.leave(&net, ep, &sb).await {
            let action = RepairAction::Leave {
                network: Box::new(net),
                endpoint: Box::new(ep.clone()),
                sandbox: Box::new(sb.clone()),
            };
            self.repairs
                .record("leave sandbox", &ep.name, action, &undo);
        }
    }

    /// The rest of a join once the kernel half is done: the endpoint recorded as joined, the
    /// sandbox's default route, hosts file and published ports, its names. On failure the
    /// kernel half is undone and the state is as before.
    pub(super) async fn finish_join(
        &self,
        st: &mut State,
        mut ep: Endpoint,
        rev: crate::store::Revision,
        info: crate::driver::JoinInfo,
    ) -> Result<()> {
        let net = st.net(&ep.network)?.net.clone();
        let Some(sb_id) = ep.sandbox.clone() else {
            return Ok(());
        };
        let sb = st.sb(&sb_id)?.sb.clone();
        ep.gateway_v4 = info.gateway_v4;
        ep.gateway_v6 = info.gateway_v6;
        let mut rev = rev;
        let mut renamed = Ok(());
        if info.ifname.is_some() && info.ifname != ep.ifname {
            // The driver named the interface itself (a plugin's prefix): recorded, so that
            // leaving after a restart finds it.
            ep.ifname = info.ifname;
            let key = crate::store::endpoint_key(&ep.network, &ep.id);
            match self
                .commit(vec![Op::put(key, encode(&ep), Expect::At(rev))])
                .await
            {
                Ok(r) => rev = r,
                Err(e) => renamed = Err(e),
            }
        }
        let previous = st.endpoints.insert(ep.id.clone(), (ep.clone(), rev));
        st.sb_mut(&sb_id)?.endpoints.insert(ep.id.clone());
        let refreshed = match renamed {
            Ok(()) => self.refresh_sandbox(st, &sb_id).await,
            Err(e) => Err(e),
        };
        if let Err(e) = refreshed {
            st.sb_mut(&sb_id)?.endpoints.remove(&ep.id);
            match previous {
                Some(p) => st.endpoints.insert(ep.id.clone(), p),
                None => st.endpoints.remove(&ep.id),
            };
            let left = match self.driver(&net.spec.driver) {
                Ok(driver) => driver.leave(&net, &ep, &sb).await,
                Err(e) => Err(e.into()),
            };
            if let Err(undo) = left {
                let action = RepairAction::Leave {
                    network: Box::new(net.clone()),
                    endpoint: Box::new(ep.clone()),
                    sandbox: Box::new(sb.clone()),
                };
                self.repairs
                    .record("leave sandbox", &ep.name, action, &undo);
            }
            if let Err(undo) = self.refresh_sandbox(st, &sb_id).await {
                let action = RepairAction::RefreshSandbox(sb_id.clone());
                self.repairs
                    .record("refresh sandbox", &sb.spec.name, action, &undo);
            }
            return Err(e);
        }
        self.names.add(&sb, &ep, net.spec.internal);
        st.phases.mark("names");
        Ok(())
    }

    /// Unplumbs a joined endpoint from its sandbox and moves the gateway if it had it.
    pub(super) async fn unplumb(&self, st: &mut State, ep: &Endpoint) -> Result<()> {
        let Some(sb_id) = ep.sandbox.clone() else {
            return Ok(());
        };
        let net = st.net(&ep.network)?.net.clone();
        let sb = st.sb(&sb_id)?.sb.clone();
        let driver = self.driver(&net.spec.driver)?;
        // Move the default route away first so that it never points at a dead interface, and
        // stop answering its names.
        self.names.remove(&ep.id);
        st.sb_mut(&sb_id)?.endpoints.remove(&ep.id);
        if let Err(e) = self.refresh_sandbox(st, &sb_id).await {
            tracing::warn!(sandbox = %sb.spec.name, error = %e, "moving the default route failed");
        }
        if let Err(e) = driver.leave(&net, ep, &sb).await {
            self.names.add(&sb, ep, net.spec.internal);
            st.sb_mut(&sb_id)?.endpoints.insert(ep.id.clone());
            if let Err(undo) = self.refresh_sandbox(st, &sb_id).await {
                let action = RepairAction::RefreshSandbox(sb_id.clone());
                self.repairs
                    .record("refresh sandbox", &sb.spec.name, action, &undo);
            }
            let step = format!(
                "taking endpoint {} of network {} out of sandbox {}",
                ep.name, net.spec.name, sb.spec.name
            );
            return Err(step_err(&net.spec.driver, step, e));
        }
        Ok(())
    }

    /// Recomputes the sandbox's default route and hosts file from its endpoints.
    pub(super) async fn refresh_sandbox(&self, st: &mut State, sb_id: &SandboxId) -> Result<()> {
        let sb = st.sb(sb_id)?;
        let joined: Vec<&Endpoint> = sb
            .endpoints
            .iter()
            .filter_map(|e| st.endpoints.get(e).map(|(ep, _)| ep))
            .collect();
        let candidates: Vec<Candidate<'_>> = joined
            .iter()
            .filter_map(|ep| {
                let n = st.networks.get(&ep.network)?;
                Some(Candidate {
                    endpoint: ep,
                    network_name: &n.net.spec.name,
                    internal: n.net.spec.internal,
                })
            })
            .collect();
        let chosen = gateway::pick(&candidates);
        let new_gw = chosen.map(|e| e.id.clone());
        let route = chosen.map(|e| DefaultRoute {
            ifname: e.ifname.clone().unwrap_or_default(),
            v4: e.gateway_v4,
            v6: e.gateway_v6,
        });
        let hosts: Vec<(IpAddr, Vec<String>)> = joined
            .iter()
            .flat_map(|ep| [ep.ipv4, ep.ipv6])
            .flatten()
            .map(|a| (a.addr(), sb.sb.host_names()))
            .collect();
        let sandbox = sb.sb.clone();
        let old_gw = sb.gateway.clone();
        let changed = new_gw != old_gw;
        let os_err = |e| Error::Os {
            sandbox: sandbox.spec.name.clone(),
            source: e,
        };
        if changed && !sandbox.spec.host_mode {
            self.os
                .set_default_route(&sandbox, route.as_ref())
                .await
                .map_err(os_err)?;
        }
        st.phases.mark("route");
        self.os
            .write_hosts(&sandbox, &hosts)
            .await
            .map_err(os_err)?;
        st.phases.mark("hosts");
        let ports = st.sandbox_ports(sb_id);
        let programmed = &st.sb(sb_id)?.programmed;
        if changed || ports != *programmed {
            let (old, new) = (old_gw.as_ref(), new_gw.as_ref());
            if let Err(e) = self
                .sync_external(st, &sandbox, (old, programmed), (new, &ports))
                .await
            {
                // Undo the route change so the sandbox stays as it was.
                let old_route = old_gw
                    .as_ref()
                    .and_then(|g| st.endpoints.get(g))
                    .map(|(e, _)| DefaultRoute {
                        ifname: e.ifname.clone().unwrap_or_default(),
                        v4: e.gateway_v4,
                        v6: e.gateway_v6,
                    });
                if changed {
                    if let Err(undo) = self
                        .os
                        .set_default_route(&sandbox, old_route.as_ref())
                        .await
                    {
                        let action = RepairAction::RefreshSandbox(sb_id.clone());
                        self.repairs.record(
                            "restore default route",
                            &sandbox.spec.name,
                            action,
                            &undo,
                        );
                    }
                }
                return Err(e);
            }
        }
        st.phases.mark("ports");
        let entry = st.sb_mut(sb_id)?;
        entry.programmed = if new_gw.is_some() { ports } else { Vec::new() };
        entry.gateway = new_gw;
        Ok(())
    }
}

/// Finds an endpoint of a network by name, full id or unique id prefix.
fn find_endpoint(st: &State, net_id: &NetworkId, key: &str) -> Result<EndpointId> {
    let entry = st.net(net_id)?;
    let eps = entry
        .endpoints
        .iter()
        .filter_map(|e| st.endpoints.get(e).map(|(ep, _)| ep));
    let mut prefix_hits = Vec::new();
    for ep in eps {
        if ep.name == key || ep.id.as_str() == key {
            return Ok(ep.id.clone());
        }
        if is_id_prefix(key) && ep.id.as_str().starts_with(key) {
            prefix_hits.push(ep.id.clone());
        }
    }
    match prefix_hits.len() {
        1 => Ok(prefix_hits.remove(0)),
        _ => Err(Error::EndpointNotFound {
            name: key.to_owned(),
        }),
    }
}

impl Controller {
    /// Forgets an endpoint: its addresses go back to IPAM, it leaves its network and sandbox.
    pub(super) async fn forget_endpoint(&self, st: &mut State, ep: &Endpoint) {
        if let Some(n) = st.networks.get_mut(&ep.network) {
            self.release_addresses(n, ep).await;
            n.remove_member(ep);
        }
        if let Some(sb) = ep.sandbox.as_ref().and_then(|s| st.sandboxes.get_mut(s)) {
            sb.endpoints.remove(&ep.id);
        }
        st.endpoints.remove(&ep.id);
    }
}

impl Controller {
    /// Tells the driver of a new endpoint; what it chose fills the endpoint's empty fields.
    async fn driver_create_endpoint(
        &self,
        net: &crate::model::Network,
        ep: &mut Endpoint,
    ) -> Result<()> {
        let driver = self.driver(&net.spec.driver)?;
        let iface = driver.create_endpoint(net, ep).await.map_err(|e| {
            let step = format!("creating endpoint {} of network {}", ep.name, net.spec.name);
            step_err(&net.spec.driver, step, e)
        })?;
        ep.mac = ep.mac.or(iface.mac);
        ep.ipv4 = ep.ipv4.or(iface.ipv4);
        ep.ipv6 = ep.ipv6.or(iface.ipv6);
        Ok(())
    }

    /// Tells the driver an endpoint is gone; a failure becomes a repair item.
    pub(super) async fn driver_delete_endpoint(&self, net: &crate::model::Network, ep: &Endpoint) {
        let deleted = match self.driver(&net.spec.driver) {
            Ok(d) => d.delete_endpoint(net, ep).await,
            Err(e) => Err(e.into()),
        };
        if let Err(e) = deleted {
            let action = RepairAction::DeleteEndpoint {
                network: Box::new(net.clone()),
                endpoint: Box::new(ep.clone()),
            };
            self.repairs
                .record("delete endpoint in driver", &ep.name, action, &e);
        }
    }

    /// This host, for endpoints of global networks (where other hosts must find them).
    fn node_for(&self, st: &State, net: &NetworkId) -> Option<crate::model::NodeRef> {
        let global = st
            .networks
            .get(net)
            .is_some_and(|n| n.net.spec.scope == crate::model::Scope::Global);
        global.then(|| self.node().cloned()).flatten()
    }
}

fn sandbox_name(st: &State, id: &SandboxId) -> String {
    st.sandboxes
        .get(id)
        .map(|s| s.sb.spec.name.clone())
        .unwrap_or_else(|| id.to_string())
}

fn connect_event(action: &'static str, st: &State, ep: &Endpoint) -> Event {
    let mut attributes = BTreeMap::new();
    if let Some(n) = st.networks.get(&ep.network) {
        attributes.insert("name".into(), n.net.spec.name.clone());
        attributes.insert("type".into(), n.net.spec.driver.clone());
    }
    if let Some(sb) = &ep.sandbox {
        attributes.insert("container".into(), sb.to_string());
    }
    Event {
        kind: "network",
        action,
        actor_id: ep.network.to_string(),
        attributes,
        time_nanos: now_nanos(),
    }
}

/// Checks an alias: DNS labels of letters, digits and '-', '_' or '.' between them.
fn validate_dns_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            "Aliases",
            format!("{name:?} is not a valid DNS name"),
        ))
    }
}
