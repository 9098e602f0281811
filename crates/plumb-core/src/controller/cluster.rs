//! The cluster side of the controller: global networks, their endpoints and the nodes live in
//! a store shared by every host (etcd); everything else stays in the local store.
//!
//! - **Routing.** Every commit names one object; keys of global networks and of their
//!   endpoints go to the cluster store, the rest to the local one.
//! - **Claims.** What must be unique across hosts is claimed in the same transaction as the
//!   object that needs it, with "must be absent" conditions: a network's name, its subnets,
//!   its VNI (`claims/netname/..`, `claims/subnet/..`, `claims/vni/..`), and every address of
//!   an endpoint (`claims/addr/<network>/<ip>`). Two hosts racing for one never both win; the
//!   loser retries with another.
//! - **Liveness.** The node registers `nodes/<name>` under a lease it keeps alive; its
//!   endpoints and their address claims live under the same lease, so when a host dies etcd
//!   removes them, and every other host, watching, withdraws their tunnels and names. A
//!   restart within the ttl reuses the lease (its id is kept in the local store).

use super::Controller;
use crate::error::{Error, Result};
use crate::model::{Endpoint, Network, NodeRef};
use crate::store::{Expect, LeaseId, Op, Revision, Store, StoreError};
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// How this host takes part in a cluster.
#[derive(Clone)]
pub struct Cluster {
    /// The store global networks live in.
    pub store: Arc<dyn Store>,
    /// This host.
    pub node: NodeRef,
    /// How long the node stays alive without keep-alives.
    pub ttl: Duration,
}

/// A node as registered in the cluster store.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NodeRecord {
    /// Name and underlay address.
    pub node: NodeRef,
    /// When it (re)registered, nanoseconds since the Unix epoch.
    pub since_unix_nanos: u128,
}

/// A node and whether it is alive now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeStatus {
    /// What it registered.
    pub record: NodeRecord,
    /// True while its lease holds.
    pub alive: bool,
}

/// The controller's cluster state.
pub(super) struct ClusterState {
    pub cfg: Cluster,
    /// The node's lease (0 before registration).
    pub lease: AtomicU64,
    /// Ids of global networks: their keys go to the cluster store.
    pub global: RwLock<HashSet<crate::NetworkId>>,
}

/// Where a key is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Route {
    Local,
    Cluster,
}

/// Key of this node's lease id in the local store.
const LEASE_KEY: &str = "cluster/lease";

fn claim_netname(name: &str) -> String {
    format!("claims/netname/{name}")
}

fn claim_subnet(s: &ipnet::IpNet) -> String {
    format!("claims/subnet/{}", s.to_string().replace('/', "_"))
}

fn claim_vni(v: &str) -> String {
    format!("claims/vni/{v}")
}

fn claim_addr(net: &crate::NetworkId, ip: std::net::IpAddr) -> String {
    format!("claims/addr/{net}/{ip}")
}

/// The driver option holding an overlay network's VXLAN id, as Docker names it.
pub const VNI_OPTION: &str = "com.docker.network.driver.overlay.vxlanid_list";

/// The claims a global network makes.
fn network_claims(n: &Network) -> Vec<String> {
    let mut out = vec![claim_netname(&n.spec.name)];
    out.extend(n.pools.iter().map(|p| claim_subnet(&p.subnet)));
    if let Some(v) = n.option(VNI_OPTION) {
        out.push(claim_vni(v));
    }
    out
}

/// The claims an endpoint of a global network makes.
fn endpoint_claims(ep: &Endpoint) -> Vec<String> {
    [ep.ipv4, ep.ipv6]
        .into_iter()
        .flatten()
        .map(|a| claim_addr(&ep.network, a.addr()))
        .collect()
}

impl ClusterState {
    pub fn new(cfg: Cluster) -> Self {
        ClusterState {
            cfg,
            lease: AtomicU64::new(0),
            global: RwLock::new(HashSet::new()),
        }
    }

    fn is_global(&self, id: &str) -> bool {
        crate::NetworkId::parse(id).is_some_and(|id| {
            self.global
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .contains(&id)
        })
    }

    /// True when `id` is a global network's.
    pub fn is_global_network(&self, id: &crate::NetworkId) -> bool {
        self.global
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains(id)
    }

    /// Marks a network id global (or not).
    pub fn set_global(&self, id: &crate::NetworkId, global: bool) {
        let mut g = self.global.write().unwrap_or_else(|p| p.into_inner());
        if global {
            g.insert(id.clone());
        } else {
            g.remove(id);
        }
    }

    /// Where `key` is kept.
    pub fn route(&self, key: &str) -> Route {
        let mut parts = key.split('/');
        match (parts.next(), parts.next()) {
            (Some("networks" | "endpoints"), Some(id)) if self.is_global(id) => Route::Cluster,
            (Some("claims" | "nodes"), _) => Route::Cluster,
            _ => Route::Local,
        }
    }

    fn lease(&self) -> Option<LeaseId> {
        match self.lease.load(Ordering::SeqCst) {
            0 => None,
            l => Some(l),
        }
    }

    /// `ops` for the cluster store with what goes with them: claims made and released, and
    /// the node's lease on endpoints and address claims. A deleted object's claims come from
    /// its value as `known` gives it (the controller's memory), else as the store has it.
    pub async fn expand(
        &self,
        ops: Vec<Op>,
        known: impl Fn(&str) -> Option<Vec<u8>>,
    ) -> Result<Vec<Op>> {
        let store = &self.cfg.store;
        let lease = self.lease();
        let mut out = Vec::with_capacity(ops.len() * 2);
        for op in ops {
            let endpoint = op.key().starts_with("endpoints/");
            let network = op.key().starts_with("networks/");
            match &op {
                Op::Put {
                    value,
                    expect: Expect::Absent,
                    ..
                } if network => {
                    if let Ok(n) = serde_json::from_slice::<Network>(value) {
                        for c in network_claims(&n) {
                            out.push(Op::put(
                                c,
                                n.id.as_str().as_bytes().to_vec(),
                                Expect::Absent,
                            ));
                        }
                    }
                }
                Op::Put {
                    value,
                    expect: Expect::Absent,
                    ..
                } if endpoint => {
                    if let Ok(ep) = serde_json::from_slice::<Endpoint>(value) {
                        for c in endpoint_claims(&ep) {
                            out.push(Op::Put {
                                key: c,
                                value: ep.id.as_str().as_bytes().to_vec(),
                                expect: Expect::Absent,
                                lease,
                            });
                        }
                    }
                }
                Op::Delete { key, .. } if network || endpoint => {
                    // What the object claimed is released with it.
                    let value = match known(key) {
                        Some(v) => Some(v),
                        None => store.get(key).await.map_err(unavailable)?.map(|e| e.value),
                    };
                    if let Some(value) = value {
                        let claims = if network {
                            serde_json::from_slice::<Network>(&value)
                                .map(|n| network_claims(&n))
                                .unwrap_or_default()
                        } else {
                            serde_json::from_slice::<Endpoint>(&value)
                                .map(|ep| endpoint_claims(&ep))
                                .unwrap_or_default()
                        };
                        out.extend(claims.into_iter().map(|c| Op::delete(c, Expect::Any)));
                    }
                }
                _ => {}
            }
            out.push(match op {
                Op::Put {
                    key,
                    value,
                    expect,
                    lease: None,
                } if endpoint => Op::Put {
                    key,
                    value,
                    expect,
                    lease,
                },
                other => other,
            });
        }
        Ok(out)
    }
}

/// A cluster store failure as the error users see.
pub(super) fn unavailable(e: StoreError) -> Error {
    match e {
        StoreError::Backend(b) => Error::ClusterUnavailable(b.to_string()),
        other => Error::Store(other),
    }
}

/// Who holds an address claimed by another host, in [`Error::AddressInUse`].
pub(super) const CLAIMED_ELSEWHERE: &str = "an endpoint on another host";

/// The error for a claim someone else holds; `None` when `key` is no claim. `network_name`
/// names a network by its id.
pub(super) fn claim_conflict(key: &str, network_name: impl Fn(&str) -> String) -> Option<Error> {
    let rest = key.strip_prefix("claims/")?;
    let (kind, what) = rest.split_once('/')?;
    Some(match kind {
        "netname" => Error::NetworkExists {
            name: what.to_owned(),
        },
        "subnet" => Error::invalid(
            "IPAM.Config",
            format!(
                "subnet {} is used by a network of another host in the cluster: pick another",
                what.replace('_', "/")
            ),
        ),
        "vni" => Error::invalid(
            VNI_OPTION,
            format!("VXLAN id {what} is used by another network in the cluster"),
        ),
        _ => {
            let (net, ip) = what.split_once('/')?;
            Error::AddressInUse {
                address: ip.parse().ok()?,
                network: network_name(net),
                holder: CLAIMED_ELSEWHERE.to_owned(),
            }
        }
    })
}

impl Controller {
    /// The cluster state, when this controller has a cluster store.
    pub(super) fn cluster(&self) -> Option<&ClusterState> {
        self.cluster.as_ref()
    }

    /// This host, when in a cluster.
    pub fn node(&self) -> Option<&NodeRef> {
        self.cluster().map(|c| &c.cfg.node)
    }

    /// Registers this node under its lease (reusing the one a previous run left, if it still
    /// holds) before anything is loaded from the cluster store.
    pub(super) async fn register_node(&self) -> Result<()> {
        let Some(c) = self.cluster() else {
            return Ok(());
        };
        let previous = self
            .store
            .get(LEASE_KEY)
            .await?
            .and_then(|e| std::str::from_utf8(&e.value).ok()?.parse::<LeaseId>().ok());
        let lease = match previous {
            Some(l) if c.cfg.store.keep_alive(l).await.is_ok() => l,
            _ => self.new_lease(c).await?,
        };
        c.lease.store(lease, Ordering::SeqCst);
        self.put_node(c, lease).await
    }

    async fn new_lease(&self, c: &ClusterState) -> Result<LeaseId> {
        let lease = c.cfg.store.grant(c.cfg.ttl).await.map_err(unavailable)?;
        self.store
            .commit(vec![Op::put(
                LEASE_KEY,
                lease.to_string().into_bytes(),
                Expect::Any,
            )])
            .await?;
        Ok(lease)
    }

    async fn put_node(&self, c: &ClusterState, lease: LeaseId) -> Result<()> {
        let rec = NodeRecord {
            node: c.cfg.node.clone(),
            since_unix_nanos: crate::events::now_nanos(),
        };
        let key = format!("nodes/{}", c.cfg.node.name);
        let info = format!("nodeinfo/{}", c.cfg.node.name);
        let value = super::encode(&rec);
        c.cfg
            .store
            .commit(vec![
                Op::Put {
                    key,
                    value: value.clone(),
                    expect: Expect::Any,
                    lease: Some(lease),
                },
                Op::put(info, value, Expect::Any),
            ])
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    /// Keeps the node's lease alive every third of its ttl; when it was lost (the host was
    /// cut off longer than the ttl), takes a new one and publishes the node and its
    /// endpoints again. Runs until the controller goes.
    pub(super) fn keep_node_alive(self: &Arc<Self>) {
        let Some(c) = self.cluster() else { return };
        let period = (c.cfg.ttl / 3).max(Duration::from_millis(200));
        let me = Arc::downgrade(self);
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(ctl) = me.upgrade() else { return };
                if let Err(e) = ctl.keep_alive_once().await {
                    tracing::warn!(error = %e, "keeping this node alive in the cluster store failed");
                }
            }
        });
        self.tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(task.abort_handle());
    }

    async fn keep_alive_once(&self) -> Result<()> {
        let Some(c) = self.cluster() else {
            return Ok(());
        };
        let lease = c.lease.load(Ordering::SeqCst);
        match c.cfg.store.keep_alive(lease).await {
            Ok(()) => Ok(()),
            Err(StoreError::LeaseNotFound(_)) => {
                tracing::warn!(
                    "this node's lease expired (cut off from the cluster store longer than its ttl): registering again"
                );
                let lease = self.new_lease(c).await?;
                c.lease.store(lease, Ordering::SeqCst);
                self.put_node(c, lease).await?;
                self.republish(c).await
            }
            Err(e) => Err(unavailable(e)),
        }
    }

    /// Writes this node's endpoints of global networks (and their claims) again.
    async fn republish(&self, c: &ClusterState) -> Result<()> {
        let snap = self.snapshot();
        for (ep, _) in snap.endpoints.values() {
            let local = snap.joined_here(ep);
            if !local || c.route(&crate::store::endpoint_key(&ep.network, &ep.id)) != Route::Cluster
            {
                continue;
            }
            let key = crate::store::endpoint_key(&ep.network, &ep.id);
            let ops = c
                .expand(
                    vec![Op::put(key, super::encode(ep), Expect::Absent)],
                    |_| None,
                )
                .await?;
            // Absent conditions would fail for what survived; write unconditionally.
            let ops = ops
                .into_iter()
                .map(|o| match o {
                    Op::Put {
                        key, value, lease, ..
                    } => Op::Put {
                        key,
                        value,
                        expect: Expect::Any,
                        lease,
                    },
                    d => d,
                })
                .collect();
            if let Err(e) = self.commit(ops).await {
                tracing::warn!(endpoint = %ep.name, error = %e, "publishing an endpoint again failed");
            }
        }
        Ok(())
    }

    /// After losing a race for an address to another host: hold every address the
    /// network's claims show taken (one listing), until the endpoints holding them arrive
    /// through the watch (which then hold them by name), so that the next try picks a free
    /// one instead of racing along the same sequence.
    pub(super) async fn hold_claimed(&self, network: &str) {
        let Some(c) = self.cluster() else { return };
        let mut st = self.lock().await;
        let Ok(id) = st.find_network(network) else {
            return;
        };
        let prefix = format!("claims/addr/{id}/");
        let Ok(listing) = c.cfg.store.list(&prefix).await else {
            return;
        };
        let Ok(entry) = st.net_mut(&id) else { return };
        let Ok(ipam) = self.ipam(&entry.net.spec.ipam_driver).await else {
            return;
        };
        for e in listing.entries {
            let Some(Ok(ip)) = e
                .key
                .strip_prefix(&prefix)
                .map(str::parse::<std::net::IpAddr>)
            else {
                continue;
            };
            if entry.held.contains_key(&ip) {
                continue;
            }
            let Some(pool) = entry.pool_for(ip).map(|p| p.pool_id.clone()) else {
                continue;
            };
            if ipam
                .request_address(&pool, Some(ip), &std::collections::BTreeMap::new())
                .await
                .is_ok()
            {
                entry.held.insert(
                    ip,
                    crate::ipam::Holder::Endpoint(CLAIMED_ELSEWHERE.to_owned()),
                );
            }
        }
    }

    /// The nodes of the cluster and whether each is alive; empty without a cluster store.
    pub async fn nodes(&self) -> Result<Vec<NodeStatus>> {
        let Some(c) = self.cluster() else {
            return Ok(Vec::new());
        };
        let alive: HashSet<String> = c
            .cfg
            .store
            .list("nodes/")
            .await
            .map_err(unavailable)?
            .entries
            .into_iter()
            .map(|e| e.key.trim_start_matches("nodes/").to_owned())
            .collect();
        let mut out = Vec::new();
        for e in c
            .cfg
            .store
            .list("nodeinfo/")
            .await
            .map_err(unavailable)?
            .entries
        {
            let Ok(record) = serde_json::from_slice::<NodeRecord>(&e.value) else {
                tracing::warn!(key = %e.key, "a node record does not decode: ignored");
                continue;
            };
            let alive = alive.contains(&record.node.name);
            out.push(NodeStatus { record, alive });
        }
        Ok(out)
    }

    /// Commits `ops` (all about one object) to the store that keeps it.
    pub(super) async fn commit_routed(&self, ops: Vec<Op>) -> Result<(Revision, Route)> {
        let route = match (self.cluster(), ops.first()) {
            (Some(c), Some(op)) => c.route(op.key()),
            _ => Route::Local,
        };
        match (route, self.cluster()) {
            (Route::Cluster, Some(c)) => {
                let ops = c.expand(ops, |key| self.known_value(key)).await?;
                match c.cfg.store.commit(ops).await {
                    Ok(r) => Ok((r, route)),
                    Err(StoreError::Conflict { key, expected }) => {
                        let name = |id: &str| self.network_name(id);
                        Err(claim_conflict(&key, name)
                            .unwrap_or(Error::Store(StoreError::Conflict { key, expected })))
                    }
                    Err(e) => Err(unavailable(e)),
                }
            }
            _ => Ok((self.store.commit(ops).await?, Route::Local)),
        }
    }

    /// The name of the network with id `id` (the id itself when unknown here).
    fn network_name(&self, id: &str) -> String {
        let snap = self.snapshot();
        crate::NetworkId::parse(id)
            .and_then(|id| snap.networks.get(&id).map(|n| n.net.spec.name.clone()))
            .unwrap_or_else(|| id.to_owned())
    }

    /// The value of the network or endpoint at `key` as this controller last published it.
    fn known_value(&self, key: &str) -> Option<Vec<u8>> {
        let snap = self.snapshot();
        let mut parts = key.split('/');
        match (parts.next(), parts.next(), parts.next()) {
            (Some("networks"), Some(id), None) => {
                let n = snap.networks.get(&crate::NetworkId::parse(id)?)?;
                Some(super::encode(&n.net))
            }
            (Some("endpoints"), Some(_), Some(id)) => {
                let (ep, _) = snap.endpoints.get(&crate::EndpointId::parse(id)?)?;
                Some(super::encode(ep))
            }
            _ => None,
        }
    }

    /// The ops that take back the creation of global network `net` (its record and claims),
    /// for a rollback that runs without the controller.
    pub(super) async fn forget_network_ops(&self, net: &Network) -> Result<Vec<Op>> {
        let op = Op::delete(crate::store::network_key(&net.id), Expect::Any);
        match self.cluster() {
            Some(c) if c.route(op.key()) == Route::Cluster => {
                c.expand(vec![op], |_| Some(super::encode(net))).await
            }
            _ => Ok(vec![op]),
        }
    }

    /// The store that keeps `key`.
    pub(super) fn store_for(&self, key: &str) -> Arc<dyn Store> {
        match self.cluster() {
            Some(c) if c.route(key) == Route::Cluster => c.cfg.store.clone(),
            _ => self.store.clone(),
        }
    }
}
