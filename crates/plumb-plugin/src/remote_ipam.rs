//! A remote IPAM driver: plumb's [`Ipam`] spoken as Docker's `IpamDriver.*` calls. What the
//! plugin answers is parsed here; whether it fits the network (inside the pool, not held)
//! is checked by the controller.

use crate::client::{CallError, PluginClient};
use crate::messages::*;
use async_trait::async_trait;
use ipnet::IpNet;
use plumb_core::driver::{PluginFailure, PluginFailureKind};
use plumb_core::ipam_driver::{Ipam, IpamCapabilities, PoolGrant, PoolRequest};
use plumb_core::BoxError;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

/// An IPAM plugin.
pub struct RemoteIpam {
    client: Arc<PluginClient>,
    caps: IpamCapabilitiesResponse,
}

impl RemoteIpam {
    /// The IPAM driver behind `client`, with the capabilities it declared.
    pub fn new(client: Arc<PluginClient>, caps: IpamCapabilitiesResponse) -> Self {
        RemoteIpam { client, caps }
    }

    fn bad(&self, call: &str, what: String) -> BoxError {
        Box::new(PluginFailure {
            kind: PluginFailureKind::Unavailable,
            message: format!(
                "plugin {}: IpamDriver.{call}: invalid answer: {what}",
                self.client.name()
            ),
        })
    }
}

fn opt_map(m: &BTreeMap<String, String>) -> Option<BTreeMap<String, String>> {
    (!m.is_empty()).then(|| m.clone())
}

#[async_trait]
impl Ipam for RemoteIpam {
    fn name(&self) -> &str {
        self.client.name()
    }

    async fn capabilities(&self) -> Result<IpamCapabilities, BoxError> {
        Ok(IpamCapabilities {
            requires_mac_address: self.caps.requires_mac_address,
        })
    }

    async fn default_address_spaces(&self) -> Result<(String, String), BoxError> {
        let r: AddressSpacesResponse = self
            .client
            .call::<(), _>("IpamDriver.GetDefaultAddressSpaces", None)
            .await
            .map_err(CallError::boxed)?;
        Ok((
            r.local_default_address_space,
            r.global_default_address_space,
        ))
    }

    async fn request_pool(&self, req: &PoolRequest) -> Result<PoolGrant, BoxError> {
        let q = RequestPoolRequest {
            address_space: req.address_space.clone(),
            pool: req.pool.map(|p| p.to_string()).unwrap_or_default(),
            sub_pool: req.sub_pool.map(|p| p.to_string()).unwrap_or_default(),
            options: opt_map(&req.options),
            v6: req.v6,
        };
        let r: RequestPoolResponse = self
            .client
            .call("IpamDriver.RequestPool", Some(&q))
            .await
            .map_err(CallError::boxed)?;
        let pool: IpNet = r
            .pool
            .parse()
            .map_err(|_| self.bad("RequestPool", format!("Pool {:?} is not a CIDR", r.pool)))?;
        if r.pool_id.is_empty() {
            return Err(self.bad("RequestPool", "PoolID is empty".into()));
        }
        Ok(PoolGrant {
            pool_id: r.pool_id,
            pool: pool.trunc(),
            data: r.data.unwrap_or_default(),
        })
    }

    async fn release_pool(&self, pool_id: &str) -> Result<(), BoxError> {
        let q = ReleasePoolRequest {
            pool_id: pool_id.to_owned(),
        };
        let _: serde_json::Value = self
            .client
            .call("IpamDriver.ReleasePool", Some(&q))
            .await
            .map_err(CallError::boxed)?;
        Ok(())
    }

    async fn request_address(
        &self,
        pool_id: &str,
        address: Option<IpAddr>,
        options: &BTreeMap<String, String>,
    ) -> Result<IpNet, BoxError> {
        let q = RequestAddressRequest {
            pool_id: pool_id.to_owned(),
            address: address.map(|a| a.to_string()).unwrap_or_default(),
            options: opt_map(options),
        };
        let r: RequestAddressResponse = self
            .client
            .call("IpamDriver.RequestAddress", Some(&q))
            .await
            .map_err(CallError::boxed)?;
        if r.address.is_empty() {
            return Err(self.bad("RequestAddress", "no address returned".into()));
        }
        r.address.parse::<IpNet>().map_err(|_| {
            self.bad(
                "RequestAddress",
                format!(
                    "Address {:?} is not an address with a prefix length",
                    r.address
                ),
            )
        })
    }

    async fn release_address(&self, pool_id: &str, address: IpAddr) -> Result<(), BoxError> {
        let q = ReleaseAddressRequest {
            pool_id: pool_id.to_owned(),
            address: address.to_string(),
        };
        let _: serde_json::Value = self
            .client
            .call("IpamDriver.ReleaseAddress", Some(&q))
            .await
            .map_err(CallError::boxed)?;
        Ok(())
    }
}
