//! macvlan networks: containers as hosts of a LAN segment. The "LAN" is a veth whose far end
//! sits in a namespace of its own (a LAN host); its near end, in the test host, is the parent.
//! ipvlan and 802.1Q sub-interfaces are refused cleanly on this kernel (it has neither).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use plumb_e2e::{can_ping, host, ip_on, network, TestHost};

/// Plugs a "LAN" into the host: `lan0` (10.80.0.1/24, the host's own address there) whose
/// other end is in a new namespace holding a LAN host at 10.80.0.50. Returns that namespace.
fn add_lan(h: &mut TestHost) -> String {
    let lan = h.adopt_namespace("lan");
    let o = h.sh(&format!(
        "ip netns add {lan} && ip link add lan0 type veth peer name eth0 netns {lan} && \
         ip addr add 10.80.0.1/24 dev lan0 && ip link set lan0 up"
    ));
    assert!(o.ok(), "lan: {}", o.stderr);
    let o = h.sh_in(
        &lan,
        "ip link set lo up && ip addr add 10.80.0.50/24 dev eth0 && ip link set eth0 up",
    );
    assert!(o.ok(), "lan host: {}", o.stderr);
    lan
}

/// The link `name` as `ip -d link` shows it in the test host (empty when there is none).
fn link(h: &TestHost, name: &str) -> String {
    h.sh(&format!("ip -o -d link show {name}")).stdout
}

#[test]
fn macvlan_containers_are_hosts_of_the_parents_segment() {
    let Some(mut h) = host() else { return };
    let lan = add_lan(&mut h);
    let before = h.furnishings();
    let lan0 = h.sh("ip -4 -o addr show lan0").stdout;
    h.plumb_ok(&[
        "network",
        "create",
        "-d",
        "macvlan",
        "-o",
        "parent=lan0",
        "--subnet",
        "10.80.0.0/24",
        "--gateway",
        "10.80.0.254",
        "--aux-address",
        "host=10.80.0.1",
        "--aux-address",
        "lanhost=10.80.0.50",
        "mv",
    ]);
    for sb in ["a", "b"] {
        h.plumb_ok(&["sandbox", "create", sb]);
        h.plumb_ok(&["network", "connect", "mv", sb]);
    }
    let (a, b) = (ip_on(&h, "a", "mv"), ip_on(&h, "b", "mv"));
    for ip in [&a, &b] {
        assert!(
            ip.starts_with("10.80.0.") && ip != "10.80.0.1" && ip != "10.80.0.50",
            "IPAM keeps the LAN's own addresses out: {ip}"
        );
    }
    // The sandbox's interface is a macvlan device on lan0, its default route the gateway.
    let o = h.in_sandbox("a", "ip -o -d link show eth0; ip route show default");
    assert!(o.stdout.contains("macvlan mode bridge"), "{}", o.stdout);
    assert!(o.stdout.contains("default via 10.80.0.254"), "{}", o.stdout);
    // Sandboxes reach each other by address and by name (the embedded DNS), and the LAN host
    // reaches them and is reached.
    assert!(can_ping(&h, "a", &b));
    assert!(can_ping(&h, "a", "b"), "by name through the embedded DNS");
    assert!(can_ping(&h, "b", "10.80.0.50"), "to the LAN host");
    let o = h.sh_in(&lan, &format!("ping -c1 -W2 {a}"));
    assert!(o.ok(), "from the LAN host: {}", o.stderr);
    // Inspect: the parent, and the note that the host cannot reach them.
    let n = network(&h, "mv");
    assert_eq!(n["Driver"], "macvlan");
    assert_eq!(n["Options"]["parent"], "lan0");
    assert!(
        n["Notes"][0]
            .as_str()
            .unwrap_or("")
            .contains("cannot reach"),
        "{n}"
    );
    // One network per parent.
    let e = h.plumb_err(&[
        "network",
        "create",
        "-d",
        "macvlan",
        "-o",
        "parent=lan0",
        "--subnet",
        "10.80.1.0/24",
        "mv2",
    ]);
    assert!(e.contains("parent") && e.contains("lan0"), "{e}");

    // kill -9: traffic stays, and it comes back under plumbd's management.
    h.kill9();
    h.start();
    assert!(can_ping(&h, "a", &b));
    h.plumb_ok(&["network", "disconnect", "mv", "b"]);
    let o = h.in_sandbox("b", "ip -o link show");
    assert!(
        !o.stdout.contains("macvlan") && !o.stdout.contains("eth0"),
        "{}",
        o.stdout
    );
    assert!(!can_ping(&h, "a", &b));
    h.plumb_ok(&["network", "connect", "mv", "b"]);
    assert!(can_ping(&h, "b", "a"));

    // Removal: the parent is the user's, and stays as it was.
    h.plumb_ok(&["sandbox", "rm", "a", "b"]);
    h.plumb_ok(&["network", "rm", "mv"]);
    assert_eq!(h.sh("ip -4 -o addr show lan0").stdout, lan0);
    assert!(
        link(&h, "lan0").contains("state UP"),
        "{}",
        link(&h, "lan0")
    );
    assert_eq!(h.furnishings(), before);
}

#[test]
fn the_parent_defaults_to_the_default_route_interface() {
    let Some(mut h) = host() else { return };
    // No default route yet: the error says what to give.
    let e = h.plumb_err(&[
        "network",
        "create",
        "-d",
        "macvlan",
        "--subnet",
        "10.82.0.0/24",
        "m",
    ]);
    assert!(e.contains("parent") && e.contains("default route"), "{e}");
    assert!(!h.plumb_ok(&["network", "ls"]).contains(" m "));
    h.add_outside();
    h.plumb_ok(&[
        "network",
        "create",
        "-d",
        "macvlan",
        "--subnet",
        "10.82.0.0/24",
        "m",
    ]);
    assert_eq!(network(&h, "m")["Options"]["parent"], "uplink");
    h.plumb_ok(&["network", "rm", "m"]);
    assert!(link(&h, "uplink").contains("state UP"));
}

#[test]
fn internal_macvlan_without_a_parent_is_an_isolated_segment() {
    let Some(h) = host() else { return };
    h.plumb_ok(&[
        "network",
        "create",
        "-d",
        "macvlan",
        "--internal",
        "--subnet",
        "10.81.0.0/24",
        "iso",
    ]);
    let id = network(&h, "iso")["Id"].as_str().unwrap().to_owned();
    let sink = format!("pm-{}", &id[..12]);
    let l = link(&h, &sink);
    assert!(
        l.contains("dummy") || l.contains("ifb"),
        "a sink link of plumb's as the parent: {l}"
    );
    for sb in ["a", "b"] {
        h.plumb_ok(&["sandbox", "create", sb]);
        h.plumb_ok(&["network", "connect", "iso", sb]);
    }
    assert!(can_ping(&h, "a", "b"), "by name on the isolated segment");
    let o = h.in_sandbox("a", "ip route show default");
    assert!(o.stdout.trim().is_empty(), "no way out: {}", o.stdout);
    h.plumb_ok(&["sandbox", "rm", "a", "b"]);
    h.plumb_ok(&["network", "rm", "iso"]);
    let gone = (0..100).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(20));
        link(&h, &sink).is_empty()
    });
    assert!(gone, "the sink goes with the network");
}

/// True when this kernel can make links of `kind` (probed in a throwaway namespace).
fn kernel_has(kind: &str) -> bool {
    let ns = format!("plt-probe-{}-{kind}", std::process::id());
    let sh = |c: &str| {
        std::process::Command::new("sh")
            .args(["-c", c])
            .status()
            .is_ok_and(|s| s.success())
    };
    assert!(sh(&format!("ip netns add {ns}")), "ip netns add");
    let ok = sh(&format!(
        "ip -n {ns} link add p0 type veth peer name p1 && ip -n {ns} link add link p0 name k0 type {kind} {} 2>/dev/null",
        if kind == "vlan" { "id 10" } else { "" }
    ));
    sh(&format!("ip netns del {ns}"));
    ok
}

#[test]
fn vlan_parents_are_made_and_removed_where_the_kernel_has_8021q_and_refused_where_not() {
    let Some(mut h) = host() else { return };
    add_lan(&mut h);
    let links = h.links();
    let args = [
        "network",
        "create",
        "-d",
        "macvlan",
        "-o",
        "parent=lan0.10",
        "--subnet",
        "10.83.0.0/24",
        "v10",
    ];
    if !kernel_has("vlan") {
        // This project's CI kernel: refused, naming what is missing, nothing made.
        let e = h.plumb_err(&args);
        assert!(e.contains("802.1Q") && e.contains("8021q"), "{e}");
        assert!(!h.plumb_ok(&["network", "ls"]).contains(" v10 "));
        assert_eq!(h.links(), links, "no link made");
        return;
    }
    // A kernel with 802.1Q: plumb makes lan0.10, marks it, and removes it with the network;
    // a sub-interface the user made (lan0.20) is used and left alone.
    h.plumb_ok(&args);
    let l = link(&h, "lan0.10");
    assert!(l.contains("vlan") && l.contains("id 10"), "{l}");
    for sb in ["a", "b"] {
        h.plumb_ok(&["sandbox", "create", sb]);
        h.plumb_ok(&["network", "connect", "v10", sb]);
    }
    assert!(can_ping(&h, "a", "b"));
    h.plumb_ok(&["sandbox", "rm", "a", "b"]);
    h.plumb_ok(&["network", "rm", "v10"]);
    let gone = (0..100).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(20));
        link(&h, "lan0.10").is_empty()
    });
    assert!(gone, "plumb's sub-interface goes with its network");
    assert!(h
        .sh("ip link add link lan0 name lan0.20 type vlan id 20")
        .ok());
    h.plumb_ok(&[
        "network",
        "create",
        "-d",
        "macvlan",
        "-o",
        "parent=lan0.20",
        "--subnet",
        "10.83.3.0/24",
        "v20",
    ]);
    h.plumb_ok(&["network", "rm", "v20"]);
    assert!(
        !link(&h, "lan0.20").is_empty(),
        "the user's sub-interface stays"
    );
}

#[test]
fn ipvlan_works_where_the_kernel_has_it_and_is_refused_where_not() {
    let Some(mut h) = host() else { return };
    add_lan(&mut h);
    let links = h.links();
    let args = [
        "network",
        "create",
        "-d",
        "ipvlan",
        "-o",
        "parent=lan0",
        "--subnet",
        "10.83.1.0/24",
        "ipv",
    ];
    if !kernel_has("ipvlan") {
        let e = h.plumb_err(&args);
        assert!(e.contains("ipvlan") && e.contains("kernel"), "{e}");
        let (st, v) = h.api(
            "POST",
            "/networks/create",
            Some(&serde_json::json!({"Name": "ipv", "Driver": "ipvlan", "Options": {"parent": "lan0"}})),
        );
        assert_eq!(st, 400, "{v}");
        assert!(!h.plumb_ok(&["network", "ls"]).contains(" ipv "));
        assert_eq!(h.links(), links, "no link made");
        return;
    }
    h.plumb_ok(&args);
    for sb in ["a", "b"] {
        h.plumb_ok(&["sandbox", "create", sb]);
        h.plumb_ok(&["network", "connect", "ipv", sb]);
    }
    assert!(can_ping(&h, "a", "b"));
    let o = h.in_sandbox("a", "ip -o -d link show eth0");
    assert!(o.stdout.contains("ipvlan"), "{}", o.stdout);
}

#[test]
fn bad_macvlan_options_name_themselves_and_make_nothing() {
    let Some(mut h) = host() else { return };
    add_lan(&mut h);
    let links = h.links();
    for (opt, word) in [
        ("macvlan_mode=sideways", "macvlan_mode"),
        ("parent=nosuch0", "nosuch0"),
        ("parent=a/b", "parent"),
        ("ipvlan_mode=l3", "ipvlan_mode"),
    ] {
        let e = h.plumb_err(&[
            "network",
            "create",
            "-d",
            "macvlan",
            "-o",
            opt,
            "--subnet",
            "10.83.2.0/24",
            "bad",
        ]);
        assert!(e.contains(word), "{opt}: {e}");
    }
    let (st, v) = h.api(
        "POST",
        "/networks/create",
        Some(&serde_json::json!({"Name": "bad", "Driver": "macvlan", "Options": {"parent": "lo"}})),
    );
    assert_eq!(st, 400, "{v}");
    assert!(!h.plumb_ok(&["network", "ls"]).contains(" bad "));
    assert_eq!(h.links(), links, "no link made");
    // The subnet is free again.
    h.plumb_ok(&["network", "create", "--subnet", "10.83.2.0/24", "again"]);
}

#[test]
fn the_docker_cli_makes_macvlan_ipv6_only_and_routed_networks() {
    let Some(mut h) = host() else { return };
    add_lan(&mut h);
    let docker = |args: &[&str]| {
        let o = plumb_e2e::docker(&h, args);
        assert!(o.ok(), "docker {args:?}: {}", o.stderr);
        o.stdout
    };
    docker(&[
        "network",
        "create",
        "-d",
        "macvlan",
        "-o",
        "parent=lan0",
        "--subnet",
        "10.80.0.0/24",
        "--gateway",
        "10.80.0.254",
        "--aux-address",
        "host=10.80.0.1",
        "dmv",
    ]);
    let f = docker(&[
        "network",
        "inspect",
        "-f",
        "{{.Driver}} {{.Options.parent}}",
        "dmv",
    ]);
    assert_eq!(f.trim(), "macvlan lan0");
    docker(&["network", "create", "--ipv4=false", "--ipv6", "d6"]);
    let f = docker(&[
        "network",
        "inspect",
        "-f",
        "{{.EnableIPv4}} {{.EnableIPv6}}",
        "d6",
    ]);
    assert_eq!(f.trim(), "false true");
    docker(&[
        "network",
        "create",
        "--subnet",
        "10.88.0.0/24",
        "-o",
        "com.docker.network.bridge.gateway_mode_ipv4=routed",
        "drouted",
    ]);
    let o = plumb_e2e::docker(
        &h,
        &[
            "network",
            "create",
            "-d",
            "ipvlan",
            "-o",
            "parent=lan0",
            "dipv",
        ],
    );
    assert!(!o.ok() && o.stderr.contains("ipvlan"), "{}", o.stderr);
    for n in ["dmv", "d6", "drouted"] {
        docker(&["network", "rm", n]);
    }
}

#[test]
fn macvlan_addresses_can_come_from_a_remote_ipam_plugin() {
    let Some(mut h) = host() else { return };
    add_lan(&mut h);
    let ipam = plumb_testkit::PluginProc::start(&h, "examples/plugins/ipam_driver.py", "pyipam");
    h.plumb_ok(&[
        "network",
        "create",
        "-d",
        "macvlan",
        "-o",
        "parent=lan0",
        "--ipam-driver",
        "pyipam",
        "mvr",
    ]);
    for sb in ["a", "b"] {
        h.plumb_ok(&["sandbox", "create", sb]);
        h.plumb_ok(&["network", "connect", "mvr", sb]);
    }
    let b = ip_on(&h, "b", "mvr");
    assert!(b.starts_with("10.123.0."), "the plugin's pool: {b}");
    assert!(can_ping(&h, "a", &b));
    assert!(
        ipam.call_names()
            .iter()
            .any(|c| c == "IpamDriver.RequestAddress"),
        "{:?}",
        ipam.call_names()
    );
}

#[test]
fn a_parent_gone_while_plumbd_was_down_does_not_stop_it() {
    let Some(mut h) = host() else { return };
    add_lan(&mut h);
    h.plumb_ok(&[
        "network",
        "create",
        "-d",
        "macvlan",
        "-o",
        "parent=lan0",
        "--subnet",
        "10.80.0.0/24",
        "--gateway",
        "10.80.0.254",
        "mv",
    ]);
    h.plumb_ok(&["sandbox", "create", "a"]);
    h.kill9();
    assert!(h.sh("ip link set lan0 name lanx").ok());
    h.start();
    let (st, v) = h.api(
        "POST",
        "/networks/mv/connect",
        Some(&serde_json::json!({"Container": "a"})),
    );
    let msg = v["message"].as_str().unwrap_or("");
    assert_eq!(st, 400, "{v}");
    assert!(
        msg.contains("parent") && msg.contains("lan0") && msg.contains("missing"),
        "{v}"
    );
    assert!(
        h.in_sandbox("a", "ip -o link show").stdout.lines().count() == 1,
        "nothing made"
    );
    assert!(h.sh("ip link set lanx name lan0").ok());
    h.plumb_ok(&["network", "connect", "mv", "a"]);
    assert!(h
        .in_sandbox("a", "ip -o -d link show eth0")
        .stdout
        .contains("macvlan"));
}
