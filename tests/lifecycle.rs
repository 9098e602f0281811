//! Lifecycle: crash and restart, cleanup, concurrent connects, the sandbox environment, run.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use plumb_e2e::{can_ping, host, ip_on, network, sandbox};
use serde_json::json;
use std::collections::HashSet;
use std::time::{Duration, Instant};

#[test]
fn kill9_and_restart_keeps_state_and_connectivity() {
    let Some(mut h) = host() else { return };
    h.plumb_ok(&["network", "create", "--subnet", "10.9.0.0/24", "keep"]);
    h.plumb_ok(&["sandbox", "create", "k1"]);
    h.plumb_ok(&["sandbox", "create", "k2"]);
    h.plumb_ok(&["network", "connect", "keep", "k1"]);
    h.plumb_ok(&["network", "connect", "--alias", "db", "keep", "k2"]);
    let before = network(&h, "keep");
    let k2 = ip_on(&h, "k2", "keep");
    h.kill9();
    // The kernel keeps working without the daemon.
    assert!(
        h.sh(&format!("ls {}/run/netns | wc -l", h.dir.display()))
            .stdout
            .trim()
            == "2"
    );
    h.start();
    assert_eq!(
        network(&h, "keep"),
        before,
        "network state survives kill -9"
    );
    assert!(can_ping(&h, "k1", &k2), "connectivity intact after restart");
    // The allocator remembers: a new endpoint gets a fresh address.
    h.plumb_ok(&["sandbox", "create", "k3"]);
    h.plumb_ok(&["network", "connect", "keep", "k3"]);
    let ips: HashSet<String> = ["k1", "k2", "k3"]
        .iter()
        .map(|s| ip_on(&h, s, "keep"))
        .collect();
    assert_eq!(
        ips.len(),
        3,
        "no address handed out twice after restart: {ips:?}"
    );
    assert!(can_ping(&h, "k3", &k2));
}

#[test]
fn restart_repairs_a_deleted_veth_and_sweeps_leftovers() {
    let Some(mut h) = host() else { return };
    h.plumb_ok(&["network", "create", "fix"]);
    h.plumb_ok(&["sandbox", "create", "f1"]);
    h.plumb_ok(&["sandbox", "create", "f2"]);
    h.plumb_ok(&["network", "connect", "fix", "f1"]);
    h.plumb_ok(&["network", "connect", "fix", "f2"]);
    h.kill9();
    // Someone deletes f1's veth while plumbd is down; a bridge plumb marked for a network it no
    // longer knows is left over, and someone else's bridge has a Docker-like name.
    let o = h.sh("for l in $(ip -o link show type veth | awk -F': ' '{print $2}' | cut -d@ -f1); do ip link del $l; break; done; \
                  ip link add plumbleft type bridge && ip link set plumbleft alias plumb:0123 && ip link add br-deadbeef000 type bridge");
    assert!(o.ok(), "{}", o.stderr);
    h.start();
    let f2 = ip_on(&h, "f2", "fix");
    let f1 = ip_on(&h, "f1", "fix");
    assert!(
        can_ping(&h, "f1", &f2) && can_ping(&h, "f2", &f1),
        "both endpoints plumbed again"
    );
    assert!(
        !h.links().contains(&"plumbleft".to_owned()),
        "plumb's leftover bridge swept"
    );
    assert!(
        h.links().contains(&"br-deadbeef000".to_owned()),
        "a bridge plumb did not make stays"
    );
}

fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    // Device deletion finishes in the background; give it a generous bound, not a timing check.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !cond() {
        assert!(Instant::now() < deadline, "{what} did not happen");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn deleting_everything_leaves_nothing_behind() {
    let Some(h) = host() else { return };
    let links_before = h.links();
    let addrs_before = h.sh("ip -o addr show").stdout.lines().count();
    let nft_before = h.sh("nft list table inet plumb").stdout;
    h.plumb_ok(&[
        "network",
        "create",
        "-o",
        "com.docker.network.bridge.enable_icc=false",
        "t1",
    ]);
    h.plumb_ok(&[
        "network",
        "create",
        "--internal",
        "--ipv6",
        "--subnet",
        "fd00:77::/64",
        "t2",
    ]);
    for s in ["s1", "s2"] {
        h.plumb_ok(&["sandbox", "create", s]);
        h.plumb_ok(&["network", "connect", "t1", s]);
        h.plumb_ok(&["network", "connect", "t2", s]);
    }
    h.plumb_ok(&["network", "disconnect", "t1", "s1"]);
    h.plumb_ok(&["sandbox", "rm", "s1", "s2"]);
    h.plumb_ok(&["network", "rm", "t1", "t2"]);
    wait_for("all links removed", || h.links() == links_before);
    assert_eq!(h.sh("ip -o addr show").stdout.lines().count(), addrs_before);
    assert_eq!(
        h.sh("nft list table inet plumb").stdout,
        nft_before,
        "no nft element left"
    );
    let ls = h
        .sh(&format!(
            "ls {0}/run/netns {0}/run/sandboxes",
            h.dir.display()
        ))
        .stdout;
    assert_eq!(
        ls.lines()
            .filter(|l| !l.is_empty() && !l.ends_with(':'))
            .count(),
        0,
        "{ls}"
    );
    assert_eq!(
        h.plumb_ok(&["sandbox", "ls"]).lines().count(),
        1,
        "only the header"
    );
}

#[test]
fn two_hundred_concurrent_connects_get_distinct_addresses() {
    let Some(h) = host() else { return };
    h.plumb_ok(&["network", "create", "--subnet", "10.200.0.0/24", "busy"]);
    for i in 0..200 {
        let (st, _) = h.api(
            "POST",
            "/plumb/v1/sandboxes",
            Some(&json!({"Name": format!("c{i}")})),
        );
        assert_eq!(st, 201);
    }
    std::thread::scope(|s| {
        for t in 0..8 {
            let h = &h;
            s.spawn(move || {
                for i in (t..200).step_by(8) {
                    let (st, v) = h.api(
                        "POST",
                        "/networks/busy/connect",
                        Some(&json!({"Container": format!("c{i}")})),
                    );
                    assert_eq!(st, 200, "connect c{i}: {v}");
                }
            });
        }
    });
    let net = network(&h, "busy");
    let ips: HashSet<&str> = net["Containers"]
        .as_object()
        .unwrap()
        .values()
        .map(|c| c["IPv4Address"].as_str().unwrap())
        .collect();
    assert_eq!(ips.len(), 200, "200 distinct addresses");
    assert!(
        !ips.contains("10.200.0.1/24"),
        "the gateway is never handed out"
    );
    // Disconnect half, connect them again: still all distinct.
    for i in 0..100 {
        assert_eq!(
            h.api(
                "POST",
                "/networks/busy/disconnect",
                Some(&json!({"Container": format!("c{i}")}))
            )
            .0,
            200
        );
    }
    for i in 0..50 {
        assert_eq!(
            h.api(
                "POST",
                "/networks/busy/connect",
                Some(&json!({"Container": format!("c{i}")}))
            )
            .0,
            200
        );
    }
    let net = network(&h, "busy");
    let ips: HashSet<&str> = net["Containers"]
        .as_object()
        .unwrap()
        .values()
        .map(|c| c["IPv4Address"].as_str().unwrap())
        .collect();
    assert_eq!(ips.len(), 150);
}

#[test]
fn exec_sees_the_sandbox_files_and_run_cleans_up() {
    let Some(h) = host() else { return };
    h.plumb_ok(&["network", "create", "--subnet", "10.44.0.0/24", "web"]);
    h.plumb_ok(&[
        "sandbox",
        "create",
        "--hostname",
        "box1",
        "--dns",
        "192.0.2.53",
        "--dns-search",
        "corp.example",
        "--add-host",
        "db.local:10.44.0.9",
        "box",
    ]);
    h.plumb_ok(&["network", "connect", "--ip", "10.44.0.7", "web", "box"]);
    let out = h
        .in_sandbox("box", "hostname; cat /etc/resolv.conf; cat /etc/hosts")
        .stdout;
    assert!(out.starts_with("box1\n"), "{out}");
    // --dns becomes the upstream of the sandbox's own resolver at 127.0.0.11.
    assert!(
        out.contains("nameserver 127.0.0.11") && out.contains("search corp.example"),
        "{out}"
    );
    assert!(
        out.contains("10.44.0.7\tbox1") && out.contains("10.44.0.9\tdb.local"),
        "{out}"
    );
    // The host's own files are untouched.
    assert!(!std::fs::read_to_string("/etc/hosts")
        .unwrap()
        .contains("box1"));

    let run = h.plumb(&[
        "run",
        "--name",
        "once",
        "--network",
        "web",
        "--ip",
        "10.44.0.20",
        "--",
        "sh",
        "-c",
        "ip -o addr show eth0; exit 3",
    ]);
    assert_eq!(
        run.code, 3,
        "run returns the command's exit code: {}",
        run.stderr
    );
    assert!(run.stdout.contains("10.44.0.20/24"), "{}", run.stdout);
    assert!(
        h.plumb(&["sandbox", "inspect", "once"]).code != 0,
        "run removed its sandbox"
    );
    let none = h.plumb_ok(&["run", "--network", "none", "--", "ip", "-o", "link", "show"]);
    assert_eq!(none.lines().count(), 1, "none: loopback only: {none}");
    let hostnet = h.plumb_ok(&["run", "--network", "host", "--", "ip", "-o", "link", "show"]);
    assert!(
        hostnet.contains("plumb0"),
        "host mode sees the host's links: {hostnet}"
    );
    assert!(sandbox(&h, "box")["Endpoints"][0]["IsGateway"]
        .as_bool()
        .unwrap());
}

#[test]
fn sigterm_during_a_burst_of_connects_leaves_nothing_half_made() {
    let Some(mut h) = host() else { return };
    h.plumb_ok(&["network", "create", "--subnet", "10.48.0.0/24", "burst"]);
    let n = 40;
    let mut keys = Vec::new();
    for i in 0..n {
        let (st, v) = h.api(
            "POST",
            "/plumb/v1/sandboxes",
            Some(&json!({"Name": format!("b{i}")})),
        );
        assert_eq!(st, 201, "{v}");
        keys.push(v["Key"].as_str().unwrap().to_owned());
    }
    let socket = h.socket.clone();
    let started = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = started.clone();
    let burst = std::thread::spawn(move || {
        let mut acked = Vec::new();
        for i in 0..n {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let st = plumb_testkit::TestHost::api_on(
                &socket,
                "POST",
                "/networks/burst/connect",
                Some(&json!({"Container": format!("b{i}")})),
            )
            .0;
            if st == 200 {
                acked.push(i);
            }
        }
        acked
    });
    wait_for("the burst is under way", || {
        started.load(std::sync::atomic::Ordering::SeqCst) >= 8
    });
    h.stop(); // SIGTERM, then wait for plumbd to exit
    let acked = burst.join().unwrap();
    assert!(
        !acked.is_empty() && acked.len() < n,
        "SIGTERM came mid-burst: {acked:?}"
    );
    // With plumbd gone, every sandbox is either fully connected or not at all.
    let mut plumbed = HashSet::new();
    for (i, key) in keys.iter().enumerate() {
        let links = h
            .sh(&format!("nsenter --net={key} ip -o -4 addr show"))
            .stdout;
        let eth = h.sh(&format!("nsenter --net={key} ip -o link show")).stdout;
        let has_link = eth.contains("eth0");
        let has_addr = links.contains("10.48.0.");
        assert_eq!(has_link, has_addr, "b{i} is half made: {eth}\n{links}");
        if has_addr {
            plumbed.insert(i);
        }
    }
    for i in &acked {
        assert!(
            plumbed.contains(i),
            "acknowledged connect of b{i} is plumbed"
        );
    }
    // After a restart everything answers, and the rest can connect.
    h.start();
    for i in 0..n {
        let sb = sandbox(&h, &format!("b{i}"));
        let joined = sb["Endpoints"].as_array().is_some_and(|e| !e.is_empty());
        assert_eq!(joined, plumbed.contains(&i), "b{i} as the kernel had it");
        if !joined {
            h.plumb_ok(&["network", "connect", "burst", &format!("b{i}")]);
        }
    }
    let first = ip_on(&h, "b0", "burst");
    assert!(can_ping(&h, &format!("b{}", n - 1), &first));
}
