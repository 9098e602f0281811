//! Sandboxes that follow the life of a process (`AutoRemove`, as `plumb run` asks): when that
//! process is gone — it exited without cleaning up, or was killed with SIGKILL — the sandbox
//! is removed. Checked at start and then every second.

use plumb_core::Controller;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How often owners are checked.
const PERIOD: Duration = Duration::from_secs(1);

/// Starts the task that removes orphaned sandboxes, until `stop`.
pub fn start(ctl: Arc<Controller>, tasks: &TaskTracker, stop: CancellationToken) {
    tasks.spawn(async move {
        loop {
            reap_once(&ctl).await;
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(PERIOD) => {}
            }
        }
    });
}

/// Removes every sandbox whose owner process is gone.
async fn reap_once(ctl: &Controller) {
    for (id, name, owner) in ctl.owned_sandboxes() {
        if plumb_api::peer::alive(&owner) {
            continue;
        }
        match ctl.delete_sandbox(id.as_str()).await {
            Ok(()) => {
                tracing::info!(sandbox = %name, pid = owner.pid, "removed a sandbox whose process is gone")
            }
            Err(plumb_core::Error::SandboxNotFound { .. }) => {}
            Err(e) => {
                tracing::warn!(sandbox = %name, error = %e, "removing an orphaned sandbox failed")
            }
        }
    }
}
