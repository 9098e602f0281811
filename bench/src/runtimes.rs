//! Runtimes: what plumb's networking adds to `podman run` (through plumb-cni) against what
//! Podman's own default network (the CNI bridge plugins) adds, both over `--network none`, in
//! one interleaved run; and one CNI ADD and DEL through plumb-cni, process start included, as
//! a runtime execs it.

use crate::{median, percentile, Figure};
use plumb_testkit::{bin_dir, Podman, TestHost};
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Instant;

/// Milliseconds of one `podman run --rm --network NET localhost/bb:1 true`.
fn podman_run(p: &Podman, network: &str) -> f64 {
    let t = Instant::now();
    let o = p.run(&format!("run --rm --network {network} localhost/bb:1 true"));
    let ms = t.elapsed().as_secs_f64() * 1000.0;
    assert!(o.ok(), "podman run --network {network}: {}", o.stderr);
    ms
}

/// Milliseconds of plumb-cni running `command` for container `id` in `netns`.
fn cni(h: &TestHost, command: &str, id: &str, netns: &str) -> f64 {
    let conf = serde_json::json!({"cniVersion": "1.0.0", "name": "bench", "type": "plumb",
        "network": "bench", "socket": h.socket.display().to_string()});
    let t = Instant::now();
    let mut c = Command::new(bin_dir().join("plumb-cni"))
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", id)
        .env("CNI_NETNS", netns)
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", bin_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("plumb-cni built (cargo build --release -p plumb-cni)");
    c.stdin
        .take()
        .unwrap()
        .write_all(conf.to_string().as_bytes())
        .unwrap();
    let out = c.wait_with_output().unwrap();
    let ms = t.elapsed().as_secs_f64() * 1000.0;
    assert!(
        out.status.success(),
        "plumb-cni {command}: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    ms
}

/// Podman runs (`runs` of each kind, interleaved) and `runs * 10` CNI ADD/DEL pairs.
pub fn runtime_figures(figures: &mut Vec<Figure>, runs: usize) {
    let mut h = TestHost::started();
    h.plumb_ok(&["network", "create", "--subnet", "10.62.0.0/16", "bench"]);
    {
        let p = Podman::new(&h, &["bench"]);
        // The first run of each kind sets up caches (and Podman's default bridge): not counted.
        for net in ["none", "bench", "podman"] {
            podman_run(&p, net);
        }
        let (mut none, mut plumb, mut default) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..runs {
            none.push(podman_run(&p, "none"));
            plumb.push(podman_run(&p, "bench"));
            default.push(podman_run(&p, "podman"));
        }
        let (n, pl, d) = (median(&none), median(&plumb), median(&default));
        let context = format!(
            "podman {} run --rm localhost/bb:1 true, CNI backend, {runs} runs of each interleaved: none {n:.1} ms, plumb-cni {pl:.1} ms, default (CNI bridge, portmap, firewall, tuning) {d:.1} ms",
            h.sh("podman --version | cut -d' ' -f3").stdout.trim()
        );
        for (name, value) in [
            ("podman_run_none_ms_p50", n),
            ("podman_run_plumb_ms_p50", pl),
            ("podman_run_default_ms_p50", d),
            ("podman_network_share_plumb_ms", pl - n),
            ("podman_network_share_default_ms", d - n),
        ] {
            figures.push(Figure {
                name: name.into(),
                unit: "ms",
                value,
                context: context.clone(),
            });
        }
        figures.push(Figure {
            name: "podman_network_share_ratio".into(),
            unit: "ratio",
            value: (pl - n) / (d - n),
            context: "plumb's networking share of a podman run over the default network's (target <= 0.2)".into(),
        });
    }

    // Every container has a namespace of its own, made by the runtime before ADD.
    let ns = h.adopt_namespace("cni");
    let netns = format!("/run/netns/{ns}");
    let (mut add, mut del) = (Vec::new(), Vec::new());
    for i in 0..runs * 10 {
        let id = format!("bench{i}");
        assert!(h.sh(&format!("ip netns add {ns}")).ok());
        add.push(cni(&h, "ADD", &id, &netns));
        del.push(cni(&h, "DEL", &id, &netns));
        assert!(h.sh(&format!("ip netns del {ns}")).ok());
    }
    add.sort_by(f64::total_cmp);
    del.sort_by(f64::total_cmp);
    for (name, v) in [("cni_add", &add), ("cni_del", &del)] {
        figures.push(Figure {
            name: format!("{name}_ms_p50"),
            unit: "ms",
            value: percentile(v, 0.5),
            context: format!(
                "plumb-cni exec'd as a runtime does (env + stdin), process start included, {} times, each in a new namespace (p90 {:.2} ms)",
                v.len(),
                percentile(v, 0.9)
            ),
        });
    }
}
