//! Forwarding to upstream servers: UDP first, TCP when the answer is truncated; a short
//! timeout per server and fail-over to the next; at most three servers.

use crate::metrics::Metrics;
use crate::wire;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Time allowed to one upstream server.
pub const PER_SERVER_TIMEOUT: Duration = Duration::from_millis(1500);
/// Upstream servers tried per query.
pub const MAX_SERVERS: usize = 3;

async fn udp(server: SocketAddr, query: &[u8]) -> std::io::Result<Vec<u8>> {
    let bind: SocketAddr = if server.is_ipv6() {
        "[::]:0"
    } else {
        "0.0.0.0:0"
    }
    .parse()
    .map_err(|_| std::io::Error::other("bind address"))?;
    let sock = tokio::net::UdpSocket::bind(bind).await?;
    sock.connect(server).await?;
    sock.send(query).await?;
    let mut buf = vec![0u8; 65535];
    loop {
        let n = sock.recv(&mut buf).await?;
        // Only the answer to this query (same id, a response) counts.
        if n >= 12 && buf[..2] == query[..2] && buf[2] & 0x80 != 0 {
            buf.truncate(n);
            return Ok(buf);
        }
    }
}

async fn tcp(server: SocketAddr, query: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut s = tokio::net::TcpStream::connect(server).await?;
    let mut msg = Vec::with_capacity(query.len() + 2);
    msg.extend_from_slice(&(query.len() as u16).to_be_bytes());
    msg.extend_from_slice(query);
    s.write_all(&msg).await?;
    let len = s.read_u16().await? as usize;
    let mut buf = vec![0u8; len];
    s.read_exact(&mut buf).await?;
    Ok(buf)
}

/// Sends `query` to `servers` in turn; returns the first answer, with the query's own id.
pub async fn forward(servers: &[SocketAddr], query: &[u8], metrics: &Metrics) -> Option<Vec<u8>> {
    if query.len() < 12 {
        return None;
    }
    let id = u16::from_be_bytes([query[0], query[1]]);
    let mut q = query.to_vec();
    // A fresh id upstream, so answers cannot be guessed from the sandbox's ids.
    wire::set_id(&mut q, rand::random());
    metrics.forwarded.fetch_add(1, Ordering::Relaxed);
    for server in servers.iter().take(MAX_SERVERS) {
        let start = Instant::now();
        let answer = tokio::time::timeout(PER_SERVER_TIMEOUT, async {
            let a = udp(*server, &q).await?;
            if wire::truncated(&a) {
                tcp(*server, &q).await
            } else {
                Ok(a)
            }
        })
        .await;
        match answer {
            Ok(Ok(mut a)) => {
                metrics
                    .upstream_latency_us
                    .fetch_add(start.elapsed().as_micros() as u64, Ordering::Relaxed);
                metrics.upstream_answers.fetch_add(1, Ordering::Relaxed);
                wire::set_id(&mut a, id);
                return Some(a);
            }
            Ok(Err(e)) => tracing::debug!(%server, error = %e, "upstream failed"),
            Err(_) => tracing::debug!(%server, "upstream timed out"),
        }
    }
    metrics.upstream_failures.fetch_add(1, Ordering::Relaxed);
    None
}
