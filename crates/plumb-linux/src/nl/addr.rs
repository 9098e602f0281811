//! Addresses on links.

use super::{ok_if_exists, ok_if_gone, Nl};
use crate::error::{nl_err, Result};
use futures::TryStreamExt;
use ipnet::IpNet;
use netlink_packet_route::address::{AddressAttribute, AddressHeaderFlags, AddressMessage};

impl Nl {
    /// Adds `addrs` to the link called `name` (which must exist) and brings it up; returns its
    /// index.
    pub async fn address_and_up(&self, name: &str, addrs: &[IpNet]) -> Result<u32> {
        let idx = self
            .link(name)
            .await?
            .ok_or_else(|| crate::error::LinuxError::Netlink {
                op: format!("find interface {name}"),
                message: "missing after it was made".into(),
                errno: Some(libc::ENODEV),
            })?
            .index;
        for a in addrs {
            self.add_addr(idx, *a).await?;
        }
        self.set_up(idx, true).await?;
        Ok(idx)
    }

    /// Adds `addr` to link `index`; IPv6 addresses skip duplicate address detection (plumb's
    /// IPAM guarantees uniqueness). Succeeds if the address is there already.
    pub async fn add_addr(&self, index: u32, addr: IpNet) -> Result<()> {
        let mut req = self
            .handle
            .address()
            .add(index, addr.addr(), addr.prefix_len());
        if addr.addr().is_ipv6() {
            req.message_mut().header.flags |= AddressHeaderFlags::Nodad;
        }
        ok_if_exists(
            req.execute()
                .await
                .map_err(|e| nl_err(format!("add address {addr} to link {index}"), e)),
        )
    }
}

/// The address and prefix an address message carries, if it is an IP address.
fn ipnet_of(m: &AddressMessage) -> Option<IpNet> {
    m.attributes.iter().find_map(|a| match a {
        AddressAttribute::Address(ip) => IpNet::new(*ip, m.header.prefix_len).ok(),
        _ => None,
    })
}

impl Nl {
    /// Every address of the namespace as (link index, address with prefix).
    pub async fn addresses(&self) -> Result<Vec<(u32, IpNet)>> {
        Ok(self
            .address_messages()
            .await?
            .iter()
            .filter_map(|m| ipnet_of(m).map(|a| (m.header.index, a)))
            .collect())
    }

    async fn address_messages(&self) -> Result<Vec<AddressMessage>> {
        self.dump(|| async {
            let mut s = self.handle.address().get().execute();
            let mut out = Vec::new();
            while let Some(m) = s
                .try_next()
                .await
                .map_err(|e| nl_err("list addresses", e))?
            {
                out.push(m);
            }
            Ok(out)
        })
        .await
    }

    /// Removes `addr` from link `index`; succeeds if it is not there.
    pub async fn del_addr(&self, index: u32, addr: IpNet) -> Result<()> {
        let found = self
            .address_messages()
            .await?
            .into_iter()
            .find(|m| m.header.index == index && ipnet_of(m) == Some(addr));
        let Some(m) = found else { return Ok(()) };
        ok_if_gone(
            self.handle
                .address()
                .del(m)
                .execute()
                .await
                .map_err(|e| nl_err(format!("remove address {addr} from link {index}"), e)),
        )
    }
}
