//! The configured weights read from canary-xds's `/api/routes` (the `check --format json`
//! document), leniently, so that another version's document still reads.

use serde_json::Value;

use super::{BackendWeight, ConfiguredWeights, RouteWeights, WeightsFrom};
use crate::canary::error::LiveError;

impl ConfiguredWeights {
    /// The weights of one fleet from canary-xds's `/api/routes` (or `check --format json`, with
    /// or without `--all-fleets`). Read leniently: unknown fields are ignored, a backend needs only
    /// `cluster` and `weight_bp` (or `weight`, a percentage); `weighted` is used when present.
    pub fn from_routes_json(
        text: &str,
        fleet: &str,
        source: &str,
    ) -> Result<ConfiguredWeights, LiveError> {
        let doc: Value = serde_json::from_str(text)?;
        let (routes, version) = fleet_routes(&doc, fleet)?;
        let routes = routes
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .enumerate()
            .map(|(i, r)| route_from_json(r, i + 1))
            .collect::<Result<Vec<_>, _>>()?;
        let version = version.and_then(|v| match v {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        });
        Ok(ConfiguredWeights {
            weights_from: WeightsFrom::ControlPlane,
            source: source.to_string(),
            version,
            routes,
        })
    }
}

/// The fleet's `routes` and `version` in either document: one fleet's (`routes` at the top,
/// refused when it names another fleet) or every fleet's (under `fleets`; the fleet's version,
/// else the document's). A fleet the document does not name has no routes.
fn fleet_routes<'a>(
    doc: &'a Value,
    fleet: &str,
) -> Result<(Option<&'a Value>, Option<&'a Value>), LiveError> {
    let obj = doc
        .as_object()
        .ok_or_else(|| LiveError::Shape("a route table must be a JSON object".into()))?;
    if let Some(fleets) = obj.get("fleets").and_then(Value::as_object) {
        let f = fleets.get(fleet);
        return Ok((
            f.and_then(|f| f.get("routes")),
            f.and_then(|f| f.get("version"))
                .or_else(|| obj.get("version")),
        ));
    }
    if !obj.contains_key("routes") {
        return Err(LiveError::Shape(
            "not a route table: no \"routes\" and no \"fleets\"".into(),
        ));
    }
    if let Some(named) = obj.get("fleet").and_then(Value::as_str)
        && named != fleet
    {
        return Err(LiveError::Shape(format!(
            "the route table is fleet {named}'s, not {fleet}'s"
        )));
    }
    Ok((obj.get("routes"), obj.get("version")))
}

/// Route number `n` (from 1) of the document, with its backends.
fn route_from_json(r: &Value, n: usize) -> Result<RouteWeights, LiveError> {
    let backends = r["backends"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|b| backend_from_json(b, n))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(RouteWeights {
        route: describe_json(r),
        note: r["held"].as_str().map(str::to_string),
        backends,
    })
}

/// A backend of route number `n`: `cluster` and a weight are required, the rest is optional.
fn backend_from_json(b: &Value, n: usize) -> Result<BackendWeight, LiveError> {
    let cluster = b["cluster"]
        .as_str()
        .ok_or_else(|| LiveError::Shape(format!("route {n}: a backend without \"cluster\"")))?;
    let weight_bp = match (b["weight_bp"].as_u64(), b["weight"].as_f64()) {
        (Some(bp), _) => bp,
        (None, Some(pct)) => (pct * 100.0).round() as u64,
        (None, None) => {
            return Err(LiveError::Shape(format!(
                "route {n}: backend {cluster} without \"weight_bp\""
            )));
        }
    };
    Ok(BackendWeight {
        cluster: cluster.to_string(),
        mapping: b["mapping"].as_str().map(str::to_string),
        namespace: b["namespace"].as_str().map(str::to_string),
        weight_bp: u32::try_from(weight_bp.min(10_000)).unwrap_or(10_000),
        weighted: b["weighted"].as_bool(),
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
