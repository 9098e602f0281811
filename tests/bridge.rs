//! Bridge networks end to end: reachability inside a network, isolation between networks,
//! egress and internal networks, ICC, MTU, IPv6, and connect/disconnect under a live process.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use plumb_e2e::{can_ping, host, ip_on, network, sandbox};

#[test]
fn same_network_talks_other_network_is_isolated() {
    let Some(h) = host() else { return };
    h.plumb_ok(&["network", "create", "front"]);
    h.plumb_ok(&["network", "create", "back"]);
    for s in ["a", "b", "c"] {
        h.plumb_ok(&["sandbox", "create", s]);
    }
    h.plumb_ok(&["network", "connect", "front", "a"]);
    h.plumb_ok(&["network", "connect", "front", "b"]);
    h.plumb_ok(&["network", "connect", "back", "c"]);
    let (a, b, c) = (
        ip_on(&h, "a", "front"),
        ip_on(&h, "b", "front"),
        ip_on(&h, "c", "back"),
    );
    assert!(can_ping(&h, "a", &b), "a -> b on the same network");
    assert!(can_ping(&h, "b", &a), "b -> a on the same network");
    assert!(
        !can_ping(&h, "c", &a),
        "c on another network must not reach a"
    );
    assert!(
        !can_ping(&h, "a", &c),
        "a must not reach c on another network"
    );
    // The gateway of one's own network answers.
    let gw = network(&h, "front")["IPAM"]["Config"][0]["Gateway"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(can_ping(&h, "a", &gw));
    // A sandbox joined to both networks reaches both.
    h.plumb_ok(&["network", "connect", "back", "b"]);
    assert!(can_ping(&h, "b", &c), "b joined both networks");
    assert!(
        !can_ping(&h, "a", &c),
        "joining b to back must not open front to back"
    );
}

#[test]
fn egress_is_masqueraded_and_internal_networks_have_none() {
    let Some(mut h) = host() else { return };
    let outside = h.add_outside();
    h.plumb_ok(&["network", "create", "open"]);
    h.plumb_ok(&["network", "create", "--internal", "closed"]);
    h.plumb_ok(&["sandbox", "create", "o"]);
    h.plumb_ok(&["sandbox", "create", "i"]);
    h.plumb_ok(&["network", "connect", "open", "o"]);
    h.plumb_ok(&["network", "connect", "closed", "i"]);
    // The outside has no route to container subnets: a reply proves masquerade.
    assert!(
        can_ping(&h, "o", "198.51.100.2"),
        "egress from a normal network"
    );
    let seen = h.sh_in(&outside, "ip route").stdout;
    assert!(
        !seen.contains("172."),
        "outside must not know container routes: {seen}"
    );
    assert!(
        !can_ping(&h, "i", "198.51.100.2"),
        "internal network must have no egress"
    );
    let routes = h.in_sandbox("i", "ip route").stdout;
    assert!(
        !routes.contains("default"),
        "internal network gives no default route: {routes}"
    );
    // Internal sandboxes still talk among themselves.
    h.plumb_ok(&["sandbox", "create", "i2"]);
    h.plumb_ok(&["network", "connect", "closed", "i2"]);
    assert!(can_ping(&h, "i2", &ip_on(&h, "i", "closed")));
}

#[test]
fn icc_off_isolates_ports_but_not_the_gateway() {
    let Some(h) = host() else { return };
    h.plumb_ok(&[
        "network",
        "create",
        "--subnet",
        "10.77.0.0/24",
        "-o",
        "com.docker.network.bridge.enable_icc=false",
        "-o",
        "com.docker.network.driver.mtu=1400",
        "quiet",
    ]);
    h.plumb_ok(&["sandbox", "create", "x"]);
    h.plumb_ok(&["sandbox", "create", "y"]);
    h.plumb_ok(&["network", "connect", "quiet", "x"]);
    h.plumb_ok(&["network", "connect", "quiet", "y"]);
    assert!(
        !can_ping(&h, "x", &ip_on(&h, "y", "quiet")),
        "ICC off: no container to container"
    );
    assert!(
        can_ping(&h, "x", "10.77.0.1"),
        "ICC off still reaches the gateway"
    );
    let mtu = h.in_sandbox("x", "cat /sys/class/net/eth0/mtu").stdout;
    assert_eq!(mtu.trim(), "1400");
}

#[test]
fn ipv6_dual_stack() {
    let Some(h) = host() else { return };
    h.plumb_ok(&[
        "network",
        "create",
        "--ipv6",
        "--subnet",
        "fd42:1::/64",
        "--subnet",
        "10.66.0.0/24",
        "six",
    ]);
    h.plumb_ok(&["sandbox", "create", "p"]);
    h.plumb_ok(&["sandbox", "create", "q"]);
    h.plumb_ok(&["network", "connect", "six", "p"]);
    h.plumb_ok(&["network", "connect", "--ip6", "fd42:1::99", "six", "q"]);
    let q = sandbox(&h, "q");
    assert_eq!(q["Endpoints"][0]["IPv6Address"], "fd42:1::99/64");
    assert!(
        h.in_sandbox("p", "ping -6 -c1 -W2 fd42:1::99 >/dev/null")
            .ok(),
        "IPv6 between sandboxes"
    );
    let r = h.in_sandbox("p", "ip -6 route show default").stdout;
    assert!(
        r.contains("fd42:1::1"),
        "IPv6 default route via the gateway: {r}"
    );
}

#[test]
fn connect_and_disconnect_while_a_process_runs() {
    let Some(h) = host() else { return };
    h.plumb_ok(&["network", "create", "n1"]);
    h.plumb_ok(&["network", "create", "n2"]);
    h.plumb_ok(&["sandbox", "create", "app"]);
    h.plumb_ok(&["sandbox", "create", "peer"]);
    h.plumb_ok(&["network", "connect", "n1", "app"]);
    h.plumb_ok(&["network", "connect", "n2", "peer"]);
    // A long-lived process inside the sandbox, started before the new connection.
    let mut live = std::process::Command::new(plumb_testkit::bin_dir().join("plumb"))
        .args([
            "-H",
            &format!("unix://{}", h.socket.display()),
            "exec",
            "app",
            "--",
            "sleep",
            "60",
        ])
        .spawn()
        .unwrap();
    let peer = ip_on(&h, "peer", "n2");
    assert!(!can_ping(&h, "app", &peer));
    h.plumb_ok(&["network", "connect", "n2", "app"]);
    assert!(can_ping(&h, "app", &peer), "reachable after connect");
    let links = h.in_sandbox("app", "ip -o link show").stdout;
    assert!(links.contains("eth1"), "second interface eth1: {links}");
    h.plumb_ok(&["network", "disconnect", "n2", "app"]);
    assert!(!can_ping(&h, "app", &peer), "unreachable after disconnect");
    let links = h.in_sandbox("app", "ip -o addr show").stdout;
    assert!(
        !links.contains("eth1"),
        "eth1 gone after disconnect: {links}"
    );
    assert!(
        live.try_wait().unwrap().is_none(),
        "the process kept running throughout"
    );
    // Connect again: the interface name is reused at once.
    h.plumb_ok(&["network", "connect", "n2", "app"]);
    assert!(can_ping(&h, "app", &peer));
    live.kill().unwrap();
    live.wait().unwrap();
}

#[test]
fn default_route_follows_gateway_priority_and_moves_on_leave() {
    let Some(h) = host() else { return };
    h.plumb_ok(&["network", "create", "--subnet", "10.1.0.0/24", "alpha"]);
    h.plumb_ok(&["network", "create", "--subnet", "10.2.0.0/24", "beta"]);
    h.plumb_ok(&["sandbox", "create", "s"]);
    h.plumb_ok(&["network", "connect", "beta", "s"]);
    h.plumb_ok(&["network", "connect", "--gw-priority", "10", "alpha", "s"]);
    let r = h.in_sandbox("s", "ip route show default").stdout;
    assert!(r.contains("via 10.1.0.1"), "highest priority wins: {r}");
    h.plumb_ok(&["network", "disconnect", "alpha", "s"]);
    let r = h.in_sandbox("s", "ip route show default").stdout;
    assert!(
        r.contains("via 10.2.0.1"),
        "gateway moves to the remaining endpoint: {r}"
    );
}
