//! Routes: default routes inside sandboxes, and the host's routed prefixes.

use super::{ok_if_gone, Nl};
use crate::error::{nl_err, Result};
use futures::TryStreamExt;
use ipnet::IpNet;
use netlink_packet_route::route::{RouteAddress, RouteAttribute};
use rtnetlink::RouteMessageBuilder;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

impl Nl {
    /// Points the default route of `gw`'s family at `gw` through link `index` (replacing any
    /// other).
    pub async fn replace_default(&self, index: u32, gw: IpAddr) -> Result<()> {
        let default = match gw {
            IpAddr::V4(_) => IpNet::V4(ipnet::Ipv4Net::default()),
            IpAddr::V6(_) => IpNet::V6(ipnet::Ipv6Net::default()),
        };
        self.replace_route(index, default, Some(gw)).await
    }

    /// Adds (or replaces) a route to `dest` through link `index`, via `next_hop` when given
    /// (else directly connected).
    pub async fn replace_route(
        &self,
        index: u32,
        dest: IpNet,
        next_hop: Option<IpAddr>,
    ) -> Result<()> {
        let mut m = family_message(dest.addr().is_ipv6());
        m.header.destination_prefix_length = dest.prefix_len();
        let addr = |a: IpAddr| match a {
            IpAddr::V4(a) => RouteAddress::Inet(a),
            IpAddr::V6(a) => RouteAddress::Inet6(a),
        };
        if dest.prefix_len() > 0 {
            m.attributes
                .push(RouteAttribute::Destination(addr(dest.network())));
        }
        m.attributes.push(RouteAttribute::Oif(index));
        match next_hop {
            Some(gw) => m.attributes.push(RouteAttribute::Gateway(addr(gw))),
            None => m.header.scope = netlink_packet_route::route::RouteScope::Link,
        }
        self.handle
            .route()
            .add(m)
            .replace()
            .execute()
            .await
            .map_err(|e| nl_err(format!("add route to {dest}"), e))
    }

    /// Removes the default route of the family; succeeds if there is none.
    pub async fn del_default(&self, v6: bool) -> Result<()> {
        ok_if_gone(
            self.handle
                .route()
                .del(family_message(v6))
                .execute()
                .await
                .map_err(|e| nl_err("remove default route", e)),
        )
    }

    /// The destination prefixes of the main table (both families).
    pub async fn routed_prefixes(&self) -> Result<Vec<IpNet>> {
        let mut out = Vec::new();
        for v6 in [false, true] {
            out.extend(self.dump(|| self.routed_prefixes_of(v6)).await?);
        }
        Ok(out)
    }

    async fn routed_prefixes_of(&self, v6: bool) -> Result<Vec<IpNet>> {
        let mut out = Vec::new();
        let mut s = self.handle.route().get(family_message(v6)).execute();
        while let Some(r) = s.try_next().await.map_err(|e| nl_err("list routes", e))? {
            if r.header.table != 254 {
                continue;
            }
            let len = r.header.destination_prefix_length;
            for a in &r.attributes {
                let ip = match a {
                    RouteAttribute::Destination(RouteAddress::Inet(v)) => IpAddr::V4(*v),
                    RouteAttribute::Destination(RouteAddress::Inet6(v)) => IpAddr::V6(*v),
                    _ => continue,
                };
                if let Ok(n) = IpNet::new(ip, len) {
                    out.push(n.trunc());
                }
            }
        }
        Ok(out)
    }
}

/// A main-table, static, unicast route message of one family, with no destination: the
/// default route, or "every route" in a dump.
fn family_message(v6: bool) -> netlink_packet_route::route::RouteMessage {
    if v6 {
        RouteMessageBuilder::<Ipv6Addr>::new().build()
    } else {
        RouteMessageBuilder::<Ipv4Addr>::new().build()
    }
}
