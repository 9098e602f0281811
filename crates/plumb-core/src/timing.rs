//! Per-phase timing of one operation, logged at debug level under the `plumb::timing`
//! target, so that a benchmark can tell which step of a connect grows.

use std::time::Instant;

/// At most this many phases are kept for one operation.
const MAX_PHASES: usize = 32;

/// The phases of the operation in progress, in the order they ended. Records nothing unless
/// started while `plumb::timing` debug logging is on.
#[derive(Clone)]
pub struct Phases {
    active: bool,
    last: Instant,
    marks: Vec<(&'static str, u32)>,
}

impl Default for Phases {
    fn default() -> Self {
        Phases {
            active: false,
            last: Instant::now(),
            marks: Vec::new(),
        }
    }
}

impl Phases {
    /// Starts timing a new operation (forgetting one that ended without `finish`).
    pub fn start(&mut self) {
        self.marks.clear();
        self.active = tracing::enabled!(target: "plumb::timing", tracing::Level::DEBUG);
        if self.active {
            self.last = Instant::now();
        }
    }

    /// Ends the phase called `name`.
    pub fn mark(&mut self, name: &'static str) {
        if !self.active || self.marks.len() >= MAX_PHASES {
            return;
        }
        let now = Instant::now();
        let us = now.duration_since(self.last).as_micros();
        self.marks
            .push((name, u32::try_from(us).unwrap_or(u32::MAX)));
        self.last = now;
    }

    /// Logs the phases of operation `op` as `phase=microseconds` pairs and stops timing.
    pub fn finish(&mut self, op: &'static str) {
        if self.active {
            let line: Vec<String> = self
                .marks
                .iter()
                .map(|(n, us)| format!("{n}={us}"))
                .collect();
            tracing::debug!(target: "plumb::timing", op, phases = %line.join(" "));
        }
        self.active = false;
        self.marks.clear();
    }
}
