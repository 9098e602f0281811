//! Netlink sockets per namespace, opened once and kept: the host's and one per sandbox.

use crate::error::Result;
use crate::nl::Nl;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The netlink sockets plumbd holds.
pub struct Namespaces {
    host: Nl,
    reaper: crate::reaper::Reaper,
    sandboxes: Mutex<HashMap<PathBuf, Nl>>,
}

impl Namespaces {
    /// Opens the socket of the caller's namespace (the host's).
    pub async fn new() -> Result<Self> {
        Ok(Namespaces {
            host: Nl::open(None).await?,
            reaper: crate::reaper::Reaper::start()?,
            sandboxes: Mutex::new(HashMap::new()),
        })
    }

    /// The host namespace's socket.
    pub fn host(&self) -> &Nl {
        &self.host
    }

    /// Deletes devices of the host namespace in the background.
    pub fn reaper(&self) -> &crate::reaper::Reaper {
        &self.reaper
    }

    /// The socket of the namespace bound at `key`, opened on first use.
    pub async fn get(&self, key: &Path) -> Result<Nl> {
        if let Some(nl) = self.lock().get(key) {
            return Ok(nl.clone());
        }
        let nl = Nl::open(Some(key.to_path_buf())).await?;
        self.lock().insert(key.to_path_buf(), nl.clone());
        Ok(nl)
    }

    /// Drops the socket of a namespace about to be removed (a socket pins its namespace).
    pub fn forget(&self, key: &Path) {
        self.lock().remove(key);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<PathBuf, Nl>> {
        // A poisoned map of sockets is still a valid map.
        self.sandboxes.lock().unwrap_or_else(|p| p.into_inner())
    }
}
