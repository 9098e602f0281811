//! The embedded store: one redb file, a table of values and a table holding the revision.
//!
//! Values are stored as 8 bytes of big-endian revision followed by the payload. Every commit
//! is a durable redb write transaction run on the blocking pool, off the async workers.

use async_trait::async_trait;
use plumb_core::store::{Entry, Op, Revision, Store, StoreError, WatchEvent};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use std::path::Path;
use std::sync::Arc;
use tokio::sync::broadcast;

const KV: TableDefinition<&str, &[u8]> = TableDefinition::new("kv");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const REVISION: &str = "revision";

/// A store in a redb file.
pub struct RedbStore {
    db: Arc<Database>,
    watch: broadcast::Sender<WatchEvent>,
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
        {
            w.open_table(KV).map_err(backend)?;
            w.open_table(META).map_err(backend)?;
        }
        w.commit().map_err(backend)?;
        Ok(RedbStore {
            db: Arc::new(db),
            watch: broadcast::channel(4096).0,
        })
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Database) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || f(&db))
            .await
            .map_err(backend)?
    }
}

#[async_trait]
impl Store for RedbStore {
    async fn get(&self, key: &str) -> Result<Option<Entry>, StoreError> {
        let key = key.to_owned();
        self.blocking(move |db| {
            let r = db.begin_read().map_err(backend)?;
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

    async fn list(&self, prefix: &str) -> Result<Vec<Entry>, StoreError> {
        let prefix = prefix.to_owned();
        self.blocking(move |db| {
            let r = db.begin_read().map_err(backend)?;
            let t = r.open_table(KV).map_err(backend)?;
            let mut out = Vec::new();
            for item in t.range(prefix.as_str()..).map_err(backend)? {
                let (k, v) = item.map_err(backend)?;
                let key = k.value().to_owned();
                if !key.starts_with(&prefix) {
                    break;
                }
                let (revision, value) = split(&key, v.value())?;
                out.push(Entry {
                    key,
                    value,
                    revision,
                });
            }
            Ok(out)
        })
        .await
    }

    async fn commit(&self, ops: Vec<Op>) -> Result<Revision, StoreError> {
        let (rev, events) = self
            .blocking(move |db| {
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
                Ok((rev, events))
            })
            .await?;
        for ev in events {
            let _ = self.watch.send(ev);
        }
        Ok(rev)
    }

    fn watch(&self) -> broadcast::Receiver<WatchEvent> {
        self.watch.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use plumb_core::store::Expect;

    fn put(k: &str, v: &str, expect: Expect) -> Op {
        Op::Put {
            key: k.into(),
            value: v.as_bytes().to_vec(),
            expect,
        }
    }

    #[tokio::test]
    async fn cas_list_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.redb");
        {
            let s = RedbStore::open(&path).unwrap();
            let mut w = s.watch();
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
        assert_eq!(l.len(), 1);
        assert_eq!(l[0].value, b"2");
        let r = s
            .commit(vec![Op::Delete {
                key: "networks/a".into(),
                expect: Expect::Any,
            }])
            .await
            .unwrap();
        assert!(r > l[0].revision, "revisions keep increasing across reopen");
    }
}
