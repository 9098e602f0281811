//! The store contract against a real etcd (Debian's etcd-server) running in a throwaway
//! namespace: revisions, compare-and-swap, gap-free list-then-watch after a burst, compaction,
//! leases, and a clear error within the deadline when etcd is gone.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod shared;

use plumb_core::store::{Expect, Op, Store, StoreError, WatchEvent};
use plumb_store::{EtcdOptions, EtcdStore};
use plumb_testkit::{in_netns, Etcd, Underlay};
use shared::put;
use std::time::{Duration, Instant};

/// Runs `f` against a fresh etcd, from inside the etcd's namespace.
fn with_etcd<F, Fut>(f: F)
where
    F: FnOnce(EtcdStore, Etcd) -> Fut + Send,
    Fut: std::future::Future<Output = ()>,
{
    if !plumb_testkit::prerequisites() {
        return;
    }
    let ul = Underlay::new();
    let etcd = Etcd::start(&ul.ns, "10.98.0.1", 1);
    let eps = etcd.endpoints.clone();
    block_on_in(&ul.ns, move || async move {
        let s = EtcdStore::connect(EtcdOptions::new(eps)).await.unwrap();
        f(s, etcd).await;
    });
}

/// Runs the future `make` makes to completion on a runtime whose sockets live in the
/// namespace `ns`.
fn block_on_in<F, Fut>(ns: &str, make: F)
where
    F: FnOnce() -> Fut + Send,
    Fut: std::future::Future<Output = ()>,
{
    in_netns(ns, move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(make())
    });
}

#[test]
fn etcd_keeps_the_store_contract() {
    with_etcd(|s, etcd| async move {
        // Compare-and-swap.
        let r1 = s
            .commit(vec![Op::put("networks/a", b"1".to_vec(), Expect::Absent)])
            .await
            .unwrap();
        assert!(matches!(
            s.commit(vec![Op::put("networks/a", b"2".to_vec(), Expect::Absent)])
                .await,
            Err(StoreError::Conflict { ref key, .. }) if key == "networks/a"
        ));
        let r2 = s
            .commit(vec![Op::put("networks/a", b"2".to_vec(), Expect::At(r1))])
            .await
            .unwrap();
        assert!(r2 > r1);
        assert!(matches!(
            s.commit(vec![Op::delete("networks/a", Expect::At(r1))])
                .await,
            Err(StoreError::Conflict { .. })
        ));
        let e = s.get("networks/a").await.unwrap().unwrap();
        assert_eq!((e.value.as_slice(), e.revision), (&b"2"[..], r2));
        // All or nothing: a failing condition writes neither key.
        assert!(s
            .commit(vec![
                put("networks/b", 1),
                Op::put("networks/a", b"3".to_vec(), Expect::Absent),
            ])
            .await
            .is_err());
        assert!(s.get("networks/b").await.unwrap().is_none());

        // 1,000 commits from 4 tasks, then a watch from the listing's revision sees each.
        let listing = s.list("networks/").await.unwrap();
        shared::burst_then_watch(std::sync::Arc::new(s.clone())).await;
        let mut w = s.watch("networks/late", listing.revision).await.unwrap();
        assert!(matches!(w.recv().await.unwrap(), WatchEvent::Put(e) if e.key == "networks/late"));
        s.commit(vec![Op::delete("networks/late", Expect::Any)])
            .await
            .unwrap();
        assert!(
            matches!(w.recv().await.unwrap(), WatchEvent::Delete { key, .. } if key == "networks/late")
        );

        // Compaction: a watch from before it must resync.
        let now = s.list("").await.unwrap().revision;
        let o = etcd.etcdctl(&etcd.endpoints, &["compact", &now.to_string()]);
        assert!(o.ok(), "etcdctl compact: {}", o.stderr);
        match s.watch("networks/", listing.revision).await {
            Err(e @ StoreError::Compacted { .. }) => assert!(e.to_string().contains("resync")),
            other => panic!("expected compacted, got {other:?}"),
        }
        assert!(s.watch("networks/", now).await.is_ok());

        // Leases: expiry deletes the keys (and watchers see it), keep-alive holds them.
        let short = s.grant(Duration::from_secs(1)).await.unwrap();
        let kept = s.grant(Duration::from_secs(1)).await.unwrap();
        let leased = |k: &str, l| Op::Put {
            key: k.into(),
            value: b"v".to_vec(),
            expect: Expect::Any,
            lease: Some(l),
        };
        let start = s.list("").await.unwrap().revision;
        s.commit(vec![leased("nodes/a", short), leased("nodes/b", kept)])
            .await
            .unwrap();
        let mut w = s.watch("nodes/", start).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while s.get("nodes/a").await.unwrap().is_some() {
            assert!(Instant::now() < deadline, "the short lease never expired");
            s.keep_alive(kept).await.unwrap();
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert!(
            s.get("nodes/b").await.unwrap().is_some(),
            "kept lease's key stays"
        );
        let gone = s.keep_alive(short).await;
        assert!(
            matches!(gone, Err(StoreError::LeaseNotFound(_))),
            "{gone:?}"
        );
        let mut deleted = false;
        while let Ok(ev) = w.try_recv() {
            deleted |= matches!(&ev, WatchEvent::Delete { key, .. } if key == "nodes/a");
        }
        assert!(deleted, "watchers see the expiry as a delete");
        assert!(matches!(
            s.commit(vec![leased("nodes/c", short)]).await,
            Err(StoreError::LeaseNotFound(_))
        ));
        s.revoke(kept).await.unwrap();
        assert!(s.get("nodes/b").await.unwrap().is_none());

        // Keys outside the prefix are not ours: never listed.
        let o = etcd.etcdctl(&etcd.endpoints, &["put", "someone-else/k", "v"]);
        assert!(o.ok(), "{}", o.stderr);
        assert!(s
            .list("")
            .await
            .unwrap()
            .entries
            .iter()
            .all(|e| !e.key.contains("someone-else")));
    });
}

#[test]
fn an_unreachable_etcd_is_a_clear_error_within_the_deadline() {
    with_etcd(|s, mut etcd| async move {
        s.commit(vec![put("networks/x", 1)]).await.unwrap();
        etcd.stop();
        let t = Instant::now();
        let e = s.commit(vec![put("networks/y", 1)]).await.unwrap_err();
        let took = t.elapsed();
        assert!(
            e.to_string().contains("cluster store"),
            "the error names the cluster store: {e}"
        );
        // A deadline is a behaviour here (no hang), not a timing figure: generous bound.
        assert!(took < Duration::from_secs(10), "took {took:?}");
        etcd.resume();
        // Back: the same client works again without being rebuilt.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match s.get("networks/x").await {
                Ok(Some(_)) => break,
                other => {
                    assert!(Instant::now() < deadline, "etcd never came back: {other:?}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    });
}

#[test]
fn tls_with_client_certificates() {
    if !plumb_testkit::prerequisites() {
        return;
    }
    let ul = Underlay::new();
    let pki = plumb_testkit::Pki::new("10.98.0.1");
    let etcd = Etcd::start_tls(&ul.ns, "10.98.0.1", &pki);
    let eps = etcd.endpoints.clone();
    let (ca, cert, key) = (
        pki.ca.clone(),
        pki.client_cert.clone(),
        pki.client_key.clone(),
    );
    block_on_in(&ul.ns, move || async move {
        let mut opts = EtcdOptions::new(eps.clone());
        opts.ca_file = Some(ca.clone());
        opts.cert_file = Some(cert.clone());
        opts.key_file = Some(key.clone());
        let s = EtcdStore::connect(opts).await.unwrap();
        let r = s.commit(vec![put("networks/tls", 1)]).await.unwrap();
        assert_eq!(s.get("networks/tls").await.unwrap().unwrap().revision, r);
        // Without a client certificate the server refuses: a clear error, no hang.
        let mut anon = EtcdOptions::new(eps.clone());
        anon.ca_file = Some(ca.clone());
        let refused = match EtcdStore::connect(anon).await {
            Ok(s) => s.get("networks/tls").await.err(),
            Err(e) => Some(e),
        };
        let e = refused.expect("a client without a certificate is refused");
        assert!(e.to_string().contains("cluster store"), "{e}");
        // A key without its certificate is a configuration error.
        let mut half = EtcdOptions::new(eps);
        half.ca_file = Some(ca);
        half.key_file = Some(key);
        let e = EtcdStore::connect(half).await.err().expect("refused");
        assert!(e.to_string().contains("kv.certfile"), "{e}");
    });
    drop(etcd);
}
