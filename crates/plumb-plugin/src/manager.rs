//! The plugins in use: found and activated when a driver name is first used (Docker's lazy
//! activation), kept afterwards. A plugin not installed yet is waited for, as Docker waits
//! for one that starts after the daemon (backing off up to a window, 15 s by default).
//! [`Plugins`] is the resolver the controller asks for network and IPAM drivers it does not
//! have built in.

use crate::client::{CallError, CallErrorKind, PluginClient};
use crate::discovery::{Discovery, PluginAddr};
use crate::messages::{CapabilitiesResponse, IpamCapabilitiesResponse};
use crate::remote_driver::RemoteDriver;
use crate::remote_ipam::RemoteIpam;
use async_trait::async_trait;
use plumb_core::driver::NetworkDriver;
use plumb_core::ipam_driver::Ipam;
use plumb_core::registry::Resolver;
use plumb_core::BoxError;
use plumb_linux::namespaces::Namespaces;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The subsystem a network driver plugin implements.
pub const NETWORK_DRIVER: &str = "NetworkDriver";
/// The subsystem an IPAM plugin implements.
pub const IPAM_DRIVER: &str = "IpamDriver";

/// A plugin as `plumb plugin ls` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginInfo {
    /// Its name.
    pub name: String,
    /// Where it listens.
    pub addr: String,
    /// What it implements (empty when it could not be asked).
    pub implements: Vec<String>,
    /// `active`, or why it is not.
    pub state: String,
}

/// An activated plugin.
struct Active {
    client: Arc<PluginClient>,
    implements: Vec<String>,
}

/// Settings of [`Plugins`].
#[derive(Debug, Clone)]
pub struct PluginSettings {
    /// Where plugins are looked for.
    pub discovery: Discovery,
    /// Deadline of each call.
    pub call_timeout: Duration,
    /// How long a plugin that is not installed yet is waited for.
    pub wait: Duration,
}

/// The plugins in use.
pub struct Plugins {
    settings: PluginSettings,
    ns: Arc<Namespaces>,
    active: Mutex<HashMap<String, Arc<Active>>>,
}

impl Plugins {
    /// Plugins found with `settings`; remote drivers plumb interfaces through `ns`.
    pub fn new(settings: PluginSettings, ns: Arc<Namespaces>) -> Self {
        Plugins {
            settings,
            ns,
            active: Mutex::new(HashMap::new()),
        }
    }

    fn cached(&self, name: &str) -> Option<Arc<Active>> {
        self.active
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }

    /// The plugin `name`, activated (and kept); None when it is not installed within the
    /// wait window.
    async fn get(&self, name: &str) -> Result<Option<Arc<Active>>, BoxError> {
        if let Some(a) = self.cached(name) {
            return Ok(Some(a));
        }
        if !crate::discovery::valid_name(name) {
            // No file can carry this name (a v2 plugin reference, a path): not worth waiting.
            return Ok(None);
        }
        let start = Instant::now();
        let mut pause = Duration::from_millis(100);
        let addr = loop {
            if let Some(a) = self.settings.discovery.find(name)? {
                break a;
            }
            if start.elapsed() + pause > self.settings.wait {
                return Ok(None);
            }
            tracing::info!(
                plugin = name,
                "plugin not found yet; looking again in {pause:?}"
            );
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(2));
        };
        let active = self.activate(name, addr).await?;
        let mut map = self.active.lock().unwrap_or_else(|p| p.into_inner());
        Ok(Some(map.entry(name.to_owned()).or_insert(active).clone()))
    }

    async fn activate(&self, name: &str, addr: PluginAddr) -> Result<Arc<Active>, BoxError> {
        let client = Arc::new(PluginClient::new(
            name,
            addr,
            self.settings.discovery.clone(),
            self.settings.call_timeout,
        ));
        let implements = client.activate().await.map_err(CallError::boxed)?;
        tracing::info!(plugin = name, addr = %client.addr(), ?implements, "plugin activated");
        Ok(Arc::new(Active { client, implements }))
    }

    /// The plugin `name` if it implements `subsystem`.
    async fn get_implementing(
        &self,
        name: &str,
        subsystem: &str,
    ) -> Result<Option<Arc<PluginClient>>, BoxError> {
        let Some(a) = self.get(name).await? else {
            return Ok(None);
        };
        if !a.implements.iter().any(|i| i == subsystem) {
            return Err(format!(
                "plugin {name} does not implement {subsystem} (it implements {})",
                a.implements.join(", ")
            )
            .into());
        }
        Ok(Some(a.client.clone()))
    }

    /// Every plugin installed or in use, each asked what it implements.
    pub async fn list(&self) -> Vec<PluginInfo> {
        let mut names = self.settings.discovery.scan();
        names.extend(
            self.active
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .keys()
                .cloned(),
        );
        names.sort();
        names.dedup();
        let mut out = Vec::new();
        for name in names {
            let found = self.settings.discovery.find(&name);
            let addr = match (&found, self.cached(&name)) {
                (Ok(Some(a)), _) => a.clone(),
                (_, Some(a)) => a.client.addr(),
                (Err(e), None) => {
                    out.push(PluginInfo {
                        name,
                        addr: String::new(),
                        implements: Vec::new(),
                        state: e.to_string(),
                    });
                    continue;
                }
                (Ok(None), None) => continue,
            };
            // Asked afresh, briefly: ls must not hang on a plugin that does.
            let probe = PluginClient::new(
                &name,
                addr.clone(),
                self.settings.discovery.clone(),
                self.settings.call_timeout.min(Duration::from_secs(2)),
            );
            let (implements, state) = match probe.activate().await {
                Ok(i) => (i, "active".to_owned()),
                Err(e) => (Vec::new(), crate::client::describe(&e.kind)),
            };
            out.push(PluginInfo {
                name,
                addr: addr.to_string(),
                implements,
                state,
            });
        }
        out
    }
}

/// Network drivers from plugins.
pub struct DriverPlugins(pub Arc<Plugins>);
/// IPAM drivers from plugins.
pub struct IpamPlugins(pub Arc<Plugins>);

#[async_trait]
impl Resolver<dyn NetworkDriver> for DriverPlugins {
    async fn resolve(&self, name: &str) -> Result<Option<Arc<dyn NetworkDriver>>, BoxError> {
        let Some(client) = self.0.get_implementing(name, NETWORK_DRIVER).await? else {
            return Ok(None);
        };
        let caps: CapabilitiesResponse = client
            .call::<(), _>("NetworkDriver.GetCapabilities", None)
            .await
            .map_err(CallError::boxed)?;
        let global = match caps.scope.as_str() {
            "local" | "" => false,
            "global" => true,
            other => {
                return Err(format!(
                    "plugin {name}: NetworkDriver.GetCapabilities: invalid answer: Scope {other:?} (expected local or global)"
                )
                .into())
            }
        };
        Ok(Some(Arc::new(RemoteDriver::new(
            client,
            global,
            self.0.ns.clone(),
        ))))
    }

    fn names(&self) -> Vec<String> {
        self.0.settings.discovery.scan()
    }
}

#[async_trait]
impl Resolver<dyn Ipam> for IpamPlugins {
    async fn resolve(&self, name: &str) -> Result<Option<Arc<dyn Ipam>>, BoxError> {
        let Some(client) = self.0.get_implementing(name, IPAM_DRIVER).await? else {
            return Ok(None);
        };
        // Optional: a plugin without it has no capabilities (Docker tolerates the 404).
        let caps: IpamCapabilitiesResponse = match client
            .call::<(), _>("IpamDriver.GetCapabilities", None)
            .await
        {
            Ok(c) => c,
            Err(e) if e.kind == CallErrorKind::NotImplemented => Default::default(),
            Err(e) => return Err(e.boxed()),
        };
        Ok(Some(Arc::new(RemoteIpam::new(client, caps))))
    }

    fn names(&self) -> Vec<String> {
        self.0.settings.discovery.scan()
    }
}
