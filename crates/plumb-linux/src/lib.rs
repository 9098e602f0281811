//! plumb-linux: the Linux OS layer of plumb.
//!
//! - [`netns`]: create, enter (on helper threads only), bind and remove network namespaces.
//! - [`nl`]: rtnetlink operations on links, addresses and routes, through an [`nl::Nl`] socket
//!   opened inside the namespace it acts on; [`namespaces::Namespaces`] keeps one per namespace.
//! - [`nft`]: plumb's nftables tables and their element operations; [`nft_watch`] notices
//!   when someone flushes them.
//! - [`sysctl`], [`files`]: kernel knobs and a sandbox's resolv.conf and hosts.
//! - [`host_ports::HostPorts`]: published host ports held by bound sockets.
//! - [`sandbox::LinuxSandboxOs`]: plumb-core's `SandboxOs` contract on Linux.

pub mod error;
pub mod files;
pub mod host_ports;
pub mod namespaces;
pub mod netns;
pub mod nfnl;
pub mod nft;
pub mod nft_watch;
pub mod nl;
pub mod reaper;
pub mod sandbox;
pub mod sysctl;

pub use error::LinuxError;
