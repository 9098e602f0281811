//! rtnetlink operations. An [`Nl`] is a netlink socket opened inside one namespace (on a
//! helper thread) and then used from async code; one file per kernel object kind.

mod addr;
mod link;
mod route;

pub use link::{LinkInfo, VethSpec};

use crate::error::{LinuxError, Result};
use crate::netns;
use std::path::PathBuf;

/// A netlink route socket bound to one network namespace.
#[derive(Clone)]
pub struct Nl {
    handle: rtnetlink::Handle,
}

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
        Ok(Nl { handle })
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
