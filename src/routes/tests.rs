//! Unit tests of the route tables: compile, recompile, order, clusters and explanations.

use std::collections::BTreeSet;
use std::sync::Arc;

use proptest::prelude::*;

use super::*;
use crate::input::parse::{ParsedFile, parse_file};
use crate::model::diagnostic::{Diagnostic, Severity};
use crate::model::mapping::{Bp, FULL, RouteKey};
use crate::test_util::arbitrary_mapping;

fn mapping_yaml(name: &str, extra: &str) -> String {
    format!(
        "---\napiVersion: ambassador/v1\nkind: Mapping\nname: {name}\nprefix: /qotm/\n\
         service: {name}\n{extra}"
    )
}

fn compile_files(files: &[(&str, String)]) -> Compiled {
    let parsed: Vec<ParsedFile> = files
        .iter()
        .map(|(f, y)| parse_file(f, y.as_bytes()))
        .collect();
    compile(&parsed, None)
}

fn default_routes(c: &Compiled) -> &[Arc<Route>] {
    &c.tables.fleet("default").unwrap().routes
}

fn shares(route: &Route) -> Vec<(String, Bp)> {
    route
        .backends
        .iter()
        .map(|b| (b.mapping.id.name.clone(), b.weight_bp))
        .collect()
}

fn errors(c: &Compiled) -> Vec<&Diagnostic> {
    c.diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .collect()
}

#[test]
fn the_docs_example_is_90_10_with_clusters_named_after_services() {
    let c = compile_files(&[
        ("qotm.yaml", mapping_yaml("qotm", "")),
        ("qotmv2.yaml", mapping_yaml("qotmv2", "weight: 10\n")),
    ]);
    assert!(c.diagnostics.is_empty(), "{:?}", c.diagnostics);
    let routes = default_routes(&c);
    assert_eq!(routes.len(), 1);
    assert_eq!(
        shares(&routes[0]),
        [("qotm".into(), 9000), ("qotmv2".into(), 1000)]
    );
    let clusters: Vec<&str> = routes[0]
        .backends
        .iter()
        .map(|b| b.cluster.as_str())
        .collect();
    assert_eq!(clusters, ["qotm", "qotmv2"]);
}

#[test]
fn over_100_is_an_error_naming_every_mapping_and_the_route_is_left_out() {
    let c = compile_files(&[
        ("a.yaml", mapping_yaml("a", "weight: 60\n")),
        ("b.yaml", mapping_yaml("b", "weight: 50\n")),
    ]);
    assert!(default_routes(&c).is_empty());
    let e = errors(&c);
    assert_eq!(e.len(), 1);
    assert!(e[0].message.contains("110%"), "{}", e[0].message);
    assert!(
        e[0].message.contains("a (60%, a.yaml:2:1)"),
        "{}",
        e[0].message
    );
    assert!(
        e[0].message.contains("b (50%, b.yaml:2:1)"),
        "{}",
        e[0].message
    );
}

#[test]
fn a_failed_route_keeps_its_last_good_state_when_given_one() {
    let good = compile_files(&[
        ("a.yaml", mapping_yaml("a", "weight: 60\n")),
        ("b.yaml", mapping_yaml("b", "weight: 40\n")),
    ]);
    let files: Vec<ParsedFile> = [
        ("a.yaml", mapping_yaml("a", "weight: 60\n")),
        ("b.yaml", mapping_yaml("b", "weight: 50\n")),
    ]
    .iter()
    .map(|(f, y)| parse_file(f, y.as_bytes()))
    .collect();
    let c = compile(&files, Some(&good.tables));
    let routes = default_routes(&c);
    assert_eq!(shares(&routes[0]), [("a".into(), 6000), ("b".into(), 4000)]);
    assert!(routes[0].held.is_some());
    assert!(
        errors(&c)[0]
            .message
            .contains("last good weights keep serving")
    );
}

#[test]
fn a_held_route_with_one_backend_keeps_a_cluster() {
    // The route's only Mapping becomes a shadow: the route fails, and its last good state,
    // one backend, is held. Its cluster must still be found.
    let good = compile_files(&[("a.yaml", mapping_yaml("a", ""))]);
    let files = [parse_file(
        "a.yaml",
        mapping_yaml("a", "shadow: true\n").as_bytes(),
    )];
    let c = compile(&files, Some(&good.tables));
    let routes = default_routes(&c);
    assert_eq!(shares(&routes[0]), [("a".into(), FULL)]);
    assert!(routes[0].held.is_some());
    assert_eq!(routes[0].backends[0].cluster, "a");
    assert!(
        c.tables
            .fleet("default")
            .unwrap()
            .clusters
            .contains_key("a")
    );
}

#[test]
fn a_rejected_mapping_says_where_its_traffic_goes() {
    let c = compile_files(&[
        ("qotm.yaml", mapping_yaml("qotm", "")),
        (
            "qotmv2.yaml",
            mapping_yaml("qotmv2", "weight: 10\ntimeout_ms: soon\n"),
        ),
    ]);
    assert_eq!(shares(&default_routes(&c)[0]), [("qotm".into(), FULL)]);
    let e = errors(&c);
    assert_eq!(e[0].field.as_deref(), Some("timeout_ms"));
    assert!(
        e[0].message.ends_with("its 10% goes back to qotm"),
        "{}",
        e[0].message
    );
}

#[test]
fn duplicates_keep_the_first_in_path_order() {
    let c = compile_files(&[
        ("a.yaml", mapping_yaml("qotm", "")),
        (
            "b.yaml",
            mapping_yaml("qotm", "weight: 10\n").replace("prefix: /qotm/", "prefix: /other/"),
        ),
    ]);
    let routes = default_routes(&c);
    assert_eq!(routes.len(), 1);
    assert_eq!(routes[0].key.prefix, "/qotm/");
    let e = errors(&c);
    assert_eq!(
        (e[0].file.as_str(), e[0].field.as_deref()),
        ("b.yaml", Some("name"))
    );
    assert!(e[0].message.contains("a.yaml:2:1"));
}

#[test]
fn names_clash_only_within_a_fleet() {
    let c = compile_files(&[
        (
            "a.yaml",
            mapping_yaml("qotm", "ambassador_id: [default, edge]\n"),
        ),
        (
            "b.yaml",
            mapping_yaml("qotm", "ambassador_id: edge\nweight: 10\n"),
        ),
        ("c.yaml", mapping_yaml("qotm", "ambassador_id: internal\n")),
    ]);
    let e = errors(&c);
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(e[0].file, "b.yaml");
    assert!(e[0].message.contains("(fleet edge)"), "{}", e[0].message);
    for fleet in ["default", "edge", "internal"] {
        let routes = &c.tables.fleet(fleet).unwrap().routes;
        assert_eq!(routes[0].backends.len(), 1, "{fleet}");
    }
}

#[test]
fn the_same_name_in_another_namespace_is_not_a_duplicate() {
    let c = compile_files(&[
        ("a.yaml", mapping_yaml("qotm", "")),
        (
            "b.yaml",
            mapping_yaml("qotm", "namespace: canary\nweight: 10\n"),
        ),
    ]);
    assert!(errors(&c).is_empty());
    assert_eq!(default_routes(&c)[0].backends.len(), 2);
}

#[test]
fn shadows_mirror_and_take_no_share() {
    let c = compile_files(&[
        ("a.yaml", mapping_yaml("qotm", "")),
        (
            "b.yaml",
            mapping_yaml("mirror", "shadow: true\nweight: 5\n"),
        ),
        ("c.yaml", mapping_yaml("mirror2", "shadow: true\n")),
    ]);
    let r = &default_routes(&c)[0];
    assert_eq!(shares(r), [("qotm".into(), FULL)]);
    let s = r.shadow.as_ref().unwrap();
    assert_eq!((s.mapping.id.name.as_str(), s.percent_bp), ("mirror", 500));
    let e = errors(&c);
    assert_eq!((e.len(), e[0].file.as_str()), (1, "c.yaml"));
}

#[test]
fn a_route_with_only_a_shadow_is_an_error() {
    let c = compile_files(&[("b.yaml", mapping_yaml("mirror", "shadow: true\n"))]);
    assert!(default_routes(&c).is_empty());
    assert_eq!(errors(&c)[0].field.as_deref(), Some("shadow"));
}

#[test]
fn fleets_have_their_own_tables() {
    let c = compile_files(&[
        ("a.yaml", mapping_yaml("qotm", "")),
        (
            "b.yaml",
            mapping_yaml("edge", "ambassador_id: [edge]\n").replace("/qotm/", "/edge/"),
        ),
        (
            "c.yaml",
            mapping_yaml("both", "ambassador_id: [edge, default]\n").replace("/qotm/", "/both/"),
        ),
    ]);
    let names = |f: &str| -> Vec<String> {
        c.tables
            .fleet(f)
            .unwrap()
            .routes
            .iter()
            .map(|r| r.key.prefix.clone())
            .collect()
    };
    assert_eq!(names("default"), ["/both/", "/qotm/"]);
    assert_eq!(names("edge"), ["/both/", "/edge/"]);
}

#[test]
fn routes_are_ordered_as_envoy_tries_them() {
    let m = |name: &str, prefix: &str, extra: &str| {
        (
            format!("{name}.yaml"),
            mapping_yaml(name, extra).replace("/qotm/", prefix),
        )
    };
    let files = [
        m("root", "/", ""),
        m("short", "/a/", ""),
        m("long", "/a/b/", ""),
        m("hdr", "/a/", "headers: {x-canary: \"true\"}\n"),
        m("prec", "/", "precedence: 10\n"),
        m("get", "/a/", "method: GET\n"),
    ];
    let files: Vec<(&str, String)> = files.iter().map(|(f, y)| (f.as_str(), y.clone())).collect();
    let c = compile_files(&files);
    let order: Vec<String> = default_routes(&c)
        .iter()
        .map(|r| r.backends[0].mapping.id.name.clone())
        .collect();
    // get and hdr tie on matchers and prefix; no method sorts before GET.
    assert_eq!(order, ["prec", "long", "hdr", "get", "short", "root"]);
}

#[test]
fn header_order_does_not_split_a_group() {
    let c = compile_files(&[
        (
            "a.yaml",
            mapping_yaml("a", "headers: {x: \"1\", y: \"2\"}\n"),
        ),
        (
            "b.yaml",
            mapping_yaml("b", "weight: 10\nheaders: {y: \"2\", x: \"1\"}\n"),
        ),
    ]);
    assert_eq!(default_routes(&c).len(), 1);
}

#[test]
fn host_case_joins_groups_and_method_none_differs_from_get() {
    let c = compile_files(&[
        ("a.yaml", mapping_yaml("a", "host: Foo.com\n")),
        ("b.yaml", mapping_yaml("b", "weight: 10\nhost: foo.COM\n")),
        ("c.yaml", mapping_yaml("c", "method: GET\n")),
        ("d.yaml", mapping_yaml("d", "")),
    ]);
    let sizes: Vec<usize> = default_routes(&c)
        .iter()
        .map(|r| r.backends.len())
        .collect();
    assert_eq!(sizes, [2, 1, 1]);
}

#[test]
fn shared_clusters_need_agreeing_settings() {
    let c = compile_files(&[
        (
            "a.yaml",
            mapping_yaml("a", "connect_timeout_ms: 1000\n").replace("service: a", "service: s"),
        ),
        (
            "b.yaml",
            mapping_yaml("b", "connect_timeout_ms: 2000\n")
                .replace("service: b", "service: s")
                .replace("/qotm/", "/b/"),
        ),
    ]);
    let e = errors(&c);
    assert_eq!((e.len(), e[0].file.as_str()), (1, "b.yaml"));
    assert_eq!(e[0].field.as_deref(), Some("connect_timeout_ms"));
    assert_eq!(default_routes(&c).len(), 1);
}

#[test]
fn cluster_names_follow_the_published_rule() {
    let c = compile_files(&[
        // /qotm/: a weighted route over qotm and qotmv2.
        ("a.yaml", mapping_yaml("qotm", "")),
        ("b.yaml", mapping_yaml("qotmv2", "weight: 10\n")),
        // /other/: qotm alone: its shared cluster yields the plain name to /qotm/'s backend.
        (
            "c.yaml",
            mapping_yaml("other", "")
                .replace("service: other", "service: qotm")
                .replace("/qotm/", "/other/"),
        ),
        (
            "d.yaml",
            mapping_yaml("tls", "")
                .replace("service: tls", "service: https://api.example.com:8443")
                .replace("/qotm/", "/tls/"),
        ),
        (
            "e.yaml",
            mapping_yaml("tagged", "cluster_tag: blue\n")
                .replace("service: tagged", "service: qotm.prod:8080")
                .replace("/qotm/", "/tag/"),
        ),
    ]);
    assert!(errors(&c).is_empty(), "{:?}", c.diagnostics);
    let names: BTreeSet<&str> = c
        .tables
        .fleet("default")
        .unwrap()
        .clusters
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        names,
        BTreeSet::from([
            "qotm",
            "qotm__shared",
            "qotmv2",
            "api_example_com_8443_https",
            "qotm_prod_8080_blue"
        ])
    );
    let weighted = &default_routes(&c)
        .iter()
        .find(|r| r.key.prefix == "/qotm/")
        .unwrap()
        .backends;
    assert_eq!(
        (weighted[0].cluster.as_str(), weighted[1].cluster.as_str()),
        ("qotm", "qotmv2")
    );
}

#[test]
fn one_service_in_two_weighted_routes_gets_a_cluster_per_mapping() {
    let c = compile_files(&[
        (
            "a.yaml",
            mapping_yaml("a", "").replace("service: a", "service: main"),
        ),
        (
            "b.yaml",
            mapping_yaml("b", "weight: 10\n").replace("service: b", "service: canary"),
        ),
        (
            "c.yaml",
            mapping_yaml("c", "")
                .replace("service: c", "service: main")
                .replace("/qotm/", "/c/"),
        ),
        (
            "d.yaml",
            mapping_yaml("d", "weight: 20\n")
                .replace("service: d", "service: canary")
                .replace("/qotm/", "/c/"),
        ),
    ]);
    let names: BTreeSet<&str> = c
        .tables
        .fleet("default")
        .unwrap()
        .clusters
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        names,
        BTreeSet::from(["main__a", "main__c", "canary__b", "canary__d"])
    );
}

#[test]
fn reserved_and_sanitized_names_never_collide() {
    let c = compile_files(&[
        (
            "a.yaml",
            mapping_yaml("a", "").replace("service: a", "service: xds_cluster"),
        ),
        (
            "b.yaml",
            mapping_yaml("b", "")
                .replace("service: b", "service: x.y")
                .replace("/qotm/", "/b/"),
        ),
        (
            "c.yaml",
            mapping_yaml("c", "")
                .replace("service: c", "service: x_y")
                .replace("/qotm/", "/c/"),
        ),
    ]);
    let names: BTreeSet<&str> = c
        .tables
        .fleet("default")
        .unwrap()
        .clusters
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(names, BTreeSet::from(["xds_cluster_2", "x_y", "x_y_2"]));
}

fn warnings(c: &Compiled) -> Vec<&Diagnostic> {
    c.diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Warning)
        .collect()
}

#[test]
fn rule_1_a_lone_mapping_with_weight_0_gets_everything_with_a_warning() {
    let c = compile_files(&[("a.yaml", mapping_yaml("qotm", "weight: 0\n"))]);
    assert_eq!(shares(&default_routes(&c)[0]), [("qotm".into(), FULL)]);
    let w = warnings(&c);
    assert_eq!(w.len(), 1, "{:?}", c.diagnostics);
    assert!(
        w[0].message.contains("still receives 100%"),
        "{}",
        w[0].message
    );
    assert_eq!((w[0].line, w[0].field.as_deref()), (7, Some("weight")));
}

#[test]
fn rule_3_leftovers_go_by_namespace_and_name_whatever_the_files() {
    // Three unweighted Mappings beside a 10% canary: 9000 / 3 = 3000 each; with 10.01%,
    // 8999 / 3 = 2999 rest 2: the first two in (namespace, name) order get one more.
    let c = compile_files(&[
        ("1.yaml", mapping_yaml("c", "namespace: a\n")),
        ("2.yaml", mapping_yaml("a", "namespace: b\n")),
        ("3.yaml", mapping_yaml("b", "namespace: a\n")),
        ("4.yaml", mapping_yaml("z", "weight: 10.01\n")),
    ]);
    let r = &default_routes(&c)[0];
    let got: Vec<(String, Bp)> = r
        .backends
        .iter()
        .map(|b| (b.mapping.id.to_string(), b.weight_bp))
        .collect();
    assert_eq!(
        got,
        [
            ("b.a".to_string(), 3000),
            ("c.a".into(), 3000),
            ("a.b".into(), 2999),
            ("z".into(), 1001)
        ]
    );
}

#[test]
fn rule_5_exactly_100_leaves_the_unweighted_with_0_and_a_warning() {
    let c = compile_files(&[
        ("a.yaml", mapping_yaml("qotm", "")),
        ("b.yaml", mapping_yaml("qotmv2", "weight: 100\n")),
    ]);
    assert_eq!(
        shares(&default_routes(&c)[0]),
        [("qotm".into(), 0), ("qotmv2".into(), FULL)]
    );
    let w = warnings(&c);
    assert_eq!(w.len(), 1);
    assert_eq!(
        (w[0].file.as_str(), w[0].mapping.as_deref()),
        ("a.yaml", Some("qotm"))
    );
    assert!(w[0].message.contains("receives 0%"), "{}", w[0].message);
}

#[test]
fn rule_6_under_100_is_scaled_up_with_a_warning() {
    let c = compile_files(&[
        ("a.yaml", mapping_yaml("a", "weight: 20\n")),
        ("b.yaml", mapping_yaml("b", "weight: 30\n")),
    ]);
    assert_eq!(
        shares(&default_routes(&c)[0]),
        [("a".into(), 4000), ("b".into(), 6000)]
    );
    let w = warnings(&c);
    assert_eq!(w.len(), 1);
    assert!(
        w[0].message.contains("a 20% -> 40%, b 30% -> 60%"),
        "{}",
        w[0].message
    );
}

#[test]
fn rule_7_all_weights_0_is_an_error() {
    let c = compile_files(&[
        ("a.yaml", mapping_yaml("a", "weight: 0\n")),
        ("b.yaml", mapping_yaml("b", "weight: 0\n")),
    ]);
    assert!(default_routes(&c).is_empty());
    let e = errors(&c);
    assert_eq!(e.len(), 1);
    assert!(
        e[0].message.contains("every weight is 0"),
        "{}",
        e[0].message
    );
}

#[test]
fn rule_8_the_second_shadow_in_path_order_is_left_out() {
    // Path order is file, then document: "a-mirror" comes second although its name sorts
    // first.
    let doc = mapping_yaml("z-mirror", "shadow: true\n")
        + &mapping_yaml("a-mirror", "shadow: true\nweight: 50\n");
    let c = compile_files(&[("a.yaml", mapping_yaml("qotm", "")), ("b.yaml", doc)]);
    let s = default_routes(&c)[0].shadow.as_ref().unwrap();
    assert_eq!(
        (s.mapping.id.name.as_str(), s.percent_bp),
        ("z-mirror", FULL)
    );
    let e = errors(&c);
    assert_eq!(e.len(), 1);
    assert_eq!(
        (e[0].mapping.as_deref(), e[0].field.as_deref()),
        (Some("a-mirror"), Some("shadow"))
    );
}

#[test]
fn rule_10_each_backend_keeps_its_own_settings() {
    let c = compile_files(&[
        (
            "a.yaml",
            mapping_yaml(
                "qotm",
                "rewrite: /v1/\ntimeout_ms: 1000\nadd_request_headers: {x-version: v1}\n",
            ),
        ),
        (
            "b.yaml",
            mapping_yaml(
                "qotmv2",
                "weight: 10\nrewrite: \"\"\nidle_timeout_ms: 500\nhost_rewrite: v2.internal\n\
                 remove_response_headers: [server]\nallow_upgrade: [websocket]\n",
            ),
        ),
    ]);
    assert!(c.diagnostics.is_empty(), "{:?}", c.diagnostics);
    let r = &default_routes(&c)[0];
    let (v1, v2) = (&r.backends[0].mapping, &r.backends[1].mapping);
    assert_eq!(v1.route.rewrite.as_deref(), Some("/v1/"));
    assert_eq!(v2.route.rewrite, None);
    assert_eq!((v1.route.timeout_ms, v2.route.timeout_ms), (1000, 3000));
    assert_eq!(v2.route.idle_timeout_ms, Some(500));
    assert!(v2.route.upgrades.contains("websocket") && v1.route.upgrades.is_empty());
    assert_eq!(v1.backend.add_request_headers["x-version"].value, "v1");
    assert!(v2.backend.add_request_headers.is_empty());
    assert_eq!(v2.backend.host_rewrite.as_deref(), Some("v2.internal"));
    assert!(v2.backend.remove_response_headers.contains("server"));
    assert!(v1.backend.remove_response_headers.is_empty());
}

#[test]
fn a_duplicate_of_a_mapping_with_an_error_is_still_a_duplicate() {
    let c = compile_files(&[
        ("a.yaml", mapping_yaml("qotm", "timeout_ms: soon\n")),
        ("b.yaml", mapping_yaml("qotm", "")),
    ]);
    assert!(default_routes(&c).is_empty());
    let e = errors(&c);
    assert_eq!(e.len(), 2, "{e:?}");
    assert_eq!(
        (e[1].file.as_str(), e[1].field.as_deref()),
        ("b.yaml", Some("name"))
    );
    assert!(e[1].message.contains("a.yaml:2:1"), "{}", e[1].message);
}

#[test]
fn a_mapping_without_a_name_or_route_says_it_is_left_out() {
    let c = compile_files(&[(
        "a.yaml",
        "apiVersion: ambassador/v1\nkind: Mapping\nprefix: /a/\nservice: a\n---\n\
         apiVersion: ambassador/v1\nkind: Mapping\nname: b\nprefix: b\nservice: b\n"
            .to_string(),
    )]);
    let e = errors(&c);
    assert_eq!(e.len(), 2);
    for d in e {
        assert!(
            d.message.ends_with("; the Mapping is left out"),
            "{}",
            d.message
        );
    }
}

#[test]
fn diagnostics_carry_file_line_column_mapping_and_field() {
    let c = compile_files(&[
        ("qotm.yaml", mapping_yaml("qotm", "")),
        ("dir/qotmv2.yaml", mapping_yaml("qotmv2", "weight:   101\n")),
    ]);
    let e = errors(&c);
    assert_eq!(e.len(), 1);
    let d = e[0];
    assert_eq!(
        (
            d.file.as_str(),
            d.line,
            d.column,
            d.mapping.as_deref(),
            d.field.as_deref()
        ),
        ("dir/qotmv2.yaml", 7, 11, Some("qotmv2"), Some("weight"))
    );
    assert_eq!(
        d.message,
        "weight must be between 0 and 100, found 101; the Mapping is left out and route \
         /qotm/ goes on with qotm 100%"
    );
}

#[test]
fn grouping_treats_query_and_regex_headers_as_sets_and_authority_as_host() {
    let c = compile_files(&[
        (
            "a.yaml",
            mapping_yaml(
                "a",
                "host: foo.com\nquery_parameters: {a: \"1\", b: true}\n\
                 regex_headers: {x: \"^1\", y: \"^2\"}\n",
            ),
        ),
        (
            "b.yaml",
            mapping_yaml(
                "b",
                "weight: 10\nheaders: {\":authority\": FOO.com}\n\
                 query_parameters: {b: true, a: \"1\"}\nregex_headers: {y: \"^2\", x: \"^1\"}\n",
            ),
        ),
    ]);
    assert!(errors(&c).is_empty(), "{:?}", c.diagnostics);
    let routes = default_routes(&c);
    assert_eq!(routes.len(), 1);
    assert_eq!(shares(&routes[0]), [("a".into(), 9000), ("b".into(), 1000)]);
}

#[test]
fn namespace_is_not_part_of_the_group() {
    let c = compile_files(&[
        ("a.yaml", mapping_yaml("qotm", "namespace: prod\n")),
        (
            "b.yaml",
            mapping_yaml("qotmv2", "namespace: canary\nweight: 10\n"),
        ),
    ]);
    let r = default_routes(&c);
    assert_eq!(r.len(), 1);
    assert_eq!(
        shares(&r[0]),
        [("qotmv2".into(), 1000), ("qotm".into(), 9000)]
    );
}

#[test]
fn every_part_of_the_match_makes_its_own_group() {
    let variants = [
        "",
        "precedence: 1\n",
        "host: foo.com\n",
        "host: \"^foo\"\nhost_regex: true\n",
        "method: GET\n",
        "method: POST\n",
        "case_sensitive: false\n",
        "headers: {x: \"1\"}\n",
        "headers: {x: true}\n",
        "regex_headers: {x: \"1\"}\n",
        "query_parameters: {x: \"1\"}\n",
        "query_parameters: {x: true}\n",
    ];
    let mut files: Vec<(String, String)> = variants
        .iter()
        .enumerate()
        .map(|(i, v)| (format!("{i:02}.yaml"), mapping_yaml(&format!("m{i:02}"), v)))
        .collect();
    files.push((
        "98.yaml".into(),
        mapping_yaml("regex", "prefix_regex: true\n"),
    ));
    files.push((
        "99.yaml".into(),
        mapping_yaml("longer", "").replace("/qotm/", "/qotm/x"),
    ));
    let files: Vec<(&str, String)> = files.iter().map(|(f, y)| (f.as_str(), y.clone())).collect();
    let c = compile_files(&files);
    assert!(errors(&c).is_empty(), "{:?}", c.diagnostics);
    assert_eq!(default_routes(&c).len(), variants.len() + 2);
}

#[test]
fn ties_in_route_order_fall_to_prefix_then_method_then_matchers() {
    let m = |name: &str, prefix: &str, extra: &str| {
        (
            format!("{name}.yaml"),
            mapping_yaml(name, extra).replace("/qotm/", prefix),
        )
    };
    let files = [
        // Equal length and matcher count: the prefix string decides.
        m("a1", "/b/", ""),
        m("a2", "/a/", ""),
        // Equal prefix and count: the method decides, then the header text.
        m("b1", "/c/", "method: POST\n"),
        m("b2", "/c/", "method: GET\n"),
        m("c1", "/d/", "headers: {y: \"1\"}\n"),
        m("c2", "/d/", "headers: {x: \"1\"}\n"),
        // A longer regex prefix goes before a shorter plain one.
        m("d1", "^/e.*$", "prefix_regex: true\n"),
    ];
    let files: Vec<(&str, String)> = files.iter().map(|(f, y)| (f.as_str(), y.clone())).collect();
    let c = compile_files(&files);
    let order: Vec<String> = default_routes(&c)
        .iter()
        .map(|r| r.backends[0].mapping.id.name.clone())
        .collect();
    assert_eq!(order, ["d1", "b2", "b1", "c2", "c1", "a2", "a1"]);
}

/// Valid files to mutate: every form and most fields.
const CORPUS: &[&str] = &[
    "apiVersion: ambassador/v1\nkind: Mapping\nname: qotm\nprefix: /qotm/\nservice: qotm\n",
    "apiVersion: ambassador/v1\nkind: Mapping\nname: qotmv2\nprefix: /qotm/\n\
     service: qotmv2\nweight: 10\n",
    "apiVersion: getambassador.io/v2\nkind: Mapping\nmetadata:\n  name: canary\n  \
     namespace: prod\nspec:\n  prefix: /qotm/\n  service: https://qotm.prod:8443\n  \
     weight: 4.35\n  headers:\n    x-canary: \"true\"\n    :authority: Foo.com\n  \
     ambassador_id: [default, edge]\n",
    "---\napiVersion: ambassador/v0\nkind: Module\nname: ambassador\n---\n\
     apiVersion: ambassador/v1\nkind: Mapping\nname: m\nprefix: ^/q.*$\nprefix_regex: true\n\
     service: m:8080\nshadow: true\nweight: 0.5\nrewrite: \"\"\n\
     query_parameters: {debug: true}\nregex_headers: {x-user: \"^a\"}\n",
    "apiVersion: getambassador.io/v3alpha1\nkind: Mapping\nmetadata: {name: full}\nspec:\n  \
     prefix: /full/\n  service: full\n  host: full.example.com\n  method: GET\n  \
     precedence: 2\n  timeout_ms: 0\n  idle_timeout_ms: 5\n  connect_timeout_ms: 9\n  \
     host_rewrite: x\n  add_request_headers: {a: b, c: {value: d, append: false}}\n  \
     add_response_headers: {e: f}\n  remove_request_headers: [g]\n  \
     remove_response_headers: h\n  case_sensitive: false\n  cluster_tag: t\n  grpc: true\n  \
     allow_upgrade: [websocket]\n  use_websocket: true\n  \
     retry_policy: {retry_on: 5xx, num_retries: 2, per_try_timeout: 1s}\n  cors: {}\n",
    "a: &a [x, *b]\nb: &b {k: *a}\n<<: *b\n",
];

/// One edit of a file: what to do, where (modulo the length) and with which byte.
fn mutation() -> impl Strategy<Value = (u8, usize, u8)> {
    let interesting =
        prop::sample::select(b":-[]{}&*!|>'\"#%@`,?\n\t 0123456789.~\\\xff\xc3\x00".to_vec());
    (
        0u8..5,
        any::<usize>(),
        prop_oneof![interesting, any::<u8>()],
    )
}

fn mutate(base: &str, edits: &[(u8, usize, u8)]) -> Vec<u8> {
    let mut bytes = base.as_bytes().to_vec();
    for &(op, at, byte) in edits {
        let at = at % (bytes.len() + 1);
        match op {
            0 => bytes.insert(at, byte),
            1 if at < bytes.len() => bytes[at] = byte,
            2 if at < bytes.len() => {
                let end = (at + usize::from(byte % 16) + 1).min(bytes.len());
                bytes.drain(at..end);
            }
            3 => {
                // Repeat a short stretch: indentation and structure get shuffled.
                let end = (at + usize::from(byte % 32) + 1).min(bytes.len());
                let stretch = bytes[at.min(end)..end].to_vec();
                bytes.splice(at..at, stretch);
            }
            _ => bytes.truncate(at),
        }
    }
    bytes
}

fn compile_bytes(files: &[Vec<u8>]) -> Compiled {
    let parsed: Vec<ParsedFile> = files
        .iter()
        .enumerate()
        .map(|(i, b)| parse_file(&format!("f{i}.yaml"), b))
        .collect();
    let first = compile(&parsed, None);
    // And once more with a fallback, as `serve` compiles.
    compile(&parsed, Some(&first.tables))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_bytes_never_panic(files in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..512), 1..4)) {
        let started = std::time::Instant::now();
        compile_bytes(&files);
        prop_assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }

    #[test]
    fn mutated_mappings_never_panic(
        picks in prop::collection::vec((0..CORPUS.len(), prop::collection::vec(mutation(), 1..8)), 1..5)
    ) {
        let files: Vec<Vec<u8>> = picks.iter().map(|(i, edits)| mutate(CORPUS[*i], edits)).collect();
        let started = std::time::Instant::now();
        let c = compile_bytes(&files);
        prop_assert!(started.elapsed() < std::time::Duration::from_secs(5));
        for t in c.tables.fleets.values() {
            for r in &t.routes {
                prop_assert_eq!(r.backends.iter().map(|b| b.weight_bp).sum::<Bp>(), FULL);
            }
        }
    }
}

#[test]
fn a_compile_given_the_last_tables_reuses_the_routes_that_did_not_change() {
    let doc = |name: &str, prefix: &str, extra: &str| {
        format!(
            "---\napiVersion: ambassador/v1\nkind: Mapping\nname: {name}\nprefix: {prefix}\nservice: {name}\n{extra}"
        )
    };
    let a = |w: u32| doc("a2", "/a/", &format!("weight: {w}\n")) + &doc("a1", "/a/", "");
    let b = Arc::new(parse_file("b.yaml", doc("b", "/b/", "").as_bytes()));
    let first = compile(
        &[
            Arc::new(parse_file("a.yaml", a(10).as_bytes())),
            Arc::clone(&b),
        ],
        None,
    );
    let files = [Arc::new(parse_file("a.yaml", a(20).as_bytes())), b];
    let second = compile(&files, Some(&first.tables));
    let (one, two) = (default_routes(&first), default_routes(&second));
    let by_prefix = |routes: &[Arc<Route>], p: &str| {
        Arc::clone(routes.iter().find(|r| r.key.prefix == p).unwrap())
    };
    assert!(Arc::ptr_eq(&by_prefix(one, "/b/"), &by_prefix(two, "/b/")));
    assert!(!Arc::ptr_eq(&by_prefix(one, "/a/"), &by_prefix(two, "/a/")));
    let t1 = first.tables.fleet("default").unwrap();
    let t2 = second.tables.fleet("default").unwrap();
    assert!(Arc::ptr_eq(&t1.clusters["b"], &t2.clusters["b"]));
    // And the result is what a compile from nothing gives.
    assert_eq!(second.tables, compile(&files, None).tables);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Whatever changed, a compile that reuses the last tables gives what a compile from
    /// nothing gives, as long as no route is held at its last good weights.
    #[test]
    fn reusing_the_last_tables_changes_nothing(
        before in prop::collection::vec(arbitrary_mapping(), 1..10),
        after in prop::collection::vec(prop::option::of(arbitrary_mapping()), 1..10),
        services in prop::collection::vec(0u8..4, 10),
    ) {
        let doc = |i: usize, body: &str| {
            format!("apiVersion: ambassador/v1\nkind: Mapping\nname: m{i:02}\nservice: s{}\n{body}", services[i])
        };
        let first_files: Vec<Arc<ParsedFile>> = before.iter().enumerate()
            .map(|(i, b)| Arc::new(parse_file(&format!("f{i:02}.yaml"), doc(i, b).as_bytes())))
            .collect();
        let first = compile(&first_files, None);
        // `None` keeps a file as it was (the same parse, as the loader does); files may be
        // added or removed too.
        let files: Vec<Arc<ParsedFile>> = after.iter().enumerate().map(|(i, b)| match (b, first_files.get(i)) {
            (None, Some(f)) => Arc::clone(f),
            (b, _) => {
                let b = b.as_ref().unwrap_or(&before[0]);
                Arc::new(parse_file(&format!("f{i:02}.yaml"), doc(i, b).as_bytes()))
            }
        }).collect();
        let reused = compile(&files, Some(&first.tables));
        prop_assume!(reused.tables.fleets.values().all(|t| t.routes.iter().all(|r| r.held.is_none())));
        let fresh = compile(&files, None);
        prop_assert_eq!(&reused.tables, &fresh.tables);
        prop_assert_eq!(reused.diagnostics, fresh.diagnostics);
    }
}

/// A Mapping whose weight and timeout may move: its weight line comes last, so that moving
/// it moves nothing else. `None` for the weight leaves the line out.
fn movable() -> impl Strategy<Value = (String, Option<u32>, Option<u32>, u32, u32)> {
    (
        prop::sample::select(vec!["/a/", "/b/", "/c/"]),
        prop::option::of(prop::sample::select(vec!["foo.com", "bar.com"])),
        prop::sample::select(vec![
            "",
            "",
            "",
            "shadow: true\n",
            "ambassador_id: [blue]\n",
            "name: dup\n",
        ]),
        prop::option::of(0u32..=120),
        prop::option::of(0u32..=120),
        1000u32..1003,
        1000u32..1003,
    )
        .prop_map(|(prefix, host, extra, before, after, t1, t2)| {
            let host = host.map(|h| format!("host: {h}\n")).unwrap_or_default();
            (
                format!("prefix: {prefix}\n{host}{extra}"),
                before,
                after,
                t1,
                t2,
            )
        })
}

#[test]
fn a_weight_change_recompiles_only_its_route() {
    let doc = |name: &str, prefix: &str, w: Option<u32>| {
        let w = w.map(|w| format!("weight: {w}\n")).unwrap_or_default();
        format!(
            "---\napiVersion: ambassador/v1\nkind: Mapping\nname: {name}\nprefix: {prefix}\nservice: {name}\n{w}"
        )
    };
    let a = |w| doc("a2", "/a/", Some(w)) + &doc("a1", "/a/", None);
    let b = Arc::new(parse_file("b.yaml", doc("b", "/b/", Some(120)).as_bytes()));
    let before = vec![
        Arc::new(parse_file("a.yaml", a(10).as_bytes())),
        Arc::clone(&b),
    ];
    let first = compile(&before, None);
    let after = vec![Arc::new(parse_file("a.yaml", a(30).as_bytes())), b];
    let quick = recompile_routes(&before, &first, &after).expect("a weight-only change");
    let full = compile(&after, Some(&first.tables));
    assert_eq!(quick.tables, full.tables);
    assert_eq!(quick.diagnostics, full.diagnostics);
    let shares: Vec<Bp> = default_routes(&quick)[0]
        .backends
        .iter()
        .map(|b| b.weight_bp)
        .collect();
    assert_eq!(shares, [7000, 3000]);
    // Anything but a weight is a full compile's work.
    let moved = vec![
        Arc::new(parse_file("a.yaml", a(30).replace("/a/", "/z/").as_bytes())),
        Arc::clone(&after[1]),
    ];
    assert!(recompile_routes(&before, &first, &moved).is_none());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Whenever `recompile_routes` takes a change on, it gives what the full compile gives.
    #[test]
    fn recompiling_routes_agrees_with_the_full_compile(
        mappings in prop::collection::vec(movable(), 1..12),
        per_file in 1usize..4,
        changed in prop::collection::vec(prop::bool::ANY, 12),
    ) {
        let doc = |i: usize, body: &str, w: Option<u32>, t: u32| {
            let w = w.map(|w| format!("weight: {w}\n")).unwrap_or_default();
            let name = if body.contains("name: dup") { String::new() } else { format!("name: m{i:02}\n") };
            format!("---\napiVersion: ambassador/v1\nkind: Mapping\n{name}service: s{}\n{body}timeout_ms: {t}\n{w}", i % 3)
        };
        let files = |after: bool| -> Vec<Arc<ParsedFile>> {
            mappings.chunks(per_file).enumerate().map(|(f, chunk)| {
                let text: String = chunk.iter().enumerate().map(|(j, (body, before, later, t1, t2))| {
                    let i = f * per_file + j;
                    if after && changed[f] { doc(i, body, *later, *t2) } else { doc(i, body, *before, *t1) }
                }).collect();
                Arc::new(parse_file(&format!("f{f:02}.yaml"), text.as_bytes()))
            }).collect()
        };
        let before = files(false);
        let first = compile(&before, None);
        // Unchanged files are the very same parse, as the loader gives them.
        let after: Vec<Arc<ParsedFile>> = files(true).into_iter().zip(&before).enumerate()
            .map(|(f, (new, old))| if changed[f] { new } else { Arc::clone(old) })
            .collect();
        if let Some(quick) = recompile_routes(&before, &first, &after) {
            let full = compile(&after, Some(&first.tables));
            prop_assert_eq!(&quick.tables, &full.tables);
            prop_assert_eq!(quick.diagnostics, full.diagnostics);
        }
    }
}

#[test]
fn the_corpus_is_valid_before_mutation() {
    // Only the last entry (aliases, no Mapping) is meant to be refused.
    for doc in &CORPUS[..CORPUS.len() - 1] {
        let p = parse_file("c.yaml", doc.as_bytes());
        assert!(!p.has_errors(), "{doc}: {:?}", p.diagnostics);
        assert!(!p.mappings.is_empty(), "{doc}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn the_table_does_not_depend_on_file_order_or_names(
        bodies in prop::collection::vec(arbitrary_mapping(), 1..12),
        rotate in 0usize..12,
    ) {
        let docs: Vec<(String, String)> = bodies.iter().enumerate().map(|(i, body)| {
            (format!("f{i:02}.yaml"), format!("apiVersion: ambassador/v1\nkind: Mapping\nname: m{i:02}\nservice: s{i}\n{body}"))
        }).collect();
        let mut renamed = docs.clone();
        renamed.rotate_left(rotate % docs.len());
        // Rename files so that the path order changes too.
        let renamed: Vec<(String, String)> = renamed.into_iter().enumerate().map(|(i, (_, y))| (format!("g{i:02}.yaml"), y)).collect();
        let a = compile_files(&docs.iter().map(|(f, y)| (f.as_str(), y.clone())).collect::<Vec<_>>());
        let b = compile_files(&renamed.iter().map(|(f, y)| (f.as_str(), y.clone())).collect::<Vec<_>>());
        type View = Vec<(RouteKey, Vec<(String, Bp, String)>)>;
        let view = |c: &Compiled| -> View {
            default_routes(c).iter().map(|r| (r.key.clone(), r.backends.iter().map(|b| (b.mapping.id.name.clone(), b.weight_bp, b.cluster.clone())).collect())).collect()
        };
        prop_assert_eq!(view(&a), view(&b));
        // Renaming the Mappings (reversing the name order) moves no route either.
        let n = docs.len();
        let renamed_mappings: Vec<(String, String)> = docs.iter().enumerate().map(|(i, (f, y))| {
            (f.clone(), y.replace(&format!("name: m{i:02}\n"), &format!("name: x{:02}\n", n - i)))
        }).collect();
        let d = compile_files(&renamed_mappings.iter().map(|(f, y)| (f.as_str(), y.clone())).collect::<Vec<_>>());
        let keys = |c: &Compiled| -> Vec<RouteKey> { default_routes(c).iter().map(|r| r.key.clone()).collect() };
        prop_assert_eq!(keys(&a), keys(&d));
        for r in default_routes(&a) {
            prop_assert_eq!(r.backends.iter().map(|b| b.weight_bp).sum::<Bp>(), FULL);
        }
    }
}

/// A YAML value of any shape, written as JSON (which YAML reads): strings of any
/// characters, numbers, booleans, null, lists and mappings.
fn any_value() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        "\\PC{0,24}".prop_map(|s| serde_json::to_string(&s).unwrap()),
        prop::sample::select(vec![
            "/",
            "/qotm/",
            "^/a.*$",
            "[é]",
            "x:99999",
            "https://h",
            "::1",
            "*",
            "GET",
            "true",
            "5xx",
            "1s",
            "websocket",
            "0.29",
            "100",
            "-1",
            "1e400",
            ".nan",
        ])
        .prop_map(|s| serde_json::to_string(s).unwrap()),
        any::<i64>().prop_map(|i| i.to_string()),
        any::<f64>().prop_map(|f| format!("{f:?}")),
        Just("true".to_string()),
        Just("null".to_string()),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(|v| format!("[{}]", v.join(", "))),
            prop::collection::vec(("\\PC{0,8}", inner), 0..4).prop_map(|v| {
                let entries: Vec<String> = v
                    .into_iter()
                    .map(|(k, v)| format!("{}: {v}", serde_json::to_string(&k).unwrap()))
                    .collect();
                format!("{{{}}}", entries.join(", "))
            }),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Every field, given any value: a Mapping or diagnostics, never a panic, from parsing
    /// through the compile.
    #[test]
    fn any_value_in_any_field_is_read_or_refused(
        fields in prop::collection::btree_map(prop::sample::select(crate::input::parse::FIELDS.to_vec()), any_value(), 1..6),
        kubernetes in any::<bool>(),
    ) {
        let mut yaml = String::from("apiVersion: getambassador.io/v2\nkind: Mapping\n");
        let indent = if kubernetes {
            yaml.push_str("metadata: {name: m}\nspec:\n");
            "  "
        } else {
            yaml.push_str("name: m\n");
            ""
        };
        for (field, value) in &fields {
            yaml.push_str(&format!("{indent}{field}: {value}\n"));
        }
        let p = parse_file("f.yaml", yaml.as_bytes());
        let c = compile(std::slice::from_ref(&p), None);
        for d in &c.diagnostics {
            prop_assert!(!d.message.is_empty());
        }
    }
}
