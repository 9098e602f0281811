//! Network removal latency (and creation beside it), and the soak: rounds of 1,000 sandboxes
//! created, connected with a published port and removed, watching plumbd's memory and open
//! files come back.

use crate::{latency_figures, median, rss_mb, Figure};
use plumb_testkit::TestHost;
use serde_json::json;
use std::time::Instant;

/// `POST /networks/create` and `DELETE /networks/{id}` through the API, `n` each, with an
/// endpoint joined and left before each removal (as a user's network has had one).
pub fn netrm_figures(figures: &mut Vec<Figure>, n: usize) {
    let h = TestHost::started();
    let (st, v) = h.api("POST", "/plumb/v1/sandboxes", Some(&json!({"Name": "sb"})));
    assert_eq!(st, 201, "{v}");
    let (mut create, mut remove) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for i in 0..n {
        // The same name and subnet every time: usable again as soon as removal returns.
        let body = json!({"Name": "again", "IPAM": {"Config": [{"Subnet": "10.77.0.0/24"}]}});
        let t = Instant::now();
        let (st, v) = h.api("POST", "/networks/create", Some(&body));
        create.push(t.elapsed().as_secs_f64() * 1e3);
        assert_eq!(st, 201, "round {i}: {v}");
        let (st, v) = h.api(
            "POST",
            "/networks/again/connect",
            Some(&json!({"Container": "sb"})),
        );
        assert_eq!(st, 200, "{v}");
        let (st, v) = h.api(
            "POST",
            "/networks/again/disconnect",
            Some(&json!({"Container": "sb"})),
        );
        assert_eq!(st, 200, "{v}");
        let t = Instant::now();
        let (st, v) = h.api("DELETE", "/networks/again", None);
        remove.push(t.elapsed().as_secs_f64() * 1e3);
        assert_eq!(st, 204, "{v}");
    }
    let from = figures.len();
    latency_figures(figures, "network_create", &create, n);
    latency_figures(figures, "network_rm", &remove, n);
    for f in &mut figures[from..] {
        f.context = format!(
            "{n} rounds through the API: the same name and subnet each round, an endpoint joined and left before removal"
        );
    }
    let ratio = median(&remove) / median(&create);
    figures.push(Figure {
        name: "network_rm_over_create".into(),
        unit: "ratio",
        value: ratio,
        context: "medians, same run (removal was 13x creation before deferring device deletion)"
            .into(),
    });
}

/// Open file descriptors of `pid`.
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// `rounds` rounds of `n` sandboxes created, connected with one published port each, and
/// removed; plumbd's RSS and open files after each round.
pub fn soak_figures(figures: &mut Vec<Figure>, n: usize, rounds: usize) {
    let h = TestHost::started();
    let pid = h.daemon_pid().unwrap();
    let (st, v) = h.api(
        "POST",
        "/networks/create",
        Some(&json!({"Name": "soak", "IPAM": {"Config": [{"Subnet": "10.96.0.0/16"}]}})),
    );
    assert_eq!(st, 201, "{v}");
    let fds_start = open_fds(pid);
    let rss_start = rss_mb(pid);
    let mut rss = Vec::new();
    let mut peak = Vec::new();
    let mut fds = Vec::new();
    for round in 0..rounds {
        for i in 0..n {
            let name = format!("s{i}");
            let body = json!({"Name": name, "Ports": [format!("{}:80", 20000 + i)]});
            let (st, v) = h.api("POST", "/plumb/v1/sandboxes", Some(&body));
            assert_eq!(st, 201, "round {round}: {v}");
            let (st, v) = h.api(
                "POST",
                "/networks/soak/connect",
                Some(&json!({"Container": name})),
            );
            assert_eq!(st, 200, "round {round}: {v}");
        }
        peak.push(rss_mb(pid));
        for i in 0..n {
            let (st, v) = h.api("DELETE", &format!("/plumb/v1/sandboxes/s{i}"), None);
            assert_eq!(st, 204, "round {round}: {v}");
        }
        // The allocator hands freed pages back after a decay time (one second in plumbd).
        std::thread::sleep(std::time::Duration::from_secs(2));
        rss.push(rss_mb(pid));
        fds.push(open_fds(pid));
        eprintln!(
            "soak round {}: rss {:.1} MB with {n} sandboxes, {:.1} MB 2 s after removing them, {} open files",
            round + 1,
            peak[round],
            rss[round],
            fds[round]
        );
    }
    let context = format!(
        "{rounds} rounds of {n} sandboxes, each connected with a published port, then removed"
    );
    figures.push(Figure {
        name: "soak_rss_start".into(),
        unit: "MB",
        value: rss_start,
        context: "after start and one network".into(),
    });
    for (i, r) in rss.iter().enumerate() {
        figures.push(Figure {
            name: format!("soak_rss_after_round_{}", i + 1),
            unit: "MB",
            value: *r,
            context: context.clone(),
        });
    }
    if let Some(p) = peak.last() {
        figures.push(Figure {
            name: "soak_rss_with_all_sandboxes_last_round".into(),
            unit: "MB",
            value: *p,
            context: context.clone(),
        });
    }
    if let (Some(first), Some(last)) = (rss.first(), rss.last()) {
        figures.push(Figure {
            name: "soak_rss_last_over_first_round".into(),
            unit: "ratio",
            value: last / first,
            context: format!("{context} (target: within 1.10)"),
        });
    }
    figures.push(Figure {
        name: "soak_open_files_after_last_round_minus_start".into(),
        unit: "files",
        value: fds.last().copied().unwrap_or(0) as f64 - fds_start as f64,
        context: format!("{context}; {fds_start} at start"),
    });
}
