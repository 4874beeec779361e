//! Route tables to Envoy resources: the listener (LDS), the route configuration (RDS) and the
//! clusters (CDS) that one fleet's Envoys are served.
//!
//! Pure: the same table and options always give the same protos, byte for byte once encoded
//! (every protobuf `map` field we fill holds at most one entry, since prost encodes maps in
//! `HashMap` order). This is the only place, with the snapshot and the xDS server, that knows
//! Envoy's proto types; they are imported under `Xds*` names so they are never confused with ours.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use envoy_types::pb::envoy::config::cluster::v3::Cluster as XdsCluster;
use envoy_types::pb::envoy::config::cluster::v3::cluster::{
    ClusterDiscoveryType, DiscoveryType, DnsLookupFamily, LbPolicy,
};
use envoy_types::pb::envoy::config::core::v3::address::Address as XdsAddressKind;
use envoy_types::pb::envoy::config::core::v3::config_source::ConfigSourceSpecifier;
use envoy_types::pb::envoy::config::core::v3::data_source::Specifier as DataSourceSpecifier;
use envoy_types::pb::envoy::config::core::v3::header_value_option::HeaderAppendAction;
use envoy_types::pb::envoy::config::core::v3::socket_address::{PortSpecifier, Protocol};
use envoy_types::pb::envoy::config::core::v3::transport_socket::ConfigType as TransportSocketConfig;
use envoy_types::pb::envoy::config::core::v3::{
    Address as XdsAddress, AggregatedConfigSource, ApiVersion, ConfigSource as XdsConfigSource,
    DataSource, HeaderValue, HeaderValueOption, Http2ProtocolOptions, RuntimeFractionalPercent,
    SocketAddress as XdsSocketAddress, TransportSocket,
};
use envoy_types::pb::envoy::config::endpoint::v3::lb_endpoint::HostIdentifier;
use envoy_types::pb::envoy::config::endpoint::v3::{
    ClusterLoadAssignment, Endpoint as XdsEndpoint, LbEndpoint, LocalityLbEndpoints,
};
use envoy_types::pb::envoy::config::listener::v3::filter::ConfigType as FilterConfig;
use envoy_types::pb::envoy::config::listener::v3::{
    Filter as XdsFilter, FilterChain, Listener as XdsListener,
};
use envoy_types::pb::envoy::config::route::v3::header_matcher::HeaderMatchSpecifier;
use envoy_types::pb::envoy::config::route::v3::query_parameter_matcher::QueryParameterMatchSpecifier;
use envoy_types::pb::envoy::config::route::v3::route::Action as XdsRouteKind;
use envoy_types::pb::envoy::config::route::v3::route_action::{
    ClusterSpecifier, HostRewriteSpecifier, RequestMirrorPolicy, UpgradeConfig,
};
use envoy_types::pb::envoy::config::route::v3::route_match::PathSpecifier;
use envoy_types::pb::envoy::config::route::v3::weighted_cluster::{
    ClusterWeight, cluster_weight::HostRewriteSpecifier as WeightHostRewrite,
};
use envoy_types::pb::envoy::config::route::v3::{
    HeaderMatcher, QueryParameterMatcher, RetryPolicy as XdsRetryPolicy, Route as XdsRoute,
    RouteAction, RouteConfiguration as XdsRouteConfiguration, RouteMatch, VirtualHost,
    WeightedCluster,
};
use envoy_types::pb::envoy::extensions::filters::http::router::v3::Router;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::http_connection_manager::{
    CodecType, RouteSpecifier, StripPortMode,
};
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::http_filter::ConfigType as HttpFilterConfig;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, HttpFilter, Rds,
};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::common_tls_context::ValidationContextType;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::subject_alt_name_matcher::SanType;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    CertificateValidationContext, CommonTlsContext, SubjectAltNameMatcher, UpstreamTlsContext,
};
use envoy_types::pb::envoy::extensions::upstreams::http::v3::HttpProtocolOptions;
use envoy_types::pb::envoy::extensions::upstreams::http::v3::http_protocol_options::{
    ExplicitHttpConfig, UpstreamProtocolOptions, explicit_http_config::ProtocolConfig,
};
use envoy_types::pb::envoy::r#type::matcher::v3::string_matcher::MatchPattern;
use envoy_types::pb::envoy::r#type::matcher::v3::{RegexMatcher, StringMatcher};
use envoy_types::pb::envoy::r#type::v3::FractionalPercent;
use envoy_types::pb::envoy::r#type::v3::fractional_percent::DenominatorType;
use envoy_types::pb::google::protobuf::{BoolValue, Duration, UInt32Value};
use envoy_types::util::pack_any;

use crate::model::mapping::{
    AddHeader, Bp, HeaderMatch, RetryPolicy, RouteKey, RouteSettings, Scheme,
};
use crate::routes::{Backend, ClusterSpec, Route, RouteTable, Shadow};

/// The name of the one route configuration every listener asks for over RDS.
pub const ROUTE_CONFIG_NAME: &str = "canary-xds";

/// The HTTP connection manager's `stat_prefix`: Envoy's stats for our listener are
/// `http.canary_xds.*` (benchmarks read `http.canary_xds.rds.canary-xds.version_text`).
pub const STAT_PREFIX: &str = "canary_xds";

/// The name of Envoy's HTTP connection manager network filter.
pub const HCM_FILTER: &str = "envoy.filters.network.http_connection_manager";

/// The name of Envoy's router HTTP filter.
pub const ROUTER_FILTER: &str = "envoy.filters.http.router";

/// The key under which a cluster's HTTP protocol options (HTTP/2 for gRPC) are given.
pub const HTTP_PROTOCOL_OPTIONS: &str = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions";

/// The name of Envoy's TLS transport socket.
pub const TLS_TRANSPORT_SOCKET: &str = "envoy.transport_sockets.tls";

/// The system's trust store on Debian and its derivatives (and Envoy's own images).
///
/// Envoy has no working "system roots" switch on Linux: `system_root_certs` is accepted by Envoy
/// 1.40 but verifies nothing (a certificate from an unknown CA was accepted), so the upstream's
/// certificate is checked against this bundle unless `Options::upstream_ca` says otherwise.
pub const SYSTEM_TRUST_STORE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// The name of the virtual host (and its only domain) that takes requests for any host.
pub const ANY_HOST: &str = "*";

/// What translation needs beyond the route table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// Where the default fleet's Envoys listen for HTTP.
    pub listen: SocketAddr,
    /// The CA bundle that upstream TLS certificates are checked against; `None` uses the system
    /// trust store (`SYSTEM_TRUST_STORE`).
    pub upstream_ca: Option<PathBuf>,
}

/// Everything one fleet's Envoys are served, ready to be packed into discovery responses.
#[derive(Clone, Debug, PartialEq)]
pub struct Translated {
    /// The HTTP listener on `Options::listen`, taking its routes over RDS.
    pub listener: XdsListener,
    /// The route configuration `canary-xds`.
    pub route_config: XdsRouteConfiguration,
    /// Every cluster the routes use, sorted by name.
    pub clusters: Vec<XdsCluster>,
}

/// Translates one fleet's route table into its listener, route configuration and clusters.
pub fn translate(table: &RouteTable, options: &Options) -> Translated {
    Translated {
        listener: listener(options.listen),
        route_config: route_configuration(table),
        clusters: table
            .clusters
            .iter()
            .map(|(name, spec)| cluster(name, spec, options))
            .collect(),
    }
}

// ----------------------------------------------------------------------------------------------
// LDS

/// The listener's name. It includes the address because Envoy cannot move a listener to a new
/// address under the same name: it would reject the update.
pub fn listener_name(addr: SocketAddr) -> String {
    format!("canary-xds-{addr}")
}

/// The HTTP listener on `addr`, whose routes come over ADS as RDS `canary-xds`.
pub fn listener(addr: SocketAddr) -> XdsListener {
    listener_with(addr, RouteSpecifier::Rds(rds()))
}

/// The same listener with the route configuration inline instead of over RDS, as a static
/// bootstrap needs it (used to have Envoy validate what we serve, without a control plane).
pub fn listener_with_routes(addr: SocketAddr, routes: XdsRouteConfiguration) -> XdsListener {
    listener_with(addr, RouteSpecifier::RouteConfig(routes))
}

fn listener_with(addr: SocketAddr, routes: RouteSpecifier) -> XdsListener {
    XdsListener {
        name: listener_name(addr),
        address: Some(socket_address(&addr.ip().to_string(), addr.port())),
        filter_chains: vec![FilterChain {
            filters: vec![XdsFilter {
                name: HCM_FILTER.into(),
                config_type: Some(FilterConfig::TypedConfig(pack_any(
                    http_connection_manager(routes),
                ))),
            }],
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// The HTTP connection manager every canary-xds listener uses; `routes` says where its route
/// configuration comes from.
pub fn http_connection_manager(routes: RouteSpecifier) -> HttpConnectionManager {
    HttpConnectionManager {
        // Envoy rejects an empty stat_prefix.
        stat_prefix: STAT_PREFIX.into(),
        codec_type: CodecType::Auto as i32,
        http_filters: vec![HttpFilter {
            name: ROUTER_FILTER.into(),
            // Without its typed_config Envoy NACKs the listener: it finds the filter by type URL.
            config_type: Some(HttpFilterConfig::TypedConfig(pack_any(Router::default()))),
            ..Default::default()
        }],
        // So that `foo.com:8080` selects the virtual host of `foo.com`, as in Ambassador.
        strip_port_mode: Some(StripPortMode::StripAnyHostPort(true)),
        route_specifier: Some(routes),
        ..Default::default()
    }
}

/// RDS over the ADS stream, asking for `canary-xds`.
fn rds() -> Rds {
    Rds {
        config_source: Some(ads_config_source()),
        route_config_name: ROUTE_CONFIG_NAME.into(),
    }
}

fn ads_config_source() -> XdsConfigSource {
    XdsConfigSource {
        config_source_specifier: Some(ConfigSourceSpecifier::Ads(AggregatedConfigSource {})),
        resource_api_version: ApiVersion::V3 as i32,
        ..Default::default()
    }
}

fn socket_address(host: &str, port: u16) -> XdsAddress {
    XdsAddress {
        address: Some(XdsAddressKind::SocketAddress(XdsSocketAddress {
            address: host.into(),
            port_specifier: Some(PortSpecifier::PortValue(port.into())),
            protocol: Protocol::Tcp as i32,
            ..Default::default()
        })),
    }
}

// ----------------------------------------------------------------------------------------------
// RDS

/// The route configuration `canary-xds`: a virtual host per distinct host, plus `*`.
///
/// Envoy picks exactly one virtual host per request (exact domains first, then the longest
/// suffix wildcard, then the longest prefix wildcard, then `*`) and never falls through to
/// another. So every virtual host repeats, in the table's global order, the routes that can
/// apply to all of its hosts: routes without a host, `host_regex` routes (which match
/// `:authority` themselves), its own host's routes, and the routes of every wildcard host that
/// covers all the hosts it stands for (`*.foo.com` routes are in the `a.foo.com` virtual host).
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

/// The virtual hosts of the route configuration: each domain (one per distinct host, then
/// `*`) with the indexes of the table's routes it holds, in the table's order. Envoy picks one
/// virtual host per request, so routes without a host and `host_regex` routes (matched on
/// `:authority`) are in every one, and a host's virtual host also holds the routes of every
/// wildcard that covers it.
pub fn virtual_host_plan(table: &RouteTable) -> Vec<(String, Vec<usize>)> {
    let hosts: BTreeSet<&str> = table
        .routes
        .iter()
        .filter(|r| !r.key.host_regex)
        .filter_map(|r| r.key.host.as_deref())
        .collect();
    let plan = |applies: &dyn Fn(&RouteKey) -> bool| -> Vec<usize> {
        (0..table.routes.len())
            .filter(|&i| applies(&table.routes[i].key))
            .collect()
    };
    let mut out: Vec<(String, Vec<usize>)> = hosts
        .iter()
        .map(|&host| {
            let routes = plan(&|key: &RouteKey| match &key.host {
                None => true,
                Some(_) if key.host_regex => true,
                Some(pattern) => covers(pattern, host),
            });
            (host.to_string(), routes)
        })
        .collect();
    out.push((
        ANY_HOST.to_string(),
        plan(&|key: &RouteKey| key.host.is_none() || key.host_regex),
    ));
    out
}

/// Whether every host that Envoy domain `host` matches is also matched by `pattern`: equal
/// domains, or `pattern` a wildcard (`*.foo.com`, `foo.*`) that includes `host`. Envoy's
/// wildcards never match the empty string (`*.foo.com` does not match `.foo.com`).
pub fn covers(pattern: &str, host: &str) -> bool {
    if pattern == host {
        return true;
    }
    let host_suffix = host.strip_prefix('*');
    let host_prefix = host.strip_suffix('*');
    if let Some(suffix) = pattern.strip_prefix('*') {
        match (host_suffix, host_prefix) {
            // `*.a.foo.com` under `*.foo.com`: whatever the star stands for, the host ends so.
            (Some(h), _) => h.ends_with(suffix),
            // `a.*` can end any way at all.
            (None, Some(_)) => false,
            (None, None) => host.len() > suffix.len() && host.ends_with(suffix),
        }
    } else if let Some(prefix) = pattern.strip_suffix('*') {
        match (host_suffix, host_prefix) {
            (Some(_), _) => false,
            (None, Some(h)) => h.starts_with(prefix),
            (None, None) => host.len() > prefix.len() && host.starts_with(prefix),
        }
    } else {
        false
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
/// The Envoy routes of one table route: one, or a chain of links when its Mappings differ in
/// route-level settings.
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
/// weights default to `base` and are read at each request from the runtime keys
/// `<prefix>.<cluster>`, so a weight change is a small runtime update, not a new route table.
pub fn weighted_route_with_runtime(route: &Route, prefix: &str, base: &[Bp]) -> XdsRoute {
    let backends: Vec<Backend> = route
        .backends
        .iter()
        .zip(base)
        .map(|(b, &w)| Backend {
            weight_bp: w,
            ..b.clone()
        })
        .collect();
    let mirrors: Vec<RequestMirrorPolicy> = route.shadow.iter().map(mirror_policy).collect();
    let mut r = weighted_route(route_match(&route.key), &backends, &mirrors);
    read_weights_from_runtime(&mut r, prefix);
    r
}

/// Makes a route with `weighted_clusters` read its weights from runtime keys under `prefix`
/// (its base weights stay as they are, for keys the runtime does not hold).
pub fn read_weights_from_runtime(route: &mut XdsRoute, prefix: &str) {
    if let Some(XdsRouteKind::Route(action)) = &mut route.action
        && let Some(ClusterSpecifier::WeightedClusters(w)) = &mut action.cluster_specifier
    {
        w.runtime_key_prefix = prefix.to_string();
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

/// What a route matches. The host is matched by the virtual host, except for `host_regex`.
fn route_match(key: &RouteKey) -> RouteMatch {
    let path = if key.prefix_regex {
        // Ambassador's prefix_regex matches the whole path, as safe_regex does.
        PathSpecifier::SafeRegex(regex(&key.prefix))
    } else {
        PathSpecifier::Prefix(key.prefix.clone())
    };
    let mut headers = Vec::new();
    if let (Some(host), true) = (&key.host, key.host_regex) {
        headers.push(header_matcher(":authority", string_regex(host)));
    }
    if let Some(method) = &key.method {
        headers.push(header_matcher(":method", string_exact(method)));
    }
    for (name, wanted) in &key.headers {
        headers.push(match wanted {
            HeaderMatch::Exact(value) => header_matcher(name, string_exact(value)),
            HeaderMatch::Present => HeaderMatcher {
                name: name.clone(),
                header_match_specifier: Some(HeaderMatchSpecifier::PresentMatch(true)),
                ..Default::default()
            },
        });
    }
    for (name, pattern) in &key.regex_headers {
        headers.push(header_matcher(name, string_regex(pattern)));
    }
    let query_parameters = key
        .query_parameters
        .iter()
        .map(|(name, wanted)| QueryParameterMatcher {
            name: name.clone(),
            query_parameter_match_specifier: Some(match wanted {
                HeaderMatch::Exact(value) => {
                    QueryParameterMatchSpecifier::StringMatch(string_exact(value))
                }
                HeaderMatch::Present => QueryParameterMatchSpecifier::PresentMatch(true),
            }),
        })
        .collect();
    RouteMatch {
        path_specifier: Some(path),
        // Envoy's default is case-sensitive; only say otherwise.
        case_sensitive: (!key.case_sensitive).then_some(BoolValue { value: false }),
        headers,
        query_parameters,
        ..Default::default()
    }
}

fn header_matcher(name: &str, matcher: StringMatcher) -> HeaderMatcher {
    HeaderMatcher {
        name: name.into(),
        header_match_specifier: Some(HeaderMatchSpecifier::StringMatch(matcher)),
        ..Default::default()
    }
}

fn string_exact(value: &str) -> StringMatcher {
    StringMatcher {
        match_pattern: Some(MatchPattern::Exact(value.into())),
        ..Default::default()
    }
}

fn string_regex(pattern: &str) -> StringMatcher {
    StringMatcher {
        match_pattern: Some(MatchPattern::SafeRegex(regex(pattern))),
        ..Default::default()
    }
}

/// A regex for Envoy's default engine (RE2); `parse` already checked Envoy will accept it.
fn regex(pattern: &str) -> RegexMatcher {
    RegexMatcher {
        regex: pattern.into(),
        engine_type: None,
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

fn duration_ms(ms: u64) -> Duration {
    Duration {
        // parse caps timeouts at a year, far below i64::MAX seconds.
        seconds: (ms / 1000) as i64,
        nanos: ((ms % 1000) * 1_000_000) as i32,
    }
}

// ----------------------------------------------------------------------------------------------
// CDS

/// The Envoy cluster `name` for one upstream. Built one at a time so that a snapshot can
/// re-translate only the clusters that changed.
pub fn cluster(name: &str, spec: &ClusterSpec, options: &Options) -> XdsCluster {
    let service = &spec.service;
    let ip = service.is_ip();
    let mut cluster = XdsCluster {
        name: name.into(),
        // An IP needs no resolution, and a STATIC cluster warms at once.
        cluster_discovery_type: Some(ClusterDiscoveryType::Type(if ip {
            DiscoveryType::Static as i32
        } else {
            DiscoveryType::StrictDns as i32
        })),
        connect_timeout: Some(duration_ms(spec.settings.connect_timeout_ms)),
        lb_policy: LbPolicy::RoundRobin as i32,
        // `localhost` may resolve to ::1 first while the upstream listens on 127.0.0.1 only.
        dns_lookup_family: if ip {
            DnsLookupFamily::Auto as i32
        } else {
            DnsLookupFamily::V4Preferred as i32
        },
        load_assignment: Some(ClusterLoadAssignment {
            cluster_name: name.into(),
            endpoints: vec![LocalityLbEndpoints {
                lb_endpoints: vec![LbEndpoint {
                    host_identifier: Some(HostIdentifier::Endpoint(XdsEndpoint {
                        address: Some(socket_address(&service.host, service.port)),
                        ..Default::default()
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    };
    if spec.settings.grpc {
        // The only map entry: prost encodes maps in HashMap order, so more would make the
        // encoding vary between runs.
        cluster
            .typed_extension_protocol_options
            .insert(HTTP_PROTOCOL_OPTIONS.into(), pack_any(http2_options()));
    }
    if service.scheme == Scheme::Https {
        cluster.transport_socket = Some(upstream_tls(
            &service.host,
            ip,
            spec.settings.grpc,
            options.upstream_ca.as_deref(),
        ));
    }
    cluster
}

/// HTTP/2 to the upstream, whatever the downstream speaks.
fn http2_options() -> HttpProtocolOptions {
    HttpProtocolOptions {
        upstream_protocol_options: Some(UpstreamProtocolOptions::ExplicitHttpConfig(
            ExplicitHttpConfig {
                protocol_config: Some(ProtocolConfig::Http2ProtocolOptions(
                    Http2ProtocolOptions::default(),
                )),
            },
        )),
        ..Default::default()
    }
}

/// TLS to the upstream, verifying its certificate against the CA bundle and its name.
///
/// Without `trusted_ca` Envoy verifies nothing at all, and without a SAN matcher any certificate
/// from a trusted CA would do; both are set. An IP literal gets an IP SAN check and no SNI (SNI
/// carries host names only).
fn upstream_tls(host: &str, ip: bool, grpc: bool, ca: Option<&Path>) -> TransportSocket {
    let ca = ca.unwrap_or(Path::new(SYSTEM_TRUST_STORE));
    let context = UpstreamTlsContext {
        common_tls_context: Some(CommonTlsContext {
            // gRPC servers insist on ALPN h2 over TLS; Envoy does not offer it by itself.
            alpn_protocols: if grpc { vec!["h2".into()] } else { Vec::new() },
            validation_context_type: Some(ValidationContextType::ValidationContext(
                CertificateValidationContext {
                    trusted_ca: Some(DataSource {
                        // A proto string: a path that is not UTF-8 cannot be sent as is.
                        specifier: Some(DataSourceSpecifier::Filename(
                            ca.to_string_lossy().into_owned(),
                        )),
                        ..Default::default()
                    }),
                    match_typed_subject_alt_names: vec![SubjectAltNameMatcher {
                        san_type: if ip { SanType::IpAddress } else { SanType::Dns } as i32,
                        matcher: Some(string_exact(host)),
                        ..Default::default()
                    }],
                    ..Default::default()
                },
            )),
            ..Default::default()
        }),
        sni: if ip { String::new() } else { host.into() },
        ..Default::default()
    };
    TransportSocket {
        name: TLS_TRANSPORT_SOCKET.into(),
        config_type: Some(TransportSocketConfig::TypedConfig(pack_any(context))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::parse::parse_file;
    use crate::model::diagnostic::Severity;
    use crate::routes::compile;
    use prost::Message;

    fn mapping(name: &str, body: &str) -> String {
        format!("---\napiVersion: ambassador/v1\nkind: Mapping\nname: {name}\n{body}")
    }

    fn table(docs: &[(&str, &str)]) -> RouteTable {
        let files: Vec<_> = docs
            .iter()
            .map(|(name, body)| parse_file(&format!("{name}.yaml"), mapping(name, body).as_bytes()))
            .collect();
        let compiled = compile(&files, None);
        let errors: Vec<_> = compiled
            .diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .collect();
        assert!(errors.is_empty(), "{errors:?}");
        compiled.tables.fleet("default").unwrap().clone()
    }

    fn seed() -> RouteTable {
        table(&[
            ("qotm", "prefix: /qotm/\nservice: qotm\n"),
            ("qotmv2", "prefix: /qotm/\nservice: qotmv2\nweight: 10\n"),
        ])
    }

    fn options() -> Options {
        Options {
            listen: "127.0.0.1:8080".parse().unwrap(),
            upstream_ca: None,
        }
    }

    fn any_host(rc: &XdsRouteConfiguration) -> &VirtualHost {
        let last = rc.virtual_hosts.last().unwrap();
        assert_eq!(last.domains, [ANY_HOST]);
        last
    }

    fn action(route: &XdsRoute) -> &RouteAction {
        match &route.action {
            Some(XdsRouteKind::Route(a)) => a,
            other => panic!("not a route action: {other:?}"),
        }
    }

    fn weights(route: &XdsRoute) -> Vec<(String, Option<u32>)> {
        match &action(route).cluster_specifier {
            Some(ClusterSpecifier::WeightedClusters(w)) => w
                .clusters
                .iter()
                .map(|c| (c.name.clone(), c.weight.map(|w| w.value)))
                .collect(),
            other => panic!("not weighted: {other:?}"),
        }
    }

    fn cluster_of(route: &XdsRoute) -> &str {
        match &action(route).cluster_specifier {
            Some(ClusterSpecifier::Cluster(c)) => c,
            other => panic!("not one cluster: {other:?}"),
        }
    }

    fn threshold(route: &XdsRoute) -> Option<u32> {
        route
            .r#match
            .as_ref()
            .unwrap()
            .runtime_fraction
            .as_ref()
            .map(|f| {
                let v = f.default_value.unwrap();
                assert_eq!(v.denominator, DenominatorType::TenThousand as i32);
                assert!(f.runtime_key.is_empty());
                v.numerator
            })
    }

    #[test]
    fn the_seed_splits_exactly_9000_1000() {
        let rc = route_configuration(&seed());
        let routes = &any_host(&rc).routes;
        assert_eq!(routes.len(), 1);
        // Exact hundredths of a percent: 8900/1100 (or 90/10 in other units) would fail here.
        assert_eq!(
            weights(&routes[0]),
            [("qotm".into(), Some(9000)), ("qotmv2".into(), Some(1000))]
        );
        let Some(ClusterSpecifier::WeightedClusters(w)) = &action(&routes[0]).cluster_specifier
        else {
            unreachable!()
        };
        // Reading the deprecated field is the point: it must stay unset.
        #[allow(deprecated)]
        let unset = w.total_weight.is_none();
        assert!(unset, "total_weight is deprecated and must stay unset");
    }

    #[test]
    fn a_zero_weight_is_sent_explicitly() {
        let t = table(&[
            ("a", "prefix: /z/\nservice: a\nweight: 100\n"),
            ("b", "prefix: /z/\nservice: b\n"),
        ]);
        let rc = route_configuration(&t);
        assert_eq!(
            weights(&any_host(&rc).routes[0]),
            [("a".into(), Some(10000)), ("b".into(), Some(0))]
        );
    }

    #[test]
    fn one_backend_routes_to_its_cluster_with_its_settings() {
        let t = table(&[(
            "a",
            "prefix: /a/\nservice: a\nhost_rewrite: a.internal\nrewrite: \"\"\n\
             add_request_headers:\n  x-keep: {value: k, append: true}\n  x-set: {value: s, append: false}\n",
        )]);
        let rc = route_configuration(&t);
        let r = &any_host(&rc).routes[0];
        assert_eq!(cluster_of(r), "a");
        assert_eq!(threshold(r), None);
        let a = action(r);
        assert_eq!(a.prefix_rewrite, "", "rewrite \"\" means no rewrite");
        assert_eq!(
            a.host_rewrite_specifier,
            Some(HostRewriteSpecifier::HostRewriteLiteral(
                "a.internal".into()
            ))
        );
        let actions: Vec<(&str, i32)> = r
            .request_headers_to_add
            .iter()
            .map(|h| (h.header.as_ref().unwrap().key.as_str(), h.append_action))
            .collect();
        assert_eq!(
            actions,
            [
                ("x-keep", HeaderAppendAction::AppendIfExistsOrAdd as i32),
                ("x-set", HeaderAppendAction::OverwriteIfExistsOrAdd as i32)
            ]
        );
    }

    #[test]
    fn differing_route_settings_make_a_chain_of_cumulative_links() {
        let t = table(&[
            ("a", "prefix: /c/\nservice: a\ntimeout_ms: 1000\n"),
            ("b", "prefix: /c/\nservice: b\nweight: 30\n"),
            (
                "c",
                "prefix: /c/\nservice: c\nweight: 20\nidle_timeout_ms: 9000\n",
            ),
            ("d", "prefix: /c/\nservice: d\nweight: 0\n"),
            ("m", "prefix: /c/\nservice: m\nshadow: true\nweight: 5\n"),
        ]);
        let rc = route_configuration(&t);
        let links = &any_host(&rc).routes;
        let view: Vec<(&str, Option<u32>)> = links
            .iter()
            .map(|r| (cluster_of(r), threshold(r)))
            .collect();
        // a takes the 50% left; d (0%) still gets its link, which never matches, and is last.
        assert_eq!(
            view,
            [
                ("a", Some(5000)),
                ("b", Some(8000)),
                ("c", Some(10000)),
                ("d", None)
            ]
        );
        // Each link has its own backend's route settings, and the same match and mirror.
        let timeouts: Vec<i64> = links
            .iter()
            .map(|r| action(r).timeout.unwrap().seconds)
            .collect();
        assert_eq!(timeouts, [1, 3, 3, 3]);
        assert_eq!(action(&links[2]).idle_timeout.unwrap().seconds, 9);
        for link in links {
            let mut m = link.r#match.clone().unwrap();
            m.runtime_fraction = None;
            assert_eq!(m, route_match(&t.routes[0].key));
            let mirrors = &action(link).request_mirror_policies;
            assert_eq!(mirrors.len(), 1);
            let fraction = mirrors[0]
                .runtime_fraction
                .as_ref()
                .unwrap()
                .default_value
                .unwrap();
            assert_eq!(
                (fraction.numerator, fraction.denominator),
                (50_000, DenominatorType::Million as i32)
            );
        }
    }

    #[test]
    fn equal_route_settings_make_one_weighted_route() {
        let t = table(&[
            (
                "a",
                "prefix: /w/\nservice: a\ntimeout_ms: 1000\nhost_rewrite: a.x\n",
            ),
            (
                "b",
                "prefix: /w/\nservice: b\nweight: 25\ntimeout_ms: 1000\n",
            ),
        ]);
        let rc = route_configuration(&t);
        let routes = &any_host(&rc).routes;
        assert_eq!(routes.len(), 1);
        assert_eq!(action(&routes[0]).timeout.unwrap().seconds, 1);
        // Per-backend settings stay on their ClusterWeight, not on the route.
        let Some(ClusterSpecifier::WeightedClusters(w)) = &action(&routes[0]).cluster_specifier
        else {
            unreachable!()
        };
        assert_eq!(
            w.clusters[0].host_rewrite_specifier,
            Some(WeightHostRewrite::HostRewriteLiteral("a.x".into()))
        );
        assert_eq!(w.clusters[1].host_rewrite_specifier, None);
        assert_eq!(action(&routes[0]).host_rewrite_specifier, None);
    }

    #[test]
    fn wildcards_cover_what_they_match() {
        let cases = [
            ("*.foo.com", "a.foo.com", true),
            ("*.foo.com", "*.a.foo.com", true),
            ("*.foo.com", "*.foo.com", true),
            ("*.foo.com", ".foo.com", false),
            ("*.foo.com", "foo.com", false),
            ("*foo.com", "*.foo.com", true),
            ("*.foo.com", "*foo.com", false),
            ("*.foo.com", "a.*", false),
            ("a.*", "a.foo.com", true),
            ("a.*", "a.b.*", true),
            ("a.*", "a.", false),
            ("a.*", "*.a.com", false),
            ("a.foo.com", "a.foo.com", true),
            ("a.foo.com", "b.foo.com", false),
            ("a.foo.com", "*.foo.com", false),
        ];
        for (pattern, host, want) in cases {
            assert_eq!(covers(pattern, host), want, "covers({pattern:?}, {host:?})");
        }
    }

    #[test]
    fn every_virtual_host_repeats_the_routes_that_apply_to_it_in_global_order() {
        let t = table(&[
            ("any", "prefix: /\nservice: any\n"),
            ("exact", "prefix: /e/\nservice: exact\nhost: a.foo.com\n"),
            ("wild", "prefix: /w/\nservice: wild\nhost: \"*.foo.com\"\n"),
            ("other", "prefix: /o/\nservice: other\nhost: Bar.com\n"),
            (
                "re",
                "prefix: /r/\nservice: re\nhost: \"[a-z]+\\\\.baz\\\\.com\"\nhost_regex: true\n",
            ),
        ]);
        let rc = route_configuration(&t);
        let view: Vec<(Vec<String>, Vec<String>)> = rc
            .virtual_hosts
            .iter()
            .map(|v| {
                assert_eq!(v.domains, std::slice::from_ref(&v.name));
                (
                    v.domains.clone(),
                    v.routes.iter().map(|r| r.name.clone()).collect(),
                )
            })
            .collect();
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(
            view,
            [
                (s(&["*.foo.com"]), s(&["re", "wild", "any"])),
                (s(&["a.foo.com"]), s(&["exact", "re", "wild", "any"])),
                (s(&["bar.com"]), s(&["other", "re", "any"])),
                (s(&[ANY_HOST]), s(&["re", "any"])),
            ]
        );
        // Only the host regex needs an :authority matcher; vhosts match the others.
        let re = &any_host(&rc).routes[0];
        let headers = &re.r#match.as_ref().unwrap().headers;
        assert_eq!(headers.len(), 1);
        assert_eq!(headers[0].name, ":authority");
    }

    #[test]
    fn matchers_map_to_envoy_matchers() {
        let t = table(&[(
            "m",
            "prefix: \"/v[0-9]+/.*\"\nprefix_regex: true\nservice: m\nmethod: get\ncase_sensitive: false\n\
             headers:\n  x-a: \"1\"\n  x-b: true\nregex_headers:\n  x-c: \"c+\"\n\
             query_parameters:\n  q: \"2\"\n  p: true\n",
        )]);
        let m = route_match(&t.routes[0].key);
        assert_eq!(
            m.path_specifier,
            Some(PathSpecifier::SafeRegex(regex("/v[0-9]+/.*")))
        );
        assert_eq!(m.case_sensitive, Some(BoolValue { value: false }));
        let headers: Vec<(&str, &HeaderMatchSpecifier)> = m
            .headers
            .iter()
            .map(|h| (h.name.as_str(), h.header_match_specifier.as_ref().unwrap()))
            .collect();
        assert_eq!(
            headers,
            [
                (
                    ":method",
                    &HeaderMatchSpecifier::StringMatch(string_exact("GET"))
                ),
                ("x-a", &HeaderMatchSpecifier::StringMatch(string_exact("1"))),
                ("x-b", &HeaderMatchSpecifier::PresentMatch(true)),
                (
                    "x-c",
                    &HeaderMatchSpecifier::StringMatch(string_regex("c+"))
                ),
            ]
        );
        let query: Vec<(&str, &QueryParameterMatchSpecifier)> = m
            .query_parameters
            .iter()
            .map(|q| {
                (
                    q.name.as_str(),
                    q.query_parameter_match_specifier.as_ref().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            query,
            [
                ("p", &QueryParameterMatchSpecifier::PresentMatch(true)),
                (
                    "q",
                    &QueryParameterMatchSpecifier::StringMatch(string_exact("2"))
                ),
            ]
        );
        // Case-sensitive routes leave Envoy's default alone.
        let plain = route_match(&seed().routes[0].key);
        assert_eq!(plain.case_sensitive, None);
        assert_eq!(
            plain.path_specifier,
            Some(PathSpecifier::Prefix("/qotm/".into()))
        );
    }

    #[test]
    fn clusters_resolve_names_and_take_ips_as_they_are() {
        let t = table(&[
            (
                "dns",
                "prefix: /d/\nservice: localhost:9001\nconnect_timeout_ms: 1500\n",
            ),
            ("ip", "prefix: /i/\nservice: 127.0.0.1:9002\n"),
        ]);
        let dns = cluster("localhost_9001", &t.clusters["localhost_9001"], &options());
        assert_eq!(
            dns.cluster_discovery_type,
            Some(ClusterDiscoveryType::Type(DiscoveryType::StrictDns as i32))
        );
        assert_eq!(dns.dns_lookup_family, DnsLookupFamily::V4Preferred as i32);
        assert_eq!(
            dns.connect_timeout,
            Some(Duration {
                seconds: 1,
                nanos: 500_000_000
            })
        );
        assert!(dns.transport_socket.is_none());
        assert!(dns.typed_extension_protocol_options.is_empty());
        let ip = cluster("127_0_0_1_9002", &t.clusters["127_0_0_1_9002"], &options());
        assert_eq!(
            ip.cluster_discovery_type,
            Some(ClusterDiscoveryType::Type(DiscoveryType::Static as i32))
        );
    }

    fn tls_context(c: &XdsCluster) -> UpstreamTlsContext {
        let socket = c.transport_socket.as_ref().unwrap();
        assert_eq!(socket.name, TLS_TRANSPORT_SOCKET);
        let Some(TransportSocketConfig::TypedConfig(any)) = &socket.config_type else {
            unreachable!()
        };
        UpstreamTlsContext::decode(any.value.as_slice()).unwrap()
    }

    fn validation(ctx: &UpstreamTlsContext) -> &CertificateValidationContext {
        match &ctx
            .common_tls_context
            .as_ref()
            .unwrap()
            .validation_context_type
        {
            Some(ValidationContextType::ValidationContext(v)) => v,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn https_verifies_the_upstream_by_name_or_ip() {
        let t = table(&[
            (
                "n",
                "prefix: /n/\nservice: https://api.example.com\ngrpc: true\n",
            ),
            ("i", "prefix: /i/\nservice: https://10.1.2.3:8443\n"),
        ]);
        let named = tls_context(&cluster(
            "api_example_com_https",
            &t.clusters["api_example_com_https"],
            &options(),
        ));
        assert_eq!(named.sni, "api.example.com");
        assert_eq!(
            named.common_tls_context.as_ref().unwrap().alpn_protocols,
            ["h2"]
        );
        let v = validation(&named);
        assert_eq!(
            v.trusted_ca.as_ref().unwrap().specifier,
            Some(DataSourceSpecifier::Filename(SYSTEM_TRUST_STORE.into()))
        );
        assert_eq!(
            v.match_typed_subject_alt_names[0].san_type,
            SanType::Dns as i32
        );
        assert_eq!(
            v.match_typed_subject_alt_names[0].matcher,
            Some(string_exact("api.example.com"))
        );

        let own_ca = Options {
            upstream_ca: Some("/etc/my-ca.pem".into()),
            ..options()
        };
        let ip = tls_context(&cluster(
            "10_1_2_3_8443_https",
            &t.clusters["10_1_2_3_8443_https"],
            &own_ca,
        ));
        assert_eq!(ip.sni, "", "SNI carries host names only");
        assert!(
            ip.common_tls_context
                .as_ref()
                .unwrap()
                .alpn_protocols
                .is_empty()
        );
        let v = validation(&ip);
        assert_eq!(
            v.trusted_ca.as_ref().unwrap().specifier,
            Some(DataSourceSpecifier::Filename("/etc/my-ca.pem".into()))
        );
        assert_eq!(
            v.match_typed_subject_alt_names[0].san_type,
            SanType::IpAddress as i32
        );
    }

    #[test]
    fn grpc_clusters_speak_http2_upstream() {
        let t = table(&[("g", "prefix: /g/\nservice: g:9000\ngrpc: true\n")]);
        let c = cluster("g_9000", &t.clusters["g_9000"], &options());
        assert_eq!(c.typed_extension_protocol_options.len(), 1);
        let any = &c.typed_extension_protocol_options[HTTP_PROTOCOL_OPTIONS];
        assert_eq!(
            HttpProtocolOptions::decode(any.value.as_slice()).unwrap(),
            http2_options()
        );
    }

    #[test]
    fn the_listener_takes_rds_over_ads_and_its_name_holds_its_address() {
        let a: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let b: SocketAddr = "[::1]:8080".parse().unwrap();
        assert_ne!(listener_name(a), listener_name(b));
        assert_eq!(listener_name(b), "canary-xds-[::1]:8080");
        let l = listener(a);
        let Some(FilterConfig::TypedConfig(any)) = &l.filter_chains[0].filters[0].config_type
        else {
            unreachable!()
        };
        let hcm = HttpConnectionManager::decode(any.value.as_slice()).unwrap();
        assert_eq!(hcm.stat_prefix, STAT_PREFIX);
        assert_eq!(hcm.route_specifier, Some(RouteSpecifier::Rds(rds())));
        assert_eq!(
            hcm.strip_port_mode,
            Some(StripPortMode::StripAnyHostPort(true))
        );
        let router = &hcm.http_filters[0];
        assert_eq!(router.name, ROUTER_FILTER);
        assert!(
            router.config_type.is_some(),
            "Envoy NACKs a router without typed_config"
        );
    }

    #[test]
    fn the_same_table_encodes_to_the_same_bytes() {
        let docs: &[(&str, &str)] = &[
            ("a", "prefix: /a/\nservice: a:9000\ngrpc: true\n"),
            (
                "b",
                "prefix: /a/\nservice: https://b.example.com\nweight: 10\ntimeout_ms: 1\n",
            ),
            (
                "c",
                "prefix: /c/\nservice: c\nheaders:\n  x: \"1\"\n  y: true\n",
            ),
            ("m", "prefix: /a/\nservice: m\nshadow: true\n"),
        ];
        let encode = |t: &Translated| {
            let mut bytes = t.listener.encode_to_vec();
            bytes.extend(t.route_config.encode_to_vec());
            for c in &t.clusters {
                bytes.extend(c.encode_to_vec());
            }
            bytes
        };
        // Two tables built apart, so no HashMap is shared between them.
        let first = encode(&translate(&table(docs), &options()));
        for _ in 0..8 {
            assert_eq!(encode(&translate(&table(docs), &options())), first);
        }
        let t = translate(&table(docs), &options());
        let names: Vec<&str> = t.clusters.iter().map(|c| c.name.as_str()).collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted);
    }
}
