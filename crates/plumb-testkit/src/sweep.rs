//! Removal of leftovers from crashed test runs: namespaces and directories whose owning test
//! process is gone.

use crate::{NS_PREFIX, TEST_ROOT};
use std::path::Path;
use std::process::Command;

fn pid_alive(pid: &str) -> bool {
    Path::new("/proc").join(pid).exists()
}

/// Unmounts every mount point at or under `dir`, deepest first.
pub fn unmount_under(dir: &Path) {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let prefix = dir.to_string_lossy().into_owned();
    let mut points: Vec<String> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|p| *p == prefix || p.starts_with(&format!("{prefix}/")))
        .map(str::to_owned)
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    points.dedup();
    for p in points {
        let c = std::ffi::CString::new(p).unwrap();
        // SAFETY: c is a valid NUL-terminated path.
        unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    }
}

/// Removes namespaces `plt-<pid>-*` and directories `/tmp/plumb-test/<pid>-*` of dead pids,
/// killing any plumbd still running inside them.
pub fn sweep() {
    if let Ok(rd) = std::fs::read_dir("/run/netns") {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(rest) = name.strip_prefix(NS_PREFIX) else {
                continue;
            };
            let pid = rest.split('-').next().unwrap_or("");
            if !pid_alive(pid) {
                kill_in_netns(&name);
                let _ = Command::new("ip").args(["netns", "del", &name]).status();
            }
        }
    }
    if let Ok(rd) = std::fs::read_dir(TEST_ROOT) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let pid = name.split('-').next().unwrap_or("");
            if !pid_alive(pid) {
                unmount_under(&e.path());
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
}

/// Kills every process whose network namespace is the named one.
pub fn kill_in_netns(name: &str) {
    let _ = Command::new("ip")
        .args(["netns", "pids", name])
        .output()
        .map(|o| {
            for pid in String::from_utf8_lossy(&o.stdout).split_whitespace() {
                if let Ok(p) = pid.parse::<i32>() {
                    // SAFETY: sending a signal has no memory-safety preconditions.
                    unsafe { libc::kill(p, libc::SIGKILL) };
                }
            }
        });
}
