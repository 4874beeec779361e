//! Unit tests of the bootstrap: defaults, flags, TLS and quoting.

use super::*;
use clap::Parser;
use serde_json::{Value, json};

#[derive(Parser)]
struct Cmd {
    #[command(flatten)]
    args: BootstrapArgs,
}

fn parse(flags: &[&str]) -> Result<BootstrapArgs, clap::Error> {
    Cmd::try_parse_from(std::iter::once("bootstrap").chain(flags.iter().copied())).map(|c| c.args)
}

/// The bootstrap read back as data, to check values rather than text.
fn data(args: &BootstrapArgs) -> Value {
    serde_saphyr::from_str(&render(args)).unwrap()
}

#[test]
fn the_defaults_are_the_documented_ones() {
    let args = parse(&[]).unwrap();
    assert_eq!(args, BootstrapArgs::default());
    let d = data(&args);
    assert_eq!(
        d["node"],
        json!({"id": "envoy", "cluster": "default", "metadata": {"canary_xds_rtds": true}})
    );
    // The runtime layer that carries weight changes, over ADS.
    assert_eq!(
        d["layered_runtime"]["layers"][0],
        json!({"name": "canary-xds", "rtds_layer": {"name": "canary-xds", "rtds_config": {"ads": {}, "resource_api_version": "V3"}}})
    );
    let plain = data(&parse(&["--no-runtime"]).unwrap());
    assert_eq!(plain["node"], json!({"id": "envoy", "cluster": "default"}));
    assert!(plain.get("layered_runtime").is_none());
    assert_eq!(
        d["admin"]["address"]["socket_address"],
        json!({"address": "127.0.0.1", "port_value": 9901})
    );
    let xds = &d["static_resources"]["clusters"][0];
    assert_eq!(xds["name"], XDS_CLUSTER);
    assert_eq!(xds["type"], "STATIC");
    assert_eq!(
        xds["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"],
        json!({"address": "127.0.0.1", "port_value": 18000})
    );
    assert_eq!(d["dynamic_resources"]["ads_config"]["api_type"], "GRPC");
    assert_eq!(
        d["dynamic_resources"]["lds_config"],
        json!({"ads": {}, "resource_api_version": "V3"})
    );
    assert!(d["static_resources"].get("listeners").is_none());
}

#[test]
fn the_xds_cluster_speaks_http2_with_keepalives() {
    let d = data(&BootstrapArgs::default());
    let xds = &d["static_resources"]["clusters"][0];
    let options = &xds["typed_extension_protocol_options"][translate::HTTP_PROTOCOL_OPTIONS];
    assert_eq!(options["@type"], HttpProtocolOptions::type_url());
    assert_eq!(
        options["explicit_http_config"]["http2_protocol_options"]["connection_keepalive"],
        json!({"interval": "30s", "timeout": "5s"})
    );
    assert_eq!(
        xds["upstream_connection_options"],
        json!({"tcp_keepalive": {}})
    );
}

#[test]
fn a_host_name_is_resolved_by_envoy() {
    let args = parse(&["--xds", "Canary-XDS.ns.svc:18001"]).unwrap();
    assert_eq!(args.xds[0].host, "canary-xds.ns.svc");
    let xds = &data(&args)["static_resources"]["clusters"][0];
    assert_eq!(xds["type"], "STRICT_DNS");
    assert_eq!(xds["dns_lookup_family"], "V4_PREFERRED");
}

#[test]
fn xds_addresses_parse_and_print_back() {
    for (text, host, port) in [
        ("127.0.0.1:18000", "127.0.0.1", 18000),
        ("[::1]:18000", "::1", 18000),
        ("localhost:1", "localhost", 1),
        ("a-b.c.d:65535", "a-b.c.d", 65535),
    ] {
        let a: XdsAddress = text.parse().unwrap();
        assert_eq!((a.host.as_str(), a.port), (host, port));
        assert_eq!(a.to_string(), text);
    }
    for bad in [
        "localhost",
        ":18000",
        "host:0",
        "host:65536",
        "host:port",
        "a..b:1",
        "::1:18000",
        "ho st:1",
        "http://host:1",
    ] {
        assert!(bad.parse::<XdsAddress>().is_err(), "{bad}");
    }
}

#[test]
fn delta_and_static_listener_change_what_they_say() {
    let d = data(&parse(&["--delta"]).unwrap());
    assert_eq!(
        d["dynamic_resources"]["ads_config"]["api_type"],
        "DELTA_GRPC"
    );

    let d = data(&parse(&["--static-listener", "0.0.0.0:8080"]).unwrap());
    assert!(d["dynamic_resources"].get("lds_config").is_none());
    assert!(d["dynamic_resources"].get("cds_config").is_some());
    let listener = &d["static_resources"]["listeners"][0];
    assert_eq!(
        listener["name"],
        translate::listener_name("0.0.0.0:8080".parse().unwrap())
    );
    let hcm = &listener["filter_chains"][0]["filters"][0]["typed_config"];
    assert_eq!(hcm["stat_prefix"], translate::STAT_PREFIX);
    assert_eq!(
        hcm["rds"]["route_config_name"],
        translate::ROUTE_CONFIG_NAME
    );
    assert_eq!(hcm["strip_any_host_port"], true);
    assert_eq!(
        hcm["http_filters"][0]["typed_config"]["@type"],
        Router::type_url()
    );
}

#[test]
fn the_stats_flush_interval_is_envoys_unless_given() {
    let d = data(&BootstrapArgs::default());
    assert!(d.get("stats_flush_interval").is_none());
    let args = parse(&["--stats-flush-interval", "60"]).unwrap();
    assert_eq!(data(&args)["stats_flush_interval"], "60s");
    assert!(render(&args).contains("`canary-xds bootstrap --stats-flush-interval 60`"));
    // Envoy refuses 300 s and more, and 0.
    for bad in ["0", "300", "5s", "-1"] {
        assert!(parse(&["--stats-flush-interval", bad]).is_err(), "{bad}");
    }
}

#[test]
fn user_text_is_quoted_where_yaml_needs_it() {
    let args = parse(&["--node-id", "pod: 1 # 'x' \"y\"", "--fleet", "true"]).unwrap();
    let d = data(&args);
    assert_eq!(d["node"]["id"], "pod: 1 # 'x' \"y\"");
    assert_eq!(d["node"]["cluster"], "true", "a string, not a boolean");
    // The header names the command, quoted for a shell.
    assert!(
        render(&args).starts_with(
            "# Envoy bootstrap for canary-xds, printed by `canary-xds bootstrap \
             --node-id 'pod: 1 # '\\''x'\\'' \"y\"' --fleet true`.\n"
        ),
        "{}",
        render(&args)
    );
}

#[test]
fn bad_names_are_refused() {
    assert!(parse(&["--fleet", "a=b"]).is_err());
    assert!(parse(&["--fleet", ""]).is_err());
    assert!(parse(&["--node-id", "a\nb"]).is_err());
    assert!(parse(&["--node-id", ""]).is_err());
    assert!(parse(&["--admin", "localhost:9901"]).is_err());
}

#[test]
fn histograms_get_fine_buckets_for_upstream_rq_time() {
    let d = data(&BootstrapArgs::default());
    let rule = &d["stats_config"]["histogram_bucket_settings"][0];
    assert_eq!(rule["match"]["safe_regex"]["regex"], UPSTREAM_RQ_TIME_REGEX);
    let buckets: Vec<f64> = rule["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b.as_f64().unwrap())
        .collect();
    assert_eq!(buckets, UPSTREAM_RQ_TIME_BUCKETS_MS);
    // Envoy wants them positive and unique.
    assert!(buckets.windows(2).all(|w| w[0] < w[1]) && buckets[0] > 0.0);
}

#[test]
fn mappings_can_never_take_the_xds_cluster_name() {
    assert!(crate::routes::RESERVED_CLUSTER_NAMES.contains(&XDS_CLUSTER));
}

#[test]
fn tls_is_off_unless_asked_for() {
    let d = data(&BootstrapArgs::default());
    assert!(
        d["static_resources"]["clusters"][0]
            .get("transport_socket")
            .is_none()
    );
}

/// The xds_cluster's TLS context, read back.
fn tls(flags: &[&str]) -> Value {
    let d = data(&parse(flags).unwrap());
    let socket = d["static_resources"]["clusters"][0]["transport_socket"].clone();
    assert_eq!(socket["name"], translate::TLS_TRANSPORT_SOCKET);
    assert_eq!(
        socket["typed_config"]["@type"],
        UpstreamTlsContext::type_url()
    );
    socket["typed_config"].clone()
}

#[test]
fn mtls_verifies_canary_xds_and_presents_envoys_certificate() {
    let t = tls(&[
        "--xds-tls-ca",
        "/etc/envoy/tls/xds-ca.pem",
        "--client-cert",
        "/etc/envoy/tls/envoy.pem",
        "--client-key",
        "/etc/envoy/tls/envoy.key",
    ]);
    let common = &t["common_tls_context"];
    assert_eq!(common["alpn_protocols"], json!(["h2"]));
    assert_eq!(
        common["tls_certificates"],
        json!([{
            "certificate_chain": {"filename": "/etc/envoy/tls/envoy.pem"},
            "private_key": {"filename": "/etc/envoy/tls/envoy.key"}
        }])
    );
    // The default --xds is an IP: its IP SAN is checked, and no SNI is sent.
    assert_eq!(
        common["validation_context"],
        json!({
            "trusted_ca": {"filename": "/etc/envoy/tls/xds-ca.pem"},
            "match_typed_subject_alt_names": [
                {"san_type": "IP_ADDRESS", "matcher": {"exact": "127.0.0.1"}}
            ]
        })
    );
    assert!(t.get("sni").is_none());
}

#[test]
fn a_host_name_is_the_sni_and_the_name_checked_unless_xds_sni_says_otherwise() {
    let t = tls(&["--xds", "canary-xds.ns.svc:18000", "--xds-tls-ca", "ca.pem"]);
    assert_eq!(t["sni"], "canary-xds.ns.svc");
    assert!(t["common_tls_context"].get("tls_certificates").is_none());
    assert_eq!(
        t["common_tls_context"]["validation_context"]["match_typed_subject_alt_names"],
        json!([{"san_type": "DNS", "matcher": {"exact": "canary-xds.ns.svc"}}])
    );
    let t = tls(&["--xds-tls-ca", "ca.pem", "--xds-sni", "XDS.Corp"]);
    assert_eq!(t["sni"], "xds.corp");
    assert_eq!(
        t["common_tls_context"]["validation_context"]["match_typed_subject_alt_names"],
        json!([{"san_type": "DNS", "matcher": {"exact": "xds.corp"}}])
    );
}

#[test]
fn tls_flags_come_in_working_sets() {
    let ca = ["--xds-tls-ca", "ca.pem"];
    let cert = ["--client-cert", "c.pem"];
    let key = ["--client-key", "k.pem"];
    assert!(parse(&[&ca[..], &cert, &key].concat()).is_ok());
    // A client certificate needs its key, a key its certificate, both the server's CA.
    assert!(parse(&[&ca[..], &cert].concat()).is_err());
    assert!(parse(&[&ca[..], &key].concat()).is_err());
    assert!(parse(&[&cert[..], &key].concat()).is_err());
    assert!(parse(&["--xds-sni", "xds.corp"]).is_err());
    assert!(parse(&[&ca[..], &["--xds-sni", "10.0.0.1"]].concat()).is_err());
    assert!(parse(&["--xds-tls-ca", ""]).is_err());
}

#[test]
fn the_output_is_the_same_every_time() {
    let args = parse(&["--delta", "--static-listener", "[::]:8080"]).unwrap();
    assert_eq!(render(&args), render(&args.clone()));
}

#[test]
fn several_xds_addresses_list_every_replica_in_the_xds_cluster() {
    let args = parse(&["--xds", "10.0.0.1:18000", "--xds", "10.0.0.2:18001"]).unwrap();
    assert_eq!(args.xds.len(), 2);
    let xds = &data(&args)["static_resources"]["clusters"][0];
    assert_eq!(xds["type"], "STATIC");
    assert_eq!(
        xds["load_assignment"]["endpoints"][0]["lb_endpoints"],
        json!([
            {"endpoint": {"address": {"socket_address": {"address": "10.0.0.1", "port_value": 18000}}}},
            {"endpoint": {"address": {"socket_address": {"address": "10.0.0.2", "port_value": 18001}}}},
        ])
    );
    // One name among them: Envoy resolves it.
    let args = parse(&["--xds", "10.0.0.1:18000", "--xds", "cp-b.corp:18000"]).unwrap();
    let xds = &data(&args)["static_resources"]["clusters"][0];
    assert_eq!(xds["type"], "STRICT_DNS");
    // The header names the command that prints the file: every --xds, in order.
    let text = render(&args);
    assert!(
        text.lines()
            .next()
            .unwrap()
            .contains("--xds 10.0.0.1:18000 --xds cp-b.corp:18000"),
        "{text}"
    );
}

#[test]
fn tls_to_several_replicas_checks_each_ones_name_or_the_one_of_xds_sni() {
    let ca = ["--xds-tls-ca", "ca.pem"];
    // Two names: either name is accepted, and no SNI (one name could not carry both).
    let t = tls(&[&ca[..], &["--xds", "cp-a.corp:1", "--xds", "cp-b.corp:1"]].concat());
    assert_eq!(
        t["common_tls_context"]["validation_context"]["match_typed_subject_alt_names"],
        json!([
            {"san_type": "DNS", "matcher": {"exact": "cp-a.corp"}},
            {"san_type": "DNS", "matcher": {"exact": "cp-b.corp"}},
        ])
    );
    assert!(t.get("sni").is_none());
    // One name on two ports: that name, as SNI too.
    let t = tls(&[&ca[..], &["--xds", "cp.corp:1", "--xds", "cp.corp:2"]].concat());
    assert_eq!(t["sni"], "cp.corp");
    assert_eq!(
        t["common_tls_context"]["validation_context"]["match_typed_subject_alt_names"],
        json!([{"san_type": "DNS", "matcher": {"exact": "cp.corp"}}])
    );
    // --xds-sni: the one name every replica's certificate carries.
    let t = tls(&[
        &ca[..],
        &[
            "--xds",
            "10.0.0.1:1",
            "--xds",
            "10.0.0.2:1",
            "--xds-sni",
            "cp.corp",
        ],
    ]
    .concat());
    assert_eq!(t["sni"], "cp.corp");
    assert_eq!(
        t["common_tls_context"]["validation_context"]["match_typed_subject_alt_names"],
        json!([{"san_type": "DNS", "matcher": {"exact": "cp.corp"}}])
    );
}
