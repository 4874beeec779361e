//! Real Envoy accepts what `translate` emits: a static bootstrap holding our clusters and our
//! listener, with the route configuration inline, passes `envoy --mode validate`. No network:
//! validate mode binds nothing and resolves nothing.
//!
//! Without `envoy` on PATH the Envoy half fails under CI (which installs it) and is skipped,
//! with a note, elsewhere (`common::have_envoy`).

mod common;

use std::net::SocketAddr;

use canary_xds::envoy::translate::{self, Options, Translated};
use canary_xds::input::parse::parse_file;
use canary_xds::model::diagnostic::Severity;
use canary_xds::routes::{RouteTable, compile};
use common::{Pki, envoy_validate_pb, mapping_body, require_envoy};
use envoy_types::pb::envoy::config::bootstrap::v3::bootstrap::StaticResources;
use envoy_types::pb::envoy::config::bootstrap::v3::{Admin, Bootstrap};
use envoy_types::pb::envoy::config::core::v3::address::Address as XdsAddressKind;
use envoy_types::pb::envoy::config::core::v3::socket_address::PortSpecifier;
use envoy_types::pb::envoy::config::core::v3::{Address, SocketAddress};
use envoy_types::pb::envoy::config::listener::v3::Listener as XdsListener;
use envoy_types::pb::envoy::config::listener::v3::filter::ConfigType as FilterConfig;
use envoy_types::pb::envoy::config::route::v3::RouteConfiguration as XdsRouteConfiguration;
use envoy_types::pb::envoy::config::route::v3::route::Action;
use envoy_types::pb::envoy::config::route::v3::route_action::ClusterSpecifier;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::HttpConnectionManager;
use envoy_types::util::pack_any;
use prost::Message;

/// Every feature translate knows, in one table.
fn rich_table() -> RouteTable {
    let files = [
        // The seed: 90/10 on /qotm/.
        ("qotm", "prefix: /qotm/\nservice: qotm\n"),
        ("qotmv2", "prefix: /qotm/\nservice: qotmv2\nweight: 10\n"),
        (
            "qotm-header-canary",
            "prefix: /qotm/\nservice: qotmv2\nheaders:\n  x-canary: \"true\"\n",
        ),
        // Hosts, wildcards and a host regex.
        (
            "exact",
            "prefix: /a/\nservice: localhost:9001\nhost: a.foo.com\n",
        ),
        (
            "suffix",
            "prefix: /s/\nservice: localhost:9002\nhost: \"*.foo.com\"\n",
        ),
        (
            "prefixed",
            "prefix: /p/\nservice: localhost:9003\nhost: \"a.*\"\n",
        ),
        (
            "host-regex",
            "prefix: /r/\nservice: localhost:9004\nhost: \"^(www\\\\.)?example\\\\.com$\"\nhost_regex: true\n",
        ),
        // A chain (different timeouts), with a zero-weight link and a shadow.
        (
            "chain-a",
            "prefix: /chain/\nservice: chain-a\ntimeout_ms: 1000\nhost_rewrite: a.internal\n",
        ),
        (
            "chain-b",
            "prefix: /chain/\nservice: chain-b\nweight: 30\ntimeout_ms: 0\nrewrite: \"\"\n",
        ),
        (
            "chain-c",
            "prefix: /chain/\nservice: chain-c\nweight: 0\nidle_timeout_ms: 5000\n",
        ),
        (
            "chain-mirror",
            "prefix: /chain/\nservice: mirror\nshadow: true\nweight: 5\n",
        ),
        // A weighted route with per-backend settings and a shadow.
        (
            "w1",
            "prefix: /weighted/\nservice: w1\nuse_websocket: true\nhost_rewrite: w1.internal\n\
             add_request_headers:\n  x-backend: w1\nremove_response_headers: [x-debug]\n\
             retry_policy:\n  retry_on: 5xx\n  num_retries: 2\n  per_try_timeout: 1s\n",
        ),
        (
            "w2",
            "prefix: /weighted/\nservice: w2\nweight: 25\nuse_websocket: true\n\
             add_response_headers:\n  x-canary: {value: \"yes\", append: false}\n\
             remove_request_headers: [cookie]\n\
             retry_policy:\n  retry_on: 5xx\n  num_retries: 2\n  per_try_timeout: 1s\n",
        ),
        (
            "w-mirror",
            "prefix: /weighted/\nservice: mirror\nshadow: true\n",
        ),
        // A weighted route where one backend gets exactly 0 (sent as an explicit weight 0).
        ("zero-a", "prefix: /zero/\nservice: zero-a\nweight: 100\n"),
        ("zero-b", "prefix: /zero/\nservice: zero-b\n"),
        // Every matcher kind.
        (
            "matchers",
            "prefix: /m/\nservice: m\nmethod: POST\ncase_sensitive: false\n\
             headers:\n  x-exact: \"yes\"\n  x-present: true\n\
             regex_headers:\n  x-version: \"^v[0-9]+$\"\n\
             query_parameters:\n  debug: \"1\"\n  trace: true\n",
        ),
        (
            "regex-path",
            "prefix: \"/(v1|v2)/qotm/.*\"\nprefix_regex: true\nservice: rp\nprecedence: 5\n",
        ),
        // A single backend with every route and backend setting.
        (
            "single",
            "prefix: /single/\nservice: single\ntimeout_ms: 2500\nidle_timeout_ms: 30000\n\
             retry_policy:\n  retry_on: gateway-error,reset\n  num_retries: 3\n  per_try_timeout: 250ms\n\
             allow_upgrade: [websocket, h2c]\nhost_rewrite: single.internal\n\
             add_request_headers:\n  x-added: one\n  x-replaced: {value: two, append: false}\n\
             add_response_headers:\n  x-served-by: single\n\
             remove_request_headers: [x-secret]\nremove_response_headers: [server]\n",
        ),
        // Cluster kinds: gRPC, https by name and by IP, gRPC over TLS, IPv4 and IPv6 literals.
        (
            "grpc",
            "prefix: /grpc/\nservice: grpc-svc:9000\ngrpc: true\nconnect_timeout_ms: 250\n",
        ),
        ("https", "prefix: /tls/\nservice: https://api.example.com\n"),
        (
            "grpcs",
            "prefix: /grpcs/\nservice: https://grpc.example.com:8443\ngrpc: true\n",
        ),
        ("ip", "prefix: /ip/\nservice: 127.0.0.1:9001\n"),
        ("ips", "prefix: /ips/\nservice: https://10.0.0.7:8443\n"),
        ("v6", "prefix: /v6/\nservice: \"[::1]:9002\"\n"),
    ];
    let parsed: Vec<_> = files
        .iter()
        .map(|(name, body)| {
            parse_file(&format!("{name}.yaml"), mapping_body(name, body).as_bytes())
        })
        .collect();
    let compiled = compile(&parsed, None);
    let errors: Vec<_> = compiled
        .diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
    compiled.tables.fleet("default").unwrap().clone()
}

fn loopback(port: u16) -> Address {
    Address {
        address: Some(XdsAddressKind::SocketAddress(SocketAddress {
            address: "127.0.0.1".into(),
            port_specifier: Some(PortSpecifier::PortValue(port.into())),
            ..Default::default()
        })),
    }
}

/// A static bootstrap serving what translate made, the routes inline instead of over RDS.
fn bootstrap(t: &Translated, listen: SocketAddr) -> Bootstrap {
    Bootstrap {
        admin: Some(Admin {
            address: Some(loopback(0)),
            ..Default::default()
        }),
        static_resources: Some(StaticResources {
            listeners: vec![translate::listener_with_routes(
                listen,
                t.route_config.clone(),
            )],
            clusters: t.clusters.clone(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The upstream CA is one made for the test (in `dir`), so the test does not depend on the
/// machine's trust store.
fn options(dir: &tempfile::TempDir) -> Options {
    Options {
        listen: "127.0.0.1:10000".parse().unwrap(),
        upstream_ca: Some(Pki::new(dir.path(), "upstream").ca),
    }
}

#[test]
fn envoy_accepts_the_translation_of_every_feature() {
    let ca = tempfile::tempdir().unwrap();
    let options = options(&ca);
    let t = translate::translate(&rich_table(), &options);
    // The table really holds every feature (a chain, weighted clusters, a mirror, TLS, HTTP/2).
    let routes: Vec<_> = t
        .route_config
        .virtual_hosts
        .iter()
        .flat_map(|v| &v.routes)
        .collect();
    assert!(routes.iter().any(|r| {
        r.r#match
            .as_ref()
            .is_some_and(|m| m.runtime_fraction.is_some())
    }));
    assert!(routes.iter().any(|r| matches!(&r.action,
        Some(Action::Route(a)) if matches!(a.cluster_specifier, Some(ClusterSpecifier::WeightedClusters(_)))
            && !a.request_mirror_policies.is_empty())));
    assert!(t.clusters.iter().any(|c| c.transport_socket.is_some()));
    assert!(
        t.clusters
            .iter()
            .any(|c| !c.typed_extension_protocol_options.is_empty())
    );
    assert!(t.route_config.virtual_hosts.len() >= 4);
    assert!(routes.iter().any(|r| matches!(&r.action,
        Some(Action::Route(a)) if matches!(&a.cluster_specifier,
            Some(ClusterSpecifier::WeightedClusters(w)) if w.clusters.iter().any(|c| c.weight.is_some_and(|w| w.value == 0))))));

    require_envoy!();
    if let Err(e) = envoy_validate_pb(&bootstrap(&t, options.listen)) {
        panic!("Envoy rejected the translation:\n{e}");
    }
}

#[test]
fn envoy_accepts_the_system_trust_store_and_an_ipv6_listener() {
    let path = std::path::Path::new(translate::SYSTEM_TRUST_STORE);
    if !path.exists() {
        eprintln!("note: {} is missing; skipping", path.display());
        return;
    }
    let options = Options {
        listen: "[::1]:10000".parse().unwrap(),
        upstream_ca: None,
    };
    let t = translate::translate(&rich_table(), &options);
    require_envoy!();
    if let Err(e) = envoy_validate_pb(&bootstrap(&t, options.listen)) {
        panic!("Envoy rejected the translation:\n{e}");
    }
}

/// The HTTP connection manager inside a listener, to break it.
fn edit_hcm(listener: &mut XdsListener, edit: impl FnOnce(&mut HttpConnectionManager)) {
    let filter = &mut listener.filter_chains[0].filters[0];
    let Some(FilterConfig::TypedConfig(any)) = &filter.config_type else {
        unreachable!()
    };
    let mut hcm = HttpConnectionManager::decode(any.value.as_slice()).unwrap();
    edit(&mut hcm);
    filter.config_type = Some(FilterConfig::TypedConfig(pack_any(hcm)));
}

/// The check can fail: Envoy refuses configurations with the mistakes translate guards against.
#[test]
fn envoy_rejects_broken_translations() {
    let ca = tempfile::tempdir().unwrap();
    let options = options(&ca);
    let good = translate::translate(&rich_table(), &options);
    require_envoy!();
    type Break = fn(&mut Translated, &mut Bootstrap);
    let broken: [(&str, Break); 5] = [
        ("a route to a cluster that does not exist", |t, b| {
            t.clusters.retain(|c| c.name != "qotm");
            b.static_resources.as_mut().unwrap().clusters = t.clusters.clone();
        }),
        ("the router filter without its typed_config", |_, b| {
            let l = &mut b.static_resources.as_mut().unwrap().listeners[0];
            edit_hcm(l, |hcm| hcm.http_filters[0].config_type = None);
        }),
        ("an empty stat_prefix", |_, b| {
            let l = &mut b.static_resources.as_mut().unwrap().listeners[0];
            edit_hcm(l, |hcm| hcm.stat_prefix.clear());
        }),
        ("two virtual hosts with the same domain", |t, b| {
            let mut routes: XdsRouteConfiguration = t.route_config.clone();
            let twin = routes.virtual_hosts[0].clone();
            routes.virtual_hosts.push(twin);
            b.static_resources.as_mut().unwrap().listeners[0] =
                translate::listener_with_routes("127.0.0.1:10000".parse().unwrap(), routes);
        }),
        ("an upstream CA file that does not exist", |t, b| {
            let options = Options {
                listen: "127.0.0.1:10000".parse().unwrap(),
                upstream_ca: Some("/nonexistent/canary-xds-ca.pem".into()),
            };
            for c in &mut t.clusters {
                if c.transport_socket.is_some() {
                    *c = translate::cluster(&c.name.clone(), &spec_of(&c.name), &options);
                }
            }
            b.static_resources.as_mut().unwrap().clusters = t.clusters.clone();
        }),
    ];
    for (what, breaks) in broken {
        let mut t = good.clone();
        let mut b = bootstrap(&t, options.listen);
        breaks(&mut t, &mut b);
        match envoy_validate_pb(&b) {
            Ok(out) => panic!("Envoy accepted {what}:\n{out}"),
            // Envoy's reason, for the log of a run with --nocapture.
            Err(out) => eprintln!("{what}: {}", out.trim().lines().last().unwrap_or("")),
        }
    }
}

fn spec_of(name: &str) -> canary_xds::routes::ClusterSpec {
    canary_xds::routes::ClusterSpec::clone(&rich_table().clusters[name])
}
