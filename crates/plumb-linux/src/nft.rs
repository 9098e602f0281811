//! plumb's nftables tables: loaded once, then changed only by element operations on named
//! sets. Nothing here lists or rewrites the ruleset on a per-endpoint path.
//!
//! The table `inet plumb` (in the namespace plumbd runs in) holds:
//! - `isolated`: pairs of bridges of different networks; routed traffic between them drops,
//!   except connections DNAT sent to a container (a published port reached from a container
//!   of another network, through a host address or a gateway; internal networks excepted).
//!   Pairs rather than "any bridge to any bridge" because with br_netfilter on (the kernel
//!   default) frames bridged inside one network also pass the forward hook, with the same
//!   bridge as input and output, and must go through.
//! - `internal`: bridges of internal networks; traffic between them and anything else drops.
//! - `bridges` and `masq4`/`masq6`: egress of these subnets leaving through a non-plumb
//!   interface is masqueraded (NAT gateway mode only).
//! - Direct access from outside: nothing coming from a non-plumb interface reaches a
//!   container except replies and published ports (DNAT); `routed4`/`routed6` bridges (routed
//!   gateway mode) also take ICMP and the container ports in `open4`/`open6` at the
//!   container's own address; `unprot4`/`unprot6` bridges (`nat-unprotected`) take anything,
//!   as before Docker 28.
//!
//! Inter-container communication inside a network (ICC) is not a firewall matter here: with
//! ICC off, each bridge port is made isolated (IFLA_BRPORT_ISOLATED), so ports reach the
//! gateway but not each other.
//!
//! Element changes go straight over nfnetlink ([`crate::nfnl`]), one transaction per network
//! create or delete and per connect with published ports; `nft` runs only to load the table.

use crate::error::{LinuxError, Result};
use crate::nfnl::{element_batch, set_elements, Concat, Elem, ElemOp};
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
    set routed4 { type ifname; }
    set routed6 { type ifname; }
    set unprot4 { type ifname; }
    set unprot6 { type ifname; }
    set open4 { type ipv4_addr . inet_proto . inet_service; }
    set open6 { type ipv6_addr . inet_proto . inet_service; }
    map dnat4 { type inet_proto . inet_service : ipv4_addr . inet_service; }
    map dnat4_ip { type ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service; }
    map dnat6 { type inet_proto . inet_service : ipv6_addr . inet_service; }
    map dnat6_ip { type ipv6_addr . inet_proto . inet_service : ipv6_addr . inet_service; }
    chain prerouting_raw {
        type filter hook prerouting priority raw; policy accept;
        iifname != "lo" ip daddr 127.0.0.0/8 drop
    }
    chain prerouting {
        type nat hook prerouting priority dstnat; policy accept;
        fib daddr type local dnat ip to ip daddr . meta l4proto . th dport map @dnat4_ip
        fib daddr type local dnat ip to meta l4proto . th dport map @dnat4
        fib daddr type local dnat ip6 to ip6 daddr . meta l4proto . th dport map @dnat6_ip
        fib daddr type local dnat ip6 to meta l4proto . th dport map @dnat6
    }
    chain output {
        type nat hook output priority -100; policy accept;
        fib daddr type local dnat ip to ip daddr . meta l4proto . th dport map @dnat4_ip
        fib daddr type local dnat ip to meta l4proto . th dport map @dnat4
        fib daddr type local dnat ip6 to ip6 daddr . meta l4proto . th dport map @dnat6_ip
        fib daddr type local dnat ip6 to meta l4proto . th dport map @dnat6
    }
    chain forward {
        type filter hook forward priority filter; policy accept;
        iifname @internal oifname != @internal drop
        oifname @internal iifname != @internal drop
        ct status dnat oifname @bridges accept
        iifname . oifname @isolated drop
        oifname @bridges iifname != @bridges ct state established,related accept
        oifname @routed4 iifname != @bridges ip protocol icmp accept
        oifname @routed4 iifname != @bridges ip daddr . meta l4proto . th dport @open4 accept
        oifname @routed6 iifname != @bridges meta l4proto ipv6-icmp accept
        oifname @routed6 iifname != @bridges ip6 daddr . meta l4proto . th dport @open6 accept
        oifname @unprot4 iifname != @bridges meta nfproto ipv4 accept
        oifname @unprot6 iifname != @bridges meta nfproto ipv6 accept
        oifname @bridges iifname != @bridges drop
    }
    chain postrouting {
        type nat hook postrouting priority srcnat; policy accept;
        ip saddr @masq4 oifname != @bridges masquerade
        ip6 saddr @masq6 oifname != @bridges masquerade
        ip saddr 127.0.0.0/8 oifname @bridges masquerade
        ct status dnat oifname @bridges ip saddr @masq4 masquerade
        ct status dnat oifname @bridges ip6 saddr @masq6 masquerade
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
    /// Masquerade egress (of the families in NAT mode).
    pub masquerade: bool,
    /// How IPv4 leaves and enters.
    pub gateway4: GatewayMode,
    /// How IPv6 leaves and enters.
    pub gateway6: GatewayMode,
}

/// How one address family of a bridge network meets the outside (Docker's
/// `com.docker.network.bridge.gateway_mode_ipv4/6`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GatewayMode {
    /// Egress masqueraded; from outside only replies and published ports (DNAT).
    #[default]
    Nat,
    /// Egress masqueraded; anything routed to a container's address reaches it.
    NatUnprotected,
    /// No masquerade: containers use their own addresses outside; from outside, replies,
    /// ICMP and published container ports at the container's address.
    Routed,
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

/// A network's elements, set by set: its bridge, its internal flag, the isolation pairs
/// with every peer, its masqueraded subnets.
fn network_elements(r: &NetworkRules) -> Vec<(&'static str, Vec<Elem>)> {
    let b = &r.bridge;
    let mut out = vec![("bridges", vec![Elem::key(Concat::new().ifname(b))])];
    if r.internal {
        out.push(("internal", vec![Elem::key(Concat::new().ifname(b))]));
    }
    let pairs: Vec<Elem> = r
        .peers
        .iter()
        .flat_map(|p| {
            [
                Elem::key(Concat::new().ifname(b).ifname(p)),
                Elem::key(Concat::new().ifname(p).ifname(b)),
            ]
        })
        .collect();
    if !pairs.is_empty() {
        out.push(("isolated", pairs));
    }
    for (v6, mode) in [(false, r.gateway4), (true, r.gateway6)] {
        let masq = r.masquerade && !r.internal && mode != GatewayMode::Routed;
        let elems: Vec<Elem> = r
            .subnets
            .iter()
            .filter(|n| matches!(n, IpNet::V6(_)) == v6)
            .flat_map(|n| Elem::prefix(*n))
            .collect();
        if masq && !elems.is_empty() {
            out.push((if v6 { "masq6" } else { "masq4" }, elems));
        }
        let bridge = || vec![Elem::key(Concat::new().ifname(b))];
        match (mode, v6) {
            (GatewayMode::Routed, false) => out.push(("routed4", bridge())),
            (GatewayMode::Routed, true) => out.push(("routed6", bridge())),
            (GatewayMode::NatUnprotected, false) => out.push(("unprot4", bridge())),
            (GatewayMode::NatUnprotected, true) => out.push(("unprot6", bridge())),
            (GatewayMode::Nat, _) => {}
        }
    }
    out
}

fn apply_network(op: ElemOp, r: &NetworkRules) -> Result<()> {
    let elems = network_elements(r);
    let changes: Vec<(ElemOp, &str, &[Elem])> = elems
        .iter()
        .map(|(set, e)| (op, *set, e.as_slice()))
        .collect();
    element_batch("plumb", &changes).send_shared()
}

/// Adds a network's elements over nfnetlink, in one transaction. Idempotent.
pub fn add_network(r: &NetworkRules) -> Result<()> {
    apply_network(ElemOp::Add, r)
}

/// Removes a network's elements over nfnetlink, in one transaction; missing elements are
/// fine.
pub fn remove_network(r: &NetworkRules) -> Result<()> {
    apply_network(ElemOp::Destroy, r)
}

/// Where published ports lead: the endpoint's addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortTarget {
    /// IPv4 address of the endpoint.
    pub v4: Option<std::net::Ipv4Addr>,
    /// IPv6 address of the endpoint.
    pub v6: Option<std::net::Ipv6Addr>,
}

/// One published port in nft's terms: (host address or any, protocol, host port, container port).
pub type PortElement = (Option<std::net::IpAddr>, &'static str, u16, u16);

fn proto_number(p: &str) -> u8 {
    match p {
        "udp" => 17,
        "sctp" => 132,
        _ => 6,
    }
}

/// The published ports as (map, key, value) elements.
fn port_elems(to: PortTarget, ports: &[PortElement]) -> Vec<(&'static str, Concat, Concat)> {
    use std::net::IpAddr;
    let mut out = Vec::new();
    for &(host, proto, hp, cp) in ports {
        let pn = proto_number(proto);
        let value = |a: IpAddr| Concat::new().addr(a).port(cp);
        match host {
            None => {
                if let Some(a) = to.v4 {
                    out.push(("dnat4", Concat::new().proto(pn).port(hp), value(a.into())));
                }
                if let Some(a) = to.v6 {
                    out.push(("dnat6", Concat::new().proto(pn).port(hp), value(a.into())));
                }
            }
            Some(h) if h.is_unspecified() => {
                let (map, a) = match h {
                    IpAddr::V4(_) => ("dnat4", to.v4.map(IpAddr::from)),
                    IpAddr::V6(_) => ("dnat6", to.v6.map(IpAddr::from)),
                };
                if let Some(a) = a {
                    out.push((map, Concat::new().proto(pn).port(hp), value(a)));
                }
            }
            Some(h @ IpAddr::V4(_)) => {
                if let Some(a) = to.v4 {
                    out.push((
                        "dnat4_ip",
                        Concat::new().addr(h).proto(pn).port(hp),
                        value(a.into()),
                    ));
                }
            }
            Some(h @ IpAddr::V6(_)) => {
                if let Some(a) = to.v6 {
                    out.push((
                        "dnat6_ip",
                        Concat::new().addr(h).proto(pn).port(hp),
                        value(a.into()),
                    ));
                }
            }
        }
    }
    out
}

fn apply_ports(op: ElemOp, to: PortTarget, ports: &[PortElement]) -> Result<()> {
    let elems = port_elems(to, ports);
    for map in ["dnat4", "dnat4_ip", "dnat6", "dnat6_ip"] {
        let of_map: Vec<(Concat, Concat)> = elems
            .iter()
            .filter(|(m, _, _)| *m == map)
            .map(|(_, k, v)| (k.clone(), v.clone()))
            .collect();
        set_elements(op, "plumb", map, &of_map)?;
    }
    Ok(())
}

/// Adds published ports leading to `to` over nfnetlink (no `nft` process).
pub fn add_ports(to: PortTarget, ports: &[PortElement]) -> Result<()> {
    apply_ports(ElemOp::Add, to, ports)
}

/// Removes published ports; missing elements are fine.
pub fn remove_ports(to: PortTarget, ports: &[PortElement]) -> Result<()> {
    apply_ports(ElemOp::Destroy, to, ports)
}

/// A container port opened at the container's own address (routed gateway mode).
pub type OpenPort = (std::net::IpAddr, &'static str, u16);

/// Opens (`Add`) or closes (`Destroy`) container ports at containers' own addresses, in one
/// transaction; missing elements are fine when closing.
pub fn open_ports(op: ElemOp, ports: &[OpenPort]) -> Result<()> {
    let elems = |v6: bool| -> Vec<Elem> {
        ports
            .iter()
            .filter(|(a, _, _)| a.is_ipv6() == v6)
            .map(|&(a, proto, port)| {
                Elem::key(Concat::new().addr(a).proto(proto_number(proto)).port(port))
            })
            .collect()
    };
    let (v4, v6) = (elems(false), elems(true));
    let mut changes: Vec<(ElemOp, &str, &[Elem])> = Vec::new();
    if !v4.is_empty() {
        changes.push((op, "open4", &v4));
    }
    if !v6.is_empty() {
        changes.push((op, "open6", &v6));
    }
    if changes.is_empty() {
        return Ok(());
    }
    element_batch("plumb", &changes).send_shared()
}

/// True when plumb's table exists.
pub fn table_present() -> Result<bool> {
    let out = Command::new("nft")
        .args(["list", "tables", "inet"])
        .output()
        .map_err(|e| LinuxError::Nft(format!("cannot run nft: {e}")))?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .any(|l| l.trim() == "table inet plumb"))
}

/// plumb's tables as nft prints them.
pub fn show() -> Result<String> {
    let out = Command::new("nft")
        .args(["list", "table", "inet", "plumb"])
        .output()
        .map_err(|e| LinuxError::Nft(format!("cannot run nft: {e}")))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(LinuxError::Nft(
            String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        ))
    }
}
