//! Overlay networks across three hosts (namespaces on one underlay, etcd from Debian in the
//! underlay's namespace): convergence (a connect on one host until a sandbox on another gets
//! its first ping reply), connect latency over many endpoints with the FDB checked against
//! the store, TCP throughput through the tunnel against the underlay's own, and how long a
//! killed host stays in its peers' tables.

use crate::{latency_figures, median, Figure};
use plumb_testkit::cluster::{create_overlay, tunnel_entries, TestCluster};
use plumb_testkit::TestHost;
use serde_json::json;
use std::time::{Duration, Instant};

/// Creates sandbox `sb` and connects it to `net` through the API: milliseconds of the
/// connect, and the address it got.
pub fn connect(h: &TestHost, net: &str, sb: &str) -> (f64, String) {
    let ms = crate::lower::connect_ms(h, net, sb);
    let (_, v) = h.api("GET", &format!("/networks/{net}"), None);
    let ip = v["Containers"]
        .as_object()
        .and_then(|m| m.values().find(|c| c["Name"] == sb))
        .and_then(|c| c["IPv4Address"].as_str())
        .and_then(|a| a.split('/').next())
        .unwrap_or_else(|| panic!("{sb} has no address on {net}: {v}"))
        .to_owned();
    (ms, ip)
}

/// Milliseconds from now until `from` (a sandbox on `h`) gets a ping reply from `ip`, trying
/// every few milliseconds with 50 ms waits.
fn until_reply(h: &TestHost, from: &str, ip: &str) -> f64 {
    let t = Instant::now();
    let o = h.in_sandbox(
        from,
        &format!("for i in $(seq 1 400); do ping -c1 -W0.05 {ip} >/dev/null 2>&1 && exit 0; done; exit 1"),
    );
    assert!(o.ok(), "{from} never reached {ip}");
    t.elapsed().as_secs_f64() * 1e3
}

/// Bits per second of a 3 s iperf3 TCP run from `client` to `server` (shell prefixes that
/// enter the two ends), parsed from iperf3's JSON.
pub fn iperf(h: &TestHost, server_ns: &str, client_ns: &str, server_ip: &str) -> f64 {
    let s = h.sh(&format!(
        "{server_ns} iperf3 -s -1 -D -p 5201 >/dev/null 2>&1"
    ));
    assert!(
        s.ok(),
        "iperf3 server: {} (install Debian's iperf3)",
        s.stderr
    );
    std::thread::sleep(Duration::from_millis(300));
    let o = h.sh(&format!(
        "{client_ns} iperf3 -c {server_ip} -p 5201 -t 3 -J"
    ));
    assert!(o.ok(), "iperf3 client: {}", o.stderr);
    let v: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    v["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .unwrap_or(0.0)
}

/// The overlay section: `n` endpoints spread over three hosts.
pub fn overlay_figures(figures: &mut Vec<Figure>, n: usize) {
    let c = TestCluster::start(3, "3s");
    let [h1, h2, h3] = [&c.hosts[0], &c.hosts[1], &c.hosts[2]];
    create_overlay(h1, "ov", "10.96.0.0/16");
    for h in [h2, h3] {
        while !h.plumb(&["network", "inspect", "ov"]).ok() {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    // Convergence: a prober on host 1; each round a new sandbox on host 2 connects, and the
    // clock runs from the connect's answer to the prober's first reply.
    let (_, _) = connect(h1, "ov", "prober");
    let (_, first) = connect(h2, "ov", "first");
    let cold = until_reply(h1, "prober", &first);
    let rounds = 20;
    let mut conv = Vec::new();
    let mut baseline = Vec::new();
    for i in 0..rounds {
        let (_, ip) = connect(h2, "ov", &format!("conv{i}"));
        conv.push(until_reply(h1, "prober", &ip));
        // The same probe to a peer long known: what the probe itself costs.
        baseline.push(until_reply(h1, "prober", &first));
    }
    figures.push(Figure {
        name: "overlay_convergence_median".into(),
        unit: "ms",
        value: median(&conv),
        context: format!(
            "connect on host 2 answered -> first ping reply on host 1, {rounds} rounds; includes the probe's own cost (ping to a known peer: {:.1} ms median); first endpoint on a host with none yet: {cold:.1} ms",
            median(&baseline)
        ),
    });
    let mut s = conv.clone();
    s.sort_by(f64::total_cmp);
    figures.push(Figure {
        name: "overlay_convergence_p90".into(),
        unit: "ms",
        value: crate::percentile(&s, 0.9),
        context: format!("{rounds} rounds, as above"),
    });

    // Scale: n endpoints round-robin over the three hosts.
    let mut lat = Vec::with_capacity(n);
    let mut ips = std::collections::HashSet::new();
    for i in 0..n {
        let h = &c.hosts[i % 3];
        let (ms, ip) = connect(h, "ov", &format!("s{i}"));
        lat.push(ms);
        assert!(ips.insert(ip.clone()), "address {ip} handed out twice");
    }
    let from = figures.len();
    latency_figures(figures, "overlay_connect", &lat, n);
    for f in &mut figures[from..] {
        f.context = format!("{n} sandboxes over 3 hosts on one overlay network, through the API");
    }
    let k = (n / 10).clamp(1, 100);
    figures.push(Figure {
        name: "overlay_connect_growth_last_over_first".into(),
        unit: "ratio",
        value: median(&lat[n - k..]) / median(&lat[..k]),
        context: format!("median of the last {k} connects over the first {k}"),
    });
    // The same connect for sandboxes that have a way out already (a local bridge network):
    // no gateway bridge join comes with it.
    c.hosts[0].plumb_ok(&["network", "create", "--subnet", "10.93.0.0/16", "loc"]);
    let mut with_exit = Vec::new();
    for i in 0..(n / 5).max(10) {
        let name = format!("x{i}");
        let (st, v) = h1.api("POST", "/plumb/v1/sandboxes", Some(&json!({"Name": name})));
        assert_eq!(st, 201, "{v}");
        let (st, v) = h1.api(
            "POST",
            "/networks/loc/connect",
            Some(&json!({"Container": name})),
        );
        assert_eq!(st, 200, "{v}");
        let t = Instant::now();
        let (st, v) = h1.api(
            "POST",
            "/networks/ov/connect",
            Some(&json!({"Container": name})),
        );
        with_exit.push(t.elapsed().as_secs_f64() * 1e3);
        assert_eq!(st, 200, "{v}");
    }
    figures.push(Figure {
        name: "overlay_connect_with_a_way_out_median".into(),
        unit: "ms",
        value: median(&with_exit),
        context: format!(
            "{} sandboxes on host 1 already on a local bridge network: the overlay connect alone (an overlay-only sandbox also joins plumb_gwbridge, in the figures above)",
            with_exit.len()
        ),
    });
    // Every host's FDB holds exactly the other hosts' endpoints (joined endpoints in the
    // store, read from host 1's inspect), nothing missing, nothing stale.
    let (_, v) = h1.api("GET", "/networks/ov", None);
    let containers = v["Containers"].as_object().cloned().unwrap_or_default();
    let total = containers.len();
    let t = Instant::now();
    let mut wrong = 0;
    for (i, h) in c.hosts.iter().enumerate() {
        let me = format!("node{}", i + 1);
        let expected = containers
            .values()
            .filter(|e| e["Node"].as_str() != Some(me.as_str()))
            .count();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let fdb = tunnel_entries(h)
                .lines()
                .filter(|l| l.contains(" dst "))
                .count();
            if fdb == expected || Instant::now() > deadline {
                wrong += fdb.abs_diff(expected);
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    figures.push(Figure {
        name: "overlay_fdb_entries_wrong".into(),
        unit: "count",
        value: wrong as f64,
        context: format!(
            "missing + stale FDB entries over the 3 hosts against the store's {total} joined endpoints (settled within {:.1} s)",
            t.elapsed().as_secs_f64()
        ),
    });

    // No live host was ever taken for dead meanwhile: no lease lost (a host whose lease
    // expires says so in its log and registers again), every node up.
    let relost: usize = c
        .hosts
        .iter()
        .map(|h| h.log().matches("lease expired").count())
        .sum();
    let (_, nodes) = h1.api("GET", "/plumb/v1/nodes", None);
    let up = nodes
        .as_array()
        .map(|a| a.iter().filter(|n| n["Alive"] == true).count())
        .unwrap_or(0);
    figures.push(Figure {
        name: "overlay_live_hosts_declared_dead".into(),
        unit: "count",
        value: relost as f64 + (3 - up.min(3)) as f64,
        context: format!(
            "leases lost during the {n} connects (--cluster-node-ttl 3s) plus nodes not up after them ({up} of 3 up)"
        ),
    });

    // Data path: TCP sandbox to sandbox across hosts, and host to host on the underlay.
    let (_, srv) = connect(h2, "ov", "iperf-srv");
    let (_, _) = connect(h1, "ov", "iperf-cli");
    let sb_ns = |h: &TestHost, sb: &str| {
        let (_, v) = h.api("GET", &format!("/plumb/v1/sandboxes/{sb}"), None);
        format!("nsenter --net={}", v["Key"].as_str().unwrap_or_default())
    };
    // The machine's own throughput drifts by a quarter from minute to minute, so the ratio is
    // taken in five interleaved pairs (overlay then underlay, back to back) and the median kept.
    let (srv_ns, cli_ns) = (sb_ns(h2, "iperf-srv"), sb_ns(h1, "iperf-cli"));
    let (h1_ns, h2_ns) = (
        format!("nsenter --net=/run/netns/{}", h1.ns),
        format!("nsenter --net=/run/netns/{}", h2.ns),
    );
    let mut pairs: Vec<(f64, f64)> = (0..5)
        .map(|_| {
            let o = iperf(h1, &srv_ns, &cli_ns, &srv);
            let u = iperf(h1, &h2_ns, &h1_ns, &c.addrs[1]);
            (o, u)
        })
        .collect();
    pairs.sort_by(|a, b| (a.0 / a.1).total_cmp(&(b.0 / b.1)));
    let ratios: Vec<String> = pairs.iter().map(|(o, u)| format!("{:.2}", o / u)).collect();
    let (overlay_bps, under_bps) = pairs[2];
    figures.push(Figure {
        name: "overlay_tcp_over_underlay".into(),
        unit: "ratio",
        value: overlay_bps / under_bps,
        context: format!(
            "median of 5 interleaved iperf3 3 s TCP pairs (sorted ratios {}); median pair: overlay {:.2} Gbit/s sandbox to sandbox, underlay {:.2} Gbit/s host to host",
            ratios.join(" "),
            overlay_bps / 1e9,
            under_bps / 1e9
        ),
    });

    // Death: host 3 is killed; how long until host 1 no longer has its endpoints.
    let (_, v) = h1.api("GET", "/networks/ov", None);
    let on3 = |v: &serde_json::Value| {
        v["Containers"]
            .as_object()
            .map(|m| m.values().filter(|e| e["Node"] == "node3").count())
            .unwrap_or(0)
    };
    let before = on3(&v);
    let mut c = c;
    let t = Instant::now();
    c.hosts[2].kill9();
    loop {
        let (_, v) = c.hosts[0].api("GET", "/networks/ov", None);
        if on3(&v) == 0 && !tunnel_entries(&c.hosts[0]).contains(&c.addrs[2]) {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "host 3 never cleaned"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    figures.push(Figure {
        name: "overlay_dead_host_cleaned".into(),
        unit: "s",
        value: t.elapsed().as_secs_f64(),
        context: format!(
            "kill -9 of host 3 ({before} endpoints) -> gone from host 1's inspect and FDB, --cluster-node-ttl 3s"
        ),
    });
}

/// etcd's counters (name -> value summed over labels) from its /metrics, read from inside
/// the underlay namespace.
fn etcd_counters(c: &TestCluster, names: &[&str]) -> Vec<f64> {
    let ep = c.etcd.endpoints[0].clone();
    let text = plumb_testkit::in_netns(&c.underlay.ns, move || {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(&ep).unwrap();
        s.write_all(b"GET /metrics HTTP/1.0\r\nHost: etcd\r\n\r\n")
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    });
    names
        .iter()
        .map(|n| {
            text.lines()
                .filter(|l| !l.starts_with('#'))
                .filter(|l| l.split(['{', ' ']).next() == Some(*n))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum()
        })
        .collect()
}

/// Fan-out: `hosts` hosts with an endpoint each on one overlay network; a connect on host 1
/// until each other host lists (and so has programmed) the new endpoint.
pub fn fanout_figures(figures: &mut Vec<Figure>, hosts: usize) {
    let t = Instant::now();
    let c = TestCluster::start(hosts, "10s");
    let setup = t.elapsed().as_secs_f64();
    create_overlay(&c.hosts[0], "fan", "10.95.0.0/16");
    for (i, h) in c.hosts.iter().enumerate() {
        while !h.plumb(&["network", "inspect", "fan"]).ok() {
            std::thread::sleep(Duration::from_millis(10));
        }
        connect(h, "fan", &format!("resident{i}"));
    }
    // A host with no endpoint on a second network keeps no namespace for it.
    create_overlay(&c.hosts[0], "quiet", "10.94.0.0/16");
    connect(&c.hosts[0], "quiet", "lonely");
    let rounds = 20;
    let counters = [
        "etcd_mvcc_put_total",
        "etcd_mvcc_txn_total",
        "etcd_mvcc_range_total",
        "etcd_network_client_grpc_received_bytes_total",
        "etcd_network_client_grpc_sent_bytes_total",
    ];
    let before = etcd_counters(&c, &counters);
    let mut delays = Vec::new();
    for r in 0..rounds {
        let name = format!("new{r}");
        let (st, v) = c.hosts[0].api("POST", "/plumb/v1/sandboxes", Some(&json!({"Name": name})));
        assert_eq!(st, 201, "{v}");
        let t0 = Instant::now();
        let (st, v) = c.hosts[0].api(
            "POST",
            "/networks/fan/connect",
            Some(&json!({"Container": name})),
        );
        assert_eq!(st, 200, "{v}");
        std::thread::scope(|s| {
            let handles: Vec<_> = c.hosts[1..]
                .iter()
                .map(|h| {
                    let name = name.clone();
                    s.spawn(move || loop {
                        let (_, v) = h.api("GET", "/networks/fan", None);
                        let seen = v["Containers"]
                            .as_object()
                            .is_some_and(|m| m.values().any(|e| e["Name"] == name.as_str()));
                        if seen {
                            return t0.elapsed().as_secs_f64() * 1e3;
                        }
                        assert!(t0.elapsed() < Duration::from_secs(30), "never programmed");
                        std::thread::sleep(Duration::from_micros(500));
                    })
                })
                .collect();
            for h in handles {
                delays.push(h.join().unwrap());
            }
        });
    }
    let after = etcd_counters(&c, &counters);
    let per: Vec<f64> = before
        .iter()
        .zip(&after)
        .map(|(b, a)| (a - b) / rounds as f64)
        .collect();
    let mut s = delays.clone();
    s.sort_by(f64::total_cmp);
    let others = hosts - 1;
    for (label, p) in [("p50", 0.5), ("p99", 0.99)] {
        figures.push(Figure {
            name: format!("fanout_{hosts}_hosts_programmed_{label}"),
            unit: "ms",
            value: crate::percentile(&s, p),
            context: format!(
                "connect answered on host 1 -> the endpoint listed (its FDB entry made) on each of the {others} others; {rounds} rounds x {others} hosts, polled every 0.5 ms"
            ),
        });
    }
    let quiet = c.hosts[1..]
        .iter()
        .filter(|h| {
            std::fs::read_dir(h.dir.join("run/overlay"))
                .map(|d| d.count())
                .unwrap_or(0)
                > 1
        })
        .count();
    figures.push(Figure {
        name: "fanout_hosts_programming_a_network_they_have_no_endpoint_on".into(),
        unit: "count",
        value: quiet as f64,
        context: format!(
            "of {others} hosts without an endpoint on a second network: namespaces kept for it"
        ),
    });
    let watchers = etcd_counters(&c, &["etcd_debugging_mvcc_watcher_total"])[0];
    figures.push(Figure {
        name: "fanout_etcd_watchers".into(),
        unit: "count",
        value: watchers,
        context: format!(
            "etcd's watcher gauge: each host watches network definitions, and endpoints only of networks it has an endpoint on ({} expected: {hosts} + {hosts} on the first network + 1 on the second)",
            2 * hosts + 1
        ),
    });
    for (name, v) in counters.iter().zip(&per) {
        figures.push(Figure {
            name: format!("fanout_per_connect_{name}"),
            unit: "count",
            value: *v,
            context: format!(
                "etcd's own counter over {rounds} connects on a {hosts}-host cluster, divided by {rounds} (includes keep-alives and watches of the period)"
            ),
        });
    }
    let rss: f64 = c
        .hosts
        .iter()
        .filter_map(|h| h.daemon_pid())
        .map(crate::rss_mb)
        .sum::<f64>()
        / hosts as f64;
    figures.push(Figure {
        name: "fanout_plumbd_rss_each".into(),
        unit: "MB",
        value: rss,
        context: format!("mean over {hosts} plumbd processes (cluster started in {setup:.1} s)"),
    });
}
