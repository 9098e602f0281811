//! JSON views in Docker's exact shapes (network inspect and list) and plumb's sandbox view.

use plumb_core::model::Network;
use plumb_core::{NetworkView, SandboxView};
use serde_json::{json, Map, Value};

/// RFC 3339 with nanoseconds, UTC, as Docker prints `Created`.
pub fn rfc3339_nanos(unix_nanos: u128) -> String {
    let secs = (unix_nanos / 1_000_000_000) as i64;
    let nanos = (unix_nanos % 1_000_000_000) as u32;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let base = format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    );
    if unix_nanos == 0 {
        return "0001-01-01T00:00:00Z".into();
    }
    format!("{base}.{nanos:09}Z")
}

/// Days since 1970-01-01 to (year, month, day) (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn ipam_config(n: &Network) -> Value {
    // Echo what the user asked for; show allocated pools when they asked for none.
    let configs: Vec<Value> = n
        .pools
        .iter()
        .map(|p| {
            let mut c = Map::new();
            c.insert("Subnet".into(), json!(p.subnet.to_string()));
            if let Some(r) = p.ip_range {
                c.insert("IPRange".into(), json!(r.to_string()));
            }
            if let Some(g) = p.gateway {
                c.insert("Gateway".into(), json!(g.to_string()));
            }
            if !p.aux_addresses.is_empty() {
                let aux: Map<String, Value> = p
                    .aux_addresses
                    .iter()
                    .map(|(k, v)| (k.clone(), json!(v.to_string())))
                    .collect();
                c.insert("AuxiliaryAddresses".into(), Value::Object(aux));
            }
            Value::Object(c)
        })
        .collect();
    json!({
        "Driver": n.spec.ipam_driver,
        "Options": if n.spec.ipam_options.is_empty() { Value::Null } else { json!(n.spec.ipam_options) },
        "Config": configs,
    })
}

/// A network as `GET /networks` lists it (no Containers).
pub fn network_summary(n: &Network) -> Value {
    let mut options = n.driver_options.clone();
    options.extend(n.spec.options.clone());
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
        "Options": options,
        "Labels": n.spec.labels,
    })
}

/// A network as `GET /networks/{id}` shows it.
pub fn network_inspect(v: &NetworkView) -> Value {
    let mut out = network_summary(&v.network);
    let mut containers = Map::new();
    for (ep, sb) in &v.endpoints {
        let Some(sb) = sb else { continue };
        containers.insert(
            sb.id.to_string(),
            json!({
                "Name": sb.spec.name,
                "EndpointID": ep.id.to_string(),
                "MacAddress": ep.mac.map(|m| m.to_string()).unwrap_or_default(),
                "IPv4Address": ep.ipv4.map(|a| a.to_string()).unwrap_or_default(),
                "IPv6Address": ep.ipv6.map(|a| a.to_string()).unwrap_or_default(),
            }),
        );
    }
    if let Value::Object(m) = &mut out {
        m.insert("Containers".into(), Value::Object(containers));
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
                "IsGateway": v.gateway_endpoint.as_ref() == Some(&ep.id),
            })
        })
        .collect();
    json!({
        "Id": sb.id.to_string(),
        "Name": sb.spec.name,
        "Hostname": sb.hostname(),
        "HostMode": sb.spec.host_mode,
        "Key": sb.key,
        "ResolvConfPath": dir.join("resolv.conf"),
        "HostsPath": dir.join("hosts"),
        "HostnamePath": dir.join("hostname"),
        "Created": rfc3339_nanos(sb.created_unix_nanos),
        "Endpoints": endpoints,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339() {
        assert_eq!(
            rfc3339_nanos(1_700_000_000_123_456_789),
            "2023-11-14T22:13:20.123456789Z"
        );
        assert_eq!(rfc3339_nanos(0), "0001-01-01T00:00:00Z");
        assert_eq!(
            rfc3339_nanos(951_782_400_000_000_001),
            "2000-02-29T00:00:00.000000001Z"
        );
    }
}
