//! The rollback journal: every step of an operation records its inverse; a failure undoes
//! the recorded steps in reverse order.

use futures::future::BoxFuture;
use std::future::Future;

/// Inverses of the steps done so far.
#[derive(Default)]
pub struct Journal {
    undo: Vec<(
        &'static str,
        BoxFuture<'static, Result<(), crate::BoxError>>,
    )>,
}

impl Journal {
    /// An empty journal.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records the inverse of a step just done. It runs only on [`Journal::rollback`].
    pub fn push<F>(&mut self, what: &'static str, undo: F)
    where
        F: Future<Output = Result<(), crate::BoxError>> + Send + 'static,
    {
        self.undo.push((what, Box::pin(undo)));
    }

    /// Undoes every recorded step, last first. Failures are logged: the rest still runs.
    pub async fn rollback(self) {
        for (what, undo) in self.undo.into_iter().rev() {
            if let Err(e) = undo.await {
                tracing::warn!(step = what, error = %e, "rollback step failed");
            }
        }
    }

    /// Forgets the inverses: the operation succeeded.
    pub fn commit(self) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[tokio::test]
    async fn rollback_runs_in_reverse_and_commit_runs_nothing() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut j = Journal::new();
        for i in 0..3 {
            let log = log.clone();
            j.push("step", async move {
                log.lock().unwrap().push(i);
                Ok(())
            });
        }
        j.rollback().await;
        assert_eq!(*log.lock().unwrap(), vec![2, 1, 0]);

        let mut j = Journal::new();
        let l2 = log.clone();
        j.push("step", async move {
            l2.lock().unwrap().push(9);
            Ok(())
        });
        j.commit();
        assert_eq!(log.lock().unwrap().len(), 3);
    }
}
