//! rtnetlink operations. An [`Nl`] is a netlink socket opened inside one namespace (on a
//! helper thread) and then used from async code; one file per kernel object kind.

mod addr;
mod link;
mod lower;
mod neigh;
mod route;

pub use link::{LinkInfo, VethSpec};
pub use lower::{LowerKind, LowerSpec, ProbedKind};
pub use netlink_packet_route::link::{IpVlanMode, MacVlanMode};

use crate::error::{LinuxError, Result};
use crate::netns;
use std::path::PathBuf;

/// A netlink route socket bound to one network namespace.
#[derive(Clone)]
pub struct Nl {
    handle: rtnetlink::Handle,
    /// The kernel runs one dump per socket at a time and answers EBUSY to a second one, so
    /// dumps (links, routes, addresses) on a shared socket take turns.
    dumps: std::sync::Arc<tokio::sync::Mutex<()>>,
}

/// How often a dump refused with EBUSY (another dump on the socket, or one interrupted by a
/// concurrent change) is tried again before the error is given up.
const DUMP_TRIES: usize = 5;

impl Nl {
    /// Opens a socket in the namespace at `ns` (the caller's own when `None`).
    pub async fn open(ns: Option<PathBuf>) -> Result<Self> {
        let rt = tokio::runtime::Handle::current();
        let (conn, handle) = netns::run_in(ns, move || {
            // The socket joins the namespace of the thread that creates it; registering it with
            // the runtime needs the runtime's context on this thread.
            let _guard = rt.enter();
            let (conn, handle, _) = rtnetlink::new_connection()
                .map_err(|e| LinuxError::io("open netlink socket", "netlink", e))?;
            Ok((conn, handle))
        })
        .await?;
        tokio::spawn(conn);
        Ok(Nl {
            handle,
            dumps: Default::default(),
        })
    }

    /// Runs a dump, alone on this socket, trying again while the kernel answers EBUSY.
    pub(crate) async fn dump<T, F, Fut>(&self, mut run: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        let _turn = self.dumps.lock().await;
        let mut tries = 0;
        loop {
            match run().await {
                Err(e) if e.errno() == Some(libc::EBUSY) && tries + 1 < DUMP_TRIES => {
                    tries += 1;
                    tokio::task::yield_now().await;
                }
                r => return r,
            }
        }
    }
}

/// Maps "exists already" to success.
pub(crate) fn ok_if_exists(r: Result<()>) -> Result<()> {
    match r {
        Err(e) if e.is_exists() => Ok(()),
        r => r,
    }
}

/// Maps "not there" to success.
pub(crate) fn ok_if_gone(r: Result<()>) -> Result<()> {
    match r {
        Err(e) if e.is_not_found() => Ok(()),
        r => r,
    }
}
