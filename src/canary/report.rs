//! The comparison's result, as data: per route, each backend's numbers over the window and each
//! canary's verdict with its reasons; the counts of verdicts and the exit code they give.

use serde::Serialize;

use crate::canary::reason::VerdictReason;
use crate::canary::statistics::ErrorTestMethod;
use crate::canary::thresholds::Thresholds;

/// A backend's part in its route.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BackendRole {
    Primary,
    Canary,
}

/// What the window says about a backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The primary: what the canaries are compared with.
    Primary,
    /// A canary at 100%: nothing is left to compare it with.
    Promoted,
    /// Enough traffic on both sides, and neither its errors nor its p99 are worse.
    Healthy,
    /// A test could not decide: too few requests, or no primary traffic.
    NotEnoughTraffic,
    /// Significantly more errors than the primary, or a clearly higher p99.
    Worse,
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Verdict::Primary => "primary",
            Verdict::Promoted => "promoted",
            Verdict::Healthy => "healthy",
            Verdict::NotEnoughTraffic => "not enough traffic",
            Verdict::Worse => "WORSE",
        })
    }
}

/// The error test of one canary against its primary.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct ErrorTestReport {
    pub method: ErrorTestMethod,
    /// One-sided p-value of "the canary fails more often".
    pub p_value: f64,
    /// After Holm's correction across every canary of the report; worse when at most `alpha`.
    pub adjusted_p_value: f64,
    /// The plain z statistic, for people.
    pub z: Option<f64>,
}

/// One backend over the window.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BackendReport {
    /// How people know it (the Mapping, else the cluster).
    pub name: String,
    pub cluster: String,
    pub mapping: Option<String>,
    pub namespace: Option<String>,
    pub role: BackendRole,
    /// The configured share, as a percentage.
    pub weight: f64,
    pub weight_bp: u32,
    /// The observed share of the route's requests, as a percentage; `null` without requests.
    pub share: Option<f64>,
    /// Requests that finished in the window (responses of every class).
    pub requests: u64,
    pub errors_5xx: u64,
    /// Responses that were not 5xx, as a percentage; `null` without requests.
    pub success_rate: Option<f64>,
    pub requests_per_second: f64,
    pub errors_5xx_per_second: f64,
    /// Window percentiles of `upstream_rq_time`, in milliseconds; `null` without timings.
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    /// The p99 fell in the top (`+Inf`) bucket: the real one is at least `p99_ms`.
    pub p99_capped: bool,
    /// Requests in the latency histogram's window.
    pub timed_requests: u64,
    /// Whether any Envoy has stats for the cluster at all.
    pub in_envoy: bool,
    pub verdict: Verdict,
    /// Worse because of its error rate.
    pub worse_errors: bool,
    /// Worse because of its p99.
    pub worse_latency: bool,
    /// Why: each test's outcome, then what kept the tests from deciding (as words in JSON).
    pub reasons: Vec<VerdictReason>,
    /// The error test, when one ran.
    pub error_test: Option<ErrorTestReport>,
}

/// One route over the window.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RouteReport {
    pub route: String,
    pub note: Option<String>,
    /// The primary first, then the canaries in the configuration's order.
    pub backends: Vec<BackendReport>,
}

/// Every route with more than one backend over one window.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CanaryReport {
    pub window_seconds: f64,
    pub thresholds: Thresholds,
    pub routes: Vec<RouteReport>,
}

/// How many canaries got each verdict.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct VerdictCounts {
    pub worse: usize,
    pub healthy: usize,
    pub not_enough_traffic: usize,
    pub promoted: usize,
}

impl CanaryReport {
    /// Counts the canaries' verdicts.
    pub fn summary(&self) -> VerdictCounts {
        let mut s = VerdictCounts::default();
        for b in self.routes.iter().flat_map(|r| &r.backends) {
            match b.verdict {
                Verdict::Worse => s.worse += 1,
                Verdict::Healthy => s.healthy += 1,
                Verdict::NotEnoughTraffic => s.not_enough_traffic += 1,
                Verdict::Promoted => s.promoted += 1,
                Verdict::Primary => {}
            }
        }
        s
    }

    /// `status`'s exit code: 3 when a canary is worse; else 4 when one is undecided and a
    /// decision is required; else 0.
    pub fn exit_code(&self, require_decision: bool) -> u8 {
        let s = self.summary();
        if s.worse > 0 {
            3
        } else if require_decision && s.not_enough_traffic > 0 {
            4
        } else {
            0
        }
    }
}
