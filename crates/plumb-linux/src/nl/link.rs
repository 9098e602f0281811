//! Links: bridges, veth pairs, state, names, deletion, listing.

use super::{ok_if_gone, Nl};
use crate::error::{nl_err, Result};
use futures::TryStreamExt;
use netlink_packet_route::link::InfoBridgePort;
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo as NlLinkInfo, LinkMessage,
};
use rtnetlink::{LinkBridge, LinkBridgePort, LinkMessageBuilder, LinkUnspec, LinkVeth, LinkVxlan};
use std::os::fd::AsRawFd;

/// What a link dump tells about one link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkInfo {
    /// Interface index.
    pub index: u32,
    /// Name.
    pub name: String,
    /// Kind (bridge, veth, ...), when the kernel reports one.
    pub kind: Option<String>,
    /// Index of the bridge it is enslaved to.
    pub master: Option<u32>,
    /// MAC address.
    pub mac: Option<[u8; 6]>,
    /// Administratively up.
    pub up: bool,
    /// The link's alias (IFLA_IFALIAS), which plumb uses to mark links it made.
    pub alias: Option<String>,
    /// MTU.
    pub mtu: Option<u32>,
}

/// A veth pair whose peer is created directly inside another namespace.
#[derive(Debug, Clone)]
pub struct VethSpec<'a> {
    /// Name of the end in this namespace.
    pub host_name: &'a str,
    /// Name of the peer inside the target namespace.
    pub peer_name: &'a str,
    /// The target namespace.
    pub peer_ns: &'a std::fs::File,
    /// MAC of the peer.
    pub peer_mac: Option<[u8; 6]>,
    /// MTU of both ends.
    pub mtu: Option<u32>,
    /// Bridge to enslave the host end to.
    pub master: Option<u32>,
    /// Bring the host end up at creation.
    pub host_up: bool,
}

fn info_of(m: &LinkMessage) -> LinkInfo {
    let mut li = LinkInfo {
        index: m.header.index,
        name: String::new(),
        kind: None,
        master: None,
        mac: None,
        up: m.header.flags.contains(LinkFlags::Up),
        alias: None,
        mtu: None,
    };
    for a in &m.attributes {
        match a {
            LinkAttribute::IfName(n) => li.name = n.clone(),
            LinkAttribute::Controller(i) => li.master = Some(*i),
            LinkAttribute::IfAlias(a) => li.alias = Some(a.clone()),
            LinkAttribute::Mtu(m) => li.mtu = Some(*m),
            LinkAttribute::Address(b) if b.len() == 6 => {
                let mut mac = [0u8; 6];
                mac.copy_from_slice(b);
                li.mac = Some(mac);
            }
            LinkAttribute::LinkInfo(infos) => {
                for i in infos {
                    if let NlLinkInfo::Kind(k) = i {
                        li.kind = Some(k.to_string());
                    }
                }
            }
            _ => {}
        }
    }
    li
}

impl Nl {
    /// The link called `name`, if it exists.
    pub async fn link(&self, name: &str) -> Result<Option<LinkInfo>> {
        let mut s = self
            .handle
            .link()
            .get()
            .match_name(name.to_owned())
            .execute();
        match s.try_next().await {
            Ok(Some(m)) => Ok(Some(info_of(&m))),
            Ok(None) => Ok(None),
            Err(e) => {
                let e = nl_err(format!("look up link {name}"), e);
                if e.is_not_found() {
                    Ok(None)
                } else {
                    Err(e)
                }
            }
        }
    }

    /// Every link of the namespace.
    pub async fn links(&self) -> Result<Vec<LinkInfo>> {
        self.dump(|| async {
            let mut s = self.handle.link().get().execute();
            let mut out = Vec::new();
            while let Some(m) = s.try_next().await.map_err(|e| nl_err("list links", e))? {
                out.push(info_of(&m));
            }
            Ok(out)
        })
        .await
    }

    /// Creates a bridge, up, with a fixed MAC, an optional MTU and multicast snooping off.
    /// The fixed MAC keeps the gateway's address stable as ports come and go (and spares the
    /// kernel a bridge-id walk over all ports on every port added); without snooping,
    /// multicast is flooded like broadcast instead of costing per-port timers.
    pub async fn add_bridge(&self, name: &str, mac: [u8; 6], mtu: Option<u32>) -> Result<()> {
        let mut b = LinkBridge::new(name)
            .mcast_snooping(false)
            .address(mac.to_vec())
            .up();
        if let Some(m) = mtu {
            b = b.mtu(m);
        }
        self.handle
            .link()
            .add(b.build())
            .execute()
            .await
            .map_err(|e| nl_err(format!("create bridge {name}"), e))
    }

    /// Creates a veth pair with its peer in another namespace. The host end comes up if asked;
    /// the peer stays down (the kernel refuses to bring it up at creation: ENOTCONN).
    ///
    /// Both ends get one transmit and one receive queue. The kernel's default for veth is a
    /// receive queue per possible CPU, each a kobject with its sysfs files; those queues only
    /// serve XDP, and registering them was about 45% of the pair's creation time here.
    pub async fn add_veth(&self, v: &VethSpec<'_>) -> Result<()> {
        let mut peer = LinkMessageBuilder::<LinkUnspec>::new()
            .name(v.peer_name.to_owned())
            .setns_by_fd(v.peer_ns.as_raw_fd())
            .append_extra_attribute(LinkAttribute::NumTxQueues(1))
            .append_extra_attribute(LinkAttribute::NumRxQueues(1));
        if let Some(mac) = v.peer_mac {
            peer = peer.address(mac.to_vec());
        }
        if let Some(m) = v.mtu {
            peer = peer.mtu(m);
        }
        let mut b = LinkMessageBuilder::<LinkVeth>::new_with_info_kind(InfoKind::Veth)
            .name(v.host_name.to_owned())
            .set_info_data(InfoData::Veth(InfoVeth::Peer(peer.build())))
            .append_extra_attribute(LinkAttribute::NumTxQueues(1))
            .append_extra_attribute(LinkAttribute::NumRxQueues(1));
        if v.host_up {
            b = b.up();
        }
        if let Some(m) = v.mtu {
            b = b.mtu(m);
        }
        if let Some(master) = v.master {
            b = b.controller(master);
        }
        self.handle
            .link()
            .add(b.build())
            .execute()
            .await
            .map_err(|e| {
                nl_err(
                    format!("create veth {} (peer {})", v.host_name, v.peer_name),
                    e,
                )
            })
    }

    /// Creates a VXLAN device for `vni` (UDP 4789, source `local`, no learning, ARP answered
    /// from its neighbour table) whose socket lives in this namespace, and places the
    /// device in the namespace `into`.
    pub async fn add_vxlan(
        &self,
        name: &str,
        vni: u32,
        local: std::net::IpAddr,
        mtu: u32,
        into: &std::fs::File,
    ) -> Result<()> {
        let mut b = LinkVxlan::new(name, vni)
            .port(4789)
            .learning(false)
            .proxy(true)
            .mtu(mtu);
        b = match local {
            std::net::IpAddr::V4(a) => b.local(a),
            std::net::IpAddr::V6(a) => b.local6(a),
        };
        let m = b.setns_by_fd(into.as_raw_fd()).build();
        self.handle
            .link()
            .add(m)
            .execute()
            .await
            .map_err(|e| nl_err(format!("create vxlan {name} (VNI {vni})"), e))
    }

    /// Sets a link up or down.
    pub async fn set_up(&self, index: u32, up: bool) -> Result<()> {
        let b = LinkUnspec::new_with_index(index);
        let b = if up { b.up() } else { b.down() };
        self.handle
            .link()
            .set(b.build())
            .execute()
            .await
            .map_err(|e| {
                nl_err(
                    format!("set link {index} {}", if up { "up" } else { "down" }),
                    e,
                )
            })
    }

    /// Sets the link called `name` up.
    pub async fn set_up_by_name(&self, name: &str) -> Result<()> {
        let m = LinkUnspec::new_with_name(name).up().build();
        self.set_link(m, || format!("set link {name} up")).await
    }

    /// Enslaves a link to a bridge.
    pub async fn set_master(&self, index: u32, master: u32) -> Result<()> {
        let m = LinkUnspec::new_with_index(index).controller(master).build();
        self.set_link(m, || format!("attach link {index} to bridge {master}"))
            .await
    }

    /// Marks a bridge port isolated: it reaches the bridge but no other isolated port.
    pub async fn set_port_isolated(&self, index: u32, isolated: bool) -> Result<()> {
        let m = LinkBridgePort::new(index)
            .append_info_data(InfoBridgePort::Isolated(isolated))
            .build();
        self.handle
            .link()
            .set_port(m)
            .execute()
            .await
            .map_err(|e| nl_err(format!("isolate bridge port {index}"), e))
    }

    /// Sends one RTM_SETLINK; `op` names the change in the error.
    async fn set_link<S: Into<String>>(
        &self,
        m: LinkMessage,
        op: impl FnOnce() -> S,
    ) -> Result<()> {
        self.handle
            .link()
            .set(m)
            .execute()
            .await
            .map_err(|e| nl_err(op(), e))
    }

    /// Sets a link's alias (the kernel ignores an alias given at creation).
    pub async fn set_alias(&self, index: u32, alias: &str) -> Result<()> {
        let m = LinkUnspec::new_with_index(index)
            .alias(alias.to_owned())
            .build();
        self.set_link(m, || format!("set alias of link {index}"))
            .await
    }

    /// Renames a link (it must be down).
    pub async fn rename(&self, index: u32, name: &str) -> Result<()> {
        let m = LinkUnspec::new_with_index(index)
            .name(name.to_owned())
            .build();
        self.set_link(m, || format!("rename link {index} to {name}"))
            .await
    }

    /// Moves a link (down) into the namespace `into`, renamed to `name`, with `mac` set when
    /// given: one RTM_SETLINK, so that the name never clashes in either namespace.
    pub async fn move_link(
        &self,
        index: u32,
        into: &std::fs::File,
        name: &str,
        mac: Option<[u8; 6]>,
    ) -> Result<()> {
        let mut b = LinkUnspec::new_with_index(index)
            .down()
            .name(name.to_owned())
            .setns_by_fd(into.as_raw_fd());
        if let Some(mac) = mac {
            b = b.address(mac.to_vec());
        }
        self.set_link(b.build(), || {
            format!("move link {index} into a sandbox as {name}")
        })
        .await
    }

    /// Deletes a link; succeeds if it is gone already.
    pub async fn del_link(&self, index: u32) -> Result<()> {
        ok_if_gone(
            self.handle
                .link()
                .del(index)
                .execute()
                .await
                .map_err(|e| nl_err(format!("delete link {index}"), e)),
        )
    }

    /// Deletes the link called `name`, if it exists.
    pub async fn del_link_by_name(&self, name: &str) -> Result<()> {
        match self.link(name).await? {
            Some(l) => self.del_link(l.index).await,
            None => Ok(()),
        }
    }
}
