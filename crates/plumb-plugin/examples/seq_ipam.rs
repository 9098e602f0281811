//! An IPAM plugin written with plumb-plugin's server kit: pools are what the network asks
//! for (or /24s from 10.124.0.0/16), addresses are handed out in order, all in memory.
//!
//! ```text
//! cargo run --release -p plumb-plugin --example seq_ipam -- /run/docker/plugins/seqipam.sock
//! plumb network create --ipam-driver seqipam net1
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used)]

use async_trait::async_trait;
use ipnet::{IpNet, Ipv4Net};
use plumb_plugin::messages::*;
use plumb_plugin::server::{Answer, IpamPlugin, PluginError, PluginServer};
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// One granted pool and the addresses handed out from it.
struct Pool {
    net: IpNet,
    used: BTreeSet<IpAddr>,
}

/// The IPAM: pools by id.
#[derive(Default)]
struct SeqIpam {
    pools: Mutex<BTreeMap<String, Pool>>,
}

#[async_trait]
impl IpamPlugin for SeqIpam {
    async fn request_pool(&self, req: RequestPoolRequest) -> Answer<RequestPoolResponse> {
        if req.v6 {
            return Err(PluginError::Failed("no IPv6 pools here".into()));
        }
        let mut pools = self.pools.lock().unwrap();
        let taken = |n: &IpNet| {
            pools
                .values()
                .any(|p| p.net.contains(&n.network()) || n.contains(&p.net.network()))
        };
        let net: IpNet = if req.pool.is_empty() {
            let base: Ipv4Net = "10.124.0.0/16".parse().unwrap();
            let free = base.subnets(24).unwrap().map(IpNet::V4).find(|n| !taken(n));
            free.ok_or_else(|| PluginError::Failed("no free pool".into()))?
        } else {
            let n: IpNet = req
                .pool
                .parse()
                .map_err(|_| PluginError::Failed(format!("bad pool {}", req.pool)))?;
            if taken(&n) {
                return Err(PluginError::Failed(format!("{n} overlaps a granted pool")));
            }
            n.trunc()
        };
        let id = format!("{}/{net}", req.address_space);
        pools.insert(
            id.clone(),
            Pool {
                net,
                used: BTreeSet::new(),
            },
        );
        Ok(RequestPoolResponse {
            pool_id: id,
            pool: net.to_string(),
            data: None,
        })
    }

    async fn release_pool(&self, req: ReleasePoolRequest) -> Answer<()> {
        self.pools.lock().unwrap().remove(&req.pool_id);
        Ok(())
    }

    async fn request_address(&self, req: RequestAddressRequest) -> Answer<RequestAddressResponse> {
        let mut pools = self.pools.lock().unwrap();
        let pool = pools
            .get_mut(&req.pool_id)
            .ok_or_else(|| PluginError::Failed(format!("unknown pool {}", req.pool_id)))?;
        let ip: IpAddr = if req.address.is_empty() {
            pool.net
                .hosts()
                .find(|h| !pool.used.contains(h))
                .ok_or_else(|| PluginError::Failed("pool exhausted".into()))?
        } else {
            let ip: IpAddr = req
                .address
                .parse()
                .map_err(|_| PluginError::Failed("bad address".into()))?;
            if !pool.net.contains(&ip) || pool.used.contains(&ip) {
                return Err(PluginError::Failed(format!("{ip} is not free")));
            }
            ip
        };
        pool.used.insert(ip);
        Ok(RequestAddressResponse {
            address: format!("{ip}/{}", pool.net.prefix_len()),
            data: None,
        })
    }

    async fn release_address(&self, req: ReleaseAddressRequest) -> Answer<()> {
        if let (Some(p), Ok(ip)) = (
            self.pools.lock().unwrap().get_mut(&req.pool_id),
            req.address.parse(),
        ) {
            p.used.remove(&ip);
        }
        Ok(())
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let path = std::env::args().nth(1).expect("usage: seq_ipam SOCKET");
    let _ = std::fs::remove_file(&path);
    let listener = tokio::net::UnixListener::bind(&path)?;
    eprintln!("seq_ipam listening on {path}");
    PluginServer::new()
        .ipam(Arc::new(SeqIpam::default()))
        .serve(listener)
        .await
}
