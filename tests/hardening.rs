//! Hostile and careless input, and a shared host: every bad value is a 400 naming the field
//! with nothing created; plumb removes only what it made; concurrent creation never leaks a
//! kernel error; answers where dockerd's clients expect them.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use plumb_e2e::{host, ip_on};
use plumb_testkit::TestHost;
use serde_json::{json, Value};

/// What a request may change: networks, sandboxes, links, addresses, plumb's firewall.
fn state(h: &TestHost) -> (Value, Value, Vec<String>, String, String) {
    (
        h.api("GET", "/networks", None).1,
        h.api("GET", "/plumb/v1/sandboxes", None).1,
        h.links(),
        h.sh("ip -o addr show | awk '{print $2, $4}'").stdout,
        h.sh("nft list table inet plumb").stdout,
    )
}

/// Sends `body` to `path` and asserts a 400 whose message names `field`.
fn refused(h: &TestHost, path: &str, body: Value, field: &str) {
    let (code, v) = h.api("POST", path, Some(&body));
    let msg = v["message"].as_str().unwrap_or_default();
    assert_eq!(
        code, 400,
        "{body} should be refused with 400, got {code}: {v}"
    );
    assert!(
        msg.contains(field),
        "the message for {body} should name {field}: {msg}"
    );
}

#[test]
fn input_that_can_never_work_is_refused_naming_the_field() {
    let Some(h) = host() else { return };
    h.plumb_ok(&["network", "create", "--subnet", "10.40.0.0/24", "n"]);
    h.plumb_ok(&["sandbox", "create", "s"]);
    // A NIC-like link and a veth: bridge names that are not bridges.
    assert!(h
        .sh("ip link add nic9 type veth peer name nic9p && ip addr add 203.0.113.9/24 dev nic9")
        .ok());
    let before = state(&h);
    let net = |subnet: &str, v6: bool| json!({"Name": "bad", "EnableIPv6": v6, "IPAM": {"Config": [{"Subnet": subnet}]}});
    for (subnet, v6) in [
        ("224.0.0.0/24", false),
        ("ff02::/64", true),
        ("::/0", true),
        ("fe80::/64", true),
        ("127.0.0.0/24", false),
        ("0.0.0.0/1", false),
        ("10.97.1.0/32", false),
        ("10.97.1.0/31", false),
    ] {
        refused(
            &h,
            "/networks/create",
            net(subnet, v6),
            "IPAM.Config[0].Subnet",
        );
    }
    for (gw, field) in [("10.41.0.0", "Gateway"), ("10.41.0.255", "Gateway")] {
        let body =
            json!({"Name": "bad", "IPAM": {"Config": [{"Subnet": "10.41.0.0/24", "Gateway": gw}]}});
        refused(&h, "/networks/create", body, field);
    }
    let body = json!({"Name": "bad", "IPAM": {"Config": [{"Subnet": "10.41.0.0/24",
        "AuxiliaryAddresses": {"router": "10.41.0.255"}}]}});
    refused(&h, "/networks/create", body, "AuxiliaryAddresses");
    for name in ["lo", "nic9"] {
        let body = json!({"Name": "bad", "Options": {"com.docker.network.bridge.name": name}});
        refused(
            &h,
            "/networks/create",
            body,
            "com.docker.network.bridge.name",
        );
    }
    for ip in ["10.40.0.0", "10.40.0.255"] {
        let body = json!({"Container": "s", "EndpointConfig": {"IPAMConfig": {"IPv4Address": ip}}});
        refused(&h, "/networks/n/connect", body, "IPv4Address");
    }
    for mac in [
        "00:00:00:00:00:00",
        "01:00:5e:00:00:01",
        "ff:ff:ff:ff:ff:ff",
    ] {
        let body = json!({"Container": "s", "EndpointConfig": {"MacAddress": mac}});
        refused(&h, "/networks/n/connect", body, "MacAddress");
    }
    // Values written into resolv.conf and hosts cannot add lines of their own.
    for (field, value) in [
        ("DnsSearch", json!(["a\nnameserver 10.9.9.9"])),
        ("DnsOptions", json!(["ndots:1\nnameserver 10.9.9.9"])),
        ("DnsOptions", json!(["bad option"])),
        ("Dns", json!(["10.9.9.9\nsearch evil"])),
        ("Dns", json!(["0.0.0.0"])),
        ("ExtraHosts", json!(["evil\n10.9.9.9 bank:10.0.0.1"])),
        ("ExtraHosts", json!(["ok:10.0.0.1\n10.9.9.9"])),
        ("Hostname", json!("h\n10.9.9.9 bank")),
        ("Domainname", json!("ex ample")),
    ] {
        let mut body = json!({"Name": "inj"});
        body[field] = value;
        refused(&h, "/plumb/v1/sandboxes", body, field);
    }
    assert_eq!(state(&h), before, "refused requests changed nothing");
    // And good values still work, with the domain name in the hosts file.
    let (code, v) = h.api(
        "POST",
        "/plumb/v1/sandboxes",
        Some(
            &json!({"Name": "good", "Hostname": "web", "Domainname": "example.test",
            "DnsSearch": ["a.example"], "DnsOptions": ["ndots:2"], "ExtraHosts": ["db:10.1.2.3"]}),
        ),
    );
    assert_eq!(code, 201, "{v}");
    h.plumb_ok(&["network", "connect", "n", "good"]);
    let hosts = h.in_sandbox("good", "cat /etc/hosts").stdout;
    assert!(hosts.contains("web.example.test web"), "{hosts}");
    assert!(hosts.contains("10.1.2.3\tdb"), "{hosts}");
}

#[test]
fn concurrent_network_creation_never_fails() {
    let Some(h) = host() else { return };
    let h = std::sync::Arc::new(h);
    let workers: Vec<_> = (0..4)
        .map(|w| {
            let h = h.clone();
            std::thread::spawn(move || {
                let mut codes = Vec::new();
                for i in 0..10 {
                    // Half with a subnet of their own, half from the default pools (31 of
                    // those exist, as in Docker).
                    let body = if i % 2 == 0 {
                        json!({"Name": format!("c{w}-{i}"),
                            "IPAM": {"Config": [{"Subnet": format!("10.{}.{i}.0/24", 50 + w)}]}})
                    } else {
                        json!({"Name": format!("c{w}-{i}")})
                    };
                    let (code, v) = h.api("POST", "/networks/create", Some(&body));
                    codes.push((code, v.to_string()));
                }
                codes
            })
        })
        .collect();
    for w in workers {
        for (code, body) in w.join().unwrap() {
            assert_eq!(code, 201, "concurrent create: {body}");
        }
    }
    let (_, nets) = h.api("GET", "/networks", None);
    assert_eq!(
        nets.as_array().unwrap().len(),
        43,
        "40 networks and the 3 predefined"
    );
}

#[test]
fn plumb_removes_only_what_it_made() {
    let Some(mut h) = host_furnished() else {
        return;
    };
    // Leftovers of a crashed plumbd that are provably plumb's: a bridge marked for a network
    // the store does not know, and a bare veth with plumb's name pattern.
    assert!(h
        .sh(
            "ip link add plumbstale type bridge && ip link set plumbstale alias plumb:00ff && \
             ip link add pvaaaaaaaaaaaa type veth peer name pvbbbbbbbbbbbb"
        )
        .ok());
    // A bridge the user made, given to a network by name (adopted).
    assert!(h
        .sh("ip link add extbr type bridge && ip addr add 198.18.7.1/24 dev extbr && ip link set extbr up")
        .ok());
    let furniture = h.furnishings();
    h.start();
    let links = h.links();
    assert!(!links.contains(&"plumbstale".to_owned()), "{links:?}");
    assert!(!links.iter().any(|l| l == "pvaaaaaaaaaaaa"), "{links:?}");
    assert_eq!(
        h.furnishings(),
        furniture,
        "start-up left the host's links alone"
    );

    h.plumb_ok(&[
        "network",
        "create",
        "--subnet",
        "10.42.0.0/24",
        "-o",
        "com.docker.network.bridge.name=extbr",
        "adopted",
    ]);
    h.plumb_ok(&["network", "create", "--subnet", "10.43.0.0/24", "own"]);
    h.plumb_ok(&["sandbox", "create", "a"]);
    h.plumb_ok(&["sandbox", "create", "b"]);
    h.plumb_ok(&["network", "connect", "adopted", "a"]);
    h.plumb_ok(&["network", "connect", "own", "b"]);
    assert!(plumb_e2e::can_ping(&h, "a", "10.42.0.1"));
    h.kill9();
    h.start();
    assert_eq!(
        h.furnishings(),
        furniture,
        "a restart left the host's links alone"
    );
    assert!(h.links().contains(&"extbr".to_owned()));
    h.plumb_ok(&["sandbox", "rm", "a", "b"]);
    h.plumb_ok(&["network", "rm", "adopted", "own"]);
    let extbr = h.sh("ip -o addr show dev extbr").stdout;
    assert!(
        h.links().contains(&"extbr".to_owned()),
        "the adopted bridge stays"
    );
    assert!(
        extbr.contains("198.18.7.1/24"),
        "its own address stays: {extbr}"
    );
    assert!(
        !extbr.contains("10.42.0.1"),
        "plumb's gateway address goes: {extbr}"
    );
    assert_eq!(
        h.furnishings(),
        furniture,
        "removal left the host's links alone"
    );
    h.kill9();
    h.start();
    assert_eq!(h.furnishings(), furniture);
    assert!(h.links().contains(&"extbr".to_owned()));
}

/// A host furnished like a real one, plumbd not started yet.
fn host_furnished() -> Option<TestHost> {
    if !plumb_testkit::prerequisites() {
        return None;
    }
    let h = TestHost::new();
    h.furnish();
    Some(h)
}

#[test]
fn network_removal_is_quick_to_reuse() {
    let Some(h) = host() else { return };
    for round in 0..3 {
        h.plumb_ok(&[
            "network",
            "create",
            "--subnet",
            "10.44.0.0/24",
            "-o",
            "com.docker.network.bridge.name=reused",
            "again",
        ]);
        h.plumb_ok(&["sandbox", "create", &format!("s{round}")]);
        h.plumb_ok(&["network", "connect", "again", &format!("s{round}")]);
        assert!(plumb_e2e::can_ping(&h, &format!("s{round}"), "10.44.0.1"));
        h.plumb_ok(&["sandbox", "rm", &format!("s{round}")]);
        // Recreated with the same name, subnet and bridge name right after the removal.
        h.plumb_ok(&["network", "rm", "again"]);
    }
    // The deferred deletions finish: no bridge of plumb's is left.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while h
        .links()
        .iter()
        .any(|l| l.starts_with("plumbgone") || l == "reused")
    {
        assert!(std::time::Instant::now() < deadline, "{:?}", h.links());
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn published_ports_are_reached_from_other_networks_and_nothing_else_is() {
    let Some(h) = host() else { return };
    h.plumb_ok(&["network", "create", "--subnet", "10.45.0.0/24", "front"]);
    h.plumb_ok(&["network", "create", "--subnet", "10.46.0.0/24", "back"]);
    h.plumb_ok(&["sandbox", "create", "-p", "8080:8080", "srv"]);
    h.plumb_ok(&["sandbox", "create", "cli"]);
    h.plumb_ok(&["network", "connect", "front", "srv"]);
    h.plumb_ok(&["network", "connect", "back", "cli"]);
    let srv_ip = ip_on(&h, "srv", "front");
    let cli_ip = ip_on(&h, "cli", "back");
    let server = std::process::Command::new(plumb_testkit::bin_dir().join("plumb"))
        .args(["-H", &format!("unix://{}", h.socket.display()), "exec", "srv", "--"])
        .args(["python3", "-c", "import socket\ns=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('0.0.0.0', 8080)); s.listen(8)\nwhile True:\n c,a=s.accept(); c.sendall(a[0].encode()); c.close()"])
        .spawn()
        .unwrap();
    let _server = KillOnDrop(server);
    let fetch = |target: &str| {
        h.in_sandbox(
            "cli",
            &format!("python3 -c \"import socket; s=socket.create_connection(('{target}', 8080), timeout=2); print(s.recv(64).decode())\""),
        )
    };
    let mut seen = None;
    for _ in 0..50 {
        let o = fetch("10.46.0.1");
        if o.ok() {
            seen = Some(o.stdout.trim().to_owned());
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let seen = seen.expect("the published port answers through the client's own gateway");
    assert_eq!(
        seen, "10.45.0.1",
        "the server sees its own network's gateway"
    );
    assert!(fetch("10.45.0.1").ok(), "through the server's gateway too");
    // Isolation holds for everything else, both ways.
    assert!(
        !fetch(&srv_ip).ok(),
        "the container's own address stays unreachable"
    );
    assert!(!plumb_e2e::can_ping(&h, "cli", &srv_ip));
    assert!(!plumb_e2e::can_ping(&h, "srv", &cli_ip));
}

struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn answers_where_docker_clients_expect_them() {
    let Some(h) = host() else { return };
    let (code, v) = h.api(
        "POST",
        "/networks/create",
        Some(&json!({"Name": "test 01"})),
    );
    assert_eq!(code, 201, "dockerd takes any name: {v}");
    assert_eq!(h.api("GET", "/networks/test%2001", None).0, 200);
    let (code, v) = h.api("GET", "/no/such/route", None);
    assert_eq!((code, v["message"].as_str()), (404, Some("page not found")));
    let (code, v) = h.api("POST", "/v1.47/swarm/leave", None);
    assert_eq!(code, 503);
    assert_eq!(v["message"], "This node is not part of a swarm");
    assert_eq!(h.api("GET", "/swarm", None).0, 503);
    let (code, v) = h.api("GET", "/v1.47/info", None);
    assert_eq!(code, 200);
    assert_eq!(v["Swarm"]["LocalNodeState"], "inactive");
    assert!(v["Plugins"]["Network"]
        .as_array()
        .unwrap()
        .contains(&json!("bridge")));
    assert!(v["DefaultAddressPools"]
        .as_array()
        .is_some_and(|p| !p.is_empty()));
    let (code, v) = h.api(
        "POST",
        "/networks/create",
        Some(&json!({"Name": "h2", "Driver": "host"})),
    );
    assert_eq!(code, 403, "a second host network, as dockerd: {v}");
    // A reader that goes away early ends plumb quietly.
    let o = h.sh(&format!(
        "{} -H unix://{} network ls | true; echo status=$?",
        plumb_testkit::bin_dir().join("plumb").display(),
        h.socket.display()
    ));
    assert!(!o.stderr.contains("panicked"), "{}", o.stderr);
    assert!(o.stderr.is_empty(), "nothing on stderr: {}", o.stderr);
}

/// True while a process whose command line is exactly `cmdline` runs anywhere.
fn running(cmdline: &str) -> bool {
    std::process::Command::new("pgrep")
        .args(["-x", "-f", cmdline])
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Waits (bounded) until `f` holds; the message says what never happened.
fn wait_for(what: &str, f: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while !f() {
        assert!(std::time::Instant::now() < deadline, "{what}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn plumb_run_ends_everything_it_started() {
    let Some(h) = host() else { return };
    h.plumb_ok(&["network", "create", "--subnet", "10.47.0.0/24", "pr"]);
    let sandboxes = |h: &TestHost| h.plumb_ok(&["sandbox", "ls"]);
    let tag = std::process::id() % 1000;
    for (round, signal) in [(1, libc::SIGTERM), (2, libc::SIGINT), (3, libc::SIGKILL)] {
        let (a, b) = (
            format!("sleep {tag}{round}1"),
            format!("sleep {tag}{round}2"),
        );
        let name = format!("pr{round}");
        let mut run = std::process::Command::new(plumb_testkit::bin_dir().join("plumb"))
            .args(["-H", &format!("unix://{}", h.socket.display())])
            .args([
                "run",
                "--stop-timeout",
                "1",
                "--network",
                "pr",
                "--name",
                &name,
                "--",
            ])
            .args(["sh", "-c", &format!("{a} & {b}")])
            .spawn()
            .unwrap();
        wait_for("the command's processes start", || {
            running(&a) && running(&b)
        });
        assert!(sandboxes(&h).contains(&name));
        // SAFETY: signalling our own child.
        unsafe { libc::kill(run.id() as i32, signal) };
        run.wait().unwrap();
        wait_for(
            &format!("{a} and {b} end with plumb run (signal {signal})"),
            || !running(&a) && !running(&b),
        );
        // After SIGKILL, plumbd finds the sandbox orphaned and removes it.
        wait_for(&format!("sandbox {name} is removed"), || {
            !sandboxes(&h).contains(&name)
        });
    }
    // The command's exit status comes back; ps inside sees only the command's processes.
    let o = h.plumb(&["run", "--network", "pr", "--", "sh", "-c", "exit 7"]);
    assert_eq!(o.code, 7, "{}", o.stderr);
    let ps = h.plumb_ok(&[
        "run",
        "--network",
        "pr",
        "--",
        "sh",
        "-c",
        "ls /proc | grep -c '^[0-9]'",
    ]);
    assert!(
        ps.trim().parse::<u32>().unwrap() <= 3,
        "own PID namespace: {ps}"
    );
}
