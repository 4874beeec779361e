//! `canary-xds check` end to end: the real binary on the fixture directories, its JSON compared
//! with golden files, its exit codes, and its table at 80 columns.
//!
//! Golden files live in `tests/golden/check/<case>.json`. After a deliberate change of output,
//! regenerate them with `UPDATE_GOLDEN=1 cargo test --test check_cli` and review the diff like
//! code.

mod common;

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Output;

use common::{assert_golden, golden_path, repo_root};
use serde_json::Value;

fn fixture(case: &str) -> PathBuf {
    repo_root().join("tests/fixtures").join(case)
}

/// Runs the binary with `args`, with none of the `CANARY_XDS*` variables (among them those
/// `check` reads), so that the developer's environment never changes a result.
fn run(args: &[&str]) -> Output {
    common::canary_xds()
        .args(args)
        .output()
        .expect("the binary runs")
}

fn check(dir: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["check", dir.to_str().unwrap()];
    args.extend_from_slice(extra);
    run(&args)
}

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).expect("UTF-8 output")
}

/// Runs `check --format json` on a fixture, checks the exit code and the golden file
/// (`tests/golden/check/<case>.json`), and returns the parsed document for further assertions.
fn json_case(case: &str, dir: &Path, extra: &[&str], code: i32) -> Value {
    let mut args = vec!["--format", "json"];
    args.extend_from_slice(extra);
    let out = check(dir, &args);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(code), "{case}: {text}");
    assert_golden(golden_path(&format!("check/{case}.json")), &text);
    let doc: Value = serde_json::from_str(&text).expect("valid JSON");
    assert_eq!(doc["format"], 1);
    doc
}

/// Each route as `prefix: mapping share, mapping share` with shares in hundredths.
fn splits(routes: &Value) -> Vec<String> {
    routes
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let backends: Vec<String> = r["backends"]
                .as_array()
                .unwrap()
                .iter()
                .map(|b| format!("{} {}", b["mapping"].as_str().unwrap(), b["weight_bp"]))
                .collect();
            format!("{}: {}", r["prefix"].as_str().unwrap(), backends.join(", "))
        })
        .collect()
}

/// The diagnostics as `severity file:line mapping field`, for compact assertions.
fn diagnostics(doc: &Value) -> Vec<String> {
    doc["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            format!(
                "{} {}:{} {} {}",
                d["severity"].as_str().unwrap(),
                d["file"].as_str().unwrap(),
                d["line"],
                d["mapping"].as_str().unwrap_or("-"),
                d["field"].as_str().unwrap_or("-"),
            )
        })
        .collect()
}

fn every_route_sums_to_10000(routes: &Value) {
    for r in routes.as_array().unwrap() {
        let sum: u64 = r["backends"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["weight_bp"].as_u64().unwrap())
            .sum();
        assert_eq!(sum, 10_000, "{r}");
    }
}

#[test]
fn seed_is_the_docs_90_10() {
    let doc = json_case("seed", &fixture("seed"), &[], 0);
    assert_eq!(doc["fleet"], "default");
    assert_eq!(splits(&doc["routes"]), ["/qotm/: qotm 9000, qotmv2 1000"]);
    let b = &doc["routes"][0]["backends"];
    assert_eq!(
        (b[0]["weight"].as_f64(), b[1]["weight"].as_f64()),
        (Some(90.0), Some(10.0))
    );
    assert_eq!(doc["routes"][0]["host"], "*");
    assert_eq!(doc["routes"][0]["shadow"], Value::Null);
    assert!(diagnostics(&doc).is_empty());
}

#[test]
fn the_shipped_examples_show_90_10_and_the_header_canary() {
    let out = check(
        &repo_root().join("examples/mappings"),
        &["--format", "json"],
    );
    assert_eq!(out.status.code(), Some(0));
    let doc: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(
        splits(&doc["routes"]),
        [
            "/qotm/: qotm-header-canary 10000",
            "/qotm/: qotm 9000, qotmv2 1000"
        ]
    );
    assert_eq!(doc["routes"][0]["headers"]["x-canary"], "true");
    assert_eq!(doc["routes"][0]["backends"][0]["service"], "qotmv2");
    let table = stdout(&check(&repo_root().join("examples/mappings"), &[]));
    assert!(
        table.contains("90.00%") && table.contains("10.00%"),
        "{table}"
    );
}

#[test]
fn header_canary() {
    let doc = json_case("header-canary", &fixture("header-canary"), &[], 0);
    // The route with a header matcher goes first: it is the more specific.
    assert_eq!(
        splits(&doc["routes"]),
        ["/qotm/: qotm-header-canary 10000", "/qotm/: qotm 10000"]
    );
}

#[test]
fn kubernetes_form_and_namespaces() {
    let doc = json_case(
        "kubernetes-namespaces",
        &fixture("kubernetes-namespaces"),
        &[],
        0,
    );
    // One route across three namespaces, backends in (namespace, name) order.
    assert_eq!(
        splits(&doc["routes"]),
        ["/qotm/: qotm 2500, qotm 7000, qotm 500"]
    );
    let namespaces: Vec<&str> = doc["routes"][0]["backends"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["namespace"].as_str().unwrap())
        .collect();
    assert_eq!(namespaces, ["canary", "prod", "staging"]);
}

#[test]
fn multi_document_files_keep_document_order() {
    let doc = json_case("multi-document", &fixture("multi-document"), &[], 0);
    every_route_sums_to_10000(&doc["routes"]);
    // m2 and m10 take 10% each; the ten others split 80%.
    let api = &doc["routes"][0]["backends"];
    let line_of = |name: &str| {
        api.as_array()
            .unwrap()
            .iter()
            .find(|b| b["mapping"] == name)
            .unwrap()["line"]
            .as_u64()
            .unwrap()
    };
    assert!(line_of("m10") > line_of("m2"));
    assert_eq!(
        splits(&doc["routes"])[0],
        "/api/: m0 800, m1 800, m10 1000, m11 800, m2 1000, m3 800, m4 800, m5 800, m6 800, \
         m7 800, m8 800, m9 800"
    );
}

#[test]
fn a_configmap_mount_is_read_once_per_file() {
    // A ConfigMap volume: the files live in a hidden timestamped directory, `..data` points to
    // it, and the visible names are symlinks through `..data`.
    let mount = tempfile::tempdir().unwrap();
    let stamp = "..2024_05_01_12_00_00.123456789";
    fs::create_dir(mount.path().join(stamp)).unwrap();
    for entry in fs::read_dir(fixture("configmap")).unwrap() {
        let name = entry.unwrap().file_name();
        fs::copy(
            fixture("configmap").join(&name),
            mount.path().join(stamp).join(&name),
        )
        .unwrap();
        symlink(Path::new("..data").join(&name), mount.path().join(&name)).unwrap();
    }
    symlink(stamp, mount.path().join("..data")).unwrap();
    let doc = json_case("configmap", mount.path(), &[], 0);
    assert_eq!(splits(&doc["routes"]), ["/qotm/: qotm 9000, qotmv2 1000"]);
    let files: Vec<&str> = doc["routes"][0]["backends"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["file"].as_str().unwrap())
        .collect();
    assert_eq!(files, ["qotm.yaml", "qotmv2.yaml"]);
}

#[test]
fn decimal_weights() {
    let doc = json_case("decimal-weights", &fixture("decimal-weights"), &[], 1);
    assert_eq!(
        splits(&doc["routes"]),
        [
            "/thirds/: a 3333, b 3333, c 3334",
            "/qotm/: qotm 9536, qotm-small 435, qotm-tiny 29"
        ]
    );
    assert_eq!(
        doc["routes"][1]["backends"][2]["weight"].as_f64(),
        Some(0.29)
    );
    assert_eq!(
        diagnostics(&doc),
        ["error qotm.yaml:49 qotm-too-precise weight"]
    );
    let message = doc["diagnostics"][0]["message"].as_str().unwrap();
    assert!(message.contains("more than two decimals"), "{message}");
}

#[test]
fn over_100_is_an_error_and_the_route_is_left_out() {
    let doc = json_case("over-100", &fixture("over-100"), &[], 1);
    assert_eq!(splits(&doc["routes"]), ["/other/: other 10000"]);
    let d = &doc["diagnostics"][0];
    let message = d["message"].as_str().unwrap();
    assert_eq!(d["severity"], "error");
    assert!(message.contains("110%"), "{message}");
    assert!(message.contains("blue (60%, a.yaml:1:1)"), "{message}");
    assert!(message.contains("green (50%, b.yaml:1:1)"), "{message}");
}

#[test]
fn exactly_100_warns() {
    let doc = json_case("exactly-100", &fixture("exactly-100"), &[], 0);
    assert_eq!(splits(&doc["routes"]), ["/qotm/: qotm 0, qotmv2 10000"]);
    assert_eq!(diagnostics(&doc), ["warning qotm.yaml:2 qotm weight"]);
}

#[test]
fn scaled_up_warns() {
    let doc = json_case("scaled-up", &fixture("scaled-up"), &[], 0);
    assert_eq!(
        splits(&doc["routes"]),
        ["/xyz/: x 3334, y 3333, z 3333", "/ab/: a 4000, b 6000"]
    );
    assert_eq!(doc["diagnostics"].as_array().unwrap().len(), 2);
}

#[test]
fn shadow() {
    let doc = json_case("shadow", &fixture("shadow"), &[], 1);
    assert_eq!(splits(&doc["routes"]), ["/qotm/: qotm 10000"]);
    let s = &doc["routes"][0]["shadow"];
    assert_eq!(
        (s["mapping"].as_str(), s["percent"].as_f64()),
        (Some("qotm-mirror"), Some(25.0))
    );
    assert_eq!(s["service"], "qotm-shadow");
    assert_eq!(
        diagnostics(&doc),
        [
            "warning mappings.yaml:15 qotm-mirror rewrite",
            "error mappings.yaml:18 qotm-mirror-2 shadow",
            "error mappings.yaml:31 lonely-mirror shadow",
        ]
    );
}

#[test]
fn duplicates() {
    let doc = json_case("duplicates", &fixture("duplicates"), &[], 1);
    assert_eq!(splits(&doc["routes"]), ["/qotm/: qotm 1000, qotm 9000"]);
    assert_eq!(diagnostics(&doc), ["error b.yaml:2 qotm name"]);
    let message = doc["diagnostics"][0]["message"].as_str().unwrap();
    assert!(message.contains("a.yaml:1:1"), "{message}");
}

#[test]
fn unsupported_fields_warn_and_are_ignored() {
    let doc = json_case("unsupported-fields", &fixture("unsupported-fields"), &[], 0);
    assert_eq!(splits(&doc["routes"]), ["/qotm/: qotm 9000, qotmv2 1000"]);
    let messages: Vec<&str> = doc["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["message"].as_str().unwrap())
        .collect();
    for field in [
        "cors",
        "circuit_breakers",
        "metadata.color",
        "load_balancer",
        "prefix",
    ] {
        assert!(
            messages
                .iter()
                .any(|m| m.starts_with(&format!("unsupported field {field}, ignored"))),
            "{field}: {messages:?}"
        );
    }
    assert!(
        doc["diagnostics"]
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["severity"] == "warning")
    );
}

#[test]
fn bad_yaml_leaves_out_its_file_only() {
    let doc = json_case("bad-yaml", &fixture("bad-yaml"), &[], 1);
    assert_eq!(splits(&doc["routes"]), ["/good/: good 10000"]);
    assert_eq!(
        diagnostics(&doc),
        [
            "error duplicate-key.yaml:5 - -",
            "error list.yaml:1 - -",
            "error not-utf8.yaml:4 - -",
            "error syntax.yaml:5 - -",
        ]
    );
}

#[test]
fn other_kinds_are_skipped_with_info() {
    let doc = json_case("other-kinds", &fixture("other-kinds"), &[], 0);
    assert_eq!(splits(&doc["routes"]), ["/qotm/: qotm 10000"]);
    let severities: Vec<&str> = doc["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["severity"].as_str().unwrap())
        .collect();
    assert_eq!(severities, ["info", "info", "info"]);
}

#[test]
fn bad_values_are_errors_and_their_traffic_goes_back() {
    let doc = json_case("bad-values", &fixture("bad-values"), &[], 1);
    assert_eq!(splits(&doc["routes"]), ["/qotm/: qotm 10000"]);
    let errors = doc["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["severity"] == "error")
        .count();
    assert_eq!(errors, 7, "{}", doc["diagnostics"]);
}

#[test]
fn a_lone_mapping_with_weight_0_still_gets_everything() {
    let doc = json_case("lone-weight-zero", &fixture("lone-weight-zero"), &[], 0);
    assert_eq!(splits(&doc["routes"]), ["/qotm/: qotm 10000"]);
    assert_eq!(diagnostics(&doc), ["warning qotm.yaml:7 qotm weight"]);
}

#[test]
fn two_fleets() {
    let doc = json_case("two-fleets", &fixture("two-fleets"), &["--all-fleets"], 0);
    assert_eq!(doc["fleet"], Value::Null);
    assert!(doc.get("routes").is_none());
    assert_eq!(
        splits(&doc["fleets"]["default"]["routes"]),
        ["/health/: health 10000", "/qotm/: qotm 9000, qotmv2 1000"]
    );
    assert_eq!(
        splits(&doc["fleets"]["edge"]["routes"]),
        [
            "/health/: health 10000",
            "/qotm/: qotm-edge 5000, qotmv2-edge 5000"
        ]
    );
    // One fleet at a time: the default, or the one named.
    let out = check(&fixture("two-fleets"), &["--format", "json"]);
    let default: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(default["routes"], doc["fleets"]["default"]["routes"]);
    let out = check(
        &fixture("two-fleets"),
        &["--format", "json", "--fleet", "edge"],
    );
    let edge: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(edge["fleet"], "edge");
    assert_eq!(edge["routes"], doc["fleets"]["edge"]["routes"]);
}

#[test]
fn an_unknown_fleet_is_a_warning() {
    let out = check(
        &fixture("two-fleets"),
        &["--format", "json", "--fleet", "egde"],
    );
    assert_eq!(out.status.code(), Some(0));
    let doc: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(doc["routes"], Value::Array(vec![]));
    let message = doc["diagnostics"][0]["message"].as_str().unwrap();
    assert!(
        message.contains("the fleets are: default, edge"),
        "{message}"
    );
}

#[test]
fn exit_0_without_errors_1_with_errors() {
    assert_eq!(check(&fixture("seed"), &[]).status.code(), Some(0));
    // Warnings and infos alone still exit 0.
    assert_eq!(check(&fixture("exactly-100"), &[]).status.code(), Some(0));
    assert_eq!(check(&fixture("other-kinds"), &[]).status.code(), Some(0));
    assert_eq!(check(&fixture("over-100"), &[]).status.code(), Some(1));
    assert_eq!(check(&fixture("bad-yaml"), &[]).status.code(), Some(1));
}

#[test]
fn a_missing_directory_exits_1_with_an_error_diagnostic() {
    let t = tempfile::tempdir().unwrap();
    let missing = t.path().join("nope");
    let out = check(&missing, &["--format", "json"]);
    assert_eq!(out.status.code(), Some(1));
    let doc: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(doc["routes"], Value::Array(vec![]));
    let d = &doc["diagnostics"][0];
    assert_eq!(
        (d["severity"].as_str(), d["file"].as_str()),
        (Some("error"), Some("."))
    );
    assert!(d["message"].as_str().unwrap().contains("does not exist"));
    // A path that is a file, and one that cannot be opened (a symlink loop: root is not denied
    // by permissions), are errors too.
    assert_eq!(
        check(&fixture("seed/qotm.yaml"), &[]).status.code(),
        Some(1)
    );
    symlink("loop", t.path().join("loop")).unwrap();
    let out = check(&t.path().join("loop"), &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("cannot read the directory"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn a_file_over_the_size_limit_is_an_error() {
    let t = tempfile::tempdir().unwrap();
    fs::copy(fixture("seed/qotm.yaml"), t.path().join("qotm.yaml")).unwrap();
    let out = check(t.path(), &["--max-file-size", "50", "--format", "json"]);
    assert_eq!(out.status.code(), Some(1));
    let doc: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let message = doc["diagnostics"][0]["message"].as_str().unwrap();
    assert!(message.contains("over the limit of 50 bytes"), "{message}");
    assert_eq!(check(t.path(), &[]).status.code(), Some(0));
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        &["check"][..],
        &["check", "examples/mappings", "--bogus"],
        &["check", "examples/mappings", "--format", "xml"],
        &["check", "examples/mappings", "--fleet", "a", "--all-fleets"],
        &["frobnicate"],
        &[],
    ] {
        let out = run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(!out.stderr.is_empty(), "{args:?}");
    }
}

#[test]
fn the_table_fits_80_columns_for_ordinary_names() {
    for case in [
        "seed",
        "header-canary",
        "kubernetes-namespaces",
        "decimal-weights",
        "over-100",
        "shadow",
        "duplicates",
        "bad-values",
        "two-fleets",
    ] {
        let out = check(&fixture(case), &["--all-fleets"]);
        let text = stdout(&out);
        for line in text.lines() {
            assert!(
                line.chars().count() <= 80,
                "{case}: {} columns:\n{line}",
                line.chars().count()
            );
        }
    }
}

#[test]
fn the_table_shows_routes_backends_and_diagnostics() {
    let text = stdout(&check(&fixture("shadow"), &[]));
    let expected_start = "\
fleet default: 1 route, 2 Mappings

1. /qotm/  host *  method *
   MAPPING      SERVICE          WEIGHT  CLUSTER      SOURCE
   qotm         qotm            100.00%  qotm         mappings.yaml:1
   qotm-mirror  qotm-shadow  mirror 25%  qotm-shadow  mappings.yaml:8

2 errors, 1 warning, 0 info
";
    assert!(text.starts_with(expected_start), "{text}");
}

#[test]
fn the_readme_shows_the_real_output_of_the_examples() {
    let readme = fs::read_to_string(repo_root().join("README.md")).unwrap();
    let start = "$ cargo run -q -- check examples/mappings\n";
    let at = readme
        .find(start)
        .expect("the README shows check on the examples")
        + start.len();
    let shown = &readme[at..at + readme[at..].find("```").unwrap()];
    let actual = stdout(&check(Path::new("examples/mappings"), &[]));
    assert_eq!(shown, actual, "update the example in README.md");
}
