//! Docker's plugin protocol (v1, JSON over HTTP on a unix socket or TCP), so that network and
//! IPAM plugins written for Docker work with plumb unmodified.
//!
//! - [`discovery`]: where plugins are found (sockets and spec files, Docker's directories).
//! - [`client`]: activation and calls, with the tolerance real plugins need.
//! - [`manager`]: the plugins in use, activated lazily and cached; resolvers for the
//!   controller's driver and IPAM registries.
//! - [`remote_driver`], [`remote_ipam`]: plumb's driver traits spoken to a plugin.
//! - [`messages`]: every request and response of `NetworkDriver.*` and `IpamDriver.*`.
//! - [`server`]: a small kit for writing plugins in Rust.

pub mod client;
pub mod discovery;
pub mod manager;
pub mod messages;
pub mod remote_driver;
pub mod remote_ipam;
pub mod server;
mod transport;

pub use client::{CallError, PluginClient};
pub use discovery::{Discovery, PluginAddr};
pub use manager::{PluginInfo, Plugins};
