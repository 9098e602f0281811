//! containerd (Debian's 1.6) running a container on a plumb network with `ctr run --cni`:
//! ctr execs plumb-cni from /opt/cni/bin with the first conflist in /etc/cni/net.d, as a
//! node's CNI setup does. Both directories are plumb's own only inside a private mount
//! namespace (a tmpfs on /opt, a bind mount on /etc/cni/net.d); containerd's root, state and
//! socket live in the test host's directory.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use plumb_e2e::{host, ip_on, TestHost};
use std::path::{Path, PathBuf};

/// A containerd daemon in the test host's namespace, killed (with its shims) when dropped.
struct Containerd<'a> {
    h: &'a TestHost,
    dir: PathBuf,
    child: std::process::Child,
}

impl<'a> Containerd<'a> {
    fn start(h: &'a TestHost) -> Self {
        let dir = h.dir.join("containerd");
        std::fs::create_dir_all(&dir).unwrap();
        let conf = format!(
            "version = 2\nroot = \"{0}/root\"\nstate = \"{0}/state\"\n\
             disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
             [grpc]\n  address = \"{0}/c.sock\"\n[ttrpc]\n  address = \"{0}/c.sock.ttrpc\"\n",
            dir.display()
        );
        std::fs::write(dir.join("config.toml"), conf).unwrap();
        let log = std::fs::File::create(dir.join("log")).unwrap();
        let child = std::process::Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", h.ns))
            .args(["containerd", "--config"])
            .arg(dir.join("config.toml"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("containerd (Debian: containerd; scripts/deps.sh installs it)");
        let c = Containerd { h, dir, child };
        let up = (0..100).any(|_| {
            std::thread::sleep(std::time::Duration::from_millis(50));
            c.ctr("version").ok()
        });
        assert!(up, "containerd did not start: {}", c.log());
        c
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
    }

    fn ctr(&self, args: &str) -> plumb_testkit::CmdOutput {
        self.h.sh(&format!(
            "ctr -a {}/c.sock -n plumb {args}",
            self.dir.display()
        ))
    }

    /// Imports busybox-static as `localhost/bb:1`: an OCI layout made here, no registry.
    fn import_busybox(&self) {
        let script = format!(
            r#"set -e; d={0}/image; mkdir -p $d/rootfs/bin $d/oci/blobs/sha256
cp "$(command -v busybox)" $d/rootfs/bin/
for t in sh ping nslookup ip cat; do ln -s busybox $d/rootfs/bin/$t; done
blob() {{ s=$(sha256sum "$1" | cut -d' ' -f1); echo "$s $(stat -c %s "$1")"; mv "$1" $d/oci/blobs/sha256/$s; }}
tar -C $d/rootfs -cf $d/layer.tar .; set -- $(blob $d/layer.tar); L=$1 LS=$2
printf '{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":["sha256:%s"]}},"config":{{}}}}' $L > $d/config.json
set -- $(blob $d/config.json); C=$1 CS=$2
printf '{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:%s","size":%s}}]}}' $C $CS $L $LS > $d/manifest.json
set -- $(blob $d/manifest.json); M=$1 MS=$2
printf '{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{{"io.containerd.image.name":"localhost/bb:1"}}}}]}}' $M $MS > $d/oci/index.json
echo '{{"imageLayoutVersion":"1.0.0"}}' > $d/oci/oci-layout
tar -C $d/oci -cf $d/bb.tar ."#,
            self.dir.display()
        );
        let o = self.h.sh(&script);
        assert!(o.ok(), "image: {}", o.stderr);
        let o = self.ctr(&format!(
            "images import --snapshotter native {}/image/bb.tar",
            self.dir.display()
        ));
        assert!(o.ok(), "ctr images import: {}", o.stderr);
    }

    /// `ctr run --cni` in a private mount namespace where /opt/cni/bin holds plumb-cni as
    /// `plumb` and /etc/cni/net.d holds `conflist`.
    fn run_with_cni(&self, conflist: &serde_json::Value, args: &str) -> plumb_testkit::CmdOutput {
        let cni = self.dir.join("net.d");
        std::fs::create_dir_all(&cni).unwrap();
        std::fs::write(cni.join("10-plumb.conflist"), conflist.to_string()).unwrap();
        let plugin = plumb_testkit::bin_dir().join("plumb-cni");
        let script = format!(
            "mount -t tmpfs plumb-test /opt && mkdir -p /opt/cni/bin && \
             cp {} /opt/cni/bin/plumb && mount --bind {} /etc/cni/net.d && \
             ctr -a {}/c.sock -n plumb run --cni --rm --snapshotter native {args}",
            plugin.display(),
            cni.display(),
            self.dir.display()
        );
        self.h.sh(&format!(
            "unshare -m sh -c '{}'",
            script.replace('\'', "'\\''")
        ))
    }
}

impl Drop for Containerd<'_> {
    fn drop(&mut self) {
        let sock = format!("{}/c.sock", self.dir.display());
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::process::Command::new("pkill")
            .args(["-9", "-f", &sock])
            .status();
    }
}

#[test]
fn containerd_runs_a_container_on_a_plumb_network_through_cni() {
    let Some(h) = host() else { return };
    for tool in ["containerd", "ctr", "runc", "busybox"] {
        assert!(
            h.sh(&format!("command -v {tool}")).ok(),
            "this test needs {tool} (Debian: containerd, runc, busybox-static; scripts/deps.sh installs them)"
        );
    }
    assert!(
        Path::new("/etc/cni/net.d").is_dir(),
        "this test mounts its CNI configuration on /etc/cni/net.d, which must exist (Debian's podman package makes it)"
    );
    h.plumb_ok(&["network", "create", "--subnet", "10.79.0.0/24", "web"]);
    h.plumb_ok(&["sandbox", "create", "peer"]);
    h.plumb_ok(&["network", "connect", "web", "peer"]);
    let peer = ip_on(&h, "peer", "web");
    let c = Containerd::start(&h);
    c.import_busybox();
    let conflist = serde_json::json!({"cniVersion": "1.0.0", "name": "web", "plugins": [
        {"type": "plumb", "network": "web", "socket": h.socket.display().to_string()}]});
    let links = h.links();
    // The container reaches its network and plumb's DNS; ctr removes it (CNI DEL) on exit.
    let o = c.run_with_cni(
        &conflist,
        &format!("localhost/bb:1 c1 sh -c 'ip -o addr show eth0 && ping -c1 -W2 {peer} && nslookup peer 127.0.0.11'"),
    );
    assert!(
        o.ok(),
        "ctr run --cni: {}{}\n{}",
        o.stdout,
        o.stderr,
        c.log()
    );
    assert!(o.stdout.contains("inet 10.79.0."), "{}", o.stdout);
    assert!(
        o.stdout.contains(&format!("Address: {peer}")),
        "{}",
        o.stdout
    );
    assert!(
        !h.plumb_ok(&["sandbox", "ls"]).contains("cni-"),
        "CNI DEL removed the sandbox"
    );
    let eps = plumb_e2e::network(&h, "web")["Containers"]
        .as_object()
        .map(|m| m.len());
    assert_eq!(eps, Some(1), "only peer is left on the network");
    assert_eq!(h.links(), links, "the container's veth is gone");
}
