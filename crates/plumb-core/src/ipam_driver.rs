//! The IPAM contract, shaped like Docker's IPAM driver API (address spaces, pools, addresses,
//! each request with options), and the built-in driver `default` on the allocator of
//! [`crate::ipam`]. Networks name their driver (`--ipam-driver`); a remote IPAM plugin is one
//! more implementation of [`Ipam`].

use crate::error::BoxError;
use crate::ipam::{overlaps, pick_subnet, AddressPool, DefaultPool, Holder};
use async_trait::async_trait;
use ipnet::IpNet;
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Mutex;

/// Name of the built-in IPAM driver.
pub const DEFAULT_IPAM: &str = "default";
/// Address space of local-scope networks.
pub const LOCAL_SPACE: &str = "LocalDefault";
/// Address space of global-scope networks.
pub const GLOBAL_SPACE: &str = "GlobalDefault";
/// Request option naming what an address is for (Docker's key).
pub const REQUEST_ADDRESS_TYPE: &str = "RequestAddressType";
/// Its value for a network's gateway.
pub const GATEWAY_ADDRESS: &str = "com.docker.network.gateway";

/// A pool request (Docker's `RequestPool`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PoolRequest {
    /// The address space (`LocalDefault`, `GlobalDefault`, or the driver's own).
    pub address_space: String,
    /// The subnet asked for; the driver picks one when absent.
    pub pool: Option<IpNet>,
    /// The part of the pool addresses are handed out from.
    pub sub_pool: Option<IpNet>,
    /// Driver options.
    pub options: BTreeMap<String, String>,
    /// An IPv6 pool.
    pub v6: bool,
}

/// A granted pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolGrant {
    /// The id later requests name it by.
    pub pool_id: String,
    /// The subnet.
    pub pool: IpNet,
    /// Extra data of the driver.
    pub data: BTreeMap<String, String>,
}

/// What an IPAM driver says of itself.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IpamCapabilities {
    /// Address requests must carry the endpoint's MAC address.
    pub requires_mac_address: bool,
}

/// Errors of the built-in driver, which the controller turns into its own (a remote
/// driver's errors are its own text).
#[derive(Debug, thiserror::Error)]
pub enum IpamError {
    /// No pool of the address space is free.
    #[error("no free {family} pool")]
    NoPool {
        /// "IPv4" or "IPv6".
        family: &'static str,
    },
    /// The pool asked for overlaps one granted already.
    #[error("pool {pool} overlaps {other}")]
    Overlap {
        /// The pool asked for.
        pool: IpNet,
        /// The granted one.
        other: IpNet,
    },
    /// No such pool id.
    #[error("pool {0} not found")]
    UnknownPool(String),
    /// The pool has no free address left.
    #[error("no free address in {0}")]
    Exhausted(IpNet),
    /// The address is taken.
    #[error("{0} is in use")]
    InUse(IpAddr),
    /// The address is outside the pool.
    #[error("{address} is not in {pool}")]
    OutOfPool {
        /// The address.
        address: IpAddr,
        /// The pool.
        pool: IpNet,
    },
}

/// An IPAM driver (Docker's `IpamDriver.*` calls).
#[async_trait]
pub trait Ipam: Send + Sync {
    /// Its name, as networks give it.
    fn name(&self) -> &str;

    /// What it needs.
    async fn capabilities(&self) -> Result<IpamCapabilities, BoxError> {
        Ok(IpamCapabilities::default())
    }

    /// The local and global address spaces it offers.
    async fn default_address_spaces(&self) -> Result<(String, String), BoxError> {
        Ok((LOCAL_SPACE.to_owned(), GLOBAL_SPACE.to_owned()))
    }

    /// Grants a pool.
    async fn request_pool(&self, req: &PoolRequest) -> Result<PoolGrant, BoxError>;

    /// Gives a pool back (its addresses with it).
    async fn release_pool(&self, pool_id: &str) -> Result<(), BoxError>;

    /// Hands out `address` (or any free one) from a pool, with its prefix length.
    async fn request_address(
        &self,
        pool_id: &str,
        address: Option<IpAddr>,
        options: &BTreeMap<String, String>,
    ) -> Result<IpNet, BoxError>;

    /// Takes an address back; unknown addresses are fine.
    async fn release_address(&self, pool_id: &str, address: IpAddr) -> Result<(), BoxError>;
}

/// The built-in driver: pools from the configured defaults (Docker's unless
/// `--default-address-pool`), addresses handed out in order from each pool's range.
pub struct DefaultIpam {
    defaults: Vec<DefaultPool>,
    pools: Mutex<HashMap<String, AddressPool>>,
}

impl DefaultIpam {
    /// A driver choosing pools from `defaults` (and the unique-local IPv6 default when
    /// `defaults` has no IPv6 base).
    pub fn new(mut defaults: Vec<DefaultPool>) -> Self {
        if !defaults.iter().any(|p| p.base.addr().is_ipv6()) {
            defaults.push(crate::ipam::default_v6_pool());
        }
        DefaultIpam {
            defaults,
            pools: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, AddressPool>> {
        // Every change to the map is whole: a poisoned lock still holds a valid map.
        self.pools.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn pool_id(space: &str, pool: IpNet, sub_pool: Option<IpNet>) -> String {
    match sub_pool {
        Some(s) => format!("{space}/{pool}/{s}"),
        None => format!("{space}/{pool}"),
    }
}

#[async_trait]
impl Ipam for DefaultIpam {
    fn name(&self) -> &str {
        DEFAULT_IPAM
    }

    async fn request_pool(&self, req: &PoolRequest) -> Result<PoolGrant, BoxError> {
        let mut pools = self.lock();
        let granted: Vec<IpNet> = pools.values().map(|p| p.subnet()).collect();
        let pool = match req.pool {
            Some(p) => {
                if let Some(other) = granted.iter().find(|g| overlaps(g, &p)) {
                    return Err(Box::new(IpamError::Overlap {
                        pool: p,
                        other: *other,
                    }));
                }
                p
            }
            None => pick_subnet(&self.defaults, req.v6, &granted).map_err(|_| {
                Box::new(IpamError::NoPool {
                    family: if req.v6 { "IPv6" } else { "IPv4" },
                }) as BoxError
            })?,
        };
        let id = pool_id(&req.address_space, pool, req.sub_pool);
        pools.insert(id.clone(), AddressPool::new(pool, req.sub_pool));
        Ok(PoolGrant {
            pool_id: id,
            pool,
            data: BTreeMap::new(),
        })
    }

    async fn release_pool(&self, pool_id: &str) -> Result<(), BoxError> {
        self.lock().remove(pool_id);
        Ok(())
    }

    async fn request_address(
        &self,
        pool_id: &str,
        address: Option<IpAddr>,
        _options: &BTreeMap<String, String>,
    ) -> Result<IpNet, BoxError> {
        let mut pools = self.lock();
        let p = pools
            .get_mut(pool_id)
            .ok_or_else(|| Box::new(IpamError::UnknownPool(pool_id.to_owned())) as BoxError)?;
        let subnet = p.subnet();
        let ip = match address {
            Some(ip) => {
                if !subnet.contains(&ip) {
                    return Err(Box::new(IpamError::OutOfPool {
                        address: ip,
                        pool: subnet,
                    }));
                }
                p.reserve(ip, Holder::Endpoint(String::new()), "")
                    .map_err(|_| Box::new(IpamError::InUse(ip)) as BoxError)?;
                ip
            }
            None => p
                .allocate(Holder::Endpoint(String::new()), "")
                .map_err(|_| Box::new(IpamError::Exhausted(subnet)) as BoxError)?,
        };
        Ok(p.with_prefix(ip))
    }

    async fn release_address(&self, pool_id: &str, address: IpAddr) -> Result<(), BoxError> {
        if let Some(p) = self.lock().get_mut(pool_id) {
            p.release(address);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(pool: Option<&str>, v6: bool) -> PoolRequest {
        PoolRequest {
            address_space: LOCAL_SPACE.into(),
            pool: pool.map(|p| p.parse().unwrap()),
            v6,
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn pools_and_addresses_as_dockers_api_has_them() {
        let ipam = DefaultIpam::new(crate::ipam::docker_default_pools());
        let a = ipam.request_pool(&req(None, false)).await.unwrap();
        assert_eq!(a.pool.to_string(), "172.17.0.0/16");
        let b = ipam.request_pool(&req(None, false)).await.unwrap();
        assert_eq!(
            b.pool.to_string(),
            "172.18.0.0/16",
            "granted pools are skipped"
        );
        assert!(ipam
            .request_pool(&req(Some("172.18.5.0/24"), false))
            .await
            .is_err());
        let none = BTreeMap::new();
        let gw: IpAddr = "172.17.0.1".parse().unwrap();
        let got = ipam
            .request_address(&a.pool_id, Some(gw), &none)
            .await
            .unwrap();
        assert_eq!(got.to_string(), "172.17.0.1/16");
        assert!(ipam
            .request_address(&a.pool_id, Some(gw), &none)
            .await
            .is_err());
        let next = ipam.request_address(&a.pool_id, None, &none).await.unwrap();
        assert_eq!(next.to_string(), "172.17.0.2/16");
        ipam.release_address(&a.pool_id, gw).await.unwrap();
        assert!(ipam
            .request_address(&a.pool_id, Some(gw), &none)
            .await
            .is_ok());
        ipam.release_pool(&b.pool_id).await.unwrap();
        let c = ipam.request_pool(&req(None, false)).await.unwrap();
        assert_eq!(c.pool, b.pool, "a released pool can be granted again");
        let v6 = ipam.request_pool(&req(None, true)).await.unwrap();
        assert!(v6.pool.to_string().starts_with("fd"), "{}", v6.pool);
    }
}
