//! The options of macvlan and ipvlan networks (`-o key=value`), parsed and checked once.

use crate::bridge::options::valid_ifname;
use plumb_core::model::Network;
use plumb_core::BoxError;
use plumb_linux::nl::{IpVlanMode, MacVlanMode};

/// The parent interface option.
pub const PARENT: &str = "parent";
/// macvlan's mode option.
pub const MACVLAN_MODE: &str = "macvlan_mode";
/// ipvlan's mode option.
pub const IPVLAN_MODE: &str = "ipvlan_mode";
/// Prefix of the sink links plumb makes as the parent of an internal network without one.
pub const SINK_PREFIX: &str = "pm-";

/// Which driver: the two share everything but the device kind and its mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// `-d macvlan`.
    MacVlan,
    /// `-d ipvlan`.
    IpVlan,
}

impl Flavor {
    /// The driver's name.
    pub fn name(self) -> &'static str {
        match self {
            Flavor::MacVlan => "macvlan",
            Flavor::IpVlan => "ipvlan",
        }
    }
}

/// The device mode of a network's endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A macvlan mode.
    MacVlan(MacVlanMode),
    /// An ipvlan mode.
    IpVlan(IpVlanMode),
}

/// Where the parent comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parent {
    /// An existing link, given with `-o parent=` or the host's default route's.
    Link(String),
    /// An 802.1Q sub-interface `base.id`: used if it exists, made (and later removed) by plumb
    /// if not.
    Vlan {
        /// The sub-interface's name (`base.id`).
        name: String,
        /// The link it is on.
        base: String,
        /// The VLAN id, 1-4094.
        id: u16,
    },
    /// An internal network without a parent: a sink link plumb makes (`pm-<network>`).
    Sink(String),
}

impl Parent {
    /// The parent link's name.
    pub fn name(&self) -> &str {
        match self {
            Parent::Link(n) | Parent::Sink(n) => n,
            Parent::Vlan { name, .. } => name,
        }
    }
}

/// The options of one macvlan or ipvlan network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LowerOptions {
    /// The parent.
    pub parent: Parent,
    /// The endpoints' device mode.
    pub mode: Mode,
}

/// The interface of the host's IPv4 (else IPv6) default route, as this thread's namespace
/// sees it.
pub fn default_route_interface() -> Option<String> {
    let v4 = std::fs::read_to_string("/proc/net/route").unwrap_or_default();
    // Iface Destination Gateway Flags ...: the default route has destination 00000000.
    let from_v4 = v4.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.len() > 7 && f[1] == "00000000" && f[7] == "00000000").then(|| f[0].to_owned())
    });
    from_v4.or_else(|| {
        let v6 = std::fs::read_to_string("/proc/net/ipv6_route").unwrap_or_default();
        // dest dest_len src src_len next_hop metric refcnt use flags iface
        v6.lines().find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() == 10 && f[0].bytes().all(|b| b == b'0') && f[1] == "00" && f[9] != "lo")
                .then(|| f[9].to_owned())
        })
    })
}

/// Splits `base.id` into its base and VLAN id when it names an 802.1Q sub-interface.
fn vlan_of(name: &str) -> Option<(&str, u16)> {
    let (base, id) = name.rsplit_once('.')?;
    let id: u16 = id.parse().ok()?;
    (!base.is_empty() && (1..=4094).contains(&id)).then_some((base, id))
}

impl LowerOptions {
    /// Reads the options of `network` for `flavor`, naming the first bad one. The parent is
    /// the user's, else the one recorded at creation, else (internal) a sink of plumb's, else
    /// the interface of the host's default route.
    pub fn of(network: &Network, flavor: Flavor) -> Result<Self, BoxError> {
        let opts = &network.spec.options;
        let (mode_key, other) = match flavor {
            Flavor::MacVlan => (MACVLAN_MODE, IPVLAN_MODE),
            Flavor::IpVlan => (IPVLAN_MODE, MACVLAN_MODE),
        };
        if opts.contains_key(other) || opts.contains_key("ipvlan_flag") {
            return Err(format!(
                "option {}: not a {} option (supported: {PARENT}, {mode_key})",
                if opts.contains_key(other) {
                    other
                } else {
                    "ipvlan_flag"
                },
                flavor.name()
            )
            .into());
        }
        let mode = match (flavor, opts.get(mode_key).map(String::as_str)) {
            (Flavor::MacVlan, None | Some("bridge")) => Mode::MacVlan(MacVlanMode::Bridge),
            (Flavor::MacVlan, Some("private")) => Mode::MacVlan(MacVlanMode::Private),
            (Flavor::MacVlan, Some("vepa")) => Mode::MacVlan(MacVlanMode::Vepa),
            (Flavor::MacVlan, Some("passthru")) => Mode::MacVlan(MacVlanMode::Passthrough),
            (Flavor::IpVlan, None | Some("l2")) => Mode::IpVlan(IpVlanMode::L2),
            (Flavor::IpVlan, Some("l3")) => Mode::IpVlan(IpVlanMode::L3),
            (Flavor::IpVlan, Some("l3s")) => Mode::IpVlan(IpVlanMode::L3S),
            (_, Some(v)) => {
                let allowed = match flavor {
                    Flavor::MacVlan => "bridge, private, vepa or passthru",
                    Flavor::IpVlan => "l2, l3 or l3s",
                };
                return Err(format!("option {mode_key}={v:?}: expected {allowed}").into());
            }
        };
        let given = opts
            .get(PARENT)
            .or_else(|| network.driver_options.get(PARENT));
        let parent = match given {
            Some(p) if !valid_ifname(p) => {
                return Err(format!(
                    "option {PARENT}={p:?}: an interface name is 1-15 characters without '/', ':' or spaces"
                )
                .into())
            }
            Some(p) if p.starts_with(SINK_PREFIX) && network.spec.internal => {
                Parent::Sink(p.clone())
            }
            Some(p) => match vlan_of(p) {
                Some((base, id)) => Parent::Vlan {
                    name: p.clone(),
                    base: base.to_owned(),
                    id,
                },
                None => Parent::Link(p.clone()),
            },
            None if network.spec.internal => {
                Parent::Sink(format!("{SINK_PREFIX}{}", network.id.short()))
            }
            None => Parent::Link(default_route_interface().ok_or(
                "option parent: none given and the host has no default route to take it from: give -o parent=IFACE",
            )?),
        };
        Ok(LowerOptions { parent, mode })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vlan_names() {
        assert_eq!(vlan_of("eth0.10"), Some(("eth0", 10)));
        assert_eq!(vlan_of("bond0.4094"), Some(("bond0", 4094)));
        assert_eq!(vlan_of("eth0.0"), None);
        assert_eq!(vlan_of("eth0.4095"), None);
        assert_eq!(vlan_of(".10"), None);
        assert_eq!(vlan_of("eth0"), None);
        assert_eq!(vlan_of("my.nic"), None);
    }
}
