//! Live traffic: what the Envoys did over a window, and each canary's verdict.
//!
//! Three steps, kept apart so that a one-shot command and a page that refreshes every few
//! seconds use the same code:
//!
//! 1. **Read** (I/O, [`AdminClient`]): each Envoy's `/stats?format=prometheus` becomes an
//!    [`EnvoyStats`]; the Envoys of a fleet read at one moment are a [`Sample`]. The configured
//!    weights become a [`Config`], from canary-xds's admin API (`/api/routes`), from the files
//!    (via [`config_from_tables`]), or from Envoy's own `/config_dump`.
//! 2. **Window** (pure, [`window`]): two samples give per-cluster deltas. Envoy's counters and
//!    histograms are cumulative since it started, so only differences describe the window; an
//!    Envoy that restarted in between counts from zero, as Prometheus' `rate()` does.
//! 3. **Compare** (pure, [`compare`]): per route, the primary and its canaries side by side,
//!    with a verdict per canary from the tests in [`crate::canary::statistics`], corrected across routes.
//!
//! A page keeps a rolling buffer of samples and calls [`compare`] on the oldest and newest; the
//! CLI takes two samples a window apart.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;
use serde_json::Value;

use crate::canary::histogram::{Bucket, Histogram};
use crate::canary::statistics::{self, Counts, Method};
use crate::routes::table::{RouteTable, Tables, describe};

/// Everything that can go wrong reading Envoy or the control plane.
#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    /// The URL cannot be used (not `http://host:port`).
    #[error("{url}: {message}")]
    Url { url: String, message: String },
    /// The connection or the request failed.
    #[error("{url}: {source}")]
    Request {
        url: String,
        #[source]
        source: hyper_util::client::legacy::Error,
    },
    /// No complete answer in time.
    #[error("{url}: no answer within {after:?}")]
    Timeout { url: String, after: Duration },
    /// An answer other than 200.
    #[error("{url}: HTTP {status}: {body}")]
    Status {
        url: String,
        status: u16,
        body: String,
    },
    /// The body could not be read.
    #[error("{url}: reading the answer: {source}")]
    Body {
        url: String,
        #[source]
        source: hyper::Error,
    },
    /// A line of Prometheus text we need could not be read.
    #[error("line {line}: {message}")]
    Prometheus { line: usize, message: String },
    /// A JSON document (route table, config dump) is not JSON.
    #[error("not JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// A JSON document has the wrong shape.
    #[error("{0}")]
    Shape(String),
    /// Reading what came from `url` failed; says where it came from.
    #[error("{url}: {source}")]
    From {
        url: String,
        #[source]
        source: Box<LiveError>,
    },
}

impl LiveError {
    fn from_url(url: &str, e: LiveError) -> LiveError {
        LiveError::From {
            url: url.to_string(),
            source: Box::new(e),
        }
    }
}

// --- Envoy's stats ---

/// The stats of one cluster in one Envoy, cumulative since that Envoy started.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ClusterStats {
    /// `upstream_rq_total`: requests started (retries included).
    pub rq_total: u64,
    /// `upstream_rq_<N>xx` for N = 1..=5: responses by class, Envoy's own (a 503 when the
    /// upstream could not be reached, a 504 on timeout) included.
    pub rq_xx: [u64; 5],
    /// `upstream_rq_time`, in milliseconds. Envoy updates histograms at each stats flush (5 s
    /// by default), counters at once: over a short window the two can disagree a little.
    pub rq_time: Histogram,
}

impl ClusterStats {
    /// Responses of every class: the requests that finished.
    pub fn responses(&self) -> u64 {
        self.rq_xx.iter().sum()
    }
}

/// One Envoy's cluster stats at one moment.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EnvoyStats {
    /// By Envoy cluster name.
    pub clusters: BTreeMap<String, ClusterStats>,
    /// `server.uptime` in seconds: when it goes down, Envoy restarted.
    pub uptime: Option<u64>,
}

/// The Prometheus metric names read, as Envoy 1.40 prints them.
const RQ_TOTAL: &str = "envoy_cluster_upstream_rq_total";
const RQ_XX: &str = "envoy_cluster_upstream_rq_xx";
const RQ_TIME_BUCKET: &str = "envoy_cluster_upstream_rq_time_bucket";
const UPTIME: &str = "envoy_server_uptime";

/// The `filter` sent with `/stats`: only the stats read (Envoy matches it against the names
/// before tag extraction, `cluster.<name>.upstream_rq_5xx`). It keeps a fleet of Envoys with
/// thousands of clusters from sending megabytes of other stats every few seconds.
pub const STATS_FILTER: &str = r"^cluster\..+\.upstream_rq_(total|[0-9]xx|time)$|^server\.uptime$";

/// Reads the stats canary-xds needs from Envoy's `/stats?format=prometheus`. Other metrics,
/// comments and the per-origin copies (`envoy_cluster_external_upstream_rq_xx`...) are skipped;
/// a malformed line of a metric we need is an error.
pub fn parse_prometheus(text: &str) -> Result<EnvoyStats, LiveError> {
    let mut out = EnvoyStats::default();
    let mut buckets: BTreeMap<String, Vec<Bucket>> = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let name_end = line.find(['{', ' ']).unwrap_or(line.len());
        let name = &line[..name_end];
        if ![RQ_TOTAL, RQ_XX, RQ_TIME_BUCKET, UPTIME].contains(&name) {
            continue;
        }
        let err = |message: String| LiveError::Prometheus {
            line: i + 1,
            message,
        };
        let (labels, rest) = if line[name_end..].starts_with('{') {
            parse_labels(&line[name_end + 1..]).map_err(|m| err(format!("{name}: {m}")))?
        } else {
            (BTreeMap::new(), &line[name_end..])
        };
        // A sample may carry a timestamp after the value; Envoy prints none.
        let value = rest.split_whitespace().next().unwrap_or("");
        let value =
            parse_count(value).ok_or_else(|| err(format!("{name}: bad value {value:?}")))?;
        if name == UPTIME {
            out.uptime = Some(value);
            continue;
        }
        let cluster = labels
            .get("envoy_cluster_name")
            .ok_or_else(|| err(format!("{name} without envoy_cluster_name")))?
            .clone();
        match name {
            RQ_TOTAL => out.clusters.entry(cluster).or_default().rq_total = value,
            RQ_XX => {
                let class = labels
                    .get("envoy_response_code_class")
                    .and_then(|c| c.parse::<usize>().ok())
                    .filter(|c| (1..=5).contains(c))
                    .ok_or_else(|| err(format!("{name} without a class 1 to 5")))?;
                out.clusters.entry(cluster).or_default().rq_xx[class - 1] = value;
            }
            _ => {
                let le = labels
                    .get("le")
                    .and_then(|le| parse_le(le))
                    .ok_or_else(|| err(format!("{name} without a valid le")))?;
                buckets
                    .entry(cluster)
                    .or_default()
                    .push(Bucket { le, count: value });
            }
        }
    }
    for (cluster, b) in buckets {
        out.clusters.entry(cluster).or_default().rq_time = Histogram::new(b);
    }
    Ok(out)
}

/// `{a="x",b="y\"z"} rest`, after the `{`: the labels and what follows the `}`.
fn parse_labels(s: &str) -> Result<(BTreeMap<String, String>, &str), String> {
    let mut labels = BTreeMap::new();
    let mut rest = s;
    loop {
        rest = rest.trim_start_matches([' ', ',']);
        if let Some(after) = rest.strip_prefix('}') {
            return Ok((labels, after));
        }
        let eq = rest.find('=').ok_or("a label without =")?;
        let key = rest[..eq].trim().to_string();
        rest = rest[eq + 1..]
            .strip_prefix('"')
            .ok_or("a label value without quotes")?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next() {
                None => return Err("an unterminated label value".into()),
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c)) => value.push(c),
                    None => return Err("an unterminated label value".into()),
                },
                Some((_, c)) => value.push(c),
            }
        };
        labels.insert(key, value);
        rest = &rest[end + 1..];
    }
}

/// A counter or bucket count: Envoy prints integers; a float form is accepted too.
fn parse_count(s: &str) -> Option<u64> {
    s.parse::<u64>().ok().or_else(|| {
        let f: f64 = s.parse().ok()?;
        (f.is_finite() && f >= 0.0).then_some(f as u64)
    })
}

fn parse_le(s: &str) -> Option<f64> {
    match s {
        "+Inf" | "Inf" | "inf" => Some(f64::INFINITY),
        _ => s.parse::<f64>().ok().filter(|f| !f.is_nan()),
    }
}

/// The Envoys of a fleet, read at (about) one moment.
#[derive(Clone, Debug)]
pub struct Sample {
    /// When the reading finished.
    pub at: Instant,
    /// Each Envoy's stats by its admin URL.
    pub envoys: BTreeMap<String, EnvoyStats>,
}

/// What one cluster did over a window, all Envoys added up.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ClusterWindow {
    /// Responses (every class): the requests that finished in the window.
    pub requests: u64,
    /// Of those, 5xx.
    pub errors_5xx: u64,
    /// The latencies of the window, in milliseconds (differences of cumulative buckets).
    pub rq_time: Histogram,
}

/// Per cluster, what happened between two samples, added up over the Envoys read both times.
/// An Envoy that restarted in between (uptime went down, or a counter did) counts from zero, and
/// so does a cluster that appeared in between. An Envoy missing from either sample (not read,
/// just added) contributes nothing: its totals since it started are not a window. Clusters no
/// Envoy knows are absent.
pub fn window(before: &Sample, after: &Sample) -> BTreeMap<String, ClusterWindow> {
    let mut out: BTreeMap<String, ClusterWindow> = BTreeMap::new();
    for (url, now) in &after.envoys {
        let Some(then) = before.envoys.get(url) else {
            continue;
        };
        let restarted = matches!((then.uptime, now.uptime), (Some(t), Some(n)) if n < t);
        for (cluster, c) in &now.clusters {
            let zero = ClusterStats::default();
            let mut p = if restarted {
                &zero
            } else {
                then.clusters.get(cluster).unwrap_or(&zero)
            };
            let went_down =
                c.rq_total < p.rq_total || c.rq_xx.iter().zip(&p.rq_xx).any(|(n, t)| n < t);
            if went_down {
                p = &zero;
            }
            let w = out.entry(cluster.clone()).or_default();
            let responses = c.responses() - p.responses();
            w.requests += responses;
            w.errors_5xx += c.rq_xx[4] - p.rq_xx[4];
            let times = c
                .rq_time
                .since(&p.rq_time)
                .unwrap_or_else(|| c.rq_time.clone());
            w.rq_time = w.rq_time.add(&times);
        }
    }
    out
}

// --- the configured weights ---

/// Where the configured weights came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum WeightsFrom {
    /// canary-xds's admin API, `/api/routes`.
    ControlPlane,
    /// The Mapping files, read in process.
    Dir,
    /// Envoy's `/config_dump`.
    Envoy,
}

/// The routes whose traffic is split, with each backend's configured weight.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Config {
    pub weights_from: WeightsFrom,
    /// The URL or directory read.
    pub source: String,
    /// The control plane's version of what it serves, when it says.
    pub version: Option<String>,
    pub routes: Vec<RouteConfig>,
}

/// One route: a description for people, and its backends.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RouteConfig {
    /// `/qotm/` or `/qotm/ (host foo.com, GET)`, as `check` describes routes.
    pub route: String,
    /// Something to know about the route, e.g. that `serve` holds it at its last good weights.
    pub note: Option<String>,
    pub backends: Vec<BackendConfig>,
}

/// One backend of a route.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BackendConfig {
    /// The Envoy cluster whose stats are this backend's.
    pub cluster: String,
    /// The Mapping's name, when known.
    pub mapping: Option<String>,
    pub namespace: Option<String>,
    /// The configured share in hundredths of a percent.
    pub weight_bp: u32,
    /// Whether the Mapping sets `weight` (`None`: not known, as from Envoy's config).
    pub weighted: Option<bool>,
}

impl BackendConfig {
    /// How people know it: the Mapping (`name`, `name.namespace` outside `default`), else the
    /// cluster.
    pub fn label(&self) -> String {
        match (&self.mapping, self.namespace.as_deref()) {
            (Some(m), None | Some("default")) => m.clone(),
            (Some(m), Some(ns)) => format!("{m}.{ns}"),
            (None, _) => self.cluster.clone(),
        }
    }
}

/// The weights of one fleet of in-memory route tables (the files read with
/// `check::check_dir`); a fleet no Mapping names has no routes.
pub fn config_from_tables(tables: &Tables, fleet: &str, source: &str) -> Config {
    match tables.fleet(fleet) {
        Some(t) => config_from_table(t, source),
        None => Config {
            weights_from: WeightsFrom::Dir,
            source: source.to_string(),
            version: None,
            routes: Vec::new(),
        },
    }
}

/// The weights of one route table, such as the one `serve` publishes for a fleet; the
/// caller may set `weights_from` and `version` to say where it came from.
pub fn config_from_table(table: &RouteTable, source: &str) -> Config {
    let routes = table
        .routes
        .iter()
        .map(|r| RouteConfig {
            route: describe(&r.key),
            note: r.held.clone(),
            backends: r
                .backends
                .iter()
                .map(|b| BackendConfig {
                    cluster: b.cluster.clone(),
                    mapping: Some(b.mapping.id.name.clone()),
                    namespace: Some(b.mapping.id.namespace.clone()),
                    weight_bp: b.weight_bp,
                    weighted: Some(b.mapping.weight.is_some()),
                })
                .collect(),
        })
        .collect();
    Config {
        weights_from: WeightsFrom::Dir,
        source: source.to_string(),
        version: None,
        routes,
    }
}

/// The weights of one fleet from canary-xds's `/api/routes` (or `check --format json`, with
/// or without `--all-fleets`). Read leniently: unknown fields are ignored, a backend needs only
/// `cluster` and `weight_bp` (or `weight`, a percentage); `weighted` is used when present.
pub fn config_from_routes_json(text: &str, fleet: &str, source: &str) -> Result<Config, LiveError> {
    let doc: Value = serde_json::from_str(text)?;
    let obj = doc
        .as_object()
        .ok_or_else(|| LiveError::Shape("a route table must be a JSON object".into()))?;
    let (routes, version) = if let Some(fleets) = obj.get("fleets").and_then(Value::as_object) {
        let f = fleets.get(fleet);
        (
            f.and_then(|f| f.get("routes")),
            f.and_then(|f| f.get("version"))
                .or_else(|| obj.get("version")),
        )
    } else if obj.contains_key("routes") {
        if let Some(named) = obj.get("fleet").and_then(Value::as_str)
            && named != fleet
        {
            return Err(LiveError::Shape(format!(
                "the route table is fleet {named}'s, not {fleet}'s"
            )));
        }
        (obj.get("routes"), obj.get("version"))
    } else {
        return Err(LiveError::Shape(
            "not a route table: no \"routes\" and no \"fleets\"".into(),
        ));
    };
    let version = version.and_then(|v| match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    });
    let mut out = Vec::new();
    for (i, r) in routes
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        let mut backends = Vec::new();
        for b in r["backends"].as_array().into_iter().flatten() {
            let cluster = b["cluster"].as_str().ok_or_else(|| {
                LiveError::Shape(format!("route {}: a backend without \"cluster\"", i + 1))
            })?;
            let weight_bp = match (b["weight_bp"].as_u64(), b["weight"].as_f64()) {
                (Some(bp), _) => bp,
                (None, Some(pct)) => (pct * 100.0).round() as u64,
                (None, None) => {
                    return Err(LiveError::Shape(format!(
                        "route {}: backend {cluster} without \"weight_bp\"",
                        i + 1
                    )));
                }
            };
            backends.push(BackendConfig {
                cluster: cluster.to_string(),
                mapping: b["mapping"].as_str().map(str::to_string),
                namespace: b["namespace"].as_str().map(str::to_string),
                weight_bp: u32::try_from(weight_bp.min(10_000)).unwrap_or(10_000),
                weighted: b["weighted"].as_bool(),
            });
        }
        out.push(RouteConfig {
            route: describe_json(r),
            note: r["held"].as_str().map(str::to_string),
            backends,
        });
    }
    Ok(Config {
        weights_from: WeightsFrom::ControlPlane,
        source: source.to_string(),
        version,
        routes: out,
    })
}

/// A route of the JSON described as `table::describe` describes a route.
fn describe_json(r: &Value) -> String {
    let mut parts = Vec::new();
    if let Some(h) = r["host"].as_str().filter(|h| *h != "*") {
        parts.push(if r["host_regex"].as_bool() == Some(true) {
            format!("host ~{h}")
        } else {
            format!("host {h}")
        });
    }
    if let Some(m) = r["method"].as_str() {
        parts.push(m.to_string());
    }
    let matchers = |key: &str| -> Vec<(String, Value)> {
        r[key]
            .as_object()
            .map(|o| o.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default()
    };
    // As HeaderMatch displays: an exact value quoted, presence as "present".
    let shown = |v: &Value| match v {
        Value::String(s) => format!("{s:?}"),
        Value::Bool(true) => "present".to_string(),
        other => other.to_string(),
    };
    for (k, v) in matchers("headers") {
        parts.push(format!("{k}: {}", shown(&v)));
    }
    for (k, v) in matchers("regex_headers") {
        parts.push(format!("{k} ~ {}", v.as_str().unwrap_or_default()));
    }
    for (k, v) in matchers("query_parameters") {
        parts.push(format!("?{k}={}", shown(&v)));
    }
    if let Some(p) = r["precedence"].as_i64().filter(|p| *p != 0) {
        parts.push(format!("precedence {p}"));
    }
    let prefix = r["prefix"].as_str().unwrap_or("?");
    let prefix = if r["prefix_regex"].as_bool() == Some(true) {
        format!("~{prefix}")
    } else {
        prefix.to_string()
    };
    if parts.is_empty() {
        prefix
    } else {
        format!("{prefix} ({})", parts.join(", "))
    }
}

/// The weights Envoy holds, from `/config_dump?resource=dynamic_route_configs`: each route with
/// `weighted_clusters`, and each chain of routes with the same match and cumulative
/// `runtime_fraction`s (what canary-xds and Ambassador send when the backends' route settings
/// differ). A route repeated in several virtual hosts is listed once. Whether a backend had an
/// explicit weight is unknown here, so the primary is the largest share.
pub fn config_from_config_dump(text: &str, source: &str) -> Result<Config, LiveError> {
    let doc: Value = serde_json::from_str(text)?;
    let configs = doc["configs"]
        .as_array()
        .ok_or_else(|| LiveError::Shape("not a route config dump: no \"configs\"".into()))?;
    // Key: the match (without runtime_fraction) and the backends; value: the hosts it is in.
    let mut seen: Vec<(String, Vec<BackendConfig>, BTreeSet<String>, String)> = Vec::new();
    for c in configs {
        for vh in c["route_config"]["virtual_hosts"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let domains: Vec<String> = vh["domains"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect();
            let routes: &[Value] = vh["routes"].as_array().map_or(&[], Vec::as_slice);
            for (matcher, backends) in split_routes(routes) {
                if backends.len() < 2 {
                    continue;
                }
                let key = matcher.to_string();
                let label = describe_match(&matcher);
                match seen
                    .iter_mut()
                    .find(|(k, b, _, _)| *k == key && *b == backends)
                {
                    Some((_, _, hosts, _)) => hosts.extend(domains.iter().cloned()),
                    None => seen.push((key, backends, domains.iter().cloned().collect(), label)),
                }
            }
        }
    }
    let routes = seen
        .into_iter()
        .map(|(_, backends, hosts, label)| {
            let route = if hosts.contains("*") || hosts.is_empty() {
                label
            } else {
                let hosts: Vec<String> = hosts.into_iter().collect();
                format!("{label} (host {})", hosts.join(", "))
            };
            RouteConfig {
                route,
                note: None,
                backends,
            }
        })
        .collect();
    Ok(Config {
        weights_from: WeightsFrom::Envoy,
        source: source.to_string(),
        version: None,
        routes,
    })
}

/// The routes of a virtual host as (match, backends): a `weighted_clusters` route is one
/// entry; consecutive routes with the same match whose `runtime_fraction`s are cumulative
/// thresholds form one entry (link i takes the fraction above link i-1's, the link without a
/// fraction the rest).
fn split_routes(routes: &[Value]) -> Vec<(Value, Vec<BackendConfig>)> {
    let mut out: Vec<(Value, Vec<BackendConfig>)> = Vec::new();
    let mut chain: Option<(Value, Vec<BackendConfig>, u32)> = None;
    for r in routes {
        let mut matcher = r["match"].clone();
        let fraction = matcher
            .as_object_mut()
            .and_then(|m| m.remove("runtime_fraction"))
            .map(|f| fraction_bp(&f["default_value"]));
        let action = &r["route"];
        // A link of a chain: continue the current one or start another.
        if let Some(cluster) = action["cluster"].as_str() {
            let name = r["name"].as_str().filter(|n| !n.is_empty());
            let continues = chain.as_ref().is_some_and(|(m, _, _)| *m == matcher);
            if !continues && let Some((m, b, _)) = chain.take() {
                out.push((m, b));
            }
            let (_, backends, cumulative) =
                chain.get_or_insert_with(|| (matcher.clone(), Vec::new(), 0));
            let upto = fraction.unwrap_or(10_000).max(*cumulative);
            backends.push(BackendConfig {
                cluster: cluster.to_string(),
                mapping: name.map(str::to_string),
                namespace: None,
                weight_bp: upto - *cumulative,
                weighted: None,
            });
            *cumulative = upto;
            if fraction.is_none() {
                // The link without a fraction takes the rest and ends the chain.
                if let Some((m, b, _)) = chain.take() {
                    out.push((m, b));
                }
            }
            continue;
        }
        if let Some((m, b, _)) = chain.take() {
            out.push((m, b));
        }
        if let Some(clusters) = action["weighted_clusters"]["clusters"].as_array() {
            let weights: Vec<u64> = clusters
                .iter()
                .map(|c| c["weight"].as_u64().unwrap_or(0))
                .collect();
            let total = action["weighted_clusters"]["total_weight"]
                .as_u64()
                .unwrap_or_else(|| weights.iter().sum())
                .max(1);
            // canary-xds names a weighted route after its Mappings, in the clusters' order.
            let names: Vec<&str> = r["name"].as_str().unwrap_or("").split(',').collect();
            let named = names.len() == clusters.len();
            let backends = clusters
                .iter()
                .zip(&weights)
                .enumerate()
                .map(|(i, (c, w))| BackendConfig {
                    cluster: c["name"].as_str().unwrap_or("").to_string(),
                    mapping: named.then(|| names[i].to_string()),
                    namespace: None,
                    weight_bp: u32::try_from(w * 10_000 / total).unwrap_or(10_000),
                    weighted: None,
                })
                .collect();
            out.push((matcher, backends));
        }
    }
    if let Some((m, b, _)) = chain.take() {
        out.push((m, b));
    }
    out
}

/// A `runtime_fraction.default_value` in hundredths of a percent.
fn fraction_bp(v: &Value) -> u32 {
    let numerator = v["numerator"].as_u64().unwrap_or(0);
    let denominator = match v["denominator"].as_str() {
        Some("TEN_THOUSAND") => 10_000,
        Some("MILLION") => 1_000_000,
        _ => 100,
    };
    u32::try_from((numerator * 10_000 / denominator).min(10_000)).unwrap_or(10_000)
}

/// An Envoy route match described for people: `/qotm/`, `~regex`, `=/exact`, with header and
/// query matchers by name.
fn describe_match(m: &Value) -> String {
    let path = if let Some(p) = m["prefix"].as_str() {
        p.to_string()
    } else if let Some(p) = m["path"].as_str() {
        format!("={p}")
    } else if let Some(r) = m["safe_regex"]["regex"].as_str() {
        format!("~{r}")
    } else if let Some(p) = m["path_separated_prefix"].as_str() {
        p.to_string()
    } else {
        "?".to_string()
    };
    let mut parts = Vec::new();
    for h in m["headers"].as_array().into_iter().flatten() {
        let name = h["name"].as_str().unwrap_or("?");
        if name == ":authority" {
            continue;
        }
        match h["string_match"]["exact"].as_str() {
            Some(v) => parts.push(format!("{name}: {v:?}")),
            None => parts.push(name.to_string()),
        }
    }
    for q in m["query_parameters"].as_array().into_iter().flatten() {
        parts.push(format!("?{}", q["name"].as_str().unwrap_or("?")));
    }
    if parts.is_empty() {
        path
    } else {
        format!("{path} ({})", parts.join(", "))
    }
}

// --- the comparison ---

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

/// A backend's part in its route.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
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
    pub method: Method,
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
    pub role: Role,
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
    /// Why, in words.
    pub reasons: Vec<String>,
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
pub struct Report {
    pub window_seconds: f64,
    pub thresholds: Thresholds,
    pub routes: Vec<RouteReport>,
}

/// How many canaries got each verdict.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub worse: usize,
    pub healthy: usize,
    pub not_enough_traffic: usize,
    pub promoted: usize,
}

impl Report {
    /// Counts the canaries' verdicts.
    pub fn summary(&self) -> Summary {
        let mut s = Summary::default();
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

/// The primary of a route: the backend of a Mapping without a weight (Ambassador's default
/// Mapping; with several, the largest share); when every backend has a weight (or it is not
/// known), the largest share. Ties go to the first by (namespace, name).
pub fn primary_index(backends: &[BackendConfig]) -> Option<usize> {
    let unweighted: Vec<usize> = (0..backends.len())
        .filter(|&i| backends[i].weighted == Some(false))
        .collect();
    let candidates: Vec<usize> = if unweighted.is_empty() {
        (0..backends.len()).collect()
    } else {
        unweighted
    };
    let key = |i: usize| {
        let b = &backends[i];
        (
            b.namespace.clone().unwrap_or_default(),
            b.mapping.clone().unwrap_or_else(|| b.cluster.clone()),
        )
    };
    candidates.into_iter().min_by(|&a, &b| {
        backends[b]
            .weight_bp
            .cmp(&backends[a].weight_bp)
            .then_with(|| key(a).cmp(&key(b)))
    })
}

/// Compares every canary with its route's primary over the window from `before` to `after`.
/// Routes with fewer than two backends are left out.
pub fn compare(config: &Config, before: &Sample, after: &Sample, t: &Thresholds) -> Report {
    let windows = window(before, after);
    let seconds = after
        .at
        .saturating_duration_since(before.at)
        .as_secs_f64()
        .max(1e-3);
    compare_windows(config, &windows, seconds, t)
}

/// [`compare`] on windows already computed (`seconds` long).
pub fn compare_windows(
    config: &Config,
    windows: &BTreeMap<String, ClusterWindow>,
    seconds: f64,
    t: &Thresholds,
) -> Report {
    let none = ClusterWindow::default();
    let mut routes = Vec::new();
    // (route index, backend index, p-value) of every error test, for Holm's correction.
    let mut tests: Vec<(usize, usize, f64)> = Vec::new();
    for rc in config.routes.iter().filter(|r| r.backends.len() > 1) {
        let Some(p) = primary_index(&rc.backends) else {
            continue;
        };
        let order = std::iter::once(p).chain((0..rc.backends.len()).filter(|&i| i != p));
        let total: u64 = rc
            .backends
            .iter()
            .map(|b| windows.get(&b.cluster).map_or(0, |w| w.requests))
            .sum();
        let mut backends: Vec<BackendReport> = order
            .map(|i| {
                let b = &rc.backends[i];
                let w = windows.get(&b.cluster).unwrap_or(&none);
                measure(
                    b,
                    w,
                    windows.contains_key(&b.cluster),
                    total,
                    seconds,
                    i == p,
                )
            })
            .collect();
        let (primary, canaries) = backends.split_at_mut(1);
        let primary_w = windows.get(&primary[0].cluster).unwrap_or(&none);
        for (j, canary) in canaries.iter_mut().enumerate() {
            let canary_w = windows.get(&canary.cluster).unwrap_or(&none);
            judge(canary, &primary[0], canary_w, primary_w, t);
            if let Some(e) = &canary.error_test {
                tests.push((routes.len(), j + 1, e.p_value));
            }
        }
        routes.push(RouteReport {
            route: rc.route.clone(),
            note: rc.note.clone(),
            backends,
        });
    }
    let adjusted = statistics::holm_adjust(&tests.iter().map(|t| t.2).collect::<Vec<_>>());
    for ((r, b, _), adj) in tests.into_iter().zip(adjusted) {
        if let Some(e) = &mut routes[r].backends[b].error_test {
            e.adjusted_p_value = adj;
        }
    }
    for route in &mut routes {
        let (primary, canaries) = route.backends.split_at_mut(1);
        for canary in canaries {
            conclude(canary, &primary[0], t);
        }
    }
    Report {
        window_seconds: seconds,
        thresholds: *t,
        routes,
    }
}

/// The numbers of one backend over the window.
fn measure(
    b: &BackendConfig,
    w: &ClusterWindow,
    in_envoy: bool,
    route_total: u64,
    seconds: f64,
    primary: bool,
) -> BackendReport {
    let pct = |x: u64, of: u64| (of > 0).then(|| 100.0 * x as f64 / of as f64);
    let p50 = w.rq_time.quantile(0.5);
    let p99 = w.rq_time.quantile(0.99);
    BackendReport {
        name: b.label(),
        cluster: b.cluster.clone(),
        mapping: b.mapping.clone(),
        namespace: b.namespace.clone(),
        role: if primary { Role::Primary } else { Role::Canary },
        weight: f64::from(b.weight_bp) / 100.0,
        weight_bp: b.weight_bp,
        share: pct(w.requests, route_total),
        requests: w.requests,
        errors_5xx: w.errors_5xx,
        success_rate: pct(w.requests - w.errors_5xx.min(w.requests), w.requests),
        requests_per_second: w.requests as f64 / seconds,
        errors_5xx_per_second: w.errors_5xx as f64 / seconds,
        p50_ms: p50.map(|q| q.value),
        p99_ms: p99.map(|q| q.value),
        p99_capped: p99.is_some_and(|q| q.capped),
        timed_requests: w.rq_time.count(),
        in_envoy,
        verdict: if primary {
            Verdict::Primary
        } else if b.weight_bp >= crate::model::mapping::FULL {
            Verdict::Promoted
        } else {
            // Until judged.
            Verdict::NotEnoughTraffic
        },
        worse_errors: false,
        worse_latency: false,
        reasons: Vec::new(),
        error_test: None,
    }
}

/// Runs the tests that do not depend on other routes: the error test's raw p-value and the
/// latency rule.
fn judge(
    canary: &mut BackendReport,
    primary: &BackendReport,
    canary_w: &ClusterWindow,
    primary_w: &ClusterWindow,
    t: &Thresholds,
) {
    if canary.verdict == Verdict::Promoted {
        return;
    }
    let counts = |w: &ClusterWindow| Counts {
        requests: w.requests,
        errors: w.errors_5xx.min(w.requests),
    };
    canary.error_test =
        statistics::error_test(counts(canary_w), counts(primary_w)).map(|e| ErrorTestReport {
            method: e.method,
            p_value: e.p_value,
            adjusted_p_value: e.p_value,
            z: e.z,
        });
    if let (Some(c99), Some(p99)) = (canary.p99_ms, primary.p99_ms)
        && canary.timed_requests >= t.min_requests
        && primary.timed_requests >= t.min_requests
    {
        canary.worse_latency = c99 > p99 * t.p99_ratio && c99 - p99 > t.p99_margin_ms;
    }
}

/// The verdict and its reasons, once the error test's p-value is corrected.
fn conclude(canary: &mut BackendReport, primary: &BackendReport, t: &Thresholds) {
    if canary.verdict == Verdict::Promoted {
        canary.reasons = vec![format!(
            "at 100%: {} gets no traffic to compare it with",
            primary.name
        )];
        return;
    }
    let mut reasons = Vec::new();
    canary.worse_errors = canary
        .error_test
        .is_some_and(|e| e.adjusted_p_value <= t.alpha);
    let rate = |b: &BackendReport| {
        b.success_rate.map_or("-".to_string(), |s| {
            format!("{}%", trim_float(100.0 - s, 2))
        })
    };
    if let Some(e) = &canary.error_test {
        let verb = if canary.worse_errors {
            "worse"
        } else {
            "not worse"
        };
        let cmp = if canary.worse_errors { "<=" } else { ">" };
        // The corrected p-value only when the correction changed it (several canaries).
        let test = if e.adjusted_p_value == e.p_value {
            format!("{} {} {cmp} {}", e.method, p_is(e.p_value), sci(t.alpha))
        } else {
            format!(
                "{} {}, Holm-adjusted {} {cmp} {}",
                e.method,
                p_is(e.p_value),
                sci(e.adjusted_p_value),
                sci(t.alpha)
            )
        };
        reasons.push(format!(
            "5xx {} vs {}: {verb} ({test})",
            rate(canary),
            rate(primary)
        ));
    }
    let latency_decided = canary.timed_requests >= t.min_requests
        && primary.timed_requests >= t.min_requests
        && canary.p99_ms.is_some()
        && primary.p99_ms.is_some();
    if let (Some(c99), Some(p99)) = (canary.p99_ms, primary.p99_ms)
        && latency_decided
    {
        let verb = if canary.worse_latency {
            "worse"
        } else {
            "not worse"
        };
        reasons.push(format!(
            "p99 {} vs {}: {verb} (x{} and {}; limits x{} and +{})",
            ms(c99),
            ms(p99),
            trim_float(c99 / p99.max(1e-9), 2),
            signed_ms(c99 - p99),
            trim_float(t.p99_ratio, 2),
            ms(t.p99_margin_ms),
        ));
    }
    let enough = canary.requests >= t.min_requests && primary.requests >= t.min_requests;
    canary.verdict = if canary.worse_errors || canary.worse_latency {
        Verdict::Worse
    } else if enough && latency_decided {
        Verdict::Healthy
    } else {
        if !canary.in_envoy {
            reasons.push(format!(
                "no Envoy has a cluster {}: wrong --envoy-admin, or another fleet?",
                canary.cluster
            ));
        }
        if !enough {
            reasons.push(format!(
                "{} requests on the canary and {} on the primary; {} needed on each",
                canary.requests, primary.requests, t.min_requests
            ));
        } else if !latency_decided {
            reasons.push(format!(
                "latency: {} timed requests on the canary and {} on the primary; {} needed \
                 on each (Envoy updates histograms at each stats flush, every 5 s by default)",
                canary.timed_requests, primary.timed_requests, t.min_requests
            ));
        }
        Verdict::NotEnoughTraffic
    };
    canary.reasons = reasons;
}

/// `p=0.034`, or `p<1e-300` when the p-value is below what a double holds.
fn p_is(p: f64) -> String {
    if p == 0.0 {
        "p<1e-300".to_string()
    } else {
        format!("p={}", sci(p))
    }
}

/// A p-value for people: `0.034`, `3.1e-12`, `<1e-300` (below what a double holds).
pub fn sci(p: f64) -> String {
    if p == 0.0 {
        "<1e-300".to_string()
    } else if p >= 0.001 {
        trim_float(p, 3)
    } else {
        format!("{p:.1e}")
    }
}

/// `x` with at most `decimals` decimals, trailing zeros dropped: `1.5`, `10`, `0.25`.
pub fn trim_float(x: f64, decimals: usize) -> String {
    let s = format!("{x:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// Milliseconds for people: `0.42ms`, `8.1ms`, `120ms`, `1.5s`.
pub fn ms(v: f64) -> String {
    if v >= 1000.0 {
        format!("{}s", trim_float(v / 1000.0, 2))
    } else if v >= 100.0 {
        format!("{v:.0}ms")
    } else if v >= 10.0 {
        format!("{}ms", trim_float(v, 1))
    } else {
        format!("{}ms", trim_float(v, 2))
    }
}

fn signed_ms(v: f64) -> String {
    if v < 0.0 {
        format!("-{}", ms(-v))
    } else {
        format!("+{}", ms(v))
    }
}

// --- HTTP ---

/// Reads Envoy admins and canary-xds's admin API over plain HTTP/1.1.
#[derive(Clone)]
pub struct AdminClient {
    client: Client<HttpConnector, Empty<Bytes>>,
    timeout: Duration,
}

impl AdminClient {
    /// A client whose every request (connection and body included) must finish within
    /// `timeout`. Needs a Tokio runtime when used.
    pub fn new(timeout: Duration) -> AdminClient {
        AdminClient {
            client: Client::builder(TokioExecutor::new()).build_http(),
            timeout,
        }
    }

    /// GETs `url` and returns its body as text, or an error for anything but a 200.
    pub async fn get(&self, url: &str) -> Result<String, LiveError> {
        let uri: hyper::Uri = url.parse().map_err(|e| LiveError::Url {
            url: url.to_string(),
            message: format!("{e}"),
        })?;
        let fetch = async {
            let response = self
                .client
                .get(uri)
                .await
                .map_err(|source| LiveError::Request {
                    url: url.to_string(),
                    source,
                })?;
            let status = response.status();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|source| LiveError::Body {
                    url: url.to_string(),
                    source,
                })?
                .to_bytes();
            let text = String::from_utf8_lossy(&body).into_owned();
            if status != hyper::StatusCode::OK {
                return Err(LiveError::Status {
                    url: url.to_string(),
                    status: status.as_u16(),
                    body: text.trim().chars().take(200).collect(),
                });
            }
            Ok(text)
        };
        tokio::time::timeout(self.timeout, fetch)
            .await
            .map_err(|_| LiveError::Timeout {
                url: url.to_string(),
                after: self.timeout,
            })?
    }

    /// One Envoy's stats, from its admin base URL (`http://127.0.0.1:9901`).
    pub async fn envoy_stats(&self, admin: &str) -> Result<EnvoyStats, LiveError> {
        let url = format!(
            "{}/stats?format=prometheus&filter={}",
            base_url(admin)?,
            query_escape(STATS_FILTER)
        );
        let text = self.get(&url).await?;
        parse_prometheus(&text).map_err(|e| LiveError::from_url(&url, e))
    }

    /// Every Envoy's stats, read concurrently. Any Envoy that cannot be read is an error: a
    /// fleet's numbers without one of its Envoys would mislead.
    pub async fn sample(&self, admins: &[String]) -> Result<Sample, LiveError> {
        let reads = admins.iter().map(|a| self.envoy_stats(a));
        let results = futures::future::join_all(reads).await;
        let mut envoys = BTreeMap::new();
        for (admin, r) in admins.iter().zip(results) {
            envoys.insert(admin.clone(), r?);
        }
        Ok(Sample {
            at: Instant::now(),
            envoys,
        })
    }

    /// The weights Envoy holds, from its `/config_dump`.
    pub async fn envoy_config(&self, admin: &str) -> Result<Config, LiveError> {
        let url = format!(
            "{}/config_dump?resource=dynamic_route_configs",
            base_url(admin)?
        );
        let text = self.get(&url).await?;
        config_from_config_dump(&text, &url).map_err(|e| LiveError::from_url(&url, e))
    }

    /// The weights canary-xds serves to `fleet`, from its admin API (`http://host:8877`, or
    /// the full `/api/routes` URL).
    pub async fn control_plane_config(&self, cp: &str, fleet: &str) -> Result<Config, LiveError> {
        let base = base_url(cp)?;
        let url = if base.ends_with("/api/routes") {
            base
        } else {
            format!("{base}/api/routes")
        };
        let text = self.get(&url).await?;
        config_from_routes_json(&text, fleet, &url).map_err(|e| LiveError::from_url(&url, e))
    }
}

/// `host:port` or `http://host:port[/]` as `http://host:port`. HTTPS is refused: the client
/// has no TLS, and admin endpoints are meant for loopback or a private network.
pub fn base_url(url: &str) -> Result<String, LiveError> {
    let with_scheme = if url.contains("://") {
        url.to_string()
    } else {
        format!("http://{url}")
    };
    if !with_scheme.starts_with("http://") {
        return Err(LiveError::Url {
            url: url.to_string(),
            message: "only http:// is supported".into(),
        });
    }
    let rest = with_scheme["http://".len()..].trim_end_matches('/');
    let trimmed = format!("http://{rest}");
    let uri: hyper::Uri = trimmed.parse().map_err(|e| LiveError::Url {
        url: url.to_string(),
        message: format!("{e}"),
    })?;
    if rest.is_empty() || uri.host().is_none_or(str::is_empty) {
        return Err(LiveError::Url {
            url: url.to_string(),
            message: "no host".into(),
        });
    }
    Ok(trimmed)
}

/// Percent-encodes everything but unreserved characters, for a query parameter.
fn query_escape(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::parse::parse_file;
    use crate::routes::table::compile;

    /// What Envoy 1.40 printed for `/stats?format=prometheus&filter=<STATS_FILTER>` with
    /// `canary-xds bootstrap`'s buckets (trimmed to two clusters; the per-origin copies kept
    /// in part, to show they are skipped).
    const ENVOY_STATS: &str = include_str!("../../tests/fixtures/status/envoy-1.40-stats.prom");
    /// Envoy 1.40's `/config_dump?resource=dynamic_route_configs` for a weighted route
    /// (`/qotm/` 70/30), a runtime-fraction chain (`/chain/` 80/20, the Mappings differ in
    /// `timeout_ms`) and a host route with a header matcher (`/foo/`, 87.5/12.5).
    const CONFIG_DUMP: &str =
        include_str!("../../tests/fixtures/status/envoy-1.40-config-dump.json");

    const QOTM: &str = "127_0_0_1_19001__qotm";
    const QOTMV2: &str = "127_0_0_1_19002__qotmv2";

    #[test]
    fn reads_envoy_1_40_prometheus_output() {
        let s = parse_prometheus(ENVOY_STATS).unwrap();
        assert_eq!(s.uptime, Some(1241));
        assert_eq!(
            s.clusters.keys().collect::<Vec<_>>(),
            [QOTM, QOTMV2, "xds_cluster"]
        );
        let v2 = &s.clusters[QOTMV2];
        assert_eq!(v2.rq_total, 57);
        assert_eq!(v2.rq_xx, [0, 45, 0, 0, 12]);
        assert_eq!(v2.responses(), 57);
        // 32 finite buckets from 0.5 ms to 60 s, then +Inf; the external copy is not mixed in.
        assert_eq!(v2.rq_time.buckets.len(), 33);
        assert_eq!(v2.rq_time.buckets[0], Bucket { le: 0.5, count: 35 });
        assert_eq!(v2.rq_time.buckets[32].le, f64::INFINITY);
        assert_eq!(v2.rq_time.count(), 57);
        // p50: rank 28.5 in (0, 0.5] holding 35; p99: rank 56.43 in (40, 50] above 52 of 57.
        let p50 = v2.rq_time.quantile(0.5).unwrap().value;
        let p99 = v2.rq_time.quantile(0.99).unwrap().value;
        assert!((p50 - 0.5 * 28.5 / 35.0).abs() < 1e-9, "{p50}");
        assert!(
            (p99 - (40.0 + 10.0 * (56.43 - 52.0) / 5.0)).abs() < 1e-9,
            "{p99}"
        );
        assert_eq!(s.clusters[QOTM].rq_xx, [0, 143, 0, 0, 0]);
        assert_eq!(s.clusters["xds_cluster"].rq_total, 1);
    }

    #[test]
    fn prometheus_labels_and_errors() {
        let text = "# HELP x\nenvoy_cluster_upstream_rq_total{envoy_cluster_name=\"a\\\"b\\\\c\"} 7 1700000000\n\
                    envoy_cluster_upstream_rq_xx{envoy_cluster_name=\"a\\\"b\\\\c\", envoy_response_code_class=\"5\"} 3\n\
                    something_else{broken 1\n";
        let s = parse_prometheus(text).unwrap();
        let c = &s.clusters["a\"b\\c"];
        assert_eq!((c.rq_total, c.rq_xx[4]), (7, 3));
        let bad =
            parse_prometheus("\nenvoy_cluster_upstream_rq_total{envoy_cluster_name=\"a\"} x\n");
        assert!(
            matches!(bad, Err(LiveError::Prometheus { line: 2, .. })),
            "{bad:?}"
        );
        assert!(parse_prometheus("envoy_cluster_upstream_rq_total 3\n").is_err());
        assert!(
            parse_prometheus(
                "envoy_cluster_upstream_rq_xx{envoy_cluster_name=\"a\",envoy_response_code_class=\"9\"} 1"
            )
            .is_err()
        );
        assert!(
            parse_prometheus("envoy_cluster_upstream_rq_total{envoy_cluster_name=\"a} 1").is_err()
        );
    }

    fn hist(pairs: &[(f64, u64)]) -> Histogram {
        Histogram::new(
            pairs
                .iter()
                .map(|&(le, count)| Bucket { le, count })
                .collect(),
        )
    }

    /// `n` requests all timed in (lo, hi]: p50 is the middle, p99 99% of the way.
    fn times(n: u64, lo: f64, hi: f64) -> Histogram {
        hist(&[(lo, 0), (hi, n), (f64::INFINITY, n)])
    }

    fn stats(total: u64, ok: u64, errors: u64, rq_time: Histogram) -> ClusterStats {
        ClusterStats {
            rq_total: total,
            rq_xx: [0, ok, 0, 0, errors],
            rq_time,
        }
    }

    fn envoy(uptime: u64, clusters: &[(&str, ClusterStats)]) -> EnvoyStats {
        EnvoyStats {
            clusters: clusters
                .iter()
                .map(|(n, c)| (n.to_string(), c.clone()))
                .collect(),
            uptime: Some(uptime),
        }
    }

    fn sample(at: Instant, envoys: &[(&str, EnvoyStats)]) -> Sample {
        Sample {
            at,
            envoys: envoys
                .iter()
                .map(|(u, e)| (u.to_string(), e.clone()))
                .collect(),
        }
    }

    #[test]
    fn a_window_is_deltas_summed_over_envoys() {
        let t0 = Instant::now();
        let before = sample(
            t0,
            &[
                (
                    "e1",
                    envoy(100, &[("c", stats(100, 90, 10, times(100, 1.0, 2.0)))]),
                ),
                (
                    "e2",
                    envoy(100, &[("c", stats(50, 50, 0, times(50, 1.0, 2.0)))]),
                ),
            ],
        );
        let after = sample(
            t0 + Duration::from_secs(10),
            &[
                (
                    "e1",
                    envoy(
                        110,
                        &[
                            ("c", stats(130, 120, 10, times(130, 1.0, 2.0))),
                            // A cluster that appeared in between counts from zero.
                            ("new", stats(4, 4, 0, times(4, 1.0, 2.0))),
                        ],
                    ),
                ),
                (
                    "e2",
                    envoy(110, &[("c", stats(70, 68, 2, times(70, 1.0, 2.0)))]),
                ),
                // An Envoy not read the first time says nothing about the window: its totals
                // since it started are not one.
                (
                    "e3",
                    envoy(5000, &[("c", stats(900, 900, 0, times(900, 1.0, 2.0)))]),
                ),
            ],
        );
        let windows = window(&before, &after);
        let w = &windows["c"];
        assert_eq!(w.requests, 30 + 20);
        assert_eq!(w.errors_5xx, 2);
        assert_eq!(w.rq_time.count(), 50);
        assert_eq!(windows["new"].requests, 4);
    }

    #[test]
    fn an_envoy_that_restarted_counts_from_zero() {
        let t0 = Instant::now();
        let before = sample(
            t0,
            &[(
                "e",
                envoy(
                    1000,
                    &[("c", stats(5000, 4000, 1000, times(5000, 1.0, 2.0)))],
                ),
            )],
        );
        // Restarted: uptime went down, and the counters happen to be higher again.
        let after = sample(
            t0 + Duration::from_secs(60),
            &[(
                "e",
                envoy(30, &[("c", stats(6000, 6000, 0, times(6000, 1.0, 2.0)))]),
            )],
        );
        let w = &window(&before, &after)["c"];
        assert_eq!((w.requests, w.errors_5xx), (6000, 0));
        // Without an uptime, a counter that went down says the same.
        let mut before = before;
        before.envoys.get_mut("e").unwrap().uptime = None;
        let after = sample(
            t0 + Duration::from_secs(60),
            &[(
                "e",
                envoy(30, &[("c", stats(10, 10, 0, times(10, 1.0, 2.0)))]),
            )],
        );
        let w = &window(&before, &after)["c"];
        assert_eq!((w.requests, w.errors_5xx, w.rq_time.count()), (10, 0, 10));
    }

    fn backend(cluster: &str, weight_bp: u32, weighted: Option<bool>) -> BackendConfig {
        BackendConfig {
            cluster: cluster.to_string(),
            mapping: Some(cluster.to_string()),
            namespace: Some("default".to_string()),
            weight_bp,
            weighted,
        }
    }

    fn config(routes: Vec<Vec<BackendConfig>>) -> Config {
        Config {
            weights_from: WeightsFrom::Dir,
            source: "test".into(),
            version: None,
            routes: routes
                .into_iter()
                .enumerate()
                .map(|(i, backends)| RouteConfig {
                    route: format!("/r{i}/"),
                    note: None,
                    backends,
                })
                .collect(),
        }
    }

    #[test]
    fn the_primary_is_the_unweighted_mapping_else_the_largest_share() {
        // Ambassador's default Mapping is the primary even with the smaller share.
        let b = [
            backend("canary", 6000, Some(true)),
            backend("main", 4000, Some(false)),
        ];
        assert_eq!(primary_index(&b), Some(1));
        // Several unweighted: the largest share among them.
        let b = [
            backend("a", 3000, Some(false)),
            backend("b", 1000, Some(true)),
            backend("c", 6000, Some(false)),
        ];
        assert_eq!(primary_index(&b), Some(2));
        // All weighted, or not known (Envoy's config): the largest share.
        let b = [
            backend("a", 2000, Some(true)),
            backend("b", 8000, Some(true)),
        ];
        assert_eq!(primary_index(&b), Some(1));
        let b = [backend("a", 2000, None), backend("b", 8000, None)];
        assert_eq!(primary_index(&b), Some(1));
        // Ties by (namespace, name): the first.
        let mut b = [
            backend("b", 5000, Some(true)),
            backend("a", 5000, Some(true)),
        ];
        assert_eq!(primary_index(&b), Some(1));
        b[1].namespace = Some("zz".into());
        assert_eq!(primary_index(&b), Some(0));
        assert_eq!(primary_index(&[]), None);
    }

    fn win(requests: u64, errors: u64, rq_time: Histogram) -> ClusterWindow {
        ClusterWindow {
            requests,
            errors_5xx: errors,
            rq_time,
        }
    }

    fn windows(list: &[(&str, ClusterWindow)]) -> BTreeMap<String, ClusterWindow> {
        list.iter()
            .map(|(n, w)| (n.to_string(), w.clone()))
            .collect()
    }

    fn main_canary(canary_bp: u32) -> Config {
        config(vec![vec![
            backend("main", 10_000 - canary_bp, Some(false)),
            backend("canary", canary_bp, Some(true)),
        ]])
    }

    fn verdict_of(r: &Report) -> (Verdict, bool, bool) {
        let c = &r.routes[0].backends[1];
        (c.verdict, c.worse_errors, c.worse_latency)
    }

    #[test]
    fn a_canary_failing_20_percent_is_worse_and_exits_3() {
        let t = Thresholds::default();
        let w = windows(&[
            ("main", win(9000, 0, times(9000, 1.0, 2.0))),
            ("canary", win(1000, 200, times(1000, 1.0, 2.0))),
        ]);
        let r = compare_windows(&main_canary(1000), &w, 60.0, &t);
        assert_eq!(verdict_of(&r), (Verdict::Worse, true, false));
        let c = &r.routes[0].backends[1];
        assert_eq!(c.role, Role::Canary);
        assert_eq!(r.routes[0].backends[0].verdict, Verdict::Primary);
        assert_eq!(c.share, Some(10.0));
        assert_eq!(c.success_rate, Some(80.0));
        assert!((c.requests_per_second - 1000.0 / 60.0).abs() < 1e-9);
        assert!((c.errors_5xx_per_second - 200.0 / 60.0).abs() < 1e-9);
        assert_eq!(c.error_test.unwrap().method, Method::Fisher);
        assert!(
            c.reasons[0].starts_with("5xx 20% vs 0%: worse (Fisher p="),
            "{:?}",
            c.reasons
        );
        assert_eq!(r.exit_code(false), 3);
        assert_eq!(r.summary().worse, 1);
    }

    #[test]
    fn identical_healthy_traffic_is_healthy_and_exits_0() {
        let t = Thresholds::default();
        let w = windows(&[
            ("main", win(9000, 9, times(9000, 5.0, 10.0))),
            ("canary", win(1000, 1, times(1000, 5.0, 10.0))),
        ]);
        let r = compare_windows(&main_canary(1000), &w, 60.0, &t);
        assert_eq!(verdict_of(&r), (Verdict::Healthy, false, false));
        assert_eq!(r.exit_code(true), 0);
        let c = &r.routes[0].backends[1];
        assert_eq!(c.p50_ms, Some(7.5));
        assert!((c.p99_ms.unwrap() - 9.95).abs() < 1e-9);
    }

    #[test]
    fn too_little_traffic_is_undecided_and_exits_4_only_when_required() {
        let t = Thresholds::default();
        let w = windows(&[
            ("main", win(1800, 0, times(1800, 1.0, 2.0))),
            ("canary", win(199, 0, times(199, 1.0, 2.0))),
        ]);
        let r = compare_windows(&main_canary(1000), &w, 60.0, &t);
        assert_eq!(verdict_of(&r).0, Verdict::NotEnoughTraffic);
        assert!(
            r.routes[0].backends[1]
                .reasons
                .iter()
                .any(|m| m.contains("199 requests on the canary")),
            "{:?}",
            r.routes[0].backends[1].reasons
        );
        assert_eq!(r.exit_code(false), 0);
        assert_eq!(r.exit_code(true), 4);
        // A few requests can still be enough to be worse: 8 of 10 failing against none.
        let w = windows(&[
            ("main", win(1800, 0, times(1800, 1.0, 2.0))),
            ("canary", win(10, 8, times(10, 1.0, 2.0))),
        ]);
        let r = compare_windows(&main_canary(1000), &w, 60.0, &t);
        assert_eq!(verdict_of(&r), (Verdict::Worse, true, false));
        // Counters enough, but the histograms lag (no timings yet): undecided, and it says why.
        let w = windows(&[
            ("main", win(1800, 0, Histogram::default())),
            ("canary", win(300, 0, Histogram::default())),
        ]);
        let r = compare_windows(&main_canary(1000), &w, 60.0, &t);
        assert_eq!(verdict_of(&r).0, Verdict::NotEnoughTraffic);
        assert!(r.routes[0].backends[1].reasons[1].starts_with("latency: 0 timed requests"));
        // A cluster no Envoy knows.
        let w = windows(&[("main", win(1800, 0, times(1800, 1.0, 2.0)))]);
        let r = compare_windows(&main_canary(1000), &w, 60.0, &t);
        let c = &r.routes[0].backends[1];
        assert!(!c.in_envoy && c.verdict == Verdict::NotEnoughTraffic);
        assert!(
            c.reasons[0].contains("no Envoy has a cluster canary"),
            "{:?}",
            c.reasons
        );
    }

    #[test]
    fn p99_is_worse_only_past_both_the_ratio_and_the_margin() {
        let t = Thresholds::default();
        let run = |primary: Histogram, canary: Histogram| {
            let w = windows(&[
                ("main", win(primary.count(), 0, primary)),
                ("canary", win(canary.count(), 0, canary)),
            ]);
            verdict_of(&compare_windows(&main_canary(2000), &w, 60.0, &t))
        };
        // 49.9 ms against 19.9: x2.5 and +30 ms.
        assert_eq!(
            run(times(1000, 10.0, 20.0), times(300, 40.0, 50.0)),
            (Verdict::Worse, false, true)
        );
        // 19.9 against 9.95: x2 but only +9.95 ms.
        assert_eq!(
            run(times(1000, 5.0, 10.0), times(300, 10.0, 20.0)),
            (Verdict::Healthy, false, false)
        );
        // 239.9 against 209.9: +30 ms but only x1.14.
        assert_eq!(
            run(times(1000, 200.0, 210.0), times(300, 230.0, 240.0)),
            (Verdict::Healthy, false, false)
        );
        // Clearly slower, but 150 timed requests on the canary: the latency test cannot decide.
        assert_eq!(
            run(times(1000, 10.0, 20.0), times(150, 40.0, 50.0)),
            (Verdict::NotEnoughTraffic, false, false)
        );
    }

    /// Holm across routes: two canaries each at p = 0.0077 are each worse alone, but not
    /// together (the smallest is compared with alpha / 2); beside a clear failure, the step
    /// down lets the second through at alpha / 1 again, where Bonferroni would not.
    #[test]
    fn the_error_test_is_corrected_across_routes() {
        let t = Thresholds::default();
        // 7 of 1000 against 0 of 1000: Fisher p = C(1000, 7) / C(2000, 7) = 0.0077.
        let borderline = |i: usize| {
            [
                (format!("main{i}"), win(1000, 0, times(1000, 1.0, 2.0))),
                (format!("canary{i}"), win(1000, 7, times(1000, 1.0, 2.0))),
            ]
        };
        let route = |i: usize| {
            vec![
                backend(&format!("main{i}"), 5000, Some(false)),
                backend(&format!("canary{i}"), 5000, Some(true)),
            ]
        };
        let mut w: BTreeMap<String, ClusterWindow> = borderline(0).into_iter().collect();
        let one = compare_windows(&config(vec![route(0)]), &w, 60.0, &t);
        let p = one.routes[0].backends[1].error_test.unwrap().p_value;
        assert!(p > 0.0076 && p < 0.0078, "{p}");
        assert_eq!(one.routes[0].backends[1].verdict, Verdict::Worse);

        w.extend(borderline(1));
        let two = compare_windows(&config(vec![route(0), route(1)]), &w, 60.0, &t);
        for r in &two.routes {
            let c = &r.backends[1];
            assert_eq!(c.verdict, Verdict::Healthy, "{:?}", c.reasons);
            assert!((c.error_test.unwrap().adjusted_p_value - 2.0 * p).abs() < 1e-12);
        }

        w.insert("canary1".into(), win(1000, 100, times(1000, 1.0, 2.0)));
        let step = compare_windows(&config(vec![route(0), route(1)]), &w, 60.0, &t);
        assert_eq!(step.routes[0].backends[1].verdict, Verdict::Worse);
        assert_eq!(step.routes[1].backends[1].verdict, Verdict::Worse);
    }

    #[test]
    fn a_canary_at_100_percent_is_promoted() {
        let c = config(vec![vec![
            backend("main", 0, Some(false)),
            backend("canary", 10_000, Some(true)),
        ]]);
        let w = windows(&[("canary", win(5000, 5, times(5000, 1.0, 2.0)))]);
        let r = compare_windows(&c, &w, 60.0, &Thresholds::default());
        assert_eq!(r.routes[0].backends[0].name, "main");
        assert_eq!(r.routes[0].backends[1].verdict, Verdict::Promoted);
        assert_eq!(r.routes[0].backends[1].share, Some(100.0));
        assert_eq!(r.exit_code(true), 0);
        assert_eq!(r.summary().promoted, 1);
    }

    /// The window is deltas: a canary that failed before the first reading and is healthy
    /// between the two readings is healthy; over the totals since Envoy started it would not be.
    #[test]
    fn errors_before_the_window_do_not_count() {
        let t0 = Instant::now();
        let before = sample(
            t0,
            &[(
                "e",
                envoy(
                    100,
                    &[
                        ("main", stats(9000, 9000, 0, times(9000, 1.0, 2.0))),
                        ("canary", stats(1000, 500, 500, times(1000, 1.0, 2.0))),
                    ],
                ),
            )],
        );
        let after = sample(
            t0 + Duration::from_secs(60),
            &[(
                "e",
                envoy(
                    160,
                    &[
                        ("main", stats(18000, 18000, 0, times(18000, 1.0, 2.0))),
                        ("canary", stats(2000, 1500, 500, times(2000, 1.0, 2.0))),
                    ],
                ),
            )],
        );
        let t = Thresholds::default();
        let r = compare(&main_canary(1000), &before, &after, &t);
        assert_eq!(verdict_of(&r).0, Verdict::Healthy);
        assert_eq!(r.routes[0].backends[1].requests, 1000);
        assert!((r.window_seconds - 60.0).abs() < 1e-9);
        // The same Envoy read when it started: the totals since then.
        let at_start = sample(t0, &[("e", envoy(0, &[]))]);
        let totals = compare(&main_canary(1000), &at_start, &after, &t);
        assert_eq!(verdict_of(&totals).0, Verdict::Worse);
    }

    const MAPPINGS: &str = "\
apiVersion: ambassador/v1
kind: Mapping
name: qotm
prefix: /qotm/
service: qotm
---
apiVersion: ambassador/v1
kind: Mapping
name: qotmv2
prefix: /qotm/
service: qotmv2
weight: 10
---
apiVersion: getambassador.io/v2
kind: Mapping
metadata: {name: beta, namespace: canary}
spec:
  prefix: /qotm/
  host: foo.com
  method: GET
  headers: {x-canary: \"true\", x-beta: true}
  service: beta
  weight: 25
---
apiVersion: ambassador/v1
kind: Mapping
name: main
prefix: /qotm/
host: foo.com
method: GET
headers: {x-beta: true, x-canary: \"true\"}
service: main
---
apiVersion: ambassador/v1
kind: Mapping
name: edge
ambassador_id: edge
prefix: /e/
service: edge
";

    /// `/api/routes` is the `check --format json --all-fleets` document plus a version: read
    /// back, it gives the same routes as the table it came from, route descriptions included.
    #[test]
    fn the_route_json_reads_back_as_the_table() {
        let compiled = compile(&[parse_file("m.yaml", MAPPINGS.as_bytes())], None);
        let from_tables = config_from_tables(&compiled.tables, "default", "dir");
        assert_eq!(from_tables.routes.len(), 2);
        assert_eq!(
            from_tables.routes[0].route,
            "/qotm/ (host foo.com, GET, x-beta: present, x-canary: \"true\")"
        );
        let doc = crate::routes::render::json(&compiled.tables, None, &compiled.diagnostics);
        let mut value: Value = serde_json::from_str(&doc).unwrap();
        value["version"] = Value::from("v42");
        let text = value.to_string();
        let from_json = config_from_routes_json(&text, "default", "cp").unwrap();
        assert_eq!(from_json.version.as_deref(), Some("v42"));
        assert_eq!(from_json.weights_from, WeightsFrom::ControlPlane);
        assert_eq!(from_json.routes, from_tables.routes);
        let beta = &from_json.routes[0].backends[0];
        assert_eq!(beta.label(), "beta.canary");
        assert_eq!((beta.weight_bp, beta.weighted), (2500, Some(true)));
        // One fleet's document, and another fleet of the all-fleets one.
        let one = crate::routes::render::json(&compiled.tables, Some("default"), &[]);
        assert_eq!(
            config_from_routes_json(&one, "default", "cp")
                .unwrap()
                .routes,
            from_tables.routes
        );
        assert!(config_from_routes_json(&one, "edge", "cp").is_err());
        let edge = config_from_routes_json(&text, "edge", "cp").unwrap();
        assert_eq!(edge.routes[0].backends[0].cluster, "edge");
        assert!(
            config_from_routes_json(&text, "nobody", "cp")
                .unwrap()
                .routes
                .is_empty()
        );
    }

    #[test]
    fn the_route_json_is_read_leniently() {
        // No `weighted` (an older canary-xds), `weight` instead of `weight_bp`, unknown fields.
        let text = r#"{"version": 7, "routes": [{"prefix": "/a/", "extra": 1, "backends": [
            {"cluster": "a", "weight": 90.5, "mapping": "a"},
            {"cluster": "b", "weight_bp": 950, "held": "x"}]}]}"#;
        let c = config_from_routes_json(text, "default", "cp").unwrap();
        assert_eq!(c.version.as_deref(), Some("7"));
        let b = &c.routes[0].backends;
        assert_eq!(
            (b[0].weight_bp, b[0].weighted, b[0].label()),
            (9050, None, "a".into())
        );
        assert_eq!((b[1].weight_bp, b[1].label()), (950, "b".into()));
        for bad in [
            "[]",
            "{}",
            r#"{"routes": [{"backends": [{"weight_bp": 1}]}]}"#,
            r#"{"routes": [{"backends": [{"cluster": "a"}]}]}"#,
            "not json",
        ] {
            assert!(
                config_from_routes_json(bad, "default", "cp").is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn reads_weights_from_envoy_1_40_config_dump() {
        let c = config_from_config_dump(CONFIG_DUMP, "dump").unwrap();
        assert_eq!(c.weights_from, WeightsFrom::Envoy);
        let shown: Vec<(String, Vec<(String, u32)>)> = c
            .routes
            .iter()
            .map(|r| {
                (
                    r.route.clone(),
                    r.backends
                        .iter()
                        .map(|b| (b.label(), b.weight_bp))
                        .collect(),
                )
            })
            .collect();
        // The host-less routes are in both virtual hosts and listed once, without a host.
        assert_eq!(
            shown,
            [
                (
                    "/chain/".to_string(),
                    vec![("a".to_string(), 8000), ("b".to_string(), 2000)]
                ),
                (
                    "/qotm/".to_string(),
                    vec![("qotm".to_string(), 7000), ("qotmv2".to_string(), 3000)]
                ),
                (
                    "/foo/ (x-canary: \"true\") (host foo.com)".to_string(),
                    vec![("foo2.canary".to_string(), 1250), ("foo".to_string(), 8750)]
                ),
            ]
        );
        assert_eq!(c.routes[1].backends[1].cluster, QOTMV2);
        assert!(
            c.routes
                .iter()
                .flat_map(|r| &r.backends)
                .all(|b| b.weighted.is_none())
        );
        // The primary of the 87.5/12.5 route is the larger share.
        assert_eq!(primary_index(&c.routes[2].backends), Some(1));
    }

    #[test]
    fn runtime_fraction_chains_of_any_denominator() {
        let dump = serde_json::json!({"configs": [{"route_config": {"virtual_hosts": [{
        "domains": ["*"],
        "routes": [
            {"match": {"prefix": "/x/", "runtime_fraction": {"default_value":
                {"numerator": 25}}}, "route": {"cluster": "a"}},
            {"match": {"prefix": "/x/", "runtime_fraction": {"default_value":
                {"numerator": 600000, "denominator": "MILLION"}}}, "route": {"cluster": "b"}},
            {"match": {"prefix": "/x/"}, "route": {"cluster": "c"}},
            {"match": {"prefix": "/y/"}, "route": {"cluster": "lonely"}},
            {"match": {"path": "/z"}, "route": {"weighted_clusters": {"clusters": [
                {"name": "p", "weight": 3}, {"name": "q", "weight": 1}]}}}
        ]}]}}]});
        let c = config_from_config_dump(&dump.to_string(), "d").unwrap();
        let weights: Vec<Vec<u32>> = c
            .routes
            .iter()
            .map(|r| r.backends.iter().map(|b| b.weight_bp).collect())
            .collect();
        assert_eq!(weights, [vec![2500, 3500, 4000], vec![7500, 2500]]);
        assert_eq!(c.routes[1].route, "=/z");
        assert!(config_from_config_dump("{}", "d").is_err());
    }

    #[test]
    fn admin_urls() {
        assert_eq!(base_url("127.0.0.1:9901").unwrap(), "http://127.0.0.1:9901");
        assert_eq!(base_url("http://envoy:9901/").unwrap(), "http://envoy:9901");
        assert!(base_url("https://envoy:9901").is_err());
        assert!(base_url("http://").is_err());
        assert_eq!(
            query_escape(STATS_FILTER),
            "%5Ecluster%5C..%2B%5C.upstream_rq_%28total%7C%5B0-9%5Dxx%7Ctime%29%24%7C%5Eserver%5C.uptime%24"
        );
    }
}
