//! Unit tests of reloading: containment of bad files, grace for emptied files and
//! directories, and versions that follow content.

use super::*;
use crate::model::diagnostic::Severity;
use std::fs;

const MAIN: &str =
    "apiVersion: ambassador/v1\nkind: Mapping\nname: qotm\nprefix: /qotm/\nservice: qotm\n";
const CANARY: &str = "apiVersion: ambassador/v1\nkind: Mapping\nname: qotmv2\nprefix: /qotm/\nservice: qotmv2\nweight: 10\n";

fn reloader(dir: &std::path::Path) -> Reloader {
    crate::test_util::reloader(dir, Duration::from_millis(200))
}

fn weights(o: &Outcome) -> Vec<(String, u32)> {
    let served = o.served.as_ref().unwrap();
    served.tables.fleet("default").unwrap().routes[0]
        .backends
        .iter()
        .map(|b| (b.mapping.id.name.clone(), b.weight_bp))
        .collect()
}

#[test]
fn a_broken_file_keeps_its_last_good_content() {
    let t = tempfile::tempdir().unwrap();
    fs::write(t.path().join("a.yaml"), MAIN).unwrap();
    fs::write(t.path().join("b.yaml"), CANARY).unwrap();
    let mut r = reloader(t.path());
    let first = r.reload(false, Instant::now());
    assert!(first.changed);
    assert_eq!(
        weights(&first),
        [("qotm".into(), 9000), ("qotmv2".into(), 1000)]
    );
    fs::write(
        t.path().join("b.yaml"),
        CANARY.replace("weight: 10", "weight: ["),
    )
    .unwrap();
    let broken = r.reload(false, Instant::now());
    assert!(!broken.changed);
    assert_eq!(
        weights(&broken),
        [("qotm".into(), 9000), ("qotmv2".into(), 1000)]
    );
    assert!(
        broken
            .diagnostics
            .iter()
            .any(|d| d.file == "b.yaml" && d.severity == Severity::Error && d.line > 0)
    );
    assert!(
        broken
            .diagnostics
            .iter()
            .any(|d| d.message.contains("last good content keeps serving"))
    );
    fs::write(
        t.path().join("b.yaml"),
        CANARY.replace("weight: 10", "weight: 50"),
    )
    .unwrap();
    let fixed = r.reload(false, Instant::now());
    assert!(fixed.changed);
    assert_eq!(
        weights(&fixed),
        [("qotm".into(), 5000), ("qotmv2".into(), 5000)]
    );
}

#[test]
fn a_broken_file_with_no_past_is_left_out() {
    let t = tempfile::tempdir().unwrap();
    fs::write(t.path().join("a.yaml"), MAIN).unwrap();
    fs::write(
        t.path().join("b.yaml"),
        CANARY.replace("weight: 10", "weight: 4.351"),
    )
    .unwrap();
    let o = reloader(t.path()).reload(false, Instant::now());
    assert_eq!(weights(&o), [("qotm".into(), 10000)]);
}

#[test]
fn a_group_gone_bad_across_files_keeps_its_last_good_weights() {
    let t = tempfile::tempdir().unwrap();
    fs::write(
        t.path().join("a.yaml"),
        MAIN.replace("service: qotm", "service: qotm\nweight: 60"),
    )
    .unwrap();
    fs::write(
        t.path().join("b.yaml"),
        CANARY.replace("weight: 10", "weight: 40"),
    )
    .unwrap();
    let mut r = reloader(t.path());
    r.reload(false, Instant::now());
    fs::write(
        t.path().join("b.yaml"),
        CANARY.replace("weight: 10", "weight: 50"),
    )
    .unwrap();
    let o = r.reload(false, Instant::now());
    assert_eq!(
        weights(&o),
        [("qotm".into(), 6000), ("qotmv2".into(), 4000)]
    );
    assert!(!o.changed);
}

#[test]
fn a_file_that_just_became_empty_is_held_for_a_while() {
    let t = tempfile::tempdir().unwrap();
    fs::write(t.path().join("a.yaml"), MAIN).unwrap();
    let mut r = reloader(t.path());
    r.reload(false, Instant::now());
    fs::write(t.path().join("a.yaml"), "").unwrap();
    let o = r.reload(false, Instant::now());
    assert!(!o.changed);
    assert!(o.recheck_after.is_some());
    std::thread::sleep(Duration::from_millis(250));
    let o = r.reload(false, Instant::now());
    assert!(o.changed);
    let served = o.served.unwrap();
    assert!(
        served
            .tables
            .fleet("default")
            .is_none_or(|t| t.routes.is_empty())
    );
}

#[test]
fn a_directory_emptied_of_every_file_is_held_for_a_while() {
    let t = tempfile::tempdir().unwrap();
    fs::write(t.path().join("a.yaml"), MAIN).unwrap();
    let mut r = reloader(t.path());
    r.reload(false, Instant::now());
    fs::remove_file(t.path().join("a.yaml")).unwrap();
    let o = r.reload(false, Instant::now());
    assert!(!o.changed);
    assert_eq!(weights(&o), [("qotm".into(), 10000)]);
    assert!(o.recheck_after.is_some());
    std::thread::sleep(Duration::from_millis(250));
    let o = r.reload(false, Instant::now());
    assert!(o.changed);
    let served = o.served.unwrap();
    assert!(
        served
            .tables
            .fleet("default")
            .is_none_or(|t| t.routes.is_empty())
    );
}

#[test]
fn a_deleted_file_removes_its_mappings_at_once() {
    let t = tempfile::tempdir().unwrap();
    fs::write(t.path().join("a.yaml"), MAIN).unwrap();
    fs::write(t.path().join("b.yaml"), CANARY).unwrap();
    let mut r = reloader(t.path());
    r.reload(false, Instant::now());
    fs::remove_file(t.path().join("b.yaml")).unwrap();
    let o = r.reload(false, Instant::now());
    assert!(o.changed);
    assert_eq!(weights(&o), [("qotm".into(), 10000)]);
}

#[test]
fn an_unreadable_directory_keeps_what_is_served() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("m");
    fs::create_dir(&dir).unwrap();
    fs::write(dir.join("a.yaml"), MAIN).unwrap();
    let mut r = reloader(&dir);
    let first = r.reload(false, Instant::now());
    fs::remove_dir_all(&dir).unwrap();
    let gone = r.reload(false, Instant::now());
    assert!(gone.served.is_none());
    assert!(gone.diagnostics[0].message.contains("keeps serving"));
    assert_eq!(
        r.last().unwrap().published.fleet("default").version,
        first.served.unwrap().published.fleet("default").version
    );
    fs::create_dir(&dir).unwrap();
    fs::write(dir.join("a.yaml"), MAIN).unwrap();
    let back = r.reload(false, Instant::now());
    assert!(!back.changed, "same content, same version");
}

#[test]
fn the_same_files_give_the_same_versions() {
    let t = tempfile::tempdir().unwrap();
    fs::write(t.path().join("a.yaml"), MAIN).unwrap();
    fs::write(t.path().join("b.yaml"), CANARY).unwrap();
    let a = reloader(t.path()).reload(false, Instant::now());
    let b = reloader(t.path()).reload(false, Instant::now());
    assert_eq!(a.stats.version, b.stats.version);
    assert!(!a.stats.version.is_empty());
}
