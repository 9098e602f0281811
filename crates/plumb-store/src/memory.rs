//! An in-memory store with the same semantics as the durable ones: transactions, revisions,
//! watches with history, leases.

use crate::hub::{Hub, HISTORY};
use crate::leases::{deletes, expire_later, Leases};
use async_trait::async_trait;
use plumb_core::store::{
    Entry, LeaseId, Listing, Op, Revision, Store, StoreError, Watch, WatchEvent,
};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The map of keys to (value, revision), and the last revision.
type Data = (BTreeMap<String, (Vec<u8>, Revision)>, Revision);

struct Shared {
    data: Mutex<Data>,
    hub: Hub,
    leases: Leases,
}

/// A store that lives as long as the process; clones share it.
#[derive(Clone)]
pub struct MemoryStore {
    shared: Arc<Shared>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::with_history(HISTORY)
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty store keeping `history` changes for watchers that start in the past.
    pub fn with_history(history: usize) -> Self {
        MemoryStore {
            shared: Arc::new(Shared {
                data: Mutex::new((BTreeMap::new(), 0)),
                hub: Hub::new(0, history),
                leases: Leases::default(),
            }),
        }
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Data>, StoreError> {
        self.shared
            .data
            .lock()
            .map_err(|_| StoreError::Backend("memory store lock poisoned".into()))
    }
}

impl AsRef<Leases> for MemoryStore {
    fn as_ref(&self) -> &Leases {
        &self.shared.leases
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn get(&self, key: &str) -> Result<Option<Entry>, StoreError> {
        let g = self.lock()?;
        Ok(g.0.get(key).map(|(v, r)| Entry {
            key: key.to_owned(),
            value: v.clone(),
            revision: *r,
        }))
    }

    async fn list(&self, prefix: &str) -> Result<Listing, StoreError> {
        let g = self.lock()?;
        Ok(Listing {
            entries: crate::list_prefix(&g.0, prefix),
            revision: g.1,
        })
    }

    async fn commit(&self, ops: Vec<Op>) -> Result<Revision, StoreError> {
        let mut g = self.lock()?;
        crate::check(&ops, |k| g.0.get(k).map(|(_, r)| *r))?;
        self.shared.leases.check(&ops)?;
        self.shared.leases.apply(&ops);
        g.1 += 1;
        let rev = g.1;
        let mut events = Vec::with_capacity(ops.len());
        for op in ops {
            events.push(match op {
                Op::Put { key, value, .. } => {
                    g.0.insert(key.clone(), (value.clone(), rev));
                    WatchEvent::Put(Entry {
                        key,
                        value,
                        revision: rev,
                    })
                }
                Op::Delete { key, .. } => {
                    g.0.remove(&key);
                    WatchEvent::Delete { key, revision: rev }
                }
            });
        }
        // Still under the data lock: watchers get commits in revision order.
        self.shared.hub.publish(events);
        Ok(rev)
    }

    async fn watch(&self, prefix: &str, from: Revision) -> Result<Watch, StoreError> {
        self.shared.hub.watch(prefix, from)
    }

    async fn grant(&self, ttl: Duration) -> Result<LeaseId, StoreError> {
        let (id, deadline) = self.shared.leases.grant(ttl);
        let weak = Arc::downgrade(&self.shared);
        expire_later(
            move || weak.upgrade().map(|shared| MemoryStore { shared }),
            id,
            deadline,
        );
        Ok(id)
    }

    async fn keep_alive(&self, lease: LeaseId) -> Result<(), StoreError> {
        self.shared.leases.keep_alive(lease)
    }

    async fn revoke(&self, lease: LeaseId) -> Result<(), StoreError> {
        let keys = self.shared.leases.revoke(lease)?;
        self.commit(deletes(keys)).await.map(|_| ())
    }
}
