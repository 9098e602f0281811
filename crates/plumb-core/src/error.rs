//! The controller's error type: each variant names the object involved and says what to do.

use std::net::IpAddr;

/// A boxed error from a lower layer (OS, driver, store backend).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What kind of failure an error is; the API maps kinds to HTTP statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The named object does not exist.
    NotFound,
    /// The request clashes with an existing object.
    Conflict,
    /// A field of the request is malformed or out of range.
    InvalidParameter,
    /// The operation is not allowed on this object.
    Forbidden,
    /// Something failed inside plumb or the kernel.
    Internal,
    /// A service plumb depends on (the cluster store) cannot be reached now: retry later.
    Unavailable,
}

/// Errors of the CNM controller.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No network has this name, id or id prefix.
    #[error("network {name} not found")]
    NetworkNotFound {
        /// What the caller asked for.
        name: String,
    },
    /// An id prefix matches several networks.
    #[error("network {name} is ambiguous ({count} matches): use more of its id or its full name")]
    NetworkAmbiguous {
        /// What the caller asked for.
        name: String,
        /// How many networks matched.
        count: usize,
    },
    /// A network with this name exists already.
    #[error("network with name {name} already exists")]
    NetworkExists {
        /// The name in use.
        name: String,
    },
    /// The predefined networks bridge, host and none cannot be created or removed.
    #[error("{name} is a pre-defined network and cannot be {action}")]
    PredefinedNetwork {
        /// The predefined network.
        name: String,
        /// "created" or "removed".
        action: &'static str,
    },
    /// A network still has endpoints.
    #[error("network {name} has active endpoints ({endpoints}): disconnect them first")]
    NetworkHasEndpoints {
        /// The network.
        name: String,
        /// Names of its endpoints, comma separated.
        endpoints: String,
    },
    /// No endpoint has this name or id.
    #[error("endpoint {name} not found")]
    EndpointNotFound {
        /// What the caller asked for.
        name: String,
    },
    /// An endpoint name is taken in this network.
    #[error("endpoint with name {name} already exists in network {network}")]
    EndpointExists {
        /// The endpoint name.
        name: String,
        /// The network.
        network: String,
    },
    /// The endpoint is joined to a sandbox already.
    #[error("endpoint {name} is already joined to sandbox {sandbox}: leave it first")]
    EndpointInUse {
        /// The endpoint.
        name: String,
        /// The sandbox it is in.
        sandbox: String,
    },
    /// The endpoint is not joined to the given sandbox.
    #[error("endpoint {name} is not joined to sandbox {sandbox}")]
    EndpointNotJoined {
        /// The endpoint.
        name: String,
        /// The sandbox named by the caller.
        sandbox: String,
    },
    /// No sandbox has this name, id or id prefix.
    #[error("sandbox {name} not found")]
    SandboxNotFound {
        /// What the caller asked for.
        name: String,
    },
    /// A sandbox with this name exists already.
    #[error("sandbox with name {name} already exists")]
    SandboxExists {
        /// The name in use.
        name: String,
    },
    /// The sandbox has an endpoint on this network already.
    #[error("sandbox {sandbox} is already attached to network {network}")]
    AlreadyAttached {
        /// The sandbox.
        sandbox: String,
        /// The network.
        network: String,
    },
    /// The sandbox has no endpoint on this network.
    #[error("sandbox {sandbox} is not connected to network {network}")]
    NotAttached {
        /// The sandbox.
        sandbox: String,
        /// The network.
        network: String,
    },
    /// Host-mode sandboxes join only the host network, and the host network only them.
    #[error("sandbox {sandbox}: {reason}")]
    HostModeMismatch {
        /// The sandbox.
        sandbox: String,
        /// What is not allowed.
        reason: String,
    },
    /// Only one network of this driver may exist (host, null), and it does.
    #[error("only one instance of \"{driver}\" network is allowed")]
    SingletonDriver {
        /// The driver.
        driver: String,
    },
    /// A request field is malformed.
    #[error("invalid {field}: {reason}")]
    InvalidParameter {
        /// The field (as the API names it).
        field: String,
        /// What is wrong and what is expected.
        reason: String,
    },
    /// The namespace is adopted by another sandbox already.
    #[error("namespace {path} is sandbox {sandbox}'s already")]
    NamespaceAdopted {
        /// The namespace's path.
        path: String,
        /// The sandbox that has it.
        sandbox: String,
    },
    /// A requested subnet overlaps the subnet of another network.
    #[error("invalid pool request: subnet {subnet} overlaps with network {other} ({other_subnet}): choose another subnet")]
    SubnetOverlap {
        /// The requested subnet.
        subnet: String,
        /// The other network.
        other: String,
        /// Its subnet.
        other_subnet: String,
    },
    /// A requested address is taken.
    #[error("address {address} is already in use in network {network} (by {holder}): pick another or let plumb choose")]
    AddressInUse {
        /// The address.
        address: IpAddr,
        /// The network.
        network: String,
        /// What holds it: an endpoint name, "gateway" or an auxiliary address name.
        holder: String,
    },
    /// A host port is published already.
    #[error(
        "port {port} is already published by sandbox {holder}: choose another host port or address"
    )]
    PortInUse {
        /// The mapping asked for.
        port: String,
        /// The sandbox that publishes it.
        holder: String,
    },
    /// A host port is taken by something other than plumb.
    #[error("port {port} cannot be published: {reason}: stop what uses it on the host or choose another host port or address")]
    HostPortUnavailable {
        /// The mapping asked for.
        port: String,
        /// What the host said.
        reason: String,
    },
    /// A network ran out of addresses.
    #[error("no free address left in network {network} ({subnet}): remove endpoints or use a larger subnet or ip-range")]
    PoolExhausted {
        /// The network.
        network: String,
        /// The exhausted subnet.
        subnet: String,
    },
    /// No default pool is free.
    #[error("could not find an available, non-overlapping {family} address pool among the defaults: give --subnet or add --default-address-pool to plumbd")]
    NoAvailablePool {
        /// "IPv4" or "IPv6".
        family: &'static str,
    },
    /// The driver name is unknown.
    #[error("driver {driver} not found: available drivers are {available}")]
    DriverNotFound {
        /// The requested driver.
        driver: String,
        /// The names that are available, comma separated.
        available: String,
    },
    /// A driver failed.
    #[error("{driver} driver: {source}")]
    Driver {
        /// The driver.
        driver: String,
        /// The cause.
        #[source]
        source: BoxError,
    },
    /// A plugin refused a call, or could not be used (unreachable, timed out, answered
    /// outside its protocol); the message names the plugin and the call.
    #[error("{message}")]
    Plugin {
        /// The driver (or `IPAM <name>`).
        driver: String,
        /// What happened.
        message: String,
        /// True when the plugin could not be used (retry later), false when it said no.
        unavailable: bool,
    },
    /// The sandbox OS layer failed.
    #[error("sandbox {sandbox}: {source}")]
    Os {
        /// The sandbox.
        sandbox: String,
        /// The cause.
        #[source]
        source: BoxError,
    },
    /// The state store failed.
    #[error("state store: {0}")]
    Store(#[from] crate::store::StoreError),
    /// The cluster store (etcd) that global networks live in cannot be reached.
    #[error("{0}: global networks cannot change until it is back (local networks are unaffected)")]
    ClusterUnavailable(String),
    /// A global-scope driver was asked for, but this daemon has no cluster store.
    #[error("{driver} networks span hosts and need a cluster store: start plumbd with --cluster-store etcd://HOST:PORT --cluster-advertise IP|IFACE")]
    NoClusterStore {
        /// The driver.
        driver: String,
    },
}

impl Error {
    /// The kind of this error, for status mapping.
    pub fn kind(&self) -> ErrorKind {
        use Error::*;
        match self {
            NetworkNotFound { .. } | EndpointNotFound { .. } | SandboxNotFound { .. } => {
                ErrorKind::NotFound
            }
            DriverNotFound { .. } => ErrorKind::NotFound,
            NetworkExists { .. }
            | SandboxExists { .. }
            | AlreadyAttached { .. }
            | EndpointInUse { .. }
            | SubnetOverlap { .. }
            | PortInUse { .. }
            | HostPortUnavailable { .. }
            | AddressInUse { .. }
            | NamespaceAdopted { .. } => ErrorKind::Conflict,
            PredefinedNetwork { .. } | NetworkHasEndpoints { .. } | EndpointExists { .. } => {
                ErrorKind::Forbidden
            }
            HostModeMismatch { .. } | SingletonDriver { .. } => ErrorKind::Forbidden,
            NetworkAmbiguous { .. }
            | InvalidParameter { .. }
            | NotAttached { .. }
            | EndpointNotJoined { .. } => ErrorKind::InvalidParameter,
            PoolExhausted { .. } | NoAvailablePool { .. } => ErrorKind::Forbidden,
            Driver { .. } | Os { .. } | Store(_) => ErrorKind::Internal,
            ClusterUnavailable(_)
            | Plugin {
                unavailable: true, ..
            } => ErrorKind::Unavailable,
            Plugin { .. } => ErrorKind::Forbidden,
            NoClusterStore { .. } => ErrorKind::InvalidParameter,
        }
    }

    /// Shorthand for an invalid-parameter error.
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::InvalidParameter {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// The controller's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
