//! Counters of the resolver, rendered in the Prometheus text format.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

/// Resolver counters.
#[derive(Default)]
pub struct Metrics {
    /// Queries received.
    pub queries: AtomicU64,
    /// Answers by response code 0..=5.
    pub rcodes: [AtomicU64; 6],
    /// Queries answered from the name index.
    pub local: AtomicU64,
    /// Queries sent upstream.
    pub forwarded: AtomicU64,
    /// Forwarded queries that no upstream answered.
    pub upstream_failures: AtomicU64,
    /// Sum of upstream round trips, microseconds.
    pub upstream_latency_us: AtomicU64,
    /// Upstream answers counted in the sum.
    pub upstream_answers: AtomicU64,
    /// Queries refused because too many were in flight.
    pub overload: AtomicU64,
}

const RCODE_NAMES: [&str; 6] = [
    "NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED",
];

impl Metrics {
    /// Counts an answer with this response code.
    pub fn answered(&self, rcode: u8) {
        if let Some(c) = self.rcodes.get(rcode as usize) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The Prometheus text exposition of every counter.
    pub fn render(&self) -> String {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut s = String::new();
        let _ = writeln!(
            s,
            "# HELP plumb_dns_queries_total DNS queries received by sandbox resolvers."
        );
        let _ = writeln!(s, "# TYPE plumb_dns_queries_total counter");
        let _ = writeln!(s, "plumb_dns_queries_total {}", g(&self.queries));
        let _ = writeln!(
            s,
            "# HELP plumb_dns_responses_total DNS responses by response code."
        );
        let _ = writeln!(s, "# TYPE plumb_dns_responses_total counter");
        for (i, name) in RCODE_NAMES.iter().enumerate() {
            let _ = writeln!(
                s,
                "plumb_dns_responses_total{{rcode=\"{name}\"}} {}",
                g(&self.rcodes[i])
            );
        }
        let _ = writeln!(s, "# TYPE plumb_dns_local_answers_total counter");
        let _ = writeln!(s, "plumb_dns_local_answers_total {}", g(&self.local));
        let _ = writeln!(s, "# TYPE plumb_dns_forwarded_total counter");
        let _ = writeln!(s, "plumb_dns_forwarded_total {}", g(&self.forwarded));
        let _ = writeln!(s, "# TYPE plumb_dns_upstream_failures_total counter");
        let _ = writeln!(
            s,
            "plumb_dns_upstream_failures_total {}",
            g(&self.upstream_failures)
        );
        let _ = writeln!(s, "# TYPE plumb_dns_overload_total counter");
        let _ = writeln!(s, "plumb_dns_overload_total {}", g(&self.overload));
        let _ = writeln!(
            s,
            "# HELP plumb_dns_upstream_latency_seconds Upstream round trips."
        );
        let _ = writeln!(s, "# TYPE plumb_dns_upstream_latency_seconds summary");
        let _ = writeln!(
            s,
            "plumb_dns_upstream_latency_seconds_sum {}",
            g(&self.upstream_latency_us) as f64 / 1e6
        );
        let _ = writeln!(
            s,
            "plumb_dns_upstream_latency_seconds_count {}",
            g(&self.upstream_answers)
        );
        s
    }
}
