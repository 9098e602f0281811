//! plumb-drivers: the built-in network drivers.
//!
//! - [`bridge::BridgeDriver`]: a Linux bridge per network, a veth per endpoint, nftables for
//!   isolation, masquerade and ICC.
//! - [`overlay::OverlayDriver`]: one network across hosts, VXLAN over the underlay, peers
//!   programmed from the cluster store.
//! - [`lower::LowerDriver`]: macvlan and ipvlan, endpoint devices on a parent link made
//!   straight inside the sandbox.
//! - [`passive::PassiveDriver`]: `host` (sandboxes share the host's stack) and `null`
//!   (loopback only).

pub mod bridge;
pub mod lower;
pub mod overlay;
pub mod passive;
