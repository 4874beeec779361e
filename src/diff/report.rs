//! What a diff found, as typed values: the one thing `compare` makes and every format renders.
//! The JSON format serializes these types directly (docs/diff.md documents it), so a field added
//! here is a field added to the format: add, never rename or remove, without bumping `FORMAT`.

use serde::Serialize;

use crate::model::diagnostic::Diagnostic;
use crate::model::mapping::{Bp, RouteKey};

/// The version of `diff --format json`.
pub const DIFF_FORMAT: u32 = 1;

/// Everything that differs between BASE and NEW, fleet by fleet, with the risks and the
/// diagnostics the change brings or fixes.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct DiffReport {
    /// What was compared, as the command line named it (a directory or a server's URL).
    pub base: String,
    pub new: String,
    /// Whether settings were compared: a server older than `diff` sends none in `/api/routes`.
    pub settings_compared: bool,
    /// The fleets compared, by name; each lists only what changed in it.
    pub fleets: Vec<FleetDiff>,
    /// What a reviewer should look at twice, each note named.
    pub risks: Vec<RiskNote>,
    /// Diagnostics in NEW that BASE did not have.
    pub new_diagnostics: Vec<Diagnostic>,
    /// Diagnostics of BASE that NEW no longer has.
    pub fixed_diagnostics: Vec<Diagnostic>,
    /// How many errors NEW has (new or not): any makes `diff` exit 1.
    pub new_errors: usize,
}

impl DiffReport {
    /// Whether anything differs: a route, a cluster or a diagnostic.
    pub fn is_empty(&self) -> bool {
        self.fleets.iter().all(FleetDiff::is_empty)
            && self.new_diagnostics.is_empty()
            && self.fixed_diagnostics.is_empty()
    }
}

/// What changed in one fleet.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct FleetDiff {
    pub fleet: String,
    /// Whether the fleet has routes in BASE and in NEW (a fleet only one side has is all added,
    /// or all removed).
    pub in_base: bool,
    pub in_new: bool,
    /// The routes that changed, in the order Envoy tries them.
    pub routes: Vec<RouteDiff>,
    pub clusters_added: Vec<ClusterDelta>,
    pub clusters_removed: Vec<ClusterDelta>,
}

impl FleetDiff {
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty() && self.clusters_added.is_empty() && self.clusters_removed.is_empty()
    }
}

/// How a route changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RouteChange {
    /// Only in NEW.
    Added,
    /// Only in BASE.
    Removed,
    /// In both, with other backends, shares, shadow or settings.
    Changed,
    /// In both and the same, but a route added or removed before it changes which requests
    /// reach it.
    Moved,
}

/// One route that changed, matched between BASE and NEW by its match (the route key), never by
/// its position.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RouteDiff {
    pub change: RouteChange,
    /// The route as people read it: `/qotm/ (x-canary: "true")`.
    pub route: String,
    /// Its match, field by field as in `check --format json`.
    #[serde(rename = "match")]
    pub key: RouteKey,
    /// Its position in BASE's and NEW's route order (from 1), where it is.
    pub position_before: Option<usize>,
    pub position_after: Option<usize>,
    /// Every backend of the route on either side, with its share before and after.
    pub backends: Vec<BackendDelta>,
    /// The shadow, when it changed.
    pub shadow: Option<ShadowDelta>,
    /// The settings that changed, field by field.
    pub settings: Vec<SettingDelta>,
    /// Routes (in both sides) tried after this new route that it now takes requests from.
    pub now_shadows: Vec<String>,
    /// Routes (in both sides) that this removed route took requests from, and get them back.
    pub stopped_shadowing: Vec<String>,
    /// New routes, tried before this one, that now take some of its requests.
    pub now_shadowed_by: Vec<String>,
    /// Removed routes that took some of its requests, which it gets back.
    pub no_longer_shadowed_by: Vec<String>,
    /// Why NEW's route is held at its last good weights, when it is.
    pub held: Option<String>,
}

/// A backend's share before and after (`None`: not a backend on that side).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BackendDelta {
    /// The Mapping (`name`, or `name.namespace` outside `default`).
    pub mapping: String,
    pub service: String,
    pub before_bp: Option<Bp>,
    pub after_bp: Option<Bp>,
}

impl BackendDelta {
    /// The change in hundredths of a point (absent counts as 0).
    pub fn delta_bp(&self) -> i64 {
        i64::from(self.after_bp.unwrap_or(0)) - i64::from(self.before_bp.unwrap_or(0))
    }
}

/// A route's shadow before and after.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ShadowDelta {
    pub before: Option<MirrorEnd>,
    pub after: Option<MirrorEnd>,
}

/// One side's shadow: the Mapping mirrored to and the share of requests mirrored.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MirrorEnd {
    pub mapping: String,
    pub service: String,
    pub percent_bp: Bp,
}

/// One setting of one Mapping of the route that changed: `route.timeout_ms` 3000 to 5000.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SettingDelta {
    pub mapping: String,
    /// The field's path: `route.timeout_ms`, `backend.add_request_headers.x-env`, `service`...
    pub field: String,
    /// The values as in `check --format json` (`null` when unset).
    pub before: serde_json::Value,
    pub after: serde_json::Value,
}

/// A cluster only one side has, with the Envoy stats operators read for it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ClusterDelta {
    pub name: String,
    pub service: String,
    /// The main stats of the cluster: `cluster.<name>.upstream_rq_xx` and the like.
    pub stats: Vec<String>,
}

/// The stats of a cluster that tell how its traffic does.
pub fn cluster_stats(name: &str) -> Vec<String> {
    ["upstream_rq_xx", "upstream_rq_time", "upstream_cx_active"]
        .iter()
        .map(|s| format!("cluster.{name}.{s}"))
        .collect()
}

/// The kinds of risk note, named as in the JSON.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RiskKind {
    /// A route loses every backend: its requests get a 404 or reach a less specific route.
    RouteLosesEveryBackend,
    /// A backend's share moves by more than 50 points in one change.
    #[serde(rename = "share_moves_over_50_points")]
    ShareMovesOver50Points,
    /// Traffic goes to a service no route of the fleet used before.
    NewService,
    /// A canary takes 100% beside a primary at 0%.
    CanaryFullPrimaryZero,
    /// `serve` would hold part of NEW back (a file with errors keeps its last good content, a
    /// route its last good weights): the diff shows what would be served, not the files.
    HeldBack,
}

/// One risk note.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RiskNote {
    pub risk: RiskKind,
    /// The fleet, when the note is about one.
    pub fleet: Option<String>,
    /// The route, when the note is about one.
    pub route: Option<String>,
    pub message: String,
}
