//! The state store contract: a key-value map with revisions, compare-and-swap and watches.
//!
//! Keys: `networks/<id>`, `endpoints/<network>/<id>`, `sandboxes/<id>`. IPAM state is not
//! stored apart: it is derived at start from the networks (gateways, auxiliary addresses) and
//! endpoints (their addresses), so an address can never be both free and held.

use async_trait::async_trait;

/// A store-wide revision, increasing with every commit.
pub type Revision = u64;

/// A lease: keys attached to it are deleted when it expires or is revoked.
pub type LeaseId = u64;

/// The changes a watcher receives, in revision order.
pub type Watch = tokio::sync::mpsc::UnboundedReceiver<WatchEvent>;

/// Entries under a prefix and the store revision they were read at: watching from that
/// revision misses nothing and repeats nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listing {
    /// The entries, in key order.
    pub entries: Vec<Entry>,
    /// The revision the listing reflects.
    pub revision: Revision,
}

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
        /// The lease the key lives under (deleted when it expires), if any.
        lease: Option<LeaseId>,
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
    /// The watcher asked for changes the store no longer keeps: list again and watch from
    /// the listing's revision.
    #[error("compacted: changes after revision {from} are no longer kept (oldest kept: {oldest}): resync")]
    Compacted {
        /// The revision asked for.
        from: Revision,
        /// Changes after this revision are still kept.
        oldest: Revision,
    },
    /// The lease does not exist (expired or revoked).
    #[error("lease {0} not found (expired or revoked)")]
    LeaseNotFound(LeaseId),
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
    /// Every entry whose key starts with `prefix`, in key order, and the revision read at.
    async fn list(&self, prefix: &str) -> Result<Listing, StoreError>;
    /// Applies all `ops` atomically (all or none) and returns the commit's revision.
    async fn commit(&self, ops: Vec<Op>) -> Result<Revision, StoreError>;
    /// Every change under `prefix` with a revision above `from`, in order, then every later
    /// one as it happens; [`StoreError::Compacted`] when changes after `from` are gone.
    async fn watch(&self, prefix: &str, from: Revision) -> Result<Watch, StoreError>;
    /// Grants a lease that expires `ttl` after its grant or its last keep-alive.
    async fn grant(&self, ttl: std::time::Duration) -> Result<LeaseId, StoreError>;
    /// Extends a lease by its ttl; [`StoreError::LeaseNotFound`] once it expired.
    async fn keep_alive(&self, lease: LeaseId) -> Result<(), StoreError>;
    /// Ends a lease now, deleting its keys.
    async fn revoke(&self, lease: LeaseId) -> Result<(), StoreError>;
}

impl Op {
    /// A put with no lease.
    pub fn put(key: impl Into<String>, value: Vec<u8>, expect: Expect) -> Self {
        Op::Put {
            key: key.into(),
            value,
            expect,
            lease: None,
        }
    }

    /// A delete.
    pub fn delete(key: impl Into<String>, expect: Expect) -> Self {
        Op::Delete {
            key: key.into(),
            expect,
        }
    }

    /// The key written or removed.
    pub fn key(&self) -> &str {
        match self {
            Op::Put { key, .. } | Op::Delete { key, .. } => key,
        }
    }
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
