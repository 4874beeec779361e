//! Route configurations: virtual hosts by host, each route's action (one cluster or weighted
//! clusters, read from the runtime layer when the Envoy has it), retries, mirrors and headers.

use std::collections::BTreeMap;

use envoy_types::pb::envoy::config::core::v3::header_value_option::HeaderAppendAction;
use envoy_types::pb::envoy::config::core::v3::{
    HeaderValue, HeaderValueOption, RuntimeFractionalPercent,
};
use envoy_types::pb::envoy::config::route::v3::route::Action as XdsRouteKind;
use envoy_types::pb::envoy::config::route::v3::route_action::{
    ClusterSpecifier, HostRewriteSpecifier, RequestMirrorPolicy, UpgradeConfig,
};
use envoy_types::pb::envoy::config::route::v3::weighted_cluster::ClusterWeight;
use envoy_types::pb::envoy::config::route::v3::weighted_cluster::cluster_weight::HostRewriteSpecifier as WeightHostRewrite;
use envoy_types::pb::envoy::config::route::v3::{
    RetryPolicy as XdsRetryPolicy, Route as XdsRoute, RouteAction,
    RouteConfiguration as XdsRouteConfiguration, RouteMatch, VirtualHost, WeightedCluster,
};
use envoy_types::pb::envoy::{
    r#type::v3::FractionalPercent, r#type::v3::fractional_percent::DenominatorType,
};
use envoy_types::pb::google::protobuf::{BoolValue, UInt32Value};

use super::matcher::route_match;
use super::vhosts::virtual_host_plan;
use super::{ROUTE_CONFIG_NAME, duration_ms};
use crate::model::mapping::{AddHeader, Bp, RetryPolicy, RouteSettings};
use crate::routes::{Backend, Route, RouteTable, Shadow};

// ----------------------------------------------------------------------------------------------
// RDS

/// The route configuration `canary-xds`: a virtual host per distinct host, plus `*`, each
/// repeating the routes that apply to all of its hosts (see `vhosts`).
///
/// A wildcard that covers only part of another wildcard (`a.*` and `*.foo.com` share
/// `a.foo.com`) cannot be expressed with one virtual host per host: a request for `a.foo.com`
/// lands in `*.foo.com` (suffixes win) and does not see the `a.*` routes. Ambassador has the same
/// limit.
pub fn route_configuration(table: &RouteTable) -> XdsRouteConfiguration {
    let translated: Vec<Vec<XdsRoute>> = table.routes.iter().map(|r| envoy_routes(r)).collect();
    XdsRouteConfiguration {
        name: ROUTE_CONFIG_NAME.into(),
        virtual_hosts: virtual_host_plan(table)
            .into_iter()
            .map(|(domain, routes)| VirtualHost {
                name: domain.clone(),
                domains: vec![domain],
                routes: routes
                    .into_iter()
                    .flat_map(|i| translated[i].iter().cloned())
                    .collect(),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

/// The Envoy routes of one table route: one route, or a chain of one link per backend when the
/// backends differ in route-level settings.
///
/// A chain is what Ambassador emits too. Each link carries a `runtime_fraction` whose numerator
/// is the cumulative weight up to and including its backend; Envoy draws one random value per
/// request and uses it for every route's `runtime_fraction`, so link `i` takes exactly the
/// requests in `[cumulative(i-1), cumulative(i))`, i.e. its weight. Each link routes to one
/// cluster: a `weighted_clusters` inside a link would draw from the same random value and skew
/// the split.
pub fn envoy_routes(route: &Route) -> Vec<XdsRoute> {
    // The table never yields a route without backends (their weights sum to 10000).
    let Some(first) = route.backends.first() else {
        return Vec::new();
    };
    let matcher = route_match(&route.key);
    let mirrors: Vec<RequestMirrorPolicy> = route.shadow.iter().map(mirror_policy).collect();
    if route.backends.len() == 1 {
        return vec![single_cluster_route(matcher, first, &mirrors)];
    }
    if route
        .backends
        .iter()
        .all(|b| b.mapping.route == first.mapping.route)
    {
        return vec![weighted_route(matcher, &route.backends, &mirrors)];
    }
    let last = route.backends.len() - 1;
    let mut cumulative: Bp = 0;
    route
        .backends
        .iter()
        .enumerate()
        .map(|(i, backend)| {
            cumulative += backend.weight_bp;
            let mut link = matcher.clone();
            // The last link takes whatever is left, so no rounding can leave a request unrouted.
            if i < last {
                link.runtime_fraction = Some(ten_thousandths(cumulative));
            }
            single_cluster_route(link, backend, &mirrors)
        })
        .collect()
}

/// Whether a table route becomes one Envoy route with `weighted_clusters` (several backends
/// that agree on route-level settings): the routes whose weights a runtime layer can change.
pub fn is_weighted(route: &Route) -> bool {
    route.backends.len() > 1
        && route
            .backends
            .iter()
            .all(|b| b.mapping.route == route.backends[0].mapping.route)
}

/// The Envoy route of a weighted route for an Envoy with canary-xds's runtime layer: its
/// weights are read at each request from the runtime keys `<prefix>.<cluster>`, `configured`
/// where the runtime has none, so a weight change is a small runtime update, not a new route
/// table.
pub fn weighted_route_with_runtime(route: &Route, prefix: &str, configured: &[Bp]) -> XdsRoute {
    let mirrors: Vec<RequestMirrorPolicy> = route.shadow.iter().map(mirror_policy).collect();
    let mut r = weighted_route(route_match(&route.key), &route.backends, &mirrors);
    read_weights_from_runtime(&mut r, prefix, configured);
    r
}

/// Makes a route with `weighted_clusters` read its weights from runtime keys under `prefix`,
/// with `configured` (one per backend, in order) as the weights for keys the runtime does not
/// hold.
pub fn read_weights_from_runtime(route: &mut XdsRoute, prefix: &str, configured: &[Bp]) {
    if let Some(XdsRouteKind::Route(action)) = &mut route.action
        && let Some(ClusterSpecifier::WeightedClusters(w)) = &mut action.cluster_specifier
    {
        w.runtime_key_prefix = prefix.to_string();
        for (c, &weight) in w.clusters.iter_mut().zip(configured) {
            c.weight = Some(UInt32Value { value: weight });
        }
    }
}

/// A route to one cluster, with the backend's route-level and per-backend settings on it.
fn single_cluster_route(
    matcher: RouteMatch,
    backend: &Backend,
    mirrors: &[RequestMirrorPolicy],
) -> XdsRoute {
    let mut action = route_action(&backend.mapping.route, mirrors);
    action.cluster_specifier = Some(ClusterSpecifier::Cluster(backend.cluster.clone()));
    action.host_rewrite_specifier = backend
        .mapping
        .backend
        .host_rewrite
        .clone()
        .map(HostRewriteSpecifier::HostRewriteLiteral);
    let settings = &backend.mapping.backend;
    XdsRoute {
        name: backend.mapping.id.to_string(),
        r#match: Some(matcher),
        action: Some(XdsRouteKind::Route(action)),
        request_headers_to_add: headers_to_add(&settings.add_request_headers),
        request_headers_to_remove: settings.remove_request_headers.iter().cloned().collect(),
        response_headers_to_add: headers_to_add(&settings.add_response_headers),
        response_headers_to_remove: settings.remove_response_headers.iter().cloned().collect(),
        ..Default::default()
    }
}

/// One route over weighted clusters; the backends agree on every route-level setting.
fn weighted_route(
    matcher: RouteMatch,
    backends: &[Backend],
    mirrors: &[RequestMirrorPolicy],
) -> XdsRoute {
    let mut action = route_action(&backends[0].mapping.route, mirrors);
    action.cluster_specifier = Some(ClusterSpecifier::WeightedClusters(WeightedCluster {
        // The weights are in hundredths of a percent and sum to 10000; total_weight is
        // deprecated and left unset (Envoy sums the weights itself).
        clusters: backends.iter().map(cluster_weight).collect(),
        ..Default::default()
    }));
    let names: Vec<String> = backends.iter().map(|b| b.mapping.id.to_string()).collect();
    XdsRoute {
        name: names.join(","),
        r#match: Some(matcher),
        action: Some(XdsRouteKind::Route(action)),
        ..Default::default()
    }
}

fn cluster_weight(backend: &Backend) -> ClusterWeight {
    let settings = &backend.mapping.backend;
    ClusterWeight {
        name: backend.cluster.clone(),
        // Always present, even at 0: an absent weight is not the same message.
        weight: Some(UInt32Value {
            value: backend.weight_bp,
        }),
        request_headers_to_add: headers_to_add(&settings.add_request_headers),
        request_headers_to_remove: settings.remove_request_headers.iter().cloned().collect(),
        response_headers_to_add: headers_to_add(&settings.add_response_headers),
        response_headers_to_remove: settings.remove_response_headers.iter().cloned().collect(),
        host_rewrite_specifier: settings
            .host_rewrite
            .clone()
            .map(WeightHostRewrite::HostRewriteLiteral),
        ..Default::default()
    }
}

/// The route action of a route's settings, without its cluster.
///
/// `prefix_rewrite` is set for regex routes too, as Ambassador does. Measured with Envoy 1.40:
/// with a `safe_regex` path match Envoy treats the whole path (without the query) as the matched
/// prefix, so `prefix_rewrite: /bar/` turns `/foo/a/b?x=1` (regex `/foo/.*`) into `/bar/?x=1`.
/// That is Ambassador's behaviour: a regex Mapping keeps its path only with `rewrite: ""`.
fn route_action(settings: &RouteSettings, mirrors: &[RequestMirrorPolicy]) -> RouteAction {
    RouteAction {
        // Empty means no rewrite to Envoy.
        prefix_rewrite: settings.rewrite.clone().unwrap_or_default(),
        // Always sent: Envoy's own default (15 s) is not Ambassador's; 0 disables the timeout.
        timeout: Some(duration_ms(settings.timeout_ms)),
        idle_timeout: settings.idle_timeout_ms.map(duration_ms),
        retry_policy: settings.retry_policy.as_ref().map(retry_policy),
        upgrade_configs: settings
            .upgrades
            .iter()
            .map(|upgrade| UpgradeConfig {
                upgrade_type: upgrade.clone(),
                enabled: Some(BoolValue { value: true }),
                ..Default::default()
            })
            .collect(),
        request_mirror_policies: mirrors.to_vec(),
        ..Default::default()
    }
}

fn retry_policy(policy: &RetryPolicy) -> XdsRetryPolicy {
    XdsRetryPolicy {
        // Envoy retries nothing when retry_on is empty.
        retry_on: policy.retry_on.clone().unwrap_or_default(),
        num_retries: policy.num_retries.map(|value| UInt32Value { value }),
        per_try_timeout: policy.per_try_timeout_ms.map(duration_ms),
        ..Default::default()
    }
}

/// Envoy draws one random value per request and tests every fraction against it modulo the
/// fraction's denominator, the backend pick included (modulo 10000). A mirror in ten-thousandths
/// would therefore sample only requests sent to the first backends. In millionths it is
/// independent: among requests with `r % 1_000_000 < n`, `r % 10_000` is still uniform.
fn mirror_policy(shadow: &Shadow) -> RequestMirrorPolicy {
    RequestMirrorPolicy {
        cluster: shadow.cluster.clone(),
        runtime_fraction: Some(RuntimeFractionalPercent {
            default_value: Some(FractionalPercent {
                numerator: shadow.percent_bp * 100,
                denominator: DenominatorType::Million as i32,
            }),
            runtime_key: String::new(),
        }),
        ..Default::default()
    }
}

/// A fraction in hundredths of a percent. The runtime key is left empty so that only our value
/// counts: an operator's runtime override of one link would break a chain's cumulative split.
fn ten_thousandths(numerator: Bp) -> RuntimeFractionalPercent {
    RuntimeFractionalPercent {
        default_value: Some(FractionalPercent {
            numerator,
            denominator: DenominatorType::TenThousand as i32,
        }),
        runtime_key: String::new(),
    }
}

fn headers_to_add(headers: &BTreeMap<String, AddHeader>) -> Vec<HeaderValueOption> {
    headers
        .iter()
        .map(|(name, header)| HeaderValueOption {
            header: Some(HeaderValue {
                key: name.clone(),
                value: header.value.clone(),
                ..Default::default()
            }),
            append_action: if header.append {
                HeaderAppendAction::AppendIfExistsOrAdd
            } else {
                HeaderAppendAction::OverwriteIfExistsOrAdd
            } as i32,
            ..Default::default()
        })
        .collect()
}
