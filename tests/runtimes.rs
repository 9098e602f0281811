//! Namespaces made by a runtime (as runc, crun and CNI runtimes make them): plumb adopts one,
//! plumbs it like its own, and never deletes it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use plumb_e2e::{can_ping, host, ip_on, sandbox, TestHost};

#[test]
fn an_adopted_namespace_is_plumbed_and_never_deleted() {
    let Some(mut h) = host() else { return };
    h.furnish();
    let before = h.furnishings();
    // The "runtime" makes its namespace, with a process in it.
    let ns = h.adopt_namespace("ctr");
    assert!(h.sh(&format!("ip netns add {ns}")).ok());
    let path = format!("/run/netns/{ns}");
    h.plumb_ok(&["network", "create", "--subnet", "10.71.0.0/24", "web"]);
    h.plumb_ok(&["sandbox", "create", "--netns", &path, "ctr"]);
    h.plumb_ok(&["sandbox", "create", "peer"]);
    h.plumb_ok(&["network", "connect", "--alias", "api", "web", "ctr"]);
    h.plumb_ok(&["network", "connect", "web", "peer"]);
    let sb = sandbox(&h, "ctr");
    assert_eq!(sb["Key"], path.as_str(), "{sb}");
    assert_eq!(sb["Netns"], path.as_str(), "{sb}");
    let ctr = ip_on(&h, "ctr", "web");
    // Seen from the runtime's own handle on its namespace.
    let o = h.sh(&format!("ip netns exec {ns} ip -o addr show eth0"));
    assert!(o.stdout.contains(&ctr), "{}", o.stdout);
    let o = h.sh(&format!(
        "ip netns exec {ns} ping -c1 -W1 {}",
        ip_on(&h, "peer", "web")
    ));
    assert!(
        o.ok(),
        "the adopted namespace reaches its network: {}",
        o.stderr
    );
    assert!(
        can_ping(&h, "peer", "api"),
        "its alias resolves from the peer"
    );

    // Refusals that leave nothing behind.
    let refuse = |body: serde_json::Value, status: u16, text: &str| {
        let (st, v) = h.api("POST", "/plumb/v1/sandboxes", Some(&body));
        assert_eq!(st, status, "{body}: {v}");
        let msg = v["message"].as_str().unwrap_or_default();
        assert!(msg.contains(text), "{body}: {msg}");
    };
    refuse(
        serde_json::json!({"Name": "again", "Netns": path}),
        409,
        "ctr",
    );
    refuse(
        serde_json::json!({"Name": "rel", "Netns": "run/netns/x"}),
        400,
        "Netns",
    );
    refuse(
        serde_json::json!({"Name": "dots", "Netns": format!("/run/netns/../netns/{ns}")}),
        400,
        "Netns",
    );
    refuse(
        serde_json::json!({"Name": "file", "Netns": "/etc/hostname"}),
        400,
        "not a network namespace",
    );
    refuse(
        serde_json::json!({"Name": "own", "Netns": "/proc/self/ns/net"}),
        400,
        "plumbd's own",
    );
    refuse(
        serde_json::json!({"Name": "hm", "Netns": path, "HostMode": true}),
        400,
        "host-mode",
    );
    let names = h.plumb_ok(&["sandbox", "ls"]);
    assert!(
        !names.contains("again") && !names.contains("file"),
        "{names}"
    );

    // kill -9 and back: still plumbed, nothing asked of the namespace.
    h.kill9();
    h.start();
    assert!(h
        .sh(&format!(
            "ip netns exec {ns} ping -c1 -W1 {}",
            ip_on(&h, "peer", "web")
        ))
        .ok());

    // Removal unplumbs and leaves the namespace to its runtime, with nothing of plumb's.
    let tables = |h: &TestHost| h.sh(&format!("ip netns exec {ns} nft list tables")).stdout;
    assert!(
        tables(&h).contains("plumb_dns"),
        "the resolver's redirection"
    );
    h.plumb_ok(&["sandbox", "rm", "ctr"]);
    // (The table goes right after the answer.)
    let gone = (0..100).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(20));
        !tables(&h).contains("plumb_dns")
    });
    assert!(gone, "the resolver's table is removed: {}", tables(&h));
    assert!(
        h.sh(&format!("ip netns exec {ns} true")).ok(),
        "the namespace is still there"
    );
    let o = h.sh(&format!("ip netns exec {ns} ip -o link show"));
    assert!(
        !o.stdout.contains("eth0"),
        "its interface is gone: {}",
        o.stdout
    );
    // The runtime can hand it over again.
    h.plumb_ok(&["sandbox", "create", "--netns", &path, "ctr2"]);
    h.plumb_ok(&["network", "connect", "web", "ctr2"]);
    h.plumb_ok(&["sandbox", "rm", "ctr2", "peer"]);
    h.plumb_ok(&["network", "rm", "web"]);
    assert!(h.sh(&format!("ip netns exec {ns} true")).ok());
    assert_eq!(h.furnishings(), before);
}

#[test]
fn the_interface_name_can_be_asked_for_as_runtimes_do() {
    let Some(h) = host() else { return };
    h.plumb_ok(&["network", "create", "--subnet", "10.72.0.0/24", "a"]);
    h.plumb_ok(&["network", "create", "--subnet", "10.73.0.0/24", "b"]);
    h.plumb_ok(&["sandbox", "create", "s"]);
    let opt = |name: &str| format!("com.docker.network.endpoint.ifname={name}");
    h.plumb_ok(&["network", "connect", "--driver-opt", &opt("net0"), "a", "s"]);
    assert!(h.in_sandbox("s", "ip link show net0").ok());
    assert_eq!(ip_on(&h, "s", "a"), "10.72.0.2");
    // Refused before anything is taken: a bad name, a name in use.
    for (name, why) in [
        ("bad/name", "interface name"),
        ("x".repeat(16).as_str(), "interface name"),
        ("net0", "of that name"),
    ] {
        let err = h.plumb_err(&["network", "connect", "--driver-opt", &opt(name), "b", "s"]);
        assert!(
            err.contains("DriverOpts") && err.contains(why),
            "{name}: {err}"
        );
    }
    h.plumb_ok(&["network", "connect", "b", "s"]);
    assert_eq!(
        ip_on(&h, "s", "b"),
        "10.73.0.2",
        "no address was lost to the refusals"
    );
    assert!(
        h.in_sandbox("s", "ip link show eth0").ok(),
        "the next free ethN otherwise"
    );
}

/// Runs plumb-oci-hook for `phase` with `state` on stdin, as runc does: (exit ok, stderr).
fn hook(phase: &str, state: &serde_json::Value) -> (bool, String) {
    use std::io::Write;
    let mut child = std::process::Command::new(plumb_testkit::bin_dir().join("plumb-oci-hook"))
        .args([phase])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("plumb-oci-hook built (cargo build --release -p plumb-cni)");
    let _ = child
        .stdin
        .take()
        .unwrap()
        .write_all(state.to_string().as_bytes());
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_oci_hook_plumbs_a_container_from_its_annotations() {
    let Some(mut h) = host() else { return };
    h.plumb_ok(&["network", "create", "--subnet", "10.75.0.0/24", "web"]);
    h.plumb_ok(&["sandbox", "create", "peer"]);
    h.plumb_ok(&["network", "connect", "web", "peer"]);
    // The "container": a process in a namespace of its own, as runc makes it.
    let ns = h.adopt_namespace("oci");
    assert!(h.sh(&format!("ip netns add {ns}")).ok());
    assert!(h
        .sh(&format!("ip netns exec {ns} sleep 300 >/dev/null 2>&1 &"))
        .ok());
    let mut pid = String::new();
    for _ in 0..100 {
        pid = h
            .sh(&format!("ip netns pids {ns}"))
            .stdout
            .trim()
            .to_owned();
        if !pid.is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let pid: u64 = pid.lines().next().unwrap().parse().unwrap();
    let socket = h.socket.display().to_string();
    let state = |net: &str| {
        serde_json::json!({"ociVersion": "1.0.2", "id": "ctr1", "status": "created", "pid": pid,
            "bundle": "/tmp", "annotations": {"io.plumb.network": net, "io.plumb.alias": "api,www",
            "io.plumb.ports": "18280:80", "io.plumb.socket": socket}})
    };
    // A network that does not exist: the hook fails and leaves nothing.
    let (ok, err) = hook("createRuntime", &state("web,nosuch"));
    assert!(!ok && err.contains("nosuch"), "{err}");
    assert!(!h.plumb(&["sandbox", "inspect", "oci-ctr1"]).ok());
    let (ok, err) = hook("createRuntime", &state("web"));
    assert!(ok, "{err}");
    let o = h.sh(&format!("ip netns exec {ns} ip -o addr show eth0"));
    assert!(o.stdout.contains("inet 10.75.0."), "{}", o.stdout);
    // The failed attempt kept nothing: two endpoints on the network, peer's and this one.
    let eps = plumb_e2e::network(&h, "web")["Containers"]
        .as_object()
        .map(|m| m.len());
    assert_eq!(eps, Some(2));
    assert!(can_ping(&h, "peer", "www"), "its alias resolves");
    // plumb holds its own handle on the namespace, not the process's /proc path (a pid can
    // be reused by another process once this one is gone).
    let key = sandbox(&h, "oci-ctr1")["Key"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(key.starts_with(&h.dir.display().to_string()), "{key}");
    let port = h.plumb_ok(&["sandbox", "port", "oci-ctr1"]);
    assert!(port.contains("18280"), "{port}");
    let (ok, err) = hook("poststop", &state("web"));
    assert!(ok, "{err}");
    assert!(!h.plumb(&["sandbox", "inspect", "oci-ctr1"]).ok());
    assert!(hook("poststop", &state("web")).0, "poststop twice is fine");
    assert!(
        h.sh(&format!("ip netns exec {ns} true")).ok(),
        "the namespace is the runtime's"
    );
    // Bad state: a clear refusal.
    let (ok, err) = hook(
        "createRuntime",
        &serde_json::json!({"id": "../x", "pid": pid}),
    );
    assert!(!ok && err.contains("container id"), "{err}");
    let (ok, err) = hook("sometime", &state("web"));
    assert!(!ok && err.contains("phase"), "{err}");
}

/// A container of an OCI runtime (runc, crun), killed and deleted when dropped (its
/// namespace is not the host's, so the host's teardown would not reach it).
struct OciContainer<'a> {
    h: &'a TestHost,
    runtime: &'static str,
    state: String,
    id: &'static str,
}

impl OciContainer<'_> {
    fn runc(&self, args: &str) -> plumb_testkit::CmdOutput {
        // crun refuses a hybrid cgroup layout with controllers on the v2 side (this VM has
        // hugetlb there): it runs in a private mount namespace without the v2 hierarchy.
        let cmd = format!("{} --root {} {args}", self.runtime, self.state);
        if self.runtime == "crun" {
            let script = format!(
                "(! mountpoint -q /sys/fs/cgroup/unified || umount /sys/fs/cgroup/unified) && {cmd}"
            );
            self.h.sh(&format!("unshare -m sh -c '{script}'"))
        } else {
            self.h.sh(&cmd)
        }
    }
}

impl Drop for OciContainer<'_> {
    fn drop(&mut self) {
        let _ = self.runc(&format!("kill {} KILL", self.id));
        std::thread::sleep(std::time::Duration::from_millis(100));
        let _ = self.runc(&format!("delete -f {}", self.id));
    }
}

#[test]
fn runc_runs_a_container_on_a_plumb_network_through_the_hook() {
    oci_runtime_runs_a_container("runc");
}

#[test]
fn crun_runs_a_container_on_a_plumb_network_through_the_hook() {
    oci_runtime_runs_a_container("crun");
}

/// `runtime` runs a busybox bundle whose config.json carries plumb's hook.
fn oci_runtime_runs_a_container(runtime: &'static str) {
    let Some(h) = host() else { return };
    for tool in [runtime, "busybox"] {
        assert!(
            h.sh(&format!("command -v {tool}")).ok(),
            "this test needs {tool} (Debian: {runtime}, busybox-static; scripts/deps.sh installs them)"
        );
    }
    h.plumb_ok(&["network", "create", "--subnet", "10.76.0.0/24", "web"]);
    h.plumb_ok(&["sandbox", "create", "peer"]);
    h.plumb_ok(&["network", "connect", "web", "peer"]);
    let peer = ip_on(&h, "peer", "web");
    // A bundle: busybox as the root filesystem, the runtime's default spec with the hook.
    let bundle = h.dir.join("bundle");
    let rootfs = bundle.join("rootfs/bin");
    std::fs::create_dir_all(&rootfs).unwrap();
    std::fs::copy(
        h.sh("command -v busybox").stdout.trim(),
        rootfs.join("busybox"),
    )
    .unwrap();
    for tool in ["sh", "sleep", "ping", "ip", "nslookup"] {
        std::os::unix::fs::symlink("busybox", rootfs.join(tool)).unwrap();
    }
    let o = h.sh(&format!("cd {} && {runtime} spec", bundle.display()));
    assert!(o.ok(), "{runtime} spec: {}", o.stderr);
    let cfg_path = bundle.join("config.json");
    let mut cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&cfg_path).unwrap()).unwrap();
    let hook_bin = plumb_testkit::bin_dir().join("plumb-oci-hook");
    let hook_bin = hook_bin.display().to_string();
    cfg["process"]["terminal"] = serde_json::json!(false);
    cfg["process"]["args"] = serde_json::json!(["sleep", "300"]);
    // ping needs a raw socket, which the default specs do not grant.
    for set in ["bounding", "effective", "permitted"] {
        if let Some(caps) = cfg["process"]["capabilities"][set].as_array_mut() {
            caps.push(serde_json::json!("CAP_NET_RAW"));
        }
    }
    cfg["hooks"] = serde_json::json!({
        "createRuntime": [{"path": hook_bin, "args": ["plumb-oci-hook", "createRuntime"]}],
        "poststop": [{"path": hook_bin, "args": ["plumb-oci-hook", "poststop"]}],
    });
    cfg["annotations"] = serde_json::json!({"io.plumb.network": "web", "io.plumb.alias": "box",
        "io.plumb.socket": h.socket.display().to_string()});
    std::fs::write(&cfg_path, cfg.to_string()).unwrap();
    let c = OciContainer {
        h: &h,
        runtime,
        state: h.dir.join(runtime).display().to_string(),
        id: "ctr1",
    };
    let o = c.runc(&format!(
        "run -d --bundle {} ctr1 </dev/null >{}/oci.log 2>&1",
        bundle.display(),
        h.dir.display()
    ));
    let log = std::fs::read_to_string(h.dir.join("oci.log")).unwrap_or_default();
    assert!(o.ok(), "{runtime} run: {log}");
    // Networking was complete before the process started; it reaches its network by
    // address and the embedded DNS by name.
    let o = c.runc(&format!("exec ctr1 ping -c1 -W2 {peer}"));
    assert!(o.ok(), "ping from the container: {}{}", o.stdout, o.stderr);
    let o = c.runc("exec ctr1 nslookup peer 127.0.0.11");
    assert!(
        o.stdout.contains(&peer),
        "the embedded DNS in the container: {}",
        o.stdout
    );
    assert!(
        can_ping(&h, "peer", "box"),
        "the container's alias from the peer"
    );
    // Removal runs poststop: the sandbox goes.
    assert!(c.runc("kill ctr1 KILL").ok());
    std::thread::sleep(std::time::Duration::from_millis(200));
    let o = c.runc("delete ctr1");
    assert!(o.ok(), "{runtime} delete: {}", o.stderr);
    assert!(
        !h.plumb(&["sandbox", "inspect", "oci-ctr1"]).ok(),
        "poststop removed it"
    );
    let eps = plumb_e2e::network(&h, "web")["Containers"]
        .as_object()
        .map(|m| m.len());
    assert_eq!(eps, Some(1), "only peer is left on the network");
}

#[test]
fn a_sandbox_is_made_with_its_networks_in_one_request_or_not_at_all() {
    let Some(h) = host() else { return };
    h.plumb_ok(&["network", "create", "--subnet", "10.77.0.0/24", "web"]);
    h.plumb_ok(&["network", "create", "--subnet", "10.77.1.0/24", "db"]);
    let (st, v) = h.api(
        "POST",
        "/plumb/v1/sandboxes",
        Some(&serde_json::json!({"Name": "both", "Networks": {
            "web": {"Aliases": ["front"]}, "db": {"IPAMConfig": {"IPv4Address": "10.77.1.9"}}}})),
    );
    assert_eq!(st, 201, "{v}");
    let eps = v["Endpoints"].as_array().cloned().unwrap_or_default();
    assert_eq!(eps.len(), 2, "{v}");
    assert!(
        eps.iter().any(|e| e["IPv4Address"] == "10.77.1.9/24"),
        "{v}"
    );
    h.plumb_ok(&["sandbox", "create", "peer"]);
    h.plumb_ok(&["network", "connect", "web", "peer"]);
    assert!(can_ping(&h, "peer", "front"), "the alias given at creation");

    // One bad network: nothing is made, nothing is held.
    let links = h.links();
    let (st, v) = h.api(
        "POST",
        "/plumb/v1/sandboxes",
        Some(&serde_json::json!({"Name": "half", "Networks": {"web": {}, "zzz": {}}})),
    );
    assert_eq!(st, 404, "{v}");
    assert!(v["message"].as_str().unwrap_or("").contains("zzz"), "{v}");
    assert!(!h.plumb(&["sandbox", "inspect", "half"]).ok());
    assert_eq!(h.links(), links, "no veth left behind");
    // A bad endpoint setting is refused before anything is made.
    let (st, v) = h.api(
        "POST",
        "/plumb/v1/sandboxes",
        Some(&serde_json::json!({"Name": "bad", "Networks": {"web": {"MacAddress": "nope"}}})),
    );
    assert_eq!(st, 400, "{v}");
    assert!(
        v["message"].as_str().unwrap_or("").contains("MacAddress"),
        "{v}"
    );
    assert!(!h.plumb(&["sandbox", "inspect", "bad"]).ok());
    // The address of the failed attempt is free again.
    h.plumb_ok(&["sandbox", "create", "again"]);
    h.plumb_ok(&["network", "connect", "--ip", "10.77.0.4", "web", "again"]);
}
