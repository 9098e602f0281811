//! Published ports end to end: an outside client (its own namespace, linked to the host by a
//! veth), the host itself through 127.0.0.1, another container (hairpin); TCP and UDP, ranges,
//! IPv6, source addresses preserved, localhost-only ports closed to the outside, conflicts,
//! and nothing left behind.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use plumb_e2e::{client_in_ns, docker, echo, host, ip_on, sandbox, serve, spawn_ready, Servers};
use plumb_testkit::TestHost;
use std::path::Path;
use std::process::{Command, Stdio};

#[test]
fn published_ports_from_outside_host_and_containers() {
    let Some(mut h) = host() else { return };
    let outside = h.add_outside();
    let o = h.sh("ip -6 addr add fd99::1/64 dev uplink nodad");
    assert!(o.ok(), "{}", o.stderr);
    let o = h.sh_in(&outside, "ip -6 addr add fd99::2/64 dev eth0 nodad");
    assert!(o.ok(), "{}", o.stderr);
    h.plumb_ok(&[
        "network",
        "create",
        "--ipv6",
        "--subnet",
        "10.60.0.0/24",
        "--subnet",
        "fd60::/64",
        "web",
    ]);
    h.plumb_ok(&[
        "sandbox",
        "create",
        "-p",
        "8080:80",
        "-p",
        "8053:5353/udp",
        "-p",
        "127.0.0.1:9090:90",
        "-p",
        "127.0.0.1:9091:91/udp",
        "-p",
        "9100-9102:9100-9102",
        "-p",
        "0.0.0.0:8081:80",
        "-p",
        "[::]:8082:80",
        "-p",
        "[fd99::1]:8083:80",
        "srv",
    ]);
    h.plumb_ok(&["sandbox", "create", "cli"]);
    h.plumb_ok(&["network", "connect", "web", "srv"]);
    h.plumb_ok(&["network", "connect", "web", "cli"]);
    let servers = serve(&h, "srv", &["80", "5353", "90", "9101"]);

    // From outside: TCP and UDP reach the container, which sees the client's own address.
    assert_eq!(
        client_in_ns(&h, &outside, "tcp", "198.51.100.1", 8080).as_deref(),
        Some("198.51.100.2")
    );
    assert_eq!(
        client_in_ns(&h, &outside, "udp", "198.51.100.1", 8053).as_deref(),
        Some("198.51.100.2")
    );
    assert_eq!(
        client_in_ns(&h, &outside, "tcp", "198.51.100.1", 9101).as_deref(),
        Some("198.51.100.2"),
        "range"
    );
    assert_eq!(
        client_in_ns(&h, &outside, "tcp", "fd99::1", 8080).as_deref(),
        Some("fd99::2"),
        "IPv6"
    );
    // 0.0.0.0 is every IPv4 address and only those; :: the same for IPv6.
    let reach = |host: &str, port| client_in_ns(&h, &outside, "tcp", host, port);
    assert_eq!(reach("198.51.100.1", 8081).as_deref(), Some("198.51.100.2"));
    assert_eq!(reach("fd99::1", 8081), None, "0.0.0.0 is IPv4 only");
    assert_eq!(reach("fd99::1", 8082).as_deref(), Some("fd99::2"));
    assert_eq!(reach("198.51.100.1", 8082), None, ":: is IPv6 only");
    assert_eq!(
        reach("fd99::1", 8083).as_deref(),
        Some("fd99::2"),
        "one IPv6 address"
    );
    assert_eq!(reach("198.51.100.1", 8083), None);
    // A port bound to 127.0.0.1 is not reachable from another host.
    assert_eq!(
        client_in_ns(&h, &outside, "tcp", "198.51.100.1", 9090),
        None
    );
    // Nor with packets crafted to 127.0.0.1 and sent to the host's MAC, as a neighbour on the
    // link could (a DNAT in prerouting would otherwise carry them to the container).
    let mac = h
        .sh("ip -br link show uplink | awk '{print $3}'")
        .stdout
        .trim()
        .to_owned();
    let crafted_reaches_container = || {
        let mut once = Command::new(plumb_testkit::bin_dir().join("plumb"))
            .args([
                "-H",
                &format!("unix://{}", h.socket.display()),
                "exec",
                "srv",
                "--",
                "python3",
                &echo(),
                "once",
                "91",
            ])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = std::io::BufReader::new(once.stdout.take().unwrap());
        let mut line = String::new();
        std::io::BufRead::read_line(&mut out, &mut line).unwrap();
        assert_eq!(line.trim(), "ready");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("clients/crafted_localhost.py");
        let o = h.sh_in(
            &outside,
            &format!("python3 {} eth0 198.51.100.2 {mac} 9091", script.display()),
        );
        assert!(o.ok(), "crafting failed: {}", o.stderr);
        line.clear();
        std::io::BufRead::read_line(&mut out, &mut line).unwrap();
        let _ = once.wait();
        line.trim() == "got"
    };
    assert!(
        !crafted_reaches_container(),
        "crafted packets to a 127.0.0.1-only port must be dropped"
    );
    // From the host itself, through 127.0.0.1 and through its own address.
    assert!(
        client_in_ns(&h, &h.ns, "tcp", "127.0.0.1", 9090).is_some(),
        "localhost port from the host"
    );
    assert!(client_in_ns(&h, &h.ns, "tcp", "127.0.0.1", 8080).is_some());
    assert!(client_in_ns(&h, &h.ns, "tcp", "198.51.100.1", 8080).is_some());
    assert!(client_in_ns(&h, &h.ns, "udp", "127.0.0.1", 8053).is_some());
    assert!(client_in_ns(&h, &h.ns, "udp", "198.51.100.1", 8053).is_some());
    // From another container, through the host's address (hairpin), TCP and UDP.
    for (proto, port) in [("tcp", 8080), ("udp", 8053)] {
        let o = h.in_sandbox(
            "cli",
            &format!("python3 {} {proto} 198.51.100.1 {port}", echo()),
        );
        assert!(o.ok(), "hairpin {proto}: {}", o.stderr);
    }

    let table = h.plumb_ok(&["firewall", "show"]);
    assert!(table.contains("tcp . 8080 : 10.60.0.2 . 80"), "{table}");
    let inspect = h.plumb_ok(&["sandbox", "inspect", "srv"]);
    assert!(inspect.contains("127.0.0.1:9090:90/tcp"), "{inspect}");

    // The table is desired state: flushing the ruleset or deleting the table heals by itself.
    for breakage in ["nft flush ruleset", "nft delete table inet plumb"] {
        let o = h.sh(breakage);
        assert!(o.ok(), "{breakage}: {}", o.stderr);
        let healed = (0..100).any(|_| {
            std::thread::sleep(std::time::Duration::from_millis(100));
            h.plumb_ok(&["firewall", "show"])
                .contains("tcp . 8080 : 10.60.0.2 . 80")
        });
        assert!(healed, "not restored after {breakage}:\n{}", h.log());
        assert_eq!(
            client_in_ns(&h, &outside, "tcp", "198.51.100.1", 8080).as_deref(),
            Some("198.51.100.2"),
            "published port works again after {breakage}"
        );
        assert!(
            h.in_sandbox("cli", "ping -c1 -W1 198.51.100.2 >/dev/null")
                .ok(),
            "egress masquerade restored"
        );
    }
    // One restore per breakage (plumb's own element changes trigger none), and the gauge of
    // published mappings: srv's 10.
    let (st, metrics) = h.api("GET", "/plumb/v1/metrics", None);
    assert_eq!(st, 200);
    let metrics = metrics.as_str().unwrap_or_default().to_owned();
    assert!(
        metrics.contains("plumb_firewall_restores_total 2\n"),
        "{metrics}"
    );
    assert!(metrics.contains("plumb_published_ports 10\n"), "{metrics}");

    // Published ports are forwarded, so the host's input rules never see them; a table of
    // the user's own with a prerouting chain before DNAT (priority -150) filters them, and
    // plumb's healing leaves that table alone.
    let o = h.sh(
        "nft -f - <<'EOF'\ntable inet mysite {\n chain pre {\n  type filter hook prerouting priority -150;\n  ip saddr 198.51.100.2 tcp dport 8080 drop\n }\n}\nEOF",
    );
    assert!(o.ok(), "user table: {}", o.stderr);
    assert_eq!(
        client_in_ns(&h, &outside, "tcp", "198.51.100.1", 8080),
        None
    );
    assert!(client_in_ns(&h, &outside, "tcp", "198.51.100.1", 8081).is_some());
    let o = h.sh("nft delete table inet plumb");
    assert!(o.ok(), "{}", o.stderr);
    let healed = (0..100).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(100));
        client_in_ns(&h, &outside, "tcp", "198.51.100.1", 8081).is_some()
    });
    assert!(healed, "{}", h.log());
    assert_eq!(
        client_in_ns(&h, &outside, "tcp", "198.51.100.1", 8080),
        None
    );
    let o = h.sh("nft delete table inet mysite");
    assert!(o.ok(), "{}", o.stderr);
    assert!(client_in_ns(&h, &outside, "tcp", "198.51.100.1", 8080).is_some());

    // Conflicts name the holder and change nothing.
    let before = h.plumb_ok(&["sandbox", "ls"]);
    let err = h.plumb_err(&["sandbox", "create", "-p", "8080:8080", "dup"]);
    assert!(
        err.contains("port 8080:8080/tcp is already published by sandbox srv"),
        "{err}"
    );
    let err = h.plumb_err(&["sandbox", "create", "-p", "[::1]:9200:1", "dup"]);
    assert!(err.contains("::1 is not supported"), "{err}");
    let err = h.plumb_err(&["sandbox", "create", "-p", "127.0.0.1:9101:1", "dup"]);
    assert!(err.contains("already published by sandbox srv"), "{err}");
    assert_eq!(h.plumb_ok(&["sandbox", "ls"]), before);
    h.plumb_ok(&[
        "sandbox",
        "create",
        "-p",
        "10.99.0.1:9090:90",
        "-p",
        "8080:80/udp",
        "fine",
    ]);

    // Disconnecting the gateway endpoint withdraws the ports; removal leaves no element.
    h.plumb_ok(&["network", "disconnect", "web", "srv"]);
    assert_eq!(
        client_in_ns(&h, &outside, "tcp", "198.51.100.1", 8080),
        None
    );
    assert!(!h.plumb_ok(&["firewall", "show"]).contains(". 8080 :"));
    drop(servers);
    h.plumb_ok(&["sandbox", "rm", "srv", "cli", "fine"]);
    let metrics = h.api("GET", "/plumb/v1/metrics", None).1;
    assert!(
        metrics
            .as_str()
            .unwrap_or_default()
            .contains("plumb_published_ports 0\n"),
        "{metrics}"
    );
    let table = h.plumb_ok(&["firewall", "show"]);
    assert!(
        !table.contains(" : 10.60."),
        "no DNAT element left: {table}"
    );
}

#[test]
fn ports_published_on_connect_belong_to_the_endpoint() {
    let Some(mut h) = host() else { return };
    let outside = h.add_outside();
    h.plumb_ok(&["network", "create", "--subnet", "10.61.0.0/24", "front"]);
    h.plumb_ok(&["network", "create", "--subnet", "10.62.0.0/24", "back"]);
    for sb in ["app", "other", "mover"] {
        h.plumb_ok(&["sandbox", "create", sb]);
    }
    let servers = [serve(&h, "app", &["80"]), serve(&h, "mover", &["81"])];
    let from_outside = |h: &TestHost, port| client_in_ns(h, &outside, "tcp", "198.51.100.1", port);

    // plumb's CLI: -p on connect; the port goes to the sandbox's gateway endpoint ("back"
    // sorts first), and the server sees the outside client's own address.
    h.plumb_ok(&["network", "connect", "front", "app"]);
    h.plumb_ok(&["network", "connect", "-p", "8181:80", "back", "app"]);
    assert_eq!(from_outside(&h, 8181).as_deref(), Some("198.51.100.2"));
    let app = sandbox(&h, "app");
    assert_eq!(app["Ports"], serde_json::json!(["8181:80/tcp"]), "{app}");
    let net: serde_json::Value =
        serde_json::from_str(&h.plumb_ok(&["network", "inspect", "back"])).unwrap();
    let entry = &net[0]["Containers"][app["Id"].as_str().unwrap()];
    assert_eq!(entry["Ports"], serde_json::json!(["8181:80/tcp"]), "{net}");

    // The docker CLI: the port map as an endpoint driver option; a conflict names the holder
    // and leaves the sandbox unattached.
    let o = docker(
        &h,
        &[
            "network",
            "connect",
            "--driver-opt",
            "com.docker.network.portmap=8181:80",
            "front",
            "other",
        ],
    );
    assert!(
        !o.ok() && o.stderr.contains("already published by sandbox app"),
        "{}",
        o.stderr
    );
    assert_eq!(sandbox(&h, "other")["Endpoints"], serde_json::json!([]));

    // Docker's PortBindings shape on the API: "mover" publishes 8282 through "front", then
    // joining "back" makes that the gateway and the port follows it.
    let (st, v) = h.api(
        "POST",
        "/networks/front/connect",
        Some(
            &serde_json::json!({"Container": "mover", "EndpointConfig": {
            "PortBindings": {"81/tcp": [{"HostIp": "", "HostPort": "8282"}]}}}),
        ),
    );
    assert_eq!(st, 200, "{v}");
    let front_ip = ip_on(&h, "mover", "front");
    assert!(h
        .plumb_ok(&["firewall", "show"])
        .contains(&format!("8282 : {front_ip} . 81")));
    assert_eq!(from_outside(&h, 8282).as_deref(), Some("198.51.100.2"));
    h.plumb_ok(&["network", "connect", "back", "mover"]);
    let back_ip = ip_on(&h, "mover", "back");
    let table = h.plumb_ok(&["firewall", "show"]);
    assert!(table.contains(&format!("8282 : {back_ip} . 81")), "{table}");
    assert!(!table.contains(&format!(": {front_ip} . 81")), "{table}");
    assert_eq!(from_outside(&h, 8282).as_deref(), Some("198.51.100.2"));

    // State survives kill -9: the endpoint's port is published again after the restart.
    h.kill9();
    h.start();
    assert_eq!(from_outside(&h, 8181).as_deref(), Some("198.51.100.2"));
    assert_eq!(from_outside(&h, 8282).as_deref(), Some("198.51.100.2"));
    let err = h.plumb_err(&["network", "connect", "-p", "8282:1", "front", "other"]);
    assert!(err.contains("already published by sandbox mover"), "{err}");

    // Disconnecting the endpoint withdraws its ports, also when it is not the gateway.
    h.plumb_ok(&["network", "disconnect", "back", "app"]);
    assert_eq!(from_outside(&h, 8181), None);
    assert_eq!(sandbox(&h, "app")["Ports"], serde_json::json!([]));
    h.plumb_ok(&["network", "disconnect", "front", "mover"]);
    assert_eq!(from_outside(&h, 8282), None);
    let table = h.plumb_ok(&["firewall", "show"]);
    assert!(!table.contains(" . 81"), "{table}");
    // The port is free again.
    h.plumb_ok(&["network", "connect", "-p", "8282:80", "front", "other"]);
    drop(servers);
    h.plumb_ok(&["sandbox", "rm", "app", "other", "mover"]);
    assert!(!h.plumb_ok(&["firewall", "show"]).contains(" : 10.6"));
}

/// A process in the host namespace holding TCP `port` (listening), killed on drop.
fn host_listener(h: &TestHost, port: u16) -> Servers {
    let script = format!(
        "import socket,time\ns=socket.socket()\ns.bind(('0.0.0.0',{port}))\ns.listen()\nprint('ready',flush=True)\ntime.sleep(600)"
    );
    spawn_ready(
        Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", h.ns))
            .args(["python3", "-c", &script]),
    )
}

/// Whether a host process can bind `port` (TCP, every address, with SO_REUSEADDR).
fn host_can_bind(h: &TestHost, port: u16) -> bool {
    h.sh(&format!(
        "python3 -c \"import socket; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(('0.0.0.0',{port}))\""
    ))
    .ok()
}

fn published_port(h: &TestHost, sb: &str, container: &str) -> u16 {
    let ports = sandbox(h, sb)["Ports"].clone();
    let p = ports
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p.as_str())
        .find(|p| p.ends_with(&format!(":{container}")))
        .unwrap_or_else(|| panic!("no mapping to {container}: {ports}"))
        .to_owned();
    let host = p.rsplit(':').nth(1).unwrap();
    host.parse().unwrap()
}

#[test]
fn host_ports_are_held_and_free_ports_are_picked() {
    let Some(mut h) = host() else { return };
    let outside = h.add_outside();
    h.plumb_ok(&["network", "create", "--subnet", "10.63.0.0/24", "web"]);

    // A port a host process uses cannot be published: a clear error, nothing created.
    let listener = host_listener(&h, 7070);
    let err = h.plumb_err(&[
        "sandbox", "create", "-p", "7071:80", "-p", "7070:80", "busy",
    ]);
    assert!(
        err.contains("port 7070:80/tcp cannot be published") && err.contains("in use"),
        "{err}"
    );
    assert!(!h.plumb_ok(&["sandbox", "ls"]).contains("busy"));
    assert!(
        host_can_bind(&h, 7071),
        "the first port of the failed request is let go"
    );
    drop(listener);

    // While published, no host process can bind the port, even with SO_REUSEADDR.
    h.plumb_ok(&["sandbox", "create", "-p", "7171:80", "held"]);
    assert!(!host_can_bind(&h, 7171));

    // No host port: a free one is picked, shown, reachable, and kept across a restart.
    h.plumb_ok(&[
        "sandbox",
        "create",
        "-p",
        "80",
        "-p",
        "127.0.0.1::81/udp",
        "rnd",
    ]);
    let tcp = published_port(&h, "rnd", "80/tcp");
    let udp = published_port(&h, "rnd", "81/udp");
    assert!(tcp != 0 && udp != 0);
    assert_eq!(
        h.plumb_ok(&["sandbox", "port", "rnd", "80"]),
        format!("80/tcp -> 0.0.0.0:{tcp}\n80/tcp -> [::]:{tcp}\n")
    );
    assert_eq!(
        h.plumb_ok(&["sandbox", "port", "rnd", "81/udp"]),
        format!("81/udp -> 127.0.0.1:{udp}\n")
    );
    h.plumb_ok(&["network", "connect", "web", "rnd"]);
    let servers = serve(&h, "rnd", &["80"]);
    assert_eq!(
        client_in_ns(&h, &outside, "tcp", "198.51.100.1", tcp).as_deref(),
        Some("198.51.100.2")
    );
    h.kill9();
    h.start();
    assert_eq!(published_port(&h, "rnd", "80/tcp"), tcp);
    assert!(!host_can_bind(&h, 7171), "held again after a restart");
    assert!(!host_can_bind(&h, tcp));
    assert_eq!(
        client_in_ns(&h, &outside, "tcp", "198.51.100.1", tcp).as_deref(),
        Some("198.51.100.2")
    );
    drop(servers);

    // `plumb run` says which port it picked before the command runs.
    let o = h.plumb(&[
        "run",
        "--network",
        "web",
        "-p",
        "127.0.0.1::82",
        "--",
        "true",
    ]);
    assert!(o.ok(), "{}", o.stderr);
    assert!(
        o.stderr.contains("published 82/tcp -> 127.0.0.1:"),
        "{}",
        o.stderr
    );

    // Removing the sandboxes lets the ports go.
    h.plumb_ok(&["sandbox", "rm", "held", "rnd"]);
    assert!(host_can_bind(&h, 7171));
    assert!(host_can_bind(&h, tcp));
}
