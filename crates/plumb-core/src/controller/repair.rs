//! Repair items: an inverse step that failed while an operation was being undone is not
//! dropped. It is logged with the object it concerns, kept here, counted in the metrics, and
//! retried by [`Controller::repair`] (plumbd runs it periodically) until it succeeds. A restart
//! needs none of them: start-up reconciliation makes the kernel match the store as a whole.

use super::state::State;
use super::Controller;
use crate::model::{Endpoint, Network, Sandbox};
use crate::ports::PortMapping;
use crate::store::{Expect, Op};
use crate::{EndpointId, SandboxId};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// What must be done again.
#[derive(Debug, Clone)]
pub enum RepairAction {
    /// Write the store key back to what the controller's state says (None: delete it).
    StoreWrite {
        /// The key.
        key: String,
        /// Its value, or None for a deletion.
        value: Option<Vec<u8>>,
    },
    /// Plumb a joined endpoint into its sandbox again.
    Replumb(EndpointId),
    /// Take an endpoint's interface out of a sandbox.
    Leave {
        /// Its network.
        network: Box<Network>,
        /// The endpoint as it was joined.
        endpoint: Box<Endpoint>,
        /// The sandbox.
        sandbox: Box<Sandbox>,
    },
    /// Tell the driver an endpoint is gone.
    DeleteEndpoint {
        /// Its network.
        network: Box<Network>,
        /// The endpoint.
        endpoint: Box<Endpoint>,
    },
    /// Set a sandbox's default route and hosts file from its endpoints again.
    RefreshSandbox(SandboxId),
    /// Remove a sandbox's namespace and files.
    DeleteSandbox(Box<Sandbox>),
    /// Publish ports to an endpoint again.
    Program {
        /// Its network.
        network: Box<Network>,
        /// The endpoint they go to.
        endpoint: Box<Endpoint>,
        /// The ports.
        ports: Vec<PortMapping>,
    },
    /// Withdraw published ports from an endpoint.
    Revoke {
        /// Its network.
        network: Box<Network>,
        /// The endpoint they were published to.
        endpoint: Box<Endpoint>,
        /// The ports.
        ports: Vec<PortMapping>,
    },
}

/// A failed inverse step, kept until a retry succeeds.
#[derive(Debug, Clone)]
pub struct Repair {
    /// The step that failed, as the log and the metrics name it.
    pub step: &'static str,
    /// The object it concerns.
    pub object: String,
    /// What to do again.
    pub action: RepairAction,
    /// The last failure.
    pub error: String,
}

/// The pending repairs and their counters.
#[derive(Default)]
pub struct Repairs {
    pending: Mutex<Vec<Repair>>,
    recorded: AtomicU64,
    done: AtomicU64,
}

impl Repairs {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Repair>> {
        // A poisoned list is still a list.
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keeps a failed inverse step (and logs it).
    pub fn record(
        &self,
        step: &'static str,
        object: impl Into<String>,
        action: RepairAction,
        error: &dyn std::fmt::Display,
    ) {
        let object = object.into();
        tracing::error!(step, object = %object, error = %error, "undoing a failed operation failed: kept as a repair item");
        self.recorded.fetch_add(1, Ordering::Relaxed);
        self.lock().push(Repair {
            step,
            object,
            action,
            error: error.to_string(),
        });
    }

    /// Repair items waiting for a retry.
    pub fn pending(&self) -> Vec<Repair> {
        self.lock().clone()
    }

    /// (recorded since start, completed since start, pending now).
    pub fn counts(&self) -> (u64, u64, usize) {
        (
            self.recorded.load(Ordering::Relaxed),
            self.done.load(Ordering::Relaxed),
            self.lock().len(),
        )
    }
}

impl Controller {
    /// Retries every pending repair item; returns how many are still pending.
    pub async fn repair(&self) -> usize {
        let items = std::mem::take(&mut *self.repairs.lock());
        if items.is_empty() {
            return 0;
        }
        let mut st = self.lock().await;
        for mut item in items {
            match self.retry(&mut st, &item.action).await {
                Ok(()) => {
                    tracing::info!(step = item.step, object = %item.object, "repair item completed");
                    self.repairs.done.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    item.error = e.to_string();
                    self.repairs.lock().push(item);
                }
            }
        }
        self.repairs.lock().len()
    }

    async fn retry(&self, st: &mut State, action: &RepairAction) -> crate::Result<()> {
        match action {
            RepairAction::StoreWrite { key, value } => {
                let op = match value {
                    Some(v) => Op::put(key.clone(), v.clone(), Expect::Any),
                    None => Op::delete(key.clone(), Expect::Any),
                };
                self.commit(vec![op]).await.map(|_| ())
            }
            RepairAction::Replumb(id) => {
                let Some((ep, rev)) = st.endpoints.get(id).cloned() else {
                    return Ok(());
                };
                let sandbox_there = st.joined_here(&ep);
                if !sandbox_there {
                    return Ok(());
                }
                self.plumb_in(st, ep, rev).await
            }
            RepairAction::Leave {
                network,
                endpoint,
                sandbox,
            } => self
                .driver(&network.spec.driver)?
                .leave(network, endpoint, sandbox)
                .await
                .map_err(|e| super::driver_err(&network.spec.driver, e)),
            RepairAction::DeleteEndpoint { network, endpoint } => self
                .driver(&network.spec.driver)?
                .delete_endpoint(network, endpoint)
                .await
                .map_err(|e| super::driver_err(&network.spec.driver, e)),
            RepairAction::RefreshSandbox(id) => {
                let Some(entry) = st.sandboxes.get_mut(id) else {
                    return Ok(());
                };
                // Forget what was applied, so that everything is applied again.
                entry.gateway = None;
                self.refresh_sandbox(st, id).await
            }
            RepairAction::DeleteSandbox(sb) => {
                self.os.delete(sb).await.map_err(|e| crate::Error::Os {
                    sandbox: sb.spec.name.clone(),
                    source: e,
                })
            }
            RepairAction::Program {
                network,
                endpoint,
                ports,
            } => self
                .driver(&network.spec.driver)?
                .program_external(network, endpoint, ports)
                .await
                .map_err(|e| super::driver_err(&network.spec.driver, e)),
            RepairAction::Revoke {
                network,
                endpoint,
                ports,
            } => self
                .driver(&network.spec.driver)?
                .revoke_external(network, endpoint, ports)
                .await
                .map_err(|e| super::driver_err(&network.spec.driver, e)),
        }
    }
}
