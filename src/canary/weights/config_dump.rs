//! The weights Envoy holds, read from its `/config_dump`: `weighted_clusters` routes and chains
//! of routes split by cumulative `runtime_fraction`s, with the weights its runtime overrides.

use std::collections::BTreeSet;

use serde_json::Value;

use super::runtime::EnvoyRuntime;
use super::{BackendWeight, ConfiguredWeights, RouteWeights, WeightsFrom};
use crate::canary::error::LiveError;

impl ConfiguredWeights {
    /// The weights Envoy holds, from `/config_dump?resource=dynamic_route_configs`: each route with
    /// `weighted_clusters`, and each chain of routes with the same match and cumulative
    /// `runtime_fraction`s (what canary-xds and Ambassador send when the backends' route settings
    /// differ). A route repeated in several virtual hosts is listed once. A weight the route
    /// reads from a runtime key (`runtime_key_prefix`, canary-xds's runtime layer) is the
    /// `runtime`'s value where it holds one, as Envoy reads it. Whether a backend had an
    /// explicit weight is unknown here, so the primary is the largest share.
    pub fn from_config_dump(
        text: &str,
        runtime: &EnvoyRuntime,
        source: &str,
    ) -> Result<ConfiguredWeights, LiveError> {
        let doc: Value = serde_json::from_str(text)?;
        let configs = doc["configs"]
            .as_array()
            .ok_or_else(|| LiveError::Shape("not a route config dump: no \"configs\"".into()))?;
        let virtual_hosts = configs.iter().flat_map(|c| {
            c["route_config"]["virtual_hosts"]
                .as_array()
                .into_iter()
                .flatten()
        });
        let mut seen: Vec<SplitRoute> = Vec::new();
        for vh in virtual_hosts {
            let domains: Vec<String> = vh["domains"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect();
            let routes: &[Value] = vh["routes"].as_array().map_or(&[], Vec::as_slice);
            for (matcher, backends) in split_routes(routes, runtime) {
                if backends.len() > 1 {
                    add_route(&mut seen, &matcher, backends, &domains);
                }
            }
        }
        Ok(ConfiguredWeights {
            weights_from: WeightsFrom::Envoy,
            source: source.to_string(),
            version: None,
            routes: seen.into_iter().map(SplitRoute::into_weights).collect(),
        })
    }
}

/// A route of the dump that splits traffic, with the domains of every virtual host it is in.
struct SplitRoute {
    /// The match (without `runtime_fraction`) as JSON text: with the backends, what makes the
    /// routes of two virtual hosts the same.
    key: String,
    /// The match described for people.
    label: String,
    backends: Vec<BackendWeight>,
    hosts: BTreeSet<String>,
}

impl SplitRoute {
    /// The route as `status` shows it: with its hosts, unless every host (`*`) has it.
    fn into_weights(self) -> RouteWeights {
        let route = if self.hosts.contains("*") || self.hosts.is_empty() {
            self.label
        } else {
            let hosts: Vec<String> = self.hosts.into_iter().collect();
            format!("{} (host {})", self.label, hosts.join(", "))
        };
        RouteWeights {
            route,
            note: None,
            backends: self.backends,
        }
    }
}

/// Adds a route of a virtual host with `domains`: to the same route (same match, same backends)
/// seen in another virtual host, else as a new one.
fn add_route(
    seen: &mut Vec<SplitRoute>,
    matcher: &Value,
    backends: Vec<BackendWeight>,
    domains: &[String],
) {
    let key = matcher.to_string();
    match seen
        .iter_mut()
        .find(|r| r.key == key && r.backends == backends)
    {
        Some(r) => r.hosts.extend(domains.iter().cloned()),
        None => seen.push(SplitRoute {
            key,
            label: describe_match(matcher),
            backends,
            hosts: domains.iter().cloned().collect(),
        }),
    }
}

/// A chain of routes being read: its match, and its links so far.
struct Chain {
    matcher: Value,
    backends: Vec<BackendWeight>,
    /// The fraction the links so far take, in hundredths of a percent.
    cumulative: u32,
}

impl Chain {
    fn end(self) -> (Value, Vec<BackendWeight>) {
        (self.matcher, self.backends)
    }
}

/// The routes of a virtual host as (match, backends): a `weighted_clusters` route is one
/// entry; consecutive routes with the same match whose `runtime_fraction`s are cumulative
/// thresholds form one entry (link i takes the fraction above link i-1's, the link without a
/// fraction the rest).
fn split_routes(routes: &[Value], runtime: &EnvoyRuntime) -> Vec<(Value, Vec<BackendWeight>)> {
    let mut out: Vec<(Value, Vec<BackendWeight>)> = Vec::new();
    let mut chain: Option<Chain> = None;
    for r in routes {
        let mut matcher = r["match"].clone();
        let fraction = matcher
            .as_object_mut()
            .and_then(|m| m.remove("runtime_fraction"))
            .map(|f| fraction_bp(&f, runtime));
        let Some(cluster) = r["route"]["cluster"].as_str() else {
            // Not a link: it ends the chain before it.
            out.extend(chain.take().map(Chain::end));
            out.extend(weighted_clusters(r, runtime).map(|backends| (matcher, backends)));
            continue;
        };
        // A link of a chain: continue the current one or start another.
        if chain.as_ref().is_some_and(|c| c.matcher != matcher) {
            out.extend(chain.take().map(Chain::end));
        }
        let c = chain.get_or_insert_with(|| Chain {
            matcher,
            backends: Vec::new(),
            cumulative: 0,
        });
        let upto = fraction.unwrap_or(10_000).max(c.cumulative);
        c.backends.push(BackendWeight {
            cluster: cluster.to_string(),
            mapping: r["name"]
                .as_str()
                .filter(|n| !n.is_empty())
                .map(str::to_string),
            namespace: None,
            weight_bp: upto - c.cumulative,
            weighted: None,
        });
        c.cumulative = upto;
        if fraction.is_none() {
            // The link without a fraction takes the rest and ends the chain.
            out.extend(chain.take().map(Chain::end));
        }
    }
    out.extend(chain.take().map(Chain::end));
    out
}

/// The backends of a `weighted_clusters` route, each with its share of `total_weight` (else of
/// the weights' sum); `None` for any other route. With a `runtime_key_prefix`, a cluster's
/// weight is the runtime's `<prefix>.<cluster>` where it holds one.
fn weighted_clusters(r: &Value, runtime: &EnvoyRuntime) -> Option<Vec<BackendWeight>> {
    let split = &r["route"]["weighted_clusters"];
    let clusters = split["clusters"].as_array()?;
    let prefix = split["runtime_key_prefix"].as_str().unwrap_or("");
    let weights: Vec<u64> = clusters
        .iter()
        .map(|c| {
            let configured = c["weight"].as_u64().unwrap_or(0);
            let name = c["name"].as_str().unwrap_or("");
            match prefix {
                "" => configured,
                p => runtime
                    .integer(&format!("{p}.{name}"))
                    .unwrap_or(configured),
            }
        })
        .collect();
    let total = split["total_weight"]
        .as_u64()
        .unwrap_or_else(|| weights.iter().sum())
        .max(1);
    // canary-xds names a weighted route after its Mappings, in the clusters' order.
    let names: Vec<&str> = r["name"].as_str().unwrap_or("").split(',').collect();
    let named = names.len() == clusters.len();
    Some(
        clusters
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
            .collect(),
    )
}

/// A `runtime_fraction` in hundredths of a percent: its `default_value`, with the numerator the
/// runtime holds at its `runtime_key` where it holds one.
fn fraction_bp(fraction: &Value, runtime: &EnvoyRuntime) -> u32 {
    let v = &fraction["default_value"];
    let numerator = fraction["runtime_key"]
        .as_str()
        .filter(|k| !k.is_empty())
        .and_then(|k| runtime.integer(k))
        .unwrap_or_else(|| v["numerator"].as_u64().unwrap_or(0));
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
