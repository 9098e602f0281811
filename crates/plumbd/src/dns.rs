//! Wires the embedded resolver to sandboxes: opens 127.0.0.11:53 (UDP and TCP) inside each
//! sandbox's namespace and hands the sockets to plumb-dns.

use async_trait::async_trait;
use plumb_core::driver::SandboxResolver;
use plumb_core::model::Sandbox;
use plumb_core::BoxError;
use plumb_dns::DnsServer;
use plumb_linux::netns;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

/// The resolver's address inside every sandbox.
pub const RESOLVER: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::new(127, 0, 0, 11)), 53);

/// [`SandboxResolver`] backed by plumb-dns.
pub struct EmbeddedDns {
    /// The shared server.
    pub server: Arc<DnsServer>,
}

#[async_trait]
impl SandboxResolver for EmbeddedDns {
    async fn attach(&self, sb: &Sandbox) -> Result<(), BoxError> {
        if self.server.is_registered(&sb.id) {
            return Ok(());
        }
        let (udp, tcp) = netns::run_in(Some(PathBuf::from(&sb.key)), || {
            let io = |op, e| plumb_linux::LinuxError::io(op, "127.0.0.11:53", e);
            let udp = std::net::UdpSocket::bind(RESOLVER).map_err(|e| io("bind udp", e))?;
            let tcp = std::net::TcpListener::bind(RESOLVER).map_err(|e| io("bind tcp", e))?;
            Ok((udp, tcp))
        })
        .await?;
        let upstreams = (!sb.spec.dns.is_empty()).then(|| {
            sb.spec
                .dns
                .iter()
                .map(|ip| SocketAddr::new(*ip, 53))
                .collect()
        });
        self.server.register(sb.id.clone(), udp, tcp, upstreams)?;
        Ok(())
    }

    async fn detach(&self, sb: &Sandbox) {
        self.server.unregister(&sb.id);
    }
}
