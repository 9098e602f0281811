//! Remote network and IPAM drivers end to end: the example plugins of `examples/plugins`
//! (Python, standard library only) run as separate processes in the test host's namespace
//! and speak Docker's plugin protocol to plumbd. Calls are checked in Docker's order, a plugin
//! that starts late is found, plumbd killed with -9 asks no plugin to recreate anything, and
//! plugins that misbehave leave nothing behind.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use plumb_e2e::{can_ping, docker, host, ip_on, network, sandbox};
use plumb_testkit::{PluginProc, TestHost};
use serde_json::Value;

const BRIDGE: &str = "examples/plugins/bridge_driver.py";
const IPAM: &str = "examples/plugins/ipam_driver.py";
const BOTH: &str = "tests/plugins/misbehave.py";

/// Links in the host whose names the example driver makes (bridges, veth ends).
fn plugin_links(h: &TestHost) -> Vec<String> {
    h.links()
        .into_iter()
        .filter(|l| l.starts_with("pyb") || l.starts_with("pyh") || l.starts_with("pyc"))
        .collect()
}

/// The calls in `names` that are one of `of`, in order.
fn only(names: &[String], of: &[&str]) -> Vec<String> {
    names
        .iter()
        .filter(|n| of.contains(&n.as_str()))
        .cloned()
        .collect()
}

#[test]
fn remote_driver_and_remote_ipam_in_dockers_order() {
    let Some(h) = host() else { return };
    h.furnish();
    let before = h.furnishings();
    let p = PluginProc::start(&h, BOTH, "both");
    h.plumb_ok(&[
        "network",
        "create",
        "-d",
        "both",
        "--ipam-driver",
        "both",
        "--ipam-opt",
        "zone=a",
        "pynet",
    ]);
    let created = p.call_names();
    assert_eq!(
        only(
            &created,
            &[
                "IpamDriver.GetDefaultAddressSpaces",
                "IpamDriver.RequestPool",
                "IpamDriver.RequestAddress",
                "NetworkDriver.CreateNetwork"
            ]
        ),
        [
            "IpamDriver.GetDefaultAddressSpaces",
            "IpamDriver.RequestPool",
            "IpamDriver.RequestAddress",
            "NetworkDriver.CreateNetwork"
        ],
        "network create: {created:?}"
    );
    let calls = p.calls();
    let pool_req = &calls
        .iter()
        .find(|c| c.0 == "IpamDriver.RequestPool")
        .unwrap()
        .1;
    assert_eq!(
        pool_req["AddressSpace"], "pylocal",
        "the plugin's own local space: {pool_req}"
    );
    assert_eq!(
        pool_req["Options"]["zone"], "a",
        "--ipam-opt reaches the plugin: {pool_req}"
    );
    let gw_req = &calls
        .iter()
        .find(|c| c.0 == "IpamDriver.RequestAddress")
        .unwrap()
        .1;
    assert_eq!(
        gw_req["Options"]["RequestAddressType"],
        "com.docker.network.gateway"
    );
    assert_eq!(
        gw_req["Address"], "",
        "the plugin picks the gateway: {gw_req}"
    );
    let net = network(&h, "pynet");
    assert_eq!(net["Driver"], "both");
    assert_eq!(net["IPAM"]["Driver"], "both");
    let create = &calls
        .iter()
        .find(|c| c.0 == "NetworkDriver.CreateNetwork")
        .unwrap()
        .1;
    assert_eq!(create["IPv4Data"][0]["Pool"], "10.123.0.0/24", "{create}");
    assert_eq!(
        create["IPv4Data"][0]["Gateway"], "10.123.0.1/24",
        "{create}"
    );
    assert_eq!(create["Options"]["com.docker.network.enable_ipv4"], true);

    p.clear_log();
    for s in ["a", "b"] {
        h.plumb_ok(&["sandbox", "create", s]);
        h.plumb_ok(&[
            "network",
            "connect",
            "--alias",
            &format!("{s}-alias"),
            "pynet",
            s,
        ]);
    }
    let connect = p.call_names();
    let want = [
        "IpamDriver.RequestAddress",
        "NetworkDriver.CreateEndpoint",
        "NetworkDriver.Join",
        "NetworkDriver.ProgramExternalConnectivity",
    ];
    assert_eq!(
        only(&connect, &want),
        [want, want].concat(),
        "connect: {connect:?}"
    );
    let ep_req = &p
        .calls()
        .into_iter()
        .find(|c| c.0 == "NetworkDriver.CreateEndpoint")
        .unwrap()
        .1;
    assert_eq!(ep_req["Interface"]["Address"], "10.123.0.2/24", "{ep_req}");
    assert_eq!(
        ep_req["Interface"]["MacAddress"], "",
        "the plugin picks the MAC: {ep_req}"
    );
    let (a, b) = (ip_on(&h, "a", "pynet"), ip_on(&h, "b", "pynet"));
    assert_eq!((a.as_str(), b.as_str()), ("10.123.0.2", "10.123.0.3"));
    assert!(can_ping(&h, "a", &b), "a -> b through the plugin's bridge");
    assert!(
        can_ping(&h, "b", "a-alias"),
        "b -> a by its alias, from the embedded DNS"
    );
    assert!(can_ping(&h, "a", "b"), "a -> b by name");
    let sb = sandbox(&h, "a");
    let ep = &sb["Endpoints"][0];
    assert!(
        ep["DriverInfo"]["bridge"]
            .as_str()
            .is_some_and(|b| b.starts_with("pyb")),
        "EndpointOperInfo in inspect: {sb}"
    );
    let mac = ep["MacAddress"].as_str().unwrap_or_default();
    assert!(
        mac.starts_with("02:50:"),
        "the plugin's MAC is the interface's: {sb}"
    );
    let inside = h.in_sandbox("a", "ip -o link show eth0").stdout;
    assert!(inside.contains(mac), "{inside}");
    let route = h.in_sandbox("a", "ip route show default").stdout;
    assert!(
        route.contains("via 10.123.0.1 dev eth0"),
        "the plugin's gateway: {route}"
    );
    let listed = h.plumb_ok(&["plugin", "ls"]);
    assert!(
        listed.contains("both")
            && listed.contains("NetworkDriver,IpamDriver")
            && listed.contains("active"),
        "{listed}"
    );

    p.clear_log();
    h.plumb_ok(&["network", "disconnect", "pynet", "a"]);
    let gone = p.call_names();
    assert_eq!(
        only(
            &gone,
            &[
                "NetworkDriver.RevokeExternalConnectivity",
                "NetworkDriver.Leave",
                "NetworkDriver.DeleteEndpoint",
                "IpamDriver.ReleaseAddress"
            ]
        ),
        [
            "NetworkDriver.RevokeExternalConnectivity",
            "NetworkDriver.Leave",
            "NetworkDriver.DeleteEndpoint",
            "IpamDriver.ReleaseAddress"
        ],
        "disconnect: {gone:?}"
    );
    assert!(
        !h.in_sandbox("a", "ip link show eth0").ok(),
        "interface gone from the sandbox"
    );
    h.plumb_ok(&["sandbox", "rm", "b"]);
    p.clear_log();
    h.plumb_ok(&["network", "rm", "pynet"]);
    let removed = p.call_names();
    assert_eq!(
        only(
            &removed,
            &[
                "IpamDriver.ReleaseAddress",
                "IpamDriver.ReleasePool",
                "NetworkDriver.DeleteNetwork"
            ]
        ),
        [
            "IpamDriver.ReleaseAddress",
            "IpamDriver.ReleasePool",
            "NetworkDriver.DeleteNetwork"
        ],
        "network rm: {removed:?}"
    );
    assert!(
        plugin_links(&h).is_empty(),
        "left behind: {:?}",
        plugin_links(&h)
    );
    assert_eq!(
        h.furnishings(),
        before,
        "the host's own links and tables untouched"
    );
}

#[test]
fn separate_plugins_from_the_docker_cli_with_the_builtin_bridge_and_remote_ipam() {
    let Some(h) = host() else { return };
    let _driver = PluginProc::start(&h, BRIDGE, "pybridge");
    let ipam = PluginProc::start(&h, IPAM, "pyipam");
    let o = docker(
        &h,
        &[
            "network",
            "create",
            "-d",
            "pybridge",
            "--ipam-driver",
            "pyipam",
            "dnet",
        ],
    );
    assert!(o.ok(), "docker network create: {}", o.stderr);
    let o = docker(
        &h,
        &[
            "network",
            "inspect",
            "dnet",
            "--format",
            "{{.Driver}} {{.IPAM.Driver}} {{(index .IPAM.Config 0).Subnet}}",
        ],
    );
    assert_eq!(
        o.stdout.trim(),
        "pybridge pyipam 10.123.0.0/24",
        "{}",
        o.stderr
    );
    // The built-in bridge driver with remote IPAM.
    h.plumb_ok(&["network", "create", "--ipam-driver", "pyipam", "local"]);
    for s in ["x", "y"] {
        h.plumb_ok(&["sandbox", "create", s]);
        h.plumb_ok(&["network", "connect", "local", s]);
    }
    let (x, y) = (ip_on(&h, "x", "local"), ip_on(&h, "y", "local"));
    assert!(
        x.starts_with("10.123.1.") && y.starts_with("10.123.1."),
        "{x} {y}"
    );
    assert!(
        can_ping(&h, "x", &y),
        "bridge driver with addresses from the IPAM plugin"
    );
    let names = ipam.call_names();
    assert!(
        names
            .iter()
            .filter(|n| *n == "IpamDriver.RequestPool")
            .count()
            == 2,
        "{names:?}"
    );
    // The remote driver from the docker CLI, two sandboxes.
    for s in ["x", "y"] {
        h.plumb_ok(&["network", "connect", "dnet", s]);
    }
    let (x2, y2) = (ip_on(&h, "x", "dnet"), ip_on(&h, "y", "dnet"));
    assert!(can_ping(&h, "x", &y2) && can_ping(&h, "y", &x2));
    let (_, info) = h.api("GET", "/info", None);
    let drivers = info["Plugins"]["Network"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        drivers.contains(&Value::from("pybridge")) && drivers.contains(&Value::from("bridge")),
        "{info}"
    );
    let listed: Value =
        serde_json::from_str(&h.plumb_ok(&["plugin", "ls", "--format", "json"])).unwrap();
    let names: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["Name"].as_str())
        .collect();
    assert_eq!(names, ["pybridge", "pyipam"], "{listed}");
    for s in ["x", "y"] {
        h.plumb_ok(&["sandbox", "rm", s]);
    }
    assert!(docker(&h, &["network", "rm", "dnet"]).ok());
    h.plumb_ok(&["network", "rm", "local"]);
    assert!(
        plugin_links(&h).is_empty(),
        "left behind: {:?}",
        plugin_links(&h)
    );
}

#[test]
fn a_late_plugin_is_found_and_kill_9_of_plumbd_recreates_nothing() {
    if !plumb_testkit::prerequisites() {
        return;
    }
    let mut h = TestHost::new();
    h.set_daemon_args(&["--plugin-wait", "5s"]);
    h.start();
    // Named before it exists: plumbd waits (--plugin-wait) and finds it.
    let dir = h.plugin_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let late = std::thread::scope(|s| {
        let t = s.spawn(|| {
            h.plumb(&[
                "network",
                "create",
                "-d",
                "both",
                "--ipam-driver",
                "both",
                "late",
            ])
        });
        std::thread::sleep(std::time::Duration::from_millis(400));
        let p = PluginProc::start(&h, BOTH, "both");
        let out = t.join().unwrap();
        assert!(
            out.ok(),
            "a plugin started after the request is found: {}",
            out.stderr
        );
        p
    });
    for s in ["a", "b"] {
        h.plumb_ok(&["sandbox", "create", s]);
        h.plumb_ok(&["network", "connect", "late", s]);
    }
    let b = ip_on(&h, "b", "late");
    assert!(can_ping(&h, "a", &b));
    late.clear_log();
    h.kill9();
    h.start();
    assert!(can_ping(&h, "a", &b), "traffic after the restart");
    let after = late.call_names();
    for call in [
        "NetworkDriver.CreateNetwork",
        "NetworkDriver.Join",
        "NetworkDriver.CreateEndpoint",
        "IpamDriver.RequestPool",
        "IpamDriver.RequestAddress",
    ] {
        assert!(
            !after.contains(&call.to_owned()),
            "{call} after a restart: {after:?}"
        );
    }
    // The plugin is found again when next used, and the endpoint leaves by its name.
    h.plumb_ok(&["network", "disconnect", "late", "a"]);
    let names = late.call_names();
    assert!(
        names.contains(&"NetworkDriver.Leave".to_owned())
            && names.contains(&"NetworkDriver.DeleteEndpoint".to_owned()),
        "{names:?}"
    );
    h.plumb_ok(&["network", "connect", "late", "a"]);
    assert_eq!(
        ip_on(&h, "a", "late"),
        "10.123.0.2",
        "the freed address is handed out again"
    );
    assert!(can_ping(&h, "a", &b));
    h.plumb_ok(&["sandbox", "rm", "a"]);
    h.plumb_ok(&["sandbox", "rm", "b"]);
    h.plumb_ok(&["network", "rm", "late"]);
    assert!(
        plugin_links(&h).is_empty(),
        "left behind: {:?}",
        plugin_links(&h)
    );
}

/// Sets the misbehaviour of `call` (empty: behave).
fn misbehave(h: &TestHost, call: &str, mode: &str) {
    let path = h.dir.join("modes.json");
    let v = if mode.is_empty() {
        serde_json::json!({})
    } else {
        serde_json::json!({call: mode})
    };
    std::fs::write(path, v.to_string()).unwrap();
}

/// Asserts a request failed because of the plugin (403 refused, 503 unusable), its message
/// naming every one of `parts`.
fn refused((status, v): (u16, Value), what: &str, parts: &[&str]) {
    let msg = v["message"].as_str().unwrap_or_default();
    assert!(
        status == 403 || status == 503,
        "{what}: status {status} {msg}"
    );
    for p in parts {
        assert!(msg.contains(p), "{what}: {p:?} not in {msg}");
    }
}

#[test]
fn misbehaving_plugins_give_clear_errors_and_leave_nothing_behind() {
    let Some(h) = host() else { return };
    let modes = h.dir.join("modes.json");
    misbehave(&h, "", "");
    let env = [("PLUMB_MISBEHAVE_MODES", modes.to_str().unwrap())];
    let mut p = PluginProc::start_with(&h, BOTH, "both", &env);
    h.plumb_ok(&[
        "network",
        "create",
        "-d",
        "both",
        "--ipam-driver",
        "both",
        "pn",
    ]);
    h.plumb_ok(&["sandbox", "create", "s"]);
    // Names that could be paths find nothing: 404 for a driver, 400 naming IPAM for IPAM.
    for name in [
        "../../etc/passwd",
        "/run/docker/plugins/both",
        "both/../both",
    ] {
        let body = serde_json::json!({"Name": "x", "Driver": name});
        let (status, v) = h.api("POST", "/networks/create", Some(&body));
        assert_eq!(status, 404, "{name}: {v}");
        let body = serde_json::json!({"Name": "x", "IPAM": {"Driver": name}});
        let (status, v) = h.api("POST", "/networks/create", Some(&body));
        assert_eq!(status, 400, "{name}: {v}");
        assert!(
            v["message"].as_str().unwrap_or_default().contains("IPAM"),
            "{v}"
        );
    }
    let links_before = plugin_links(&h);
    for (call, mode, expect) in [
        ("NetworkDriver.Join", "badjson", "not JSON"),
        ("NetworkDriver.Join", "wrongtype", "InterfaceName"),
        ("NetworkDriver.Join", "refuse", "refused by the test plugin"),
        ("NetworkDriver.CreateEndpoint", "wrongtype", "MacAddress"),
        (
            "NetworkDriver.CreateEndpoint",
            "err200",
            "refused with a 200",
        ),
        ("NetworkDriver.CreateEndpoint", "text500", "boom"),
        ("IpamDriver.RequestAddress", "wrongtype", "Address"),
        ("IpamDriver.RequestAddress", "notfound", "not implemented"),
        ("NetworkDriver.Join", "hang", "no answer within"),
    ] {
        misbehave(&h, call, mode);
        let answer = h.api(
            "POST",
            "/networks/pn/connect",
            Some(&serde_json::json!({"Container": "s"})),
        );
        refused(
            answer,
            &format!("{call} {mode}"),
            &["plugin both", call, expect],
        );
        misbehave(&h, "", "");
        assert_eq!(
            sandbox(&h, "s")["Endpoints"].as_array().map(Vec::len),
            Some(0),
            "{call} {mode}: no endpoint"
        );
        assert!(
            !h.in_sandbox("s", "ip link show eth0").ok(),
            "{call} {mode}: no interface"
        );
        assert_eq!(
            plugin_links(&h),
            links_before,
            "{call} {mode}: the plugin's veth removed by Leave"
        );
    }
    // Nothing was lost: the first address is free again.
    h.plumb_ok(&["network", "connect", "pn", "s"]);
    assert_eq!(ip_on(&h, "s", "pn"), "10.123.0.2");
    h.plumb_ok(&["network", "disconnect", "pn", "s"]);

    // Bad answers to network creation: no network, no pool kept.
    for (call, mode, expect) in [
        ("IpamDriver.RequestPool", "badjson", "not JSON"),
        ("IpamDriver.RequestPool", "wrongtype", "not a CIDR"),
        ("NetworkDriver.CreateNetwork", "text500", "boom"),
    ] {
        misbehave(&h, call, mode);
        let answer = h.api(
            "POST",
            "/networks/create",
            Some(&serde_json::json!({"Name": "bad", "Driver": "both", "IPAM": {"Driver": "both"}})),
        );
        refused(answer, &format!("{call} {mode}"), &[call, expect]);
        misbehave(&h, "", "");
        assert!(
            !h.plumb(&["network", "inspect", "bad"]).ok(),
            "{call} {mode}: no network"
        );
    }
    let o = h.plumb_ok(&[
        "network",
        "create",
        "-d",
        "both",
        "--ipam-driver",
        "both",
        "good",
    ]);
    assert!(!o.is_empty());
    assert_eq!(
        network(&h, "good")["IPAM"]["Config"][0]["Subnet"],
        "10.123.1.0/24",
        "the failed creations gave their pools back"
    );

    // The plugin dies in the middle of a connect: clean rollback, and it is used again once
    // it is back (a new process on the same socket, activated again).
    misbehave(&h, "NetworkDriver.Join", "die");
    let (status, v) = h.api(
        "POST",
        "/networks/pn/connect",
        Some(&serde_json::json!({"Container": "s"})),
    );
    assert_eq!(status, 503, "{v}");
    assert!(!p.alive(), "the plugin died");
    misbehave(&h, "", "");
    p.kill();
    p.run();
    assert_eq!(
        sandbox(&h, "s")["Endpoints"].as_array().map(Vec::len),
        Some(0)
    );
    h.plumb_ok(&["network", "connect", "pn", "s"]);
    assert!(h.in_sandbox("s", "ip link show eth0").ok());
    // A plugin that is gone: a clear, quick error.
    p.kill();
    let _ = std::fs::remove_file(&p.socket);
    let err = h.plumb_err(&["network", "disconnect", "pn", "s"]);
    assert!(
        err.contains("plugin both") && err.contains("unreachable"),
        "{err}"
    );
}
