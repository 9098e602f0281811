//! Events the controller emits (network create, connect, disconnect, destroy, ...).

use serde::Serialize;
use std::collections::BTreeMap;

/// One event, in the terms of Docker's event stream.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Event {
    /// Object type: "network" or "sandbox".
    pub kind: &'static str,
    /// What happened: create, connect, disconnect, destroy.
    pub action: &'static str,
    /// The object's id.
    pub actor_id: String,
    /// Attributes such as name, type, container.
    pub attributes: BTreeMap<String, String>,
    /// When, in nanoseconds since the Unix epoch.
    pub time_nanos: u128,
}

/// Current time in nanoseconds since the Unix epoch.
pub fn now_nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}
