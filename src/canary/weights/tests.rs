//! The configured weights read from each source: the route tables, `/api/routes` (which must
//! read back as the tables it came from), and Envoy 1.40's `/config_dump`.

use serde_json::Value;

use super::runtime::EnvoyRuntime;
use super::*;
use crate::canary::compare::primary_index;
use crate::input::parse::parse_file;
use crate::routes::compile;

/// Envoy 1.40's `/config_dump?resource=dynamic_route_configs` for a weighted route
/// (`/qotm/` 70/30), a runtime-fraction chain (`/chain/` 80/20, the Mappings differ in
/// `timeout_ms`) and a host route with a header matcher (`/foo/`, 87.5/12.5).
const CONFIG_DUMP: &str =
    include_str!("../../../tests/fixtures/status/envoy-1.40-config-dump.json");

const QOTMV2: &str = "127_0_0_1_19002__qotmv2";

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

#[test]
fn reads_weights_from_envoy_1_40_config_dump() {
    let c =
        ConfiguredWeights::from_config_dump(CONFIG_DUMP, &EnvoyRuntime::default(), "dump").unwrap();
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
    let c = ConfiguredWeights::from_config_dump(&dump.to_string(), &EnvoyRuntime::default(), "d")
        .unwrap();
    let weights: Vec<Vec<u32>> = c
        .routes
        .iter()
        .map(|r| r.backends.iter().map(|b| b.weight_bp).collect())
        .collect();
    assert_eq!(weights, [vec![2500, 3500, 4000], vec![7500, 2500]]);
    assert_eq!(c.routes[1].route, "=/z");
    assert!(ConfiguredWeights::from_config_dump("{}", &EnvoyRuntime::default(), "d").is_err());
}

/// A route that reads its weights from the runtime (canary-xds's runtime layer): Envoy's
/// `/runtime` value for `<prefix>.<cluster>` is the weight, the configured one where the runtime
/// has none or a value that is not an integer; a runtime-fraction link reads its `runtime_key`.
#[test]
fn weights_from_runtime_keys_override_the_configured_ones() {
    let dump = serde_json::json!({"configs": [{"route_config": {"virtual_hosts": [{
    "domains": ["*"],
    "routes": [
        {"match": {"prefix": "/w/"}, "route": {"weighted_clusters": {
            "runtime_key_prefix": "canary_xds.r1",
            "clusters": [{"name": "main", "weight": 10000}, {"name": "canary", "weight": 0},
                         {"name": "other", "weight": 0}]}}},
        {"match": {"prefix": "/x/", "runtime_fraction": {"runtime_key": "k",
            "default_value": {"numerator": 50}}}, "route": {"cluster": "a"}},
        {"match": {"prefix": "/x/"}, "route": {"cluster": "b"}}
    ]}]}}]});
    let runtime = EnvoyRuntime::from_json(
        &serde_json::json!({"layers": ["static", "canary-xds"], "entries": {
            "canary_xds.r1.main": {"final_value": "7500", "layer_values": ["", "7500"]},
            "canary_xds.r1.canary": {"final_value": "2500", "layer_values": ["", "2500"]},
            "canary_xds.r1.other": {"final_value": "many", "layer_values": ["", "many"]},
            "k": {"final_value": "20", "layer_values": ["", "20"]}
        }})
        .to_string(),
    )
    .unwrap();
    let c = ConfiguredWeights::from_config_dump(&dump.to_string(), &runtime, "d").unwrap();
    let weights: Vec<Vec<u32>> = c
        .routes
        .iter()
        .map(|r| r.backends.iter().map(|b| b.weight_bp).collect())
        .collect();
    assert_eq!(weights, [vec![7500, 2500, 0], vec![2000, 8000]]);
    // Without the runtime, the configured weights.
    let c = ConfiguredWeights::from_config_dump(&dump.to_string(), &EnvoyRuntime::default(), "d")
        .unwrap();
    assert_eq!(c.routes[0].backends[0].weight_bp, 10_000);
    assert!(EnvoyRuntime::from_json("{}").is_err());
}
