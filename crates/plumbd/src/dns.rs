//! Wires the embedded resolver to sandboxes: opens UDP and TCP sockets on 127.0.0.11 inside
//! each sandbox's namespace, redirects 127.0.0.11:53 to them, and hands them to plumb-dns.

use async_trait::async_trait;
use plumb_core::driver::SandboxResolver;
use plumb_core::model::Sandbox;
use plumb_core::BoxError;
use plumb_dns::DnsServer;
use plumb_linux::netns;
use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::path::PathBuf;
use std::sync::Arc;

/// The resolver's address inside every sandbox (port 53, as resolv.conf says). Its sockets
/// listen on a port of their own, so that port 53 stays free for the sandbox's processes; a
/// rule in the sandbox sends queries to 53 there (`plumb_linux::nfnl::redirect_resolver`).
pub const RESOLVER_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 11);

/// Ports the resolver's sockets pick from inside a sandbox (above most servers' defaults,
/// below the kernel's ephemeral range).
const RESOLVER_PORTS: std::ops::Range<u16> = 20000..32000;

/// Opens the resolver's UDP and TCP sockets inside the sandbox on one port of
/// `RESOLVER_PORTS` and redirects 127.0.0.11:53 to it. Everything is prepared here; the
/// short-lived thread inside the namespace only binds and sends.
async fn open_resolver(ns: PathBuf) -> Result<(UdpSocket, TcpListener), BoxError> {
    let mut last = None;
    for _ in 0..8 {
        let port = rand::random_range(RESOLVER_PORTS);
        let batch = plumb_linux::nfnl::redirect_resolver(RESOLVER_IP, port, port);
        let opened = netns::run_in(Some(ns.clone()), move || {
            let io = |op, e| plumb_linux::LinuxError::io(op, "127.0.0.11", e);
            let udp = UdpSocket::bind((RESOLVER_IP, port)).map_err(|e| io("bind udp", e))?;
            let tcp = TcpListener::bind((RESOLVER_IP, port)).map_err(|e| io("bind tcp", e))?;
            batch.send()?;
            Ok((udp, tcp))
        })
        .await;
        match opened {
            Ok(sockets) => return Ok(sockets),
            // A process in the sandbox has that port (after a restart): another one.
            Err(e) if e.errno() == Some(libc::EADDRINUSE) => last = Some(e),
            Err(e) => return Err(e.into()),
        }
    }
    Err(last.map_or_else(|| "no port for the resolver".into(), Into::into))
}

/// [`SandboxResolver`] backed by plumb-dns.
pub struct EmbeddedDns {
    /// The shared server.
    pub server: Arc<DnsServer>,
    /// Removals of the redirection from adopted namespaces still under way, by namespace
    /// path: a new sandbox on the same namespace waits for its removal first.
    cleanups: std::sync::Mutex<HashMap<String, tokio::task::JoinHandle<()>>>,
}

impl EmbeddedDns {
    /// A resolver wiring sandboxes to `server`.
    pub fn new(server: Arc<DnsServer>) -> Self {
        EmbeddedDns {
            server,
            cleanups: std::sync::Mutex::default(),
        }
    }

    /// Waits for a removal from namespace `key` still under way, if any.
    async fn settle(&self, key: &str) {
        let pending = match self.cleanups.lock() {
            Ok(mut m) => m.remove(key),
            Err(_) => None,
        };
        if let Some(task) = pending {
            let _ = task.await;
        }
    }
}

#[async_trait]
impl SandboxResolver for EmbeddedDns {
    async fn attach(&self, sb: &Sandbox) -> Result<(), BoxError> {
        if self.server.is_registered(&sb.id) {
            return Ok(());
        }
        self.settle(&sb.key).await;
        let (udp, tcp) = open_resolver(PathBuf::from(&sb.key)).await?;
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
        // An adopted namespace outlives the sandbox: it keeps nothing of plumb's. Removing the
        // table costs the kernel ~10 ms (unhooking its chain waits for an RCU grace period),
        // so it runs after the answer; a new sandbox on that namespace waits for it.
        if sb.spec.netns.is_none() || !netns::is_netns(std::path::Path::new(&sb.key)) {
            return;
        }
        self.settle(&sb.key).await;
        let (key, name) = (sb.key.clone(), sb.spec.name.clone());
        let task = tokio::spawn(async move {
            let batch = plumb_linux::nfnl::remove_resolver_redirect();
            let ns = Some(PathBuf::from(&key));
            // The runtime may remove the namespace meanwhile: nothing left to clean then.
            if let Err(e) = netns::run_in(ns, move || batch.send()).await {
                if netns::is_netns(std::path::Path::new(&key)) {
                    tracing::warn!(sandbox = %name, error = %e, "could not remove the resolver's table from the adopted namespace");
                }
            }
        });
        if let Ok(mut m) = self.cleanups.lock() {
            m.retain(|_, t| !t.is_finished());
            m.insert(sb.key.clone(), task);
        }
    }
}
