//! From Docker's request bodies to plumb's specs, naming the field that is wrong.

use crate::error::ApiError;
use crate::types::{Connect, NetworkCreate, PortBinding, SandboxCreate};
use plumb_core::model::{EndpointSpec, MacAddr, NetworkSpec, PoolRequest, SandboxSpec, Scope};
use plumb_core::ports::{self, PortMapping, PORTMAP_OPTION};
use std::collections::BTreeMap;
use std::net::IpAddr;

fn ip(field: &str, v: &str) -> Result<Option<IpAddr>, ApiError> {
    if v.is_empty() {
        return Ok(None);
    }
    v.parse()
        .map(Some)
        .map_err(|_| ApiError::bad_request(format!("invalid {field}: {v:?} is not an IP address")))
}

fn cidr(field: &str, v: &str) -> Result<Option<ipnet::IpNet>, ApiError> {
    if v.is_empty() {
        return Ok(None);
    }
    v.parse().map(Some).map_err(|_| {
        ApiError::bad_request(format!(
            "invalid {field}: {v:?} is not a CIDR like 172.20.0.0/16"
        ))
    })
}

/// Builds a network spec from `POST /networks/create`.
pub fn network_spec(req: NetworkCreate) -> Result<NetworkSpec, ApiError> {
    if req.config_only
        || req
            .config_from
            .as_ref()
            .is_some_and(|c| !c.network.is_empty())
    {
        return Err(ApiError::bad_request(
            "ConfigOnly and ConfigFrom networks are not supported by plumb",
        ));
    }
    let scope = match req.scope.as_str() {
        "" | "local" => Scope::Local,
        // The controller checks that the driver spans hosts (overlay) and that this
        // plumbd has a cluster store.
        "global" | "swarm" => Scope::Global,
        other => {
            return Err(ApiError::bad_request(format!(
                "invalid Scope: {other:?} (expected local, global or swarm)"
            )))
        }
    };
    let ipam = req.ipam.unwrap_or_default();
    let mut pools = Vec::new();
    for (i, c) in ipam.config.unwrap_or_default().into_iter().enumerate() {
        let f = |n: &str| format!("IPAM.Config[{i}].{n}");
        let mut aux = std::collections::BTreeMap::new();
        for (name, v) in c.aux.unwrap_or_default() {
            let a = ip(&f("AuxiliaryAddresses"), &v)?.ok_or_else(|| {
                ApiError::bad_request(format!(
                    "invalid {}: {name} has no address",
                    f("AuxiliaryAddresses")
                ))
            })?;
            aux.insert(name, a);
        }
        pools.push(PoolRequest {
            subnet: cidr(&f("Subnet"), &c.subnet)?,
            ip_range: cidr(&f("IPRange"), &c.ip_range)?,
            gateway: ip(&f("Gateway"), &c.gateway)?,
            aux_addresses: aux,
        });
    }
    Ok(NetworkSpec {
        name: req.name,
        driver: req.driver,
        scope,
        internal: req.internal,
        attachable: req.attachable,
        ingress: req.ingress,
        enable_ipv4: req.enable_ipv4.unwrap_or(true),
        enable_ipv6: req.enable_ipv6.unwrap_or(false),
        ipam_driver: ipam.driver,
        pools,
        ipam_options: ipam.options,
        options: req.options.unwrap_or_default(),
        labels: req.labels.unwrap_or_default(),
    })
}

/// Builds an endpoint spec from `POST /networks/{id}/connect`.
pub fn endpoint_spec(req: &Connect) -> Result<EndpointSpec, ApiError> {
    let cfg = req.endpoint_config.as_ref();
    let ipam = cfg.and_then(|c| c.ipam_config.as_ref());
    let mac = match cfg.map(|c| c.mac_address.as_str()).unwrap_or("") {
        "" => None,
        m => Some(
            m.parse::<MacAddr>()
                .map_err(|e| ApiError::bad_request(format!("invalid MacAddress: {e}")))?,
        ),
    };
    let mut driver_opts = cfg.and_then(|c| c.driver_opts.clone()).unwrap_or_default();
    Ok(EndpointSpec {
        name: String::new(),
        ipv4: ip(
            "IPAMConfig.IPv4Address",
            ipam.map(|i| i.ipv4.as_str()).unwrap_or(""),
        )?,
        ipv6: ip(
            "IPAMConfig.IPv6Address",
            ipam.map(|i| i.ipv6.as_str()).unwrap_or(""),
        )?,
        mac,
        aliases: cfg.and_then(|c| c.aliases.clone()).unwrap_or_default(),
        gw_priority: cfg.map(|c| c.gw_priority).unwrap_or(0),
        ports: endpoint_ports(&mut driver_opts, cfg.and_then(|c| c.port_bindings.as_ref()))?,
        driver_opts,
    })
}

/// The ports an endpoint publishes: the `com.docker.network.portmap` driver option (taken out
/// of the options) and the `PortBindings` extension.
fn endpoint_ports(
    driver_opts: &mut BTreeMap<String, String>,
    bindings: Option<&BTreeMap<String, Option<Vec<PortBinding>>>>,
) -> Result<Vec<PortMapping>, ApiError> {
    let bad = |e: plumb_core::Error| ApiError::bad_request(e.to_string());
    let mut ports = match driver_opts.remove(PORTMAP_OPTION) {
        Some(list) => ports::parse_list(&list).map_err(bad)?,
        None => Vec::new(),
    };
    for (container, hosts) in bindings.into_iter().flatten() {
        let (cport, proto) = container.split_once('/').unwrap_or((container, "tcp"));
        for h in hosts.iter().flatten() {
            // An empty HostPort asks for a free port, as in Docker.
            let spec = match h.host_ip.parse::<IpAddr>() {
                Ok(IpAddr::V6(ip)) => format!("[{ip}]:{}:{cport}/{proto}", h.host_port),
                Ok(ip) => format!("{ip}:{}:{cport}/{proto}", h.host_port),
                Err(_) if h.host_ip.is_empty() => format!("{}:{cport}/{proto}", h.host_port),
                Err(_) => {
                    return Err(ApiError::bad_request(format!(
                        "invalid PortBindings: HostIp {:?} is not an IP address",
                        h.host_ip
                    )))
                }
            };
            ports.extend(ports::parse(&spec).map_err(bad)?);
        }
    }
    Ok(ports)
}

/// Builds a sandbox spec from `POST /plumb/v1/sandboxes`.
pub fn sandbox_spec(req: SandboxCreate) -> Result<SandboxSpec, ApiError> {
    let mut dns = Vec::new();
    for d in &req.dns {
        dns.push(ip("Dns", d)?.ok_or_else(|| ApiError::bad_request("invalid Dns: empty address"))?);
    }
    let mut extra = Vec::new();
    for h in &req.extra_hosts {
        let (name, addr) = h.split_once(':').ok_or_else(|| {
            ApiError::bad_request(format!("invalid ExtraHosts: {h:?} is not name:ip"))
        })?;
        let a = ip("ExtraHosts", addr)?.ok_or_else(|| {
            ApiError::bad_request(format!("invalid ExtraHosts: {h:?} is not name:ip"))
        })?;
        extra.push((name.to_owned(), a));
    }
    let mut ports = Vec::new();
    for p in &req.ports {
        ports
            .extend(plumb_core::ports::parse(p).map_err(|e| ApiError::bad_request(e.to_string()))?);
    }
    Ok(SandboxSpec {
        ports,
        name: req.name,
        hostname: req.hostname,
        domainname: req.domainname,
        host_mode: req.host_mode,
        dns,
        dns_search: req.dns_search,
        dns_options: req.dns_options,
        extra_hosts: extra,
        owner: None,
        netns: req.netns.filter(|n| !n.is_empty()),
        runtime_holds_ports: req.runtime_holds_ports,
    })
}
