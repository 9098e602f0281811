//! plumb-core: the Container Network Model, independent of any operating system.
//!
//! A tour:
//! - [`model`]: networks, endpoints and sandboxes as stored; [`ids`]: their identifiers.
//! - [`Controller`]: the CNM operations (create/delete network, create/delete endpoint,
//!   create/delete sandbox, join/leave, connect/disconnect), all-or-nothing through a
//!   [`journal::Journal`] of inverses, persisted in a [`store::Store`] before the kernel is
//!   touched, reconciled with the kernel at start.
//! - [`ipam`]: the built-in address allocator and Docker's default pools.
//! - [`driver`]: the contracts the OS side implements: [`driver::NetworkDriver`] per driver
//!   and [`driver::SandboxOs`] for namespaces and their files.
//! - [`events`]: what happened, for `plumb events` and Docker's event stream.
//! - [`names::NameIndex`]: the names each sandbox may resolve, for the embedded DNS resolver.
//!
//! This crate depends on no Linux crate: the OS layer lives in plumb-linux and plumb-drivers.

pub mod controller;
pub mod driver;
pub mod error;
pub mod events;
pub mod ids;
pub mod ipam;
pub mod ipam_driver;
pub mod journal;
pub mod model;
pub mod names;
pub mod ports;
pub mod registry;
pub mod store;
pub mod timing;
pub mod validate;

pub use controller::{Config, Controller, NetworkView, SandboxView};
pub use error::{BoxError, Error, ErrorKind, Result};
pub use ids::{EndpointId, NetworkId, SandboxId};
