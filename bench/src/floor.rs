//! The kernel's own floor for a bridge port: the same operations plumbd's bridge driver asks
//! for on the host side (a veth whose peer goes into a sandbox namespace, enslaved to the
//! bridge at creation with one queue each way, then brought up), issued by `ip -batch` with no plumbd at all, in
//! batches of 100 as the bridge fills. Its growth is what no user-space design removes.

use crate::Figure;
use plumb_testkit::TestHost;
use std::process::Command;
use std::time::Instant;

/// Namespaces removed (in one batch) when dropped.
struct Namespaces(Vec<String>);

impl Drop for Namespaces {
    fn drop(&mut self) {
        let script: String = self.0.iter().map(|n| format!("netns del {n}\n")).collect();
        ip_batch(None, &script);
    }
}

/// Runs `ip [-n ns] -force -batch -` over `script`; the wall time in microseconds.
fn ip_batch(ns: Option<&str>, script: &str) -> f64 {
    let path = std::env::temp_dir().join(format!("plumb-floor-{}.batch", std::process::id()));
    std::fs::write(&path, script).unwrap();
    let mut c = Command::new("ip");
    if let Some(ns) = ns {
        c.args(["-n", ns]);
    }
    let t = Instant::now();
    let out = c.args(["-force", "-batch"]).arg(&path).output().unwrap();
    let us = t.elapsed().as_secs_f64() * 1e6;
    let _ = std::fs::remove_file(&path);
    assert!(
        out.status.success(),
        "ip -batch: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    us
}

/// Adds the kernel-floor figures for `n` bridge ports (a multiple of 100).
pub fn floor_figures(figures: &mut Vec<Figure>, n: usize) {
    let h = TestHost::new();
    let o = h.sh("ip link add brf type bridge mcast_snooping 0 && ip link set brf address 0e:00:00:00:00:01 up");
    assert!(o.ok(), "bridge: {}", o.stderr);
    // Named under the test prefix, so that the start-up sweep removes them after a crash.
    let names: Vec<String> = (0..n).map(|i| format!("{}-f{i}", h.ns)).collect();
    let ns = Namespaces(names);
    ip_batch(
        None,
        &ns.0
            .iter()
            .map(|n| format!("netns add {n}\n"))
            .collect::<String>(),
    );
    let batches = n / 100;
    let (mut add, mut up) = (Vec::new(), Vec::new());
    for b in 0..batches {
        let range = b * 100..(b + 1) * 100;
        let adds: String = range
            .clone()
            .map(|i| {
                format!(
                    "link add pf{i} numtxqueues 1 numrxqueues 1 master brf type veth peer name eth0 netns {} numtxqueues 1 numrxqueues 1\n",
                    ns.0[i]
                )
            })
            .collect();
        let ups: String = range.map(|i| format!("link set pf{i} up\n")).collect();
        add.push(ip_batch(Some(&h.ns), &adds) / 100.0);
        up.push(ip_batch(Some(&h.ns), &ups) / 100.0);
    }
    let both: Vec<f64> = add.iter().zip(&up).map(|(a, u)| a + u).collect();
    figures.push(Figure {
        name: "kernel_floor_slope".into(),
        unit: "µs per 1,000 ports",
        value: crate::slope(&both) * (1000.0 / 100.0),
        context: format!(
            "least-squares growth of veth creation + port up per port, batches of 100 up to {n} ports"
        ),
    });
    for (what, v) in [("add_enslaved_veth", &add), ("set_port_up", &up)] {
        let (first, last) = (v[0], v[batches - 1]);
        figures.push(Figure {
            name: format!("kernel_floor_{what}_last100_over_first100"),
            unit: "ratio",
            value: last / first,
            context: format!(
                "ip -batch, no plumbd: {last:.0} µs per port at {n} ports, {first:.0} µs at the first 100"
            ),
        });
    }
    drop(ns);
}
