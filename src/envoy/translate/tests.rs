//! Unit tests of the translation to Envoy's resources.

use envoy_types::pb::envoy::r#type::v3::fractional_percent::DenominatorType;
use envoy_types::pb::envoy::config::cluster::v3::Cluster as XdsCluster;
use envoy_types::pb::envoy::config::cluster::v3::cluster::{ClusterDiscoveryType, DiscoveryType, DnsLookupFamily};
use envoy_types::pb::envoy::config::core::v3::data_source::Specifier as DataSourceSpecifier;
use envoy_types::pb::envoy::config::core::v3::header_value_option::HeaderAppendAction;
use envoy_types::pb::envoy::config::core::v3::transport_socket::ConfigType as TransportSocketConfig;
use envoy_types::pb::envoy::config::listener::v3::filter::ConfigType as FilterConfig;
use envoy_types::pb::envoy::config::route::v3::{Route as XdsRoute, RouteAction, RouteConfiguration as XdsRouteConfiguration, VirtualHost};
use envoy_types::pb::envoy::config::route::v3::header_matcher::HeaderMatchSpecifier;
use envoy_types::pb::envoy::config::route::v3::query_parameter_matcher::QueryParameterMatchSpecifier;
use envoy_types::pb::envoy::config::route::v3::route::Action as XdsRouteKind;
use envoy_types::pb::envoy::config::route::v3::route_action::{ClusterSpecifier, HostRewriteSpecifier};
use envoy_types::pb::envoy::config::route::v3::route_match::PathSpecifier;
use envoy_types::pb::envoy::config::route::v3::weighted_cluster::cluster_weight::HostRewriteSpecifier as WeightHostRewrite;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::HttpConnectionManager;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::http_connection_manager::{RouteSpecifier, StripPortMode};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{CertificateValidationContext, UpstreamTlsContext};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::common_tls_context::ValidationContextType;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::subject_alt_name_matcher::SanType;
use envoy_types::pb::envoy::extensions::upstreams::http::v3::HttpProtocolOptions;
use envoy_types::pb::google::protobuf::{BoolValue, Duration};
use prost::Message;

use super::cluster::http2_options;
use super::listener::rds;
use super::matcher::{regex, route_match, string_exact, string_regex};
use super::*;
use crate::input::parse::parse_file;
use crate::model::diagnostic::Severity;
use crate::routes::compile;

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
    let Some(ClusterSpecifier::WeightedClusters(w)) = &action(&routes[0]).cluster_specifier else {
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
    let Some(ClusterSpecifier::WeightedClusters(w)) = &action(&routes[0]).cluster_specifier else {
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
    let Some(FilterConfig::TypedConfig(any)) = &l.filter_chains[0].filters[0].config_type else {
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

/// The plan as it was first written: every route checked against every host. The indexed plan
/// must give exactly this.
fn naive_plan(table: &RouteTable) -> Vec<(String, Vec<usize>)> {
    let hosts: std::collections::BTreeSet<&str> = table
        .routes
        .iter()
        .filter(|r| !r.key.host_regex)
        .filter_map(|r| r.key.host.as_deref())
        .collect();
    let applies_everywhere = |i: usize| {
        let key = &table.routes[i].key;
        key.host.is_none() || key.host_regex
    };
    let mut out: Vec<(String, Vec<usize>)> = hosts
        .iter()
        .map(|&host| {
            let routes = (0..table.routes.len())
                .filter(|&i| {
                    applies_everywhere(i)
                        || covers(table.routes[i].key.host.as_deref().unwrap(), host)
                })
                .collect();
            (host.to_string(), routes)
        })
        .collect();
    out.push((
        ANY_HOST.to_string(),
        (0..table.routes.len())
            .filter(|&i| applies_everywhere(i))
            .collect(),
    ));
    out
}

/// Hosts that overlap every way `covers` distinguishes.
const HOSTS: &[&str] = &[
    "a.foo.com",
    "b.a.foo.com",
    "*.foo.com",
    "*.a.foo.com",
    "*foo.com",
    "*.com",
    "foo.com",
    "a.*",
    "a.b.*",
    "a.",
    "*",
    "bar.com",
];

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

    /// The indexed plan is the naive plan, and the arithmetic count of entries and bytes is
    /// what the route configuration really holds.
    #[test]
    fn the_plan_and_its_count_agree_with_checking_every_pair(
        mappings in proptest::collection::vec(
            (0..HOSTS.len() + 2, 0..4usize, proptest::option::of(1..60u32), proptest::bool::ANY),
            1..40,
        ),
    ) {
        let docs: Vec<(String, String)> = mappings
            .iter()
            .enumerate()
            .map(|(i, (host, prefix, weight, timeout))| {
                let mut y = format!("prefix: /p{prefix}/\nservice: s{i}\n");
                match *host {
                    h if h < HOSTS.len() => y.push_str(&format!("host: \"{}\"\n", HOSTS[h])),
                    h if h == HOSTS.len() => y.push_str("host: \"^x.*$\"\nhost_regex: true\n"),
                    _ => {}
                }
                if let Some(w) = weight {
                    y.push_str(&format!("weight: {w}\n"));
                }
                // Backends that differ in a route setting make a chain of links.
                if *timeout {
                    y.push_str("timeout_ms: 5000\n");
                }
                (format!("m{i}"), y)
            })
            .collect();
        // Routes whose weights cannot be split are left out: what is left is still a table.
        let files: Vec<_> = docs
            .iter()
            .map(|(name, body)| parse_file(&format!("{name}.yaml"), mapping(name, body).as_bytes()))
            .collect();
        let t = compile(&files, None).tables.fleet("default").unwrap().clone();
        let plan = virtual_host_plan(&t);
        proptest::prop_assert_eq!(&plan, &naive_plan(&t));
        let rc = route_configuration(&t);
        let entries: usize = rc.virtual_hosts.iter().map(|v| v.routes.len()).sum();
        let counted = repeated_total(&t, |i| links(&t.routes[i]));
        proptest::prop_assert_eq!(counted, entries as u64);
        let bytes: usize = rc
            .virtual_hosts
            .iter()
            .flat_map(|v| &v.routes)
            .map(|r| r.encoded_len())
            .sum();
        let sizes: Vec<u64> = t
            .routes
            .iter()
            .map(|r| envoy_routes(r).iter().map(|e| e.encoded_len() as u64).sum())
            .collect();
        proptest::prop_assert_eq!(repeated_total(&t, |i| sizes[i]), bytes as u64);
    }
}
