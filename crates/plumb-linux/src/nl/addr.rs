//! Addresses on links.

use super::{ok_if_exists, Nl};
use crate::error::{nl_err, Result};
use ipnet::IpNet;
use netlink_packet_route::address::AddressHeaderFlags;

impl Nl {
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
