//! Watches nftables changes (the NFNLGRP_NFTABLES netlink group) so that plumbd notices when
//! someone flushes the ruleset or deletes its table, and can restore it.

use crate::error::{LinuxError, Result};
use netlink_sys::{Socket, SocketAddr};

/// Netlink protocol of netfilter.
const NETLINK_NETFILTER: isize = 12;
/// Multicast group of nftables ruleset changes.
const NFNLGRP_NFTABLES: u32 = 7;
/// nftables' nfnetlink subsystem.
const NFNL_SUBSYS_NFTABLES: u16 = 10;
/// Table deletions (NFT_MSG_DELTABLE, NFT_MSG_DESTROYTABLE): the only changes that can take
/// plumb's table away. `nft flush ruleset` sends one per table.
const TABLE_GONE: [u16; 2] = [2, 26];

/// True when a batch of notifications deletes some table.
fn deletes_a_table(buf: &[u8]) -> bool {
    let mut off = 0;
    while off + 16 <= buf.len() {
        let len = u32::from_ne_bytes([buf[off], buf[off + 1], buf[off + 2], buf[off + 3]]) as usize;
        let kind = u16::from_ne_bytes([buf[off + 4], buf[off + 5]]);
        if kind >> 8 == NFNL_SUBSYS_NFTABLES && TABLE_GONE.contains(&(kind & 0xff)) {
            return true;
        }
        if len < 16 {
            break;
        }
        off += (len + 3) & !3;
    }
    false
}

/// Calls `changed` (from a helper thread) whenever a table of the caller's namespace is
/// deleted (element changes, plumb's own included, are ignored). Runs for the life of the
/// process.
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
                    Ok(_) if deletes_a_table(&buf) => changed(),
                    Ok(_) => {}
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
