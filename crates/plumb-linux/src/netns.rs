//! Network namespaces. The only file that calls setns, unshare or mount: each call runs on a
//! fresh thread whose namespace changes die with it, never on a tokio worker.

use crate::error::{LinuxError, Result};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};
use std::fs::File;
use std::path::{Path, PathBuf};

/// Runs `f` on a new thread that has entered the network namespace at `ns` (or stays in the
/// caller's namespace when `None`), and returns what `f` returns.
pub async fn run_in<T, F>(ns: Option<PathBuf>, f: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T> + Send + 'static,
{
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("plumb-netns".into())
        .spawn(move || {
            let r = (|| {
                if let Some(path) = &ns {
                    enter(path)?;
                }
                f()
            })();
            let _ = tx.send(r);
        })
        .map_err(|e| LinuxError::Thread(e.to_string()))?;
    rx.await
        .map_err(|_| LinuxError::Thread("exited without an answer".into()))?
}

/// Enters the network namespace at `path` on the calling thread.
fn enter(path: &Path) -> Result<()> {
    let f = File::open(path).map_err(|e| LinuxError::io("open namespace", path, e))?;
    setns(&f, CloneFlags::CLONE_NEWNET)
        .map_err(|e| LinuxError::io("enter namespace", path, e.into()))
}

/// True when `a` and `b` are the same namespace (same device and inode).
pub fn same_namespace(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => false,
    }
}

/// True when `path` is a bound network namespace file.
pub fn is_netns(path: &Path) -> bool {
    nix::sys::statfs::statfs(path)
        .map(|s| s.filesystem_type() == nix::sys::statfs::NSFS_MAGIC)
        .unwrap_or(false)
}

/// Makes `dir` a shared mount point so namespace bind mounts under it are visible from
/// other mount namespaces (what `ip netns` does for /run/netns).
pub async fn prepare_dir(dir: PathBuf) -> Result<()> {
    run_in(None, move || {
        std::fs::create_dir_all(&dir).map_err(|e| LinuxError::io("create", &dir, e))?;
        let shared = MsFlags::MS_SHARED | MsFlags::MS_REC;
        if mount(None::<&str>, &dir, None::<&str>, shared, None::<&str>).is_err() {
            mount(
                Some(&dir),
                &dir,
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None::<&str>,
            )
            .map_err(|e| LinuxError::io("bind mount", &dir, e.into()))?;
            mount(None::<&str>, &dir, None::<&str>, shared, None::<&str>)
                .map_err(|e| LinuxError::io("make shared", &dir, e.into()))?;
        }
        Ok(())
    })
    .await
}

/// Creates a new network namespace bound at `path`. With `share_current`, binds the caller's
/// own namespace instead (host-mode sandboxes). Succeeds if `path` is bound already.
pub async fn create(path: PathBuf, share_current: bool) -> Result<()> {
    if is_netns(&path) {
        return Ok(());
    }
    run_in(None, move || {
        File::create(&path).map_err(|e| LinuxError::io("create", &path, e))?;
        if !share_current {
            if let Err(e) = unshare(CloneFlags::CLONE_NEWNET) {
                let _ = std::fs::remove_file(&path);
                return Err(LinuxError::io("unshare", &path, e.into()));
            }
            // Interfaces plumbed in later get no automatic IPv6 link-local address: no DAD,
            // router solicitations or MLD reports flooded across a bridge with every new
            // port (which made each connect cost O(ports)). IPv6 networks add their global
            // addresses explicitly. A kernel without IPv6 has no such file.
            let _ = std::fs::write("/proc/sys/net/ipv6/conf/default/addr_gen_mode", "1");
        }
        bind_at(Path::new("/proc/thread-self/ns/net"), &path)
    })
    .await
}

/// Bind-mounts the namespace file `src` on `path` (created, empty); on failure `path` is
/// removed again.
fn bind_at(src: &Path, path: &Path) -> Result<()> {
    if let Err(e) = mount(
        Some(src),
        path,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    ) {
        let _ = std::fs::remove_file(path);
        return Err(LinuxError::io("bind namespace", path, e.into()));
    }
    Ok(())
}

/// Binds the existing namespace at `src` (a runtime's, such as `/proc/<pid>/ns/net`) at
/// `path` as well, so that plumb's handle on it does not depend on that process. Succeeds if
/// `path` is bound already.
pub async fn bind(src: PathBuf, path: PathBuf) -> Result<()> {
    if is_netns(&path) {
        return Ok(());
    }
    run_in(None, move || {
        File::create(&path).map_err(|e| LinuxError::io("create", &path, e))?;
        bind_at(&src, &path)
    })
    .await
}

/// Unbinds and removes the namespace file at `path`; the kernel frees the namespace when its
/// last user goes. Succeeds if it is gone already.
pub async fn remove(path: PathBuf) -> Result<()> {
    run_in(None, move || {
        match umount2(&path, MntFlags::MNT_DETACH) {
            Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
            Err(e) => return Err(LinuxError::io("unmount namespace", &path, e.into())),
        }
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(LinuxError::io("remove", &path, e)),
        }
    })
    .await
}

/// Opens the namespace file, for handing its fd to the kernel (IFLA_NET_NS_FD).
pub fn open(path: &Path) -> Result<File> {
    File::open(path).map_err(|e| LinuxError::io("open namespace", path, e))
}
