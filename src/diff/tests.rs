//! Unit tests of the diff: sides built from Mapping text in memory, compared and rendered.

use std::collections::BTreeSet;

use proptest::prelude::*;

use super::*;
use crate::input::parse::{ParsedFile, parse_file};
use crate::routes::{compile, render as check_render};
use crate::test_util::{CANARY, MAIN, arbitrary_mapping};

fn side(files: &[(&str, &str)]) -> DiffSide {
    let parsed: Vec<ParsedFile> = files
        .iter()
        .map(|(rel, text)| parse_file(rel, text.as_bytes()))
        .collect();
    let compiled = compile(&parsed, None);
    DiffSide::from_tables(&compiled.tables, compiled.diagnostics)
}

fn doc(name: &str, body: &str) -> String {
    format!("apiVersion: ambassador/v1\nkind: Mapping\nname: {name}\nservice: {name}\n{body}")
}

fn default_diff(base: &[(&str, &str)], new: &[(&str, &str)]) -> DiffReport {
    diff_sides(&side(base), &side(new), FleetScope::One("default"))
}

fn kinds(r: &DiffReport) -> Vec<RiskKind> {
    r.risks.iter().map(|n| n.risk).collect()
}

#[test]
fn the_same_files_make_no_difference() {
    let files = [("a.yaml", MAIN), ("b.yaml", CANARY)];
    let r = default_diff(&files, &files);
    assert!(r.is_empty(), "{r:#?}");
    assert!(r.risks.is_empty());
    assert!(render::table(&r).contains("no difference"));
}

#[test]
fn a_weight_change_shows_every_share_before_and_after() {
    let new = CANARY.replace("weight: 10", "weight: 25");
    let r = default_diff(
        &[("a.yaml", MAIN), ("b.yaml", CANARY)],
        &[("a.yaml", MAIN), ("b.yaml", &new)],
    );
    let route = &r.fleets[0].routes[0];
    assert_eq!(route.change, RouteChange::Changed);
    let shares: Vec<_> = route
        .backends
        .iter()
        .map(|b| (b.mapping.as_str(), b.before_bp, b.after_bp, b.delta_bp()))
        .collect();
    assert_eq!(
        shares,
        [
            ("qotm", Some(9000), Some(7500), -1500),
            ("qotmv2", Some(1000), Some(2500), 1500)
        ]
    );
    assert!(render::table(&r).contains("qotmv2  10.00% -> 25.00%  (+15.00)"));
    assert_eq!(render::points(-50), "-0.50");
}

#[test]
fn a_route_removed_says_where_its_requests_go() {
    let api = doc("api", "prefix: /qotm/api/\n");
    let r = default_diff(&[("a.yaml", MAIN), ("b.yaml", &api)], &[("a.yaml", MAIN)]);
    assert_eq!(kinds(&r), [RiskKind::RouteLosesEveryBackend]);
    assert!(
        r.risks[0].message.contains("less specific route /qotm/"),
        "{:?}",
        r.risks
    );
    let removed = &r.fleets[0].routes[0];
    assert_eq!(removed.change, RouteChange::Removed);
    assert_eq!(removed.stopped_shadowing, ["/qotm/"]);
    assert_eq!(r.fleets[0].routes[1].no_longer_shadowed_by, ["/qotm/api/"]);
    // Alone, a removed route's requests get a 404.
    let r = default_diff(&[("b.yaml", &api)], &[]);
    assert!(r.risks[0].message.contains("404"), "{:?}", r.risks);
}

#[test]
fn a_canary_at_100_beside_a_primary_at_0_is_a_risk() {
    let full = CANARY.replace("weight: 10", "weight: 100");
    let r = default_diff(
        &[("a.yaml", MAIN), ("b.yaml", CANARY)],
        &[("a.yaml", MAIN), ("b.yaml", &full)],
    );
    assert_eq!(
        kinds(&r),
        [
            RiskKind::ShareMovesOver50Points,
            RiskKind::ShareMovesOver50Points,
            RiskKind::CanaryFullPrimaryZero
        ]
    );
}

#[test]
fn a_service_no_route_used_before_is_a_risk_once() {
    let v3 = doc("qotmv3", "prefix: /qotm/\nweight: 5\n");
    let v3b = doc("qotmv3b", "prefix: /b/\nservice: qotmv3\n").replace("service: qotmv3b\n", "");
    let r = default_diff(
        &[("a.yaml", MAIN)],
        &[("a.yaml", MAIN), ("c.yaml", &v3), ("d.yaml", &v3b)],
    );
    assert_eq!(kinds(&r), [RiskKind::NewService], "{:?}", r.risks);
    assert_eq!(r.fleets[0].clusters_added.len(), 2);
}

#[test]
fn a_shadow_change_and_a_setting_change_are_shown() {
    let shadow = |pct: u32| {
        doc(
            "mirror",
            &format!("prefix: /qotm/\nshadow: true\nweight: {pct}\n"),
        )
    };
    let main2 = MAIN.to_string() + "add_request_headers:\n  x-env: prod\n";
    let r = default_diff(
        &[("a.yaml", MAIN), ("s.yaml", &shadow(10))],
        &[("a.yaml", &main2), ("s.yaml", &shadow(20))],
    );
    let route = &r.fleets[0].routes[0];
    let s = route.shadow.as_ref().unwrap();
    assert_eq!(
        (
            s.before.as_ref().unwrap().percent_bp,
            s.after.as_ref().unwrap().percent_bp
        ),
        (1000, 2000)
    );
    let fields: Vec<&str> = route.settings.iter().map(|s| s.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "backend.add_request_headers.x-env.append",
            "backend.add_request_headers.x-env.value"
        ]
    );
}

#[test]
fn diagnostics_are_new_or_fixed_whatever_their_line() {
    let bad = CANARY.replace("weight: 10", "weight: 150");
    let r = default_diff(
        &[("a.yaml", MAIN), ("b.yaml", &bad)],
        &[("a.yaml", MAIN), ("b.yaml", CANARY)],
    );
    assert!(r.new_diagnostics.is_empty());
    assert!(!r.fixed_diagnostics.is_empty());
    // The same diagnostic, moved down a line by a comment, is neither.
    let moved = format!("# a comment\n{bad}");
    let r = default_diff(&[("b.yaml", &bad)], &[("b.yaml", &moved)]);
    assert!(
        r.new_diagnostics.is_empty() && r.fixed_diagnostics.is_empty(),
        "{r:#?}"
    );
}

#[test]
fn a_server_base_holds_the_routes_of_broken_files() {
    let base = side(&[("a.yaml", MAIN), ("b.yaml", CANARY)]);
    let mut new = side(&[("a.yaml", MAIN)]);
    new.hold_files(&base, &BTreeSet::from(["b.yaml".to_string()]), "held");
    let r = diff_sides(&base, &new, FleetScope::All);
    assert!(r.fleets.iter().all(FleetDiff::is_empty), "{r:#?}");
    assert_eq!(kinds(&r), [RiskKind::HeldBack]);
}

#[test]
fn a_side_without_settings_compares_shares_only() {
    let json = check_render::json(
        &compile(&[parse_file("a.yaml", MAIN.as_bytes())], None).tables,
        None,
        &[],
    );
    let mut doc: serde_json::Value = serde_json::from_str(&json).unwrap();
    doc["fleets"]["default"]["routes"][0]["backends"][0]
        .as_object_mut()
        .unwrap()
        .remove("settings");
    let old = DiffSide::from_routes_json(&doc.to_string()).unwrap();
    let slower = MAIN.to_string() + "timeout_ms: 9000\n";
    let r = diff_sides(&old, &side(&[("a.yaml", &slower)]), FleetScope::All);
    assert!(r.is_empty(), "{r:#?}");
    assert!(!r.settings_compared);
    assert!(DiffSide::from_routes_json("{}").is_err());
    assert!(DiffSide::from_routes_json("[").is_err());
}

#[test]
fn a_long_fleet_heading_is_wrapped_to_80_columns() {
    // A route removed, one changed, one added, and clusters added and removed: the heading
    // alone is 84 columns.
    let r = default_diff(
        &[
            ("a.yaml", &doc("a", "prefix: /a/\n")),
            ("r.yaml", &doc("root", "prefix: /\n")),
        ],
        &[
            ("r.yaml", &doc("root", "prefix: /\ntimeout_ms: 5000\n")),
            ("b.yaml", &doc("b", "prefix: /b/\n")),
        ],
    );
    let table = render::table(&r);
    assert!(table.contains("1 cluster removed"), "{table}");
    for line in table.lines() {
        assert!(
            line.chars().count() <= 80,
            "over 80 columns: {line}\n{table}"
        );
    }
}

#[test]
fn markdown_has_a_collapsible_section_per_fleet() {
    let new = CANARY.replace("weight: 10", "weight: 25");
    let mut r = default_diff(
        &[("a.yaml", MAIN), ("b.yaml", CANARY)],
        &[("a.yaml", MAIN), ("b.yaml", &new)],
    );
    r.base = "base/".into();
    r.new = "a`b".into();
    let md = markdown(&r);
    assert_eq!(md.matches("<details>").count(), 1);
    assert!(md.contains("`` a`b ``"), "{md}");
}

/// Generated directories: the Mappings of `arbitrary_mapping`, some sharing a service.
fn files_of(bodies: &[String]) -> Vec<(String, String)> {
    bodies
        .iter()
        .enumerate()
        .map(|(i, b)| {
            (
                format!("f{i:02}.yaml"),
                format!(
                    "apiVersion: ambassador/v1\nkind: Mapping\nname: m{i:02}\nservice: s{}\n{b}",
                    i % 3
                ),
            )
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// `diff X X` is empty, and a side read back from its `/api/routes` JSON is the side.
    #[test]
    fn a_directory_against_itself_is_no_difference(
        bodies in prop::collection::vec(arbitrary_mapping(), 0..12),
    ) {
        let files = files_of(&bodies);
        let refs: Vec<(&str, &str)> = files.iter().map(|(f, t)| (f.as_str(), t.as_str())).collect();
        let x = side(&refs);
        let r = diff_sides(&x, &side(&refs), FleetScope::All);
        prop_assert!(r.is_empty(), "{:#?}", r);
        prop_assert!(r.risks.is_empty(), "{:#?}", r.risks);

        let parsed: Vec<ParsedFile> = refs.iter().map(|(f, t)| parse_file(f, t.as_bytes())).collect();
        let compiled = compile(&parsed, None);
        let json = check_render::json(&compiled.tables, None, &compiled.diagnostics);
        let read = DiffSide::from_routes_json(&json).unwrap();
        prop_assert_eq!(read, x);
    }
}
