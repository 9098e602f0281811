//! Watches nftables changes (the NFNLGRP_NFTABLES netlink group) so that plumbd notices when
//! someone flushes the ruleset or deletes its table, and can restore it.

use crate::error::{LinuxError, Result};
use netlink_sys::{Socket, SocketAddr};

/// Netlink protocol of netfilter.
const NETLINK_NETFILTER: isize = 12;
/// Multicast group of nftables ruleset changes.
const NFNLGRP_NFTABLES: u32 = 7;

/// Calls `changed` (from a helper thread) after every burst of nftables changes in the
/// caller's namespace. Runs for the life of the process.
pub fn watch(changed: impl Fn() + Send + 'static) -> Result<()> {
    let io = |op, e| LinuxError::io(op, "netlink netfilter", e);
    let mut sock = Socket::new(NETLINK_NETFILTER).map_err(|e| io("open", e))?;
    sock.bind(&SocketAddr::new(0, 0))
        .map_err(|e| io("bind", e))?;
    sock.add_membership(NFNLGRP_NFTABLES)
        .map_err(|e| io("join nftables group", e))?;
    std::thread::Builder::new()
        .name("plumb-nft-watch".into())
        .spawn(move || {
            let mut buf: Vec<u8> = Vec::with_capacity(1 << 16);
            loop {
                buf.clear();
                match sock.recv(&mut buf, 0) {
                    Ok(_) => changed(),
                    // ENOBUFS: events were lost; treat it as a change.
                    Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => changed(),
                    Err(e) => {
                        tracing::error!(error = %e, "nftables watch stopped");
                        return;
                    }
                }
            }
        })
        .map_err(|e| LinuxError::Thread(e.to_string()))?;
    Ok(())
}
