//! Checks of the store contract shared by the backends' tests.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, dead_code)]

use plumb_core::store::{Expect, Op, Store, WatchEvent};
use std::sync::Arc;
use std::time::Duration;

/// A put of `v` at `k`, unconditional.
pub fn put(k: &str, v: u32) -> Op {
    Op::put(k, v.to_string().into_bytes(), Expect::Any)
}

/// The revision of a change.
pub fn rev(e: &WatchEvent) -> u64 {
    match e {
        WatchEvent::Put(x) => x.revision,
        WatchEvent::Delete { revision, .. } => *revision,
    }
}

/// 1,000 commits from 4 tasks at once after a listing of `networks/` (which must hold one
/// entry), then a watch from the listing's revision: every change arrives, in revision
/// order, none from before, prefix filtered, and a live change follows without a gap.
pub async fn burst_then_watch(s: Arc<dyn Store>) {
    let listing = s.list("networks/").await.unwrap();
    assert_eq!(listing.entries.len(), 1);
    let mut tasks = Vec::new();
    for t in 0..4 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..250 {
                s.commit(vec![
                    put(&format!("networks/{t}-{i}"), i),
                    put("other/x", i),
                ])
                .await
                .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let mut w = s.watch("networks/", listing.revision).await.unwrap();
    let mut seen = Vec::new();
    while seen.len() < 1000 {
        let ev = tokio::time::timeout(Duration::from_secs(5), w.recv())
            .await
            .expect("every change arrives")
            .unwrap();
        assert!(ev.key().starts_with("networks/"), "prefix filtered: {ev:?}");
        seen.push(rev(&ev));
    }
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted, seen, "in revision order, no repeats");
    assert!(
        seen[0] > listing.revision,
        "nothing from before the listing"
    );
    let r = s.commit(vec![put("networks/late", 1)]).await.unwrap();
    let ev = w.recv().await.unwrap();
    assert_eq!((ev.key(), rev(&ev)), ("networks/late", r));
    assert!(w.try_recv().is_err(), "exactly the changes made");
}
