//! plumb-bench: endpoint connect/disconnect latency through plumbd's API, its growth over
//! many endpoints, plumbd's memory, and the Docker API's list and inspect with the real docker
//! CLI. Runs plumbd in a throwaway namespace (plumb-testkit);
//! prints one JSON object per figure, then a Markdown table.
//!
//! Usage: `plumb-bench [ENDPOINTS] [endpoints|api|dns|ports|floor|netrm|overlay|fanout|plugins|runtimes|macvlan|ipv6|soak]...` (default 1000,
//! all sections but soak; `plumb-bench --help` lists them), as
//! root, after building the release
//! binaries (`cargo build --release -p plumbd -p plumb-cli -p plumb-bench`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod concurrency;
mod dns;
mod floor;
mod lifecycle;
mod lower;
mod overlay;
mod plugins;
mod ports;
mod runtimes;

use plumb_testkit::TestHost;
use serde_json::json;
use std::time::Instant;

/// One reported figure.
pub struct Figure {
    pub name: String,
    pub unit: &'static str,
    pub value: f64,
    pub context: String,
}

pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

pub fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    percentile(&s, 0.5)
}

/// Least-squares slope of `v` against its index: how much one more sample adds.
pub fn slope(v: &[f64]) -> f64 {
    let n = v.len() as f64;
    if v.len() < 2 {
        return 0.0;
    }
    let mean_x = (n - 1.0) / 2.0;
    let mean_y = v.iter().sum::<f64>() / n;
    let (mut num, mut den) = (0.0, 0.0);
    for (i, y) in v.iter().enumerate() {
        let dx = i as f64 - mean_x;
        num += dx * (y - mean_y);
        den += dx * dx;
    }
    num / den
}

pub fn rss_mb(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: f64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap();
    kb / 1024.0
}

pub fn latency_figures(out: &mut Vec<Figure>, what: &str, ms: &[f64], n: usize) {
    let mut s = ms.to_vec();
    s.sort_by(f64::total_cmp);
    for (label, p) in [("median", 0.5), ("p90", 0.9), ("p99", 0.99)] {
        out.push(Figure {
            name: format!("{what}_{label}"),
            unit: "ms",
            value: percentile(&s, p),
            context: format!("{n} sandboxes on one bridge network, through the API socket"),
        });
    }
}

/// Flags that make plumbd log the phases of each operation (see `phase_growth`).
pub const PHASE_LOG: [&str; 2] = ["--log-level", "info,plumb::timing=debug"];

/// Median of each logged phase of `op` over the first `k` and the last `k` operations, from
/// plumbd's log: (phase, first-k median µs, last-k median µs), in log order.
pub fn phase_growth(log: &str, op: &str, k: usize) -> Vec<(String, f64, f64)> {
    let tag = format!("op=\"{op}\"");
    let runs: Vec<Vec<(String, f64)>> = log
        .lines()
        .filter(|l| l.contains("plumb::timing") && l.contains(&tag))
        .filter_map(|l| l.split_once("phases=").map(|(_, p)| p))
        .map(|p| {
            p.split_whitespace()
                .filter_map(|kv| kv.split_once('='))
                .filter_map(|(n, v)| Some((n.to_owned(), v.parse().ok()?)))
                .collect()
        })
        .collect();
    let Some(first_run) = runs.first() else {
        return Vec::new();
    };
    let k = k.min(runs.len());
    let of = |runs: &[Vec<(String, f64)>], name: &str| {
        let v: Vec<f64> = runs
            .iter()
            .filter_map(|r| r.iter().find(|(n, _)| n == name).map(|(_, us)| *us))
            .collect();
        median(&v)
    };
    first_run
        .iter()
        .map(|(name, _)| {
            (
                name.clone(),
                of(&runs[..k], name),
                of(&runs[runs.len() - k..], name),
            )
        })
        .collect()
}

/// The growth of each phase of a connect (in plumbd and in the bridge driver), from plumbd's
/// log, as `{prefix}_phase_{phase}_last{k}_over_first{k}` figures.
pub fn phase_figures(figures: &mut Vec<Figure>, log: &str, prefix: &str, k: usize) {
    let phases = phase_growth(log, "connect", k)
        .into_iter()
        .chain(phase_growth(log, "bridge_join", k));
    phase_list(figures, prefix, k, phases);
}

/// Like [`phase_figures`] for the phases of sandbox creation.
pub fn create_phase_figures(figures: &mut Vec<Figure>, log: &str, k: usize) {
    phase_list(
        figures,
        "create_sandbox",
        k,
        phase_growth(log, "create_sandbox", k),
    );
}

fn phase_list(
    figures: &mut Vec<Figure>,
    prefix: &str,
    k: usize,
    phases: impl IntoIterator<Item = (String, f64, f64)>,
) {
    for (phase, first, last) in phases {
        figures.push(Figure {
            name: format!("{prefix}_phase_{phase}_last{k}_over_first{k}"),
            unit: "ratio",
            value: last / first.max(1.0),
            context: format!("inside plumbd: last {k} {last:.0} µs, first {k} {first:.0} µs"),
        });
    }
}

/// `docker network ls` as a whole process with 100 networks, and `GET /networks/{id}` round
/// trips (each on a new connection, an upper bound of the server time).
fn api_figures(figures: &mut Vec<Figure>) {
    let h = TestHost::started();
    for i in 0..97 {
        let body = json!({"Name": format!("net{i}"), "IPAM": {"Config": [{"Subnet": format!("10.{}.{}.0/24", 10 + i / 200, i % 200)}]}});
        let (st, v) = h.api("POST", "/networks/create", Some(&body));
        assert_eq!(st, 201, "{v}");
    }
    let docker_host = format!("unix://{}", h.socket.display());
    let mut ls = Vec::new();
    for _ in 0..30 {
        let t = Instant::now();
        let out = std::process::Command::new("docker")
            .env("DOCKER_HOST", &docker_host)
            .env("DOCKER_CONFIG", h.dir.join("docker-config"))
            .args(["network", "ls"])
            .output()
            .expect("the docker CLI");
        ls.push(t.elapsed().as_secs_f64() * 1e3);
        assert!(out.status.success());
        assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 101);
    }
    figures.push(Figure {
        name: "docker_network_ls_100_networks_median".into(),
        unit: "ms",
        value: median(&ls),
        context: "whole docker CLI process (ping + list), 30 runs".into(),
    });
    let (_, list) = h.api("GET", "/networks", None);
    let id = list[0]["Id"].as_str().unwrap().to_owned();
    let mut get = Vec::new();
    for _ in 0..2000 {
        let t = Instant::now();
        let (st, _) = h.api("GET", &format!("/v1.47/networks/{id}"), None);
        get.push(t.elapsed().as_secs_f64() * 1e3);
        assert_eq!(st, 200);
    }
    figures.push(Figure {
        name: "get_network_round_trip_median".into(),
        unit: "ms",
        value: median(&get),
        context: "GET /networks/{id}, new connection per request, 2000 runs, 100 networks".into(),
    });
}

/// Endpoint figures: connect/disconnect latency over `n` sandboxes on one network, growth,
/// and plumbd's RSS.
fn endpoint_figures(figures: &mut Vec<Figure>, n: usize) {
    let mut h = TestHost::new();
    h.set_daemon_args(&PHASE_LOG);
    h.start();
    let pid = h.daemon_pid().unwrap();
    let (st, v) = h.api(
        "POST",
        "/networks/create",
        Some(&json!({"Name": "bench", "IPAM": {"Config": [{"Subnet": "10.128.0.0/16"}]}})),
    );
    assert_eq!(st, 201, "{v}");
    figures.push(Figure {
        name: "plumbd_rss_0_endpoints".into(),
        unit: "MB",
        value: rss_mb(pid),
        context: "after start and one network".into(),
    });
    let mut create = Vec::with_capacity(n);
    for i in 0..n {
        let t = Instant::now();
        let (st, v) = h.api(
            "POST",
            "/plumb/v1/sandboxes",
            Some(&json!({"Name": format!("s{i}")})),
        );
        create.push(t.elapsed().as_secs_f64() * 1e3);
        assert_eq!(st, 201, "{v}");
    }
    latency_figures(figures, "create_sandbox", &create, n);
    let k = (n / 10).clamp(1, 100);
    let (first, last) = (median(&create[..k]), median(&create[n - k..]));
    figures.push(Figure {
        name: format!("create_sandbox_growth_last{k}_over_first{k}"),
        unit: "ratio",
        value: last / first,
        context: format!(
            "namespace, loopback, hosts, resolv.conf, resolver: last {k} {last:.3} ms, first {k} {first:.3} ms"
        ),
    });
    let mut connect = Vec::with_capacity(n);
    for i in 0..n {
        let body = json!({"Container": format!("s{i}")});
        let t = Instant::now();
        let (st, v) = h.api("POST", "/networks/bench/connect", Some(&body));
        connect.push(t.elapsed().as_secs_f64() * 1e3);
        assert_eq!(st, 200, "connect s{i}: {v}");
    }
    figures.push(Figure {
        name: format!("plumbd_rss_{n}_endpoints"),
        unit: "MB",
        value: rss_mb(pid),
        context: format!("{n} sandboxes each joined to the network"),
    });
    latency_figures(figures, "connect", &connect, n);
    let first = median(&connect[..k]);
    let last = median(&connect[n - k..]);
    figures.push(Figure {
        name: format!("connect_growth_last{k}_over_first{k}"),
        unit: "ratio",
        value: last / first,
        context: format!(
            "median of the last {k} connects ({last:.3} ms) over the first {k} ({first:.3} ms)"
        ),
    });
    phase_figures(figures, &h.log(), "connect", k);
    create_phase_figures(figures, &h.log(), k);
    let mut disconnect = Vec::with_capacity(n);
    for i in 0..n {
        let body = json!({"Container": format!("s{i}")});
        let t = Instant::now();
        let (st, v) = h.api("POST", "/networks/bench/disconnect", Some(&body));
        disconnect.push(t.elapsed().as_secs_f64() * 1e3);
        assert_eq!(st, 200, "disconnect s{i}: {v}");
    }
    latency_figures(figures, "disconnect", &disconnect, n);
}

/// The sections a run can name, with what each measures.
const SECTIONS: &[(&str, &str)] = &[
    (
        "endpoints",
        "connect/disconnect latency and growth over ENDPOINTS, plumbd RSS",
    ),
    (
        "api",
        "GET /networks/{id} round trip, docker network ls with 100 networks",
    ),
    (
        "dns",
        "container-name queries/s (dnsperf), latency, resolver memory",
    ),
    (
        "ports",
        "connect with a published port, range of 1,000 ports, heal time",
    ),
    (
        "floor",
        "the kernel's own cost of a bridge port, with ip -batch and no plumbd",
    ),
    (
        "concurrency",
        "connect throughput of 1 and 4 clients, GET latency while connects run (ENDPOINTS/4 each)",
    ),
    (
        "netrm",
        "network create and removal through the API (ENDPOINTS/10 rounds)",
    ),
    (
        "overlay",
        "3 hosts and etcd: convergence, ENDPOINTS connects with the FDB checked, iperf3, dead host",
    ),
    (
        "fanout",
        "30 hosts and etcd: a connect until the 29 others have programmed it, etcd cost per connect",
    ),
    (
        "plugins",
        "one plugin call over a unix socket; connect through remote driver and IPAM vs bridge (ENDPOINTS/5)",
    ),
    (
        "macvlan",
        "macvlan connect over ENDPOINTS endpoints and its growth; TCP against a plain macvlan pair",
    ),
    (
        "ipv6",
        "connect to an IPv6-only network against an IPv4-only one (ENDPOINTS/2 each)",
    ),
    (
        "runtimes",
        "podman run through plumb-cni vs Podman's default network; CNI ADD/DEL (ENDPOINTS/20 runs)",
    ),
    (
        "crash",
        "ENDPOINTS*2 random operations, kill -9 about every 14th (not run by default)",
    ),
    (
        "soak",
        "10 rounds of ENDPOINTS sandboxes with a port: RSS, open files (not run by default)",
    ),
];

fn usage() -> String {
    let mut u = String::from(
        "usage: plumb-bench [ENDPOINTS] [SECTION]...\n\n\
         Runs plumbd in throwaway network namespaces (as root) and prints one JSON object per\n\
         figure, then a Markdown table. ENDPOINTS defaults to 1000; no SECTION runs them all.\n\n\
         sections:\n",
    );
    for (name, what) in SECTIONS {
        u.push_str(&format!("  {name:<10} {what}\n"));
    }
    u
}

/// The crash driver's long form: `ops` random operations, kill -9 about every 14th.
fn crash_figures(figures: &mut Vec<Figure>, ops: usize) {
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1);
    let t = Instant::now();
    let r = plumb_testkit::crash::run(ops, 14, seed);
    let context = format!(
        "seed {seed}: {} operations, every invariant held after each restart ({:.0} s)",
        r.operations,
        t.elapsed().as_secs_f64()
    );
    for (name, value) in [
        ("crash_operations", r.operations),
        ("crash_kills", r.kills),
        ("crash_kills_mid_request", r.kills_mid_request),
        ("crash_checks_passed", r.checks),
    ] {
        figures.push(Figure {
            name: name.into(),
            unit: "count",
            value: value as f64,
            context: context.clone(),
        });
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [flag, port] = args.as_slice() {
        if flag == "--echo-server" {
            ports::echo_server(port.parse().unwrap());
        }
    }
    if args
        .iter()
        .any(|a| a == "--help" || a == "-h" || a == "help")
    {
        print!("{}", usage());
        return;
    }
    let mut n = 1000;
    let mut sections: Vec<&str> = Vec::new();
    for a in &args {
        if let Ok(v) = a.parse() {
            n = v;
        } else if SECTIONS.iter().any(|(s, _)| s == a) {
            sections.push(a);
        } else {
            eprint!("plumb-bench: unknown argument {a:?}\n\n{}", usage());
            std::process::exit(2);
        }
    }
    let run =
        |s: &str| (sections.is_empty() && !["soak", "crash"].contains(&s)) || sections.contains(&s);
    if !plumb_testkit::prerequisites() {
        std::process::exit(2);
    }
    let mut figures = Vec::new();
    if run("endpoints") {
        endpoint_figures(&mut figures, n);
    }
    if run("api") {
        api_figures(&mut figures);
    }
    if run("dns") {
        dns::dns_figures(&mut figures);
    }
    if run("ports") {
        ports::port_figures(&mut figures, n);
    }
    if run("concurrency") {
        concurrency::concurrency_figures(&mut figures, (n / 4).max(10));
    }
    if run("netrm") {
        lifecycle::netrm_figures(&mut figures, (n / 10).max(10));
    }
    if run("overlay") {
        overlay::overlay_figures(&mut figures, n);
    }
    if run("fanout") {
        overlay::fanout_figures(&mut figures, 30);
    }
    if run("plugins") {
        plugins::plugin_figures(&mut figures, (n / 5).max(20));
    }
    if run("macvlan") {
        lower::macvlan_figures(&mut figures, n);
    }
    if run("ipv6") {
        lower::ipv6_figures(&mut figures, (n / 2).max(20));
    }
    if run("runtimes") {
        runtimes::runtime_figures(&mut figures, (n / 20).max(10));
    }
    if run("crash") {
        crash_figures(&mut figures, n * 2);
    }
    if run("soak") {
        lifecycle::soak_figures(&mut figures, n, 10);
    }
    if run("floor") {
        floor::floor_figures(&mut figures, n.max(100) / 100 * 100);
    }
    for f in &figures {
        println!(
            "{}",
            json!({"name": f.name, "unit": f.unit, "value": (f.value * 1000.0).round() / 1000.0, "context": f.context})
        );
    }
    println!("\n| figure | value | unit | context |\n|---|---|---|---|");
    for f in &figures {
        println!(
            "| {} | {:.3} | {} | {} |",
            f.name, f.value, f.unit, f.context
        );
    }
}
