//! What concurrent clients get: connect throughput from one client and from four (each into
//! its own network), and how long a read (`GET /networks/{id}`) waits while connects run
//! back to back.

use crate::{median, percentile, Figure};
use plumb_testkit::TestHost;
use serde_json::json;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

fn make_sandboxes(h: &TestHost, prefix: &str, n: usize) {
    for i in 0..n {
        let (st, v) = h.api(
            "POST",
            "/plumb/v1/sandboxes",
            Some(&json!({"Name": format!("{prefix}{i}")})),
        );
        assert_eq!(st, 201, "{v}");
    }
}

fn make_network(h: &TestHost, name: &str, subnet: &str) {
    let body = json!({"Name": name, "IPAM": {"Config": [{"Subnet": subnet}]}});
    let (st, v) = h.api("POST", "/networks/create", Some(&body));
    assert_eq!(st, 201, "{v}");
}

/// Connects `prefix0..prefix{n}` to `net` one after the other; returns the seconds taken.
fn connect_all(socket: &std::path::Path, net: &str, prefix: &str, n: usize) -> f64 {
    let t = Instant::now();
    for i in 0..n {
        let (st, v) = TestHost::api_on(
            socket,
            "POST",
            &format!("/networks/{net}/connect"),
            Some(&json!({"Container": format!("{prefix}{i}")})),
        );
        assert_eq!(st, 200, "{v}");
    }
    t.elapsed().as_secs_f64()
}

/// Throughput of 1 and 4 clients, and read latency under connects, `n` connects per client.
pub fn concurrency_figures(figures: &mut Vec<Figure>, n: usize) {
    let h = TestHost::started();
    for c in 0..5 {
        make_network(&h, &format!("c{c}"), &format!("10.{}.0.0/16", 140 + c));
        make_sandboxes(&h, &format!("s{c}-"), n);
    }
    make_network(&h, "small", "10.150.0.0/24");
    // One client.
    let one = n as f64 / connect_all(&h.socket, "c0", "s0-", n);
    // Four clients, each into its own network.
    let t = Instant::now();
    let clients: Vec<_> = (1..5)
        .map(|c| {
            let socket = h.socket.clone();
            std::thread::spawn(move || connect_all(&socket, &format!("c{c}"), &format!("s{c}-"), n))
        })
        .collect();
    for c in clients {
        c.join().unwrap();
    }
    let four = 4.0 * n as f64 / t.elapsed().as_secs_f64();
    figures.push(Figure {
        name: "connects_per_s_1_client".into(),
        unit: "1/s",
        value: one,
        context: format!("{n} connects into one network, through the API"),
    });
    figures.push(Figure {
        name: "connects_per_s_4_clients".into(),
        unit: "1/s",
        value: four,
        context: format!("4 clients x {n} connects, each into its own network"),
    });
    figures.push(Figure {
        name: "connects_4_clients_over_1".into(),
        unit: "ratio",
        value: four / one,
        context: "throughput of 4 concurrent clients over one (target >= 1.5)".into(),
    });
    // Reads while connects run: disconnect c0 and connect again, reading meanwhile.
    let (_, list) = h.api("GET", "/networks/small", None);
    let id = list["Id"].as_str().unwrap().to_owned();
    let mut idle = Vec::new();
    for _ in 0..500 {
        let t = Instant::now();
        assert_eq!(h.api("GET", &format!("/networks/{id}"), None).0, 200);
        idle.push(t.elapsed().as_secs_f64() * 1e3);
    }
    for i in 0..n {
        let (st, v) = h.api(
            "POST",
            "/networks/c0/disconnect",
            Some(&json!({"Container": format!("s0-{i}")})),
        );
        assert_eq!(st, 200, "{v}");
    }
    let busy = Arc::new(AtomicBool::new(true));
    let flag = busy.clone();
    let socket = h.socket.clone();
    let writer = std::thread::spawn(move || {
        connect_all(&socket, "c0", "s0-", n);
        flag.store(false, Ordering::SeqCst);
    });
    let mut during = Vec::new();
    while busy.load(Ordering::SeqCst) {
        let t = Instant::now();
        assert_eq!(h.api("GET", &format!("/networks/{id}"), None).0, 200);
        during.push(t.elapsed().as_secs_f64() * 1e3);
    }
    writer.join().unwrap();
    let mut sorted = during.clone();
    sorted.sort_by(f64::total_cmp);
    let mut idle_sorted = idle.clone();
    idle_sorted.sort_by(f64::total_cmp);
    for (name, v) in [
        ("get_network_idle_median", median(&idle)),
        ("get_network_idle_p99", percentile(&idle_sorted, 0.99)),
        ("get_network_during_connects_median", median(&during)),
        ("get_network_during_connects_p99", percentile(&sorted, 0.99)),
    ] {
        figures.push(Figure {
            name: name.into(),
            unit: "ms",
            value: v,
            context: format!(
                "GET /networks/{{id}} of a small network, {} reads (target during connects: p99 <= 1 ms)",
                if name.contains("idle") { idle.len() } else { during.len() }
            ),
        });
    }
}
