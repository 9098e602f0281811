//! Published host ports held by bound sockets in the host namespace: while plumb publishes a
//! port, no host process can bind it (and one that already has it makes publishing fail),
//! and a mapping without a host port gets a free one from the kernel.
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

/// How many free ports to try for a mapping on both address families before giving up.
const PICK_ATTEMPTS: usize = 16;

/// The host ports plumb holds, by mapping.
#[derive(Default)]
pub struct HostPorts {
    held: Mutex<HashMap<PortMapping, Vec<Socket>>>,
}

impl HostPorts {
    /// An empty holder; use it from the host namespace.
    pub fn new() -> Self {
        Self::default()
    }

    fn held(&self) -> std::sync::MutexGuard<'_, HashMap<PortMapping, Vec<Socket>>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The addresses a mapping binds: both wildcards when it names none.
fn addresses(m: &PortMapping) -> Vec<IpAddr> {
    match m.host_ip {
        Some(ip) => vec![ip],
        None => vec![Ipv4Addr::UNSPECIFIED.into(), Ipv6Addr::UNSPECIFIED.into()],
    }
}

/// One bound socket for `proto` on `ip`:`port` (0: any free port).
fn bind(proto: Proto, ip: IpAddr, port: u16) -> io::Result<Socket> {
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
    let s = Socket::new(domain, ty, Some(protocol))?;
    s.set_cloexec(true)?;
    if ip.is_ipv6() {
        s.set_only_v6(true)?;
        // An address that is not configured yet (a failover address) can still be held.
        s.set_freebind_v6(true)?;
    } else {
        s.set_freebind_v4(true)?;
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

/// True when the failure means the host has no such family or protocol (IPv6 disabled, no
/// SCTP module): nothing to hold there.
fn unsupported(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EAFNOSUPPORT | libc::EPROTONOSUPPORT | libc::ESOCKTNOSUPPORT)
    )
}

/// Binds every address of `m` on `port`; the sockets, or the first real failure.
fn bind_all(m: &PortMapping, port: u16) -> io::Result<Vec<Socket>> {
    let mut out = Vec::new();
    for ip in addresses(m) {
        match bind(m.proto, ip, port) {
            Ok(s) => out.push(s),
            // Wildcard of a family the host does not have: nothing can bind there either.
            Err(e) if unsupported(&e) && m.host_ip.is_none() => {}
            Err(e) if unsupported(&e) => return Ok(out),
            Err(e) => {
                let addr = SocketAddr::new(ip, port);
                return Err(io::Error::new(e.kind(), format!("binding {addr}: {e}")));
            }
        }
    }
    Ok(out)
}

impl PortHolder for HostPorts {
    fn hold(&self, m: &PortMapping) -> io::Result<PortMapping> {
        if m.host_port != 0 {
            let sockets = bind_all(m, m.host_port)?;
            self.held().insert(*m, sockets);
            return Ok(*m);
        }
        // A free port: the kernel picks one on the first address, the others must take the
        // same; if one of them cannot, try another.
        let addrs = addresses(m);
        for _ in 0..PICK_ATTEMPTS {
            let first = match bind(m.proto, addrs[0], 0) {
                Ok(s) => s,
                Err(e) => return Err(io::Error::new(e.kind(), format!("picking a port: {e}"))),
            };
            let port = local_port(&first)?;
            let chosen = PortMapping {
                host_port: port,
                ..*m
            };
            let rest = PortMapping {
                host_ip: addrs.get(1).copied(),
                ..chosen
            };
            let others = if addrs.len() > 1 {
                bind_all(&rest, port)
            } else {
                Ok(Vec::new())
            };
            match others {
                Ok(mut sockets) => {
                    sockets.insert(0, first);
                    self.held().insert(chosen, sockets);
                    return Ok(chosen);
                }
                Err(e) if e.kind() == io::ErrorKind::AddrInUse => continue,
                Err(e) => return Err(e),
            }
        }
        Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            "no port free on every address",
        ))
    }

    fn release(&self, m: &PortMapping) {
        self.held().remove(m);
    }
}
