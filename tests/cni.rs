//! plumb-cni called the way a CNI runtime calls it (environment variables, the network
//! configuration on stdin, the result on stdout), on namespaces the "runtime" made.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use plumb_e2e::{host, TestHost};
use serde_json::{json, Value};
use std::io::Write;
use std::process::{Command, Stdio};

/// Runs plumb-cni: (exit ok, stdout as JSON or Null).
fn cni(
    h: &TestHost,
    command: &str,
    container: &str,
    netns: &str,
    conf: &Value,
    args: &str,
) -> (bool, Value) {
    let mut child = Command::new(plumb_testkit::bin_dir().join("plumb-cni"))
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", container)
        .env("CNI_NETNS", netns)
        .env("CNI_IFNAME", "eth0")
        .env("CNI_ARGS", args)
        .env("CNI_PATH", "/opt/cni/bin")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("plumb-cni built (cargo build --release -p plumb-cni)");
    // A plugin may answer without reading it all.
    let _ = child
        .stdin
        .take()
        .unwrap()
        .write_all(conf.to_string().as_bytes());
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let v = serde_json::from_str(text.trim()).unwrap_or(Value::Null);
    let _ = h;
    (out.status.success(), v)
}

fn conf(h: &TestHost, version: &str) -> Value {
    json!({"cniVersion": version, "name": "web", "type": "plumb", "network": "web",
           "socket": h.socket.display().to_string()})
}

/// True when a host process could bind TCP `port` on every address of the host.
fn bindable(h: &TestHost, port: u16) -> bool {
    h.sh(&format!(
        "python3 -c 'import socket; socket.socket(socket.AF_INET6).bind((\"::\", {port}))'"
    ))
    .ok()
}

/// A namespace made by the "runtime", removed with the host.
fn runtime_ns(h: &mut TestHost, name: &str) -> String {
    let ns = h.adopt_namespace(name);
    assert!(h.sh(&format!("ip netns add {ns}")).ok());
    format!("/run/netns/{ns}")
}

#[test]
fn add_check_del_gc_as_a_runtime_calls_them() {
    let Some(mut h) = host() else { return };
    h.plumb_ok(&["network", "create", "--subnet", "10.74.0.0/24", "web"]);
    let (n1, n2, n3) = (
        runtime_ns(&mut h, "c1"),
        runtime_ns(&mut h, "c2"),
        runtime_ns(&mut h, "c3"),
    );
    let c = conf(&h, "1.0.0");

    let (ok, v) = cni(&h, "VERSION", "", "", &json!({}), "");
    assert!(
        ok && v["supportedVersions"]
            .as_array()
            .unwrap()
            .contains(&json!("0.4.0")),
        "{v}"
    );
    let (ok, _) = cni(&h, "STATUS", "", "", &c, "");
    assert!(ok, "plumbd answers");

    let mut with_ports = c.clone();
    with_ports["runtimeConfig"] = json!({"portMappings": [{"hostPort": 18180, "containerPort": 80, "protocol": "tcp"}],
                                         "aliases": ["api"]});
    let (ok, r1) = cni(
        &h,
        "ADD",
        "c1",
        &n1,
        &with_ports,
        "IgnoreUnknown=1;K8S_POD_NAME=web-1",
    );
    assert!(ok, "{r1}");
    assert_eq!(r1["cniVersion"], "1.0.0");
    assert_eq!(r1["interfaces"][0]["name"], "eth0");
    assert_eq!(r1["interfaces"][0]["sandbox"], n1.as_str());
    assert_eq!(r1["ips"][0]["address"], "10.74.0.2/24", "{r1}");
    assert_eq!(r1["ips"][0]["gateway"], "10.74.0.1");
    assert_eq!(r1["routes"][0]["dst"], "0.0.0.0/0");
    assert_eq!(r1["dns"]["nameservers"][0], "127.0.0.11");
    let port = h.plumb_ok(&["sandbox", "port", "cni-c1"]);
    assert!(port.contains("18180"), "{port}");
    // The runtime holds the host port (as the portmap plugin expects): plumb binds nothing.
    assert!(bindable(&h, 18180), "plumb holds no socket");

    // A 0.4.0 runtime gets a 0.4.0 result.
    let (ok, r2) = cni(&h, "ADD", "c2", &n2, &conf(&h, "0.4.0"), "");
    assert!(ok, "{r2}");
    assert_eq!(r2["ips"][0]["version"], "4", "{r2}");
    let o = h.sh(&format!(
        "ip netns exec {} ping -c1 -W1 10.74.0.2",
        n2.trim_start_matches("/run/netns/")
    ));
    assert!(o.ok(), "c2 reaches c1: {}", o.stderr);
    let o = h.sh(&format!(
        "ip netns exec {} ip -o link show eth0",
        n1.trim_start_matches("/run/netns/")
    ));
    assert!(o.ok(), "CNI_IFNAME is the interface's name");
    // The pod name and the alias resolve (the embedded DNS inside c2).
    for name in ["web-1", "api"] {
        let o = h.sh(&format!(
            "ip netns exec {} dig +short +time=2 +tries=1 @127.0.0.11 {name}",
            n2.trim_start_matches("/run/netns/")
        ));
        assert_eq!(o.stdout.trim(), "10.74.0.2", "{name}: {}", o.stderr);
    }

    // A repeated ADD changes nothing and answers the same.
    let (ok, again) = cni(&h, "ADD", "c1", &n1, &with_ports, "K8S_POD_NAME=web-1");
    assert!(ok && again["ips"] == r1["ips"], "{again}");
    let mut chk = c.clone();
    chk["prevResult"] = r1.clone();
    assert!(cni(&h, "CHECK", "c1", &n1, &chk, "").0);
    let (ok, e) = cni(&h, "CHECK", "nope", &n1, &chk, "");
    assert!(
        !ok && e["code"].as_u64().is_some() && e["msg"].as_str().is_some(),
        "{e}"
    );

    // DEL: twice, and after the namespace is gone; the namespace is never removed by plumb.
    assert!(cni(&h, "DEL", "c1", &n1, &c, "").0);
    assert!(cni(&h, "DEL", "c1", &n1, &c, "").0, "DEL is idempotent");
    assert!(
        std::path::Path::new(&n1).exists(),
        "the runtime's namespace stays"
    );
    assert!(
        !h.plumb(&["sandbox", "inspect", "cni-c1"]).ok(),
        "the sandbox went with its last network"
    );
    let ns2 = n2.trim_start_matches("/run/netns/").to_owned();
    assert!(h.sh(&format!("ip netns del {ns2}")).ok());
    assert!(
        cni(&h, "DEL", "c2", &n2, &c, "").0,
        "DEL with the namespace gone"
    );
    assert!(
        cni(&h, "DEL", "never", &n2, &c, "").0,
        "DEL of what plumbd never had"
    );

    // GC: only the attachments the runtime still has are kept. c3 asks plumb to hold its
    // host port (`holdPorts`: for runtimes that bind nothing themselves).
    let mut holding = c.clone();
    holding["holdPorts"] = json!(true);
    holding["runtimeConfig"] =
        json!({"portMappings": [{"hostPort": 18181, "containerPort": 80, "protocol": "tcp"}]});
    assert!(cni(&h, "ADD", "c3", &n3, &holding, "").0);
    assert!(!bindable(&h, 18181), "plumb holds it");
    let (ok, _) = cni(&h, "ADD", "c1", &n1, &c, "");
    assert!(ok);
    let mut gc = c.clone();
    gc["cni.dev/valid-attachments"] = json!([{"containerID": "c1", "ifname": "eth0"}]);
    assert!(cni(&h, "GC", "", "", &gc, "").0);
    assert!(h.plumb(&["sandbox", "inspect", "cni-c1"]).ok());
    assert!(
        !h.plumb(&["sandbox", "inspect", "cni-c3"]).ok(),
        "GC removed c3"
    );
    assert!(bindable(&h, 18181), "and let go of its port");

    // Bad input: errors in CNI's shape, nothing made.
    let (ok, e) = cni(
        &h,
        "ADD",
        "c4",
        &n3,
        &json!({"cniVersion": "1.0.0", "name": "nosuch", "type": "plumb", "socket": h.socket.display().to_string()}),
        "",
    );
    assert!(!ok && e["code"] == 7, "{e}");
    let (ok, e) = cni(&h, "ADD", "c4", "relative/ns", &c, "");
    assert!(!ok && e["code"] == 4, "{e}");
    let (ok, e) = cni(
        &h,
        "ADD",
        "c4",
        &n3,
        &json!({"cniVersion": "9.9.9", "name": "web", "socket": h.socket.display().to_string()}),
        "",
    );
    assert!(!ok && e["code"] == 1, "{e}");
    let (ok, e) = cni(&h, "ADD", "c4", "/etc/hostname", &c, "");
    assert!(
        !ok && e["msg"].as_str().is_some_and(|m| m.contains("namespace")),
        "{e}"
    );
    assert!(
        !h.plumb(&["sandbox", "inspect", "cni-c4"]).ok(),
        "nothing made"
    );
    let mut down = c.clone();
    down["socket"] = json!("/nonexistent/plumb.sock");
    let (ok, e) = cni(&h, "ADD", "c4", &n3, &down, "");
    assert!(!ok && e["code"] == 11, "{e}");
    let (ok, e) = cni(&h, "STATUS", "", "", &down, "");
    assert!(!ok && e["code"] == 50, "{e}");
}
