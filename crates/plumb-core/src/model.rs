//! The CNM objects as they are stored: networks, endpoints, sandboxes.

use crate::ids::{EndpointId, NetworkId, SandboxId};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

/// Where a network's state lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// This host only (the embedded store).
    #[default]
    Local,
    /// Shared by all hosts (a distributed store).
    Global,
}

impl Scope {
    /// The name Docker uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Local => "local",
            Scope::Global => "global",
        }
    }
}

/// One IPAM pool as the user asked for it (all fields optional).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct PoolRequest {
    /// The subnet; chosen from the default pools when absent.
    pub subnet: Option<IpNet>,
    /// The part of the subnet dynamic addresses come from.
    pub ip_range: Option<IpNet>,
    /// The gateway; the first address of the subnet when absent.
    pub gateway: Option<IpAddr>,
    /// Named addresses kept out of allocation.
    pub aux_addresses: BTreeMap<String, IpAddr>,
}

/// A network as the user asked for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct NetworkSpec {
    /// Unique name.
    pub name: String,
    /// Driver name: bridge, host, null.
    pub driver: String,
    /// Local or global.
    pub scope: Scope,
    /// No external connectivity.
    pub internal: bool,
    /// Sandboxes may be attached by hand (kept for Docker compatibility).
    pub attachable: bool,
    /// Ingress network (kept for Docker compatibility).
    pub ingress: bool,
    /// Allocate IPv4 addresses.
    pub enable_ipv4: bool,
    /// Allocate IPv6 addresses.
    pub enable_ipv6: bool,
    /// IPAM driver name ("default").
    pub ipam_driver: String,
    /// IPAM pools asked for (v4 and v6 mixed).
    pub pools: Vec<PoolRequest>,
    /// IPAM driver options (None when the user gave none, as Docker tells apart).
    pub ipam_options: Option<BTreeMap<String, String>>,
    /// Driver options (`-o k=v`).
    pub options: BTreeMap<String, String>,
    /// User labels.
    pub labels: BTreeMap<String, String>,
}

/// A pool as allocated: the subnet and the addresses the network itself holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pool {
    /// The subnet.
    pub subnet: IpNet,
    /// Where dynamic addresses come from (the subnet when not restricted).
    pub ip_range: Option<IpNet>,
    /// The gateway address, if the network has one in this pool.
    pub gateway: Option<IpAddr>,
    /// Auxiliary addresses.
    pub aux_addresses: BTreeMap<String, IpAddr>,
    /// The id the network's IPAM driver gave the pool.
    #[serde(default)]
    pub pool_id: String,
}

/// A network as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Network {
    /// Identifier.
    pub id: NetworkId,
    /// What was asked for.
    pub spec: NetworkSpec,
    /// Pools allocated for it (in the order v4 then v6).
    pub pools: Vec<Pool>,
    /// Creation time, nanoseconds since the Unix epoch (0 for predefined networks).
    pub created_unix_nanos: u128,
    /// True for bridge, host and none.
    pub predefined: bool,
    /// Options the driver computed (bridge name, ...), shown in inspect.
    pub driver_options: BTreeMap<String, String>,
}

impl Network {
    /// The first IPv4 pool, if any.
    pub fn pool_v4(&self) -> Option<&Pool> {
        self.pools.iter().find(|p| matches!(p.subnet, IpNet::V4(_)))
    }

    /// The first IPv6 pool, if any.
    pub fn pool_v6(&self) -> Option<&Pool> {
        self.pools.iter().find(|p| matches!(p.subnet, IpNet::V6(_)))
    }

    /// The option value, from the user's options first, then the driver's.
    pub fn option(&self, key: &str) -> Option<&str> {
        self.spec
            .options
            .get(key)
            .or_else(|| self.driver_options.get(key))
            .map(String::as_str)
    }
}

/// An endpoint as the caller asks for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct EndpointSpec {
    /// Name, unique in the network (the sandbox name when empty on connect).
    pub name: String,
    /// Static IPv4 address.
    pub ipv4: Option<IpAddr>,
    /// Static IPv6 address.
    pub ipv6: Option<IpAddr>,
    /// Static MAC address.
    pub mac: Option<MacAddr>,
    /// DNS aliases.
    pub aliases: Vec<String>,
    /// Gateway priority: the joined endpoint with the highest gives the default route.
    pub gw_priority: i32,
    /// Driver options.
    pub driver_opts: BTreeMap<String, String>,
    /// Ports the sandbox publishes while this endpoint is joined (through its gateway
    /// endpoint, like the sandbox's own ports).
    pub ports: Vec<crate::ports::PortMapping>,
}

/// An address with its prefix length, as configured on an interface.
pub type IfAddr = IpNet;

/// An endpoint as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    /// Identifier.
    pub id: EndpointId,
    /// Name (unique in its network).
    pub name: String,
    /// The network it belongs to.
    pub network: NetworkId,
    /// MAC address of its interface.
    pub mac: Option<MacAddr>,
    /// IPv4 address and prefix.
    pub ipv4: Option<IfAddr>,
    /// IPv6 address and prefix.
    pub ipv6: Option<IfAddr>,
    /// DNS aliases.
    pub aliases: Vec<String>,
    /// Gateway priority.
    pub gw_priority: i32,
    /// Driver options.
    pub driver_opts: BTreeMap<String, String>,
    /// The sandbox it is joined to.
    pub sandbox: Option<SandboxId>,
    /// Interface name inside the sandbox while joined (eth0, eth1, ...).
    pub ifname: Option<String>,
    /// Ports published while joined (see [`EndpointSpec::ports`]).
    #[serde(default)]
    pub ports: Vec<crate::ports::PortMapping>,
    /// IPv4 gateway the driver offered at join (runtime only: a restart joins again).
    #[serde(skip)]
    pub gateway_v4: Option<Ipv4Addr>,
    /// IPv6 gateway the driver offered at join (runtime only).
    #[serde(skip)]
    pub gateway_v6: Option<std::net::Ipv6Addr>,
    /// The host the endpoint's sandbox is on, for endpoints of global networks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<NodeRef>,
}

/// A host of a cluster: its name and its underlay address (where its VXLAN tunnels end).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NodeRef {
    /// The node's name (unique in the cluster; the hostname unless given).
    pub name: String,
    /// The address other hosts reach it at (`--cluster-advertise`).
    pub addr: IpAddr,
}

/// A sandbox as the caller asks for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct SandboxSpec {
    /// Unique name.
    pub name: String,
    /// Hostname (the first 12 digits of the id when empty).
    pub hostname: String,
    /// Domain name: the hosts file names the sandbox `hostname.domainname` too.
    #[serde(default)]
    pub domainname: String,
    /// Share the host's network stack (`--network host`).
    pub host_mode: bool,
    /// Nameservers for resolv.conf (the host's when empty).
    pub dns: Vec<IpAddr>,
    /// Search domains for resolv.conf (the host's when empty).
    pub dns_search: Vec<String>,
    /// resolv.conf options.
    pub dns_options: Vec<String>,
    /// Extra hosts entries (name, address).
    pub extra_hosts: Vec<(String, IpAddr)>,
    /// Published ports, served by the endpoint that gives the default route.
    #[serde(default)]
    pub ports: Vec<crate::ports::PortMapping>,
    /// The process whose life the sandbox follows (`AutoRemove`): when it is gone, the
    /// sandbox is removed, also after a `kill -9` of the process.
    #[serde(default)]
    pub owner: Option<Owner>,
    /// A network namespace made by someone else (a runtime), given by path: plumb plumbs it
    /// and never deletes it.
    #[serde(default)]
    pub netns: Option<String>,
    /// The runtime binds the published host ports itself (Podman's conmon does): plumb
    /// forwards them and keeps them unique among its sandboxes but holds no host socket.
    #[serde(default)]
    pub runtime_holds_ports: bool,
}

/// A process, told apart from a later one with the same pid by when it started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    /// Process id, as the daemon's PID namespace sees it.
    pub pid: u32,
    /// When it started (clock ticks since boot, as the OS reports it).
    pub start: u64,
}

/// A sandbox as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sandbox {
    /// Identifier.
    pub id: SandboxId,
    /// What was asked for.
    pub spec: SandboxSpec,
    /// Path of the network namespace file the runtime enters.
    pub key: String,
    /// Directory holding its resolv.conf, hosts and hostname files.
    pub dir: String,
    /// Creation time, nanoseconds since the Unix epoch.
    pub created_unix_nanos: u128,
}

impl Sandbox {
    /// The names its own addresses have in its hosts file: `hostname.domainname` (with a
    /// domain name), then `hostname`.
    pub fn host_names(&self) -> Vec<String> {
        let host = self.hostname().to_owned();
        if self.spec.domainname.is_empty() {
            vec![host]
        } else {
            vec![format!("{host}.{}", self.spec.domainname), host]
        }
    }

    /// The hostname the sandbox uses.
    pub fn hostname(&self) -> &str {
        if self.spec.hostname.is_empty() {
            self.id.short()
        } else {
            &self.spec.hostname
        }
    }
}

/// A 48-bit Ethernet address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// Docker's MAC for an IPv4 address: 02:42 followed by the four address bytes.
    pub fn from_ipv4(ip: Ipv4Addr) -> Self {
        let o = ip.octets();
        MacAddr([0x02, 0x42, o[0], o[1], o[2], o[3]])
    }

    /// A random locally administered unicast address.
    pub fn random() -> Self {
        let mut b: [u8; 6] = rand::random();
        b[0] = (b[0] & 0xfe) | 0x02;
        MacAddr(b)
    }
}

impl std::fmt::Display for MacAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl std::fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

impl std::str::FromStr for MacAddr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let parts: Vec<&str> = s.split(':').collect();
        if parts.len() != 6 {
            return Err(format!("{s:?} is not a MAC address like 02:42:ac:11:00:02"));
        }
        let mut b = [0u8; 6];
        for (i, p) in parts.iter().enumerate() {
            b[i] = u8::from_str_radix(p, 16)
                .map_err(|_| format!("{s:?} is not a MAC address like 02:42:ac:11:00:02"))?;
        }
        if b[0] & 1 == 1 {
            return Err(format!("{s} is a multicast address, not a unicast MAC"));
        }
        Ok(MacAddr(b))
    }
}

impl Serialize for MacAddr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for MacAddr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Checks a network or sandbox name: `[a-zA-Z0-9][a-zA-Z0-9_.-]*`, at most 128 bytes.
pub fn validate_name(field: &str, name: &str) -> Result<(), crate::Error> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(crate::Error::invalid(
            field,
            format!("{name:?} is not a valid name: use letters, digits, '_', '.' and '-', starting with a letter or digit, at most 128 characters"),
        ))
    }
}

/// Checks a network name as dockerd does: any text, but not empty, no control characters
/// (a name is printed in tables, logs and events) and at most 255 bytes.
pub fn validate_network_name(name: &str) -> Result<(), crate::Error> {
    let why = if name.is_empty() {
        "a network needs a name"
    } else if name.len() > 255 {
        "a network name is at most 255 bytes"
    } else if name.chars().any(char::is_control) {
        "a network name cannot contain control characters (newlines, tabs, NUL)"
    } else if name.trim() != name {
        "a network name cannot start or end with white space"
    } else {
        return Ok(());
    };
    Err(crate::Error::invalid("Name", format!("{name:?}: {why}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_from_ip_matches_docker() {
        let m = MacAddr::from_ipv4("172.18.0.2".parse().unwrap());
        assert_eq!(m.to_string(), "02:42:ac:12:00:02");
        assert_eq!("02:42:ac:12:00:02".parse::<MacAddr>().unwrap(), m);
        assert!("01:00:00:00:00:00".parse::<MacAddr>().is_err());
        assert!("zz".parse::<MacAddr>().is_err());
    }

    #[test]
    fn names() {
        assert!(validate_name("Name", "my-net_1.a").is_ok());
        assert!(validate_name("Name", "-x").is_err());
        assert!(validate_name("Name", "").is_err());
        assert!(validate_name("Name", "a b").is_err());
        // Networks take any name dockerd takes.
        assert!(validate_network_name("test 01").is_ok());
        assert!(validate_network_name("ünïcode/ok").is_ok());
        assert!(validate_network_name("").is_err());
        assert!(validate_network_name("a\nb").is_err());
        assert!(validate_network_name(" padded").is_err());
    }
}
