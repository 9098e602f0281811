//! Request bodies, with Docker's exact field names.

use serde::{Deserialize, Deserializer};
use std::collections::BTreeMap;

/// Reads `null` as the default value: Go clients send null for empty strings and lists.
fn nullable<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Option::<T>::deserialize(d).map(Option::unwrap_or_default)
}

/// `POST /networks/create`.
#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub struct NetworkCreate {
    /// Name.
    #[serde(rename = "Name", deserialize_with = "nullable")]
    pub name: String,
    /// Driver.
    #[serde(rename = "Driver", deserialize_with = "nullable")]
    pub driver: String,
    /// Scope.
    #[serde(rename = "Scope", deserialize_with = "nullable")]
    pub scope: String,
    /// Internal.
    #[serde(rename = "Internal", deserialize_with = "nullable")]
    pub internal: bool,
    /// Attachable.
    #[serde(rename = "Attachable", deserialize_with = "nullable")]
    pub attachable: bool,
    /// Ingress.
    #[serde(rename = "Ingress", deserialize_with = "nullable")]
    pub ingress: bool,
    /// ConfigOnly (not supported).
    #[serde(rename = "ConfigOnly", deserialize_with = "nullable")]
    pub config_only: bool,
    /// ConfigFrom (not supported).
    #[serde(rename = "ConfigFrom")]
    pub config_from: Option<ConfigFrom>,
    /// IPAM.
    #[serde(rename = "IPAM")]
    pub ipam: Option<Ipam>,
    /// EnableIPv4 (API >= 1.48).
    #[serde(rename = "EnableIPv4")]
    pub enable_ipv4: Option<bool>,
    /// EnableIPv6.
    #[serde(rename = "EnableIPv6")]
    pub enable_ipv6: Option<bool>,
    /// Driver options.
    #[serde(rename = "Options")]
    pub options: Option<BTreeMap<String, String>>,
    /// Labels.
    #[serde(rename = "Labels")]
    pub labels: Option<BTreeMap<String, String>>,
    /// Ignored (always checked).
    #[serde(rename = "CheckDuplicate")]
    pub check_duplicate: Option<bool>,
}

/// `ConfigFrom`.
#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub struct ConfigFrom {
    /// The config-only network.
    #[serde(rename = "Network", deserialize_with = "nullable")]
    pub network: String,
}

/// `IPAM`.
#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub struct Ipam {
    /// IPAM driver.
    #[serde(rename = "Driver", deserialize_with = "nullable")]
    pub driver: String,
    /// Pools.
    #[serde(rename = "Config")]
    pub config: Option<Vec<IpamConfig>>,
    /// IPAM options.
    #[serde(rename = "Options")]
    pub options: Option<BTreeMap<String, String>>,
}

/// One entry of `IPAM.Config`.
#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub struct IpamConfig {
    /// Subnet.
    #[serde(rename = "Subnet", deserialize_with = "nullable")]
    pub subnet: String,
    /// IPRange.
    #[serde(rename = "IPRange", deserialize_with = "nullable")]
    pub ip_range: String,
    /// Gateway.
    #[serde(rename = "Gateway", deserialize_with = "nullable")]
    pub gateway: String,
    /// AuxiliaryAddresses.
    #[serde(rename = "AuxiliaryAddresses")]
    pub aux: Option<BTreeMap<String, String>>,
}

/// `POST /networks/{id}/connect`.
#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub struct Connect {
    /// Sandbox name or id.
    #[serde(rename = "Container", deserialize_with = "nullable")]
    pub container: String,
    /// Endpoint settings.
    #[serde(rename = "EndpointConfig")]
    pub endpoint_config: Option<EndpointConfig>,
}

/// `EndpointSettings` (the configurable part).
#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub struct EndpointConfig {
    /// Static addresses.
    #[serde(rename = "IPAMConfig")]
    pub ipam_config: Option<EndpointIpam>,
    /// Aliases.
    #[serde(rename = "Aliases")]
    pub aliases: Option<Vec<String>>,
    /// MAC address.
    #[serde(rename = "MacAddress", deserialize_with = "nullable")]
    pub mac_address: String,
    /// Driver options.
    #[serde(rename = "DriverOpts")]
    pub driver_opts: Option<BTreeMap<String, String>>,
    /// Gateway priority.
    #[serde(rename = "GwPriority", deserialize_with = "nullable")]
    pub gw_priority: i32,
    /// plumb's extension: ports to publish while this endpoint is joined, in the shape of
    /// Docker's `HostConfig.PortBindings` (`{"80/tcp": [{"HostIp": "", "HostPort": "8080"}]}`).
    #[serde(rename = "PortBindings")]
    pub port_bindings: Option<BTreeMap<String, Option<Vec<PortBinding>>>>,
}

/// One host side of a port binding (Docker's `PortBinding`).
#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub struct PortBinding {
    /// Host address; empty for every address.
    #[serde(rename = "HostIp", deserialize_with = "nullable")]
    pub host_ip: String,
    /// Host port or range.
    #[serde(rename = "HostPort", deserialize_with = "nullable")]
    pub host_port: String,
}

/// `EndpointIPAMConfig`.
#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub struct EndpointIpam {
    /// IPv4 address.
    #[serde(rename = "IPv4Address", deserialize_with = "nullable")]
    pub ipv4: String,
    /// IPv6 address.
    #[serde(rename = "IPv6Address", deserialize_with = "nullable")]
    pub ipv6: String,
}

/// `POST /networks/{id}/disconnect`.
#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub struct Disconnect {
    /// Sandbox name or id.
    #[serde(rename = "Container", deserialize_with = "nullable")]
    pub container: String,
    /// Force.
    #[serde(rename = "Force", deserialize_with = "nullable")]
    pub force: bool,
}

/// `POST /plumb/v1/sandboxes`.
#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub struct SandboxCreate {
    /// Name.
    #[serde(rename = "Name", deserialize_with = "nullable")]
    pub name: String,
    /// Hostname.
    #[serde(rename = "Hostname", deserialize_with = "nullable")]
    pub hostname: String,
    /// Domain name.
    #[serde(rename = "Domainname", deserialize_with = "nullable")]
    pub domainname: String,
    /// Share the host's stack.
    #[serde(rename = "HostMode", deserialize_with = "nullable")]
    pub host_mode: bool,
    /// Nameservers.
    #[serde(rename = "Dns", deserialize_with = "nullable")]
    pub dns: Vec<String>,
    /// Search domains.
    #[serde(rename = "DnsSearch", deserialize_with = "nullable")]
    pub dns_search: Vec<String>,
    /// resolv.conf options.
    #[serde(rename = "DnsOptions", deserialize_with = "nullable")]
    pub dns_options: Vec<String>,
    /// `name:ip` entries for the hosts file.
    #[serde(rename = "ExtraHosts", deserialize_with = "nullable")]
    pub extra_hosts: Vec<String>,
    /// Published ports, `[HOST_IP:]HOST_PORT[-END]:CONTAINER_PORT[-END][/PROTO]`.
    #[serde(rename = "Ports", deserialize_with = "nullable")]
    pub ports: Vec<String>,
    /// Remove the sandbox when the process that asked for it ends.
    #[serde(rename = "AutoRemove", deserialize_with = "nullable")]
    pub auto_remove: bool,
    /// A network namespace made by a runtime, to adopt (never deleted by plumb).
    #[serde(rename = "Netns", default)]
    pub netns: Option<String>,
    /// The runtime binds the published host ports itself; plumb forwards them only.
    #[serde(rename = "RuntimeHoldsPorts", deserialize_with = "nullable")]
    pub runtime_holds_ports: bool,
    /// Networks to connect it to at once, by network name or id (Docker's
    /// `NetworkingConfig.EndpointsConfig`): the sandbox is made with all of them or not at all.
    #[serde(rename = "Networks", deserialize_with = "nullable")]
    pub networks: std::collections::BTreeMap<String, EndpointConfig>,
}
