//! Request bodies, with Docker's exact field names.

use serde::Deserialize;
use std::collections::BTreeMap;

/// `POST /networks/create`.
#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub struct NetworkCreate {
    /// Name.
    #[serde(rename = "Name")]
    pub name: String,
    /// Driver.
    #[serde(rename = "Driver")]
    pub driver: String,
    /// Scope.
    #[serde(rename = "Scope")]
    pub scope: String,
    /// Internal.
    #[serde(rename = "Internal")]
    pub internal: bool,
    /// Attachable.
    #[serde(rename = "Attachable")]
    pub attachable: bool,
    /// Ingress.
    #[serde(rename = "Ingress")]
    pub ingress: bool,
    /// ConfigOnly (not supported).
    #[serde(rename = "ConfigOnly")]
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
    #[serde(rename = "Network")]
    pub network: String,
}

/// `IPAM`.
#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub struct Ipam {
    /// IPAM driver.
    #[serde(rename = "Driver")]
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
    #[serde(rename = "Subnet")]
    pub subnet: String,
    /// IPRange.
    #[serde(rename = "IPRange")]
    pub ip_range: String,
    /// Gateway.
    #[serde(rename = "Gateway")]
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
    #[serde(rename = "Container")]
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
    #[serde(rename = "MacAddress")]
    pub mac_address: String,
    /// Driver options.
    #[serde(rename = "DriverOpts")]
    pub driver_opts: Option<BTreeMap<String, String>>,
    /// Gateway priority.
    #[serde(rename = "GwPriority")]
    pub gw_priority: i32,
}

/// `EndpointIPAMConfig`.
#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub struct EndpointIpam {
    /// IPv4 address.
    #[serde(rename = "IPv4Address")]
    pub ipv4: String,
    /// IPv6 address.
    #[serde(rename = "IPv6Address")]
    pub ipv6: String,
}

/// `POST /networks/{id}/disconnect`.
#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub struct Disconnect {
    /// Sandbox name or id.
    #[serde(rename = "Container")]
    pub container: String,
    /// Force.
    #[serde(rename = "Force")]
    pub force: bool,
}

/// `POST /plumb/v1/sandboxes`.
#[derive(Debug, Deserialize, Default)]
#[serde(default)]
pub struct SandboxCreate {
    /// Name.
    #[serde(rename = "Name")]
    pub name: String,
    /// Hostname.
    #[serde(rename = "Hostname")]
    pub hostname: String,
    /// Share the host's stack.
    #[serde(rename = "HostMode")]
    pub host_mode: bool,
    /// Nameservers.
    #[serde(rename = "Dns")]
    pub dns: Vec<String>,
    /// Search domains.
    #[serde(rename = "DnsSearch")]
    pub dns_search: Vec<String>,
    /// resolv.conf options.
    #[serde(rename = "DnsOptions")]
    pub dns_options: Vec<String>,
    /// `name:ip` entries for the hosts file.
    #[serde(rename = "ExtraHosts")]
    pub extra_hosts: Vec<String>,
}
