//! Routes: default routes inside sandboxes, and the host's routed prefixes.

use super::{ok_if_gone, Nl};
use crate::error::{nl_err, Result};
use futures::TryStreamExt;
use ipnet::IpNet;
use netlink_packet_route::route::{RouteAddress, RouteAttribute};
use rtnetlink::RouteMessageBuilder;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

impl Nl {
    /// Points the IPv4 default route at `gw` through link `index` (replacing any other).
    pub async fn replace_default_v4(&self, index: u32, gw: Ipv4Addr) -> Result<()> {
        let m = RouteMessageBuilder::<Ipv4Addr>::new()
            .output_interface(index)
            .gateway(gw)
            .build();
        self.handle
            .route()
            .add(m)
            .replace()
            .execute()
            .await
            .map_err(|e| nl_err(format!("set default route via {gw}"), e))
    }

    /// Points the IPv6 default route at `gw` through link `index` (replacing any other).
    pub async fn replace_default_v6(&self, index: u32, gw: Ipv6Addr) -> Result<()> {
        let mut m = RouteMessageBuilder::<Ipv6Addr>::new()
            .output_interface(index)
            .build();
        m.attributes
            .push(RouteAttribute::Gateway(RouteAddress::Inet6(gw)));
        self.handle
            .route()
            .add(m)
            .replace()
            .execute()
            .await
            .map_err(|e| nl_err(format!("set default route via {gw}"), e))
    }

    /// Removes the default route of the family; succeeds if there is none.
    pub async fn del_default(&self, v6: bool) -> Result<()> {
        let m = if v6 {
            RouteMessageBuilder::<Ipv6Addr>::new().build()
        } else {
            RouteMessageBuilder::<Ipv4Addr>::new().build()
        };
        ok_if_gone(
            self.handle
                .route()
                .del(m)
                .execute()
                .await
                .map_err(|e| nl_err("remove default route", e)),
        )
    }

    /// The destination prefixes of the main table (both families).
    pub async fn routed_prefixes(&self) -> Result<Vec<IpNet>> {
        let mut out = Vec::new();
        for v6 in [false, true] {
            let m = if v6 {
                RouteMessageBuilder::<Ipv6Addr>::new().build()
            } else {
                RouteMessageBuilder::<Ipv4Addr>::new().build()
            };
            let mut s = self.handle.route().get(m).execute();
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
        }
        Ok(out)
    }
}
