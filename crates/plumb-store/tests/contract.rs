//! The store contract, checked against every backend: revisions, gap-free list-then-watch,
//! watches from a revision after a burst, compaction, leases.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use plumb_core::store::{Expect, Op, Store, StoreError, WatchEvent};
use plumb_store::{MemoryStore, RedbStore};
mod shared;

use shared::put;
use std::sync::Arc;
use std::time::Duration;

fn backends() -> Vec<(Arc<dyn Store>, Option<tempfile::TempDir>)> {
    let dir = tempfile::tempdir().unwrap();
    let redb = RedbStore::open(&dir.path().join("s.redb")).unwrap();
    vec![
        (Arc::new(MemoryStore::new()), None),
        (Arc::new(redb), Some(dir)),
    ]
}

#[tokio::test]
async fn watch_from_a_revision_after_a_burst_misses_nothing() {
    for (s, _dir) in backends() {
        s.commit(vec![put("networks/first", 0)]).await.unwrap();
        shared::burst_then_watch(s.clone()).await;
    }
}

#[tokio::test]
async fn a_watch_from_beyond_the_history_must_resync() {
    let s = MemoryStore::with_history(10);
    for i in 0..30 {
        s.commit(vec![put("k/a", i)]).await.unwrap();
    }
    match s.watch("k/", 5).await {
        Err(e @ StoreError::Compacted { .. }) => assert!(e.to_string().contains("resync")),
        other => panic!("expected compacted, got {other:?}"),
    }
    let l = s.list("k/").await.unwrap();
    assert!(s.watch("k/", l.revision).await.is_ok());
    assert!(
        s.watch("k/", l.revision - 5).await.is_ok(),
        "still in the history"
    );
}

#[tokio::test]
async fn an_expired_lease_removes_its_keys_and_a_kept_one_does_not() {
    for (s, _dir) in backends() {
        let short = s.grant(Duration::from_millis(200)).await.unwrap();
        let kept = s.grant(Duration::from_millis(200)).await.unwrap();
        let leased = |k: &str, l| Op::Put {
            key: k.into(),
            value: b"v".to_vec(),
            expect: Expect::Any,
            lease: Some(l),
        };
        let start = s.list("").await.unwrap().revision;
        s.commit(vec![
            leased("nodes/a", short),
            leased("nodes/b", kept),
            put("networks/n", 1),
        ])
        .await
        .unwrap();
        let mut w = s.watch("nodes/", start).await.unwrap();
        for _ in 0..6 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            s.keep_alive(kept).await.unwrap();
        }
        assert!(
            s.get("nodes/a").await.unwrap().is_none(),
            "expired lease's key gone"
        );
        assert!(
            s.get("nodes/b").await.unwrap().is_some(),
            "kept lease's key stays"
        );
        assert!(
            s.get("networks/n").await.unwrap().is_some(),
            "keys without lease stay"
        );
        assert!(matches!(
            s.keep_alive(short).await,
            Err(StoreError::LeaseNotFound(_))
        ));
        // Watchers see the expiry as a delete.
        let mut deleted = false;
        while let Ok(ev) = w.try_recv() {
            deleted |= matches!(&ev, WatchEvent::Delete { key, .. } if key == "nodes/a");
        }
        assert!(deleted);
        // A put on an expired lease is refused; a revoke removes at once.
        assert!(matches!(
            s.commit(vec![leased("nodes/c", short)]).await,
            Err(StoreError::LeaseNotFound(_))
        ));
        s.revoke(kept).await.unwrap();
        assert!(s.get("nodes/b").await.unwrap().is_none());
    }
}
