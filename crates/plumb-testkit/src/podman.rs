//! Podman (Debian's 4.3, CNI backend) confined to a test host: its storage, configuration,
//! CNI configuration and plugins live in the host's directory, its networks in the host's
//! namespace. Each named plumb network gets a `.conflist` for plumb-cni; Podman's own default
//! network (`podman`, the CNI bridge plugins from /usr/lib/cni) is there too, for comparison.
//! The image `localhost/bb:1` is busybox-static imported from a tarball: no registry.

use crate::{bin_dir, CmdOutput, TestHost};
use std::path::PathBuf;

/// Tools the image has, as busybox applets.
const APPLETS: &[&str] = &[
    "sh", "sleep", "ping", "ip", "nslookup", "cat", "httpd", "true",
];

/// One Podman confined to a test host; every container it made is removed when dropped.
pub struct Podman<'a> {
    h: &'a TestHost,
    /// Its directory (storage, configuration, CNI files).
    pub dir: PathBuf,
}

impl<'a> Podman<'a> {
    /// Sets Podman up in `h` with one plumb-cni conflist per name in `networks`.
    pub fn new(h: &'a TestHost, networks: &[&str]) -> Self {
        let dir = h.dir.join("podman");
        for d in [
            "root",
            "runroot",
            "cni",
            "plugins",
            "image/bin",
            "image/www",
        ] {
            std::fs::create_dir_all(dir.join(d)).unwrap();
        }
        std::fs::copy(bin_dir().join("plumb-cni"), dir.join("plugins/plumb"))
            .expect("plumb-cni built (cargo build --release -p plumb-cni)");
        for network in networks {
            let conflist = serde_json::json!({"cniVersion": "1.0.0", "name": network, "plugins": [
                {"type": "plumb", "network": network, "socket": h.socket.display().to_string(),
                 "capabilities": {"aliases": true, "portMappings": true}}]});
            std::fs::write(
                dir.join(format!("cni/{network}.conflist")),
                conflist.to_string(),
            )
            .unwrap();
        }
        // The CNI backend, plumb's plugin directory and Debian's CNI plugins (for Podman's own
        // default network); limits this VM allows.
        let conf = format!(
            "[containers]\ndefault_ulimits = [\"nofile=1024:1024\", \"nproc=1024:1024\"]\n\
             [network]\nnetwork_backend = \"cni\"\n\
             cni_plugin_dirs = [\"{0}/plugins\", \"/usr/lib/cni\"]\n\
             network_config_dir = \"{0}/cni\"\n\
             [engine]\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\nruntime = \"runc\"\n",
            dir.display()
        );
        std::fs::write(dir.join("containers.conf"), conf).unwrap();
        let bin = dir.join("image/bin");
        std::fs::copy(
            h.sh("command -v busybox").stdout.trim(),
            bin.join("busybox"),
        )
        .expect("busybox-static installed");
        for tool in APPLETS {
            std::os::unix::fs::symlink("busybox", bin.join(tool)).unwrap();
        }
        std::fs::write(dir.join("image/www/index.html"), "served by c3\n").unwrap();
        let p = Podman { h, dir };
        let o = h.sh(&format!(
            "tar -C {0}/image -cf {0}/busybox.tar . && {1} import {0}/busybox.tar localhost/bb:1",
            p.dir.display(),
            p.cmd()
        ));
        assert!(o.ok(), "podman import: {}", o.stderr);
        p
    }

    /// The podman command line with this instance's configuration and storage.
    pub fn cmd(&self) -> String {
        format!(
            "CONTAINERS_CONF={0}/containers.conf podman --root {0}/root --runroot {0}/runroot --storage-driver vfs",
            self.dir.display()
        )
    }

    /// Runs `podman ARGS` in the test host's namespace.
    pub fn run(&self, args: &str) -> CmdOutput {
        self.h.sh(&format!("{} {args}", self.cmd()))
    }
}

impl Drop for Podman<'_> {
    fn drop(&mut self) {
        let _ = self.run("rm -af -t 0");
    }
}
