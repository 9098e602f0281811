//! Errors of the Linux layer, with the errno mapping the rest of plumb relies on.

use std::path::PathBuf;

/// Errors of kernel and file operations.
#[derive(Debug, thiserror::Error)]
pub enum LinuxError {
    /// A netlink request failed.
    #[error("{op}: {message}")]
    Netlink {
        /// What was being done, naming the object.
        op: String,
        /// The kernel's answer.
        message: String,
        /// The errno, if the kernel gave one.
        errno: Option<i32>,
    },
    /// A file or namespace operation failed.
    #[error("{op} {path}: {source}", path = path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The nft command failed.
    #[error("nft: {0} (is the nftables package installed and the nf_tables module available?)")]
    Nft(String),
    /// A helper thread died.
    #[error("namespace helper thread failed: {0}")]
    Thread(String),
}

impl LinuxError {
    /// The errno of a netlink or io failure.
    pub fn errno(&self) -> Option<i32> {
        match self {
            LinuxError::Netlink { errno, .. } => *errno,
            LinuxError::Io { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }

    /// True when the kernel lacks what was asked for (a link kind it was built without).
    pub fn is_unsupported(&self) -> bool {
        self.errno() == Some(libc::EOPNOTSUPP)
    }

    /// True when the failure means "it exists already".
    pub fn is_exists(&self) -> bool {
        self.errno() == Some(libc::EEXIST)
    }

    /// True when the failure means "it is not there".
    pub fn is_not_found(&self) -> bool {
        matches!(
            self.errno(),
            Some(libc::ENOENT) | Some(libc::ENODEV) | Some(libc::ESRCH) | Some(libc::EADDRNOTAVAIL)
        )
    }

    /// Wraps an io error.
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        LinuxError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

/// Converts an rtnetlink error, naming the operation.
pub fn nl_err(op: impl Into<String>, e: rtnetlink::Error) -> LinuxError {
    let errno = match &e {
        rtnetlink::Error::NetlinkError(m) => m.code.map(|c| -c.get()),
        _ => None,
    };
    let message = match errno {
        Some(n) => std::io::Error::from_raw_os_error(n).to_string(),
        None => e.to_string(),
    };
    LinuxError::Netlink {
        op: op.into(),
        message,
        errno,
    }
}

/// The Linux layer's result type.
pub type Result<T, E = LinuxError> = std::result::Result<T, E>;
