//! The network driver contract: what the controller asks of bridge, host, null and others.

use crate::error::BoxError;
use crate::model::{Endpoint, Network, Sandbox};
use async_trait::async_trait;
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};

/// What a driver tells the controller about itself.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// Endpoints get addresses from IPAM (false for host and null).
    pub needs_addresses: bool,
    /// Only one network of this driver may exist (host, null).
    pub singleton: bool,
    /// Endpoints of this driver join host-mode sandboxes only (host).
    pub host_mode: bool,
    /// Networks of this driver span hosts: their state lives in the cluster store (overlay).
    pub global: bool,
    /// The driver keeps its own state across plumbd restarts (a plugin): at start its
    /// networks are not created again nor its endpoints joined again.
    pub keeps_state: bool,
    /// Endpoints get their MAC address from the driver (a plugin) unless the user gives one.
    pub picks_mac: bool,
}

/// What a driver made of a new endpoint's interface: values it chose where the request left
/// them empty (a plugin may pick the MAC, or addresses when no IPAM gives any).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EndpointInterface {
    /// The MAC address.
    pub mac: Option<crate::model::MacAddr>,
    /// The IPv4 address with its prefix.
    pub ipv4: Option<ipnet::IpNet>,
    /// The IPv6 address with its prefix.
    pub ipv6: Option<ipnet::IpNet>,
}

/// How the API answers a failure of a driver's out-of-process part (a plugin).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PluginFailureKind {
    /// The plugin answered and said no: the request is refused (403).
    Refused,
    /// The plugin could not be reached, timed out, or answered something that is not its
    /// protocol: retry when it is fixed (503).
    Unavailable,
}

/// A failure of a plugin, with the plugin and the call named in `message`.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct PluginFailure {
    /// How to answer it.
    pub kind: PluginFailureKind,
    /// What happened, naming the plugin and the call.
    pub message: String,
}

/// What joining produced: the interface inside the sandbox and its gateways.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JoinInfo {
    /// IPv4 gateway this endpoint offers for the sandbox's default route.
    pub gateway_v4: Option<Ipv4Addr>,
    /// IPv6 gateway.
    pub gateway_v6: Option<Ipv6Addr>,
    /// The interface's name in the sandbox, when the driver chose another than asked for (a
    /// plugin's own prefix).
    pub ifname: Option<String>,
}

impl JoinInfo {
    /// The gateways of `network`'s pools (none for an internal network), as a driver whose
    /// endpoints route through the network's own gateways offers them.
    pub fn pool_gateways(network: &Network) -> Self {
        let mut info = JoinInfo::default();
        if !network.spec.internal {
            for p in &network.pools {
                match p.gateway {
                    Some(std::net::IpAddr::V4(g)) => info.gateway_v4 = Some(g),
                    Some(std::net::IpAddr::V6(g)) => info.gateway_v6 = Some(g),
                    None => {}
                }
            }
        }
        info
    }
}

/// A driver's refusal of what the user asked for (an option, a name), as opposed to a
/// failure: the controller answers it as an invalid parameter naming `field`.
#[derive(Debug, thiserror::Error)]
#[error("{reason}")]
pub struct InvalidInput {
    /// The field or option, as the API names it.
    pub field: String,
    /// What is wrong and what to do.
    pub reason: String,
}

impl InvalidInput {
    /// A boxed refusal, ready to return from a driver method.
    pub fn boxed(field: impl Into<String>, reason: impl Into<String>) -> BoxError {
        Box::new(InvalidInput {
            field: field.into(),
            reason: reason.into(),
        })
    }
}

/// A network driver.
#[async_trait]
pub trait NetworkDriver: Send + Sync {
    /// The driver's name, as users give it with `-d`.
    fn name(&self) -> &str;

    /// What the driver needs and offers.
    fn capabilities(&self) -> Capabilities;

    /// Checks the user's options before anything is allocated; returns options to record
    /// (such as a computed bridge name).
    fn check_options(&self, network: &Network) -> Result<BTreeMap<String, String>, BoxError>;

    /// Checks the new network against the host before anything is allocated or recorded
    /// (a named bridge that exists as another kind of link); refusals are [`InvalidInput`].
    async fn probe(&self, _network: &Network) -> Result<(), BoxError> {
        Ok(())
    }

    /// Tells the driver of a new endpoint before it joins anything; returns what the driver
    /// chose for its interface (only where `endpoint` left a value empty).
    async fn create_endpoint(
        &self,
        _network: &Network,
        _endpoint: &Endpoint,
    ) -> Result<EndpointInterface, BoxError> {
        Ok(EndpointInterface::default())
    }

    /// Tells the driver an endpoint is gone. Must succeed if it is gone already.
    async fn delete_endpoint(
        &self,
        _network: &Network,
        _endpoint: &Endpoint,
    ) -> Result<(), BoxError> {
        Ok(())
    }

    /// Driver-specific facts about an endpoint, shown by inspect.
    async fn endpoint_info(
        &self,
        _network: &Network,
        _endpoint: &Endpoint,
    ) -> Result<BTreeMap<String, serde_json::Value>, BoxError> {
        Ok(BTreeMap::new())
    }

    /// What a user of the network should know that its settings do not say (a macvlan
    /// network's host cannot reach its containers), shown by inspect as `Notes`.
    fn notes(&self, _network: &Network) -> Vec<String> {
        Vec::new()
    }

    /// Creates the network's kernel objects. Must succeed if they exist already as intended.
    async fn create_network(&self, network: &Network) -> Result<(), BoxError>;

    /// Removes the network's kernel objects. Must succeed if they are gone already. Once it
    /// returns the network carries no traffic and a network of the same name and subnet can
    /// be created; freeing devices may finish later.
    async fn delete_network(&self, network: &Network) -> Result<(), BoxError>;

    /// Plumbs `endpoint` into `sandbox` as interface `ifname`.
    /// Must succeed if it is plumbed already as intended.
    async fn join(
        &self,
        network: &Network,
        endpoint: &Endpoint,
        sandbox: &Sandbox,
        ifname: &str,
    ) -> Result<JoinInfo, BoxError>;

    /// Unplumbs `endpoint` from `sandbox`. The interface must stop carrying traffic before this
    /// returns; freeing the device itself may finish later.
    async fn leave(
        &self,
        network: &Network,
        endpoint: &Endpoint,
        sandbox: &Sandbox,
    ) -> Result<(), BoxError>;

    /// Publishes `ports` to `endpoint`, which now gives its sandbox the default route.
    /// Must succeed if they are published already.
    async fn program_external(
        &self,
        _network: &Network,
        _endpoint: &Endpoint,
        _ports: &[crate::ports::PortMapping],
    ) -> Result<(), BoxError> {
        Ok(())
    }

    /// Withdraws `ports` from `endpoint`. Must succeed if they are gone already.
    async fn revoke_external(
        &self,
        _network: &Network,
        _endpoint: &Endpoint,
        _ports: &[crate::ports::PortMapping],
    ) -> Result<(), BoxError> {
        Ok(())
    }

    /// An endpoint of `network` joined on another host appeared (`endpoint.node` says
    /// where): make it reachable from here. Must succeed if it is reachable already.
    async fn peer_add(&self, _network: &Network, _endpoint: &Endpoint) -> Result<(), BoxError> {
        Ok(())
    }

    /// An endpoint of `network` on another host went: forget it. Must succeed if it is gone.
    async fn peer_remove(&self, _network: &Network, _endpoint: &Endpoint) -> Result<(), BoxError> {
        Ok(())
    }

    /// Removes the kernel objects this driver owns that none of `networks` (with their joined
    /// `endpoints`) accounts for: leftovers of a crash.
    async fn sweep(&self, networks: &[&Network], endpoints: &[&Endpoint]) -> Result<(), BoxError>;
}

/// The OS side of sandboxes: namespaces, their files and routes.
#[async_trait]
pub trait SandboxOs: Send + Sync {
    /// The path of the namespace file for a new sandbox with this id.
    fn key_for(&self, sandbox: &crate::SandboxId) -> String;

    /// The namespace path a sandbox adopting `path` uses: `path` itself, or a handle of
    /// plumb's own on it where `path` lives only as long as a process (`/proc/<pid>/...`).
    fn adopted_key(&self, _sandbox: &crate::SandboxId, path: &str) -> String {
        path.to_owned()
    }

    /// The directory for the files of a new sandbox with this id.
    fn dir_for(&self, sandbox: &crate::SandboxId) -> String;

    /// Creates the sandbox's namespace (loopback up) and its files.
    /// Must succeed if they exist already.
    async fn create(&self, sandbox: &Sandbox) -> Result<(), BoxError>;

    /// Checks that `path` names a network namespace plumb may adopt (made by someone else, not
    /// plumbd's own); the reason when not.
    async fn check_adoptable(&self, _path: &str) -> Result<(), String> {
        Ok(())
    }

    /// True when the sandbox's namespace exists.
    async fn exists(&self, sandbox: &Sandbox) -> bool;

    /// Removes the namespace and files. Must succeed if they are gone already.
    async fn delete(&self, sandbox: &Sandbox) -> Result<(), BoxError>;

    /// Writes the sandbox's hosts file with these (address, names) lines.
    async fn write_hosts(
        &self,
        sandbox: &Sandbox,
        entries: &[(std::net::IpAddr, Vec<String>)],
    ) -> Result<(), BoxError>;

    /// Points the sandbox's default routes at `route` (or removes them when `None`).
    async fn set_default_route(
        &self,
        sandbox: &Sandbox,
        route: Option<&DefaultRoute>,
    ) -> Result<(), BoxError>;

    /// Prefixes routed in the host namespace, which default pools must avoid.
    async fn host_routes(&self) -> Result<Vec<ipnet::IpNet>, BoxError>;

    /// Removes namespaces and files of sandboxes not in `known`.
    async fn sweep(&self, known: &[&Sandbox]) -> Result<(), BoxError>;
}

/// A default route inside a sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefaultRoute {
    /// The interface in the sandbox.
    pub ifname: String,
    /// IPv4 next hop.
    pub v4: Option<Ipv4Addr>,
    /// IPv6 next hop.
    pub v6: Option<Ipv6Addr>,
}

/// The embedded DNS resolver's side of sandboxes: a listener inside each sandbox that has its
/// own network stack, up before the sandbox is handed to the runtime.
#[async_trait]
pub trait SandboxResolver: Send + Sync {
    /// Starts answering inside the sandbox. Must succeed if it answers already.
    async fn attach(&self, sandbox: &Sandbox) -> Result<(), BoxError>;

    /// Stops answering inside the sandbox (before its namespace goes).
    async fn detach(&self, sandbox: &Sandbox);
}

/// Holds published host ports in the host's own stack (bound sockets), so that no host
/// process can bind one while it is published, and picks free ports for mappings without one.
pub trait PortHolder: Send + Sync {
    /// Holds `m`'s host port; a mapping with host port 0 gets a free port, returned. An error
    /// means the port is taken on the host (or the address cannot be used).
    fn hold(&self, m: &crate::ports::PortMapping) -> std::io::Result<crate::ports::PortMapping>;

    /// Lets go of a port held for `m`; unknown mappings are ignored.
    fn release(&self, m: &crate::ports::PortMapping);
}
