//! The resolver: one UDP and one TCP listener per sandbox, opened by the caller inside the
//! sandbox's namespace and handed over; all served by tasks on plumbd's runtime.

use crate::metrics::Metrics;
use crate::upstream;
use crate::wire::{self, Answer, ParseError, Query, Rcode};
use plumb_core::names::{Lookup, NameIndex};
use plumb_core::SandboxId;
use rand::seq::SliceRandom;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Semaphore;
use tokio::task::AbortHandle;

/// Queries forwarded at once, over all sandboxes.
pub const MAX_IN_FLIGHT: usize = 1024;
/// TCP connections at once per sandbox.
pub const MAX_TCP_PER_SANDBOX: usize = 16;
/// Idle time a TCP client gets between queries.
pub const TCP_IDLE: Duration = Duration::from_secs(10);
/// Queries answered on one TCP connection.
pub const TCP_MAX_QUERIES: usize = 100;
/// Largest UDP answer without EDNS.
const UDP_LIMIT: usize = 512;

/// What one sandbox's listeners know.
struct SandboxCtx {
    id: SandboxId,
    upstreams: Arc<[SocketAddr]>,
}

/// The embedded resolver.
pub struct DnsServer {
    names: Arc<NameIndex>,
    default_upstreams: Arc<[SocketAddr]>,
    metrics: Arc<Metrics>,
    in_flight: Arc<Semaphore>,
    tasks: Mutex<HashMap<SandboxId, AbortHandle>>,
}

/// What to do with a query.
enum Decision {
    Reply(Vec<u8>),
    Forward(Query),
    Drop,
}

impl DnsServer {
    /// A resolver over `names`, forwarding other names to `upstreams` (at most three used).
    pub fn new(names: Arc<NameIndex>, upstreams: Vec<SocketAddr>) -> Arc<Self> {
        Arc::new(DnsServer {
            names,
            default_upstreams: upstreams.into(),
            metrics: Arc::new(Metrics::default()),
            in_flight: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
            tasks: Mutex::new(HashMap::new()),
        })
    }

    /// The resolver's counters.
    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    fn tasks(&self) -> std::sync::MutexGuard<'_, HashMap<SandboxId, AbortHandle>> {
        self.tasks.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Serves a sandbox on sockets opened inside its namespace (127.0.0.11:53). `upstreams`
    /// overrides the default servers for this sandbox. Replaces an earlier registration.
    pub fn register(
        self: &Arc<Self>,
        sandbox: SandboxId,
        udp: std::net::UdpSocket,
        tcp: std::net::TcpListener,
        upstreams: Option<Vec<SocketAddr>>,
    ) -> std::io::Result<()> {
        udp.set_nonblocking(true)?;
        tcp.set_nonblocking(true)?;
        let udp = Arc::new(tokio::net::UdpSocket::from_std(udp)?);
        let tcp = tokio::net::TcpListener::from_std(tcp)?;
        let ctx = Arc::new(SandboxCtx {
            id: sandbox.clone(),
            upstreams: upstreams
                .map(Into::into)
                .unwrap_or_else(|| self.default_upstreams.clone()),
        });
        // One task per sandbox serves both sockets: an idle sandbox costs one small future.
        let task = tokio::spawn(self.clone().serve(ctx, udp, tcp)).abort_handle();
        if let Some(old) = self.tasks().insert(sandbox, task) {
            old.abort();
        }
        Ok(())
    }

    /// Stops serving a sandbox; its sockets close.
    pub fn unregister(&self, sandbox: &SandboxId) {
        if let Some(task) = self.tasks().remove(sandbox) {
            task.abort();
        }
    }

    /// True when the sandbox is being served.
    pub fn is_registered(&self, sandbox: &SandboxId) -> bool {
        self.tasks().contains_key(sandbox)
    }

    /// Decides on a query from the name index alone.
    fn decide(&self, ctx: &SandboxCtx, msg: &[u8], udp: bool) -> Decision {
        self.metrics.queries.fetch_add(1, Ordering::Relaxed);
        let q = match wire::parse_query(msg) {
            Ok(q) => q,
            Err(ParseError::TooShort) | Err(ParseError::NotAQuery) => return Decision::Drop,
            Err(ParseError::NotImplemented) => {
                return self.reply(wire::build_error(msg, None, Rcode::NotImp))
            }
            Err(ParseError::Malformed) => {
                return self.reply(wire::build_error(msg, None, Rcode::FormErr))
            }
        };
        if q.qclass == wire::CLASS_IN {
            let local = match q.qtype {
                wire::TYPE_A | wire::TYPE_AAAA => {
                    match self
                        .names
                        .lookup(&ctx.id, &q.name, q.qtype == wire::TYPE_AAAA)
                    {
                        Lookup::Found(mut addrs) => {
                            addrs.shuffle(&mut rand::rng());
                            Some(addrs.into_iter().map(Answer::Addr).collect::<Vec<_>>())
                        }
                        Lookup::Unknown => None,
                    }
                }
                wire::TYPE_PTR => wire::reverse_addr(&q.name)
                    .and_then(|a| self.names.reverse(&ctx.id, a))
                    .map(|n| vec![Answer::Name(n)]),
                _ => match self.names.lookup(&ctx.id, &q.name, false) {
                    // A container name asked for another type: it exists, with no such data.
                    Lookup::Found(_) => Some(Vec::new()),
                    Lookup::Unknown => None,
                },
            };
            if let Some(mut answers) = local {
                self.metrics.local.fetch_add(1, Ordering::Relaxed);
                let mut resp = wire::build_response(msg, &q, Rcode::NoError, &answers, 0);
                if udp && resp.len() > UDP_LIMIT {
                    // Keep what fits and say it was cut: the client retries over TCP.
                    while resp.len() > UDP_LIMIT && !answers.is_empty() {
                        answers.pop();
                        resp = wire::build_response(msg, &q, Rcode::NoError, &answers, 0);
                    }
                    resp[2] |= 0x02;
                }
                return self.reply(resp);
            }
        }
        if ctx.upstreams.is_empty() || !self.names.may_forward(&ctx.id) {
            let rcode = if ctx.upstreams.is_empty() {
                Rcode::ServFail
            } else {
                Rcode::NxDomain
            };
            return self.reply(wire::build_error(msg, Some(&q), rcode));
        }
        Decision::Forward(q)
    }

    fn reply(&self, resp: Vec<u8>) -> Decision {
        self.metrics.answered(wire::rcode(&resp).unwrap_or(0));
        Decision::Reply(resp)
    }

    /// Forwards a query; SERVFAIL when no upstream answers or too many are in flight.
    async fn forward(&self, ctx: &SandboxCtx, msg: &[u8], q: &Query) -> Vec<u8> {
        let resp = match self.in_flight.clone().try_acquire_owned() {
            Ok(_permit) => upstream::forward(&ctx.upstreams, msg, &self.metrics).await,
            Err(_) => {
                self.metrics.overload.fetch_add(1, Ordering::Relaxed);
                None
            }
        };
        let resp = resp.unwrap_or_else(|| wire::build_error(msg, Some(q), Rcode::ServFail));
        self.metrics.answered(wire::rcode(&resp).unwrap_or(2));
        resp
    }

    /// Receives one datagram, if one is waiting, and decides on it. The buffer lives on this
    /// synchronous frame only: an idle sandbox's task holds no buffer.
    fn recv_one(
        &self,
        ctx: &SandboxCtx,
        sock: &tokio::net::UdpSocket,
    ) -> Option<(Decision, SocketAddr, Vec<u8>)> {
        let mut buf = [0u8; 1500];
        match sock.try_recv_from(&mut buf) {
            Ok((n, peer)) => {
                let d = self.decide(ctx, &buf[..n], true);
                let keep = if matches!(d, Decision::Forward(_)) {
                    buf[..n].to_vec()
                } else {
                    Vec::new()
                };
                Some((d, peer, keep))
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => None,
            Err(e) => {
                tracing::debug!(error = %e, "dns udp receive");
                None
            }
        }
    }

    async fn serve(
        self: Arc<Self>,
        ctx: Arc<SandboxCtx>,
        udp: Arc<tokio::net::UdpSocket>,
        tcp: tokio::net::TcpListener,
    ) {
        let slots = Arc::new(Semaphore::new(MAX_TCP_PER_SANDBOX));
        loop {
            tokio::select! {
                r = udp.readable() => {
                    if r.is_ok() {
                        self.drain_udp(&ctx, &udp).await;
                    }
                }
                r = tcp.accept() => {
                    let Ok((stream, _)) = r else { continue };
                    // Over the limit, the newest connection is closed at once; each held
                    // connection has an idle timeout, so no client keeps the slots for long.
                    let Ok(permit) = slots.clone().try_acquire_owned() else { continue };
                    let (this, ctx) = (self.clone(), ctx.clone());
                    tokio::spawn(async move {
                        let _permit = permit;
                        let _ = this.tcp_conn(&ctx, stream).await;
                    });
                }
            }
        }
    }

    /// Answers every datagram waiting on the socket.
    async fn drain_udp(self: &Arc<Self>, ctx: &Arc<SandboxCtx>, sock: &Arc<tokio::net::UdpSocket>) {
        while let Some((decision, peer, msg)) = self.recv_one(ctx, sock) {
            match decision {
                Decision::Reply(resp) => {
                    if sock.try_send_to(&resp, peer).is_err() {
                        let _ = sock.send_to(&resp, peer).await;
                    }
                }
                Decision::Forward(q) => {
                    let (this, ctx, sock) = (self.clone(), ctx.clone(), sock.clone());
                    tokio::spawn(async move {
                        let resp = this.forward(&ctx, &msg, &q).await;
                        let _ = sock.send_to(&resp, peer).await;
                    });
                }
                Decision::Drop => {}
            }
        }
    }

    async fn tcp_conn(
        &self,
        ctx: &SandboxCtx,
        mut s: tokio::net::TcpStream,
    ) -> std::io::Result<()> {
        for _ in 0..TCP_MAX_QUERIES {
            let len = match tokio::time::timeout(TCP_IDLE, s.read_u16()).await {
                Ok(Ok(n)) => n as usize,
                _ => return Ok(()),
            };
            let mut msg = vec![0u8; len];
            if tokio::time::timeout(TCP_IDLE, s.read_exact(&mut msg))
                .await
                .is_err()
            {
                return Ok(());
            }
            let resp = match self.decide(ctx, &msg, false) {
                Decision::Reply(r) => r,
                Decision::Forward(q) => self.forward(ctx, &msg, &q).await,
                Decision::Drop => return Ok(()),
            };
            let mut out = Vec::with_capacity(resp.len() + 2);
            out.extend_from_slice(&(resp.len() as u16).to_be_bytes());
            out.extend_from_slice(&resp);
            tokio::time::timeout(TCP_IDLE, s.write_all(&out))
                .await
                .map_err(|_| std::io::Error::other("write timeout"))??;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    /// Property test over the request path: the seed corpus (crates/plumb-dns/corpus), then
    /// 200,000 mutations of it (bit flips, truncations, splices, random bytes). decide() must
    /// never panic, and every reply must carry the query's id and the QR bit.
    #[test]
    fn request_path_survives_mutated_corpus() {
        let server = DnsServer::new(
            Arc::new(NameIndex::default()),
            vec!["192.0.2.1:53".parse().unwrap()],
        );
        let ctx = SandboxCtx {
            id: SandboxId::random(),
            upstreams: server.default_upstreams.clone(),
        };
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
        let seeds: Vec<Vec<u8>> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| std::fs::read(e.unwrap().path()).unwrap())
            .collect();
        assert!(seeds.len() >= 5, "corpus missing in {}", dir.display());
        let mut r = Rng(0x2545_f491_4f6c_dd1d);
        for i in 0..200_000u64 {
            let mut m = seeds[(r.next() as usize) % seeds.len()].clone();
            match i % 5 {
                0 => {
                    let pos = r.next() as usize % m.len();
                    m[pos] ^= 1 << (r.next() % 8);
                }
                1 => m.truncate(r.next() as usize % (m.len() + 1)),
                2 => {
                    let other = &seeds[(r.next() as usize) % seeds.len()];
                    let cut = r.next() as usize % other.len();
                    m.extend_from_slice(&other[cut..]);
                }
                3 => {
                    let pos = r.next() as usize % m.len();
                    m[pos] = r.next() as u8;
                }
                _ => m = (0..(r.next() % 80)).map(|_| r.next() as u8).collect(),
            }
            for udp in [true, false] {
                if let Decision::Reply(resp) = server.decide(&ctx, &m, udp) {
                    assert!(
                        resp.len() >= 12 && resp[2] & 0x80 != 0,
                        "reply without QR for {m:?}"
                    );
                    assert_eq!(resp[..2], m[..2], "reply id differs for {m:?}");
                    assert!(
                        !udp || resp.len() <= UDP_LIMIT.max(m.len() + 12),
                        "oversized UDP reply"
                    );
                }
            }
        }
    }
}
