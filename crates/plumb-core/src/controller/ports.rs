//! Published ports: reserving them (plumb's index and the host's sockets) and programming
//! each sandbox's set on its gateway endpoint through the driver.

use super::state::State;
use super::Controller;
use crate::error::{Error, Result};
use crate::ids::{EndpointId, SandboxId};
use crate::model::Sandbox;
use crate::ports::PortMapping;
use std::sync::atomic::Ordering::Relaxed;

impl Controller {
    /// Publishes `ports` for sandbox `sb` in plumb's index and holds them on the host; host
    /// port 0 becomes a free port, written back into `ports`. All or nothing.
    pub(super) fn reserve_ports(
        &self,
        st: &mut State,
        sb: &SandboxId,
        ports: &mut [PortMapping],
    ) -> Result<()> {
        let hold = !runtime_holds(st, sb);
        self.reserve_ports_as(st, sb, ports, hold)
    }

    /// [`Self::reserve_ports`] for a sandbox not recorded yet: `hold` says whether plumb
    /// holds the host ports (false when the runtime does).
    pub(super) fn reserve_ports_as(
        &self,
        st: &mut State,
        sb: &SandboxId,
        ports: &mut [PortMapping],
        hold: bool,
    ) -> Result<()> {
        st.check_ports(ports)?;
        let picks = ports.iter().any(|m| m.host_port == 0);
        let holder = self.config.port_holder.as_ref().filter(|_| hold);
        if let Some(holder) = holder {
            for i in 0..ports.len() {
                match holder.hold(&ports[i]) {
                    Ok(m) => ports[i] = m,
                    Err(e) => {
                        for m in &ports[..i] {
                            holder.release(m);
                        }
                        return Err(Error::HostPortUnavailable {
                            port: ports[i].to_string(),
                            reason: e.to_string(),
                        });
                    }
                }
            }
            // A picked port is free on the host, but plumb may publish it without holding it
            // (a host process had it when plumbd restarted): check the picks too.
            if picks {
                if let Err(e) = st.check_ports(ports) {
                    for m in ports.iter() {
                        holder.release(m);
                    }
                    return Err(e);
                }
            }
        } else if let Some(m) = ports.iter().find(|m| m.host_port == 0) {
            let why = if hold {
                "this controller cannot pick host ports"
            } else {
                "the runtime holds this sandbox's host ports, so it picks them"
            };
            return Err(Error::invalid("Ports", format!("{m}: {why}; give one")));
        }
        st.publish(sb, ports);
        self.published.fetch_add(ports.len(), Relaxed);
        Ok(())
    }

    /// Undoes [`Self::reserve_ports`]. (Letting go of a port plumb does not hold is a no-op:
    /// no other sandbox can publish it meanwhile.)
    pub(super) fn release_ports(&self, st: &mut State, sb: &SandboxId, ports: &[PortMapping]) {
        st.unpublish(sb, ports);
        self.published.fetch_sub(ports.len(), Relaxed);
        if let Some(holder) = &self.config.port_holder {
            for m in ports {
                holder.release(m);
            }
        }
    }

    /// Publishes stored ports again after a restart and holds them on the host. A port some
    /// host process took while plumbd was down stays published (the container relies on it)
    /// and is reported.
    pub(super) fn restore_ports(&self, st: &mut State, sb: &SandboxId, ports: &[PortMapping]) {
        st.publish(sb, ports);
        self.published.fetch_add(ports.len(), Relaxed);
        let hold = !runtime_holds(st, sb);
        if let Some(holder) = self.config.port_holder.as_ref().filter(|_| hold) {
            for m in ports {
                if let Err(e) = holder.hold(m) {
                    tracing::warn!(port = %m, error = %e, "a published port is taken on the host; host traffic to it goes to the container");
                }
            }
        }
    }

    /// Makes the published ports of `sb` go from `old` (gateway endpoint, ports programmed on
    /// it) to `new`: when the gateway stays, only the difference is revoked and programmed.
    /// Withdrawing never fails the operation; when publishing fails, what was withdrawn is
    /// put back and the error returned.
    pub(super) async fn sync_external(
        &self,
        st: &State,
        sb: &Sandbox,
        old: (Option<&EndpointId>, &[PortMapping]),
        new: (Option<&EndpointId>, &[PortMapping]),
    ) -> Result<()> {
        let lookup = |id: Option<&EndpointId>| {
            let (ep, _) = st.endpoints.get(id?)?;
            let net = st.networks.get(&ep.network)?;
            Some((ep.clone(), net.net.clone()))
        };
        let (old_ep, new_ep) = (lookup(old.0), lookup(new.0));
        let same = old.0.is_some() && old.0 == new.0;
        // Both sets are sorted (`State::sandbox_ports`): a range of thousands stays cheap.
        let missing = |from: &[PortMapping], ours: &[PortMapping]| -> Vec<PortMapping> {
            from.iter()
                .filter(|p| ours.binary_search(p).is_err())
                .copied()
                .collect()
        };
        let (revoke, program) = if same {
            (missing(old.1, new.1), missing(new.1, old.1))
        } else {
            (old.1.to_vec(), new.1.to_vec())
        };
        // A driver hears of its endpoint becoming or ceasing to be the gateway even without
        // ports (Docker calls ProgramExternalConnectivity then; plugins rely on it).
        if let Some((ep, net)) = &old_ep {
            if !revoke.is_empty() || !same {
                if let Ok(d) = self.driver(&net.spec.driver) {
                    if let Err(e) = d.revoke_external(net, ep, &revoke).await {
                        let action = super::repair::RepairAction::Revoke {
                            network: Box::new((*net).clone()),
                            endpoint: Box::new((*ep).clone()),
                            ports: revoke.clone(),
                        };
                        self.repairs
                            .record("withdraw published ports", &sb.spec.name, action, &e);
                    }
                }
            }
        }
        let Some((ep, net)) = &new_ep else {
            return Ok(());
        };
        if program.is_empty() && same {
            return Ok(());
        }
        let driver = self.driver(&net.spec.driver)?;
        if let Err(e) = driver.program_external(net, ep, &program).await {
            if let Some((ep, net)) = &old_ep {
                if let Ok(d) = self.driver(&net.spec.driver) {
                    if let Err(undo) = d.program_external(net, ep, &revoke).await {
                        let action = super::repair::RepairAction::Program {
                            network: Box::new((*net).clone()),
                            endpoint: Box::new((*ep).clone()),
                            ports: revoke.clone(),
                        };
                        self.repairs
                            .record("publish ports again", &sb.spec.name, action, &undo);
                    }
                }
            }
            let step = format!(
                "publishing ports of sandbox {} to endpoint {}",
                sb.spec.name, ep.name
            );
            return Err(super::step_err(&net.spec.driver, step, e));
        }
        Ok(())
    }
}

/// True when the runtime of sandbox `sb` binds its host ports itself.
fn runtime_holds(st: &State, sb: &SandboxId) -> bool {
    st.sandboxes
        .get(sb)
        .is_some_and(|e| e.sb.spec.runtime_holds_ports)
}
