//! plumb-drivers: the built-in network drivers.
//!
//! - [`bridge::BridgeDriver`]: a Linux bridge per network, a veth per endpoint, nftables for
//!   isolation, masquerade and ICC.
//! - [`passive::PassiveDriver`]: `host` (sandboxes share the host's stack) and `null`
//!   (loopback only).

pub mod bridge;
pub mod passive;
