//! `canary-xds diff` end to end: the real binary on the fixture pairs of
//! `tests/fixtures/diff/<case>/{base,new}`, its table, JSON and markdown compared with golden
//! files, its exit codes, and BASE read from a running `serve`'s admin URL.
//!
//! Golden files live in `tests/golden/diff/`. After a deliberate change of output, regenerate
//! them with `UPDATE_GOLDEN=1 cargo test --test diff_cli` and review the diff like code.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::{ControlPlane, WorkDir, assert_golden, free_port, golden_path, repo_root};
use serde_json::Value;

/// The directory of the fixture pairs: the binary runs there, so that the paths it prints
/// (`docs-example/base`) are the same on every machine.
fn fixtures() -> PathBuf {
    repo_root().join("tests/fixtures/diff")
}

/// Runs the binary in `fixtures()` with `args`, with none of the developer's settings.
fn run(args: &[&str]) -> Output {
    common::canary_xds()
        .current_dir(fixtures())
        .args(args)
        .output()
        .expect("the binary runs")
}

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).expect("UTF-8 output")
}

/// `diff <case>/base <case>/new` in `format`, checked against `tests/golden/diff/<case>.<ext>`
/// and for its exit code.
fn golden(case: &str, format: &str, extra: &[&str], code: i32) -> String {
    let (base, new) = (format!("{case}/base"), format!("{case}/new"));
    let mut args = vec!["diff", &base, &new, "--format", format];
    args.extend_from_slice(extra);
    let out = run(&args);
    let text = stdout(&out);
    assert_eq!(
        out.status.code(),
        Some(code),
        "{case} {format}: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ext = match format {
        "table" => "txt",
        "markdown" => "md",
        other => other,
    };
    assert_golden(golden_path(&format!("diff/{case}.{ext}")), &text);
    if format == "table" {
        for line in text.lines() {
            assert!(
                line.chars().count() <= 80,
                "{case}: over 80 columns: {line}"
            );
        }
    }
    text
}

fn json(case: &str, extra: &[&str], code: i32) -> Value {
    let doc: Value = serde_json::from_str(&golden(case, "json", extra, code)).expect("JSON");
    assert_eq!(doc["format"], 1);
    doc
}

fn risks(doc: &Value) -> Vec<&str> {
    doc["risks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["risk"].as_str().unwrap())
        .collect()
}

#[test]
fn the_docs_example_moves_the_canary_from_10_to_25() {
    let text = golden("docs-example", "table", &[], 0);
    assert!(
        text.contains("qotmv2  10.00% -> 25.00%  (+15.00)"),
        "{text}"
    );
    golden("docs-example", "markdown", &[], 0);
    let doc = json("docs-example", &[], 0);
    let b = &doc["fleets"][0]["routes"][0]["backends"][1];
    assert_eq!(
        (b["before_bp"].as_u64(), b["after_bp"].as_u64()),
        (Some(1000), Some(2500))
    );
    assert!(risks(&doc).is_empty());
}

#[test]
fn a_new_header_canary_says_which_route_it_now_shadows() {
    golden("header-canary", "table", &[], 0);
    let doc = json("header-canary", &[], 0);
    let routes = doc["fleets"][0]["routes"].as_array().unwrap();
    assert_eq!(routes[0]["change"], "added");
    assert_eq!(routes[0]["now_shadows"][0], "/qotm/");
    assert_eq!(routes[1]["change"], "moved");
    assert_eq!(
        (
            routes[1]["position_before"].as_u64(),
            routes[1]["position_after"].as_u64()
        ),
        (Some(1), Some(2))
    );
    assert_eq!(
        doc["fleets"][0]["clusters_added"][0]["name"],
        "qotmv2__shared"
    );
}

#[test]
fn a_retired_primary_moves_every_share_to_the_canary() {
    golden("retired-primary", "table", &[], 0);
    let doc = json("retired-primary", &[], 0);
    assert_eq!(
        risks(&doc),
        ["share_moves_over_50_points", "share_moves_over_50_points"]
    );
    let removed = &doc["fleets"][0]["clusters_removed"][0];
    assert_eq!(removed["stats"][0], "cluster.qotm.upstream_rq_xx");
}

#[test]
fn a_changed_timeout_is_shown_field_by_field() {
    let text = golden("changed-timeout", "table", &[], 0);
    assert!(
        text.contains("qotm: route.timeout_ms  3000 -> 5000"),
        "{text}"
    );
    let doc = json("changed-timeout", &[], 0);
    let fields: Vec<&str> = doc["fleets"][0]["routes"][0]["settings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["field"].as_str().unwrap())
        .collect();
    assert_eq!(
        fields,
        ["route.retry_policy.num_retries", "route.timeout_ms"]
    );
}

#[test]
fn a_mapping_moved_to_another_file_is_no_difference() {
    golden("moved-mapping", "table", &[], 0);
    let doc = json("moved-mapping", &[], 0);
    assert_eq!(doc["different"], false);
    // And `--exit-code` agrees.
    let out = run(&[
        "diff",
        "moved-mapping/base",
        "moved-mapping/new",
        "--exit-code",
    ]);
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn an_invalid_new_exits_1_and_shows_what_serve_would_hold() {
    let text = golden("invalid-new", "table", &[], 1);
    assert!(
        text.contains("qotmv2.yaml:7:9: Mapping qotmv2, field weight"),
        "{text}"
    );
    let doc = json("invalid-new", &[], 1);
    assert_eq!(risks(&doc), ["held_back"]);
    // The file keeps its BASE content, so no route changes.
    assert!(doc["fleets"][0]["routes"].as_array().unwrap().is_empty());
}

#[test]
fn two_fleets_are_compared_each_on_its_own() {
    golden("two-fleets", "table", &["--all-fleets"], 0);
    golden("two-fleets", "markdown", &["--all-fleets"], 0);
    let doc = json("two-fleets", &["--all-fleets"], 0);
    let fleets: Vec<&str> = doc["fleets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["fleet"].as_str().unwrap())
        .collect();
    assert_eq!(fleets, ["default", "edge"]);
    assert_eq!(risks(&doc), ["new_service"]);
    // One fleet alone.
    let out = run(&[
        "diff",
        "two-fleets/base",
        "two-fleets/new",
        "--fleet",
        "edge",
    ]);
    let text = stdout(&out);
    assert!(
        text.contains("fleet edge") && !text.contains("fleet default"),
        "{text}"
    );
}

#[test]
fn exit_codes_follow_git() {
    let code = |args: &[&str]| run(args).status.code();
    assert_eq!(
        code(&["diff", "docs-example/base", "docs-example/new"]),
        Some(0)
    );
    assert_eq!(
        code(&[
            "diff",
            "docs-example/base",
            "docs-example/new",
            "--exit-code"
        ]),
        Some(3)
    );
    // NEW's errors win over differences.
    assert_eq!(
        code(&["diff", "invalid-new/base", "invalid-new/new", "--exit-code"]),
        Some(1)
    );
    // Usage errors.
    assert_eq!(code(&["diff", "docs-example/base"]), Some(2));
    assert_eq!(
        code(&["diff", "a", "b", "--fleet", "x", "--all-fleets"]),
        Some(2)
    );
    assert_eq!(
        code(&[
            "diff",
            "docs-example/base",
            "docs-example/new",
            "--format",
            "yaml"
        ]),
        Some(2)
    );
    let out = run(&["diff", "no-such-dir", "docs-example/new"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("BASE no-such-dir"));
    // A NEW that does not exist is NEW with an error: the directory cannot be read.
    assert_eq!(code(&["diff", "docs-example/base", "no-such-dir"]), Some(1));
}

/// Copies a fixture directory (one level of subdirectories is enough here).
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.path().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

#[test]
fn base_can_be_a_running_serve() {
    let work = WorkDir::new();
    let served = work.path().join("served");
    copy_dir(&fixtures().join("docs-example/base"), &served);
    let cp = ControlPlane::start(&served, free_port(), &[]);
    common::wait_admin_ready(cp.admin_port);
    let url = format!("http://127.0.0.1:{}", cp.admin_port);

    // The server against the very files it serves: no difference.
    let out = run(&["diff", &url, "docs-example/base", "--exit-code"]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));

    // The docs' example against the server: what the directories' diff says.
    let out = run(&["diff", &url, "docs-example/new", "--format", "json"]);
    let doc: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(doc["settings_compared"], true);
    let dirs = run(&[
        "diff",
        "docs-example/base",
        "docs-example/new",
        "--format",
        "json",
    ]);
    let dirs: Value = serde_json::from_str(&stdout(&dirs)).unwrap();
    assert_eq!(doc["fleets"], dirs["fleets"]);

    // A broken NEW: the server keeps the file's last good content, so the route stays.
    let out = run(&["diff", &url, "invalid-new/new", "--format", "json"]);
    assert_eq!(out.status.code(), Some(1));
    let doc: Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert!(
        doc["fleets"][0]["routes"].as_array().unwrap().is_empty(),
        "{doc:#}"
    );
    assert!(risks(&doc).contains(&"held_back"), "{doc:#}");

    // A server that does not answer is a usage error naming it.
    drop(cp);
    let out = run(&["diff", &url, "docs-example/new", "--timeout", "2s"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains(&url));
}
