//! The embedded store: one redb file, a table of values and a table holding the revision.
//!
//! Values are stored as 8 bytes of big-endian revision followed by the payload. Every commit
//! is a durable redb write transaction run on the blocking pool, off the async workers.

use crate::hub::{Hub, HISTORY};
use crate::leases::{deletes, expire_later, Leases};
use async_trait::async_trait;
use plumb_core::store::{
    Entry, LeaseId, Listing, Op, Revision, Store, StoreError, Watch, WatchEvent,
};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const KV: TableDefinition<&str, &[u8]> = TableDefinition::new("kv");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// Keys attached to a lease. Leases live as long as the process that granted them, so the
/// keys left here at the next open belong to leases that are gone, and are deleted.
const LEASED: TableDefinition<&str, u64> = TableDefinition::new("leased");
const REVISION: &str = "revision";

struct Shared {
    db: Database,
    hub: Hub,
    leases: Leases,
    /// Held from a write transaction's start until its changes are published, so that
    /// watchers get commits in revision order (the hub skips, per watcher, what is older than
    /// the revision it watches from).
    writing: Mutex<()>,
}

/// A store in a redb file; clones share it.
#[derive(Clone)]
pub struct RedbStore {
    shared: Arc<Shared>,
}

fn backend<E: std::error::Error + Send + Sync + 'static>(e: E) -> StoreError {
    StoreError::Backend(Box::new(e))
}

fn split(key: &str, raw: &[u8]) -> Result<(Revision, Vec<u8>), StoreError> {
    if raw.len() < 8 {
        return Err(StoreError::Corrupt {
            key: key.to_owned(),
            reason: "value shorter than its revision header".into(),
        });
    }
    let mut r = [0u8; 8];
    r.copy_from_slice(&raw[..8]);
    Ok((u64::from_be_bytes(r), raw[8..].to_vec()))
}

/// redb's page cache.
const CACHE_BYTES: usize = 4 << 20;

impl RedbStore {
    /// Opens (or creates) the store at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        // redb caches up to 1 GiB by default and keeps what it cached: plumbd reads the store
        // only at start (its state lives in memory), so a small cache costs nothing and keeps
        // the daemon's memory from growing with every page ever written.
        let db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create(path)
            .map_err(backend)?;
        let w = db.begin_write().map_err(backend)?;
        let mut current;
        {
            let mut kv = w.open_table(KV).map_err(backend)?;
            let mut meta = w.open_table(META).map_err(backend)?;
            let mut leased = w.open_table(LEASED).map_err(backend)?;
            let mut stale = Vec::new();
            for item in leased.iter().map_err(backend)? {
                let (k, _) = item.map_err(backend)?;
                stale.push(k.value().to_owned());
            }
            for k in &stale {
                kv.remove(k.as_str()).map_err(backend)?;
                leased.remove(k.as_str()).map_err(backend)?;
            }
            current = meta
                .get(REVISION)
                .map_err(backend)?
                .map(|v| v.value())
                .unwrap_or(0);
            if !stale.is_empty() {
                // The removals are a change of their own: later revisions stay above them.
                current += 1;
                meta.insert(REVISION, current).map_err(backend)?;
            }
        }
        w.commit().map_err(backend)?;
        Ok(RedbStore {
            shared: Arc::new(Shared {
                db,
                hub: Hub::new(current, HISTORY),
                leases: Leases::default(),
                writing: Mutex::new(()),
            }),
        })
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Shared) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let shared = self.shared.clone();
        tokio::task::spawn_blocking(move || f(&shared))
            .await
            .map_err(backend)?
    }
}

impl AsRef<Leases> for RedbStore {
    fn as_ref(&self) -> &Leases {
        &self.shared.leases
    }
}

#[async_trait]
impl Store for RedbStore {
    async fn get(&self, key: &str) -> Result<Option<Entry>, StoreError> {
        let key = key.to_owned();
        self.blocking(move |sh| {
            let r = sh.db.begin_read().map_err(backend)?;
            let t = r.open_table(KV).map_err(backend)?;
            match t.get(key.as_str()).map_err(backend)? {
                Some(v) => {
                    let (revision, value) = split(&key, v.value())?;
                    Ok(Some(Entry {
                        key,
                        value,
                        revision,
                    }))
                }
                None => Ok(None),
            }
        })
        .await
    }

    async fn list(&self, prefix: &str) -> Result<Listing, StoreError> {
        let prefix = prefix.to_owned();
        self.blocking(move |sh| {
            let r = sh.db.begin_read().map_err(backend)?;
            let t = r.open_table(KV).map_err(backend)?;
            let meta = r.open_table(META).map_err(backend)?;
            let revision = meta
                .get(REVISION)
                .map_err(backend)?
                .map(|v| v.value())
                .unwrap_or(0);
            let mut out = Vec::new();
            for item in t.range(prefix.as_str()..).map_err(backend)? {
                let (k, v) = item.map_err(backend)?;
                let key = k.value().to_owned();
                if !key.starts_with(&prefix) {
                    break;
                }
                let (entry_revision, value) = split(&key, v.value())?;
                out.push(Entry {
                    key,
                    value,
                    revision: entry_revision,
                });
            }
            Ok(Listing {
                entries: out,
                revision,
            })
        })
        .await
    }

    async fn commit(&self, ops: Vec<Op>) -> Result<Revision, StoreError> {
        self.blocking(move |sh| {
            let _writing = sh.writing.lock().unwrap_or_else(|p| p.into_inner());
            sh.leases.check(&ops)?;
            let db = &sh.db;
            let w = db.begin_write().map_err(backend)?;
            let mut events = Vec::with_capacity(ops.len());
            let rev;
            {
                let mut kv = w.open_table(KV).map_err(backend)?;
                let mut meta = w.open_table(META).map_err(backend)?;
                let mut current = std::collections::HashMap::new();
                for op in &ops {
                    let key = match op {
                        Op::Put { key, .. } | Op::Delete { key, .. } => key,
                    };
                    let r = match kv.get(key.as_str()).map_err(backend)? {
                        Some(v) => Some(split(key, v.value())?.0),
                        None => None,
                    };
                    current.insert(key.clone(), r);
                }
                crate::check(&ops, |k| current.get(k).copied().flatten())?;
                let last = meta
                    .get(REVISION)
                    .map_err(backend)?
                    .map(|v| v.value())
                    .unwrap_or(0);
                rev = last + 1;
                meta.insert(REVISION, rev).map_err(backend)?;
                let mut leased = w.open_table(LEASED).map_err(backend)?;
                for op in &ops {
                    match op {
                        Op::Put {
                            key,
                            lease: Some(l),
                            ..
                        } => {
                            leased.insert(key.as_str(), *l).map_err(backend)?;
                        }
                        _ => {
                            leased.remove(op.key()).map_err(backend)?;
                        }
                    }
                }
                sh.leases.apply(&ops);
                for op in ops {
                    match op {
                        Op::Put { key, value, .. } => {
                            let mut raw = Vec::with_capacity(8 + value.len());
                            raw.extend_from_slice(&rev.to_be_bytes());
                            raw.extend_from_slice(&value);
                            kv.insert(key.as_str(), raw.as_slice()).map_err(backend)?;
                            events.push(WatchEvent::Put(Entry {
                                key,
                                value,
                                revision: rev,
                            }));
                        }
                        Op::Delete { key, .. } => {
                            kv.remove(key.as_str()).map_err(backend)?;
                            events.push(WatchEvent::Delete { key, revision: rev });
                        }
                    }
                }
            }
            w.commit().map_err(backend)?;
            sh.hub.publish(events);
            Ok(rev)
        })
        .await
    }

    async fn watch(&self, prefix: &str, from: Revision) -> Result<Watch, StoreError> {
        self.shared.hub.watch(prefix, from)
    }

    async fn grant(&self, ttl: Duration) -> Result<LeaseId, StoreError> {
        let (id, deadline) = self.shared.leases.grant(ttl);
        let weak = Arc::downgrade(&self.shared);
        expire_later(
            move || weak.upgrade().map(|shared| RedbStore { shared }),
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

#[cfg(test)]
mod tests {
    use super::*;
    use plumb_core::store::Expect;

    fn put(k: &str, v: &str, expect: Expect) -> Op {
        Op::put(k, v.as_bytes().to_vec(), expect)
    }

    #[tokio::test]
    async fn cas_list_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.redb");
        {
            let s = RedbStore::open(&path).unwrap();
            let mut w = s.watch("", 0).await.unwrap();
            let r1 = s
                .commit(vec![put("networks/a", "1", Expect::Absent)])
                .await
                .unwrap();
            assert!(matches!(w.recv().await.unwrap(), WatchEvent::Put(_)));
            let err = s
                .commit(vec![
                    put("networks/b", "2", Expect::Absent),
                    put("networks/a", "x", Expect::Absent),
                ])
                .await
                .unwrap_err();
            assert!(matches!(err, StoreError::Conflict { .. }));
            // All or nothing: b was not written.
            assert!(s.get("networks/b").await.unwrap().is_none());
            let r2 = s
                .commit(vec![put("networks/a", "2", Expect::At(r1))])
                .await
                .unwrap();
            assert!(r2 > r1);
            assert!(s
                .commit(vec![put("networks/a", "3", Expect::At(r1))])
                .await
                .is_err());
            s.commit(vec![put("sandboxes/z", "z", Expect::Any)])
                .await
                .unwrap();
        }
        let s = RedbStore::open(&path).unwrap();
        let l = s.list("networks/").await.unwrap();
        assert_eq!(l.entries.len(), 1);
        assert_eq!(l.entries[0].value, b"2");
        // History does not survive a reopen: watching from before it says so.
        assert!(matches!(
            s.watch("", 1).await.unwrap_err(),
            StoreError::Compacted { .. }
        ));
        assert!(s.watch("", l.revision).await.is_ok());
        let r = s
            .commit(vec![Op::delete("networks/a", Expect::Any)])
            .await
            .unwrap();
        assert!(
            r > l.entries[0].revision,
            "revisions keep increasing across reopen"
        );
    }

    #[tokio::test]
    async fn keys_of_leases_from_before_a_reopen_are_gone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.redb");
        {
            let s = RedbStore::open(&path).unwrap();
            let lease = s.grant(Duration::from_secs(3600)).await.unwrap();
            let mut op = put("nodes/me", "x", Expect::Any);
            if let Op::Put { lease: l, .. } = &mut op {
                *l = Some(lease);
            }
            s.commit(vec![op, put("networks/kept", "y", Expect::Any)])
                .await
                .unwrap();
        }
        let s = RedbStore::open(&path).unwrap();
        assert!(s.get("nodes/me").await.unwrap().is_none());
        assert!(s.get("networks/kept").await.unwrap().is_some());
    }
}
