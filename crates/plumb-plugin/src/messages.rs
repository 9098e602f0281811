//! Every request and response of Docker's `Plugin.Activate`, `NetworkDriver.*` and
//! `IpamDriver.*` calls, with Docker's field names. Requests are written as dockerd writes
//! them (absent maps as `null`); responses are read as dockerd reads them: every field
//! optional, unknown fields ignored, field names in any case (see [`canonical`]).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// Options as dockerd sends them: string keys, any JSON values.
pub type Options = BTreeMap<String, Value>;

/// `POST /Plugin.Activate` answer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ActivateResponse {
    /// The subsystems the plugin implements (`NetworkDriver`, `IpamDriver`, ...).
    pub implements: Vec<String>,
}

/// `NetworkDriver.GetCapabilities` answer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct CapabilitiesResponse {
    /// `local` or `global`: where the network's allocation data lives.
    pub scope: String,
    /// `local` or `global`: whether endpoints on different hosts can talk (defaults to Scope).
    pub connectivity_scope: String,
    /// The driver wants `GwAllocCheck` calls.
    pub gw_alloc_checker: bool,
}

/// IPAM data of one pool, as `CreateNetwork` and `AllocateNetwork` carry it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct IpamData {
    /// The address space (`LocalDefault`, ...).
    pub address_space: String,
    /// The pool, as a CIDR.
    pub pool: String,
    /// The gateway, with the pool's prefix length.
    #[serde(skip_serializing_if = "String::is_empty", default)]
    pub gateway: String,
    /// Auxiliary addresses by name, each with the pool's prefix length.
    #[serde(skip_serializing_if = "BTreeMap::is_empty", default)]
    pub aux_addresses: BTreeMap<String, String>,
}

/// `NetworkDriver.CreateNetwork` (and `AllocateNetwork`) request.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateNetworkRequest {
    /// The network's id (64 hex digits).
    #[serde(rename = "NetworkID")]
    pub network_id: String,
    /// Options: `com.docker.network.enable_ipv4`/`enable_ipv6` (bools),
    /// `com.docker.network.generic` (the user's `-o` options), `com.docker.network.internal`.
    pub options: Options,
    /// IPv4 pools (`null` when none).
    #[serde(rename = "IPv4Data")]
    pub ipv4_data: Option<Vec<IpamData>>,
    /// IPv6 pools (`null` when none).
    #[serde(rename = "IPv6Data")]
    pub ipv6_data: Option<Vec<IpamData>>,
}

/// A request naming only a network (`DeleteNetwork`, `FreeNetwork`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NetworkRequest {
    /// The network's id.
    #[serde(rename = "NetworkID")]
    pub network_id: String,
}

/// An endpoint's interface, in `CreateEndpoint` requests and answers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct EndpointInterface {
    /// IPv4 address with prefix, or empty.
    pub address: String,
    /// IPv6 address with prefix, or empty.
    #[serde(rename = "AddressIPv6")]
    pub address_ipv6: String,
    /// MAC address, or empty.
    pub mac_address: String,
}

/// `NetworkDriver.CreateEndpoint` request.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateEndpointRequest {
    /// The network's id.
    #[serde(rename = "NetworkID")]
    pub network_id: String,
    /// The endpoint's id.
    #[serde(rename = "EndpointID")]
    pub endpoint_id: String,
    /// What is known of the interface (always sent, fields may be empty).
    pub interface: EndpointInterface,
    /// Endpoint options (`null` when none).
    pub options: Option<Options>,
}

/// `NetworkDriver.CreateEndpoint` answer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct CreateEndpointResponse {
    /// Values the driver chose for fields the request left empty.
    pub interface: Option<EndpointInterface>,
}

/// A request naming an endpoint (`DeleteEndpoint`, `EndpointOperInfo`, `Leave`,
/// `RevokeExternalConnectivity`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EndpointRequest {
    /// The network's id.
    #[serde(rename = "NetworkID")]
    pub network_id: String,
    /// The endpoint's id.
    #[serde(rename = "EndpointID")]
    pub endpoint_id: String,
}

/// `NetworkDriver.EndpointOperInfo` answer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct EndpointInfoResponse {
    /// Free-form facts shown to users.
    pub value: Option<Map<String, Value>>,
}

/// `NetworkDriver.Join` request.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct JoinRequest {
    /// The network's id.
    #[serde(rename = "NetworkID")]
    pub network_id: String,
    /// The endpoint's id.
    #[serde(rename = "EndpointID")]
    pub endpoint_id: String,
    /// The sandbox's namespace path.
    pub sandbox_key: String,
    /// Join options (`null` when none).
    pub options: Option<Options>,
}

/// The interface the driver made in the host namespace, and how to name it in the sandbox.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct InterfaceName {
    /// Its name in the host namespace.
    pub src_name: String,
    /// The prefix of its name in the sandbox (`eth` gives eth0, eth1, ...).
    pub dst_prefix: String,
}

/// A route the driver wants in the sandbox.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct StaticRoute {
    /// The destination, as a CIDR.
    pub destination: String,
    /// 0: through `NextHop`; 1: directly connected.
    pub route_type: i64,
    /// The next hop (for type 0).
    pub next_hop: String,
}

/// `NetworkDriver.Join` answer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct JoinResponse {
    /// The interface to move into the sandbox.
    pub interface_name: Option<InterfaceName>,
    /// IPv4 gateway, or empty.
    pub gateway: String,
    /// IPv6 gateway, or empty.
    #[serde(rename = "GatewayIPv6")]
    pub gateway_ipv6: String,
    /// Routes to add in the sandbox.
    pub static_routes: Option<Vec<StaticRoute>>,
    /// No way out is to be added for this endpoint.
    pub disable_gateway_service: bool,
}

/// `NetworkDriver.ProgramExternalConnectivity` request.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ExternalConnectivityRequest {
    /// The network's id.
    #[serde(rename = "NetworkID")]
    pub network_id: String,
    /// The endpoint's id.
    #[serde(rename = "EndpointID")]
    pub endpoint_id: String,
    /// `com.docker.network.portmap` and `com.docker.network.endpoint.exposedports`.
    pub options: Option<Options>,
}

/// `NetworkDriver.DiscoverNew` / `DiscoverDelete` request.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DiscoveryRequest {
    /// 1: a node.
    pub discovery_type: i64,
    /// For a node: `{"Address", "BindAddress", "Self"}`.
    pub discovery_data: Value,
}

/// `NetworkDriver.AllocateNetwork` answer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct AllocateNetworkResponse {
    /// Options passed on to every host's `CreateNetwork`.
    pub options: Option<BTreeMap<String, String>>,
}

/// `IpamDriver.GetCapabilities` answer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct IpamCapabilitiesResponse {
    /// Address requests must carry the endpoint's MAC address.
    #[serde(rename = "RequiresMACAddress")]
    pub requires_mac_address: bool,
    /// Pools and gateways are to be asked for again at every daemon start.
    pub requires_request_replay: bool,
}

/// `IpamDriver.GetDefaultAddressSpaces` answer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct AddressSpacesResponse {
    /// The space of local-scope networks.
    pub local_default_address_space: String,
    /// The space of global-scope networks.
    pub global_default_address_space: String,
}

/// `IpamDriver.RequestPool` request.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RequestPoolRequest {
    /// The address space.
    pub address_space: String,
    /// The pool asked for, or empty.
    pub pool: String,
    /// The part of it to hand addresses out from, or empty.
    pub sub_pool: String,
    /// The network's `--ipam-opt` options (`null` when none).
    pub options: Option<BTreeMap<String, String>>,
    /// An IPv6 pool.
    #[serde(rename = "V6")]
    pub v6: bool,
}

/// `IpamDriver.RequestPool` answer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct RequestPoolResponse {
    /// The id later calls name the pool by.
    #[serde(rename = "PoolID")]
    pub pool_id: String,
    /// The pool, as a CIDR.
    pub pool: String,
    /// Extra data (`com.docker.network.gateway` dictates the gateway).
    pub data: Option<BTreeMap<String, String>>,
}

/// `IpamDriver.ReleasePool` request.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReleasePoolRequest {
    /// The pool's id.
    #[serde(rename = "PoolID")]
    pub pool_id: String,
}

/// `IpamDriver.RequestAddress` request.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RequestAddressRequest {
    /// The pool's id.
    #[serde(rename = "PoolID")]
    pub pool_id: String,
    /// The address asked for (no prefix), or empty.
    pub address: String,
    /// `RequestAddressType`, the network's IPAM options, the MAC address when required.
    pub options: Option<BTreeMap<String, String>>,
}

/// `IpamDriver.RequestAddress` answer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct RequestAddressResponse {
    /// The address, as a CIDR with the pool's prefix length.
    pub address: String,
    /// Extra data.
    pub data: Option<BTreeMap<String, String>>,
}

/// `IpamDriver.ReleaseAddress` request.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ReleaseAddressRequest {
    /// The pool's id.
    #[serde(rename = "PoolID")]
    pub pool_id: String,
    /// The address (no prefix).
    pub address: String,
}

/// The protocol's field names, as Docker spells them.
const FIELDS: &[&str] = &[
    "Err",
    "Error",
    "Implements",
    "Scope",
    "ConnectivityScope",
    "GwAllocChecker",
    "Interface",
    "Address",
    "AddressIPv6",
    "MacAddress",
    "InterfaceName",
    "SrcName",
    "DstPrefix",
    "Gateway",
    "GatewayIPv6",
    "StaticRoutes",
    "Destination",
    "RouteType",
    "NextHop",
    "DisableGatewayService",
    "Value",
    "Options",
    "RequiresMACAddress",
    "RequiresRequestReplay",
    "LocalDefaultAddressSpace",
    "GlobalDefaultAddressSpace",
    "PoolID",
    "Pool",
    "Data",
];

/// Fields whose values are free-form maps: their keys are the plugin's, kept as they are.
const FREE_FORM: &[&str] = &["Value", "Options", "Data"];

/// Renames the protocol's field names written in another case to Docker's spelling (Go's
/// JSON decoder, which dockerd uses, matches field names case-insensitively, and plugins
/// rely on it), leaving the keys of free-form maps alone.
pub fn canonical(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .map(|(k, v)| {
                    let key = FIELDS
                        .iter()
                        .find(|f| f.eq_ignore_ascii_case(&k))
                        .map(|f| (*f).to_owned())
                        .unwrap_or(k);
                    let v = if FREE_FORM.contains(&key.as_str()) {
                        v
                    } else {
                        canonical(v)
                    };
                    (key, v)
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(canonical).collect()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_written_as_dockerd_writes_them() {
        let r = CreateEndpointRequest {
            network_id: "n".into(),
            endpoint_id: "e".into(),
            interface: EndpointInterface {
                address: "10.0.0.2/24".into(),
                ..Default::default()
            },
            options: None,
        };
        assert_eq!(
            serde_json::to_value(&r).unwrap(),
            serde_json::json!({"NetworkID": "n", "EndpointID": "e", "Options": null,
                "Interface": {"Address": "10.0.0.2/24", "AddressIPv6": "", "MacAddress": ""}})
        );
        let p = RequestPoolRequest {
            address_space: "LocalDefault".into(),
            v6: true,
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_value(&p).unwrap(),
            serde_json::json!({"AddressSpace": "LocalDefault", "Pool": "", "SubPool": "",
                "Options": null, "V6": true})
        );
    }

    #[test]
    fn answers_are_read_in_any_case_with_free_form_maps_kept() {
        let v = canonical(serde_json::json!({
            "interfacename": {"srcname": "veth1", "DSTPREFIX": "eth"},
            "gateway": "10.0.0.1",
            "unknown": 1,
        }));
        let j: JoinResponse = serde_json::from_value(v).unwrap();
        assert_eq!(j.interface_name.unwrap().src_name, "veth1");
        assert_eq!(j.gateway, "10.0.0.1");
        let v = canonical(serde_json::json!({"value": {"myKey": "x", "Pool": 1}}));
        let i: EndpointInfoResponse = serde_json::from_value(v).unwrap();
        let m = i.value.unwrap();
        assert!(m.contains_key("myKey") && m.contains_key("Pool"), "{m:?}");
    }
}
