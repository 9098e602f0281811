//! Deletes network devices off the request path. Unregistering a device waits for an RCU
//! grace period (20-40 ms here), and the kernel does that wait inside the `sendmsg` of the
//! RTM_DELLINK: on plumbd's shared netlink socket it would stall every other netlink request
//! and a tokio worker with it. The reaper is one thread with a socket of its own, fed through a
//! channel; what a crash leaves undeleted, the start-up sweep finds by plumb's marks.

use crate::error::{LinuxError, Result};
use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_REQUEST,
};
use netlink_packet_route::link::{LinkAttribute, LinkMessage};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};

/// A device to delete.
#[derive(Debug, Clone)]
pub enum Doomed {
    /// By interface index.
    Index(u32),
    /// By name.
    Name(String),
}

/// The handle of the reaper thread (of the namespace it was started in).
pub struct Reaper {
    tx: std::sync::Mutex<mpsc::Sender<Doomed>>,
    pending: Arc<AtomicUsize>,
}

impl Reaper {
    /// Starts the thread; its socket belongs to the caller's network namespace.
    pub fn start() -> Result<Self> {
        let err = |e: std::io::Error| LinuxError::io("open netlink socket", "reaper", e);
        let mut sock = Socket::new(NETLINK_ROUTE).map_err(err)?;
        sock.bind(&SocketAddr::new(0, 0)).map_err(err)?;
        let (tx, rx) = mpsc::channel::<Doomed>();
        let pending = Arc::new(AtomicUsize::new(0));
        let left = pending.clone();
        std::thread::Builder::new()
            .name("plumb-reaper".into())
            .spawn(move || {
                let mut seq = 0u32;
                for d in rx {
                    seq = seq.wrapping_add(1);
                    if let Err(e) = delete(&sock, seq, &d) {
                        tracing::warn!(device = ?d, error = %e, "deleting a device failed; the next start sweeps it");
                    }
                    left.fetch_sub(1, Ordering::Relaxed);
                }
            })
            .map_err(|e| LinuxError::Thread(e.to_string()))?;
        Ok(Reaper {
            tx: std::sync::Mutex::new(tx),
            pending,
        })
    }

    /// Queues a device for deletion; returns at once.
    pub fn reap(&self, d: Doomed) {
        self.pending.fetch_add(1, Ordering::Relaxed);
        let tx = self.tx.lock().unwrap_or_else(|p| p.into_inner());
        if tx.send(d).is_err() {
            self.pending.fetch_sub(1, Ordering::Relaxed);
            tracing::warn!("the reaper thread is gone; the next start sweeps what it left");
        }
    }

    /// Devices queued and not deleted yet.
    pub fn pending(&self) -> usize {
        self.pending.load(Ordering::Relaxed)
    }
}

/// Deletes device `d` of the calling thread's network namespace with a socket of its own,
/// waiting for the kernel (run it on a thread that may block, e.g. inside
/// [`crate::netns::run_in`]). A device already gone is fine.
pub fn delete_here(d: &Doomed) -> Result<()> {
    let err = |e: std::io::Error| LinuxError::io("open netlink socket", "reaper", e);
    let mut sock = Socket::new(NETLINK_ROUTE).map_err(err)?;
    sock.bind(&SocketAddr::new(0, 0)).map_err(err)?;
    delete(&sock, 1, d)
}

/// Sends one RTM_DELLINK and waits for its answer; a device already gone is fine.
fn delete(sock: &Socket, seq: u32, d: &Doomed) -> Result<()> {
    let mut link = LinkMessage::default();
    match d {
        Doomed::Index(i) => link.header.index = *i,
        Doomed::Name(n) => link.attributes.push(LinkAttribute::IfName(n.clone())),
    }
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_ACK;
    header.sequence_number = seq;
    let mut msg = NetlinkMessage::new(
        header,
        NetlinkPayload::from(RouteNetlinkMessage::DelLink(link)),
    );
    msg.finalize();
    let mut buf = vec![0u8; msg.buffer_len()];
    msg.serialize(&mut buf);
    let io = |e: std::io::Error| LinuxError::io("delete device", "reaper", e);
    sock.send(&buf, 0).map_err(io)?;
    let mut rx = vec![0u8; 4096];
    loop {
        let n = sock.recv(&mut &mut rx[..], 0).map_err(io)?;
        let Ok(answer) = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&rx[..n]) else {
            return Ok(());
        };
        if answer.header.sequence_number != seq {
            continue;
        }
        return match answer.payload {
            NetlinkPayload::Error(e) => match e.code.map(|c| -c.get()) {
                None => Ok(()),
                Some(libc::ENODEV) | Some(libc::ENOENT) => Ok(()),
                Some(errno) => Err(LinuxError::Netlink {
                    op: format!("delete device {d:?}"),
                    message: std::io::Error::from_raw_os_error(errno).to_string(),
                    errno: Some(errno),
                }),
            },
            _ => Ok(()),
        };
    }
}
