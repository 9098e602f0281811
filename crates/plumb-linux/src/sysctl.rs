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

/// A sysctl directory of the caller's namespace kept open, so that writes below it skip the
/// path walk from `/proc/sys`: with many namespaces, components such as `net/ipv6/conf` exist
/// once per namespace in the dentry cache and each walk compares against all of them.
pub struct SysctlDir {
    dir: std::fs::File,
}

impl SysctlDir {
    /// Opens `/proc/sys/<key with dots as slashes>` (a directory).
    pub fn open(key: &str) -> Result<Self> {
        let path = PathBuf::from("/proc/sys").join(key.replace('.', "/"));
        let dir =
            std::fs::File::open(&path).map_err(|e| LinuxError::io("open sysctl dir", &path, e))?;
        Ok(SysctlDir { dir })
    }

    /// Writes `value` to `rel` (a path relative to the directory).
    pub fn write(&self, rel: &str, value: &str) -> Result<()> {
        use std::os::fd::{AsRawFd, FromRawFd};
        let path = PathBuf::from(rel);
        let c = std::ffi::CString::new(rel).map_err(|_| {
            LinuxError::io(
                "write sysctl",
                &path,
                std::io::ErrorKind::InvalidInput.into(),
            )
        })?;
        // SAFETY: c is NUL-terminated and the directory fd is open for the call's duration.
        let fd = unsafe {
            libc::openat(
                self.dir.as_raw_fd(),
                c.as_ptr(),
                libc::O_WRONLY | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(LinuxError::io(
                "write sysctl",
                &path,
                std::io::Error::last_os_error(),
            ));
        }
        // SAFETY: fd was just opened and is owned by nothing else.
        let mut f = unsafe { std::fs::File::from_raw_fd(fd) };
        std::io::Write::write_all(&mut f, value.as_bytes())
            .map_err(|e| LinuxError::io("write sysctl", &path, e))
    }
}
