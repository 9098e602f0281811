//! JSON views in Docker's exact shapes (network inspect and list) and plumb's sandbox view.

use plumb_core::model::Network;
use plumb_core::{NetworkView, SandboxView};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::net::IpAddr;

pub use plumb_core::events::rfc3339_nanos;

fn ip_config(
    subnet: String,
    range: Option<String>,
    gw: Option<String>,
    aux: &BTreeMap<String, IpAddr>,
) -> Value {
    let mut c = Map::new();
    c.insert("Subnet".into(), json!(subnet));
    if let Some(r) = range {
        c.insert("IPRange".into(), json!(r));
    }
    if let Some(g) = gw {
        c.insert("Gateway".into(), json!(g));
    }
    if !aux.is_empty() {
        let aux: Map<String, Value> = aux
            .iter()
            .map(|(k, v)| (k.clone(), json!(v.to_string())))
            .collect();
        c.insert("AuxiliaryAddresses".into(), Value::Object(aux));
    }
    Value::Object(c)
}

/// `IPAM` as Docker shows it: pools the user asked for are echoed with exactly the fields
/// given; pools plumb chose show their subnet and gateway.
fn ipam_config(n: &Network) -> Value {
    let configs: Vec<Value> = n
        .pools
        .iter()
        .map(|p| {
            let asked = n.spec.pools.iter().find(|r| r.subnet == Some(p.subnet));
            match asked {
                Some(r) => ip_config(
                    p.subnet.to_string(),
                    r.ip_range.map(|x| x.to_string()),
                    r.gateway.map(|x| x.to_string()),
                    &r.aux_addresses,
                ),
                None => ip_config(
                    p.subnet.to_string(),
                    None,
                    p.gateway.map(|g| g.to_string()),
                    &BTreeMap::new(),
                ),
            }
        })
        .collect();
    json!({
        "Driver": n.spec.ipam_driver,
        "Options": n.spec.ipam_options,
        "Config": configs,
    })
}

/// The network's options as Docker shows them: the user's, and those the driver settled
/// (a macvlan network's parent, an overlay's VNI), but not a bridge's generated name.
fn options(n: &Network) -> BTreeMap<String, String> {
    let mut o = n.spec.options.clone();
    for (k, v) in &n.driver_options {
        if k != "com.docker.network.bridge.name" {
            o.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
    o
}

/// A network as `GET /networks` lists it (no Containers).
pub fn network_summary(n: &Network) -> Value {
    json!({
        "Name": n.spec.name,
        "Id": n.id.to_string(),
        "Created": rfc3339_nanos(n.created_unix_nanos),
        "Scope": n.spec.scope.as_str(),
        "Driver": n.spec.driver,
        "EnableIPv4": n.spec.enable_ipv4 && n.spec.driver != "host" && n.spec.driver != "null",
        "EnableIPv6": n.spec.enable_ipv6,
        "IPAM": ipam_config(n),
        "Internal": n.spec.internal,
        "Attachable": n.spec.attachable,
        "Ingress": n.spec.ingress,
        "ConfigFrom": {"Network": ""},
        "ConfigOnly": false,
        "Options": options(n),
        "Labels": n.spec.labels,
    })
}

/// A network as `GET /networks/{id}` shows it.
pub fn network_inspect(v: &NetworkView) -> Value {
    let mut out = network_summary(&v.network);
    let mut containers = Map::new();
    let mut peers: std::collections::BTreeMap<String, String> = Default::default();
    for (ep, sb) in &v.endpoints {
        if let Some(node) = &ep.node {
            if ep.sandbox.is_some() {
                peers.insert(node.name.clone(), node.addr.to_string());
            }
        }
        // An endpoint joined on another host of the cluster shows under its sandbox's id
        // with the endpoint's name, and says which host it is on.
        let (sb_id, name) = match (sb, &ep.sandbox, &ep.node) {
            (Some(sb), _, _) => (sb.id.to_string(), sb.spec.name.clone()),
            (None, Some(id), Some(_)) => (id.to_string(), ep.name.clone()),
            _ => continue,
        };
        let mut c = json!({
            "Name": name,
            "EndpointID": ep.id.to_string(),
            "MacAddress": ep.mac.map(|m| m.to_string()).unwrap_or_default(),
            "IPv4Address": ep.ipv4.map(|a| a.to_string()).unwrap_or_default(),
            "IPv6Address": ep.ipv6.map(|a| a.to_string()).unwrap_or_default(),
        });
        // plumb's addition, only where ports are published to this endpoint: Docker's own
        // shape is unchanged otherwise.
        if let (Some(ports), Value::Object(m)) = (v.published.get(&ep.id), &mut c) {
            m.insert("Ports".into(), port_strings(ports));
        }
        if let (Some(node), Value::Object(m)) = (&ep.node, &mut c) {
            m.insert("Node".into(), json!(node.name));
        }
        containers.insert(sb_id, c);
    }
    if let Value::Object(m) = &mut out {
        m.insert("Containers".into(), Value::Object(containers));
        if v.network.spec.scope == plumb_core::model::Scope::Global {
            let list: Vec<Value> = peers
                .into_iter()
                .map(|(name, ip)| json!({"Name": name, "IP": ip}))
                .collect();
            m.insert("Peers".into(), Value::Array(list));
        }
    }
    out
}

/// A sandbox as plumb's API shows it.
pub fn sandbox(v: &SandboxView) -> Value {
    let sb = &v.sandbox;
    let dir = std::path::Path::new(&sb.dir);
    let endpoints: Vec<Value> = v
        .endpoints
        .iter()
        .map(|(ep, net)| {
            json!({
                "Network": net.spec.name,
                "NetworkID": net.id.to_string(),
                "EndpointID": ep.id.to_string(),
                "Name": ep.name,
                "InterfaceName": ep.ifname.clone().unwrap_or_default(),
                "MacAddress": ep.mac.map(|m| m.to_string()).unwrap_or_default(),
                "IPv4Address": ep.ipv4.map(|a| a.to_string()).unwrap_or_default(),
                "IPv6Address": ep.ipv6.map(|a| a.to_string()).unwrap_or_default(),
                "Aliases": ep.aliases,
                "GwPriority": ep.gw_priority,
                "Ports": port_strings(&ep.ports),
                "IsGateway": v.gateway_endpoint.as_ref() == Some(&ep.id),
                "Gateway": ep.gateway_v4.map(|g| g.to_string()).unwrap_or_default(),
                "IPv6Gateway": ep.gateway_v6.map(|g| g.to_string()).unwrap_or_default(),
            })
        })
        .collect();
    json!({
        "Id": sb.id.to_string(),
        "Name": sb.spec.name,
        "Hostname": sb.hostname(),
        "Domainname": sb.spec.domainname,
        "AutoRemove": sb.spec.owner.is_some(),
        "HostMode": sb.spec.host_mode,
        "Key": sb.key,
        "Netns": sb.spec.netns,
        "RuntimeHoldsPorts": sb.spec.runtime_holds_ports,
        "ResolvConfPath": dir.join("resolv.conf"),
        "HostsPath": dir.join("hosts"),
        "HostnamePath": dir.join("hostname"),
        "Created": rfc3339_nanos(sb.created_unix_nanos),
        "Ports": port_strings(&v.ports),
        "Endpoints": endpoints,
    })
}

fn port_strings(ports: &[plumb_core::ports::PortMapping]) -> Value {
    json!(ports.iter().map(|p| p.to_string()).collect::<Vec<_>>())
}
