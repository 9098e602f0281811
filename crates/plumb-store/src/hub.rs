//! Watches with history: every committed change is kept in a bounded log and handed to the
//! watchers whose prefix it matches, in revision order. A watcher may start from any revision
//! the log still covers; older ones get "compacted: resync".

use plumb_core::store::{Revision, StoreError, Watch, WatchEvent};
use std::collections::VecDeque;
use std::sync::Mutex;
use tokio::sync::mpsc;

/// Changes kept for watchers that start in the past.
pub const HISTORY: usize = 100_000;

struct Inner {
    log: VecDeque<WatchEvent>,
    /// Changes up to this revision are no longer (or were never) in the log.
    compacted: Revision,
    /// (prefix, revision watched from, sender): a change at or below that revision is not
    /// sent, so a change committed before the watch but published after it is not doubled.
    watchers: Vec<(String, Revision, mpsc::UnboundedSender<WatchEvent>)>,
}

/// The change log and the watchers of one store.
pub struct Hub {
    inner: Mutex<Inner>,
    capacity: usize,
}

fn revision(e: &WatchEvent) -> Revision {
    match e {
        WatchEvent::Put(entry) => entry.revision,
        WatchEvent::Delete { revision, .. } => *revision,
    }
}

impl Hub {
    /// A hub for a store whose history starts after `current` (a store just opened).
    pub fn new(current: Revision, capacity: usize) -> Self {
        Hub {
            inner: Mutex::new(Inner {
                log: VecDeque::new(),
                compacted: current,
                watchers: Vec::new(),
            }),
            capacity: capacity.max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // The log stays consistent even if a holder panicked: pushes are whole.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records the changes of one commit (call in revision order) and hands them out.
    pub fn publish(&self, events: Vec<WatchEvent>) {
        let mut g = self.lock();
        for ev in events {
            let rev = revision(&ev);
            g.watchers.retain(|(prefix, from, tx)| {
                rev <= *from
                    || !ev.key().starts_with(prefix.as_str())
                    || tx.send(ev.clone()).is_ok()
            });
            g.log.push_back(ev);
            while g.log.len() > self.capacity {
                if let Some(old) = g.log.pop_front() {
                    g.compacted = g.compacted.max(revision(&old));
                }
            }
        }
    }

    /// A watch of `prefix` from after revision `from`.
    pub fn watch(&self, prefix: &str, from: Revision) -> Result<Watch, StoreError> {
        let mut g = self.lock();
        if from < g.compacted {
            return Err(StoreError::Compacted {
                from,
                oldest: g.compacted,
            });
        }
        let (tx, rx) = mpsc::unbounded_channel();
        for ev in g.log.iter() {
            if revision(ev) > from && ev.key().starts_with(prefix) {
                // The receiver is right here: sending cannot fail.
                let _ = tx.send(ev.clone());
            }
        }
        g.watchers.push((prefix.to_owned(), from, tx));
        Ok(rx)
    }
}
