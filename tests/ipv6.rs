//! IPv6 as a first-class citizen and how bridge networks meet the outside: dual stack with
//! NAT66, IPv6-only networks with DNS, a configurable default IPv6 pool, addresses usable the
//! moment connect returns, routed gateway mode, and no direct access from outside in NAT mode.
//! The "outside" is a namespace linked to the test host (IPv4 and IPv6) that has routes to
//! the container subnets through the host, as a LAN router or neighbour would.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use plumb_e2e::{client_in_ns, host, ip6_on, ip_on, serve, TestHost};

/// The outside namespace with IPv6 too (host fd99::1, outside fd99::2, the host's IPv6
/// default route through it) and routes to `subnets` through the host.
fn outside_with_routes(h: &mut TestHost, subnets: &[&str]) -> String {
    let out = h.add_outside();
    let o =
        h.sh("ip -6 addr add fd99::1/64 dev uplink nodad && ip -6 route add default via fd99::2");
    assert!(o.ok(), "{}", o.stderr);
    let o = h.sh_in(&out, "ip -6 addr add fd99::2/64 dev eth0 nodad");
    assert!(o.ok(), "{}", o.stderr);
    for s in subnets {
        let via = if s.contains(':') {
            "fd99::1"
        } else {
            "198.51.100.1"
        };
        let o = h.sh_in(&out, &format!("ip route add {s} via {via}"));
        assert!(o.ok(), "route {s}: {}", o.stderr);
    }
    out
}

/// An echo server in the outside namespace on port 7000 (both families).
fn serve_outside(out: &str) -> plumb_e2e::Servers {
    plumb_e2e::spawn_ready(
        std::process::Command::new("nsenter")
            .arg(format!("--net=/run/netns/{out}"))
            .args(["python3", &plumb_e2e::echo(), "serve", "7000"]),
    )
}

/// The address the outside echo server saw for a connection from sandbox `sb` to `server`.
fn seen_from(h: &TestHost, sb: &str, server: &str) -> String {
    let o = h.in_sandbox(
        sb,
        &format!("python3 {} tcp {server} 7000", plumb_e2e::echo()),
    );
    assert!(o.ok(), "{sb} -> {server}: {}", o.stderr);
    o.stdout.trim().to_owned()
}

#[test]
fn nat_mode_lets_nothing_from_outside_reach_a_container_directly() {
    let Some(mut h) = host() else { return };
    let out = outside_with_routes(&mut h, &["10.90.0.0/24", "fd90::/64"]);
    h.plumb_ok(&[
        "network",
        "create",
        "--ipv6",
        "--subnet",
        "10.90.0.0/24",
        "--subnet",
        "fd90::/64",
        "nat",
    ]);
    h.plumb_ok(&["sandbox", "create", "-p", "8080:80", "srv"]);
    h.plumb_ok(&["network", "connect", "nat", "srv"]);
    let _servers = serve(&h, "srv", &["80", "81"]);
    let (v4, v6) = (ip_on(&h, "srv", "nat"), ip6_on(&h, "srv", "nat"));
    // Published: through the host's addresses, both families.
    assert!(client_in_ns(&h, &out, "tcp", "198.51.100.1", 8080).is_some());
    assert!(client_in_ns(&h, &out, "tcp", "fd99::1", 8080).is_some());
    // The container's own addresses take nothing unsolicited: not the published container
    // port, not another one, not ping.
    for (addr, port) in [(&v4, 80), (&v4, 81), (&v6, 80), (&v6, 81)] {
        assert_eq!(
            client_in_ns(&h, &out, "tcp", addr, port),
            None,
            "{addr}:{port} reached directly"
        );
    }
    assert!(!h.sh_in(&out, &format!("ping -c1 -W1 {v4}")).ok());
    assert!(!h.sh_in(&out, &format!("ping -6 -c1 -W1 {v6}")).ok());
    // The container still goes out (NAT and NAT66: the outside sees the host's address).
    let _outside_server = serve_outside(&out);
    assert_eq!(seen_from(&h, "srv", "198.51.100.2"), "198.51.100.1", "NAT");
    assert_eq!(seen_from(&h, "srv", "fd99::2"), "fd99::1", "NAT66");
    assert!(
        h.in_sandbox("srv", "ping -6 -c1 -W2 fd99::2").ok(),
        "ping6 out through NAT66"
    );
    // A container on an IPv6-only network publishes to the host's IPv6 addresses only.
    h.plumb_ok(&[
        "network",
        "create",
        "--ipv4=false",
        "--ipv6",
        "--subnet",
        "fd93::/64",
        "six",
    ]);
    h.plumb_ok(&["sandbox", "create", "-p", "8090:83", "v6srv"]);
    h.plumb_ok(&["network", "connect", "six", "v6srv"]);
    let _v6servers = serve(&h, "v6srv", &["83"]);
    assert_eq!(
        client_in_ns(&h, &out, "tcp", "fd99::1", 8090).as_deref(),
        Some("fd99::2"),
        "published to an IPv6-only container, the client's address kept"
    );
    assert_eq!(client_in_ns(&h, &out, "tcp", "198.51.100.1", 8090), None);
    // nat-unprotected is the old way: the container's address takes anything.
    h.plumb_ok(&[
        "network",
        "create",
        "--subnet",
        "10.91.0.0/24",
        "-o",
        "com.docker.network.bridge.gateway_mode_ipv4=nat-unprotected",
        "open",
    ]);
    let o = h.sh_in(&out, "ip route add 10.91.0.0/24 via 198.51.100.1");
    assert!(o.ok());
    h.plumb_ok(&["sandbox", "create", "old"]);
    h.plumb_ok(&["network", "connect", "open", "old"]);
    let _old = serve(&h, "old", &["82"]);
    let old = ip_on(&h, "old", "open");
    assert!(client_in_ns(&h, &out, "tcp", &old, 82).is_some());
}

#[test]
fn routed_mode_uses_the_containers_own_addresses_and_opens_only_published_ports() {
    let Some(mut h) = host() else { return };
    let out = outside_with_routes(&mut h, &["10.92.0.0/24", "fd92::/64"]);
    h.plumb_ok(&[
        "network",
        "create",
        "--ipv6",
        "--subnet",
        "10.92.0.0/24",
        "--subnet",
        "fd92::/64",
        "-o",
        "com.docker.network.bridge.gateway_mode_ipv4=routed",
        "-o",
        "com.docker.network.bridge.gateway_mode_ipv6=routed",
        "routed",
    ]);
    h.plumb_ok(&["sandbox", "create", "-p", "8080:80", "srv"]);
    h.plumb_ok(&["network", "connect", "routed", "srv"]);
    let _servers = serve(&h, "srv", &["80", "81"]);
    let (v4, v6) = (ip_on(&h, "srv", "routed"), ip6_on(&h, "srv", "routed"));
    // Out with its own address, both families.
    let _outside_server = serve_outside(&out);
    assert_eq!(
        seen_from(&h, "srv", "198.51.100.2"),
        v4,
        "its own IPv4 address"
    );
    assert_eq!(seen_from(&h, "srv", "fd99::2"), v6, "its own IPv6 address");
    // In: the published container port and ICMP at its own address; nothing else.
    assert_eq!(
        client_in_ns(&h, &out, "tcp", &v4, 80).as_deref(),
        Some("198.51.100.2"),
        "the client's own address arrives"
    );
    assert!(client_in_ns(&h, &out, "tcp", &v6, 80).is_some());
    assert_eq!(client_in_ns(&h, &out, "tcp", &v4, 81), None, "unpublished");
    assert_eq!(client_in_ns(&h, &out, "tcp", &v6, 81), None, "unpublished");
    assert!(h.sh_in(&out, &format!("ping -c1 -W2 {v4}")).ok());
    assert!(h.sh_in(&out, &format!("ping -6 -c1 -W2 {v6}")).ok());
    // The port closes with its last mapping.
    h.plumb_ok(&["sandbox", "rm", "srv"]);
    h.plumb_ok(&["sandbox", "create", "srv2"]);
    h.plumb_ok(&["network", "connect", "--ip", &v4, "routed", "srv2"]);
    let _s2 = serve(&h, "srv2", &["80"]);
    assert_eq!(client_in_ns(&h, &out, "tcp", &v4, 80), None, "closed again");
    // Bad modes name themselves.
    let e = h.plumb_err(&[
        "network",
        "create",
        "-o",
        "com.docker.network.bridge.gateway_mode_ipv4=open",
        "bad",
    ]);
    assert!(e.contains("gateway_mode_ipv4"), "{e}");
}

#[test]
fn ipv6_only_networks_resolve_names_and_addresses_work_at_once() {
    let Some(h) = host() else { return };
    h.plumb_ok(&["network", "create", "--ipv4=false", "--ipv6", "v6only"]);
    let n = plumb_e2e::network(&h, "v6only");
    assert_eq!(n["EnableIPv4"], false, "{n}");
    let subnet = n["IPAM"]["Config"][0]["Subnet"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        subnet.starts_with("fd") && subnet.ends_with("/64"),
        "a unique-local /64: {subnet}"
    );
    for sb in ["a", "b"] {
        h.plumb_ok(&["sandbox", "create", sb]);
        h.plumb_ok(&["network", "connect", "v6only", sb]);
    }
    let b = ip6_on(&h, "b", "v6only");
    // Usable the moment connect returns: no duplicate address detection pending.
    let o = h.in_sandbox("b", "ip -6 -o addr show dev eth0 scope global");
    assert!(
        o.stdout.contains(&b) && !o.stdout.contains("tentative"),
        "{}",
        o.stdout
    );
    let o = h.in_sandbox("a", "ip -4 -o addr show dev eth0");
    assert!(o.stdout.trim().is_empty(), "no IPv4: {}", o.stdout);
    // AAAA and ip6.arpa PTR from the embedded resolver; ping by name.
    let o = h.in_sandbox("a", "dig +short +time=2 +tries=1 @127.0.0.11 AAAA b");
    assert_eq!(o.stdout.trim(), b);
    let o = h.in_sandbox(
        "a",
        &format!("dig +short +time=2 +tries=1 @127.0.0.11 -x {b}"),
    );
    assert_eq!(o.stdout.trim(), "b.");
    assert!(h.in_sandbox("a", "ping -6 -c1 -W2 b").ok());
    // Docker's API too.
    let (st, v) = h.api(
        "POST",
        "/networks/create",
        Some(&serde_json::json!({"Name": "v6api", "EnableIPv4": false, "EnableIPv6": true})),
    );
    assert_eq!(st, 201, "{v}");
    // An IPv6-only network asks for IPv6.
    let e = h.plumb_err(&["network", "create", "--ipv4=false", "noaddr"]);
    assert!(e.to_lowercase().contains("ipv6"), "{e}");
}

#[test]
fn the_default_ipv6_pool_is_configurable() {
    let Some(mut h) = host() else { return };
    h.set_daemon_args(&["--default-address-pool", "base=fd12:3456::/48,size=64"]);
    h.stop();
    h.start();
    h.plumb_ok(&["network", "create", "--ipv6", "six"]);
    let n = plumb_e2e::network(&h, "six");
    let subnets: Vec<String> = n["IPAM"]["Config"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["Subnet"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        subnets.iter().any(|s| s == "fd12:3456::/64"),
        "the configured IPv6 base: {subnets:?}"
    );
    assert!(
        subnets.iter().any(|s| s.starts_with("172.")),
        "IPv4 keeps Docker's defaults: {subnets:?}"
    );
    h.plumb_ok(&["network", "create", "--ipv6", "six2"]);
    let n = plumb_e2e::network(&h, "six2");
    assert!(
        n["IPAM"]["Config"]
            .to_string()
            .contains("fd12:3456:0:1::/64"),
        "{n}"
    );
}
