//! Static forwarding and neighbour entries: where a remote MAC lives (FDB entry on a VXLAN
//! device, pointing at the remote tunnel end) and which MAC an address has (neighbour entry,
//! answered locally by a VXLAN device in proxy mode).

use super::{ok_if_gone, Nl};
use crate::error::{nl_err, Result};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::AddressFamily;
use std::net::IpAddr;

fn mac_str(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn dst(ip: IpAddr) -> NeighbourAttribute {
    NeighbourAttribute::Destination(match ip {
        IpAddr::V4(a) => NeighbourAddress::Inet(a),
        IpAddr::V6(a) => NeighbourAddress::Inet6(a),
    })
}

impl Nl {
    /// Adds or replaces the FDB entry `mac -> remote` on the VXLAN device `index`.
    pub async fn fdb_replace(&self, index: u32, mac: [u8; 6], remote: IpAddr) -> Result<()> {
        let mut req = self
            .handle
            .neighbours()
            .add_bridge(index, &mac)
            .destination(remote)
            .flags(NeighbourFlags::Own)
            .state(NeighbourState::Permanent)
            .replace();
        req.message_mut().header.family = AddressFamily::Bridge;
        req.execute()
            .await
            .map_err(|e| nl_err(format!("fdb entry {} via {remote}", mac_str(&mac)), e))
    }

    /// Removes the FDB entry of `mac` on device `index`; succeeds if it is gone.
    pub async fn fdb_del(&self, index: u32, mac: [u8; 6], remote: IpAddr) -> Result<()> {
        let mut m = NeighbourMessage::default();
        m.header.family = AddressFamily::Bridge;
        m.header.ifindex = index;
        m.header.flags = NeighbourFlags::Own;
        m.header.state = NeighbourState::Permanent;
        m.attributes
            .push(NeighbourAttribute::LinkLayerAddress(mac.to_vec()));
        m.attributes.push(dst(remote));
        ok_if_gone(
            self.handle
                .neighbours()
                .del(m)
                .execute()
                .await
                .map_err(|e| nl_err(format!("remove fdb entry {}", mac_str(&mac)), e)),
        )
    }

    /// Adds or replaces the permanent neighbour entry `ip -> mac` on device `index`.
    pub async fn neigh_replace(&self, index: u32, ip: IpAddr, mac: [u8; 6]) -> Result<()> {
        self.handle
            .neighbours()
            .add(index, ip)
            .link_layer_address(&mac)
            .state(NeighbourState::Permanent)
            .replace()
            .execute()
            .await
            .map_err(|e| nl_err(format!("neighbour entry {ip} is {}", mac_str(&mac)), e))
    }

    /// Removes the neighbour entry of `ip` on device `index`; succeeds if it is gone.
    pub async fn neigh_del(&self, index: u32, ip: IpAddr) -> Result<()> {
        let mut m = NeighbourMessage::default();
        m.header.family = match ip {
            IpAddr::V4(_) => AddressFamily::Inet,
            IpAddr::V6(_) => AddressFamily::Inet6,
        };
        m.header.ifindex = index;
        m.attributes.push(dst(ip));
        ok_if_gone(
            self.handle
                .neighbours()
                .del(m)
                .execute()
                .await
                .map_err(|e| nl_err(format!("remove neighbour entry {ip}"), e)),
        )
    }
}
