//! Drivers with nothing to plumb: `null` (the sandbox keeps only loopback) and `host` (the
//! sandbox shares the host's stack).

use async_trait::async_trait;
use plumb_core::driver::{Capabilities, JoinInfo, NetworkDriver};
use plumb_core::model::{Endpoint, Network, Sandbox};
use plumb_core::BoxError;
use std::collections::BTreeMap;

/// A driver whose endpoints have no interface of their own.
pub struct PassiveDriver {
    name: &'static str,
    host_mode: bool,
}

impl PassiveDriver {
    /// The `null` driver (network `none`): loopback only.
    pub fn null() -> Self {
        PassiveDriver {
            name: "null",
            host_mode: false,
        }
    }

    /// The `host` driver (network `host`): joins host-mode sandboxes only.
    pub fn host() -> Self {
        PassiveDriver {
            name: "host",
            host_mode: true,
        }
    }
}

#[async_trait]
impl NetworkDriver for PassiveDriver {
    fn name(&self) -> &str {
        self.name
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            needs_addresses: false,
            singleton: true,
            host_mode: self.host_mode,
            global: false,
            keeps_state: false,
            picks_mac: false,
        }
    }

    fn check_options(&self, _: &Network) -> Result<BTreeMap<String, String>, BoxError> {
        Ok(BTreeMap::new())
    }

    async fn create_network(&self, _: &Network) -> Result<(), BoxError> {
        Ok(())
    }

    async fn delete_network(&self, _: &Network) -> Result<(), BoxError> {
        Ok(())
    }

    async fn join(
        &self,
        _: &Network,
        _: &Endpoint,
        _: &Sandbox,
        _: &str,
    ) -> Result<JoinInfo, BoxError> {
        Ok(JoinInfo::default())
    }

    async fn leave(&self, _: &Network, _: &Endpoint, _: &Sandbox) -> Result<(), BoxError> {
        Ok(())
    }

    async fn sweep(&self, _: &[&Network], _: &[&Endpoint]) -> Result<(), BoxError> {
        Ok(())
    }
}
