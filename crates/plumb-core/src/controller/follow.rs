//! Following the store: the controller's memory applies changes that another controller
//! committed to the same store (networks and endpoints), so their names resolve here, their
//! endpoints show in inspect, their addresses are held, and the kernel follows. This is what
//! a store shared by several hosts stands on.
//!
//! The watch starts at the revision the start-up listing was read at, so nothing committed
//! in between is missed. A controller's own commits are recognised by their revisions: they
//! are recorded under the state lock that the operation holds, and the follower takes that
//! lock before it looks, so it never mistakes its own change for a foreign one.

use super::state::NetEntry;
use super::{decode, Controller};
use crate::model::{Endpoint, Network, Sandbox, SandboxSpec};
use crate::store::WatchEvent;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

/// A sandbox of another controller, as the name index needs it: the endpoint's name stands
/// for the sandbox's name and hostname.
fn remote_sandbox(ep: &Endpoint) -> Option<Sandbox> {
    Some(Sandbox {
        id: ep.sandbox.clone()?,
        spec: SandboxSpec {
            name: ep.name.clone(),
            hostname: ep.name.clone(),
            ..Default::default()
        },
        key: String::new(),
        dir: String::new(),
        created_unix_nanos: 0,
    })
}

impl Controller {
    /// Starts applying changes other controllers commit to the store; stops when the
    /// controller is dropped. Call once, right after creating it.
    ///
    /// With a cluster store, a host watches the definitions of global networks, and the
    /// endpoints only of those networks it has an endpoint on (from its first local join to
    /// its last leave): the others cost it nothing. Without one (controllers sharing one
    /// store), everything is watched.
    pub fn follow(self: &Arc<Self>) {
        self.following.store(true, Ordering::SeqCst);
        let _ = self.me.set(Arc::downgrade(self));
        if self.cluster_pending.load(Ordering::SeqCst) {
            // Started without the cluster store: join it once it answers, then follow.
            let me = Arc::downgrade(self);
            let task = tokio::spawn(async move {
                loop {
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    let Some(ctl) = me.upgrade() else { return };
                    match ctl.join_cluster_late().await {
                        Ok(()) => {
                            tracing::info!("cluster store reachable: global networks loaded");
                            ctl.start_following();
                            return;
                        }
                        Err(e) => tracing::debug!(error = %e, "cluster store still unreachable"),
                    }
                }
            });
            *self.follower.lock().unwrap_or_else(|p| p.into_inner()) = Some(task.abort_handle());
            return;
        }
        self.start_following();
    }

    /// The watches of [`Controller::follow`], from the revision the state was loaded at.
    fn start_following(self: &Arc<Self>) {
        self.keep_node_alive();
        let from = self.loaded_revision.load(Ordering::SeqCst);
        let prefix = if self.cluster().is_some() {
            "networks/"
        } else {
            ""
        };
        let task = self.spawn_watch(prefix.to_owned(), Some(from));
        // Replaces the task that waited for the cluster store, if any (it ends by itself).
        *self.follower.lock().unwrap_or_else(|p| p.into_inner()) = Some(task);
        if self.cluster().is_some() {
            let snap = self.snapshot();
            for id in snap.networks.keys() {
                if self.has_local_endpoint(&snap, id) {
                    self.watch_endpoints_from(id.clone(), Some(from));
                }
            }
        }
    }

    /// After a start without the cluster store: registers the node and loads the global
    /// networks and this host's endpoints on them (plumbed again, idempotently: their kernel
    /// state was left alone), with the other hosts' endpoints of those networks.
    async fn join_cluster_late(&self) -> crate::Result<()> {
        let Some(c) = self.cluster() else {
            return Ok(());
        };
        self.register_node().await?;
        let store = c.cfg.store.clone();
        let unavailable = super::cluster::unavailable;
        let networks = store.list("networks/").await.map_err(unavailable)?;
        let endpoints = store.list("endpoints/").await.map_err(unavailable)?;
        let mut st = self.lock().await;
        for e in &networks.entries {
            let mut n: Network = decode(&e.key, &e.value)?;
            if st.networks.contains_key(&n.id) {
                continue;
            }
            c.set_global(&n.id, true);
            self.restore_pools(&mut n).await?;
            if let Ok(d) = self.driver(&n.spec.driver) {
                if let Err(err) = d.create_network(&n).await {
                    tracing::warn!(network = %n.spec.name, error = %err, "creating a global network here failed");
                }
            }
            st.net_names.insert(n.spec.name.clone(), n.id.clone());
            st.networks
                .insert(n.id.clone(), NetEntry::new(n, e.revision));
        }
        let mut decoded = Vec::new();
        for e in &endpoints.entries {
            decoded.push((decode::<Endpoint>(&e.key, &e.value)?, e.revision));
        }
        let with_local: std::collections::HashSet<crate::NetworkId> = decoded
            .iter()
            .filter(|(ep, _)| st.joined_here(ep))
            .map(|(ep, _)| ep.network.clone())
            .collect();
        for (ep, rev) in decoded {
            let mine = st.joined_here(&ep);
            if st.endpoints.contains_key(&ep.id) || !(mine || with_local.contains(&ep.network)) {
                continue;
            }
            let Some(entry) = st.networks.get_mut(&ep.network) else {
                continue;
            };
            if let Err(err) = self.restore_addresses(entry, &ep).await {
                tracing::warn!(endpoint = %ep.name, error = %err, "holding an endpoint's addresses failed");
            }
            entry.add_member(&ep);
            let net = entry.net.clone();
            st.endpoints.insert(ep.id.clone(), (ep.clone(), rev));
            if mine {
                if let Some(sb) = &ep.sandbox {
                    self.restore_ports(&mut st, sb, &ep.ports);
                }
                if let Err(err) = self.plumb_in(&mut st, ep.clone(), rev).await {
                    tracing::error!(endpoint = %ep.name, error = %err, "could not restore endpoint");
                }
            } else {
                self.add_remote_names(&ep, net.spec.internal);
                self.add_peer(&net, &ep).await;
            }
        }
        self.loaded_revision
            .store(networks.revision.min(endpoints.revision), Ordering::SeqCst);
        self.cluster_pending.store(false, Ordering::SeqCst);
        Ok(())
    }

    /// Applies every change under `prefix` after `from`, for as long as the controller lives;
    /// without `from` (memory not current for the prefix), it lists the prefix first. When
    /// the watch ends (etcd unreachable) it watches again from the last revision applied;
    /// when the store no longer has that revision it resyncs the prefix in full.
    fn spawn_watch(
        self: &Arc<Self>,
        prefix: String,
        from: Option<u64>,
    ) -> tokio::task::AbortHandle {
        let me: Weak<Self> = Arc::downgrade(self);
        let task = tokio::spawn(async move {
            let mut last = from;
            let pause = std::time::Duration::from_millis(500);
            loop {
                let Some(ctl) = me.upgrade() else { return };
                let store = match ctl.cluster() {
                    Some(c) => c.cfg.store.clone(),
                    None => ctl.store.clone(),
                };
                let Some(from) = last else {
                    match ctl.resync(store.as_ref(), &prefix).await {
                        Ok(rev) => last = Some(rev),
                        Err(e) => {
                            tracing::warn!(error = %e, "listing from the store failed; trying again");
                            drop(ctl);
                            tokio::time::sleep(pause).await;
                        }
                    }
                    continue;
                };
                drop(ctl);
                match store.watch(&prefix, from).await {
                    Ok(mut watch) => {
                        while let Some(ev) = watch.recv().await {
                            let Some(ctl) = me.upgrade() else { return };
                            let rev = match &ev {
                                WatchEvent::Put(e) => e.revision,
                                WatchEvent::Delete { revision, .. } => *revision,
                            };
                            last = last.max(Some(rev));
                            ctl.apply_foreign(ev).await;
                        }
                    }
                    Err(crate::store::StoreError::Compacted { .. }) => {
                        last = None;
                        continue;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot follow the store now; trying again")
                    }
                }
                tokio::time::sleep(pause).await;
            }
        });
        task.abort_handle()
    }

    /// True when a sandbox of this host has an endpoint on `net`.
    fn has_local_endpoint(&self, st: &super::state::State, net: &crate::NetworkId) -> bool {
        st.networks.get(net).is_some_and(|n| {
            n.endpoints.iter().any(|e| {
                st.endpoints
                    .get(e)
                    .is_some_and(|(ep, _)| st.joined_here(ep))
            })
        })
    }

    /// Starts watching the endpoints of global network `net` (unless watched already): from
    /// `from` when this host's memory is current up to there, else after listing them.
    fn watch_endpoints_from(self: &Arc<Self>, net: crate::NetworkId, from: Option<u64>) {
        let mut watches = self.net_watches.lock().unwrap_or_else(|p| p.into_inner());
        if let std::collections::hash_map::Entry::Vacant(slot) = watches.entry(net) {
            let prefix = format!("endpoints/{}/", slot.key());
            slot.insert(self.spawn_watch(prefix, from));
        }
    }

    /// After a local join to a global network: make sure its endpoints are watched.
    pub(super) fn joined_global(&self, net: &crate::NetworkId) {
        if let Some(me) = self.me.get().and_then(Weak::upgrade) {
            me.watch_endpoints_from(net.clone(), None);
        }
    }

    /// After a local leave from a global network: when no local endpoint is left on it, stop
    /// watching its endpoints and forget those of other hosts (their names, addresses and
    /// tunnels), which this host would no longer keep current.
    pub(super) async fn left_global(&self, net: &crate::NetworkId) {
        let mut st = self.lock().await;
        if self.has_local_endpoint(&st, net) {
            return;
        }
        if let Some(h) = self
            .net_watches
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(net)
        {
            h.abort();
        }
        let Some(n) = st.networks.get(net).map(|n| n.net.clone()) else {
            return;
        };
        let remote: Vec<Endpoint> = st
            .endpoints
            .values()
            .map(|(ep, _)| ep)
            .filter(|ep| &ep.network == net && !st.pending.contains(&ep.id))
            .cloned()
            .collect();
        for ep in remote {
            self.names.remove(&ep.id);
            self.remove_peer(&n, &ep).await;
            self.forget_endpoint(&mut st, &ep).await;
        }
    }

    /// Applies everything under `prefix` as changes (what is known already is skipped) and
    /// the removal of what the store no longer has there; returns the revision read at. Used
    /// after a compaction, and to start watching a network's endpoints.
    async fn resync(&self, store: &dyn crate::store::Store, prefix: &str) -> crate::Result<u64> {
        let listing = store.list(prefix).await?;
        let listed: std::collections::HashSet<String> =
            listing.entries.iter().map(|e| e.key.clone()).collect();
        let revision = listing.revision;
        for e in listing.entries {
            self.apply_foreign(WatchEvent::Put(e)).await;
        }
        let snap = self.snapshot();
        let followed = |k: &String| {
            k.starts_with(prefix)
                && !listed.contains(k)
                && self
                    .cluster()
                    .is_none_or(|c| c.route(k) == super::cluster::Route::Cluster)
        };
        let gone: Vec<String> = snap
            .endpoints
            .values()
            .map(|(ep, _)| crate::store::endpoint_key(&ep.network, &ep.id))
            .chain(snap.networks.keys().map(crate::store::network_key))
            .filter(followed)
            .collect();
        for key in gone {
            self.apply_foreign(WatchEvent::Delete { key, revision })
                .await;
        }
        Ok(revision)
    }

    /// Applies one change, unless this controller made it.
    async fn apply_foreign(&self, ev: WatchEvent) {
        let rev = match &ev {
            WatchEvent::Put(e) => e.revision,
            WatchEvent::Delete { revision, .. } => *revision,
        };
        let mut st = self.lock().await;
        {
            let mut own = self.own.lock().unwrap_or_else(|p| p.into_inner());
            if own.remove(&rev) {
                return;
            }
            // Changes come in revision order: an own revision below this one was seen while
            // its operation was still running (a connect in progress) and will not come again.
            *own = own.split_off(&rev);
        }
        let key = ev.key().to_owned();
        let mut parts = key.splitn(3, '/');
        let (kind, a, b) = (parts.next(), parts.next(), parts.next());
        match (kind, &ev) {
            (Some("networks"), WatchEvent::Put(e)) => {
                let Ok(mut n) = decode::<Network>(&e.key, &e.value) else {
                    tracing::warn!(key = %e.key, "a foreign network value does not decode: ignored");
                    return;
                };
                if st.networks.contains_key(&n.id) {
                    return;
                }
                if let Err(err) = self.restore_pools(&mut n).await {
                    tracing::warn!(network = %n.spec.name, error = %err, "holding a foreign network's pools failed");
                }
                if let Ok(d) = self.driver(&n.spec.driver) {
                    if let Err(err) = d.create_network(&n).await {
                        tracing::warn!(network = %n.spec.name, error = %err, "creating a foreign network here failed");
                    }
                }
                if let Some(c) = self.cluster() {
                    c.set_global(&n.id, n.spec.scope == crate::model::Scope::Global);
                }
                tracing::info!(network = %n.spec.name, "network created by another controller");
                st.net_names.insert(n.spec.name.clone(), n.id.clone());
                st.networks
                    .insert(n.id.clone(), NetEntry::new(n, e.revision));
            }
            (Some("networks"), WatchEvent::Delete { .. }) => {
                let Some(id) = a.and_then(crate::NetworkId::parse) else {
                    return;
                };
                let Some(entry) = st.networks.get(&id) else {
                    return;
                };
                if !entry.endpoints.is_empty() {
                    tracing::warn!(network = %entry.net.spec.name, "another controller removed a network that has endpoints here: kept");
                    return;
                }
                let n = entry.net.clone();
                if let Some(c) = self.cluster() {
                    c.set_global(&id, false);
                }
                st.networks.remove(&id);
                st.net_names.remove(&n.spec.name);
                if let Ok(ipam) = self.ipam(&n.spec.ipam_driver).await {
                    for p in &n.pools {
                        self.release_pool(&ipam, p).await;
                    }
                }
                if let Ok(d) = self.driver(&n.spec.driver) {
                    if let Err(err) = d.delete_network(&n).await {
                        tracing::warn!(network = %n.spec.name, error = %err, "removing a foreign network here failed");
                    }
                }
            }
            (Some("endpoints"), WatchEvent::Put(e)) => {
                let Ok(ep) = decode::<Endpoint>(&e.key, &e.value) else {
                    tracing::warn!(key = %e.key, "a foreign endpoint value does not decode: ignored");
                    return;
                };
                if st.pending.contains(&ep.id) {
                    // Our own connect, between its commit and its completion.
                    return;
                }
                if let Some((old, _)) = st.endpoints.get(&ep.id) {
                    let local = st.joined_here(old);
                    if local {
                        return;
                    }
                    self.names.remove(&ep.id);
                    let old = old.clone();
                    if let Some(n) = st.networks.get(&old.network) {
                        self.remove_peer(&n.net, &old).await;
                    }
                }
                let Some(entry) = st.networks.get_mut(&ep.network) else {
                    tracing::warn!(endpoint = %ep.name, "a foreign endpoint of an unknown network: ignored");
                    return;
                };
                if let Err(err) = self.restore_addresses(entry, &ep).await {
                    tracing::warn!(endpoint = %ep.name, error = %err, "holding a foreign endpoint's addresses failed");
                }
                entry.add_member(&ep);
                let internal = entry.net.spec.internal;
                if let Some(sb) = remote_sandbox(&ep) {
                    self.names.add(&sb, &ep, internal);
                }
                let net = entry.net.clone();
                self.add_peer(&net, &ep).await;
                st.endpoints.insert(ep.id.clone(), (ep, e.revision));
            }
            (Some("endpoints"), WatchEvent::Delete { .. }) => {
                let Some(id) = b.and_then(crate::EndpointId::parse) else {
                    return;
                };
                let Some((ep, _)) = st.endpoints.get(&id).cloned() else {
                    return;
                };
                if st.joined_here(&ep) {
                    tracing::warn!(endpoint = %ep.name, "another controller removed an endpoint joined here: kept");
                    return;
                }
                self.names.remove(&ep.id);
                if let Some(n) = st.networks.get(&ep.network) {
                    self.remove_peer(&n.net, &ep).await;
                }
                self.forget_endpoint(&mut st, &ep).await;
            }
            _ => {}
        }
    }

    /// True for an endpoint joined on another host of the cluster.
    fn on_other_node(&self, ep: &Endpoint) -> bool {
        ep.sandbox.is_some() && ep.node.is_some() && ep.node.as_ref() != self.node()
    }

    /// Tells the network's driver that an endpoint on another host is joined (tunnels,
    /// neighbour entries); failures are logged, the next change or restart tries again.
    pub(super) async fn add_peer(&self, net: &Network, ep: &Endpoint) {
        if !self.on_other_node(ep) {
            return;
        }
        if let Ok(d) = self.driver(&net.spec.driver) {
            if let Err(e) = d.peer_add(net, ep).await {
                tracing::warn!(endpoint = %ep.name, network = %net.spec.name, error = %e, "programming a remote endpoint failed");
            }
        }
    }

    /// Tells the network's driver that an endpoint on another host went.
    pub(super) async fn remove_peer(&self, net: &Network, ep: &Endpoint) {
        if !self.on_other_node(ep) {
            return;
        }
        if let Ok(d) = self.driver(&net.spec.driver) {
            if let Err(e) = d.peer_remove(net, ep).await {
                tracing::warn!(endpoint = %ep.name, network = %net.spec.name, error = %e, "withdrawing a remote endpoint failed");
            }
        }
    }

    /// Registers the names of an endpoint whose sandbox lives with another controller.
    pub(super) fn add_remote_names(&self, ep: &Endpoint, internal: bool) {
        if let Some(sb) = remote_sandbox(ep) {
            self.names.add(&sb, ep, internal);
        }
    }
}
