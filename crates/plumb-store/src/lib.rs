//! plumb-store: backends of the [`plumb_core::store::Store`] contract.
//!
//! - [`RedbStore`]: the embedded default, a single redb file, one durable write
//!   transaction per commit (survives `kill -9` and power loss).
//! - [`EtcdStore`] (feature `etcd`): global-scope state in an etcd cluster shared by hosts.
//! - [`MemoryStore`]: the same semantics in memory, for tests and throwaway daemons.
//!
//! Both keep the last [`hub::HISTORY`] changes so that a watcher can start from a revision
//! a listing returned (gap-free list-then-watch), and both hold leases whose keys go when the
//! lease expires. Leases live as long as the process that granted them.

#[cfg(feature = "etcd")]
mod etcd;
mod hub;
mod leases;
mod memory;
mod redb_store;

#[cfg(feature = "etcd")]
pub use etcd::{EtcdOptions, EtcdStore};
pub use memory::MemoryStore;
pub use redb_store::RedbStore;

use plumb_core::store::{Entry, Expect, Op, Revision, StoreError};
use std::collections::BTreeMap;

/// Checks every condition of `ops` against `current` (key -> revision); the first failing
/// key is reported.
fn check(ops: &[Op], current: impl Fn(&str) -> Option<Revision>) -> Result<(), StoreError> {
    for op in ops {
        let (key, expect) = match op {
            Op::Put { key, expect, .. } | Op::Delete { key, expect } => (key, *expect),
        };
        let ok = match expect {
            Expect::Any => true,
            Expect::Absent => current(key).is_none(),
            Expect::At(r) => current(key) == Some(r),
        };
        if !ok {
            return Err(StoreError::Conflict {
                key: key.clone(),
                expected: expect,
            });
        }
    }
    Ok(())
}

/// Entries of `map` under `prefix`.
fn list_prefix(map: &BTreeMap<String, (Vec<u8>, Revision)>, prefix: &str) -> Vec<Entry> {
    map.range(prefix.to_owned()..)
        .take_while(|(k, _)| k.starts_with(prefix))
        .map(|(k, (v, r))| Entry {
            key: k.clone(),
            value: v.clone(),
            revision: *r,
        })
        .collect()
}
