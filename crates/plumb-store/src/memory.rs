//! An in-memory store with the same transaction semantics as the durable ones.

use async_trait::async_trait;
use plumb_core::store::{Entry, Op, Revision, Store, StoreError, WatchEvent};
use std::collections::BTreeMap;
use std::sync::Mutex;
use tokio::sync::broadcast;

/// The map of keys to (value, revision), and the last revision.
type Data = (BTreeMap<String, (Vec<u8>, Revision)>, Revision);

/// A store that lives as long as the process.
pub struct MemoryStore {
    inner: Mutex<Data>,
    watch: broadcast::Sender<WatchEvent>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore {
            inner: Mutex::new((BTreeMap::new(), 0)),
            watch: broadcast::channel(4096).0,
        }
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Data>, StoreError> {
        self.inner
            .lock()
            .map_err(|_| StoreError::Backend("memory store lock poisoned".into()))
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

    async fn list(&self, prefix: &str) -> Result<Vec<Entry>, StoreError> {
        Ok(crate::list_prefix(&self.lock()?.0, prefix))
    }

    async fn commit(&self, ops: Vec<Op>) -> Result<Revision, StoreError> {
        let mut g = self.lock()?;
        crate::check(&ops, |k| g.0.get(k).map(|(_, r)| *r))?;
        g.1 += 1;
        let rev = g.1;
        for op in ops {
            let ev = match op {
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
            };
            let _ = self.watch.send(ev);
        }
        Ok(rev)
    }

    fn watch(&self) -> broadcast::Receiver<WatchEvent> {
        self.watch.subscribe()
    }
}
