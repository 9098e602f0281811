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

#[test]
fn what_this_kernel_lacks_is_refused_cleanly() {
    let Some(mut h) = host() else { return };
    add_lan(&mut h);
    let links = h.links();
    // 802.1Q: a sub-interface plumb would have to create.
    let e = h.plumb_err(&[
        "network",
        "create",
        "-d",
        "macvlan",
        "-o",
        "parent=lan0.10",
        "--subnet",
        "10.83.0.0/24",
        "v10",
    ]);
    assert!(e.contains("802.1Q") && e.contains("8021q"), "{e}");
    // ipvlan.
    let e = h.plumb_err(&[
        "network",
        "create",
        "-d",
        "ipvlan",
        "-o",
        "parent=lan0",
        "--subnet",
        "10.83.1.0/24",
        "ipv",
    ]);
    assert!(e.contains("ipvlan") && e.contains("kernel"), "{e}");
    // Bad options name themselves.
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
    // Through the API: 400 naming the field, nothing made.
    let (st, v) = h.api(
        "POST",
        "/networks/create",
        Some(
            &serde_json::json!({"Name": "ipv", "Driver": "ipvlan", "Options": {"parent": "lan0"}}),
        ),
    );
    assert_eq!(st, 400, "{v}");
    let ls = h.plumb_ok(&["network", "ls"]);
    for n in ["v10", "ipv", "bad"] {
        assert!(!ls.contains(&format!(" {n} ")), "{ls}");
    }
    assert_eq!(h.links(), links, "no link made");
    // The subnets are free again.
    h.plumb_ok(&["network", "create", "--subnet", "10.83.0.0/24", "again"]);
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
