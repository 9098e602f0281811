//! A stub upstream DNS server living in one of the test's namespaces: fixed answers, a
//! truncated-over-UDP name to exercise TCP fallback, NXDOMAIN for everything else.

use plumb_dns::wire::{self, Answer, Rcode};
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// A running stub server; stops on drop.
pub struct StubDns {
    stop: Arc<AtomicBool>,
    queries: Arc<AtomicUsize>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

/// Answers: `upstream.example` A 203.0.113.7; `big.example` 40 A records, truncated over UDP.
fn answer(query: &[u8], udp: bool) -> Option<Vec<u8>> {
    let q = wire::parse_query(query).ok()?;
    let addrs: Vec<Answer> = match q.name.as_str() {
        "upstream.example" => vec![Answer::Addr("203.0.113.7".parse().ok()?)],
        "big.example" if udp => {
            let mut r = wire::build_response(query, &q, Rcode::NoError, &[], 60);
            r[2] |= 0x02;
            return Some(r);
        }
        "big.example" => (1..=40)
            .map(|i| Answer::Addr(IpAddr::from([203, 0, 113, i as u8])))
            .collect(),
        _ => return Some(wire::build_error(query, Some(&q), Rcode::NxDomain)),
    };
    let wanted: Vec<Answer> = addrs
        .into_iter()
        .filter(|a| matches!(a, Answer::Addr(IpAddr::V4(_))) == (q.qtype == wire::TYPE_A))
        .collect();
    Some(wire::build_response(query, &q, Rcode::NoError, &wanted, 60))
}

fn enter_netns(ns: &str) {
    let f = std::fs::File::open(format!("/run/netns/{ns}")).unwrap();
    // SAFETY: setns on this helper thread only; the fd is valid.
    let r = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(r, 0, "setns into {ns}");
}

impl StubDns {
    /// Starts serving UDP and TCP on `addr` (port 53) inside the namespace `ns`.
    pub fn start(ns: &str, addr: IpAddr) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let queries = Arc::new(AtomicUsize::new(0));
        let sa = SocketAddr::new(addr, 53);
        let (tx, rx) = std::sync::mpsc::channel();
        let mut threads = Vec::new();
        {
            let (ns, stop, queries, tx) =
                (ns.to_owned(), stop.clone(), queries.clone(), tx.clone());
            threads.push(std::thread::spawn(move || {
                enter_netns(&ns);
                let sock = UdpSocket::bind(sa).unwrap();
                sock.set_read_timeout(Some(Duration::from_millis(50)))
                    .unwrap();
                tx.send(()).unwrap();
                let mut buf = [0u8; 4096];
                while !stop.load(Ordering::Relaxed) {
                    if let Ok((n, peer)) = sock.recv_from(&mut buf) {
                        queries.fetch_add(1, Ordering::Relaxed);
                        if let Some(r) = answer(&buf[..n], true) {
                            let _ = sock.send_to(&r, peer);
                        }
                    }
                }
            }));
        }
        {
            let (ns, stop, queries) = (ns.to_owned(), stop.clone(), queries.clone());
            threads.push(std::thread::spawn(move || {
                enter_netns(&ns);
                let l = TcpListener::bind(sa).unwrap();
                l.set_nonblocking(true).unwrap();
                tx.send(()).unwrap();
                while !stop.load(Ordering::Relaxed) {
                    let Ok((mut s, _)) = l.accept() else {
                        std::thread::sleep(Duration::from_millis(10));
                        continue;
                    };
                    s.set_nonblocking(false).unwrap();
                    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                    let mut len = [0u8; 2];
                    if s.read_exact(&mut len).is_err() {
                        continue;
                    }
                    let mut q = vec![0u8; u16::from_be_bytes(len) as usize];
                    if s.read_exact(&mut q).is_err() {
                        continue;
                    }
                    queries.fetch_add(1, Ordering::Relaxed);
                    if let Some(r) = answer(&q, false) {
                        let mut out = (r.len() as u16).to_be_bytes().to_vec();
                        out.extend(r);
                        let _ = s.write_all(&out);
                    }
                }
            }));
        }
        rx.recv().unwrap();
        rx.recv().unwrap();
        StubDns {
            stop,
            queries,
            threads,
        }
    }

    /// Queries received so far.
    pub fn queries(&self) -> usize {
        self.queries.load(Ordering::Relaxed)
    }
}

impl Drop for StubDns {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}
