//! Unit tests of the snapshot builder: caching, patching, the runtime variant, and versions
//! that follow content.

use envoy_types::pb::google::protobuf::Any;

use super::routes::{CachedRoute, encode_entries};
use super::runtime::{default_weights, runtime_id};
use super::*;
use crate::input::parse::parse_file;
use crate::routes::compile;
use crate::xds::RUNTIME_LAYER;

fn table(yaml: &[(&str, &str)]) -> Arc<RouteTable> {
    let files: Vec<_> = yaml
        .iter()
        .map(|(f, y)| parse_file(f, y.as_bytes()))
        .collect();
    Arc::clone(&compile(&files, None).tables.fleets["default"])
}

#[test]
fn a_runtime_variant_made_with_the_plain_one_is_the_runtime_translation() {
    let t = table(&[
        (
            "a.yaml",
            "apiVersion: ambassador/v1\nkind: Mapping\nname: a\nprefix: /a/\nservice: a\n",
        ),
        (
            "b.yaml",
            "apiVersion: ambassador/v1\nkind: Mapping\nname: b\nprefix: /a/\nservice: b\nweight: 30\n",
        ),
    ]);
    let r = &t.routes[0];
    assert!(translate::is_weighted(r));
    let (cached, variant) = CachedRoute::of(r, true);
    let (id, entries) = variant.expect("a weighted route has a runtime variant");
    // Its table weights are the default: 100% to the primary, the unweighted Mapping `a`.
    let configured = default_weights(r);
    assert_eq!(configured, [10_000, 0]);
    let (want, prefix) = runtime_id(cached.structure.expect("weighted"), &configured);
    assert_eq!(id, want);
    let runtime = translate::weighted_route_with_runtime(r, &prefix, &configured);
    assert_eq!(entries, encode_entries(&[runtime]));
    assert_ne!(entries, cached.entries);
    assert_ne!(
        id, cached.digest,
        "the two variants have different versions"
    );
    // Without asking, and for a route with one backend, there is none.
    assert!(CachedRoute::of(r, false).1.is_none());
    let single = table(&[RICH[2]]);
    assert!(CachedRoute::of(&single.routes[0], true).1.is_none());
}

const RICH: &[(&str, &str)] = &[
    (
        "a.yaml",
        "apiVersion: ambassador/v1\nkind: Mapping\nname: qotm\nprefix: /qotm/\nservice: qotm\n",
    ),
    (
        "b.yaml",
        "apiVersion: ambassador/v1\nkind: Mapping\nname: qotmv2\nprefix: /qotm/\nservice: qotmv2\nweight: 10\ntimeout_ms: 500\n",
    ),
    (
        "c.yaml",
        "apiVersion: ambassador/v1\nkind: Mapping\nname: h\nprefix: /h/\nservice: h\nhost: foo.com\n",
    ),
    (
        "d.yaml",
        "apiVersion: ambassador/v1\nkind: Mapping\nname: w\nprefix: /w/\nservice: w\nhost: \"*.foo.com\"\n",
    ),
    (
        "e.yaml",
        "apiVersion: ambassador/v1\nkind: Mapping\nname: s\nprefix: /qotm/\nservice: mirror\nshadow: true\nweight: 5\n",
    ),
    (
        "f.yaml",
        "apiVersion: ambassador/v1\nkind: Mapping\nname: hdr\nprefix: /qotm/\nservice: qotmv2\nheaders: {x-canary: \"true\"}\n",
    ),
];

fn decoded(r: &Resource) -> Vec<u8> {
    Any::decode(r.any.as_ref()).unwrap().value
}

#[test]
fn the_assembled_route_configuration_is_what_prost_would_encode() {
    let t = table(RICH);
    let snap = SnapshotBuilder::new(
        Listen {
            default: "0.0.0.0:8080".parse().unwrap(),
            fleets: BTreeMap::new(),
        },
        None,
    )
    .build("default", Arc::clone(&t));
    let r = &snap.routes.items[translate::ROUTE_CONFIG_NAME];
    assert_eq!(
        decoded(r),
        translate::route_configuration(&t).encode_to_vec()
    );
    assert_eq!(r.refs.len(), t.clusters.len());
}

#[test]
fn built_route_configurations_name_only_the_snapshots_clusters() {
    let listen = Listen {
        default: "0.0.0.0:8080".parse().unwrap(),
        fleets: BTreeMap::new(),
    };
    let snap = SnapshotBuilder::new(listen, None).build("default", table(RICH));
    assert!(snap.routes_within_clusters);
    for set in [&snap.routes, &snap.routes_runtime] {
        for r in set.items.values() {
            assert!(!r.refs.is_empty());
            assert!(r.refs.iter().all(|c| snap.clusters.items.contains_key(c)));
        }
    }
}

#[test]
fn rebuilding_reuses_and_versions_follow_content() {
    let listen = Listen {
        default: "0.0.0.0:8080".parse().unwrap(),
        fleets: BTreeMap::new(),
    };
    let mut b = SnapshotBuilder::new(listen.clone(), None);
    let first = b.build("default", table(RICH));
    b.retain();
    let again = b.build("default", table(RICH));
    b.retain();
    // Parsed again, so new Mappings: same content, same versions.
    assert_eq!(first.version, again.version);
    // A fresh builder agrees (versions come from content, not from the cache).
    let fresh = SnapshotBuilder::new(listen, None).build("default", table(RICH));
    assert_eq!(fresh.version, first.version);
    // A weight change changes the route configuration only.
    let mut changed = RICH.to_vec();
    changed[1].1 = "apiVersion: ambassador/v1\nkind: Mapping\nname: qotmv2\nprefix: /qotm/\nservice: qotmv2\nweight: 20\ntimeout_ms: 500\n";
    let moved = b.build("default", table(&changed));
    assert_eq!(moved.clusters.version, first.clusters.version);
    assert_ne!(moved.routes.version, first.routes.version);
    let r = &moved.routes.items[translate::ROUTE_CONFIG_NAME];
    assert_eq!(
        decoded(r),
        translate::route_configuration(&table(&changed)).encode_to_vec()
    );
}

/// What Envoy gets from a snapshot's route configurations and layer.
fn served(s: &Snapshot) -> Vec<(String, Vec<u8>)> {
    let name = translate::ROUTE_CONFIG_NAME;
    let layer = &s.runtime.items[RUNTIME_LAYER];
    vec![
        (s.routes.version.clone(), decoded(&s.routes.items[name])),
        (
            s.routes_runtime.version.clone(),
            decoded(&s.routes_runtime.items[name]),
        ),
        (layer.version.clone(), Vec::new()),
    ]
}

/// A layer of one route and two routes in flight: the second has its weights in the table.
/// Each step moves one canary, and the patched build serves what a fresh build of the same
/// files serves: a move within the layer, a move of the route beyond the cap (its weights in
/// the runtime variant's table), and the first route leaving, then joining, the routes that
/// differ (the second takes its place in the layer, then gives it back).
#[test]
fn routes_beyond_a_full_layer_are_patched_as_a_fresh_build_has_them() {
    use crate::routes::recompile_routes;
    let file = |route: &str, service: &str, w: Option<u32>| {
        let w = w.map(|w| format!("weight: {w}\n")).unwrap_or_default();
        let yaml = format!(
            "apiVersion: ambassador/v1\nkind: Mapping\nname: {service}\nprefix: /{route}/\nservice: {service}\n{w}"
        );
        Arc::new(parse_file(&format!("{service}.yaml"), yaml.as_bytes()))
    };
    let listen = Listen {
        default: "0.0.0.0:8080".parse().unwrap(),
        fleets: BTreeMap::new(),
    };
    let builder = || SnapshotBuilder::new(listen.clone(), None).with_max_layer_routes(1);
    let mut patching = builder();
    // The longer prefix goes first in the table.
    let mut files = vec![
        file("a-first", "a-main", None),
        file("a-first", "a-canary", Some(10)),
        file("b", "b-main", None),
        file("b", "b-canary", Some(30)),
    ];
    let mut compiled = compile(&files, None);
    for (canary, w) in [("a", 20), ("b", 45), ("a", 0), ("b", 50), ("a", 40)] {
        patching.build("default", Arc::clone(&compiled.tables.fleets["default"]));
        patching.retain();
        // Only the canary's file is new.
        let mut next = files.clone();
        next[if canary == "a" { 1 } else { 3 }] = match canary {
            "a" => file("a-first", "a-canary", Some(w)),
            _ => file("b", "b-canary", Some(w)),
        };
        compiled = recompile_routes(&files, &compiled, &next).expect("a weight change");
        files = next;
        let t = Arc::clone(&compiled.tables.fleets["default"]);
        let patched = patching.build("default", Arc::clone(&t));
        let fresh = builder().build("default", t);
        assert_eq!(served(&patched), served(&fresh), "{canary} at {w}");
        assert_eq!(patched.version, fresh.version);
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

    /// Building from the last build (weights moved) serves what building everything serves.
    #[test]
    fn a_patched_build_serves_what_a_full_build_serves(
        start in proptest::collection::vec(proptest::option::of(0u32..=100), 12),
        steps in proptest::collection::vec((0usize..12, proptest::option::of(0u32..=100), 0u8..10), 1..12),
        // Below 4, some routes that differ from their default have their weights in the table.
        cap in 0usize..=4,
    ) {
        use crate::input::parse::ParsedFile;
        use crate::routes::recompile_routes;
        // Four routes of three Mappings, one file each; weights last, so that moving one
        // moves nothing else.
        let file = |i: usize, w: Option<u32>, service: u8| {
            let w = w.map(|w| format!("weight: {w}\n")).unwrap_or_default();
            let yaml = format!(
                "apiVersion: ambassador/v1\nkind: Mapping\nname: m{i}\nprefix: /r{}/\nservice: s{i}x{service}\n{w}",
                i % 4
            );
            Arc::new(parse_file(&format!("f{i:02}.yaml"), yaml.as_bytes()))
        };
        let mut weights = start.clone();
        let mut files: Vec<Arc<ParsedFile>> = (0..12).map(|i| file(i, weights[i], 0)).collect();
        let mut compiled = compile(&files, None);
        let listen = Listen { default: "0.0.0.0:8080".parse().unwrap(), fleets: BTreeMap::new() };
        let builder = || SnapshotBuilder::new(listen.clone(), None).with_max_layer_routes(cap);
        let mut patching = builder();
        let mut full = builder();
        for (i, w, other) in steps {
            let t = Arc::clone(&compiled.tables.fleets["default"]);
            let a = patching.build("default", Arc::clone(&t));
            full.built.clear();
            let b = full.build("default", Arc::clone(&t));
            patching.retain();
            full.retain();
            proptest::prop_assert_eq!(served(&a), served(&b));
            proptest::prop_assert_eq!(&a.version, &b.version);
            // And a process that never saw the history serves the very same bytes: what is
            // served is a function of the files alone.
            let fresh = builder().build("default", t);
            proptest::prop_assert_eq!(served(&a), served(&fresh));
            proptest::prop_assert_eq!(&a.version, &fresh.version);
            // Mostly a weight; now and then an upstream (not a patch).
            weights[i] = w;
            let mut next = files.clone();
            next[i] = file(i, w, u8::from(other == 0));
            compiled = recompile_routes(&files, &compiled, &next)
                .unwrap_or_else(|| compile(&next, Some(&compiled.tables)));
            files = next;
        }
    }
}

/// A table measured again after a change that keeps its routes' keys (a weight, a timeout)
/// measures what a fresh builder measures, and a change of keys (a new host) too.
#[test]
fn a_table_measured_again_from_its_changed_routes_measures_what_a_fresh_builder_does() {
    let hosted = "apiVersion: ambassador/v1\nkind: Mapping\nname: h\nprefix: /h/\nservice: h\nhost: a.example.com\n";
    let files = |canary_weight: u32, timeout: u32| {
        vec![
            ("a.yaml", crate::test_util::MAIN.to_string()),
            (
                "b.yaml",
                crate::test_util::CANARY.replace(
                    "weight: 10",
                    &format!("weight: {canary_weight}\ntimeout_ms: {timeout}"),
                ),
            ),
            ("h.yaml", hosted.to_string()),
        ]
    };
    let mut builder = crate::test_util::builder();
    for (w, t) in [(10, 3000), (25, 3000), (25, 4000), (99, 100_000)] {
        let docs = files(w, t);
        let refs: Vec<(&str, &str)> = docs.iter().map(|(f, y)| (*f, y.as_str())).collect();
        let table = Arc::clone(&crate::test_util::tables(&refs).fleets["default"]);
        let again = builder.measure("default", &table);
        let fresh = crate::test_util::builder().measure("default", &table);
        assert_eq!(again, fresh, "weight {w}, timeout {t}");
        // Two virtual hosts (a.example.com and *) each repeat the /qotm/ route (one route, or a
        // chain of two links when the timeouts differ), and a.example.com has /h/.
        let links = if t == 3000 { 1 } else { 2 };
        assert_eq!((fresh.virtual_hosts, fresh.entries), (2, 2 * links + 1));
        builder.retain();
    }
}

/// More canaries in flight than the layer holds: the first `DEFAULT_MAX_LAYER_ROUTES` in table order
/// are in the layer, the others have their weights in the route table, and a builder that saw
/// another history serves the same.
#[test]
fn beyond_the_layer_s_capacity_weights_are_in_the_route_table_by_a_rule_of_the_files() {
    let n = DEFAULT_MAX_LAYER_ROUTES + 4;
    let files = |canary: u32| -> Vec<(String, String)> {
        (0..n)
            .flat_map(|i| {
                [
                    (
                        format!("m{i:03}.yaml"),
                        format!("apiVersion: ambassador/v1\nkind: Mapping\nname: m{i:03}\nprefix: /r{i:03}/\nservice: m{i:03}\n"),
                    ),
                    (
                        format!("c{i:03}.yaml"),
                        format!("apiVersion: ambassador/v1\nkind: Mapping\nname: c{i:03}\nprefix: /r{i:03}/\nservice: c{i:03}\nweight: {canary}\n"),
                    ),
                ]
            })
            .collect()
    };
    let table_of = |canary: u32| {
        let docs = files(canary);
        let refs: Vec<(&str, &str)> = docs.iter().map(|(f, y)| (f.as_str(), y.as_str())).collect();
        Arc::clone(&crate::test_util::tables(&refs).fleets["default"])
    };
    let mut seasoned = crate::test_util::builder();
    for w in [0, 5, 10, 0] {
        seasoned.build("default", table_of(w));
        seasoned.retain();
    }
    let a = seasoned.build("default", table_of(25));
    let b = crate::test_util::builder().build("default", table_of(25));
    assert_eq!(served(&a), served(&b));
    let layer = b.runtime.items[RUNTIME_LAYER].layer.as_deref().unwrap();
    // Two keys per route in the layer, one per backend.
    assert_eq!(layer.len(), 2 * DEFAULT_MAX_LAYER_ROUTES);
    // At 0% every canary is at its default: nothing in the layer, and the route table
    // (weights 100/0 everywhere) is the one that holds 25% nowhere.
    let zero = crate::test_util::builder().build("default", table_of(0));
    assert!(
        zero.runtime.items[RUNTIME_LAYER]
            .layer
            .as_deref()
            .unwrap()
            .is_empty()
    );
    assert_ne!(zero.routes_runtime.version, b.routes_runtime.version);
}
