//! Published-port figures: connect latency with one published port each over 1,000
//! sandboxes (and its growth), publishing a range of 1,000 ports, and the TCP connection
//! rate to a published port with 1 mapping and with 1,000.

use crate::{latency_figures, median, phase_figures, Figure, PHASE_LOG};
use plumb_testkit::TestHost;
use serde_json::json;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

fn sandbox(h: &TestHost, name: &str, ports: &[String]) {
    let (st, v) = h.api(
        "POST",
        "/plumb/v1/sandboxes",
        Some(&json!({"Name": name, "Ports": ports})),
    );
    assert_eq!(st, 201, "{v}");
}

fn connect(h: &TestHost, net: &str, name: &str) -> f64 {
    let t = Instant::now();
    let (st, v) = h.api(
        "POST",
        &format!("/networks/{net}/connect"),
        Some(&json!({"Container": name})),
    );
    let ms = t.elapsed().as_secs_f64() * 1e3;
    assert_eq!(st, 200, "{v}");
    ms
}

/// TCP connections per second from the outside namespace to 198.51.100.1:`port`, over `secs`.
fn connection_rate(outside_ns: &str, port: u16, secs: f64) -> f64 {
    let ns = outside_ns.to_owned();
    std::thread::spawn(move || {
        let f = std::fs::File::open(format!("/run/netns/{ns}")).unwrap();
        // SAFETY: this benchmark thread alone enters the outside namespace.
        assert_eq!(unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) }, 0);
        let addr: std::net::SocketAddr = format!("198.51.100.1:{port}").parse().unwrap();
        let start = Instant::now();
        let mut n = 0u64;
        while start.elapsed().as_secs_f64() < secs {
            let mut s =
                std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).unwrap();
            let mut b = [0u8; 64];
            let _ = std::io::Read::read(&mut s, &mut b);
            n += 1;
        }
        n as f64 / start.elapsed().as_secs_f64()
    })
    .join()
    .unwrap()
}

/// Adds the published-port figures.
pub fn port_figures(figures: &mut Vec<Figure>, n: usize) {
    let mut h = TestHost::new();
    h.set_daemon_args(&PHASE_LOG);
    h.start();
    let outside = h.add_outside();
    let (st, v) = h.api(
        "POST",
        "/networks/create",
        Some(&json!({"Name": "pub", "IPAM": {"Config": [{"Subnet": "10.140.0.0/16"}]}})),
    );
    assert_eq!(st, 201, "{v}");

    // A server behind one published port, for the connection rate with 1 mapping.
    sandbox(&h, "web", &["18080:80".to_owned()]);
    connect(&h, "pub", "web");
    let echo =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/clients/echo_peer.py");
    let mut server = std::process::Command::new(plumb_testkit::bin_dir().join("plumb"))
        .args([
            "-H",
            &format!("unix://{}", h.socket.display()),
            "exec",
            "web",
            "--",
            "python3",
        ])
        .arg(&echo)
        .args(["serve", "80"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(server.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let rate_1 = connection_rate(&outside, 18080, 1.0);

    // Sandboxes first, as in the endpoint figures: what is timed is the connect that
    // publishes the port, with more and more ports already published.
    for i in 0..n {
        sandbox(&h, &format!("p{i}"), &[format!("{}:80", 20000 + i)]);
    }
    let ms: Vec<f64> = (0..n)
        .map(|i| connect(&h, "pub", &format!("p{i}")))
        .collect();
    let rate_n = connection_rate(&outside, 18080, 1.0);
    latency_figures(figures, "connect_with_port", &ms, n);
    let k = (n / 10).clamp(1, 100);
    let (first, last) = (median(&ms[..k]), median(&ms[n - k..]));
    figures.push(Figure {
        name: format!("connect_with_port_growth_last{k}_over_first{k}"),
        unit: "ratio",
        value: last / first,
        context: format!(
            "each sandbox publishes one port; last {k} {last:.3} ms, first {k} {first:.3} ms"
        ),
    });
    phase_figures(figures, &h.log(), "connect_with_port", k);
    figures.push(Figure {
        name: "tcp_connections_per_s_1_mapping".into(),
        unit: "conn/s",
        value: rate_1,
        context: "outside client to a published port, sequential connect + read + reset, 1 s (short enough that client ports do not wrap into stale conntrack entries)".into(),
    });
    figures.push(Figure {
        name: format!("tcp_connections_per_s_{}_mappings", n + 1),
        unit: "conn/s",
        value: rate_n,
        context: "the same, with every sandbox above publishing a port".into(),
    });

    sandbox(&h, "range", &["30000-30999:30000-30999".to_owned()]);
    let range_ms = connect(&h, "pub", "range");
    figures.push(Figure {
        name: "publish_range_1000_ports".into(),
        unit: "ms",
        value: range_ms,
        context: "connect of a sandbox publishing 30000-30999, one nft batch, no proxy process"
            .into(),
    });
    let _ = server.kill();
    let _ = server.wait();
}
