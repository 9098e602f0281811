//! The bridge driver: a Linux bridge per network in the host namespace, a veth per endpoint
//! whose peer is created directly inside the sandbox, nftables sets for isolation, ICC and
//! masquerade.
//!
//! Leaving is quick on purpose: the sandbox end goes down and is renamed out of the way (its
//! `ethN` name is free at once), and the pair is deleted in the background, because deleting a
//! network device waits for an RCU grace period (tens of milliseconds). A crash before the
//! deletion leaves a veth that the start-up sweep removes.

pub(crate) mod options;

pub use options::BridgeOptions;

use async_trait::async_trait;
use plumb_core::driver::{Capabilities, InvalidInput, JoinInfo, NetworkDriver};
use plumb_core::model::{Endpoint, Network, Sandbox};
use plumb_core::ports::PortMapping;
use plumb_core::{BoxError, NetworkId};
use plumb_linux::namespaces::Namespaces;
use plumb_linux::netns;
use plumb_linux::nfnl::ElemOp;
use plumb_linux::nft::{self, NetworkRules};
use plumb_linux::nl::VethSpec;
use plumb_linux::reaper::Doomed;
use plumb_linux::sysctl::SysctlDir;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// Prefix of host-side veth names: `pv` + 12 hex digits of the endpoint id.
pub const VETH_PREFIX: &str = "pv";
/// Prefix of generated bridge names.
pub const BRIDGE_PREFIX: &str = "br-";
/// Prefix of the alias plumb gives the bridges it creates (`plumb:<network id>`): the mark
/// that tells them from bridges of Docker or the user, which plumb never deletes.
pub const OWNER_MARK: &str = "plumb:";
/// Prefix of the names bridges get while they wait for deletion in the background.
const GONE_PREFIX: &str = "plumbgone";

/// The alias marking the bridge of `net` as plumb's.
fn owner_mark(net: &Network) -> String {
    format!("{OWNER_MARK}{}", net.id)
}

/// True for a host-side veth name plumb generates: `pv` and 12 lowercase hex digits.
fn is_plumb_veth_name(name: &str) -> bool {
    name.strip_prefix(VETH_PREFIX).is_some_and(|h| {
        h.len() == 12
            && h.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// The `bridge` driver.
pub struct BridgeDriver {
    ns: Arc<Namespaces>,
    /// Bridge name and ifindex of every network created.
    bridges: Mutex<HashMap<NetworkId, (String, u32)>>,
    /// `/proc/sys/net/ipv6/conf` of the host namespace (absent without IPv6).
    ipv6_conf: Option<SysctlDir>,
    /// `/proc/sys/net/ipv4/conf` of the host namespace.
    ipv4_conf: Option<SysctlDir>,
    /// Container ports opened at endpoints' own addresses (routed mode), with how many
    /// published mappings lead to each.
    open: Mutex<HashMap<plumb_core::EndpointId, HashMap<nft::OpenPort, usize>>>,
}

/// A locally administered MAC for a network's bridge, derived from the network id so that it
/// stays the same across restarts. The 0e prefix keeps it apart from endpoint MACs (02:42:...).
fn bridge_mac(net: &Network) -> [u8; 6] {
    let id = net.id.as_str().as_bytes();
    let hex = |i: usize| -> u8 {
        let d = |c: u8| (c as char).to_digit(16).unwrap_or(0) as u8;
        id.get(2 * i..2 * i + 2)
            .map(|p| d(p[0]) << 4 | d(p[1]))
            .unwrap_or(0)
    };
    [0x0e, hex(0), hex(1), hex(2), hex(3), hex(4)]
}

/// The nft elements publishing `ports` to the endpoint's addresses.
fn port_elements(ep: &Endpoint, ports: &[PortMapping]) -> (nft::PortTarget, Vec<nft::PortElement>) {
    let to = nft::PortTarget {
        v4: match ep.ipv4.map(|a| a.addr()) {
            Some(IpAddr::V4(a)) => Some(a),
            _ => None,
        },
        v6: match ep.ipv6.map(|a| a.addr()) {
            Some(IpAddr::V6(a)) => Some(a),
            _ => None,
        },
    };
    let elems = ports
        .iter()
        .map(|m| (m.host_ip, m.proto.as_str(), m.host_port, m.container_port))
        .collect();
    (to, elems)
}

/// The host-side veth name of an endpoint.
pub fn veth_name(ep: &Endpoint) -> String {
    format!("{VETH_PREFIX}{}", ep.id.short())
}

impl BridgeDriver {
    /// A bridge driver acting in the namespaces of `ns`; call from the host namespace.
    pub fn new(ns: Arc<Namespaces>) -> Self {
        BridgeDriver {
            ns,
            bridges: Mutex::new(HashMap::new()),
            ipv6_conf: SysctlDir::open("net.ipv6.conf").ok(),
            ipv4_conf: SysctlDir::open("net.ipv4.conf").ok(),
            open: Mutex::new(HashMap::new()),
        }
    }

    fn bridges(&self) -> std::sync::MutexGuard<'_, HashMap<NetworkId, (String, u32)>> {
        self.bridges.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The firewall elements of a network: its bridge, subnets, and the bridges to isolate
    /// it from (every other network's).
    fn rules(&self, net: &Network, o: &BridgeOptions) -> NetworkRules {
        let peers = self
            .bridges()
            .iter()
            .filter(|(id, (name, _))| **id != net.id && *name != o.name)
            .map(|(_, (name, _))| name.clone())
            .collect();
        NetworkRules {
            bridge: o.name.clone(),
            subnets: net.pools.iter().map(|p| p.subnet).collect(),
            internal: net.spec.internal,
            peers,
            masquerade: o.masquerade,
            gateway4: o.gateway4,
            gateway6: o.gateway6,
        }
    }

    /// Counts `ports` of `ep` in (`add`) or out of the container ports opened at its own
    /// addresses (the families of `net` in routed mode); returns those whose count went from
    /// 0 to 1 (adding) or from 1 to 0 (removing). Two mappings to one container port open it
    /// once, and it closes with the last.
    fn opened(
        &self,
        net: &Network,
        ep: &Endpoint,
        ports: &[PortMapping],
        add: bool,
    ) -> Result<Vec<nft::OpenPort>, BoxError> {
        let o = BridgeOptions::of(net)?;
        let addrs: Vec<IpAddr> = [ep.ipv4, ep.ipv6]
            .into_iter()
            .flatten()
            .map(|a| a.addr())
            .filter(|a| {
                let mode = if a.is_ipv6() { o.gateway6 } else { o.gateway4 };
                mode == nft::GatewayMode::Routed
            })
            .collect();
        let mut changed = Vec::new();
        if addrs.is_empty() {
            return Ok(changed);
        }
        let mut all = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let counts = all.entry(ep.id.clone()).or_default();
        for m in ports {
            for &a in &addrs {
                let family_ok = m.host_ip.is_none_or(|h| h.is_ipv6() == a.is_ipv6());
                if !family_ok {
                    continue;
                }
                let key = (a, m.proto.as_str(), m.container_port);
                let n = counts.entry(key).or_default();
                if add {
                    *n += 1;
                    if *n == 1 {
                        changed.push(key);
                    }
                } else if *n > 0 {
                    *n -= 1;
                    if *n == 0 {
                        changed.push(key);
                    }
                }
            }
        }
        counts.retain(|_, n| *n > 0);
        if counts.is_empty() {
            all.remove(&ep.id);
        }
        Ok(changed)
    }

    async fn bridge_index(&self, net: &Network) -> Result<u32, BoxError> {
        if let Some((_, i)) = self.bridges().get(&net.id) {
            return Ok(*i);
        }
        let o = BridgeOptions::of(net)?;
        let l =
            self.ns.host().link(&o.name).await?.ok_or_else(|| {
                format!("bridge {} of network {} is missing", o.name, net.spec.name)
            })?;
        self.bridges().insert(net.id.clone(), (o.name, l.index));
        Ok(l.index)
    }

    async fn plumb_veth(
        &self,
        net: &Network,
        ep: &Endpoint,
        sb: &Sandbox,
        ifname: &str,
    ) -> Result<(), BoxError> {
        let mut ph = plumb_core::timing::Phases::default();
        ph.start();
        let o = BridgeOptions::of(net)?;
        let master = self.bridge_index(net).await?;
        ph.mark("bridge_index");
        let host = self.ns.host();
        let host_name = veth_name(ep);
        let peer_ns = netns::open(Path::new(&sb.key))?;
        let spec = VethSpec {
            host_name: &host_name,
            peer_name: ifname,
            peer_ns: &peer_ns,
            peer_mac: ep.mac.map(|m| m.0),
            mtu: o.mtu,
            master: Some(master),
            host_up: false,
        };
        let snl = self.ns.get(Path::new(&sb.key)).await?;
        ph.mark("open_ns");
        match host.add_veth(&spec).await {
            Ok(()) => {}
            Err(e) if e.is_exists() => {
                // Restoring after a restart: keep a complete pair, replace a broken one.
                let peer_ok = snl
                    .link(ifname)
                    .await?
                    .is_some_and(|l| l.mac == ep.mac.map(|m| m.0));
                if !peer_ok {
                    host.del_link_by_name(&host_name).await?;
                    host.add_veth(&spec).await?;
                }
            }
            Err(e) => return Err(e.into()),
        }
        ph.mark("add_veth");
        let result = async {
            // A bridge port needs no IPv6 of its own; without this every port adds link-local
            // and multicast routes to the host's IPv6 table, and each later link change walks
            // that table: connect and disconnect cost would grow with the number of endpoints.
            if let Some(conf) = &self.ipv6_conf {
                if let Err(e) = conf.write(&format!("{host_name}/disable_ipv6"), "1") {
                    tracing::debug!(error = %e, "IPv6 not disabled on {host_name}");
                }
            }
            ph.mark("disable_ipv6");
            host.set_up_by_name(&host_name).await?;
            ph.mark("host_up");
            if !o.icc {
                let port = host
                    .link(&host_name)
                    .await?
                    .ok_or_else(|| format!("veth {host_name} missing after creation"))?;
                host.set_port_isolated(port.index, true).await?;
            }
            let idx = snl
                .link(ifname)
                .await?
                .ok_or_else(|| format!("interface {ifname} missing in sandbox after creation"))?
                .index;
            ph.mark("peer_index");
            for a in [ep.ipv4, ep.ipv6].into_iter().flatten() {
                snl.add_addr(idx, a).await?;
            }
            ph.mark("addr");
            snl.set_up(idx, true).await?;
            ph.mark("peer_up");
            Ok::<(), BoxError>(())
        }
        .await;
        if result.is_err() {
            let _ = host.del_link_by_name(&host_name).await;
        }
        ph.finish("bridge_join");
        result
    }
}

#[async_trait]
impl NetworkDriver for BridgeDriver {
    fn name(&self) -> &str {
        "bridge"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            needs_addresses: true,
            singleton: false,
            host_mode: false,
            global: false,
            keeps_state: false,
            picks_mac: false,
        }
    }

    fn check_options(&self, network: &Network) -> Result<BTreeMap<String, String>, BoxError> {
        let o = BridgeOptions::of(network)?;
        let clash = self
            .bridges()
            .iter()
            .any(|(id, (name, _))| *name == o.name && *id != network.id);
        if clash {
            return Err(format!(
                "option {}: bridge {} is used by another network",
                options::NAME,
                o.name
            )
            .into());
        }
        let mut out = BTreeMap::new();
        out.insert(options::NAME.to_owned(), o.name);
        Ok(out)
    }

    async fn probe(&self, net: &Network) -> Result<(), BoxError> {
        let o =
            BridgeOptions::of(net).map_err(|e| InvalidInput::boxed("Options", e.to_string()))?;
        if let Some(l) = self.ns.host().link(&o.name).await? {
            if l.kind.as_deref() != Some("bridge") {
                return Err(InvalidInput::boxed(
                    format!("Options[{}]", options::NAME),
                    format!(
                        "{} is an existing {} link, not a bridge: name a bridge, or a name no link has (plumb then creates the bridge)",
                        o.name,
                        l.kind.as_deref().unwrap_or("loopback or physical")
                    ),
                ));
            }
        }
        Ok(())
    }

    async fn create_network(&self, net: &Network) -> Result<(), BoxError> {
        let o = BridgeOptions::of(net)?;
        let host = self.ns.host();
        let created = match host.add_bridge(&o.name, bridge_mac(net), o.mtu).await {
            Ok(()) => true,
            Err(e) if e.is_exists() => false,
            Err(e) => return Err(e.into()),
        };
        let result = async {
            let l = host
                .link(&o.name)
                .await?
                .ok_or_else(|| format!("bridge {} vanished after creation", o.name))?;
            if l.kind.as_deref() != Some("bridge") {
                return Err(InvalidInput::boxed(
                    format!("Options[{}]", options::NAME),
                    format!("{} exists and is not a bridge", o.name),
                ));
            }
            // Mark what plumb made; a bridge that existed before (adopted) stays unmarked and
            // is never deleted. A generated name is plumb's even when a crash came between
            // creation and marking.
            let generated = o.name == format!("{BRIDGE_PREFIX}{}", net.id.short());
            if (created || generated) && l.alias.as_deref() != Some(owner_mark(net).as_str()) {
                host.set_alias(l.index, &owner_mark(net)).await?;
            }
            for p in &net.pools {
                if let Some(gw) = p.gateway {
                    let addr = ipnet::IpNet::new(gw, p.subnet.prefix_len())?;
                    host.add_addr(l.index, addr).await?;
                }
            }
            if !l.up {
                host.set_up(l.index, true).await?;
            }
            // Ports published on 127.0.0.1 reach containers with a loopback source address,
            // which the kernel routes out of this bridge only with route_localnet.
            if let Some(conf) = &self.ipv4_conf {
                conf.write(&format!("{}/route_localnet", o.name), "1")?;
            }
            let r = self.rules(net, &o);
            tokio::task::spawn_blocking(move || nft::add_network(&r)).await??;
            self.bridges()
                .insert(net.id.clone(), (o.name.clone(), l.index));
            Ok::<(), BoxError>(())
        }
        .await;
        if result.is_err() && created {
            let _ = host.del_link_by_name(&o.name).await;
        }
        result
    }

    async fn delete_network(&self, net: &Network) -> Result<(), BoxError> {
        let o = BridgeOptions::of(net)?;
        let r = self.rules(net, &o);
        tokio::task::spawn_blocking(move || nft::remove_network(&r)).await??;
        self.bridges().remove(&net.id);
        let host = self.ns.host();
        let Some(l) = host.link(&o.name).await? else {
            return Ok(());
        };
        if l.alias.as_deref() != Some(owner_mark(net).as_str()) {
            // Adopted: take away only what plumb added.
            for p in &net.pools {
                if let Some(gw) = p.gateway {
                    host.del_addr(l.index, ipnet::IpNet::new(gw, p.subnet.prefix_len())?)
                        .await?;
                }
            }
            if let Some(conf) = &self.ipv4_conf {
                conf.write(&format!("{}/route_localnet", o.name), "0")?;
            }
            return Ok(());
        }
        // Deleting a device waits for an RCU grace period (tens of ms): take the bridge down
        // (its routes go), move its name out of the way so that a network of the same name
        // can be made at once, and delete it in the background. A crash before that leaves
        // a marked bridge that the start-up sweep removes.
        host.set_up(l.index, false).await?;
        host.rename(
            l.index,
            &format!("{GONE_PREFIX}{:06x}", rand::random::<u32>() & 0xff_ffff),
        )
        .await?;
        self.ns.reaper().reap(Doomed::Index(l.index));
        Ok(())
    }

    async fn join(
        &self,
        net: &Network,
        ep: &Endpoint,
        sb: &Sandbox,
        ifname: &str,
    ) -> Result<JoinInfo, BoxError> {
        self.plumb_veth(net, ep, sb, ifname).await?;
        Ok(JoinInfo::pool_gateways(net))
    }

    async fn leave(&self, _net: &Network, ep: &Endpoint, sb: &Sandbox) -> Result<(), BoxError> {
        if let Some(ifname) = &ep.ifname {
            if netns::is_netns(Path::new(&sb.key)) {
                let snl = self.ns.get(Path::new(&sb.key)).await?;
                if let Some(l) = snl.link(ifname).await? {
                    snl.set_up(l.index, false).await?;
                    let tomb = format!("gone{:08x}", rand::random::<u32>());
                    snl.rename(l.index, &tomb).await?;
                }
            }
        }
        self.ns.reaper().reap(Doomed::Name(veth_name(ep)));
        Ok(())
    }

    async fn program_external(
        &self,
        net: &Network,
        ep: &Endpoint,
        ports: &[PortMapping],
    ) -> Result<(), BoxError> {
        if ports.is_empty() {
            return Ok(());
        }
        let (to, elems) = port_elements(ep, ports);
        let open = self.opened(net, ep, ports, true)?;
        tokio::task::spawn_blocking(move || {
            nft::add_ports(to, &elems)?;
            nft::open_ports(ElemOp::Add, &open)
        })
        .await??;
        Ok(())
    }

    async fn revoke_external(
        &self,
        net: &Network,
        ep: &Endpoint,
        ports: &[PortMapping],
    ) -> Result<(), BoxError> {
        if ports.is_empty() {
            return Ok(());
        }
        let (to, elems) = port_elements(ep, ports);
        let closed = self.opened(net, ep, ports, false)?;
        tokio::task::spawn_blocking(move || {
            nft::remove_ports(to, &elems)?;
            nft::open_ports(ElemOp::Destroy, &closed)
        })
        .await??;
        Ok(())
    }

    async fn sweep(&self, networks: &[&Network], endpoints: &[&Endpoint]) -> Result<(), BoxError> {
        let bridges: HashSet<String> = networks
            .iter()
            .filter(|n| n.spec.driver == "bridge")
            .filter_map(|n| BridgeOptions::of(n).ok().map(|o| o.name))
            .collect();
        let marks: HashSet<String> = networks.iter().map(|n| owner_mark(n)).collect();
        let veths: HashSet<String> = endpoints.iter().map(|e| veth_name(e)).collect();
        let host = self.ns.host();
        let links = host.links().await?;
        let addressed: HashSet<u32> = host.addresses().await?.iter().map(|(i, _)| *i).collect();
        // Only what carries plumb's mark: a bridge whose alias says plumb made it for a network
        // the store no longer has, and a veth with plumb's name pattern, no address, and (if
        // enslaved) a plumb bridge as master. Docker's br-* bridges, the user's links and
        // adopted bridges are never touched.
        let ours: HashSet<u32> = links
            .iter()
            .filter(|l| {
                l.alias
                    .as_deref()
                    .is_some_and(|a| a.starts_with(OWNER_MARK))
            })
            .map(|l| l.index)
            .collect();
        for l in &links {
            let stale_veth = is_plumb_veth_name(&l.name)
                && l.kind.as_deref() == Some("veth")
                && !addressed.contains(&l.index)
                && l.master.is_none_or(|m| ours.contains(&m))
                && !veths.contains(&l.name);
            let stale_bridge = l.kind.as_deref() == Some("bridge")
                && ours.contains(&l.index)
                && !l.alias.as_ref().is_some_and(|a| marks.contains(a))
                && !bridges.contains(&l.name);
            if stale_veth || stale_bridge {
                tracing::info!(link = %l.name, "removing leftover link");
                host.del_link(l.index).await?;
            }
        }
        Ok(())
    }
}
