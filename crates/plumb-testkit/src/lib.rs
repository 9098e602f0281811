//! plumb-testkit: throwaway hosts for kernel and end-to-end tests.
//!
//! A [`TestHost`] is a network namespace named `plt-<pid>-<n>` with its own directory under
//! `/tmp/plumb-test/`, running plumbd inside it (entered with `nsenter --net=`, so that the
//! daemon shares the test's mount namespace and its namespace files are visible). Dropping
//! the host kills the daemon, unmounts everything under its directory and deletes the
//! namespace. [`sweep`] removes what crashed test runs left behind; every new host runs it
//! once per process.
//!
//! Nothing here touches the machine's root namespace: links, addresses, routes and firewall
//! tables are all created inside the test's namespaces.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod cluster;
pub mod crash;
mod host;
pub mod plugins;
pub mod podman;
mod rng;
mod stubdns;
mod sweep;

pub use cluster::{in_netns, Etcd, Pki, Underlay};
pub use host::{CmdOutput, TestHost};
pub use plugins::PluginProc;
pub use podman::Podman;
pub use rng::Rng;
pub use stubdns::StubDns;
pub use sweep::sweep;

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Where test hosts keep their files.
pub const TEST_ROOT: &str = "/tmp/plumb-test";
/// Prefix of test namespace names.
pub const NS_PREFIX: &str = "plt-";

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// Runs the sweep of leftovers once per process, before the first host or underlay.
pub(crate) static SWEEP: std::sync::Once = std::sync::Once::new();

/// A name unique to this process and call: `<pid>-<n>`.
pub fn unique_tag() -> String {
    format!(
        "{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    )
}

/// The directory holding the plumbd and plumb binaries: `PLUMB_BIN_DIR`, else the cargo
/// cargo target directory of the running test or benchmark (`target/<profile>`).
pub fn bin_dir() -> PathBuf {
    if let Ok(d) = std::env::var("PLUMB_BIN_DIR") {
        return PathBuf::from(d);
    }
    let exe = std::env::current_exe().expect("current exe");
    // A test runs from target/<profile>/deps, a benchmark binary from target/<profile>.
    let candidates: Vec<PathBuf> = exe.ancestors().skip(1).take(2).map(PathBuf::from).collect();
    let found = candidates
        .iter()
        .find(|d| d.join("plumbd").exists() && d.join("plumb").exists());
    match found {
        Some(d) => d.clone(),
        None => panic!(
            "plumbd and plumb not found in {candidates:?}: build the binaries first (cargo build --release -p plumbd -p plumb-cli), or set PLUMB_BIN_DIR"
        ),
    }
}

/// The variable that lets a person without root skip the kernel and end-to-end tests.
pub const OPT_OUT_VAR: &str = "PLUMB_TEST_SKIP_PRIVILEGED";

/// Checks that the test runs as root with the tools it needs. A missing prerequisite fails
/// the test with what is missing, unless the person running it set [`OPT_OUT_VAR`]`=1`:
/// then it returns false after saying so on stderr, and the caller returns early.
pub fn prerequisites() -> bool {
    let missing = missing_prerequisites();
    if missing.is_empty() {
        return true;
    }
    let msg = format!("this test needs {}", missing.join(", "));
    if std::env::var(OPT_OUT_VAR).as_deref() == Ok("1") {
        eprintln!("SKIPPED ({OPT_OUT_VAR}=1): {msg}");
        return false;
    }
    panic!("{msg} (to skip the tests that need them, set {OPT_OUT_VAR}=1)");
}

/// What this machine lacks for the kernel tests: root and the commands they run.
pub fn missing_prerequisites() -> Vec<String> {
    let mut missing = Vec::new();
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        missing.push("root (network namespaces, veth, nftables)".to_owned());
    }
    for tool in ["ip", "nft", "nsenter", "ping"] {
        let found = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).exists()))
            .unwrap_or(false);
        if !found {
            missing.push(format!("the `{tool}` command"));
        }
    }
    missing
}

#[cfg(test)]
mod tests {
    #[test]
    fn prerequisites_fail_unless_opted_out() {
        if !super::missing_prerequisites().is_empty() {
            // Without root the check must panic when no opt-out is set.
            if std::env::var(super::OPT_OUT_VAR).as_deref() != Ok("1") {
                assert!(std::panic::catch_unwind(super::prerequisites).is_err());
            } else {
                assert!(!super::prerequisites());
            }
        } else {
            assert!(super::prerequisites());
        }
    }
}
