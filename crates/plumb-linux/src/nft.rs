//! plumb's nftables tables: loaded once, then changed only by element operations on named
//! sets. Nothing here lists or rewrites the ruleset on a per-endpoint path.
//!
//! The table `inet plumb` (in the namespace plumbd runs in) holds:
//! - `isolated`: pairs of bridges of different networks; routed traffic between them drops.
//!   Pairs rather than "any bridge to any bridge" because with br_netfilter on (the kernel
//!   default) frames bridged inside one network also pass the forward hook, with the same
//!   bridge as input and output, and must go through.
//! - `internal`: bridges of internal networks; traffic between them and anything else drops.
//! - `bridges` and `masq4`/`masq6`: egress of these subnets leaving through a non-plumb
//!   interface is masqueraded.
//!
//! Inter-container communication inside a network (ICC) is not a firewall matter here: with
//! ICC off, each bridge port is made isolated (IFLA_BRPORT_ISOLATED), so ports reach the
//! gateway but not each other.
//!
//! Element changes are sent as one `nft -f -` batch per network operation (network create and
//! delete are not on the per-container path).

use crate::error::{LinuxError, Result};
use ipnet::IpNet;
use std::io::Write;
use std::process::{Command, Stdio};

const TABLES: &str = r#"
table inet plumb {
    set bridges { type ifname; }
    set internal { type ifname; }
    set isolated { type ifname . ifname; }
    set masq4 { type ipv4_addr; flags interval; }
    set masq6 { type ipv6_addr; flags interval; }
    chain forward {
        type filter hook forward priority filter; policy accept;
        iifname . oifname @isolated drop
        iifname @internal oifname != @internal drop
        oifname @internal iifname != @internal drop
    }
    chain postrouting {
        type nat hook postrouting priority srcnat; policy accept;
        ip saddr @masq4 oifname != @bridges masquerade
        ip6 saddr @masq6 oifname != @bridges masquerade
    }
}
"#;

/// What the firewall must know about one network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkRules {
    /// The bridge.
    pub bridge: String,
    /// Its subnets.
    pub subnets: Vec<IpNet>,
    /// No egress.
    pub internal: bool,
    /// Bridges of the other networks, to isolate from.
    pub peers: Vec<String>,
    /// Masquerade egress.
    pub masquerade: bool,
}

/// Runs `script` through `nft -f -`.
fn nft(script: &str) -> Result<()> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| LinuxError::Nft(format!("cannot run nft: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(script.as_bytes())
            .map_err(|e| LinuxError::Nft(e.to_string()))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| LinuxError::Nft(e.to_string()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(LinuxError::Nft(
            String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        ))
    }
}

/// Loads plumb's tables afresh (start-up): drops old copies, then creates them empty.
/// Changes no other table.
pub fn load_tables() -> Result<()> {
    let script = format!("table inet plumb\ndelete table inet plumb\n{TABLES}");
    nft(&script)
}

/// Removes plumb's tables (tests and uninstall).
pub fn remove_tables() -> Result<()> {
    nft("table inet plumb\ndelete table inet plumb\n")
}

fn element_ops(verb: &str, r: &NetworkRules) -> String {
    let mut s = String::new();
    let b = &r.bridge;
    s.push_str(&format!(
        "{verb} element inet plumb bridges {{ \"{b}\" }}\n"
    ));
    if r.internal {
        s.push_str(&format!(
            "{verb} element inet plumb internal {{ \"{b}\" }}\n"
        ));
    }
    for p in &r.peers {
        s.push_str(&format!(
            "{verb} element inet plumb isolated {{ \"{b}\" . \"{p}\", \"{p}\" . \"{b}\" }}\n"
        ));
    }
    if r.masquerade && !r.internal {
        for n in &r.subnets {
            let set = if matches!(n, IpNet::V4(_)) {
                "masq4"
            } else {
                "masq6"
            };
            s.push_str(&format!("{verb} element inet plumb {set} {{ {n} }}\n"));
        }
    }
    s
}

/// Adds a network's elements. Idempotent (`add` of an existing element is a no-op).
pub fn add_network(r: &NetworkRules) -> Result<()> {
    nft(&element_ops("add", r))
}

/// Removes a network's elements; missing elements are fine.
pub fn remove_network(r: &NetworkRules) -> Result<()> {
    // `destroy` ignores absent elements (nft >= 1.0.8); fall back to one `delete` at a time.
    if nft(&element_ops("destroy", r)).is_ok() {
        return Ok(());
    }
    for line in element_ops("delete", r).lines() {
        let _ = nft(line);
    }
    Ok(())
}
