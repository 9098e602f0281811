//! Pools and addresses through the network's IPAM driver: granting a new network's pools
//! (with its gateway and auxiliary addresses), taking and giving back endpoint addresses,
//! restoring the built-in driver's state at start, releasing at removal.

use super::state::NetEntry;
use super::Controller;
use crate::error::{Error, Result};
use crate::ipam::{overlaps, Holder};
use crate::ipam_driver::{
    Ipam, IpamError, PoolRequest, DEFAULT_IPAM, GATEWAY_ADDRESS, LOCAL_SPACE, REQUEST_ADDRESS_TYPE,
};
use crate::model::{Endpoint, Network, Pool};
use ipnet::IpNet;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

/// A pool as planned from the user's request, before the IPAM driver grants it.
#[derive(Debug, Clone)]
pub(super) struct Planned {
    /// The subnet asked for (the driver picks one when absent).
    pub subnet: Option<IpNet>,
    /// Where dynamic addresses come from.
    pub ip_range: Option<IpNet>,
    /// The gateway asked for (the subnet's first address when absent).
    pub gateway: Option<IpAddr>,
    /// Auxiliary addresses.
    pub aux: BTreeMap<String, IpAddr>,
    /// An IPv6 pool.
    pub v6: bool,
}

/// How often a driver-picked pool that collides with a host route is declined before
/// giving up.
const DECLINES: usize = 256;

/// The controller's error for an IPAM driver's: the built-in driver's typed errors become
/// the user's (naming `network` and `field`), a plugin's text is kept as the source.
fn ipam_err(driver: &str, network: &str, field: &str, e: crate::BoxError) -> Error {
    match e.downcast::<IpamError>() {
        Ok(e) => match *e {
            IpamError::NoPool { family } => Error::NoAvailablePool { family },
            IpamError::Exhausted(subnet) => Error::PoolExhausted {
                network: network.to_owned(),
                subnet: subnet.to_string(),
            },
            IpamError::InUse(address) => Error::AddressInUse {
                address,
                network: network.to_owned(),
                holder: "another endpoint".into(),
            },
            other => Error::invalid(field, other.to_string()),
        },
        Err(source) => super::driver_err(&format!("IPAM {driver}"), source),
    }
}

/// Docker's request option carrying the endpoint's MAC address to IPAM.
const MAC_OPTION: &str = "com.docker.network.endpoint.macaddress";

/// What is wrong with an address an IPAM driver granted from `pool` (a plugin's answer is
/// not trusted): outside the pool, not the one asked for, or held already.
fn granted_address_fault(
    entry: &NetEntry,
    pool: &Pool,
    wanted: Option<IpAddr>,
    got: IpNet,
) -> Option<String> {
    if !pool.subnet.contains(&got.addr()) || got.prefix_len() != pool.subnet.prefix_len() {
        return Some(format!("not an address of pool {}", pool.subnet));
    }
    if wanted.is_some_and(|w| w != got.addr()) {
        return Some("not the address asked for".into());
    }
    if let Some(h) = entry.held.get(&got.addr()) {
        return Some(format!("held already by {h}"));
    }
    None
}

/// True when `net`'s addresses come from the built-in driver (which plumb restores at start;
/// a plugin keeps its own state).
fn builtin_ipam(net: &Network) -> bool {
    net.spec.ipam_driver.is_empty() || net.spec.ipam_driver == DEFAULT_IPAM
}

/// The conventional gateway: the subnet's first host address.
pub(super) fn first_host(subnet: IpNet) -> Option<IpAddr> {
    if subnet.prefix_len() >= subnet.max_prefix_len() - 1 {
        return None;
    }
    match subnet.network() {
        IpAddr::V4(a) => Some(std::net::Ipv4Addr::from(u32::from(a).wrapping_add(1)).into()),
        IpAddr::V6(a) => Some(std::net::Ipv6Addr::from(u128::from(a).wrapping_add(1)).into()),
    }
}

impl Controller {
    /// The IPAM driver called `name`, looked for among plugins when not known yet.
    pub(super) async fn ipam(&self, name: &str) -> Result<Arc<dyn Ipam>> {
        use crate::registry::Unresolved;
        let name = if name.is_empty() { DEFAULT_IPAM } else { name };
        self.ipams.resolve(name).await.map_err(|e| match e {
            Unresolved::NotFound(known) => Error::invalid(
                "IPAM.Driver",
                format!(
                    "IPAM driver {name:?} is not available: available are {}",
                    known.join(", ")
                ),
            ),
            Unresolved::Failed(e) => ipam_err(name, "", "IPAM.Driver", e),
        })
    }

    /// Asks `ipam` for the planned pools, their gateways and auxiliary addresses; a pool the
    /// driver picks that collides with `avoid` (host routes, other networks) is declined.
    /// All or nothing: on failure everything granted is given back.
    pub(super) async fn grant_pools(
        &self,
        ipam: &Arc<dyn Ipam>,
        spec: &crate::model::NetworkSpec,
        planned: &[Planned],
        avoid: &[IpNet],
        options: &BTreeMap<String, String>,
    ) -> Result<Vec<Pool>> {
        let mut granted: Vec<Pool> = Vec::new();
        let (local, global) = ipam
            .default_address_spaces()
            .await
            .map_err(|e| ipam_err(ipam.name(), &spec.name, "IPAM.Driver", e))?;
        let space = if spec.scope == crate::model::Scope::Global {
            global
        } else {
            local
        };
        if let Err(e) = self
            .grant_each(
                ipam,
                (&spec.name, &space),
                planned,
                avoid,
                options,
                &mut granted,
            )
            .await
        {
            for p in &granted {
                self.release_pool(ipam, p).await;
            }
            return Err(e);
        }
        Ok(granted)
    }

    async fn grant_each(
        &self,
        ipam: &Arc<dyn Ipam>,
        (network, space): (&str, &str),
        planned: &[Planned],
        avoid: &[IpNet],
        options: &BTreeMap<String, String>,
        granted: &mut Vec<Pool>,
    ) -> Result<()> {
        let name = ipam.name().to_owned();
        for (i, p) in planned.iter().enumerate() {
            let req = PoolRequest {
                address_space: space.to_owned(),
                pool: p.subnet,
                sub_pool: p.ip_range,
                options: options.clone(),
                v6: p.v6,
            };
            let mut declined: Vec<String> = Vec::new();
            let grant = loop {
                let g = match ipam.request_pool(&req).await {
                    Ok(g) => g,
                    Err(e) => {
                        for d in &declined {
                            let _ = ipam.release_pool(d).await;
                        }
                        return Err(ipam_err(
                            &name,
                            network,
                            &format!("IPAM.Config[{i}].Subnet"),
                            e,
                        ));
                    }
                };
                let clash = p.subnet.is_none() && avoid.iter().any(|a| overlaps(a, &g.pool));
                if !clash {
                    break g;
                }
                declined.push(g.pool_id);
                if declined.len() >= DECLINES {
                    for d in &declined {
                        let _ = ipam.release_pool(d).await;
                    }
                    return Err(Error::NoAvailablePool {
                        family: if p.v6 { "IPv6" } else { "IPv4" },
                    });
                }
            };
            for d in &declined {
                if let Err(e) = ipam.release_pool(d).await {
                    tracing::warn!(pool = %d, error = %e, "giving back a declined pool failed");
                }
            }
            let wrong = if p.subnet.is_some_and(|w| w != grant.pool) {
                Some("not the pool asked for")
            } else if grant.pool.addr().is_ipv6() != p.v6 {
                Some("of the wrong family")
            } else {
                None
            };
            if let Some(wrong) = wrong {
                if let Err(e) = ipam.release_pool(&grant.pool_id).await {
                    tracing::warn!(pool = %grant.pool, error = %e, "giving back a refused pool failed");
                }
                return Err(Error::Plugin {
                    driver: format!("IPAM {name}"),
                    message: format!(
                        "IPAM driver {name} answered RequestPool with {}: {wrong}",
                        grant.pool
                    ),
                    unavailable: true,
                });
            }
            let mut pool = Pool {
                subnet: grant.pool,
                ip_range: p.ip_range,
                gateway: None,
                aux_addresses: BTreeMap::new(),
                pool_id: grant.pool_id,
            };
            let field = |f: &str| format!("IPAM.Config[{i}].{f}");
            let mut opts = BTreeMap::new();
            opts.insert(REQUEST_ADDRESS_TYPE.to_owned(), GATEWAY_ADDRESS.to_owned());
            if name == DEFAULT_IPAM {
                // An explicit gateway was checked when planned; the first host never needs it.
                if let Some(gw) = p.gateway.or_else(|| first_host(grant.pool)) {
                    let got = ipam.request_address(&pool.pool_id, Some(gw), &opts).await;
                    if let Err(e) = got {
                        granted.push(pool);
                        return Err(ipam_err(&name, network, &field("Gateway"), e));
                    }
                    pool.gateway = Some(gw);
                }
            } else {
                // Docker's way with a plugin: a gateway the user gave is asked for; else one
                // the driver dictates in the pool's data is taken as it is; else the driver
                // picks one. Whatever it answers must lie in the pool.
                let dictated = grant.data.get(GATEWAY_ADDRESS);
                let gw = match (p.gateway, dictated) {
                    (None, Some(g)) => g
                        .parse::<IpNet>()
                        .map(|n| n.addr())
                        .or_else(|_| g.parse())
                        .map_err(|_| format!("{g:?} (not an address)")),
                    (wanted, _) => match ipam.request_address(&pool.pool_id, wanted, &opts).await {
                        Ok(a) => Ok(a.addr()),
                        Err(e) => {
                            granted.push(pool);
                            return Err(ipam_err(&name, network, &field("Gateway"), e));
                        }
                    },
                };
                match gw {
                    Ok(gw) if pool.subnet.contains(&gw) => pool.gateway = Some(gw),
                    other => {
                        let what = other.map(|g| g.to_string()).unwrap_or_else(|e| e);
                        granted.push(pool);
                        return Err(Error::Plugin {
                            driver: format!("IPAM {name}"),
                            message: format!(
                                "IPAM driver {name} gave gateway {what}, not an address of pool {}",
                                grant.pool
                            ),
                            unavailable: true,
                        });
                    }
                }
            }
            for (aux, ip) in &p.aux {
                let got = ipam
                    .request_address(&pool.pool_id, Some(*ip), &BTreeMap::new())
                    .await;
                if let Err(e) = got {
                    granted.push(pool);
                    return Err(
                        match ipam_err(&name, network, &field("AuxiliaryAddresses"), e) {
                            Error::InvalidParameter { field, reason } => {
                                Error::invalid(field, format!("{aux}={ip}: {reason}"))
                            }
                            e => e,
                        },
                    );
                }
                pool.aux_addresses.insert(aux.clone(), *ip);
            }
            tracing::debug!(network, pool = %pool.subnet, "pool granted");
            granted.push(pool);
        }
        Ok(())
    }

    /// Gives a pool back with its gateway and auxiliary addresses; failures are logged (the
    /// built-in driver cannot fail here, a plugin's state is the plugin's).
    pub(super) async fn release_pool(&self, ipam: &Arc<dyn Ipam>, p: &Pool) {
        for ip in p.gateway.iter().chain(p.aux_addresses.values()) {
            if let Err(e) = ipam.release_address(&p.pool_id, *ip).await {
                tracing::warn!(pool = %p.pool_id, address = %ip, error = %e, "IPAM release failed");
            }
        }
        if let Err(e) = ipam.release_pool(&p.pool_id).await {
            tracing::warn!(pool = %p.pool_id, error = %e, "IPAM pool release failed");
        }
    }

    /// Takes the addresses of a new endpoint: `want` ones where given, else the next free one
    /// of each family the network has. All or nothing.
    pub(super) async fn take_addresses(
        &self,
        entry: &mut NetEntry,
        ep: &mut Endpoint,
        want: [(Option<IpAddr>, bool); 2],
    ) -> Result<()> {
        let ipam = self.ipam(&entry.net.spec.ipam_driver).await?;
        let net_name = entry.net.spec.name.clone();
        // Docker's endpoint requests carry the network's IPAM options, and the MAC address
        // when the driver asks for it.
        let mut options = entry.net.spec.ipam_options.clone().unwrap_or_default();
        if !builtin_ipam(&entry.net) {
            let caps = ipam
                .capabilities()
                .await
                .map_err(|e| ipam_err(ipam.name(), &net_name, "IPAM.Driver", e))?;
            if caps.requires_mac_address {
                let mac = *ep.mac.get_or_insert_with(crate::model::MacAddr::random);
                options.insert(MAC_OPTION.to_owned(), mac.to_string());
            }
        }
        for (wanted, v6) in want {
            let field = if v6 { "IPv6Address" } else { "IPv4Address" };
            let pool = match wanted {
                Some(ip) if ip.is_ipv6() != v6 => {
                    Err(Error::invalid(field, format!("{ip} is not an {field}")))
                }
                Some(ip) => match entry.pool_for(ip) {
                    None => Err(Error::invalid(
                        field,
                        format!("{ip} is not in any subnet of network {net_name}"),
                    )),
                    Some(p) => match entry.held.get(&ip) {
                        Some(h) => Err(Error::AddressInUse {
                            address: ip,
                            network: net_name.clone(),
                            holder: h.to_string(),
                        }),
                        None => crate::validate::host_address(field, ip, &p.subnet)
                            .map(|_| Some(p.clone())),
                    },
                },
                None => Ok(entry.pool_of_family(v6).cloned()),
            };
            let got = match pool {
                Ok(Some(pool)) => match ipam.request_address(&pool.pool_id, wanted, &options).await
                {
                    Ok(a) => match granted_address_fault(entry, &pool, wanted, a) {
                        None => Ok(Some(a)),
                        Some(fault) => {
                            // Not ours to keep, but the plugin thinks it handed it out.
                            if let Err(e) = ipam.release_address(&pool.pool_id, a.addr()).await {
                                tracing::warn!(address = %a, error = %e, "giving back a refused address failed");
                            }
                            Err(Error::Plugin {
                                driver: format!("IPAM {}", ipam.name()),
                                message: format!(
                                    "IPAM driver {} answered RequestAddress with {a}: {fault}",
                                    ipam.name()
                                ),
                                unavailable: true,
                            })
                        }
                    },
                    Err(e) => Err(ipam_err(ipam.name(), &net_name, field, e)),
                },
                Ok(None) => Ok(None),
                Err(e) => Err(e),
            };
            match got {
                Ok(Some(a)) => {
                    entry
                        .held
                        .insert(a.addr(), Holder::Endpoint(ep.name.clone()));
                    if v6 {
                        ep.ipv6 = Some(a);
                    } else {
                        ep.ipv4 = Some(a);
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    self.release_addresses(entry, ep).await;
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// Gives an endpoint's addresses back.
    pub(super) async fn release_addresses(&self, entry: &mut NetEntry, ep: &Endpoint) {
        let Ok(ipam) = self.ipam(&entry.net.spec.ipam_driver).await else {
            return;
        };
        for a in [ep.ipv4, ep.ipv6].into_iter().flatten() {
            let ip = a.addr();
            if entry.held.get(&ip) != Some(&Holder::Endpoint(ep.name.clone())) {
                continue;
            }
            entry.held.remove(&ip);
            if let Some(p) = entry.pool_for(ip) {
                if let Err(e) = ipam.release_address(&p.pool_id, ip).await {
                    tracing::warn!(address = %ip, error = %e, "IPAM release failed");
                }
            }
        }
    }

    /// At start: asks the built-in driver for a stored network's pools and held addresses
    /// again (a plugin keeps its own state and is not asked to recreate it).
    pub(super) async fn restore_pools(&self, net: &mut Network) -> Result<()> {
        if !builtin_ipam(net) {
            return Ok(());
        }
        let ipam = self.ipam(DEFAULT_IPAM).await?;
        let name = net.spec.name.clone();
        let err = |e| ipam_err(DEFAULT_IPAM, &name, "IPAM.Config", e);
        for p in &mut net.pools {
            let req = PoolRequest {
                address_space: LOCAL_SPACE.to_owned(),
                pool: Some(p.subnet),
                sub_pool: p.ip_range,
                options: BTreeMap::new(),
                v6: matches!(p.subnet, IpNet::V6(_)),
            };
            p.pool_id = ipam.request_pool(&req).await.map_err(err)?.pool_id;
            for ip in p.gateway.iter().chain(p.aux_addresses.values()) {
                ipam.request_address(&p.pool_id, Some(*ip), &BTreeMap::new())
                    .await
                    .map_err(err)?;
            }
        }
        Ok(())
    }

    /// At start: holds a stored endpoint's addresses in the built-in driver again.
    pub(super) async fn restore_addresses(
        &self,
        entry: &mut NetEntry,
        ep: &Endpoint,
    ) -> Result<()> {
        for a in [ep.ipv4, ep.ipv6].into_iter().flatten() {
            entry
                .held
                .insert(a.addr(), Holder::Endpoint(ep.name.clone()));
        }
        if !builtin_ipam(&entry.net) {
            return Ok(());
        }
        let ipam = self.ipam(DEFAULT_IPAM).await?;
        let name = &entry.net.spec.name;
        for a in [ep.ipv4, ep.ipv6].into_iter().flatten() {
            if let Some(p) = entry.pool_for(a.addr()) {
                ipam.request_address(&p.pool_id, Some(a.addr()), &BTreeMap::new())
                    .await
                    .map_err(|e| ipam_err(DEFAULT_IPAM, name, "IPAMConfig", e))?;
            }
        }
        Ok(())
    }
}
