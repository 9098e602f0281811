//! Links on top of a lower device: macvlan and ipvlan endpoints created straight inside a
//! sandbox, 802.1Q sub-interfaces, sink devices (dummy, ifb) as the parent of an isolated
//! segment, and the probe that tells whether the kernel has a link kind at all.

use super::Nl;
use crate::error::{nl_err, Result};
use netlink_packet_route::link::{InfoKind, IpVlanMode, MacVlanMode};
use rtnetlink::{LinkIpVlan, LinkMacVlan, LinkMessageBuilder, LinkUnspec, LinkVlan};
use std::os::fd::AsRawFd;

/// The kind of an endpoint device on a parent link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LowerKind {
    /// macvlan in this mode.
    MacVlan(MacVlanMode),
    /// ipvlan in this mode (the parent's MAC, one per parent).
    IpVlan(IpVlanMode),
}

/// An endpoint device on `parent`, created directly inside another namespace.
#[derive(Debug)]
pub struct LowerSpec<'a> {
    /// Its name inside the target namespace.
    pub name: &'a str,
    /// Index of the parent link in this namespace.
    pub parent: u32,
    /// macvlan or ipvlan, with the mode.
    pub kind: LowerKind,
    /// MAC (macvlan only).
    pub mac: Option<[u8; 6]>,
    /// The namespace it is created in.
    pub ns: &'a std::fs::File,
}

impl Nl {
    /// Creates a macvlan or ipvlan device on a parent of this namespace, registered directly
    /// in the target namespace (no move between namespaces, which costs an RCU barrier).
    pub async fn add_lower(&self, s: &LowerSpec<'_>) -> Result<()> {
        let fd = s.ns.as_raw_fd();
        let (what, m) = match s.kind {
            LowerKind::MacVlan(mode) => {
                let mut b = LinkMacVlan::new(s.name, s.parent, mode).setns_by_fd(fd);
                if let Some(mac) = s.mac {
                    b = b.address(mac.to_vec());
                }
                ("macvlan", b.build())
            }
            // The parent's MAC and MTU, as the kernel gives them.
            LowerKind::IpVlan(mode) => (
                "ipvlan",
                LinkIpVlan::new(s.name, s.parent, mode)
                    .setns_by_fd(fd)
                    .build(),
            ),
        };
        self.handle
            .link()
            .add(m)
            .execute()
            .await
            .map_err(|e| nl_err(format!("create {what} {} on link {}", s.name, s.parent), e))
    }

    /// Creates the 802.1Q sub-interface `name` of `parent` for VLAN `id`.
    pub async fn add_vlan(&self, name: &str, parent: u32, id: u16) -> Result<()> {
        let m = LinkVlan::new(name, parent, id).build();
        self.handle
            .link()
            .add(m)
            .execute()
            .await
            .map_err(|e| nl_err(format!("create VLAN {id} sub-interface {name}"), e))
    }

    /// Creates a link of a kind that drops what it is given (dummy, ifb), down (the caller
    /// marks it and brings it up): the parent of a segment with no way out.
    pub async fn add_sink(&self, name: &str, kind: &str) -> Result<()> {
        let k = match kind {
            "dummy" => InfoKind::Dummy,
            "ifb" => InfoKind::Ifb,
            other => InfoKind::Other(other.to_owned()),
        };
        let m = LinkMessageBuilder::<LinkUnspec>::new_with_info_kind(k)
            .name(name.to_owned())
            .build();
        self.handle
            .link()
            .add(m)
            .execute()
            .await
            .map_err(|e| nl_err(format!("create {kind} link {name}"), e))
    }

    /// True when the kernel has the link kind `kind`. Asks for one without its lower link:
    /// a kernel with the kind refuses the request as invalid, one without it answers "not
    /// supported". Creates nothing.
    pub async fn has_link_kind(&self, kind: ProbedKind) -> Result<bool> {
        let (k, name) = match kind {
            ProbedKind::Vlan => (InfoKind::Vlan, "vlan"),
            ProbedKind::MacVlan => (InfoKind::MacVlan, "macvlan"),
            ProbedKind::IpVlan => (InfoKind::IpVlan, "ipvlan"),
        };
        let m = LinkMessageBuilder::<LinkUnspec>::new_with_info_kind(k)
            .name("plumbprobe0".to_owned())
            .build();
        match self.handle.link().add(m).execute().await {
            Err(e) => {
                let e = nl_err(format!("probe link kind {name}"), e);
                Ok(!e.is_unsupported())
            }
            // Not what these kinds do without a lower link; if it happened, undo it.
            Ok(()) => {
                let _ = self.del_link_by_name("plumbprobe0").await;
                Ok(true)
            }
        }
    }
}

/// Link kinds [`Nl::has_link_kind`] can probe (those that need a lower link, so that the probe
/// never creates one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbedKind {
    /// 802.1Q sub-interfaces (module 8021q).
    Vlan,
    /// macvlan.
    MacVlan,
    /// ipvlan.
    IpVlan,
}
