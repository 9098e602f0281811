//! macvlan and IPv6: a macvlan connect and its growth over many endpoints, TCP between two
//! macvlan sandboxes against a plain macvlan pair made by hand on the same kind of parent,
//! and an IPv6-only connect against an IPv4 one in the same run.

use crate::overlay::iperf;
use crate::{median, percentile, Figure};
use plumb_testkit::TestHost;
use serde_json::json;
use std::time::Instant;

/// Milliseconds of one connect of a new sandbox `sb` to `net` through the API.
pub fn connect_ms(h: &TestHost, net: &str, sb: &str) -> f64 {
    let (st, v) = h.api("POST", "/plumb/v1/sandboxes", Some(&json!({"Name": sb})));
    assert_eq!(st, 201, "{v}");
    let t = Instant::now();
    let (st, v) = h.api(
        "POST",
        &format!("/networks/{net}/connect"),
        Some(&json!({"Container": sb})),
    );
    let ms = t.elapsed().as_secs_f64() * 1e3;
    assert_eq!(st, 200, "{v}");
    ms
}

/// Median, p90 and p99 of `ms` as figures `<what>_median` etc.
fn percentiles(figures: &mut Vec<Figure>, what: &str, ms: &[f64], context: &str) {
    let mut s = ms.to_vec();
    s.sort_by(f64::total_cmp);
    for (label, p) in [("median", 0.5), ("p90", 0.9), ("p99", 0.99)] {
        figures.push(Figure {
            name: format!("{what}_{label}"),
            unit: "ms",
            value: percentile(&s, p),
            context: context.to_owned(),
        });
    }
}

/// `nsenter` into a sandbox's namespace, as a shell prefix.
fn sb_ns(h: &TestHost, sb: &str) -> String {
    let (_, v) = h.api("GET", &format!("/plumb/v1/sandboxes/{sb}"), None);
    format!("nsenter --net={}", v["Key"].as_str().unwrap_or_default())
}

/// The sandbox's IPv4 address on its first endpoint.
fn ip_of(h: &TestHost, sb: &str) -> String {
    let (_, v) = h.api("GET", &format!("/plumb/v1/sandboxes/{sb}"), None);
    v["Endpoints"][0]["IPv4Address"]
        .as_str()
        .and_then(|a| a.split('/').next())
        .unwrap_or_default()
        .to_owned()
}

/// `n` macvlan connects, then the data path.
pub fn macvlan_figures(figures: &mut Vec<Figure>, n: usize) {
    let mut h = TestHost::new();
    h.set_daemon_args(&crate::PHASE_LOG);
    h.start();
    // Parents: veths up on both ends, the NICs of this benchmark.
    let o = h.sh(
        "ip link add lan0 type veth peer name lan0p && ip link set lan0 up && ip link set lan0p up && \
         ip link add lan1 type veth peer name lan1p && ip link set lan1 up && ip link set lan1p up",
    );
    assert!(o.ok(), "parents: {}", o.stderr);
    h.plumb_ok(&[
        "network",
        "create",
        "-d",
        "macvlan",
        "-o",
        "parent=lan0",
        "--subnet",
        "10.84.0.0/20",
        "mv",
    ]);
    let ms: Vec<f64> = (0..n)
        .map(|i| connect_ms(&h, "mv", &format!("m{i}")))
        .collect();
    percentiles(
        figures,
        "macvlan_connect",
        &ms,
        &format!("{n} sandboxes on one macvlan network (parent a veth), through the API socket"),
    );
    let k = (n / 10).clamp(1, 100);
    figures.push(Figure {
        name: "macvlan_connect_growth".into(),
        unit: "ratio",
        value: median(&ms[n - k..]) / median(&ms[..k]),
        context: format!(
            "median of the last {k} connects over the first {k}, {n} endpoints on one parent"
        ),
    });

    let log = h.log();
    let phases = crate::phase_growth(&log, "connect", k)
        .into_iter()
        .chain(crate::phase_growth(&log, "lower_join", k));
    let listed: Vec<String> = phases
        .map(|(p, first, last)| format!("{p} {:.0}->{:.0}", first, last))
        .collect();
    figures.push(Figure {
        name: "macvlan_connect_phases_us".into(),
        unit: "list",
        value: k as f64,
        context: format!(
            "median µs of each phase, first {k} -> last {k}: {}",
            listed.join(", ")
        ),
    });

    let (first, last) = macvlan_floor(&mut h, n, k);
    figures.push(Figure {
        name: "macvlan_floor_growth".into(),
        unit: "ratio",
        value: last / first,
        context: format!(
            "the kernel alone (ip -batch, no plumbd): a macvlan device on one parent made in a namespace of its own, {n} of them; last {k} {last:.0} µs over first {k} {first:.0} µs each"
        ),
    });

    // Data path: two plumb sandboxes against a macvlan pair made by hand on lan1 (no plumb),
    // seven interleaved pairs, the median ratio kept (the machine's throughput drifts).
    let (a, b) = (h.adopt_namespace("mva"), h.adopt_namespace("mvb"));
    let o = h.sh(&format!(
        "ip netns add {a} && ip netns add {b} && \
         ip link add link lan1 name mva type macvlan mode bridge && ip link set mva netns {a} && \
         ip link add link lan1 name mvb type macvlan mode bridge && ip link set mvb netns {b} && \
         ip -n {a} addr add 10.85.0.1/24 dev mva && ip -n {a} link set mva up && ip -n {a} link set lo up && \
         ip -n {b} addr add 10.85.0.2/24 dev mvb && ip -n {b} link set mvb up && ip -n {b} link set lo up"
    ));
    assert!(o.ok(), "plain macvlan pair: {}", o.stderr);
    let srv = ip_of(&h, "m0");
    let (srv_ns, cli_ns) = (sb_ns(&h, "m0"), sb_ns(&h, "m1"));
    let (plain_srv, plain_cli) = (
        format!("nsenter --net=/run/netns/{a}"),
        format!("nsenter --net=/run/netns/{b}"),
    );
    let mut pairs: Vec<(f64, f64)> = (0..7)
        .map(|_| {
            let p = iperf(&h, &srv_ns, &cli_ns, &srv);
            let r = iperf(&h, &plain_srv, &plain_cli, "10.85.0.1");
            (p, r)
        })
        .collect();
    pairs.sort_by(|x, y| (x.0 / x.1).total_cmp(&(y.0 / y.1)));
    let ratios: Vec<String> = pairs.iter().map(|(p, r)| format!("{:.2}", p / r)).collect();
    let (p, r) = pairs[3];
    figures.push(Figure {
        name: "macvlan_tcp_over_plain_pair".into(),
        unit: "ratio",
        value: p / r,
        context: format!(
            "median of 7 interleaved iperf3 3 s TCP pairs (sorted ratios {}); median pair: plumb {:.2} Gbit/s, plain macvlan pair {:.2} Gbit/s",
            ratios.join(" "),
            p / 1e9,
            r / 1e9
        ),
    });
}

/// µs per device of the first and the last `k` of `n` macvlan devices made by the kernel alone
/// (`ip -batch`) on one parent, each in a namespace of its own, as plumb makes them.
fn macvlan_floor(h: &mut TestHost, n: usize, k: usize) -> (f64, f64) {
    let names: Vec<String> = (0..n)
        .map(|i| h.adopt_namespace(&format!("mf{i}")))
        .collect();
    let dir = h.dir.clone();
    let adds: String = names.iter().map(|ns| format!("netns add {ns}\n")).collect();
    std::fs::write(dir.join("floor-ns.batch"), adds).unwrap();
    let o = h.sh(&format!(
        "ip -batch {0}/floor-ns.batch && ip link add lan2 type veth peer name lan2p && \
         ip link set lan2 up && ip link set lan2p up",
        dir.display()
    ));
    assert!(o.ok(), "floor setup: {}", o.stderr);
    let batch = |range: std::ops::Range<usize>, file: &str| -> f64 {
        let lines: String = range
            .clone()
            .map(|i| {
                format!(
                    "link add link lan2 name eth0 netns {} address 02:42:0b:{:02x}:{:02x}:01 type macvlan mode bridge\n",
                    names[i],
                    i / 256,
                    i % 256
                )
            })
            .collect();
        let path = dir.join(file);
        std::fs::write(&path, lines).unwrap();
        let t = Instant::now();
        let o = h.sh(&format!("ip -batch {}", path.display()));
        assert!(o.ok(), "floor batch: {}", o.stderr);
        t.elapsed().as_secs_f64() * 1e6 / range.len() as f64
    };
    let first = batch(0..k, "floor-first.batch");
    if n > 2 * k {
        batch(k..n - k, "floor-middle.batch");
    }
    let last = batch(n - k..n, "floor-last.batch");
    (first, last)
}

/// `n` connects each to an IPv4-only and an IPv6-only bridge network, interleaved.
pub fn ipv6_figures(figures: &mut Vec<Figure>, n: usize) {
    let h = TestHost::started();
    h.plumb_ok(&["network", "create", "--subnet", "10.86.0.0/20", "four"]);
    h.plumb_ok(&[
        "network",
        "create",
        "--ipv4=false",
        "--ipv6",
        "--subnet",
        "fd86::/64",
        "six",
    ]);
    let (mut v4, mut v6) = (Vec::new(), Vec::new());
    for i in 0..n {
        v4.push(connect_ms(&h, "four", &format!("f{i}")));
        v6.push(connect_ms(&h, "six", &format!("s{i}")));
    }
    let (m4, m6) = (median(&v4), median(&v6));
    figures.push(Figure {
        name: "ipv6_connect_over_ipv4".into(),
        unit: "ratio",
        value: m6 / m4,
        context: format!(
            "median connect to an IPv6-only bridge network {m6:.2} ms over an IPv4-only one {m4:.2} ms, {n} each, interleaved (target <= 1.10)"
        ),
    });
    percentiles(
        figures,
        "ipv6_connect",
        &v6,
        &format!("{n} sandboxes on an IPv6-only bridge network, through the API socket"),
    );
}
