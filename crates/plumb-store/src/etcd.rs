//! The etcd backend: global-scope state shared by every host of a cluster.
//!
//! Keys live under a prefix (`plumb/` by default) so that plumb shares an etcd cluster with
//! other users. The contract maps one to one onto etcd's: a commit is one transaction whose
//! conditions compare each key's create or mod revision; a listing returns the response
//! header's revision; a watch starts at `from + 1`; leases are etcd leases. Every call has a
//! deadline, so an unreachable etcd is an error within [`EtcdOptions::timeout`], never a hang.

use async_trait::async_trait;
use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, Identity,
    PutOptions, TlsOptions, Txn, TxnOp, WatchOptions,
};
use plumb_core::store::{
    Entry, Expect, LeaseId, Listing, Op, Revision, Store, StoreError, Watch, WatchEvent,
};
use std::time::Duration;

/// How to reach an etcd cluster.
#[derive(Debug, Clone)]
pub struct EtcdOptions {
    /// Client URLs or `host:port` pairs of the members.
    pub endpoints: Vec<String>,
    /// Prefix of every key plumb writes.
    pub prefix: String,
    /// Deadline of every call (and of connecting).
    pub timeout: Duration,
    /// PEM file of the CA that signed the members' certificates (TLS when set).
    pub ca_file: Option<std::path::PathBuf>,
    /// PEM files of this client's certificate and key (mutual TLS).
    pub cert_file: Option<std::path::PathBuf>,
    /// The key matching `cert_file`.
    pub key_file: Option<std::path::PathBuf>,
}

impl EtcdOptions {
    /// Options for `endpoints` with the defaults: prefix `plumb/`, 2 s deadline, no TLS.
    pub fn new(endpoints: Vec<String>) -> Self {
        EtcdOptions {
            endpoints,
            prefix: "plumb/".to_owned(),
            timeout: Duration::from_secs(2),
            ca_file: None,
            cert_file: None,
            key_file: None,
        }
    }
}

/// A [`Store`] on an etcd cluster.
#[derive(Clone)]
pub struct EtcdStore {
    client: Client,
    prefix: String,
    timeout: Duration,
    endpoints: Vec<String>,
}

/// An etcd failure as a store error that says the cluster store is the trouble.
fn backend(endpoints: &[String], e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(
        format!(
            "cluster store (etcd at {}) unreachable or failing: {e}",
            endpoints.join(",")
        )
        .into(),
    )
}

fn read_pem(path: &std::path::Path, what: &str) -> Result<Vec<u8>, StoreError> {
    std::fs::read(path).map_err(|e| {
        StoreError::Backend(format!("reading the {what} {}: {e}", path.display()).into())
    })
}

impl EtcdStore {
    /// Connects to the cluster. Members that are down now are tried again on every call.
    pub async fn connect(opts: EtcdOptions) -> Result<Self, StoreError> {
        let tls = opts.ca_file.is_some() || opts.cert_file.is_some();
        let mut copts = ConnectOptions::new()
            .with_timeout(opts.timeout)
            .with_connect_timeout(opts.timeout)
            .with_keep_alive(Duration::from_secs(2), opts.timeout);
        if tls {
            let mut t = TlsOptions::new();
            if let Some(ca) = &opts.ca_file {
                t = t.ca_certificate(Certificate::from_pem(read_pem(ca, "CA certificate")?));
            }
            match (&opts.cert_file, &opts.key_file) {
                (Some(c), Some(k)) => {
                    t = t.identity(Identity::from_pem(
                        read_pem(c, "client certificate")?,
                        read_pem(k, "client key")?,
                    ));
                }
                (None, None) => {}
                _ => {
                    return Err(StoreError::Backend(
                        "kv.certfile and kv.keyfile go together: give both or neither".into(),
                    ))
                }
            }
            copts = copts.with_tls(t);
        }
        let scheme = if tls { "https" } else { "http" };
        let endpoints: Vec<String> = opts
            .endpoints
            .iter()
            .map(|e| {
                if e.contains("://") {
                    e.clone()
                } else {
                    format!("{scheme}://{e}")
                }
            })
            .collect();
        let client = Client::connect(&endpoints, Some(copts))
            .await
            .map_err(|e| backend(&endpoints, e))?;
        Ok(EtcdStore {
            client,
            prefix: opts.prefix,
            timeout: opts.timeout,
            endpoints,
        })
    }

    fn full(&self, key: &str) -> Vec<u8> {
        format!("{}{key}", self.prefix).into_bytes()
    }

    /// The store key of an etcd key, when it is under the prefix and UTF-8.
    fn short(&self, key: &[u8]) -> Option<String> {
        std::str::from_utf8(key)
            .ok()?
            .strip_prefix(&self.prefix)
            .map(str::to_owned)
    }

    fn err(&self, e: impl std::fmt::Display) -> StoreError {
        backend(&self.endpoints, e)
    }

    /// Runs the call `f` makes within the deadline, in up to three attempts: a member that
    /// died leaves a connection that only fails when its attempt times out, and the next
    /// attempt goes to a member that answers.
    async fn timed<T, F, Fut>(&self, mut f: F) -> Result<T, StoreError>
    where
        F: FnMut(Client) -> Fut,
        Fut: std::future::Future<Output = Result<T, etcd_client::Error>>,
    {
        let deadline = tokio::time::Instant::now() + self.timeout;
        let attempt = self.timeout / 3;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let last = left <= attempt;
            match tokio::time::timeout(attempt.min(left), f(self.client.clone())).await {
                Ok(Ok(v)) => return Ok(v),
                Ok(Err(e)) if last || !transient(&e) => return Err(self.err(e)),
                Err(_) if last => {
                    return Err(self.err(format!("no answer within {:?}", self.timeout)))
                }
                _ => {}
            }
        }
    }

    fn entry(&self, kv: &etcd_client::KeyValue) -> Option<Entry> {
        Some(Entry {
            key: self.short(kv.key())?,
            value: kv.value().to_vec(),
            revision: kv.mod_revision() as Revision,
        })
    }
}

/// True for failures of the connection rather than of the request.
fn transient(e: &etcd_client::Error) -> bool {
    use etcd_client::Error as E;
    match e {
        E::TransportError(_) | E::IoError(_) => true,
        E::GRpcStatus(s) => matches!(
            s.code(),
            tonic::Code::Unavailable
                | tonic::Code::Cancelled
                | tonic::Code::Unknown
                | tonic::Code::DeadlineExceeded
        ),
        _ => false,
    }
}

fn is_lease_gone(e: &StoreError) -> bool {
    let m = e.to_string();
    m.contains("requested lease not found") || m.contains("lease not found")
}

#[async_trait]
impl Store for EtcdStore {
    async fn get(&self, key: &str) -> Result<Option<Entry>, StoreError> {
        let k = self.full(key);
        let r = self
            .timed(|mut c| {
                let k = k.clone();
                async move { c.get(k, None).await }
            })
            .await?;
        Ok(r.kvs().first().and_then(|kv| self.entry(kv)))
    }

    async fn list(&self, prefix: &str) -> Result<Listing, StoreError> {
        let k = self.full(prefix);
        let r = self
            .timed(|mut c| {
                let k = k.clone();
                async move { c.get(k, Some(GetOptions::new().with_prefix())).await }
            })
            .await?;
        let revision = r.header().map(|h| h.revision() as Revision).unwrap_or(0);
        Ok(Listing {
            entries: r.kvs().iter().filter_map(|kv| self.entry(kv)).collect(),
            revision,
        })
    }

    async fn commit(&self, ops: Vec<Op>) -> Result<Revision, StoreError> {
        let mut compares = Vec::new();
        let mut actions = Vec::new();
        for op in &ops {
            let (key, expect) = match op {
                Op::Put { key, expect, .. } | Op::Delete { key, expect } => (key, *expect),
            };
            match expect {
                Expect::Any => {}
                Expect::Absent => {
                    compares.push(Compare::create_revision(
                        self.full(key),
                        CompareOp::Equal,
                        0,
                    ));
                }
                Expect::At(r) => compares.push(Compare::mod_revision(
                    self.full(key),
                    CompareOp::Equal,
                    r as i64,
                )),
            }
            actions.push(match op {
                Op::Put {
                    key, value, lease, ..
                } => {
                    let o = lease.map(|l| PutOptions::new().with_lease(l as i64));
                    TxnOp::put(self.full(key), value.clone(), o)
                }
                Op::Delete { key, .. } => TxnOp::delete(self.full(key), None),
            });
        }
        let txn = Txn::new().when(compares).and_then(actions);
        let r = match self
            .timed(|mut c| {
                let txn = txn.clone();
                async move { c.txn(txn).await }
            })
            .await
        {
            Ok(r) => r,
            Err(e) if is_lease_gone(&e) => {
                let lease = ops
                    .iter()
                    .find_map(|o| match o {
                        Op::Put { lease, .. } => *lease,
                        Op::Delete { .. } => None,
                    })
                    .unwrap_or(0);
                return Err(StoreError::LeaseNotFound(lease));
            }
            Err(e) => return Err(e),
        };
        if !r.succeeded() {
            // etcd does not say which condition failed: name the first conditional key
            // whose condition no longer holds.
            for op in &ops {
                let (key, expect) = match op {
                    Op::Put { key, expect, .. } | Op::Delete { key, expect } => (key, *expect),
                };
                let now = self.get(key).await?.map(|e| e.revision);
                let holds = match expect {
                    Expect::Any => true,
                    Expect::Absent => now.is_none(),
                    Expect::At(r) => now == Some(r),
                };
                if !holds {
                    return Err(StoreError::Conflict {
                        key: key.clone(),
                        expected: expect,
                    });
                }
            }
            let key = ops.first().map(|o| o.key().to_owned()).unwrap_or_default();
            return Err(StoreError::Conflict {
                key,
                expected: Expect::Any,
            });
        }
        Ok(r.header().map(|h| h.revision() as Revision).unwrap_or(0))
    }

    async fn watch(&self, prefix: &str, from: Revision) -> Result<Watch, StoreError> {
        let mut c = self.client.clone();
        if from > 0 {
            // etcd answers a read at a compacted revision with an error: resync then.
            let probe = c
                .get(
                    self.full(prefix),
                    Some(
                        GetOptions::new()
                            .with_prefix()
                            .with_revision(from as i64)
                            .with_keys_only()
                            .with_limit(1),
                    ),
                )
                .await;
            if let Err(e) = probe {
                let msg = e.to_string();
                if msg.contains("compacted") {
                    return Err(StoreError::Compacted { from, oldest: 0 });
                }
                if !msg.contains("future revision") {
                    return Err(self.err(msg));
                }
            }
        }
        let opts = WatchOptions::new()
            .with_prefix()
            .with_start_revision(from as i64 + 1);
        let k = self.full(prefix);
        let stream = self
            .timed(|mut c| {
                let (k, opts) = (k.clone(), opts.clone());
                async move { c.watch(k, Some(opts)).await }
            })
            .await?;
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let me = self.clone();
        tokio::spawn(async move {
            // The sender half keeps the watch open; it is dropped when the task ends.
            let (_sender, mut responses) = stream.split();
            loop {
                let msg = match responses.message().await {
                    Ok(Some(m)) => m,
                    Ok(None) => return,
                    Err(e) => {
                        tracing::warn!(error = %e, "etcd watch ended");
                        return;
                    }
                };
                if msg.canceled() || msg.compact_revision() > 0 {
                    tracing::warn!(
                        reason = msg.cancel_reason(),
                        compacted = msg.compact_revision(),
                        "etcd cancelled the watch"
                    );
                    return;
                }
                for ev in msg.events() {
                    let Some(kv) = ev.kv() else { continue };
                    let Some(key) = me.short(kv.key()) else {
                        continue;
                    };
                    let out = match ev.event_type() {
                        EventType::Put => WatchEvent::Put(Entry {
                            key,
                            value: kv.value().to_vec(),
                            revision: kv.mod_revision() as Revision,
                        }),
                        EventType::Delete => WatchEvent::Delete {
                            key,
                            revision: kv.mod_revision() as Revision,
                        },
                    };
                    if tx.send(out).is_err() {
                        return;
                    }
                }
            }
        });
        Ok(rx)
    }

    async fn grant(&self, ttl: Duration) -> Result<LeaseId, StoreError> {
        let secs = ttl.as_secs_f64().ceil().max(1.0) as i64;
        let r = self
            .timed(|mut c| async move { c.lease_grant(secs, None).await })
            .await?;
        Ok(r.id() as LeaseId)
    }

    async fn keep_alive(&self, lease: LeaseId) -> Result<(), StoreError> {
        let once = |mut c: Client| async move {
            let (mut keeper, mut stream) = c.lease_keep_alive(lease as i64).await?;
            keeper.keep_alive().await?;
            stream.message().await
        };
        match self.timed(once).await {
            Ok(Some(r)) if r.ttl() > 0 => Ok(()),
            Ok(_) => Err(StoreError::LeaseNotFound(lease)),
            Err(e) if is_lease_gone(&e) => Err(StoreError::LeaseNotFound(lease)),
            Err(e) => Err(e),
        }
    }

    async fn revoke(&self, lease: LeaseId) -> Result<(), StoreError> {
        match self
            .timed(|mut c| async move { c.lease_revoke(lease as i64).await })
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_lease_gone(&e) => Err(StoreError::LeaseNotFound(lease)),
            Err(e) => Err(e),
        }
    }
}
