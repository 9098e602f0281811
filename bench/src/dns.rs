//! Embedded DNS figures: queries per second for container names (dnsperf inside a sandbox),
//! latency percentiles at a fixed 2,000 queries/s, and plumbd's extra memory for 1,000
//! sandboxes' resolvers (against a plumbd run with --no-embedded-dns).

use crate::{percentile, rss_mb, Figure};
use plumb_dns::wire;
use plumb_testkit::TestHost;
use serde_json::json;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

const SANDBOXES: usize = 1000;

fn make_sandboxes(h: &TestHost, n: usize) {
    for i in 0..n {
        let (st, v) = h.api(
            "POST",
            "/plumb/v1/sandboxes",
            Some(&json!({"Name": format!("d{i}")})),
        );
        assert_eq!(st, 201, "{v}");
    }
}

/// RSS growth of plumbd over creating `SANDBOXES` sandboxes.
fn rss_growth(h: &TestHost) -> f64 {
    let pid = h.daemon_pid().unwrap();
    let before = rss_mb(pid);
    make_sandboxes(h, SANDBOXES);
    rss_mb(pid) - before
}

fn query(id: u16, name: &str) -> Vec<u8> {
    let mut q = vec![0, 0, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    q[..2].copy_from_slice(&id.to_be_bytes());
    q.extend(wire::encode_name(name));
    q.extend(wire::TYPE_A.to_be_bytes());
    q.extend(wire::CLASS_IN.to_be_bytes());
    q
}

/// Sends `total` queries at `rate` per second from inside the namespace at `key`, one at a
/// time; returns each round trip in milliseconds.
fn paced_latencies(key: &str, rate: u32, total: usize, names: &[String]) -> Vec<f64> {
    let key = key.to_owned();
    let names = names.to_vec();
    std::thread::spawn(move || {
        let f = std::fs::File::open(&key).unwrap();
        // SAFETY: this benchmark thread alone enters the sandbox's namespace.
        assert_eq!(unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) }, 0);
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.connect("127.0.0.11:53").unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
        let gap = Duration::from_secs_f64(1.0 / f64::from(rate));
        let start = Instant::now();
        let mut out = Vec::with_capacity(total);
        let mut buf = [0u8; 1500];
        for i in 0..total {
            let due = start + gap * i as u32;
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            let q = query(i as u16, &names[i % names.len()]);
            let t = Instant::now();
            sock.send(&q).unwrap();
            loop {
                let n = sock.recv(&mut buf).expect("resolver answered within 1 s");
                if n >= 2 && buf[..2] == q[..2] {
                    break;
                }
            }
            out.push(t.elapsed().as_secs_f64() * 1e3);
        }
        out
    })
    .join()
    .unwrap()
}

/// Adds the DNS figures.
pub fn dns_figures(figures: &mut Vec<Figure>) {
    let with_dns = TestHost::started();
    let mut without = TestHost::new();
    without.set_daemon_args(&["--no-embedded-dns"]);
    without.start();
    let grow_with = rss_growth(&with_dns);
    let grow_without = rss_growth(&without);
    drop(without);
    figures.push(Figure {
        name: "dns_extra_rss_1000_resolvers".into(),
        unit: "MB",
        value: grow_with - grow_without,
        context: format!(
            "plumbd RSS growth over 1,000 sandboxes with resolvers ({grow_with:.2} MB) minus without (--no-embedded-dns, {grow_without:.2} MB)"
        ),
    });

    let h = with_dns;
    let (st, v) = h.api(
        "POST",
        "/networks/create",
        Some(&json!({"Name": "dnsnet", "IPAM": {"Config": [{"Subnet": "10.53.0.0/16"}]}})),
    );
    assert_eq!(st, 201, "{v}");
    let names: Vec<String> = (0..20).map(|i| format!("d{i}")).collect();
    for n in &names {
        let (st, v) = h.api(
            "POST",
            "/networks/dnsnet/connect",
            Some(&json!({"Container": n})),
        );
        assert_eq!(st, 200, "{v}");
    }
    let (_, sb) = h.api("GET", "/plumb/v1/sandboxes/d0", None);
    let key = sb["Key"].as_str().unwrap().to_owned();

    // Throughput: dnsperf inside the sandbox, container names only.
    let qfile = h.dir.join("queries.txt");
    let lines: String = names.iter().map(|n| format!("{n} A\n")).collect();
    std::fs::write(&qfile, lines).unwrap();
    let out = h.plumb(&[
        "exec",
        "d0",
        "--",
        "dnsperf",
        "-s",
        "127.0.0.11",
        "-d",
        &qfile.to_string_lossy(),
        "-l",
        "5",
        "-q",
        "200",
    ]);
    assert!(
        out.ok(),
        "dnsperf (Debian package dnsperf) failed: {}",
        out.stderr
    );
    let qps: f64 = out
        .stdout
        .lines()
        .find(|l| l.contains("Queries per second"))
        .and_then(|l| l.split(':').nth(1))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no rate in dnsperf output:\n{}", out.stdout));
    let lost = out
        .stdout
        .lines()
        .find(|l| l.contains("Queries lost"))
        .unwrap_or("")
        .trim()
        .to_owned();
    figures.push(Figure {
        name: "dns_container_names_qps".into(),
        unit: "queries/s",
        value: qps,
        context: format!("dnsperf -q 200 for 5 s inside a sandbox, 20 container names, 2 cores shared with dnsperf; {lost}"),
    });

    let mut lat = paced_latencies(&key, 2000, 10_000, &names);
    lat.sort_by(f64::total_cmp);
    for (label, p) in [("p50", 0.5), ("p99", 0.99)] {
        figures.push(Figure {
            name: format!("dns_latency_{label}_at_2000qps"),
            unit: "ms",
            value: percentile(&lat, p),
            context: "10,000 container-name queries at 2,000/s from inside a sandbox".into(),
        });
    }
}
