//! Podman (Debian's 4.3, CNI backend) running containers on a plumb network through
//! plumb-cni: the runtime makes the namespaces and calls the plugin; plumb plumbs them.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use plumb_e2e::{host, TestHost};
use std::path::PathBuf;

/// Podman with its storage, configuration and CNI files inside the test host's directory;
/// every container it made is removed when dropped (their namespaces are not the host's).
struct Podman<'a> {
    h: &'a TestHost,
    dir: PathBuf,
}

impl<'a> Podman<'a> {
    fn new(h: &'a TestHost, network: &str) -> Self {
        let dir = h.dir.join("podman");
        for d in ["root", "runroot", "cni", "plugins", "image/bin"] {
            std::fs::create_dir_all(dir.join(d)).unwrap();
        }
        std::fs::copy(
            plumb_testkit::bin_dir().join("plumb-cni"),
            dir.join("plugins/plumb"),
        )
        .expect("plumb-cni built (cargo build --release -p plumb-cni)");
        let conflist = serde_json::json!({"cniVersion": "1.0.0", "name": network, "plugins": [
            {"type": "plumb", "network": network, "socket": h.socket.display().to_string(),
             "capabilities": {"aliases": true, "portMappings": true}}]});
        std::fs::write(
            dir.join(format!("cni/{network}.conflist")),
            conflist.to_string(),
        )
        .unwrap();
        // The CNI backend, plumb's plugin directory; limits this VM allows.
        let conf = format!(
            "[containers]\ndefault_ulimits = [\"nofile=1024:1024\", \"nproc=1024:1024\"]\n\
             [network]\nnetwork_backend = \"cni\"\ncni_plugin_dirs = [\"{0}/plugins\"]\n\
             network_config_dir = \"{0}/cni\"\n\
             [engine]\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\nruntime = \"runc\"\n",
            dir.display()
        );
        std::fs::write(dir.join("containers.conf"), conf).unwrap();
        // An image of busybox-static, imported from a tarball: no registry.
        let bin = dir.join("image/bin");
        std::fs::copy(
            h.sh("command -v busybox").stdout.trim(),
            bin.join("busybox"),
        )
        .unwrap();
        for tool in ["sh", "sleep", "ping", "ip", "nslookup", "cat", "httpd"] {
            std::os::unix::fs::symlink("busybox", bin.join(tool)).unwrap();
        }
        std::fs::create_dir_all(dir.join("image/www")).unwrap();
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

    fn cmd(&self) -> String {
        format!(
            "CONTAINERS_CONF={0}/containers.conf podman --root {0}/root --runroot {0}/runroot --storage-driver vfs",
            self.dir.display()
        )
    }

    fn run(&self, args: &str) -> plumb_testkit::CmdOutput {
        self.h.sh(&format!("{} {args}", self.cmd()))
    }
}

impl Drop for Podman<'_> {
    fn drop(&mut self) {
        let _ = self.run("rm -af -t 0");
    }
}

#[test]
fn podman_runs_containers_on_a_plumb_network() {
    let Some(mut h) = host() else { return };
    let outside = h.add_outside();
    assert!(
        h.sh("command -v podman && command -v busybox").ok(),
        "this test needs podman and busybox-static (scripts/deps.sh installs them)"
    );
    h.plumb_ok(&["network", "create", "--subnet", "10.78.0.0/24", "web"]);
    let p = Podman::new(&h, "web");
    for name in ["c1", "c2"] {
        let o = p.run(&format!(
            "run -d --name {name} --network web localhost/bb:1 sleep 300"
        ));
        assert!(o.ok(), "podman run {name}: {}", o.stderr);
    }
    // Addresses and routes from plumb; names from plumb's DNS (Podman writes the result's
    // name server into the container's resolv.conf and passes the container's name).
    let o = p.run("exec c2 ip -o addr show eth0");
    assert!(o.stdout.contains("inet 10.78.0."), "{}", o.stdout);
    let o = p.run("exec c2 cat /etc/resolv.conf");
    assert!(o.stdout.contains("nameserver 127.0.0.11"), "{}", o.stdout);
    let o = p.run("exec c2 ping -c1 -W2 c1");
    assert!(o.ok(), "c2 -> c1 by name: {}{}", o.stdout, o.stderr);
    // A published port: Podman's conmon binds the host port itself and plumb forwards it
    // (plumb holds no socket there, so the two do not collide); reached from outside.
    let o =
        p.run("run -d --name c3 --network web -p 18280:80 localhost/bb:1 httpd -f -p 80 -h /www");
    assert!(o.ok(), "podman run -p: {}", o.stderr);
    let o = h.sh("ss -Hltnp 'sport = :18280'");
    assert!(
        o.stdout.contains("conmon"),
        "the runtime holds it: {}",
        o.stdout
    );
    let fetch = |h: &TestHost| {
        h.sh_in(&outside, "curl -s --max-time 5 http://198.51.100.1:18280/")
            .stdout
    };
    assert_eq!(fetch(&h).trim(), "served by c3");
    assert!(
        h.sh("nft list ruleset").stdout.contains("18280"),
        "forwarded"
    );
    // plumb still keeps the port unique among its sandboxes.
    let e = h.plumb_err(&["sandbox", "create", "-p", "18280:80", "other"]);
    assert!(e.contains("18280"), "{e}");
    let sandboxes = h.plumb_ok(&["sandbox", "ls"]);
    assert_eq!(sandboxes.matches("cni-").count(), 3, "{sandboxes}");
    // A reload (Podman 4.3 sends DEL, then ADD without the runtimeConfig) plumbs them again.
    let o = p.run("network reload c1 c3");
    assert!(o.ok(), "podman network reload: {}{}", o.stdout, o.stderr);
    let o = p.run("exec c2 ping -c1 -W2 c1");
    assert!(o.ok(), "c2 -> c1 after reload: {}{}", o.stdout, o.stderr);
    // podman rm -f leaves nothing in plumb or in the host's kernel.
    let o = p.run("rm -f -t 0 c1 c2 c3");
    assert!(o.ok(), "podman rm: {}", o.stderr);
    assert!(!h.plumb_ok(&["sandbox", "ls"]).contains("cni-"));
    assert!(
        !h.sh("nft list ruleset").stdout.contains("18280"),
        "no forwarding left"
    );
    let veths = h
        .links()
        .into_iter()
        .filter(|l| l.starts_with("pv"))
        .count();
    assert_eq!(veths, 0, "no veth left: {:?}", h.links());
    let eps = plumb_e2e::network(&h, "web")["Containers"]
        .as_object()
        .map(|m| m.len());
    assert_eq!(eps, Some(0));
}
