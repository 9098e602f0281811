//! Overlay networks end to end: three hosts (namespaces on one underlay, each running plumbd)
//! and etcd from Debian in the underlay's namespace. A network created on one host is seen
//! on the others; sandboxes on different hosts ping each other by address and by name over
//! VXLAN; another overlay network stays isolated; disconnects withdraw the FDB and neighbour
//! entries; a host killed with `kill -9` is cleaned from the others after its ttl; with etcd
//! stopped, established traffic flows, global operations fail fast with a clear error and
//! local networks keep working.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use plumb_e2e::{can_ping, ip_on};
use plumb_testkit::cluster::{create_overlay, tunnel_entries, TestCluster};
use serde_json::json;
use std::time::{Duration, Instant};

/// `n` hosts on one underlay with etcd, or None when the opt-out is set.
fn cluster(n: usize, ttl: &str) -> Option<TestCluster> {
    plumb_testkit::prerequisites().then(|| TestCluster::start(n, ttl))
}

/// Waits (bounded) for `f`, panicking with `what`.
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// An overlay network `ov` on `subnet` with sandbox `a` on host 1 and `b` on host 2, `a`
/// reaching `b`; returns `b`'s address.
fn a_and_b(c: &TestCluster, subnet: &str) -> String {
    create_overlay(&c.hosts[0], "ov", subnet);
    eventually("ov on host 2", || {
        c.hosts[1].plumb(&["network", "inspect", "ov"]).ok()
    });
    c.hosts[0].plumb_ok(&["sandbox", "create", "a"]);
    c.hosts[0].plumb_ok(&["network", "connect", "ov", "a"]);
    c.hosts[1].plumb_ok(&["sandbox", "create", "b"]);
    c.hosts[1].plumb_ok(&["network", "connect", "ov", "b"]);
    let b = ip_on(&c.hosts[1], "b", "ov");
    eventually("a reaches b", || can_ping(&c.hosts[0], "a", &b));
    b
}

#[test]
fn sandboxes_on_three_hosts_talk_by_address_and_name_and_stay_isolated() {
    let Some(c) = cluster(3, "10s") else { return };
    let [h1, h2, h3] = [&c.hosts[0], &c.hosts[1], &c.hosts[2]];
    create_overlay(h1, "ov", "10.210.0.0/24");
    for h in [h2, h3] {
        eventually("the network shows on every host", || {
            h.plumb(&["network", "inspect", "ov"]).ok()
        });
    }
    let ls = h2.plumb_ok(&["network", "ls"]);
    assert!(ls.contains("ov") && ls.contains("overlay"), "{ls}");
    let (st, v) = h3.api("GET", "/networks/ov", None);
    assert_eq!(st, 200);
    assert_eq!(v["Scope"], "global", "{v}");
    // One sandbox per host.
    for (h, s) in [(h1, "a"), (h2, "b"), (h3, "c")] {
        h.plumb_ok(&["sandbox", "create", s]);
        h.plumb_ok(&["network", "connect", "ov", s]);
    }
    let a = ip_on(h1, "a", "ov");
    let b = ip_on(h2, "b", "ov");
    let c3 = ip_on(h3, "c", "ov");
    assert!(
        a != b && b != c3 && a != c3,
        "distinct addresses {a} {b} {c3}"
    );
    eventually("a reaches b across hosts", || can_ping(h1, "a", &b));
    assert!(can_ping(h2, "b", &c3), "b reaches c");
    assert!(can_ping(h3, "c", &a), "c reaches a");
    // By name, through the embedded DNS.
    eventually("c's name resolves on host 1", || {
        h1.in_sandbox("a", "ping -c1 -W1 c >/dev/null 2>&1").ok()
    });
    let link = h1.in_sandbox("a", "ip -o link show eth0").stdout;
    assert!(
        link.contains("mtu 1450 "),
        "underlay MTU minus VXLAN's 50: {link}"
    );
    // Inspect on any host lists the endpoints of every host, with the host each is on.
    let (_, v) = h2.api("GET", "/networks/ov", None);
    let peers = v["Peers"].as_array().map(|p| p.len()).unwrap_or(0);
    assert_eq!(peers, 3, "Peers lists the three nodes: {v}");
    // A second overlay network is isolated from the first.
    create_overlay(h2, "other", "10.211.0.0/24");
    eventually("other shows on host 3", || {
        h3.plumb(&["network", "inspect", "other"]).ok()
    });
    h3.plumb_ok(&["sandbox", "create", "x"]);
    h3.plumb_ok(&["network", "connect", "other", "x"]);
    assert!(
        !can_ping(h3, "x", &a),
        "another overlay network must not reach a"
    );
    assert!(!can_ping(h1, "a", &ip_on(h3, "x", "other")));
    // Disconnect: the entries for b go from every host.
    h2.plumb_ok(&["network", "disconnect", "ov", "b"]);
    eventually("b's tunnel entries withdrawn on host 1", || {
        !tunnel_entries(h1).contains(&b)
    });
    assert!(!can_ping(h1, "a", &b));
    // Host 2 has no endpoint on ov any more: it keeps no namespace for it.
    eventually("host 2 dropped the network's namespace", || {
        !h2.sh("ls run/overlay 2>/dev/null | grep -q .").ok() || tunnel_entries(h2).is_empty()
    });
    // The machine around the hosts is untouched.
    for h in [h1, h2, h3] {
        assert!(h.furnishings().contains("docker0"), "{}", h.furnishings());
    }
}

#[test]
fn a_killed_host_is_cleaned_from_the_others_after_its_ttl() {
    let Some(mut c) = cluster(3, "3s") else {
        return;
    };
    let b = a_and_b(&c, "10.212.0.0/24");
    let nodes = c.hosts[0].plumb_ok(&["node", "ls"]);
    assert!(
        nodes.contains("node1") && nodes.contains("node2"),
        "{nodes}"
    );
    c.hosts[1].kill9();
    // After the ttl (3 s) host 1 forgets b: no tunnel entry, no name, address free.
    eventually("b's entries cleaned from host 1", || {
        !tunnel_entries(&c.hosts[0]).contains(&b)
    });
    eventually("b's endpoint gone from inspect", || {
        let (_, v) = c.hosts[0].api("GET", "/networks/ov", None);
        v["Containers"].as_object().is_some_and(|m| m.len() == 1)
    });
    let nodes = c.hosts[0].plumb_ok(&["node", "ls"]);
    assert!(
        nodes
            .lines()
            .any(|l| l.contains("node2") && l.contains("down")),
        "{nodes}"
    );
    // The address is free: a static request for it succeeds on host 1.
    c.hosts[0].plumb_ok(&["sandbox", "create", "heir"]);
    c.hosts[0].plumb_ok(&["network", "connect", "--ip", &b, "ov", "heir"]);
    // With etcd stopped: established traffic flows, global changes fail fast, local works.
    c.hosts[0].plumb_ok(&["sandbox", "create", "d"]);
    c.hosts[0].plumb_ok(&["network", "connect", "ov", "d"]);
    let d = ip_on(&c.hosts[0], "d", "ov");
    c.etcd.stop();
    assert!(
        can_ping(&c.hosts[0], "a", &d),
        "established traffic keeps flowing"
    );
    c.hosts[0].plumb_ok(&["sandbox", "create", "e"]);
    let t = Instant::now();
    let err = c.hosts[0].plumb_err(&["network", "connect", "ov", "e"]);
    assert!(err.contains("cluster store"), "{err}");
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "no hang: {:?}",
        t.elapsed()
    );
    c.hosts[0].plumb_ok(&["network", "create", "localnet"]);
    c.hosts[0].plumb_ok(&["network", "connect", "localnet", "e"]);
    // etcd back: global operations work again without a restart.
    c.etcd.resume();
    eventually("connect to ov works again", || {
        c.hosts[0].plumb(&["network", "connect", "ov", "e"]).ok()
    });
    // A new endpoint on host 3 (whose watch resumed after the outage) is reached from host 1.
    c.hosts[2].plumb_ok(&["sandbox", "create", "late"]);
    c.hosts[2].plumb_ok(&["network", "connect", "ov", "late"]);
    let late = ip_on(&c.hosts[2], "late", "ov");
    eventually("host 1 reaches host 3's new endpoint", || {
        can_ping(&c.hosts[0], "a", &late)
    });
    eventually("and host 3 resolves host 1's sandbox by name", || {
        c.hosts[2]
            .in_sandbox("late", "ping -c1 -W1 e >/dev/null 2>&1")
            .ok()
    });
}

#[test]
fn overlay_networks_need_a_cluster_store() {
    let Some(h) = plumb_e2e::host() else { return };
    let (st, body) = h.api(
        "POST",
        "/networks/create",
        Some(&json!({"Name": "ov", "Driver": "overlay"})),
    );
    assert_eq!(st, 400, "{body}");
    assert!(body.to_string().contains("--cluster-store"), "{body}");
    assert!(!h.plumb_ok(&["network", "ls"]).contains("ov"));
}

#[test]
fn the_docker_cli_creates_an_overlay_network_and_connects_on_two_hosts() {
    let Some(c) = cluster(2, "10s") else { return };
    let [h1, h2] = [&c.hosts[0], &c.hosts[1]];
    let o = plumb_e2e::docker(
        h1,
        &[
            "network",
            "create",
            "-d",
            "overlay",
            "--attachable",
            "--subnet",
            "10.213.0.0/24",
            "dov",
        ],
    );
    assert!(o.ok(), "docker network create: {}", o.stderr);
    eventually("dov on host 2", || {
        h2.plumb(&["network", "inspect", "dov"]).ok()
    });
    let ls = plumb_e2e::docker(h2, &["network", "ls", "--filter", "driver=overlay"]);
    assert!(
        ls.stdout.contains("dov") && ls.stdout.contains("global"),
        "{}",
        ls.stdout
    );
    h1.plumb_ok(&["sandbox", "create", "web"]);
    h2.plumb_ok(&["sandbox", "create", "db"]);
    for (h, s) in [(h1, "web"), (h2, "db")] {
        let o = plumb_e2e::docker(h, &["network", "connect", "dov", s]);
        assert!(o.ok(), "docker network connect: {}", o.stderr);
    }
    eventually("web reaches db by name", || {
        h1.in_sandbox("web", "ping -c1 -W1 db >/dev/null 2>&1").ok()
    });
    let o = plumb_e2e::docker(
        h2,
        &[
            "network",
            "inspect",
            "dov",
            "--format",
            "{{.Scope}} {{len .Containers}} {{len .Peers}}",
        ],
    );
    assert_eq!(o.stdout.trim(), "global 2 2", "{}", o.stderr);
    for (h, s) in [(h1, "web"), (h2, "db")] {
        let o = plumb_e2e::docker(h, &["network", "disconnect", "dov", s]);
        assert!(o.ok(), "docker network disconnect: {}", o.stderr);
    }
    eventually("dov has no endpoint left on host 1", || {
        let (_, v) = h1.api("GET", "/networks/dov", None);
        v["Containers"].as_object().is_some_and(|m| m.is_empty())
    });
    let o = plumb_e2e::docker(h1, &["network", "rm", "dov"]);
    assert!(o.ok(), "docker network rm: {}", o.stderr);
    eventually("dov is gone on host 2", || {
        !h2.plumb(&["network", "inspect", "dov"]).ok()
    });
}

#[test]
fn concurrent_connects_on_three_hosts_get_distinct_addresses() {
    let Some(c) = cluster(3, "10s") else { return };
    create_overlay(&c.hosts[0], "ov", "10.214.0.0/22");
    for h in &c.hosts[1..] {
        eventually("ov everywhere", || {
            h.plumb(&["network", "inspect", "ov"]).ok()
        });
    }
    // 3 hosts x 100 connects, 4 clients per host at once.
    std::thread::scope(|s| {
        for (i, h) in c.hosts.iter().enumerate() {
            for t in 0..4 {
                s.spawn(move || {
                    for j in (t..100).step_by(4) {
                        let name = format!("s{i}-{j}");
                        let (st, v) =
                            h.api("POST", "/plumb/v1/sandboxes", Some(&json!({"Name": name})));
                        assert_eq!(st, 201, "{v}");
                        let (st, v) = h.api(
                            "POST",
                            "/networks/ov/connect",
                            Some(&json!({"Container": name})),
                        );
                        assert_eq!(st, 200, "{v}\n{}", h.log());
                    }
                });
            }
        }
    });
    let mut all = std::collections::BTreeSet::new();
    for h in &c.hosts {
        let (_, v) = h.api("GET", "/networks/ov", None);
        let listed = v["Containers"].as_object().unwrap().len();
        assert_eq!(listed, 300, "every host lists all 300 endpoints");
    }
    let (_, v) = c.hosts[2].api("GET", "/networks/ov", None);
    for e in v["Containers"].as_object().unwrap().values() {
        assert!(
            all.insert(e["IPv4Address"].as_str().unwrap().to_owned()),
            "{e} twice"
        );
    }
    assert_eq!(all.len(), 300, "300 distinct addresses");
}

#[test]
fn a_host_restarted_within_its_ttl_keeps_traffic_and_peers() {
    let Some(mut c) = cluster(2, "10s") else {
        return;
    };
    let b = a_and_b(&c, "10.215.0.0/24");
    // Host 2's plumbd dies and comes back well within its 10 s ttl.
    c.hosts[1].kill9();
    assert!(
        can_ping(&c.hosts[0], "a", &b),
        "traffic flows while plumbd is down"
    );
    c.hosts[1].start();
    assert!(can_ping(&c.hosts[0], "a", &b), "and after it is back");
    // Nothing was withdrawn: host 1 still has b's entries, b its address, and b still
    // resolves a by name.
    assert!(tunnel_entries(&c.hosts[0]).contains(&b));
    assert_eq!(ip_on(&c.hosts[1], "b", "ov"), b);
    assert!(c.hosts[1]
        .in_sandbox("b", "ping -c1 -W1 a >/dev/null 2>&1")
        .ok());
    let nodes = c.hosts[0].plumb_ok(&["node", "ls"]);
    assert!(!nodes.contains("down"), "{nodes}");
}

#[test]
fn a_three_member_etcd_losing_one_member_changes_nothing() {
    if !plumb_testkit::prerequisites() {
        return;
    }
    let mut c = TestCluster::start_with(2, "10s", 3);
    create_overlay(&c.hosts[0], "ov", "10.216.0.0/24");
    eventually("ov on host 2", || {
        c.hosts[1].plumb(&["network", "inspect", "ov"]).ok()
    });
    c.hosts[0].plumb_ok(&["sandbox", "create", "a"]);
    c.hosts[0].plumb_ok(&["network", "connect", "ov", "a"]);
    c.etcd.kill_member(0);
    // Connects, removals and discovery go on through the two members left.
    c.hosts[1].plumb_ok(&["sandbox", "create", "b"]);
    c.hosts[1].plumb_ok(&["network", "connect", "ov", "b"]);
    let a = ip_on(&c.hosts[0], "a", "ov");
    eventually("b reaches a by name", || {
        c.hosts[1]
            .in_sandbox("b", "ping -c1 -W1 a >/dev/null 2>&1")
            .ok()
    });
    assert!(can_ping(&c.hosts[1], "b", &a));
    create_overlay(&c.hosts[1], "second", "10.217.0.0/24");
    eventually("second on host 1", || {
        c.hosts[0].plumb(&["network", "inspect", "second"]).ok()
    });
    let nodes = c.hosts[0].plumb_ok(&["node", "ls"]);
    assert!(!nodes.contains("down"), "{nodes}");
}

#[test]
fn a_sandbox_only_on_an_overlay_network_gets_out_through_the_gateway_bridge() {
    let Some(mut c) = cluster(2, "10s") else {
        return;
    };
    let outside = c.hosts[0].add_outside();
    create_overlay(&c.hosts[0], "ov", "10.218.0.0/24");
    c.hosts[0].plumb_ok(&["network", "create", "--internal", "ovint-local"]);
    let (st, body) = c.hosts[0].api(
        "POST",
        "/networks/create",
        Some(
            &json!({"Name": "ovint", "Driver": "overlay", "Internal": true, "Attachable": true,
                     "IPAM": {"Config": [{"Subnet": "10.219.0.0/24"}]}}),
        ),
    );
    assert_eq!(st, 201, "{body}");
    let h = &c.hosts[0];
    h.plumb_ok(&["sandbox", "create", "a"]);
    h.plumb_ok(&["network", "connect", "ov", "a"]);
    // Its way out: the gateway bridge network, made on first need, masqueraded.
    let nets = h.plumb_ok(&["network", "ls"]);
    assert!(nets.contains("plumb_gwbridge"), "{nets}");
    assert!(
        can_ping(h, "a", "198.51.100.2"),
        "egress from an overlay-only sandbox"
    );
    let seen = h.sh_in(&outside, "ip route").stdout;
    assert!(
        !seen.contains("10.218."),
        "the outside knows no overlay route: {seen}"
    );
    // An internal overlay network gives none.
    h.plumb_ok(&["sandbox", "create", "i"]);
    h.plumb_ok(&["network", "connect", "ovint", "i"]);
    assert!(
        !can_ping(h, "i", "198.51.100.2"),
        "internal overlay: no egress"
    );
    let routes = h.in_sandbox("i", "ip route").stdout;
    assert!(!routes.contains("default"), "{routes}");
    // The gateway bridge endpoint goes with the last overlay endpoint.
    h.plumb_ok(&["network", "disconnect", "ov", "a"]);
    let sb = plumb_e2e::sandbox(h, "a");
    assert!(
        sb["Endpoints"].as_array().unwrap().is_empty(),
        "nothing left: {sb}"
    );
}

#[test]
fn plumbd_starts_while_etcd_is_down_and_joins_the_cluster_when_it_answers() {
    let Some(mut c) = cluster(2, "10s") else {
        return;
    };
    let b = a_and_b(&c, "10.220.0.0/24");
    c.etcd.stop();
    c.hosts[0].kill9();
    c.hosts[0].start();
    // Local networks work at once; the overlay's kernel state was left alone.
    c.hosts[0].plumb_ok(&["network", "create", "localnet"]);
    c.hosts[0].plumb_ok(&["sandbox", "create", "l"]);
    c.hosts[0].plumb_ok(&["network", "connect", "localnet", "l"]);
    assert!(
        can_ping(&c.hosts[0], "a", &b),
        "overlay traffic survives the restart"
    );
    let err = c.hosts[0].plumb_err(&["node", "ls"]);
    assert!(err.contains("cluster store"), "{err}");
    // etcd back: the global network and b's endpoint show up, and connects work.
    c.etcd.resume();
    eventually("host 1 loads the global network", || {
        let (_, v) = c.hosts[0].api("GET", "/networks/ov", None);
        v["Containers"].as_object().is_some_and(|m| m.len() == 2)
    });
    c.hosts[0].plumb_ok(&["sandbox", "create", "n"]);
    eventually("connects to ov work again", || {
        c.hosts[0].plumb(&["network", "connect", "ov", "n"]).ok()
    });
    let n = ip_on(&c.hosts[0], "n", "ov");
    eventually("b reaches the new endpoint", || {
        can_ping(&c.hosts[1], "b", &n)
    });
    assert!(can_ping(&c.hosts[0], "a", &b));
    assert!(!c.hosts[0].plumb_ok(&["node", "ls"]).contains("down"));
}
