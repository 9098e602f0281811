//! Published host ports held by bound sockets in the host namespace: while plumb publishes a
//! port, no host process can bind it (and one that already has it makes publishing fail),
//! and a mapping without a host port gets a free one from the kernel. A mapping without an
//! address holds one dual-stack socket on `::`, which covers both families.
//!
//! The sockets never see traffic for a published port: DNAT in prerouting and output sends
//! it to the container before any socket lookup. TCP sockets are bound, not listening, so a
//! stray connection is refused; UDP sockets keep the smallest receive buffer. Neither sets
//! SO_REUSEADDR, which makes every other bind of the port conflict.

use plumb_core::driver::PortHolder;
use plumb_core::ports::{PortMapping, Proto};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Mutex;

/// The host ports plumb holds, by mapping (no socket where the host lacks the protocol).
#[derive(Default)]
pub struct HostPorts {
    held: Mutex<HashMap<PortMapping, Option<Socket>>>,
}

impl HostPorts {
    /// An empty holder; use it from the host namespace.
    pub fn new() -> Self {
        Self::default()
    }

    fn held(&self) -> std::sync::MutexGuard<'_, HashMap<PortMapping, Option<Socket>>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The addresses a mapping binds, in order of preference: a mapping without address takes one
/// dual-stack socket on `::` (both families), or `0.0.0.0` where the host has no IPv6.
fn addresses(m: &PortMapping) -> Vec<IpAddr> {
    match m.host_ip {
        Some(ip) => vec![ip],
        None => vec![Ipv6Addr::UNSPECIFIED.into(), Ipv4Addr::UNSPECIFIED.into()],
    }
}

/// One bound socket for `proto` on `ip`:`port` (0: any free port); `dual` makes an IPv6
/// wildcard cover IPv4 too.
fn bind(proto: Proto, ip: IpAddr, port: u16, dual: bool) -> io::Result<Socket> {
    let domain = if ip.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    };
    let (ty, protocol) = match proto {
        Proto::Tcp => (Type::STREAM, Protocol::TCP),
        Proto::Udp => (Type::DGRAM, Protocol::UDP),
        Proto::Sctp => (Type::STREAM, Protocol::from(libc::IPPROTO_SCTP)),
    };
    // Close-on-exec already (socket2 opens with SOCK_CLOEXEC).
    let s = Socket::new(domain, ty, Some(protocol))?;
    if ip.is_ipv6() {
        s.set_only_v6(!dual)?;
    }
    // An address that is not configured yet (a failover address) can still be held.
    match ip {
        IpAddr::V6(a) if !a.is_unspecified() => s.set_freebind_v6(true)?,
        IpAddr::V4(a) if !a.is_unspecified() => s.set_freebind_v4(true)?,
        _ => {}
    }
    if proto == Proto::Udp {
        s.set_recv_buffer_size(0)?;
    }
    s.bind(&SockAddr::from(SocketAddr::new(ip, port)))?;
    Ok(s)
}

fn local_port(s: &Socket) -> io::Result<u16> {
    s.local_addr()?
        .as_socket()
        .map(|a| a.port())
        .ok_or_else(|| io::Error::other("bound socket without an address"))
}

/// True when the failure means the host has no such family or protocol (no IPv6, no SCTP
/// module): nothing can bind there.
fn unsupported(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EAFNOSUPPORT | libc::EPROTONOSUPPORT | libc::ESOCKTNOSUPPORT)
    )
}

/// Binds `m` on `port`: its address, or for a mapping without one the dual-stack wildcard
/// (the IPv4 wildcard where the host has no IPv6). None when the protocol is unsupported.
fn bind_mapping(m: &PortMapping, port: u16) -> io::Result<Option<Socket>> {
    let dual = m.host_ip.is_none();
    for ip in addresses(m) {
        match bind(m.proto, ip, port, dual) {
            Ok(s) => return Ok(Some(s)),
            // No IPv6 on this host: the IPv4 wildcard is next.
            Err(e) if unsupported(&e) && dual && ip.is_ipv6() => {}
            Err(e) if unsupported(&e) => return Ok(None),
            Err(e) => {
                let addr = SocketAddr::new(ip, port);
                return Err(io::Error::new(e.kind(), format!("binding {addr}: {e}")));
            }
        }
    }
    Ok(None)
}

impl PortHolder for HostPorts {
    fn hold(&self, m: &PortMapping) -> io::Result<PortMapping> {
        // Port 0: the kernel picks a free one.
        let socket = bind_mapping(m, m.host_port)?;
        let chosen = match (&socket, m.host_port) {
            (Some(s), 0) => PortMapping {
                host_port: local_port(s)?,
                ..*m
            },
            (None, 0) => {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    "no free port can be picked for a protocol this host lacks",
                ))
            }
            _ => *m,
        };
        self.held().insert(chosen, socket);
        Ok(chosen)
    }

    fn release(&self, m: &PortMapping) {
        self.held().remove(m);
    }
}
