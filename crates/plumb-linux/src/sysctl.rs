//! sysctl writes in the caller's network namespace (or inside a sandbox's).

use crate::error::{LinuxError, Result};
use crate::netns;
use std::path::PathBuf;

/// Writes `value` to `/proc/sys/<key with dots as slashes>` in namespace `ns`.
pub async fn set(ns: Option<PathBuf>, key: &str, value: &str) -> Result<()> {
    let path = PathBuf::from("/proc/sys").join(key.replace('.', "/"));
    let value = value.to_owned();
    netns::run_in(ns, move || {
        std::fs::write(&path, value.as_bytes())
            .map_err(|e| LinuxError::io("write sysctl", &path, e))
    })
    .await
}
