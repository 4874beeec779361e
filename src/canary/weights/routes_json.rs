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
                backends.push(BackendWeight {
                    cluster: cluster.to_string(),
                    mapping: b["mapping"].as_str().map(str::to_string),
                    namespace: b["namespace"].as_str().map(str::to_string),
                    weight_bp: u32::try_from(weight_bp.min(10_000)).unwrap_or(10_000),
                    weighted: b["weighted"].as_bool(),
                });
            }
            out.push(RouteWeights {
                route: describe_json(r),
                note: r["held"].as_str().map(str::to_string),
                backends,
            });
        }
        Ok(ConfiguredWeights {
            weights_from: WeightsFrom::ControlPlane,
            source: source.to_string(),
            version,
            routes: out,
        })
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::parse::parse_file;
    use crate::routes::table::compile;

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
        let from_tables = ConfiguredWeights::from_tables(&compiled.tables, "default", "dir");
        assert_eq!(from_tables.routes.len(), 2);
        assert_eq!(
            from_tables.routes[0].route,
            "/qotm/ (host foo.com, GET, x-beta: present, x-canary: \"true\")"
        );
        let doc = crate::routes::render::json(&compiled.tables, None, &compiled.diagnostics);
        let mut value: Value = serde_json::from_str(&doc).unwrap();
        value["version"] = Value::from("v42");
        let text = value.to_string();
        let from_json = ConfiguredWeights::from_routes_json(&text, "default", "cp").unwrap();
        assert_eq!(from_json.version.as_deref(), Some("v42"));
        assert_eq!(from_json.weights_from, WeightsFrom::ControlPlane);
        assert_eq!(from_json.routes, from_tables.routes);
        let beta = &from_json.routes[0].backends[0];
        assert_eq!(beta.label(), "beta.canary");
        assert_eq!((beta.weight_bp, beta.weighted), (2500, Some(true)));
        // One fleet's document, and another fleet of the all-fleets one.
        let one = crate::routes::render::json(&compiled.tables, Some("default"), &[]);
        assert_eq!(
            ConfiguredWeights::from_routes_json(&one, "default", "cp")
                .unwrap()
                .routes,
            from_tables.routes
        );
        assert!(ConfiguredWeights::from_routes_json(&one, "edge", "cp").is_err());
        let edge = ConfiguredWeights::from_routes_json(&text, "edge", "cp").unwrap();
        assert_eq!(edge.routes[0].backends[0].cluster, "edge");
        assert!(
            ConfiguredWeights::from_routes_json(&text, "nobody", "cp")
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
        let c = ConfiguredWeights::from_routes_json(text, "default", "cp").unwrap();
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
                ConfiguredWeights::from_routes_json(bad, "default", "cp").is_err(),
                "{bad}"
            );
        }
    }
}
