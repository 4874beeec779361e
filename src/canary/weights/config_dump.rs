//! The weights Envoy holds, read from its `/config_dump`: `weighted_clusters` routes and chains
//! of routes split by cumulative `runtime_fraction`s.

use std::collections::BTreeSet;

use serde_json::Value;

use super::{BackendWeight, ConfiguredWeights, RouteWeights, WeightsFrom};
use crate::canary::error::LiveError;

impl ConfiguredWeights {
    /// The weights Envoy holds, from `/config_dump?resource=dynamic_route_configs`: each route with
    /// `weighted_clusters`, and each chain of routes with the same match and cumulative
    /// `runtime_fraction`s (what canary-xds and Ambassador send when the backends' route settings
    /// differ). A route repeated in several virtual hosts is listed once. Whether a backend had an
    /// explicit weight is unknown here, so the primary is the largest share.
    pub fn from_config_dump(text: &str, source: &str) -> Result<ConfiguredWeights, LiveError> {
        let doc: Value = serde_json::from_str(text)?;
        let configs = doc["configs"]
            .as_array()
            .ok_or_else(|| LiveError::Shape("not a route config dump: no \"configs\"".into()))?;
        // Key: the match (without runtime_fraction) and the backends; value: the hosts it is in.
        let mut seen: Vec<(String, Vec<BackendWeight>, BTreeSet<String>, String)> = Vec::new();
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
                        None => {
                            seen.push((key, backends, domains.iter().cloned().collect(), label))
                        }
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
                RouteWeights {
                    route,
                    note: None,
                    backends,
                }
            })
            .collect();
        Ok(ConfiguredWeights {
            weights_from: WeightsFrom::Envoy,
            source: source.to_string(),
            version: None,
            routes,
        })
    }
}

/// The routes of a virtual host as (match, backends): a `weighted_clusters` route is one
/// entry; consecutive routes with the same match whose `runtime_fraction`s are cumulative
/// thresholds form one entry (link i takes the fraction above link i-1's, the link without a
/// fraction the rest).
fn split_routes(routes: &[Value]) -> Vec<(Value, Vec<BackendWeight>)> {
    let mut out: Vec<(Value, Vec<BackendWeight>)> = Vec::new();
    let mut chain: Option<(Value, Vec<BackendWeight>, u32)> = None;
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
            backends.push(BackendWeight {
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
                .map(|(i, (c, w))| BackendWeight {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::canary::compare::primary_index;

    /// Envoy 1.40's `/config_dump?resource=dynamic_route_configs` for a weighted route
    /// (`/qotm/` 70/30), a runtime-fraction chain (`/chain/` 80/20, the Mappings differ in
    /// `timeout_ms`) and a host route with a header matcher (`/foo/`, 87.5/12.5).
    const CONFIG_DUMP: &str =
        include_str!("../../../tests/fixtures/status/envoy-1.40-config-dump.json");

    const QOTMV2: &str = "127_0_0_1_19002__qotmv2";

    #[test]
    fn reads_weights_from_envoy_1_40_config_dump() {
        let c = ConfiguredWeights::from_config_dump(CONFIG_DUMP, "dump").unwrap();
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
        let c = ConfiguredWeights::from_config_dump(&dump.to_string(), "d").unwrap();
        let weights: Vec<Vec<u32>> = c
            .routes
            .iter()
            .map(|r| r.backends.iter().map(|b| b.weight_bp).collect())
            .collect();
        assert_eq!(weights, [vec![2500, 3500, 4000], vec![7500, 2500]]);
        assert_eq!(c.routes[1].route, "=/z");
        assert!(ConfiguredWeights::from_config_dump("{}", "d").is_err());
    }
}
