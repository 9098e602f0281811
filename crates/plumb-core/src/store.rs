//! The state store contract: a key-value map with revisions, compare-and-swap and watches.
//!
//! Keys: `networks/<id>`, `endpoints/<network>/<id>`, `sandboxes/<id>`. IPAM state is not
//! stored apart: it is derived at start from the networks (gateways, auxiliary addresses) and
//! endpoints (their addresses), so an address can never be both free and held.

use async_trait::async_trait;
use tokio::sync::broadcast;

/// A store-wide revision, increasing with every commit.
pub type Revision = u64;

/// A condition a write puts on the current revision of its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Write whatever is there.
    Any,
    /// The key must not exist.
    Absent,
    /// The key must be at this revision.
    At(Revision),
}

/// One write of a transaction.
#[derive(Debug, Clone)]
pub enum Op {
    /// Store `value` at `key`.
    Put {
        /// The key.
        key: String,
        /// The value.
        value: Vec<u8>,
        /// The condition.
        expect: Expect,
    },
    /// Remove `key` (absent keys count as removed when `expect` is `Any`).
    Delete {
        /// The key.
        key: String,
        /// The condition.
        expect: Expect,
    },
}

/// A key with its value and the revision that last wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The key.
    pub key: String,
    /// The value.
    pub value: Vec<u8>,
    /// The revision of the last write.
    pub revision: Revision,
}

/// A change seen by a watcher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchEvent {
    /// The key was written.
    Put(Entry),
    /// The key was removed.
    Delete {
        /// The key.
        key: String,
        /// The revision of the removal.
        revision: Revision,
    },
}

impl WatchEvent {
    /// The key that changed.
    pub fn key(&self) -> &str {
        match self {
            WatchEvent::Put(e) => &e.key,
            WatchEvent::Delete { key, .. } => key,
        }
    }
}

/// Errors of a store backend.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A condition of the transaction did not hold; nothing was written.
    #[error("key {key} was modified concurrently (expected {expected:?}): retry the operation")]
    Conflict {
        /// The key whose condition failed.
        key: String,
        /// The condition.
        expected: Expect,
    },
    /// The backend failed.
    #[error("{0}")]
    Backend(#[source] crate::BoxError),
    /// A stored value could not be decoded.
    #[error("corrupt value at {key}: {reason}")]
    Corrupt {
        /// The key.
        key: String,
        /// The decoding error.
        reason: String,
    },
}

/// A transactional key-value store with revisions.
#[async_trait]
pub trait Store: Send + Sync {
    /// The entry at `key`, if any.
    async fn get(&self, key: &str) -> Result<Option<Entry>, StoreError>;
    /// Every entry whose key starts with `prefix`, in key order.
    async fn list(&self, prefix: &str) -> Result<Vec<Entry>, StoreError>;
    /// Applies all `ops` atomically (all or none) and returns the commit's revision.
    async fn commit(&self, ops: Vec<Op>) -> Result<Revision, StoreError>;
    /// A stream of every change from now on; filter with [`WatchEvent::key`].
    fn watch(&self) -> broadcast::Receiver<WatchEvent>;
}

/// Builds the key of a network.
pub fn network_key(id: &crate::NetworkId) -> String {
    format!("networks/{id}")
}

/// Builds the key of an endpoint.
pub fn endpoint_key(net: &crate::NetworkId, id: &crate::EndpointId) -> String {
    format!("endpoints/{net}/{id}")
}

/// Builds the key of a sandbox.
pub fn sandbox_key(id: &crate::SandboxId) -> String {
    format!("sandboxes/{id}")
}
