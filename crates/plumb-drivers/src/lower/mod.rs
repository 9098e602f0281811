//! The macvlan and ipvlan drivers: containers as hosts of the parent's own segment. Each
//! endpoint is a macvlan (or ipvlan) device on the parent link, created directly inside the
//! sandbox, so that there is no veth, no bridge and no move between namespaces. plumb makes
//! the parent only where the user did not: an 802.1Q sub-interface `base.id` that does not
//! exist yet, or, for an internal network without a parent, a sink link (dummy, or ifb where
//! the kernel has no dummy) whose frames go nowhere. Those carry plumb's mark and go with the
//! network; a parent plumb did not make is never changed.
//!
//! The host cannot reach its own macvlan containers through the parent (the kernel hands
//! frames from a macvlan device to the parent's wire, not to the parent's own stack); a
//! macvlan interface of the host's own on the same parent is the usual way around it.

pub(crate) mod options;

pub use options::{Flavor, LowerOptions, Parent};

use crate::bridge::OWNER_MARK;
use async_trait::async_trait;
use options::Mode;
use plumb_core::driver::{Capabilities, InvalidInput, JoinInfo, NetworkDriver};
use plumb_core::model::{Endpoint, Network, Sandbox};
use plumb_core::{BoxError, NetworkId};
use plumb_linux::namespaces::Namespaces;
use plumb_linux::netns;
use plumb_linux::nl::{LowerKind, LowerSpec, ProbedKind};
use plumb_linux::reaper::Doomed;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The alias marking a parent link plumb made for `net`.
fn owner_mark(net: &Network) -> String {
    format!("{OWNER_MARK}{}", net.id)
}

/// The `macvlan` or `ipvlan` driver.
pub struct LowerDriver {
    flavor: Flavor,
    ns: Arc<Namespaces>,
    /// The parent link (name, index; 0 while it is missing) of every network created.
    parents: Mutex<HashMap<NetworkId, (String, u32)>>,
}

impl LowerDriver {
    /// A driver of `flavor` acting in the namespaces of `ns`; call from the host namespace.
    pub fn new(flavor: Flavor, ns: Arc<Namespaces>) -> Self {
        LowerDriver {
            flavor,
            ns,
            parents: Mutex::new(HashMap::new()),
        }
    }

    fn parents(&self) -> std::sync::MutexGuard<'_, HashMap<NetworkId, (String, u32)>> {
        self.parents.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn options(&self, net: &Network) -> Result<LowerOptions, BoxError> {
        LowerOptions::of(net, self.flavor)
    }

    /// The parent's index, from the table or (after a restart, before create_network ran
    /// again) from the kernel.
    async fn parent_index(&self, net: &Network) -> Result<u32, BoxError> {
        if let Some((_, i)) = self.parents().get(&net.id).filter(|(_, i)| *i != 0) {
            return Ok(*i);
        }
        let o = self.options(net)?;
        let l = self.ns.host().link(o.parent.name()).await?.ok_or_else(|| {
            InvalidInput::boxed(
                "Options[parent]",
                format!(
                    "parent interface {} of network {} is missing: bring it back (or remove the network)",
                    o.parent.name(),
                    net.spec.name
                ),
            )
        })?;
        self.parents()
            .insert(net.id.clone(), (o.parent.name().to_owned(), l.index));
        Ok(l.index)
    }

    /// Makes the parent where it is plumb's to make; returns its index, 0 for a parent of the
    /// user's that is missing (it went while plumbd was away: joins say so until it is back).
    async fn ensure_parent(&self, net: &Network, o: &LowerOptions) -> Result<u32, BoxError> {
        let host = self.ns.host();
        let name = o.parent.name();
        if let Some(l) = host.link(name).await? {
            // A sink of plumb's name for this network is plumb's even when a crash came
            // between its creation and its mark.
            if matches!(o.parent, Parent::Sink(_)) && l.alias.is_none() {
                host.set_alias(l.index, &owner_mark(net)).await?;
            }
            return Ok(l.index);
        }
        match &o.parent {
            Parent::Link(_) => return Ok(0),
            Parent::Vlan { name, base, id } => {
                let b = host.link(base).await?.ok_or_else(|| {
                    InvalidInput::boxed(
                        "Options[parent]",
                        format!("no interface {base} on this host for VLAN sub-interface {name}"),
                    )
                })?;
                host.add_vlan(name, b.index, *id).await?;
            }
            Parent::Sink(name) => {
                // Docker's kind for this is dummy; kernels without it (this project's CI) have
                // ifb, which drops what it is given just the same.
                match host.add_sink(name, "dummy").await {
                    Err(e) if e.is_unsupported() => host.add_sink(name, "ifb").await?,
                    r => r?,
                }
            }
        }
        let l = host
            .link(name)
            .await?
            .ok_or_else(|| format!("parent {name} vanished after creation"))?;
        // The kernel ignores an alias given at creation: the mark is set now. (A crash in
        // between leaves an unmarked sink, which create_network marks on the next try, or an
        // unmarked VLAN sub-interface, which is then left alone as if it were the user's.)
        let marked = async {
            host.set_alias(l.index, &owner_mark(net)).await?;
            host.set_up(l.index, true).await
        };
        if let Err(e) = marked.await {
            // Nothing half-made: the link this call created goes again.
            let _ = host.del_link(l.index).await;
            return Err(e.into());
        }
        Ok(l.index)
    }
}

#[async_trait]
impl NetworkDriver for LowerDriver {
    fn name(&self) -> &str {
        self.flavor.name()
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            needs_addresses: true,
            ..Capabilities::default()
        }
    }

    fn check_options(&self, network: &Network) -> Result<BTreeMap<String, String>, BoxError> {
        let o = self.options(network)?;
        let name = o.parent.name().to_owned();
        let taken = self
            .parents()
            .iter()
            .any(|(id, (p, _))| *p == name && *id != network.id);
        if taken {
            return Err(InvalidInput::boxed(
                "Options[parent]",
                format!(
                    "another {} network uses parent {name} already: one network per parent (use a VLAN sub-interface, parent={name}.ID, for another)",
                    self.flavor.name()
                ),
            ));
        }
        Ok(BTreeMap::from([(options::PARENT.to_owned(), name)]))
    }

    fn notes(&self, net: &Network) -> Vec<String> {
        match (self.flavor, self.options(net).map(|o| o.parent)) {
            (_, Ok(Parent::Sink(_))) => Vec::new(),
            (Flavor::MacVlan, Ok(p)) => vec![format!(
                "this host cannot reach the network's containers through {0} (the kernel sends a macvlan device's frames to {0}'s wire, not to its own stack); to reach them, give the host a macvlan interface of its own on {0} with an address of the subnet",
                p.name()
            )],
            _ => Vec::new(),
        }
    }

    async fn probe(&self, net: &Network) -> Result<(), BoxError> {
        let o = self
            .options(net)
            .map_err(|e| InvalidInput::boxed("Options", e.to_string()))?;
        let host = self.ns.host();
        let (kind, config, instead) = match self.flavor {
            Flavor::MacVlan => (
                ProbedKind::MacVlan,
                "CONFIG_MACVLAN, module macvlan",
                "-d bridge",
            ),
            Flavor::IpVlan => (
                ProbedKind::IpVlan,
                "CONFIG_IPVLAN, module ipvlan",
                "-d macvlan or -d bridge",
            ),
        };
        if !host.has_link_kind(kind).await? {
            return Err(InvalidInput::boxed(
                "Driver",
                format!(
                    "this kernel has no {} support ({config}): use a kernel with it, or {instead}",
                    self.flavor.name()
                ),
            ));
        }
        match &o.parent {
            Parent::Link(n) => match host.link(n).await? {
                None => Err(InvalidInput::boxed(
                    "Options[parent]",
                    format!("no interface {n} on this host"),
                )),
                Some(l) if l.name == "lo" || l.kind.as_deref() == Some("macvlan") => {
                    Err(InvalidInput::boxed(
                        "Options[parent]",
                        format!("{n} cannot be a parent: give the host's Ethernet-like interface"),
                    ))
                }
                Some(_) => Ok(()),
            },
            Parent::Vlan { name, base, .. } => {
                if host.link(name).await?.is_some() {
                    return Ok(());
                }
                if host.link(base).await?.is_none() {
                    return Err(InvalidInput::boxed(
                        "Options[parent]",
                        format!("no interface {base} on this host for VLAN sub-interface {name}"),
                    ));
                }
                if !host.has_link_kind(ProbedKind::Vlan).await? {
                    return Err(InvalidInput::boxed(
                        "Options[parent]",
                        format!(
                            "{name} is an 802.1Q VLAN sub-interface, and this kernel has no 802.1Q VLAN support (CONFIG_VLAN_8021Q, module 8021q) to create it: load 8021q, or give an interface that exists"
                        ),
                    ));
                }
                Ok(())
            }
            Parent::Sink(_) => Ok(()),
        }
    }

    async fn create_network(&self, net: &Network) -> Result<(), BoxError> {
        let o = self.options(net)?;
        let index = self.ensure_parent(net, &o).await?;
        if index == 0 {
            // Probe checked it at creation: it went while plumbd was away. plumbd starts anyway.
            tracing::warn!(network = %net.spec.name, parent = %o.parent.name(), "the parent interface is missing");
        }
        self.parents()
            .insert(net.id.clone(), (o.parent.name().to_owned(), index));
        Ok(())
    }

    async fn delete_network(&self, net: &Network) -> Result<(), BoxError> {
        self.parents().remove(&net.id);
        let o = self.options(net)?;
        let host = self.ns.host();
        if let Some(l) = host.link(o.parent.name()).await? {
            if l.alias.as_deref() == Some(owner_mark(net).as_str()) {
                host.set_up(l.index, false).await?;
                self.ns.reaper().reap(Doomed::Index(l.index));
            }
        }
        Ok(())
    }

    async fn join(
        &self,
        net: &Network,
        ep: &Endpoint,
        sb: &Sandbox,
        ifname: &str,
    ) -> Result<JoinInfo, BoxError> {
        let mut ph = plumb_core::timing::Phases::default();
        ph.start();
        let o = self.options(net)?;
        let parent = self.parent_index(net).await?;
        ph.mark("parent");
        let snl = self.ns.get(Path::new(&sb.key)).await?;
        let sandbox_ns = netns::open(Path::new(&sb.key))?;
        ph.mark("open_ns");
        let kind = match o.mode {
            Mode::MacVlan(m) => LowerKind::MacVlan(m),
            Mode::IpVlan(m) => LowerKind::IpVlan(m),
        };
        let spec = LowerSpec {
            name: ifname,
            parent,
            kind,
            mac: ep.mac.map(|m| m.0),
            ns: &sandbox_ns,
        };
        match self.ns.host().add_lower(&spec).await {
            Ok(()) => {}
            // Restoring after a restart: the device is there already.
            Err(e) if e.is_exists() && snl.link(ifname).await?.is_some() => {}
            Err(e) => return Err(e.into()),
        }
        ph.mark("add_device");
        let addrs: Vec<_> = [ep.ipv4, ep.ipv6].into_iter().flatten().collect();
        if let Err(e) = snl.address_and_up(ifname, &addrs).await {
            if let Some(l) = snl.link(ifname).await.ok().flatten() {
                let _ = snl.del_link(l.index).await;
            }
            return Err(e.into());
        }
        ph.mark("addr_up");
        ph.finish("lower_join");
        Ok(JoinInfo::pool_gateways(net))
    }

    async fn leave(&self, _net: &Network, ep: &Endpoint, sb: &Sandbox) -> Result<(), BoxError> {
        let Some(ifname) = &ep.ifname else {
            return Ok(());
        };
        if !netns::is_netns(Path::new(&sb.key)) {
            return Ok(());
        }
        let snl = self.ns.get(Path::new(&sb.key)).await?;
        let Some(l) = snl.link(ifname).await? else {
            return Ok(());
        };
        // Quiet and out of the way at once; the deletion (an RCU grace period) runs after
        // the answer, on a thread inside the sandbox's namespace.
        snl.set_up(l.index, false).await?;
        snl.rename(l.index, &format!("gone{:08x}", rand::random::<u32>()))
            .await?;
        let ns = PathBuf::from(&sb.key);
        let index = l.index;
        tokio::spawn(async move {
            let done = netns::run_in(Some(ns), move || {
                plumb_linux::reaper::delete_here(&Doomed::Index(index))
            })
            .await;
            if let Err(e) = done {
                tracing::debug!(error = %e, "a left endpoint's device was not deleted (its sandbox went first?)");
            }
        });
        Ok(())
    }

    async fn sweep(&self, networks: &[&Network], _endpoints: &[&Endpoint]) -> Result<(), BoxError> {
        // Parents plumb made for networks that are gone. (Endpoint devices live in sandboxes
        // and go with them or with their endpoint's removal.)
        let marks: std::collections::HashSet<String> =
            networks.iter().map(|n| owner_mark(n)).collect();
        let host = self.ns.host();
        for l in host.links().await? {
            let made = matches!(l.kind.as_deref(), Some("dummy" | "ifb" | "vlan"))
                && l.alias
                    .as_deref()
                    .is_some_and(|a| a.starts_with(OWNER_MARK));
            if made && !l.alias.as_ref().is_some_and(|a| marks.contains(a)) {
                tracing::info!(link = %l.name, "removing leftover parent link");
                host.del_link(l.index).await?;
            }
        }
        Ok(())
    }
}
