//! The bridge driver's options (`-o key=value`), parsed and checked once.

use plumb_core::model::Network;
use plumb_core::BoxError;
use plumb_linux::nft::GatewayMode;

/// Bridge name option.
pub const NAME: &str = "com.docker.network.bridge.name";
/// MTU option.
pub const MTU: &str = "com.docker.network.driver.mtu";
/// Inter-container communication option.
pub const ICC: &str = "com.docker.network.bridge.enable_icc";
/// Masquerade option.
pub const MASQUERADE: &str = "com.docker.network.bridge.enable_ip_masquerade";
/// Marks the predefined bridge network.
pub const DEFAULT_BRIDGE: &str = "com.docker.network.bridge.default_bridge";
/// Default host address for published ports (accepted, used by port publishing).
pub const HOST_BINDING: &str = "com.docker.network.bridge.host_binding_ipv4";
/// How IPv4 meets the outside: nat, nat-unprotected or routed.
pub const GATEWAY_MODE_V4: &str = "com.docker.network.bridge.gateway_mode_ipv4";
/// How IPv6 meets the outside: nat, nat-unprotected or routed.
pub const GATEWAY_MODE_V6: &str = "com.docker.network.bridge.gateway_mode_ipv6";

/// The bridge options of one network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeOptions {
    /// The bridge's name.
    pub name: String,
    /// MTU of the bridge and its veths.
    pub mtu: Option<u32>,
    /// Containers on the bridge may talk to each other.
    pub icc: bool,
    /// Egress is masqueraded.
    pub masquerade: bool,
    /// IPv4's gateway mode.
    pub gateway4: GatewayMode,
    /// IPv6's gateway mode.
    pub gateway6: GatewayMode,
}

fn parse_gateway_mode(key: &str, v: &str) -> Result<GatewayMode, BoxError> {
    match v {
        "nat" => Ok(GatewayMode::Nat),
        "nat-unprotected" => Ok(GatewayMode::NatUnprotected),
        "routed" => Ok(GatewayMode::Routed),
        _ => Err(format!("option {key}={v:?}: expected nat, nat-unprotected or routed").into()),
    }
}

fn parse_bool(key: &str, v: &str) -> Result<bool, BoxError> {
    match v {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => Err(format!("option {key}={v:?}: expected true or false").into()),
    }
}

/// Checks a kernel interface name: 1-15 bytes, no '/', ':' or whitespace.
pub fn valid_ifname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 15
        && name != "."
        && name != ".."
        && !name
            .bytes()
            .any(|b| b == b'/' || b == b':' || b.is_ascii_whitespace() || b == 0)
}

impl BridgeOptions {
    /// Reads the options of `network`, naming the first bad one.
    pub fn of(network: &Network) -> Result<Self, BoxError> {
        let opts = &network.spec.options;
        for key in opts.keys() {
            let ours = key.starts_with("com.docker.network.bridge.")
                || key.starts_with("com.docker.network.driver.");
            let known = [
                NAME,
                MTU,
                ICC,
                MASQUERADE,
                DEFAULT_BRIDGE,
                HOST_BINDING,
                GATEWAY_MODE_V4,
                GATEWAY_MODE_V6,
            ];
            if ours && !known.contains(&key.as_str()) {
                return Err(format!(
                    "option {key} is not supported by the bridge driver (supported: {})",
                    known.join(", ")
                )
                .into());
            }
        }
        let name = match opts.get(NAME) {
            Some(n) if valid_ifname(n) => n.clone(),
            Some(n) => {
                return Err(format!(
                    "option {NAME}={n:?}: an interface name is 1-15 characters without '/', ':' or spaces"
                )
                .into())
            }
            None => format!("br-{}", network.id.short()),
        };
        let mtu = match opts.get(MTU) {
            Some(v) => match v.parse::<u32>() {
                Ok(m) if (68..=65535).contains(&m) => Some(m),
                _ => {
                    return Err(
                        format!("option {MTU}={v:?}: expected a number from 68 to 65535").into(),
                    )
                }
            },
            None => None,
        };
        let icc = opts
            .get(ICC)
            .map(|v| parse_bool(ICC, v))
            .transpose()?
            .unwrap_or(true);
        let masquerade = opts
            .get(MASQUERADE)
            .map(|v| parse_bool(MASQUERADE, v))
            .transpose()?
            .unwrap_or(true);
        if let Some(v) = opts.get(HOST_BINDING) {
            v.parse::<std::net::IpAddr>()
                .map_err(|_| format!("option {HOST_BINDING}={v:?}: expected an IP address"))?;
        }
        let mode = |key| {
            opts.get(key)
                .map(|v| parse_gateway_mode(key, v))
                .transpose()
                .map(Option::unwrap_or_default)
        };
        Ok(BridgeOptions {
            name,
            mtu,
            icc,
            masquerade,
            gateway4: mode(GATEWAY_MODE_V4)?,
            gateway6: mode(GATEWAY_MODE_V6)?,
        })
    }
}
