//! The overlay driver: one network across hosts, carried in VXLAN over the hosts' underlay.
//!
//! On each host that has an endpoint on an overlay network, the network gets a namespace of
//! its own (`<run-dir>/overlay/<network id 12>`) holding a bridge `br0` and the network's
//! VXLAN device (UDP 4789, learning off, ARP answered from its neighbour table). The VXLAN
//! device is created from the host namespace, so its UDP socket uses the host's underlay,
//! and then lives in the network's namespace. Sandboxes attach by a veth whose host end is a
//! port of `br0`. For every endpoint on another host the controller reports (from the
//! cluster store's watch) the driver programs a static FDB entry (its MAC is behind that
//! host's tunnel end) and a neighbour entry (its address has that MAC): no flooding, no
//! multicast, no learning. A host with no endpoint on a network keeps no namespace for it
//! and only remembers its peers in memory.

use async_trait::async_trait;
use plumb_core::controller::VNI_OPTION;
use plumb_core::driver::{Capabilities, InvalidInput, JoinInfo, NetworkDriver};
use plumb_core::model::{Endpoint, Network, Sandbox};
use plumb_core::{BoxError, EndpointId, NetworkId};
use plumb_linux::namespaces::Namespaces;
use plumb_linux::netns;
use plumb_linux::nl::{Nl, VethSpec};
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The MTU option, as Docker names it.
const MTU_OPTION: &str = "com.docker.network.driver.mtu";
/// VXLAN adds 50 bytes (outer Ethernet, IPv4, UDP, VXLAN headers) to every frame.
const VXLAN_OVERHEAD: u32 = 50;
/// The lowest VNI plumb picks (lower ones are left to hand-made tunnels).
const VNI_MIN: u32 = 4096;
/// The highest VNI (24 bits).
const VNI_MAX: u32 = (1 << 24) - 1;
/// Bridge of a network's namespace.
const BRIDGE: &str = "br0";
/// VXLAN device of a network's namespace.
const VXLAN: &str = "vxlan0";

/// A remote endpoint as the data path needs it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Peer {
    mac: [u8; 6],
    addrs: Vec<IpAddr>,
    vtep: IpAddr,
}

/// The kernel side of a network on this host, once it has a local endpoint.
struct Plumbed {
    nl: Nl,
    bridge: u32,
    vxlan: u32,
}

#[derive(Default)]
struct NetState {
    peers: HashMap<EndpointId, Peer>,
    local: HashSet<EndpointId>,
}

/// The `overlay` driver.
pub struct OverlayDriver {
    ns: Arc<Namespaces>,
    dir: PathBuf,
    /// This host's underlay address (tunnel source; `--cluster-advertise`).
    local: IpAddr,
    /// MTU of the underlay interface.
    underlay_mtu: u32,
    nets: Mutex<HashMap<NetworkId, NetState>>,
    /// Serialises bringing a network's namespace up or down.
    setup: tokio::sync::Mutex<HashMap<NetworkId, Arc<Plumbed>>>,
}

/// The VNI of a network: the user's, or one derived from its id (stable, and claimed in
/// the cluster store so that two networks never share one).
fn vni_of(net: &Network) -> Result<u32, BoxError> {
    if let Some(v) = net.spec.options.get(VNI_OPTION) {
        let first = v.split(',').next().unwrap_or("");
        return match first.trim().parse::<u32>() {
            Ok(n) if (1..=VNI_MAX).contains(&n) => Ok(n),
            _ => Err(InvalidInput::boxed(
                format!("Options[{VNI_OPTION}]"),
                format!("{v:?} is no VXLAN id: give a number from 1 to {VNI_MAX}"),
            )),
        };
    }
    let h = net
        .id
        .as_str()
        .bytes()
        .take(12)
        .fold(0u64, |a, b| a.wrapping_mul(31).wrapping_add(b as u64));
    Ok(VNI_MIN + (h % u64::from(VNI_MAX - VNI_MIN + 1)) as u32)
}

fn host_veth(ep: &Endpoint) -> String {
    format!("ov{}", ep.id.short())
}

fn peer_of(ep: &Endpoint) -> Option<Peer> {
    Some(Peer {
        mac: ep.mac?.0,
        addrs: [ep.ipv4, ep.ipv6]
            .into_iter()
            .flatten()
            .map(|a| a.addr())
            .collect(),
        vtep: ep.node.as_ref()?.addr,
    })
}

impl OverlayDriver {
    /// An overlay driver whose tunnels start at `local` on an underlay of `underlay_mtu`;
    /// network namespaces go under `<run_dir>/overlay`.
    pub async fn new(
        ns: Arc<Namespaces>,
        run_dir: &Path,
        local: IpAddr,
        underlay_mtu: u32,
    ) -> Result<Self, BoxError> {
        let dir = run_dir.join("overlay");
        netns::prepare_dir(dir.clone()).await?;
        Ok(OverlayDriver {
            ns,
            dir,
            local,
            underlay_mtu,
            nets: Mutex::new(HashMap::new()),
            setup: tokio::sync::Mutex::new(HashMap::new()),
        })
    }

    fn nets(&self) -> std::sync::MutexGuard<'_, HashMap<NetworkId, NetState>> {
        self.nets.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn ns_path(&self, net: &NetworkId) -> PathBuf {
        self.dir.join(net.short())
    }

    fn mtu(&self, net: &Network) -> Result<u32, BoxError> {
        match net.spec.options.get(MTU_OPTION) {
            Some(v) => match v.parse::<u32>() {
                Ok(m) if (68..=65535).contains(&m) => Ok(m),
                _ => Err(InvalidInput::boxed(
                    format!("Options[{MTU_OPTION}]"),
                    format!("{v:?} is no MTU: give a number from 68 to 65535"),
                )),
            },
            None => Ok(self.underlay_mtu.saturating_sub(VXLAN_OVERHEAD).max(68)),
        }
    }

    /// The network's namespace with its bridge and VXLAN device, made on first use, with
    /// every known peer programmed.
    async fn plumbed(&self, net: &Network) -> Result<Arc<Plumbed>, BoxError> {
        let mut setup = self.setup.lock().await;
        if let Some(p) = setup.get(&net.id) {
            return Ok(p.clone());
        }
        let path = self.ns_path(&net.id);
        netns::create(path.clone(), false).await?;
        let made = async {
            let nl = self.ns.get(&path).await?;
            let mtu = self.mtu(net)?;
            let bridge = match nl.link(BRIDGE).await? {
                Some(l) => l.index,
                None => {
                    let mut mac = [0x0e, 0, 0, 0, 0, 0];
                    for (i, b) in net.id.as_str().bytes().take(5).enumerate() {
                        mac[i + 1] = b;
                    }
                    nl.add_bridge(BRIDGE, mac, Some(mtu)).await?;
                    nl.link(BRIDGE)
                        .await?
                        .ok_or("bridge missing after creation")?
                        .index
                }
            };
            let vxlan = match nl.link(VXLAN).await? {
                Some(l) => l.index,
                None => {
                    let into = netns::open(&path)?;
                    self.ns
                        .host()
                        .add_vxlan(VXLAN, vni_of(net)?, self.local, mtu, &into)
                        .await?;
                    nl.link(VXLAN)
                        .await?
                        .ok_or("vxlan device missing after creation")?
                        .index
                }
            };
            nl.set_master(vxlan, bridge).await?;
            nl.set_up(vxlan, true).await?;
            let p = Arc::new(Plumbed { nl, bridge, vxlan });
            let peers: Vec<Peer> = self
                .nets()
                .get(&net.id)
                .map(|s| s.peers.values().cloned().collect())
                .unwrap_or_default();
            for peer in &peers {
                program(&p, peer).await?;
            }
            Ok::<_, BoxError>(p)
        }
        .await;
        match made {
            Ok(p) => {
                setup.insert(net.id.clone(), p.clone());
                Ok(p)
            }
            Err(e) => {
                self.ns.forget(&path);
                let _ = netns::remove(path).await;
                Err(e)
            }
        }
    }

    /// Removes the network's namespace (its devices and entries go with it). The VXLAN
    /// device is deleted first: the kernel frees a namespace's devices later, in the
    /// background, and until then its VNI stays taken in the host namespace, so that a join
    /// right after (a connect retried after losing an address race) could not make it again.
    async fn unplumb(&self, net: &NetworkId) -> Result<(), BoxError> {
        let mut setup = self.setup.lock().await;
        if let Some(p) = setup.remove(net) {
            p.nl.del_link(p.vxlan).await?;
        }
        let path = self.ns_path(net);
        self.ns.forget(&path);
        netns::remove(path).await?;
        Ok(())
    }
}

/// Makes `peer` reachable through the network's tunnel.
async fn program(p: &Plumbed, peer: &Peer) -> Result<(), BoxError> {
    p.nl.fdb_replace(p.vxlan, peer.mac, peer.vtep).await?;
    for a in &peer.addrs {
        p.nl.neigh_replace(p.vxlan, *a, peer.mac).await?;
    }
    Ok(())
}

/// Withdraws `peer`'s entries.
async fn withdraw(p: &Plumbed, peer: &Peer) -> Result<(), BoxError> {
    for a in &peer.addrs {
        p.nl.neigh_del(p.vxlan, *a).await?;
    }
    p.nl.fdb_del(p.vxlan, peer.mac, peer.vtep).await?;
    Ok(())
}

#[async_trait]
impl NetworkDriver for OverlayDriver {
    fn name(&self) -> &str {
        "overlay"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            needs_addresses: true,
            singleton: false,
            host_mode: false,
            global: true,
            keeps_state: false,
            picks_mac: false,
        }
    }

    fn check_options(
        &self,
        network: &Network,
    ) -> Result<std::collections::BTreeMap<String, String>, BoxError> {
        let vni = vni_of(network)?;
        self.mtu(network)?;
        let mut out = std::collections::BTreeMap::new();
        out.insert(VNI_OPTION.to_owned(), vni.to_string());
        Ok(out)
    }

    async fn create_network(&self, net: &Network) -> Result<(), BoxError> {
        self.nets().entry(net.id.clone()).or_default();
        Ok(())
    }

    async fn delete_network(&self, net: &Network) -> Result<(), BoxError> {
        self.nets().remove(&net.id);
        self.unplumb(&net.id).await
    }

    async fn join(
        &self,
        net: &Network,
        ep: &Endpoint,
        sb: &Sandbox,
        ifname: &str,
    ) -> Result<JoinInfo, BoxError> {
        let p = self.plumbed(net).await?;
        let host_name = host_veth(ep);
        let peer_ns = netns::open(Path::new(&sb.key))?;
        let mtu = self.mtu(net)?;
        let spec = VethSpec {
            host_name: &host_name,
            peer_name: ifname,
            peer_ns: &peer_ns,
            peer_mac: ep.mac.map(|m| m.0),
            mtu: Some(mtu),
            master: Some(p.bridge),
            host_up: true,
        };
        match p.nl.add_veth(&spec).await {
            Ok(()) => {}
            Err(e) if e.is_exists() => {}
            Err(e) => return Err(e.into()),
        }
        let result = async {
            let snl = self.ns.get(Path::new(&sb.key)).await?;
            let addrs: Vec<_> = [ep.ipv4, ep.ipv6].into_iter().flatten().collect();
            snl.address_and_up(ifname, &addrs).await?;
            Ok::<(), BoxError>(())
        }
        .await;
        if let Err(e) = result {
            let _ = p.nl.del_link_by_name(&host_name).await;
            return Err(e);
        }
        self.nets()
            .entry(net.id.clone())
            .or_default()
            .local
            .insert(ep.id.clone());
        // An overlay network offers no default route: egress goes through the sandbox's
        // other networks.
        Ok(JoinInfo::default())
    }

    async fn leave(&self, net: &Network, ep: &Endpoint, _sb: &Sandbox) -> Result<(), BoxError> {
        let plumbed = self.setup.lock().await.get(&net.id).cloned();
        if let Some(p) = plumbed {
            p.nl.del_link_by_name(&host_veth(ep)).await?;
        }
        let last = {
            let mut nets = self.nets();
            let s = nets.entry(net.id.clone()).or_default();
            s.local.remove(&ep.id);
            s.local.is_empty()
        };
        if last {
            // No endpoint here any more: the host keeps nothing for the network.
            self.unplumb(&net.id).await?;
        }
        Ok(())
    }

    async fn peer_add(&self, net: &Network, ep: &Endpoint) -> Result<(), BoxError> {
        let Some(peer) = peer_of(ep) else {
            return Ok(());
        };
        let old = self
            .nets()
            .entry(net.id.clone())
            .or_default()
            .peers
            .insert(ep.id.clone(), peer.clone());
        let plumbed = self.setup.lock().await.get(&net.id).cloned();
        if let Some(p) = plumbed {
            if let Some(old) = old.filter(|o| *o != peer) {
                withdraw(&p, &old).await?;
            }
            program(&p, &peer).await?;
        }
        Ok(())
    }

    async fn peer_remove(&self, net: &Network, ep: &Endpoint) -> Result<(), BoxError> {
        let old = self
            .nets()
            .get_mut(&net.id)
            .and_then(|s| s.peers.remove(&ep.id));
        let plumbed = self.setup.lock().await.get(&net.id).cloned();
        if let (Some(p), Some(old)) = (plumbed, old) {
            withdraw(&p, &old).await?;
        }
        Ok(())
    }

    async fn sweep(&self, networks: &[&Network], endpoints: &[&Endpoint]) -> Result<(), BoxError> {
        // Namespaces of networks that no longer exist, or that have no local endpoint.
        let with_local: HashSet<String> = endpoints
            .iter()
            .filter(|e| {
                networks
                    .iter()
                    .any(|n| n.id == e.network && n.spec.driver == "overlay")
            })
            .map(|e| e.network.short().to_owned())
            .collect();
        let Ok(rd) = std::fs::read_dir(&self.dir) else {
            return Ok(());
        };
        for entry in rd.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if with_local.contains(&name) {
                continue;
            }
            tracing::info!(network = %name, "removing leftover overlay namespace");
            let path = entry.path();
            self.ns.forget(&path);
            netns::remove(path).await?;
        }
        Ok(())
    }
}
