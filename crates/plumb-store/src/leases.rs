//! Leases: a ttl, a deadline moved by keep-alives, and the keys attached. The store deletes
//! the keys of a lease that expired (checked by a timer task per lease) or was revoked.

use plumb_core::store::{LeaseId, Op, StoreError};
use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

struct Lease {
    ttl: Duration,
    deadline: Instant,
    keys: BTreeSet<String>,
}

/// Leases by id, the lease of each attached key, the last id given.
#[derive(Default)]
struct Table {
    leases: HashMap<LeaseId, Lease>,
    owner: HashMap<String, LeaseId>,
    last: LeaseId,
}

/// The leases of one store.
#[derive(Default)]
pub struct Leases {
    inner: Mutex<Table>,
}

/// What a lease's timer finds when it fires.
pub enum Due {
    /// Gone already (revoked).
    Gone,
    /// Kept alive: look again at this instant.
    Later(Instant),
    /// Expired now: delete these keys.
    Expired(Vec<String>),
}

impl Leases {
    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new lease and its first deadline.
    pub fn grant(&self, ttl: Duration) -> (LeaseId, Instant) {
        let mut g = self.lock();
        g.last += 1;
        let id = g.last;
        let deadline = Instant::now() + ttl;
        g.leases.insert(
            id,
            Lease {
                ttl,
                deadline,
                keys: BTreeSet::new(),
            },
        );
        (id, deadline)
    }

    /// Moves a lease's deadline a ttl ahead.
    pub fn keep_alive(&self, id: LeaseId) -> Result<(), StoreError> {
        let mut g = self.lock();
        let l = g.leases.get_mut(&id).ok_or(StoreError::LeaseNotFound(id))?;
        l.deadline = Instant::now() + l.ttl;
        Ok(())
    }

    /// Ends a lease; returns its keys.
    pub fn revoke(&self, id: LeaseId) -> Result<Vec<String>, StoreError> {
        let mut g = self.lock();
        let l = g.leases.remove(&id).ok_or(StoreError::LeaseNotFound(id))?;
        for k in &l.keys {
            g.owner.remove(k);
        }
        Ok(l.keys.into_iter().collect())
    }

    /// What the timer of lease `id` should do now.
    pub fn due(&self, id: LeaseId) -> Due {
        let g = self.lock();
        match g.leases.get(&id) {
            None => Due::Gone,
            Some(l) if l.deadline > Instant::now() => Due::Later(l.deadline),
            Some(_) => {
                drop(g);
                match self.revoke(id) {
                    Ok(keys) => Due::Expired(keys),
                    Err(_) => Due::Gone,
                }
            }
        }
    }

    /// Checks that every lease `ops` name exists (before a commit).
    pub fn check(&self, ops: &[Op]) -> Result<(), StoreError> {
        let g = self.lock();
        for op in ops {
            if let Op::Put {
                lease: Some(id), ..
            } = op
            {
                if !g.leases.contains_key(id) {
                    return Err(StoreError::LeaseNotFound(*id));
                }
            }
        }
        Ok(())
    }

    /// Records which keys a committed transaction attached to or detached from leases.
    pub fn apply(&self, ops: &[Op]) {
        let mut g = self.lock();
        for op in ops {
            let key = op.key().to_owned();
            if let Some(old) = g.owner.remove(&key) {
                if let Some(l) = g.leases.get_mut(&old) {
                    l.keys.remove(&key);
                }
            }
            if let Op::Put {
                lease: Some(id), ..
            } = op
            {
                if let Some(l) = g.leases.get_mut(id) {
                    l.keys.insert(key.clone());
                    g.owner.insert(key, *id);
                }
            }
        }
    }
}

/// The deletes that remove `keys` (whatever their revision).
pub fn deletes(keys: Vec<String>) -> Vec<Op> {
    keys.into_iter()
        .map(|k| Op::delete(k, plumb_core::store::Expect::Any))
        .collect()
}

/// Deletes the keys of lease `id` of a store when the lease expires (keep-alives move the
/// deadline; a revoked lease ends the timer). `store` gives the store while it exists.
pub fn expire_later<S, F>(store: F, id: LeaseId, mut deadline: Instant)
where
    S: plumb_core::store::Store + AsRef<Leases>,
    F: Fn() -> Option<S> + Send + 'static,
{
    tokio::spawn(async move {
        loop {
            tokio::time::sleep_until(deadline.into()).await;
            let Some(s) = store() else { return };
            match s.as_ref().due(id) {
                Due::Gone => return,
                Due::Later(t) => deadline = t,
                Due::Expired(keys) => {
                    if let Err(e) = s.commit(deletes(keys)).await {
                        tracing::warn!(lease = id, error = %e, "deleting the keys of an expired lease failed");
                    }
                    return;
                }
            }
        }
    });
}
