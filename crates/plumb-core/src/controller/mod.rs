//! The Controller: the CNM operations over networks, endpoints and sandboxes.
//!
//! One lock serialises mutations: each operation validates, allocates, persists its intent in
//! one store commit, then drives the kernel through the drivers and the sandbox OS layer,
//! recording inverses in a [`Journal`] so that a failure leaves nothing half-made.

mod addresses;
mod cluster;
mod endpoint;
mod follow;
mod gateway;
mod gwbridge;
mod network;
mod ports;
mod reconcile;
mod repair;
mod sandbox;
mod state;

pub use cluster::{Cluster, NodeRecord, NodeStatus, VNI_OPTION};
pub use gateway::{pick as pick_gateway, Candidate};
pub use gwbridge::GWBRIDGE;
pub use network::NetworkView;
pub use repair::{Repair, RepairAction};
pub use sandbox::SandboxView;

use crate::driver::{NetworkDriver, SandboxOs, SandboxResolver};
use crate::error::{Error, Result};
use crate::events::Event;
use crate::ipam::{self, DefaultPool};
use crate::names::NameIndex;
use crate::store::{Op, Revision, Store, StoreError};
use state::State;
use std::sync::Arc;
use tokio::sync::{broadcast, Mutex};

/// Names of the predefined networks.
pub const PREDEFINED: [&str; 3] = ["bridge", "host", "none"];

/// Bridge name of the predefined `bridge` network.
pub const DEFAULT_BRIDGE: &str = "plumb0";

/// How a controller is set up.
#[derive(Clone)]
pub struct Config {
    /// IPv4 (and IPv6) pools subnets are chosen from when none is given.
    pub default_pools: Vec<DefaultPool>,
    /// Bridge name of the predefined `bridge` network.
    pub default_bridge: String,
    /// The embedded DNS resolver, attached to every sandbox with its own stack.
    pub resolver: Option<Arc<dyn SandboxResolver>>,
    /// The name index to maintain (one is made when absent), shared with the resolver.
    pub names: Option<Arc<NameIndex>>,
    /// Holds published host ports on the host (none: ports are only checked among plumb's
    /// own, and mappings must name a host port).
    pub port_holder: Option<Arc<dyn crate::driver::PortHolder>>,
    /// Where drivers not built in are looked for when first named (plugins).
    pub resolvers: Vec<Arc<crate::registry::DriverResolver>>,
    /// IPAM drivers besides the built-in `default`.
    pub ipams: Vec<Arc<dyn crate::ipam_driver::Ipam>>,
    /// Where IPAM drivers not built in are looked for when first named (plugins).
    pub ipam_resolvers: Vec<Arc<crate::registry::IpamResolver>>,
    /// The cluster this host is part of (global networks), if any.
    pub cluster: Option<Cluster>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            default_pools: ipam::docker_default_pools(),
            default_bridge: DEFAULT_BRIDGE.to_owned(),
            resolver: None,
            names: None,
            port_holder: None,
            resolvers: Vec::new(),
            ipams: Vec::new(),
            ipam_resolvers: Vec::new(),
            cluster: None,
        }
    }
}

/// The CNM controller.
pub struct Controller {
    /// Held by every operation that changes state, for as long as it runs.
    state: Mutex<State>,
    /// What readers see: the state as the last operation left it, published when the
    /// operation lets go of `state`. Reads never wait for an operation's kernel calls or
    /// store commits.
    snapshot: std::sync::RwLock<Arc<State>>,
    store: Arc<dyn Store>,
    os: Arc<dyn SandboxOs>,
    drivers: crate::registry::Registry<dyn NetworkDriver>,
    /// IPAM drivers by name: the built-in `default`, those given in [`Config::ipams`], and
    /// plugins found when first named.
    ipams: crate::registry::Registry<dyn crate::ipam_driver::Ipam>,
    config: Config,
    events: broadcast::Sender<Event>,
    names: Arc<NameIndex>,
    /// Port mappings published now, readable without the lock (metrics).
    published: std::sync::atomic::AtomicUsize,
    /// Inverse steps that failed, waiting for a retry.
    repairs: repair::Repairs,
    /// The store revision the start-up load read at: following starts there.
    loaded_revision: std::sync::atomic::AtomicU64,
    /// Set once [`Controller::follow`] runs: own commits are then recorded in `own`.
    following: std::sync::atomic::AtomicBool,
    /// Revisions this controller committed that the follower has not seen yet.
    own: std::sync::Mutex<std::collections::BTreeSet<Revision>>,
    /// One lock per sandbox: operations on a sandbox take it before the operation lock, so
    /// that a connect may let go of the operation lock during its slow half.
    sb_locks: std::sync::Mutex<std::collections::HashMap<crate::SandboxId, Arc<Mutex<()>>>>,
    /// The follower task, stopped when the controller goes.
    follower: std::sync::Mutex<Option<tokio::task::AbortHandle>>,
    /// The cluster store side, when this host is part of a cluster.
    cluster: Option<cluster::ClusterState>,
    /// Background tasks (the node's keep-alive), stopped when the controller goes.
    tasks: std::sync::Mutex<Vec<tokio::task::AbortHandle>>,
    /// Watches of the endpoints of global networks this host has an endpoint on.
    net_watches:
        std::sync::Mutex<std::collections::HashMap<crate::NetworkId, tokio::task::AbortHandle>>,
    /// The controller itself, once [`Controller::follow`] ran (to start watches later).
    me: std::sync::OnceLock<std::sync::Weak<Controller>>,
    /// Set while the cluster store could not be reached since start: global state is not
    /// loaded yet (the follower keeps trying), and nothing global is swept meanwhile.
    cluster_pending: std::sync::atomic::AtomicBool,
}

impl Drop for Controller {
    fn drop(&mut self) {
        if let Some(t) = self
            .follower
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            t.abort();
        }
        for t in self
            .tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            t.abort();
        }
    }
}

impl Controller {
    /// Loads state from `store`, makes the kernel match it, creates the predefined networks.
    pub async fn new(
        config: Config,
        store: Arc<dyn Store>,
        os: Arc<dyn SandboxOs>,
        drivers: Vec<Arc<dyn NetworkDriver>>,
    ) -> Result<Self> {
        let drivers = crate::registry::Registry::new(drivers, config.resolvers.clone());
        let mut ipam_list = config.ipams.clone();
        ipam_list.push(Arc::new(crate::ipam_driver::DefaultIpam::new(
            config.default_pools.clone(),
        )));
        let ipams = crate::registry::Registry::new(ipam_list, config.ipam_resolvers.clone());
        let (events, _) = broadcast::channel(1024);
        let names = config.names.clone().unwrap_or_default();
        let cluster = config.cluster.clone().map(cluster::ClusterState::new);
        let ctl = Controller {
            cluster,
            tasks: Default::default(),
            net_watches: Default::default(),
            me: Default::default(),
            cluster_pending: Default::default(),
            state: Mutex::new(State::default()),
            snapshot: Default::default(),
            store,
            os,
            drivers,
            ipams,
            config,
            events,
            names,
            published: Default::default(),
            repairs: Default::default(),
            loaded_revision: Default::default(),
            following: Default::default(),
            own: Default::default(),
            follower: Default::default(),
            sb_locks: Default::default(),
        };
        match ctl.register_node().await {
            Err(Error::ClusterUnavailable(why)) => {
                // Local networks must not wait for etcd: start with them, and join the
                // cluster when it answers (the follower keeps trying).
                tracing::warn!(error = %why, "cluster store unreachable at start: global networks come when it answers");
                ctl.cluster_pending
                    .store(true, std::sync::atomic::Ordering::SeqCst);
            }
            r => r?,
        }
        ctl.load_and_reconcile().await?;
        ctl.ensure_predefined().await?;
        Ok(ctl)
    }

    /// The DNS name index, kept current by every join and leave.
    pub fn names(&self) -> Arc<NameIndex> {
        self.names.clone()
    }

    /// Asserts again every network's and every published port's kernel state, after the
    /// firewall was flushed from outside. Idempotent; failures are logged and skipped.
    pub async fn reprogram(&self) {
        let st = self.lock().await;
        for n in st.networks.values() {
            if let Ok(d) = self.driver(&n.net.spec.driver) {
                if let Err(e) = d.create_network(&n.net).await {
                    tracing::warn!(network = %n.net.spec.name, error = %e, "re-creating network state failed");
                }
            }
        }
        for sb in st.sandboxes.values() {
            if sb.programmed.is_empty() {
                continue;
            }
            let now = (sb.gateway.as_ref(), sb.programmed.as_slice());
            if let Err(e) = self.sync_external(&st, &sb.sb, (None, &[]), now).await {
                tracing::warn!(sandbox = %sb.sb.spec.name, error = %e, "re-publishing ports failed");
            }
        }
    }

    /// The pools subnets are chosen from when a network names none.
    pub fn default_pools(&self) -> &[DefaultPool] {
        &self.config.default_pools
    }

    /// Repair items waiting for a retry (failed inverse steps).
    pub fn pending_repairs(&self) -> Vec<Repair> {
        self.repairs.pending()
    }

    /// Repair items recorded and completed since start, and pending now.
    pub fn repair_counts(&self) -> (u64, u64, usize) {
        self.repairs.counts()
    }

    /// How many port mappings are published now.
    pub fn published_ports(&self) -> usize {
        self.published.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Subscribes to the controller's events.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    fn emit(&self, event: Event) {
        // No subscriber is fine.
        let _ = self.events.send(event);
    }

    /// Takes the state for an operation; readers see its changes once the guard goes.
    async fn lock(&self) -> StateGuard<'_> {
        StateGuard {
            guard: self.state.lock().await,
            snapshot: &self.snapshot,
        }
    }

    /// Takes the lock of the sandbox `name` names now (resolved on the latest snapshot);
    /// returns its id with the guard.
    async fn lock_sandbox(
        &self,
        name: &str,
    ) -> Result<(crate::SandboxId, tokio::sync::OwnedMutexGuard<()>)> {
        let id = self.snapshot().find_sandbox(name)?;
        let lock = self
            .sb_locks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(id.clone())
            .or_default()
            .clone();
        Ok((id, lock.lock_owned().await))
    }

    /// Forgets the lock of a removed sandbox.
    fn drop_sandbox_lock(&self, id: &crate::SandboxId) {
        self.sb_locks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
    }

    /// The state as the last finished operation left it.
    fn snapshot(&self) -> Arc<State> {
        self.snapshot
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn driver(&self, name: &str) -> Result<Arc<dyn NetworkDriver>> {
        self.drivers.get(name).ok_or_else(|| Error::DriverNotFound {
            driver: name.to_owned(),
            available: self.drivers.names().join(", "),
        })
    }

    /// The driver called `name`, looked for among plugins when not known yet.
    async fn resolve_driver(&self, name: &str) -> Result<Arc<dyn NetworkDriver>> {
        use crate::registry::Unresolved;
        self.drivers.resolve(name).await.map_err(|e| match e {
            Unresolved::NotFound(names) => Error::DriverNotFound {
                driver: name.to_owned(),
                available: names.join(", "),
            },
            Unresolved::Failed(source) => driver_err(name, source),
        })
    }

    /// Makes sure the driver of `network` is at hand (a plugin is found and activated after
    /// a restart when first needed); a network that does not exist is left to the caller.
    async fn ready_driver_of(&self, network: &str) -> Result<()> {
        let driver = {
            let snap = self.snapshot();
            let Ok(id) = snap.find_network(network) else {
                return Ok(());
            };
            match snap.net(&id) {
                Ok(n) => n.net.spec.driver.clone(),
                Err(_) => return Ok(()),
            }
        };
        self.resolve_driver(&driver).await.map(|_| ())
    }

    /// The names of the network drivers available now.
    pub fn driver_names(&self) -> Vec<String> {
        self.drivers.names()
    }

    /// Commits `ops` (all about one object) to the store that keeps them.
    async fn commit(&self, ops: Vec<Op>) -> Result<Revision> {
        let (rev, route) = self.commit_routed(ops).await?;
        // The follower watches the cluster store when there is one, else the local one.
        let followed = if self.cluster.is_some() {
            cluster::Route::Cluster
        } else {
            cluster::Route::Local
        };
        if route == followed && self.following.load(std::sync::atomic::Ordering::SeqCst) {
            self.own
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(rev);
        }
        Ok(rev)
    }
}

fn encode<T: serde::Serialize>(v: &T) -> Vec<u8> {
    // Serialising our own plain structs to JSON cannot fail.
    serde_json::to_vec(v).unwrap_or_default()
}

fn decode<T: serde::de::DeserializeOwned>(key: &str, v: &[u8]) -> Result<T> {
    serde_json::from_slice(v).map_err(|e| {
        Error::Store(StoreError::Corrupt {
            key: key.to_owned(),
            reason: e.to_string(),
        })
    })
}

/// A driver step that failed, named with the objects it concerned.
#[derive(Debug, thiserror::Error)]
#[error("{step}: {source}")]
struct StepFailed {
    step: String,
    #[source]
    source: crate::BoxError,
}

/// A driver failure in `step` (e.g. "joining endpoint web to sandbox api"): the error the
/// user sees names the driver, the step and its objects, then the cause.
fn step_err(driver: &str, step: impl Into<String>, source: crate::BoxError) -> Error {
    match driver_err(driver, source) {
        Error::Driver { driver, source } => Error::Driver {
            driver,
            source: Box::new(StepFailed {
                step: step.into(),
                source,
            }),
        },
        Error::Plugin {
            driver,
            message,
            unavailable,
        } => Error::Plugin {
            driver,
            message: format!("{}: {message}", step.into()),
            unavailable,
        },
        other => other,
    }
}

fn driver_err(driver: &str, source: crate::BoxError) -> Error {
    let source = match source.downcast::<crate::driver::InvalidInput>() {
        Ok(refusal) => {
            return Error::InvalidParameter {
                field: refusal.field,
                reason: refusal.reason,
            }
        }
        Err(source) => source,
    };
    match source.downcast::<crate::driver::PluginFailure>() {
        Ok(f) => Error::Plugin {
            driver: driver.to_owned(),
            message: f.message,
            unavailable: f.kind == crate::driver::PluginFailureKind::Unavailable,
        },
        Err(source) => Error::Driver {
            driver: driver.to_owned(),
            source,
        },
    }
}

/// The state held by an operation. When it goes, the state is published to readers: a clone
/// of persistent maps, a few reference counts.
struct StateGuard<'a> {
    guard: tokio::sync::MutexGuard<'a, State>,
    snapshot: &'a std::sync::RwLock<Arc<State>>,
}

impl std::ops::Deref for StateGuard<'_> {
    type Target = State;
    fn deref(&self) -> &State {
        &self.guard
    }
}

impl std::ops::DerefMut for StateGuard<'_> {
    fn deref_mut(&mut self) -> &mut State {
        &mut self.guard
    }
}

impl Drop for StateGuard<'_> {
    fn drop(&mut self) {
        let now = Arc::new(self.guard.clone());
        *self.snapshot.write().unwrap_or_else(|p| p.into_inner()) = now;
    }
}
