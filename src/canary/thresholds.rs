//! The thresholds a verdict is judged by.

use serde::Serialize;

/// What makes a canary worse, and how much traffic a verdict needs.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Thresholds {
    /// The family-wise false-positive rate of the error test per window, across every canary
    /// of every route (Holm's correction).
    pub alpha: f64,
    /// The canary's p99 must exceed the primary's by this factor...
    pub p99_ratio: f64,
    /// ...and by this many milliseconds, to be worse.
    pub p99_margin_ms: f64,
    /// The fewest requests on each side (and timed requests, for latency) for a verdict of
    /// healthy, and for the latency test at all.
    pub min_requests: u64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            alpha: 0.01,
            p99_ratio: 1.5,
            p99_margin_ms: 10.0,
            min_requests: 200,
        }
    }
}
