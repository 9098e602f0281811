//! Remote drivers: the cost of one call over the unix socket (plumb's client against a
//! no-op plugin made with plumb-plugin's server kit, in this process), and a connect through
//! a remote network driver and remote IPAM (the example plugins, Python, in the host's
//! namespace) against the same connect through the built-in bridge driver, with the plugins'
//! own time (logged by each plugin per call) taken out.

use crate::overlay::connect;
use crate::{median, percentile, Figure};
use plumb_plugin::messages::*;
use plumb_plugin::server::{Answer, IpamPlugin, PluginServer};
use plumb_plugin::{Discovery, PluginAddr, PluginClient};
use plumb_testkit::{PluginProc, TestHost};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Answers every call at once.
struct Noop;

#[async_trait::async_trait]
impl IpamPlugin for Noop {
    async fn request_pool(&self, _: RequestPoolRequest) -> Answer<RequestPoolResponse> {
        Ok(RequestPoolResponse {
            pool_id: "p".into(),
            pool: "10.0.0.0/24".into(),
            data: None,
        })
    }
    async fn release_pool(&self, _: ReleasePoolRequest) -> Answer<()> {
        Ok(())
    }
    async fn request_address(&self, _: RequestAddressRequest) -> Answer<RequestAddressResponse> {
        Ok(RequestAddressResponse {
            address: "10.0.0.2/24".into(),
            data: None,
        })
    }
    async fn release_address(&self, _: ReleaseAddressRequest) -> Answer<()> {
        Ok(())
    }
}

/// Milliseconds of `calls` RequestAddress calls to a no-op plugin, sorted.
fn call_overhead(calls: usize) -> Vec<f64> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("noop.sock");
        let l = tokio::net::UnixListener::bind(&sock).unwrap();
        let server = tokio::spawn(PluginServer::new().ipam(Arc::new(Noop)).serve(l));
        let client = PluginClient::new(
            "noop",
            PluginAddr::Unix(sock),
            Discovery::new(Vec::new()),
            Duration::from_secs(5),
        );
        client.activate().await.unwrap();
        let req = RequestAddressRequest {
            pool_id: "p".into(),
            ..Default::default()
        };
        let mut ms = Vec::with_capacity(calls);
        for _ in 0..calls {
            let t = Instant::now();
            let _: RequestAddressResponse = client
                .call("IpamDriver.RequestAddress", Some(&req))
                .await
                .unwrap();
            ms.push(t.elapsed().as_secs_f64() * 1e3);
        }
        server.abort();
        ms.sort_by(f64::total_cmp);
        ms
    })
}

/// The plugin's own milliseconds per connect: the calls logged, four per connect.
fn plugin_ms(p: &PluginProc) -> Vec<f64> {
    let lines = std::fs::read_to_string(&p.log).unwrap_or_default();
    let per_call: Vec<f64> = lines
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["ms"].as_f64())
        .collect();
    per_call.chunks(4).map(|c| c.iter().sum()).collect()
}

/// Milliseconds the kernel takes to move one interface into another namespace (what Docker's
/// remote-driver protocol makes every join do: the plugin's interface is made in the host's
/// namespace), `k` moves with `ip -batch` in `h`.
fn move_floor(h: &TestHost, k: usize) -> f64 {
    let target = format!("{}-mv", h.ns);
    assert!(h.sh(&format!("ip netns add {target}")).ok());
    let mut make = String::new();
    let mut moves = String::new();
    for i in 0..k {
        make.push_str(&format!("link add mva{i} type veth peer name mvb{i}\n"));
        moves.push_str(&format!("link set mvb{i} netns {target}\n"));
    }
    let batch = |name: &str, text: &str| {
        let f = h.dir.join(name);
        std::fs::write(&f, text).unwrap();
        let t = Instant::now();
        let o = h.sh(&format!("ip -batch {}", f.display()));
        assert!(o.ok(), "ip -batch: {}", o.stderr);
        t.elapsed().as_secs_f64() * 1e3
    };
    batch("make.batch", &make);
    let ms = batch("move.batch", &moves);
    let _ = h.sh(&format!("ip netns del {target}"));
    ms / k as f64
}

/// The plugins section: `n` connects each way.
pub fn plugin_figures(figures: &mut Vec<Figure>, n: usize) {
    let calls = call_overhead(2000);
    figures.push(Figure {
        name: "plugin_call_ms_p50".into(),
        unit: "ms",
        value: median(&calls),
        context: format!(
            "IpamDriver.RequestAddress to a no-op plugin over a unix socket, 2,000 calls (p99 {:.3} ms): connect, HTTP/1.1 request, JSON both ways",
            percentile(&calls, 0.99)
        ),
    });

    let h = TestHost::started();
    let p = PluginProc::start(&h, "tests/plugins/misbehave.py", "both");
    h.plumb_ok(&["network", "create", "--subnet", "10.61.0.0/16", "local"]);
    h.plumb_ok(&[
        "network",
        "create",
        "-d",
        "both",
        "--ipam-driver",
        "both",
        "remote",
    ]);
    let bridge: Vec<f64> = (0..n)
        .map(|i| connect(&h, "local", &format!("b{i}")).0)
        .collect();
    p.clear_log();
    let remote: Vec<f64> = (0..n)
        .map(|i| connect(&h, "remote", &format!("r{i}")).0)
        .collect();
    let own = plugin_ms(&p);
    assert_eq!(own.len(), n, "four plugin calls per connect");
    let net: Vec<f64> = remote.iter().zip(&own).map(|(r, o)| r - o).collect();
    let (b, r, o, x) = (median(&bridge), median(&remote), median(&own), median(&net));
    let mv = move_floor(&h, 50);
    figures.push(Figure {
        name: "plugin_connect_ms_p50".into(),
        unit: "ms",
        value: r,
        context: format!(
            "connect through a remote driver and remote IPAM (the Python examples, {n} connects): RequestAddress, CreateEndpoint, Join, ProgramExternalConnectivity"
        ),
    });
    figures.push(Figure {
        name: "plugin_own_ms_p50".into(),
        unit: "ms",
        value: o,
        context: "the plugins' own time in those four calls, as they log it".into(),
    });
    figures.push(Figure {
        name: "kernel_netns_move_ms".into(),
        unit: "ms",
        value: mv,
        context: "the kernel moving one veth end into another namespace (ip -batch, 50 moves, no plumbd): a remote driver's join needs one, the bridge driver's none".into(),
    });
    figures.push(Figure {
        name: "plugin_connect_over_bridge_less_move_ms".into(),
        unit: "ms",
        value: x - b - mv,
        context: "the same difference less the kernel's move: plumb's own cost of the plugin protocol per connect".into(),
    });
    figures.push(Figure {
        name: "plugin_connect_over_bridge_ms".into(),
        unit: "ms",
        value: x - b,
        context: format!(
            "median of (remote connect - the plugins' own time) {x:.2} ms minus the bridge driver's connect median {b:.2} ms ({n} each)"
        ),
    });
}
