//! Live traffic per backend, as the page's "Live traffic" section shows it: plain data, filled
//! from Envoys' stats by whoever reads them (`AdminState::set_live`), rendered by `page`.
//!
//! Nothing here reads Envoy or computes a verdict: it is the hand-over point between the canary
//! stage's comparison (turned into this by `live_task`) and the page.

use std::time::{Duration, SystemTime};

use serde::Serialize;

/// One reading of live traffic: every canary route's backends over one window.
#[derive(Clone, Debug, Serialize)]
pub struct LiveTraffic {
    /// When the window ended.
    pub taken_at: SystemTime,
    /// How long the window was (counters are deltas over it).
    pub window: Duration,
    /// Routes with more than one backend, in the route table's order.
    pub routes: Vec<LiveRoute>,
    /// Envoy admin endpoints that could not be read, with why; shown above the table.
    pub problems: Vec<String>,
}

/// One route's backends.
#[derive(Clone, Debug, Serialize)]
pub struct LiveRoute {
    pub fleet: String,
    /// The route as people read it: `/qotm/`, with its host, method and header matchers.
    pub route: String,
    pub backends: Vec<LiveBackend>,
}

/// One backend over the window.
#[derive(Clone, Debug, Serialize)]
pub struct LiveBackend {
    /// The Mapping (`name`, or `name.namespace` outside `default`).
    pub mapping: String,
    /// Its Envoy cluster, whose stats these are.
    pub cluster: String,
    /// The backend every canary of the route is compared with.
    pub primary: bool,
    /// The configured share in hundredths of a percent.
    pub configured_bp: u32,
    /// The observed share of the route's requests (0 to 1); `None` without requests.
    pub observed_share: Option<f64>,
    /// Requests in the window.
    pub requests: u64,
    /// Requests per second over the window.
    pub rps: f64,
    /// The fraction of requests answered 5xx (0 to 1); `None` without requests.
    pub error_rate: Option<f64>,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    /// `None` for the primary.
    pub verdict: Option<TrafficVerdict>,
}

/// How a canary compares with its primary.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum TrafficVerdict {
    /// No significant difference with enough traffic to tell.
    Healthy,
    /// Significantly worse than the primary; `reason` says how (error rate, p99).
    Worse { reason: String },
    /// Not enough requests on one side for the tests to decide.
    NotEnoughTraffic,
    /// Moved to 100%: there is nothing left to compare with.
    Promoted,
}

impl TrafficVerdict {
    /// The words the page shows.
    pub fn label(&self) -> &'static str {
        match self {
            TrafficVerdict::Healthy => "healthy",
            TrafficVerdict::Worse { .. } => "worse than the primary",
            TrafficVerdict::NotEnoughTraffic => "not enough traffic yet",
            TrafficVerdict::Promoted => "promoted",
        }
    }
}
