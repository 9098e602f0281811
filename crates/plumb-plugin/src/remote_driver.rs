//! A remote network driver: plumb's [`NetworkDriver`] spoken as Docker's `NetworkDriver.*`
//! calls. The plugin makes an interface in plumbd's namespace and names it in its `Join`
//! answer; plumb moves it into the sandbox (renamed with the prefix the plugin asks for, the
//! endpoint's MAC set), addresses it, applies the plugin's static routes and hands the
//! gateway to the controller. Leaving moves the interface back under its own name (kept in
//! the link's alias across restarts) so that the plugin can remove it, then calls `Leave`.
//! Every answer is checked; an answer that cannot be used undoes what the call did.

use crate::client::{CallError, CallErrorKind, PluginClient};
use crate::messages::*;
use async_trait::async_trait;
use ipnet::IpNet;
use plumb_core::driver::{
    Capabilities, EndpointInterface as CoreInterface, JoinInfo, NetworkDriver, PluginFailure,
    PluginFailureKind,
};
use plumb_core::model::{Endpoint, MacAddr, Network, Sandbox, Scope};
use plumb_core::ports::{PortMapping, Proto};
use plumb_core::BoxError;
use plumb_linux::namespaces::Namespaces;
use plumb_linux::netns;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::sync::Arc;

/// The alias prefix recording the interface's name in plumbd's namespace.
const SRC_MARK: &str = "plumb-src:";

/// A network driver plugin.
pub struct RemoteDriver {
    client: Arc<PluginClient>,
    global: bool,
    ns: Arc<Namespaces>,
}

/// What a `Join` answer asks for, checked.
struct JoinPlan {
    src: String,
    prefix: String,
    gateway_v4: Option<Ipv4Addr>,
    gateway_v6: Option<Ipv6Addr>,
    routes: Vec<(IpNet, Option<IpAddr>)>,
}

fn proto_number(p: Proto) -> u8 {
    match p {
        Proto::Tcp => 6,
        Proto::Udp => 17,
        Proto::Sctp => 132,
    }
}

/// True for a name the kernel takes for an interface.
fn valid_ifname(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 15
        && n != "."
        && n != ".."
        && n.bytes()
            .all(|b| b.is_ascii_graphic() && b != b'/' && b != b':')
}

impl RemoteDriver {
    /// The driver behind `client`; `global` when the plugin declared Scope global.
    pub fn new(client: Arc<PluginClient>, global: bool, ns: Arc<Namespaces>) -> Self {
        RemoteDriver { client, global, ns }
    }

    fn bad(&self, call: &str, what: String) -> BoxError {
        Box::new(PluginFailure {
            kind: PluginFailureKind::Unavailable,
            message: format!(
                "plugin {}: NetworkDriver.{call}: invalid answer: {what}",
                self.client.name()
            ),
        })
    }

    async fn call_raw<Q: serde::Serialize>(&self, method: &str, q: &Q) -> Result<Value, CallError> {
        self.client
            .call::<Q, Value>(&format!("NetworkDriver.{method}"), Some(q))
            .await
    }

    async fn call<Q: serde::Serialize>(&self, method: &str, q: &Q) -> Result<Value, BoxError> {
        self.call_raw(method, q).await.map_err(CallError::boxed)
    }

    fn endpoint_req(net: &Network, ep: &Endpoint) -> EndpointRequest {
        EndpointRequest {
            network_id: net.id.to_string(),
            endpoint_id: ep.id.to_string(),
        }
    }

    fn check_join(&self, r: JoinResponse) -> Result<JoinPlan, String> {
        let names = r.interface_name.unwrap_or_default();
        if !valid_ifname(&names.src_name) {
            return Err(format!(
                "InterfaceName.SrcName {:?} is not an interface name",
                names.src_name
            ));
        }
        let prefix = if names.dst_prefix.is_empty() {
            "eth".to_owned()
        } else {
            names.dst_prefix
        };
        if !valid_ifname(&format!("{prefix}0")) || prefix.len() > 12 {
            return Err(format!("InterfaceName.DstPrefix {prefix:?} is not usable"));
        }
        let gateway_v4 = match r.gateway.as_str() {
            "" => None,
            g => Some(
                g.parse()
                    .map_err(|_| format!("Gateway {g:?} is not an IPv4 address"))?,
            ),
        };
        let gateway_v6 = match r.gateway_ipv6.as_str() {
            "" => None,
            g => Some(
                g.parse()
                    .map_err(|_| format!("GatewayIPv6 {g:?} is not an IPv6 address"))?,
            ),
        };
        let mut routes = Vec::new();
        for (i, sr) in r.static_routes.unwrap_or_default().into_iter().enumerate() {
            let dest: IpNet = sr.destination.parse().map_err(|_| {
                format!(
                    "StaticRoutes[{i}].Destination {:?} is not a CIDR",
                    sr.destination
                )
            })?;
            let hop = match sr.route_type {
                1 => None,
                0 => Some(sr.next_hop.parse::<IpAddr>().map_err(|_| {
                    format!(
                        "StaticRoutes[{i}].NextHop {:?} is not an address",
                        sr.next_hop
                    )
                })?),
                t => return Err(format!("StaticRoutes[{i}].RouteType {t} (expected 0 or 1)")),
            };
            if hop.is_some_and(|h| h.is_ipv6() != dest.addr().is_ipv6()) {
                return Err(format!("StaticRoutes[{i}]: next hop of the other family"));
            }
            routes.push((dest.trunc(), hop));
        }
        Ok(JoinPlan {
            src: names.src_name,
            prefix,
            gateway_v4,
            gateway_v6,
            routes,
        })
    }

    /// Moves the plugin's interface into the sandbox as `name` and configures it.
    async fn plumb(
        &self,
        ep: &Endpoint,
        sb: &Sandbox,
        plan: &JoinPlan,
        name: &str,
    ) -> Result<(), BoxError> {
        let host = self.ns.host();
        let link = host.link(&plan.src).await?.ok_or_else(|| {
            self.bad(
                "Join",
                format!(
                    "interface {:?} named in InterfaceName.SrcName does not exist",
                    plan.src
                ),
            )
        })?;
        host.set_alias(link.index, &format!("{SRC_MARK}{}", plan.src))
            .await?;
        let target = netns::open(Path::new(&sb.key))?;
        host.move_link(link.index, &target, name, ep.mac.map(|m| m.0))
            .await?;
        let snl = self.ns.get(Path::new(&sb.key)).await?;
        let addrs: Vec<IpNet> = [ep.ipv4, ep.ipv6].into_iter().flatten().collect();
        let idx = snl.address_and_up(name, &addrs).await?;
        for (dest, hop) in &plan.routes {
            snl.replace_route(idx, *dest, *hop).await?;
        }
        Ok(())
    }

    /// Moves the endpoint's interface out of the sandbox, back under its own name (deleted
    /// instead when that name is taken meanwhile). Nothing there is fine.
    async fn unplumb(&self, sb: &Sandbox, name: &str) -> Result<(), BoxError> {
        if !netns::is_netns(Path::new(&sb.key)) {
            return Ok(());
        }
        let snl = self.ns.get(Path::new(&sb.key)).await?;
        let Some(l) = snl.link(name).await? else {
            return Ok(());
        };
        let src = l
            .alias
            .as_deref()
            .and_then(|a| a.strip_prefix(SRC_MARK))
            .map(str::to_owned);
        let host_ns = netns::open(Path::new("/proc/self/ns/net"))?;
        match src {
            Some(src) if self.ns.host().link(&src).await?.is_none() => {
                snl.move_link(l.index, &host_ns, &src, None).await?;
            }
            _ => snl.del_link(l.index).await?,
        }
        Ok(())
    }
}

/// The name `prefix` + the number of plumb's `ifname` (eth2 -> prefix2).
fn dst_name(prefix: &str, ifname: &str) -> String {
    let n: String = ifname.chars().filter(char::is_ascii_digit).collect();
    format!("{prefix}{}", if n.is_empty() { "0" } else { &n })
}

/// Docker's `Options` of `CreateNetwork`.
fn network_options(net: &Network) -> Options {
    let mut o = Options::new();
    o.insert(
        "com.docker.network.enable_ipv4".into(),
        json!(net.spec.enable_ipv4),
    );
    o.insert(
        "com.docker.network.enable_ipv6".into(),
        json!(net.spec.enable_ipv6),
    );
    o.insert("com.docker.network.generic".into(), json!(net.spec.options));
    if net.spec.internal {
        o.insert("com.docker.network.internal".into(), json!(true));
    }
    o
}

fn ipam_data(net: &Network, v6: bool) -> Option<Vec<IpamData>> {
    let space = if net.spec.scope == Scope::Global {
        "GlobalDefault"
    } else {
        "LocalDefault"
    };
    let with_len = |ip: IpAddr, len: u8| format!("{ip}/{len}");
    let v: Vec<IpamData> = net
        .pools
        .iter()
        .filter(|p| p.subnet.addr().is_ipv6() == v6)
        .map(|p| IpamData {
            address_space: space.into(),
            pool: p.subnet.to_string(),
            gateway: p
                .gateway
                .map(|g| with_len(g, p.subnet.prefix_len()))
                .unwrap_or_default(),
            aux_addresses: p
                .aux_addresses
                .iter()
                .map(|(k, ip)| (k.clone(), with_len(*ip, p.subnet.prefix_len())))
                .collect(),
        })
        .collect();
    (!v.is_empty()).then_some(v)
}

/// Docker's endpoint options: the user's driver options, and the published ports.
fn endpoint_options(ep: &Endpoint, ports: &[PortMapping]) -> Option<Options> {
    let mut o: Options = ep
        .driver_opts
        .iter()
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect();
    if !ports.is_empty() {
        let map: Vec<Value> = ports
            .iter()
            .map(|p| {
                json!({"Proto": proto_number(p.proto), "IP": "", "Port": p.container_port,
                    "HostIP": p.host_ip.map(|i| i.to_string()).unwrap_or_default(),
                    "HostPort": p.host_port, "HostPortEnd": p.host_port})
            })
            .collect();
        let exposed: Vec<Value> = ports
            .iter()
            .map(|p| json!({"Proto": proto_number(p.proto), "Port": p.container_port}))
            .collect();
        o.insert("com.docker.network.portmap".into(), Value::Array(map));
        o.insert(
            "com.docker.network.endpoint.exposedports".into(),
            Value::Array(exposed),
        );
    }
    (!o.is_empty()).then_some(o)
}

#[async_trait]
impl NetworkDriver for RemoteDriver {
    fn name(&self) -> &str {
        self.client.name()
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            needs_addresses: true,
            singleton: false,
            host_mode: false,
            global: self.global,
            keeps_state: true,
            picks_mac: true,
        }
    }

    fn check_options(&self, _network: &Network) -> Result<BTreeMap<String, String>, BoxError> {
        // Every option is the plugin's to judge, in CreateNetwork.
        Ok(BTreeMap::new())
    }

    async fn create_network(&self, net: &Network) -> Result<(), BoxError> {
        let q = CreateNetworkRequest {
            network_id: net.id.to_string(),
            options: network_options(net),
            ipv4_data: ipam_data(net, false),
            ipv6_data: ipam_data(net, true),
        };
        self.call("CreateNetwork", &q).await.map(|_| ())
    }

    async fn delete_network(&self, net: &Network) -> Result<(), BoxError> {
        let q = NetworkRequest {
            network_id: net.id.to_string(),
        };
        self.call("DeleteNetwork", &q).await.map(|_| ())
    }

    async fn create_endpoint(
        &self,
        net: &Network,
        ep: &Endpoint,
    ) -> Result<CoreInterface, BoxError> {
        let sent = EndpointInterface {
            address: ep.ipv4.map(|a| a.to_string()).unwrap_or_default(),
            address_ipv6: ep.ipv6.map(|a| a.to_string()).unwrap_or_default(),
            mac_address: ep.mac.map(|m| m.to_string()).unwrap_or_default(),
        };
        let q = CreateEndpointRequest {
            network_id: net.id.to_string(),
            endpoint_id: ep.id.to_string(),
            interface: sent.clone(),
            options: endpoint_options(ep, &[]),
        };
        let v = self.call("CreateEndpoint", &q).await?;
        let checked = (|| -> Result<CoreInterface, String> {
            let r: CreateEndpointResponse = serde_path_to_error::deserialize(v)
                .map_err(|e| format!("field {}: {}", e.path(), e.inner()))?;
            let Some(got) = r.interface else {
                return Ok(CoreInterface::default());
            };
            let mut out = CoreInterface::default();
            // Docker's rule: the driver may fill only what the request left empty.
            for (field, old, new) in [
                ("Address", &sent.address, &got.address),
                ("AddressIPv6", &sent.address_ipv6, &got.address_ipv6),
                ("MacAddress", &sent.mac_address, &got.mac_address),
            ] {
                if !new.is_empty() && !old.is_empty() {
                    return Err(format!(
                        "Interface.{field}: the driver may not set what was given ({old})"
                    ));
                }
            }
            if !got.mac_address.is_empty() {
                let mac: MacAddr = got.mac_address.parse().map_err(|_| {
                    format!(
                        "Interface.MacAddress {:?} is not a MAC address",
                        got.mac_address
                    )
                })?;
                if mac.0[0] & 1 == 1 || mac.0 == [0; 6] {
                    return Err(format!(
                        "Interface.MacAddress {mac} is not a unicast address"
                    ));
                }
                out.mac = Some(mac);
            }
            for (field, text, v6) in [
                ("Address", &got.address, false),
                ("AddressIPv6", &got.address_ipv6, true),
            ] {
                if text.is_empty() {
                    continue;
                }
                let a: IpNet = text
                    .parse()
                    .ok()
                    .filter(|a: &IpNet| a.addr().is_ipv6() == v6)
                    .ok_or_else(|| format!("Interface.{field} {text:?} is not a CIDR address"))?;
                if v6 {
                    out.ipv6 = Some(a);
                } else {
                    out.ipv4 = Some(a);
                }
            }
            Ok(out)
        })();
        match checked {
            Ok(i) => Ok(i),
            Err(what) => {
                // As dockerd does: the endpoint the plugin made is deleted again.
                if let Err(e) = self.delete_endpoint(net, ep).await {
                    tracing::warn!(error = %e, "deleting a refused endpoint in its plugin failed");
                }
                Err(self.bad("CreateEndpoint", what))
            }
        }
    }

    async fn delete_endpoint(&self, net: &Network, ep: &Endpoint) -> Result<(), BoxError> {
        self.call("DeleteEndpoint", &Self::endpoint_req(net, ep))
            .await
            .map(|_| ())
    }

    async fn endpoint_info(
        &self,
        net: &Network,
        ep: &Endpoint,
    ) -> Result<BTreeMap<String, Value>, BoxError> {
        let v = self
            .call("EndpointOperInfo", &Self::endpoint_req(net, ep))
            .await?;
        let r: EndpointInfoResponse =
            serde_json::from_value(v).map_err(|e| self.bad("EndpointOperInfo", e.to_string()))?;
        Ok(r.value.unwrap_or_default().into_iter().collect())
    }

    async fn join(
        &self,
        net: &Network,
        ep: &Endpoint,
        sb: &Sandbox,
        ifname: &str,
    ) -> Result<JoinInfo, BoxError> {
        let q = JoinRequest {
            network_id: net.id.to_string(),
            endpoint_id: ep.id.to_string(),
            sandbox_key: sb.key.clone(),
            options: None,
        };
        let v = self.call("Join", &q).await?;
        let plan = serde_path_to_error::deserialize::<_, JoinResponse>(v)
            .map_err(|e| format!("field {}: {}", e.path(), e.inner()))
            .and_then(|r| self.check_join(r));
        let result = match plan {
            Err(what) => Err(self.bad("Join", what)),
            Ok(plan) => {
                let name = dst_name(&plan.prefix, ifname);
                match self.plumb(ep, sb, &plan, &name).await {
                    Ok(()) => Ok(JoinInfo {
                        gateway_v4: plan.gateway_v4,
                        gateway_v6: plan.gateway_v6,
                        ifname: Some(name),
                    }),
                    Err(e) => {
                        if let Err(undo) = self.unplumb(sb, &name).await {
                            tracing::warn!(error = %undo, "moving a half-plumbed interface back failed");
                        }
                        Err(e)
                    }
                }
            }
        };
        if result.is_err() {
            // As dockerd does after a failed join: the plugin is told to leave.
            if let Err(e) = self.call("Leave", &Self::endpoint_req(net, ep)).await {
                tracing::warn!(error = %e, "leave after a failed join failed");
            }
        }
        result
    }

    async fn leave(&self, net: &Network, ep: &Endpoint, sb: &Sandbox) -> Result<(), BoxError> {
        // The plugin first (a plugin that cannot be reached leaves everything as it was),
        // then its interface goes back to it.
        self.call("Leave", &Self::endpoint_req(net, ep)).await?;
        if let Some(name) = &ep.ifname {
            self.unplumb(sb, name).await?;
        }
        Ok(())
    }

    async fn program_external(
        &self,
        net: &Network,
        ep: &Endpoint,
        ports: &[PortMapping],
    ) -> Result<(), BoxError> {
        let q = ExternalConnectivityRequest {
            network_id: net.id.to_string(),
            endpoint_id: ep.id.to_string(),
            options: endpoint_options(ep, ports),
        };
        optional(self.call_raw("ProgramExternalConnectivity", &q).await)
    }

    async fn revoke_external(
        &self,
        net: &Network,
        ep: &Endpoint,
        _ports: &[PortMapping],
    ) -> Result<(), BoxError> {
        optional(
            self.call_raw("RevokeExternalConnectivity", &Self::endpoint_req(net, ep))
                .await,
        )
    }

    async fn sweep(
        &self,
        _networks: &[&Network],
        _endpoints: &[&Endpoint],
    ) -> Result<(), BoxError> {
        // The plugin's kernel objects are the plugin's.
        Ok(())
    }
}

/// Success for a call Docker lets a plugin leave out (404).
fn optional(r: Result<Value, CallError>) -> Result<(), BoxError> {
    match r {
        Ok(_) => Ok(()),
        Err(e) if e.kind == CallErrorKind::NotImplemented => Ok(()),
        Err(e) => Err(e.boxed()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_names_follow_the_plugins_prefix() {
        assert_eq!(dst_name("eth", "eth2"), "eth2");
        assert_eq!(dst_name("net", "eth0"), "net0");
        assert!(valid_ifname("veth12345678901"));
        assert!(!valid_ifname("veth123456789012"));
        assert!(!valid_ifname("../x"));
        assert!(!valid_ifname(""));
    }
}
