//! The crash driver: random operations against a plumbd that is killed with SIGKILL at random
//! moments (also in the middle of a request), restarted, and checked after every restart:
//!
//! - nothing acknowledged is lost and nothing refused or removed comes back;
//! - no address is held twice in a network;
//! - every joined endpoint is plumbed in its sandbox with its address;
//! - plumb's DNAT maps hold exactly the published ports of sandboxes that have a gateway;
//! - the host namespace holds exactly one plumb veth per joined endpoint and one marked bridge
//!   per network (once background deletions are done), and the furniture is untouched.
//!
//! The test suite runs a short form, `plumb-bench crash` a long one.

use crate::{Rng, TestHost};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

/// Networks the driver connects sandboxes to.
const NETWORKS: [&str; 3] = ["ca", "cb", "cc"];
/// At most this many sandboxes exist at once.
const MAX_SANDBOXES: usize = 10;

/// What a run did.
#[derive(Debug, Default, Clone)]
pub struct CrashReport {
    /// Operations sent.
    pub operations: usize,
    /// Times plumbd was killed with SIGKILL.
    pub kills: usize,
    /// Of those, kills that landed while a request was in flight (its outcome unknown).
    pub kills_mid_request: usize,
    /// Restarts, each followed by the invariant checks.
    pub checks: usize,
}

/// What the driver knows for sure: sandboxes and the networks each is connected to, and its
/// published host port.
#[derive(Debug, Default, Clone, PartialEq)]
struct Model {
    sandboxes: BTreeMap<String, (BTreeSet<String>, Option<u16>)>,
}

/// One operation.
#[derive(Debug, Clone)]
enum Op {
    Create { name: String, port: Option<u16> },
    Remove { name: String },
    Connect { name: String, net: String },
    Disconnect { name: String, net: String },
}

/// Runs `ops` random operations with seed `seed`, killing plumbd before about one in
/// `kill_every` of them. Panics with the seed and what broke when an invariant fails.
pub fn run(ops: usize, kill_every: u64, seed: u64) -> CrashReport {
    let mut h = TestHost::new();
    h.furnish();
    let furniture = h.furnishings();
    h.start();
    for (i, n) in NETWORKS.iter().enumerate() {
        let body =
            json!({"Name": n, "IPAM": {"Config": [{"Subnet": format!("10.{}.0.0/24", 110 + i)}]}});
        let (st, v) = h.api("POST", "/networks/create", Some(&body));
        assert_eq!(st, 201, "{v}");
    }
    let mut rng = Rng(seed | 1);
    let mut model = Model::default();
    let mut report = CrashReport::default();
    let mut next_port = 30000u16;
    for i in 0..ops {
        let Some(op) = pick(&mut rng, &model, &mut next_port) else {
            continue;
        };
        report.operations += 1;
        let kill = rng.below(kill_every as usize) == 0;
        let delay = Duration::from_micros(rng.below(4000) as u64);
        let killer = kill.then(|| {
            let pid = h.daemon_pid().unwrap_or(0) as i32;
            std::thread::spawn(move || {
                std::thread::sleep(delay);
                // SAFETY: signalling the test's own plumbd.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            })
        });
        let (st, v) = send(&h, &op);
        if let Some(k) = killer {
            let _ = k.join();
            report.kills += 1;
            h.kill9();
            h.start();
            let outcome_known = st != 0;
            if outcome_known {
                apply(&mut model, &op, st, &v, seed, i);
            } else {
                report.kills_mid_request += 1;
                settle(&h, &mut model, &op);
            }
            report.checks += 1;
            check(&h, &model, &furniture, seed, i);
        } else {
            apply(&mut model, &op, st, &v, seed, i);
        }
    }
    h.kill9();
    h.start();
    report.checks += 1;
    check(&h, &model, &furniture, seed, ops);
    report
}

/// A random operation that makes sense for the model (None when there is nothing to do).
fn pick(rng: &mut Rng, m: &Model, next_port: &mut u16) -> Option<Op> {
    let names: Vec<&String> = m.sandboxes.keys().collect();
    let any = |rng: &mut Rng| names[rng.below(names.len())].clone();
    match rng.below(10) {
        0..=2 if m.sandboxes.len() < MAX_SANDBOXES => {
            let name = format!("s{}", rng.below(1000));
            let port = (rng.below(2) == 0).then(|| {
                *next_port += 1;
                *next_port
            });
            Some(Op::Create { name, port })
        }
        3 if !names.is_empty() => Some(Op::Remove { name: any(rng) }),
        4..=6 if !names.is_empty() => {
            let name = any(rng);
            let net = NETWORKS[rng.below(3)].to_owned();
            Some(Op::Connect { name, net })
        }
        _ if !names.is_empty() => {
            let name = any(rng);
            let joined: Vec<&String> = m.sandboxes[&name].0.iter().collect();
            let net = joined.get(rng.below(joined.len()))?;
            Some(Op::Disconnect {
                name,
                net: (*net).clone(),
            })
        }
        _ => None,
    }
}

fn send(h: &TestHost, op: &Op) -> (u16, Value) {
    match op {
        Op::Create { name, port } => {
            let ports: Vec<String> = port.iter().map(|p| format!("{p}:80")).collect();
            h.api(
                "POST",
                "/plumb/v1/sandboxes",
                Some(&json!({"Name": name, "Ports": ports})),
            )
        }
        Op::Remove { name } => h.api("DELETE", &format!("/plumb/v1/sandboxes/{name}"), None),
        Op::Connect { name, net } => h.api(
            "POST",
            &format!("/networks/{net}/connect"),
            Some(&json!({"Container": name})),
        ),
        Op::Disconnect { name, net } => h.api(
            "POST",
            &format!("/networks/{net}/disconnect"),
            Some(&json!({"Container": name})),
        ),
    }
}

/// Records an answered operation; a 5xx is a failure of plumb, a 4xx must be one the model
/// predicts (a name taken, a sandbox connected already).
fn apply(m: &mut Model, op: &Op, st: u16, v: &Value, seed: u64, i: usize) {
    assert!(
        st < 500,
        "seed {seed} op {i} {op:?}: plumbd failed with {st}: {v}"
    );
    let ok = (200..300).contains(&st);
    match op {
        Op::Create { name, port } => {
            if ok {
                m.sandboxes.insert(name.clone(), (BTreeSet::new(), *port));
            } else {
                assert!(
                    m.sandboxes.contains_key(name),
                    "seed {seed} op {i} {op:?}: refused with {st}: {v}"
                );
            }
        }
        Op::Remove { name } => {
            assert!(ok, "seed {seed} op {i} {op:?}: {st} {v}");
            m.sandboxes.remove(name);
        }
        Op::Connect { name, net } => {
            let joined = m.sandboxes.get(name).is_some_and(|s| s.0.contains(net));
            if ok {
                assert!(!joined, "seed {seed} op {i} {op:?}: connected twice");
                if let Some(s) = m.sandboxes.get_mut(name) {
                    s.0.insert(net.clone());
                }
            } else {
                assert!(joined, "seed {seed} op {i} {op:?}: refused with {st}: {v}");
            }
        }
        Op::Disconnect { name, net } => {
            assert!(ok, "seed {seed} op {i} {op:?}: {st} {v}");
            if let Some(s) = m.sandboxes.get_mut(name) {
                s.0.remove(net);
            }
        }
    }
}

/// After a kill in the middle of `op`, takes what plumbd has for the one object it touched:
/// either outcome is right, half of one is not (the checks see that).
fn settle(h: &TestHost, m: &mut Model, op: &Op) {
    let name = match op {
        Op::Create { name, .. }
        | Op::Remove { name }
        | Op::Connect { name, .. }
        | Op::Disconnect { name, .. } => name,
    };
    let (st, v) = h.api("GET", &format!("/plumb/v1/sandboxes/{name}"), None);
    if st == 404 {
        m.sandboxes.remove(name);
        return;
    }
    let nets: BTreeSet<String> = v["Endpoints"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["Network"].as_str().map(str::to_owned))
        .collect();
    let port = match op {
        Op::Create { port, .. } => *port,
        _ => m.sandboxes.get(name).and_then(|s| s.1),
    };
    m.sandboxes.insert(name.clone(), (nets, port));
}

/// Checks every invariant against plumbd's answers and the kernel.
fn check(h: &TestHost, m: &Model, furniture: &str, seed: u64, i: usize) {
    let ctx = format!("seed {seed}, after op {i}");
    let (st, list) = h.api("GET", "/plumb/v1/sandboxes", None);
    assert_eq!(st, 200, "{ctx}: {list}");
    let mut seen = Model::default();
    let mut addresses: BTreeMap<(String, String), String> = BTreeMap::new();
    let mut joined = 0;
    let mut published = 0;
    for sb in list.as_array().into_iter().flatten() {
        let name = sb["Name"].as_str().unwrap_or_default().to_owned();
        let key = sb["Key"].as_str().unwrap_or_default();
        let ports = sb["Ports"].as_array().map(Vec::len).unwrap_or(0);
        let mut nets = BTreeSet::new();
        let in_ns = h
            .sh(&format!("nsenter --net={key} ip -o -4 addr show"))
            .stdout;
        for ep in sb["Endpoints"].as_array().into_iter().flatten() {
            let net = ep["Network"].as_str().unwrap_or_default().to_owned();
            let addr = ep["IPv4Address"].as_str().unwrap_or_default().to_owned();
            assert!(
                in_ns.contains(&format!(" {addr} ")),
                "{ctx}: {name} on {net} should have {addr} in its namespace:\n{in_ns}"
            );
            if let Some(other) = addresses.insert((net.clone(), addr.clone()), name.clone()) {
                panic!("{ctx}: {addr} on {net} is held by {name} and {other}");
            }
            nets.insert(net);
            joined += 1;
        }
        if !nets.is_empty() {
            published += ports;
        }
        let port = sb["Ports"][0]
            .as_str()
            .and_then(|p| p.split(':').rev().nth(1))
            .and_then(|p| p.parse().ok());
        seen.sandboxes.insert(name, (nets, port));
    }
    assert_eq!(
        &seen, m,
        "{ctx}: plumbd's sandboxes are not what was acknowledged"
    );
    let dnat = h.sh("nft list map inet plumb dnat4").stdout;
    assert_eq!(
        dnat.matches("tcp . ").count(),
        published,
        "{ctx}: the DNAT map should hold exactly the published ports:\n{dnat}"
    );
    // Disconnects and removals delete devices in the background: wait until they are done.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        // The furniture's pv0123456789ab looks like plumb's but is not.
        let veths = h
            .sh("ip -o link show type veth | grep ': pv[0-9a-f]\\{12\\}@' | grep -vc pv0123456789ab || true")
            .stdout;
        let bridges = h
            .sh("ip -o -d link show type bridge | grep -c 'alias plumb:' || true")
            .stdout;
        let (veths, bridges): (usize, usize) = (
            veths.trim().parse().unwrap_or(0),
            bridges.trim().parse().unwrap_or(0),
        );
        // The three networks and the predefined bridge.
        if veths == joined && bridges == NETWORKS.len() + 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{ctx}: host has {veths} plumb veths for {joined} endpoints and {bridges} marked bridges:\n{}",
            h.sh("ip -o -d link show").stdout
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        h.furnishings(),
        furniture,
        "{ctx}: the host's own links changed"
    );
}
