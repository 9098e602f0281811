//! Published-port figures: connect latency with one published port each over 1,000
//! sandboxes (and its growth), publishing a range of 1,000 ports, and the TCP connection
//! rate to a published port with 1 mapping and with 1,000.

use crate::{latency_figures, median, phase_figures, slope, Figure, PHASE_LOG};
use plumb_testkit::TestHost;
use serde_json::json;
use socket2::{Domain, Socket, Type};
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

/// Serves TCP on `port` forever: each connection gets the client's address and a close.
/// Runs inside a sandbox (`plumb-bench --echo-server PORT`), a compiled peer for the
/// connection-rate figures.
pub fn echo_server(port: u16) -> ! {
    let l = std::net::TcpListener::bind(("0.0.0.0", port)).unwrap();
    println!("ready");
    std::io::Write::flush(&mut std::io::stdout()).unwrap();
    loop {
        if let Ok((mut s, peer)) = l.accept() {
            let _ = std::io::Write::write_all(&mut s, format!("{}\n", peer.ip()).as_bytes());
        }
    }
}

/// TCP connections per second from the outside namespace, bound to `source`, to
/// 198.51.100.1:`port`, over `secs`: connect, read the answer to its end, reset.
fn connection_rate(outside_ns: &str, source: &str, port: u16, secs: f64) -> f64 {
    let ns = outside_ns.to_owned();
    let source: std::net::SocketAddr = format!("{source}:0").parse().unwrap();
    std::thread::spawn(move || {
        let f = std::fs::File::open(format!("/run/netns/{ns}")).unwrap();
        // SAFETY: this benchmark thread alone enters the outside namespace.
        assert_eq!(unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) }, 0);
        let addr: std::net::SocketAddr = format!("198.51.100.1:{port}").parse().unwrap();
        let start = Instant::now();
        let mut n = 0u64;
        while start.elapsed().as_secs_f64() < secs {
            let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
            // A reset instead of TIME_WAIT: client ports are reused at once.
            s.set_linger(Some(Duration::ZERO)).unwrap();
            s.bind(&source.into()).unwrap();
            s.connect_timeout(&addr.into(), Duration::from_secs(2))
                .unwrap();
            let mut s = std::net::TcpStream::from(s);
            let mut answer = String::new();
            std::io::Read::read_to_string(&mut s, &mut answer).unwrap();
            assert_eq!(answer.trim(), source.ip().to_string(), "source preserved");
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
    let mut server = std::process::Command::new(plumb_testkit::bin_dir().join("plumb"))
        .args([
            "-H",
            &format!("unix://{}", h.socket.display()),
            "exec",
            "web",
            "--",
        ])
        .arg(std::env::current_exe().unwrap())
        .args(["--echo-server", "80"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(server.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let _server = KillOnDrop(server);
    // A second client address, so that each rate starts with no conntrack history.
    let o = h.sh_in(&outside, "ip addr add 198.51.100.3/24 dev eth0");
    assert!(o.ok(), "{}", o.stderr);
    let rate_1 = connection_rate(&outside, "198.51.100.2", 18080, 2.0);

    // Sandboxes first, as in the endpoint figures: what is timed is the connect that
    // publishes the port, with more and more ports already published.
    for i in 0..n {
        sandbox(&h, &format!("p{i}"), &[format!("{}:80", 20000 + i)]);
    }
    let ms: Vec<f64> = (0..n)
        .map(|i| connect(&h, "pub", &format!("p{i}")))
        .collect();
    let (rates_n, rates_1) = alternate_map_sizes(&h, &outside, n + 1);
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
    figures.push(Figure {
        name: "connect_with_port_slope".into(),
        unit: "µs per 1,000 ports",
        value: slope(&ms) * 1000.0 * 1000.0,
        context: format!(
            "least-squares growth of connect time over all {n} connects (compare kernel_floor_slope)"
        ),
    });
    phase_figures(figures, &h.log(), "connect_with_port", k);
    figures.push(Figure {
        name: "tcp_connections_per_s_1_mapping_empty_host".into(),
        unit: "conn/s",
        value: rate_1,
        context: "outside client to a published port (compiled server in the sandbox), sequential connect + read + reset, 2 s, before any other sandbox exists".into(),
    });
    let fmt = |v: &[f64]| {
        v.iter()
            .map(|r| format!("{r:.0}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    figures.push(Figure {
        name: format!("tcp_connections_per_s_{}_mappings", n + 1),
        unit: "conn/s",
        value: median(&rates_n),
        context: format!(
            "median of 3 one-second runs ({}), every sandbox above publishing a port",
            fmt(&rates_n)
        ),
    });
    figures.push(Figure {
        name: "tcp_connections_per_s_1_mapping_same_host".into(),
        unit: "conn/s",
        value: median(&rates_1),
        context: format!(
            "runs alternating with those above ({}): the same host, sandboxes and conntrack state, the port maps emptied of all but the measured port",
            fmt(&rates_1)
        ),
    });

    let t = Instant::now();
    sandbox(&h, "range", &["30000-30999:30000-30999".to_owned()]);
    let create_ms = t.elapsed().as_secs_f64() * 1e3;
    let range_ms = create_ms + connect(&h, "pub", "range");
    let log = h.log();
    let create_phases = log
        .lines()
        .rev()
        .find(|l| l.contains("op=\"create_sandbox\""))
        .and_then(|l| l.split_once("phases=").map(|(_, p)| p.to_owned()))
        .unwrap_or_default();
    figures.push(Figure {
        name: "publish_range_1000_ports".into(),
        unit: "ms",
        value: range_ms,
        context: format!(
            "create ({create_ms:.1} ms; µs inside plumbd: {create_phases}; 1,000 host ports held, one dual-stack socket each) and connect (one nft batch) of a sandbox publishing 30000-30999, no proxy process"
        ),
    });
    figures.push(heal_figure(&h, &outside, 1 + n + 1000));
}

/// A child process killed when dropped, also when the benchmark panics.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Connection rates with `mappings` published and with the port maps holding only the
/// measured one, alternating three times (the maps are emptied with nft and refilled by
/// deleting plumb's table, which plumbd restores).
fn alternate_map_sizes(h: &TestHost, outside: &str, mappings: usize) -> (Vec<f64>, Vec<f64>) {
    let element = h
        .sh("nft list map inet plumb dnat4")
        .stdout
        .lines()
        .flat_map(|l| l.split(','))
        .map(|e| e.trim().trim_start_matches("elements = {").trim())
        .find(|e| e.starts_with("tcp . 18080 :"))
        .map(|e| e.trim_end_matches('}').trim().to_owned())
        .unwrap_or_else(|| {
            panic!(
                "no element for 18080:\n{}",
                h.sh("nft list map inet plumb dnat4").stdout
            )
        });
    // Elements, not counting the map's own `type ... : ...` line.
    let count = || {
        let out = h.sh("nft list map inet plumb dnat4").stdout;
        out.matches(" : ").count().saturating_sub(1)
    };
    let (mut full, mut one) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        assert!(count() >= mappings - 1, "map not full: {}", count());
        full.push(connection_rate(outside, "198.51.100.3", 18080, 1.0));
        let o = h.sh(&format!(
            "nft flush map inet plumb dnat4 && nft add element inet plumb dnat4 '{{ {element} }}'"
        ));
        assert!(o.ok(), "{}", o.stderr);
        assert_eq!(count(), 1);
        one.push(connection_rate(outside, "198.51.100.3", 18080, 1.0));
        let o = h.sh("nft delete table inet plumb");
        assert!(o.ok(), "{}", o.stderr);
        let healed = (0..200).any(|_| {
            std::thread::sleep(Duration::from_millis(50));
            count() >= mappings - 1
        });
        assert!(healed, "plumbd did not restore the table:\n{}", h.log());
    }
    (full, one)
}

/// Time from `nft flush ruleset` on the host until a published port answers again (plumbd
/// notices the deleted table, loads it and every network's and port's elements back).
fn heal_figure(h: &TestHost, outside: &str, mappings: usize) -> Figure {
    let o = h.sh("nft flush ruleset");
    assert!(o.ok(), "{}", o.stderr);
    let t = Instant::now();
    let ns = outside.to_owned();
    let healed = std::thread::spawn(move || {
        let f = std::fs::File::open(format!("/run/netns/{ns}")).unwrap();
        // SAFETY: this benchmark thread alone enters the outside namespace.
        assert_eq!(unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) }, 0);
        let addr: std::net::SocketAddr = "198.51.100.1:18080".parse().unwrap();
        while t.elapsed() < Duration::from_secs(10) {
            let ok = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(20))
                .is_ok_and(|mut s| {
                    let mut a = String::new();
                    std::io::Read::read_to_string(&mut s, &mut a).is_ok() && !a.is_empty()
                });
            if ok {
                return true;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        false
    })
    .join()
    .unwrap();
    let ms = t.elapsed().as_secs_f64() * 1e3;
    assert!(healed, "not healed within 10 s:\n{}", h.log());
    Figure {
        name: "heal_after_nft_flush_ruleset".into(),
        unit: "ms",
        value: ms,
        context: format!(
            "from `nft flush ruleset` to a published port answering again, {mappings} mappings published"
        ),
    }
}
