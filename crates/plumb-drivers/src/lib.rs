//! plumb-drivers: the built-in network drivers.
//!
//! - [`bridge::BridgeDriver`]: a Linux bridge per network, a veth per endpoint, nftables for
//!   isolation, masquerade and ICC.
//! - [`overlay::OverlayDriver`]: one network across hosts, VXLAN over the underlay, peers
//!   programmed from the cluster store.
//! - [`passive::PassiveDriver`]: `host` (sandboxes share the host's stack) and `null`
//!   (loopback only).

pub mod bridge;
pub mod overlay;
pub mod passive;
