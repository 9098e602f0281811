//! Egress for sandboxes on overlay networks. An overlay network offers no default route;
//! like Docker's `docker_gwbridge`, a sandbox joined to a non-internal global network and to
//! no local network with a gateway is also joined to the local bridge network
//! `plumb_gwbridge` (created on first need, ICC off, masqueraded), which gives it its way
//! out. When its last such overlay endpoint goes, so does that one.

use super::Controller;
use crate::error::{Error, Result};
use crate::model::{EndpointSpec, NetworkSpec, Scope};
use std::collections::BTreeMap;

/// The name of the gateway bridge network (and of its bridge).
pub const GWBRIDGE: &str = "plumb_gwbridge";

impl Controller {
    /// True when `network` (as a user names it) is global and not internal.
    pub(super) fn needs_gateway_bridge(&self, network: &str) -> bool {
        let snap = self.snapshot();
        snap.find_network(network)
            .ok()
            .and_then(|id| snap.networks.get(&id).map(|n| n.net.spec.clone()))
            .is_some_and(|s| s.scope == Scope::Global && !s.internal)
    }

    /// Joins `sandbox` to the gateway bridge network, or takes it out, as its endpoints now
    /// call for.
    pub(super) async fn sync_gateway_bridge(&self, sandbox: &str) -> Result<()> {
        let snap = self.snapshot();
        let Ok(sb_id) = snap.find_sandbox(sandbox) else {
            return Ok(());
        };
        let sb = snap.sb(&sb_id)?;
        // Without a bridge driver (a controller built with other drivers only) there is no
        // gateway bridge to offer.
        if sb.sb.spec.host_mode || self.driver("bridge").is_err() {
            return Ok(());
        }
        let (mut overlay, mut exit, mut joined) = (false, false, false);
        for ep_id in &sb.endpoints {
            let Some((ep, _)) = snap.endpoints.get(ep_id) else {
                continue;
            };
            let Some(n) = snap.networks.get(&ep.network) else {
                continue;
            };
            let spec = &n.net.spec;
            if spec.name == GWBRIDGE {
                joined = true;
            } else if spec.scope == Scope::Global && !spec.internal {
                overlay = true;
            } else if !spec.internal && n.net.pools.iter().any(|p| p.gateway.is_some()) {
                exit = true;
            }
        }
        let name = sb.sb.spec.name.clone();
        drop(snap);
        if overlay && !exit && !joined {
            if self.snapshot().find_network(GWBRIDGE).is_err() {
                let mut options = BTreeMap::new();
                options.insert(
                    "com.docker.network.bridge.name".to_owned(),
                    GWBRIDGE.to_owned(),
                );
                options.insert(
                    "com.docker.network.bridge.enable_icc".to_owned(),
                    "false".to_owned(),
                );
                let spec = NetworkSpec {
                    name: GWBRIDGE.to_owned(),
                    driver: "bridge".to_owned(),
                    enable_ipv4: true,
                    options,
                    ..Default::default()
                };
                match self.create_network_inner(spec, false).await {
                    Ok(_) | Err(Error::NetworkExists { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
            let spec = EndpointSpec {
                name: format!("gateway_{}", sb_id.short()),
                ..Default::default()
            };
            Box::pin(self.connect(GWBRIDGE, &name, spec)).await?;
        } else if joined && !overlay {
            Box::pin(self.disconnect(GWBRIDGE, &name)).await?;
        }
        Ok(())
    }
}
