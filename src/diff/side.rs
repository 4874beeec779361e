//! One side of a diff: every fleet's routes as served, in Envoy's order, and the diagnostics
//! that came with them. Built from route tables (a directory) or read from a running server's
//! `/api/routes` (the JSON of `check --format json --all-fleets`), so that both compare alike.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;

use crate::model::diagnostic::Diagnostic;
use crate::model::mapping::{
    BackendSettings, Bp, ClusterSettings, HeaderMatch, MappingId, RouteKey, RouteSettings,
};
use crate::routes::{Backend, Route, Shadow, Tables, route_order};

/// Every fleet's routes, in Envoy's order, and the diagnostics of the input they came from.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DiffSide {
    pub fleets: BTreeMap<String, Vec<RouteView>>,
    pub diagnostics: Vec<Diagnostic>,
}

/// A route as the diff sees it: its match, its backends with their shares, its shadow.
#[derive(Clone, Debug, PartialEq)]
pub struct RouteView {
    pub key: RouteKey,
    /// In (namespace, name) order.
    pub backends: Vec<BackendView>,
    pub shadow: Option<BackendView>,
    /// Why the route is held at its last good weights, when it is.
    pub held: Option<String>,
}

/// A backend (or shadow) of a route.
#[derive(Clone, Debug, PartialEq)]
pub struct BackendView {
    pub id: MappingId,
    /// The service as written.
    pub service: String,
    /// The share in hundredths of a percent; for a shadow, the share of requests mirrored.
    pub share_bp: Bp,
    pub cluster: String,
    /// Where it was read (not compared: a Mapping moved to another file is the same Mapping).
    pub file: String,
    pub line: u64,
    /// Whether the Mapping sets `weight`.
    pub weighted: bool,
    /// `None` when read from a server whose `/api/routes` does not carry settings.
    pub settings: Option<MappingSettings>,
}

/// A Mapping's settings beyond its share, as `check --format json` shows them.
#[derive(Clone, Debug, PartialEq, Deserialize, serde::Serialize)]
pub struct MappingSettings {
    pub route: RouteSettings,
    pub backend: BackendSettings,
    pub cluster: ClusterSettings,
}

/// A route table document that cannot be read as one.
#[derive(Debug, thiserror::Error)]
pub enum RoutesDocError {
    /// Not JSON, or not the shape of `/api/routes`.
    #[error("not a route table in the shape of /api/routes: {0}")]
    Json(#[from] serde_json::Error),
    /// A JSON document with neither `fleets` nor `routes`.
    #[error("not a route table: no \"fleets\" and no \"routes\"")]
    NoRoutes,
}

impl DiffSide {
    /// The side of compiled (or served) tables and their diagnostics.
    pub fn from_tables(tables: &Tables, diagnostics: Vec<Diagnostic>) -> DiffSide {
        DiffSide {
            fleets: tables
                .fleets
                .iter()
                .map(|(name, t)| (name.clone(), t.routes.iter().map(|r| view(r)).collect()))
                .collect(),
            diagnostics,
        }
    }

    /// The side of a server's `/api/routes` (or of `check --format json`, one fleet or all).
    /// Unknown fields are ignored, so that another version's document still reads.
    pub fn from_routes_json(text: &str) -> Result<DiffSide, RoutesDocError> {
        let doc: RoutesDoc = serde_json::from_str(text)?;
        let fleets = match (doc.fleets, doc.routes) {
            (Some(fleets), _) => fleets.into_iter().map(|(n, f)| (n, f.routes)).collect(),
            (None, Some(routes)) => {
                BTreeMap::from([(doc.fleet.unwrap_or_else(|| "default".into()), routes)])
            }
            (None, None) => return Err(RoutesDocError::NoRoutes),
        };
        Ok(DiffSide {
            fleets: fleets
                .into_iter()
                .map(|(n, routes): (String, Vec<RouteDoc>)| {
                    (n, routes.into_iter().map(RouteDoc::into_view).collect())
                })
                .collect(),
            diagnostics: doc.diagnostics,
        })
    }

    /// Whether every backend carries its settings (a server older than `diff` sends none).
    pub fn has_settings(&self) -> bool {
        self.fleets
            .values()
            .flatten()
            .flat_map(|r| r.backends.iter().chain(&r.shadow))
            .all(|b| b.settings.is_some())
    }

    /// Keeps `base`'s routes that hold a Mapping of one of `files` in place of this side's:
    /// what a running server does with files that now have errors (their last good content
    /// keeps serving). Used when BASE is a server, whose files are not at hand; with
    /// directories `serve`'s own containment runs instead.
    pub fn hold_files(&mut self, base: &DiffSide, files: &BTreeSet<String>, why: &str) {
        for (fleet, base_routes) in &base.fleets {
            let routes = self.fleets.entry(fleet.clone()).or_default();
            for r in base_routes {
                let touched = r
                    .backends
                    .iter()
                    .chain(&r.shadow)
                    .any(|b| files.contains(&b.file));
                if !touched {
                    continue;
                }
                let mut kept = r.clone();
                kept.held = Some(why.to_string());
                match routes.binary_search_by(|x| route_order(&x.key, &r.key)) {
                    Ok(i) => routes[i] = kept,
                    Err(i) => routes.insert(i, kept),
                }
            }
        }
    }
}

/// A compiled route as the diff sees it.
fn view(r: &Route) -> RouteView {
    RouteView {
        key: r.key.clone(),
        backends: r.backends.iter().map(backend_view).collect(),
        shadow: r.shadow.as_ref().map(shadow_view),
        held: r.held.clone(),
    }
}

fn backend_view(b: &Backend) -> BackendView {
    let m = &b.mapping;
    BackendView {
        id: m.id.clone(),
        service: m.service.raw.clone(),
        share_bp: b.weight_bp,
        cluster: b.cluster.clone(),
        file: m.origin.file.clone(),
        line: m.origin.line,
        weighted: m.weight.is_some(),
        settings: Some(MappingSettings {
            route: m.route.clone(),
            backend: m.backend.clone(),
            cluster: m.cluster.clone(),
        }),
    }
}

fn shadow_view(s: &Shadow) -> BackendView {
    let m = &s.mapping;
    BackendView {
        id: m.id.clone(),
        service: m.service.raw.clone(),
        share_bp: s.percent_bp,
        cluster: s.cluster.clone(),
        file: m.origin.file.clone(),
        line: m.origin.line,
        weighted: false,
        settings: Some(MappingSettings {
            route: m.route.clone(),
            backend: m.backend.clone(),
            cluster: m.cluster.clone(),
        }),
    }
}

// ------------------------------------------------------------------------------------------
// The JSON of `/api/routes`, read back.

#[derive(Deserialize)]
struct RoutesDoc {
    fleet: Option<String>,
    fleets: Option<BTreeMap<String, FleetDoc>>,
    routes: Option<Vec<RouteDoc>>,
    #[serde(default)]
    diagnostics: Vec<Diagnostic>,
}

#[derive(Deserialize)]
struct FleetDoc {
    #[serde(default)]
    routes: Vec<RouteDoc>,
}

#[derive(Deserialize)]
struct RouteDoc {
    host: String,
    #[serde(default)]
    host_regex: bool,
    method: Option<String>,
    prefix: String,
    #[serde(default)]
    prefix_regex: bool,
    #[serde(default = "yes")]
    case_sensitive: bool,
    #[serde(default)]
    headers: BTreeMap<String, MatchDoc>,
    #[serde(default)]
    regex_headers: BTreeMap<String, String>,
    #[serde(default)]
    query_parameters: BTreeMap<String, MatchDoc>,
    #[serde(default)]
    precedence: i32,
    #[serde(default)]
    backends: Vec<BackendDoc>,
    shadow: Option<ShadowDoc>,
    held: Option<String>,
}

fn yes() -> bool {
    true
}

fn default_namespace() -> String {
    "default".into()
}

/// A header or query matcher: a string for an exact value, anything else (`true`) for presence.
#[derive(Deserialize)]
#[serde(untagged)]
enum MatchDoc {
    Exact(String),
    Present(serde::de::IgnoredAny),
}

#[derive(Deserialize)]
struct BackendDoc {
    mapping: String,
    #[serde(default = "default_namespace")]
    namespace: String,
    #[serde(default)]
    service: String,
    weight_bp: Bp,
    cluster: String,
    #[serde(default)]
    file: String,
    #[serde(default)]
    line: u64,
    #[serde(default)]
    weighted: bool,
    settings: Option<MappingSettings>,
}

#[derive(Deserialize)]
struct ShadowDoc {
    mapping: String,
    #[serde(default = "default_namespace")]
    namespace: String,
    #[serde(default)]
    service: String,
    percent: f64,
    cluster: String,
    #[serde(default)]
    file: String,
    #[serde(default)]
    line: u64,
    settings: Option<MappingSettings>,
}

fn matchers(m: BTreeMap<String, MatchDoc>) -> BTreeMap<String, HeaderMatch> {
    m.into_iter()
        .map(|(k, v)| {
            let v = match v {
                MatchDoc::Exact(s) => HeaderMatch::Exact(s),
                MatchDoc::Present(_) => HeaderMatch::Present,
            };
            (k, v)
        })
        .collect()
}

impl RouteDoc {
    fn into_view(self) -> RouteView {
        RouteView {
            key: RouteKey {
                precedence: self.precedence,
                host: (self.host != "*" || self.host_regex).then_some(self.host),
                host_regex: self.host_regex,
                method: self.method,
                prefix: self.prefix,
                prefix_regex: self.prefix_regex,
                case_sensitive: self.case_sensitive,
                headers: matchers(self.headers),
                regex_headers: self.regex_headers,
                query_parameters: matchers(self.query_parameters),
            },
            backends: self
                .backends
                .into_iter()
                .map(|b| BackendView {
                    id: MappingId {
                        namespace: b.namespace,
                        name: b.mapping,
                    },
                    service: b.service,
                    share_bp: b.weight_bp,
                    cluster: b.cluster,
                    file: b.file,
                    line: b.line,
                    weighted: b.weighted,
                    settings: b.settings,
                })
                .collect(),
            shadow: self.shadow.map(|s| BackendView {
                id: MappingId {
                    namespace: s.namespace,
                    name: s.mapping,
                },
                service: s.service,
                share_bp: (s.percent * 100.0).round().clamp(0.0, 10_000.0) as Bp,
                cluster: s.cluster,
                file: s.file,
                line: s.line,
                weighted: false,
                settings: s.settings,
            }),
            held: self.held,
        }
    }
}
