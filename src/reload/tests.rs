//! Unit tests of reloading: containment of bad files, grace for emptied files and
//! directories, and versions that follow content.

use super::*;
use crate::envoy::snapshot::RouteLimits;
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

/// `n` Mappings, one per document: with `host`, each on its own host.
fn many(n: usize, name: &str, host: bool) -> String {
    (0..n)
        .map(|i| {
            let host = if host {
                format!("host: h{i}.example.com\n")
            } else {
                String::new()
            };
            format!(
                "---\napiVersion: ambassador/v1\nkind: Mapping\nname: {name}{i}\nprefix: /{name}{i}/\nservice: {name}{i}\n{host}"
            )
        })
        .collect()
}

/// Two valid files, 3,000 hosts and 3,000 hostless routes, make 9 million route entries:
/// refused at once, with the number and the files that grew it, and the last good table (the
/// hostless routes alone) keeps serving.
#[test]
fn hosts_times_hostless_routes_over_the_limit_keep_the_last_good_table() {
    let t = tempfile::tempdir().unwrap();
    fs::write(t.path().join("hostless.yaml"), many(3_000, "r", false)).unwrap();
    let mut r = reloader(t.path());
    let first = r.reload(false, Instant::now());
    assert_eq!(first.stats.routes, 3_000);
    let good = first
        .served
        .unwrap()
        .published
        .fleet("default")
        .version
        .clone();

    fs::write(t.path().join("hosts.yaml"), many(3_000, "h", true)).unwrap();
    let o = r.reload(false, Instant::now());
    let refused: Vec<&Diagnostic> = o
        .diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .collect();
    assert_eq!(refused.len(), 1, "{:?}", o.diagnostics);
    assert_eq!(refused[0].location(), Location::directory());
    assert_eq!(
        refused[0].message,
        "fleet default: the route table would hold 9,006,000 route entries across 3,001 virtual \
         hosts, over the limit of 500,000 (--max-routes): hosts.yaml adds 3,000 hosts, and each \
         repeats the 3,000 hostless routes of hostless.yaml; its last good route table keeps \
         serving"
    );
    assert!(refused[0].held_back);
    assert_eq!((o.stats.refused_tables, o.stats.withheld_fleets), (1, 0));
    assert!(!o.changed, "the last good table keeps serving");
    let served = o.served.unwrap();
    assert_eq!(served.published.fleet("default").version, good);
    assert_eq!(served.tables.fleet("default").unwrap().routes.len(), 3_000);

    // Within the limit again, it is served.
    fs::write(t.path().join("hosts.yaml"), many(100, "h", true)).unwrap();
    let o = r.reload(false, Instant::now());
    assert!(o.changed);
    assert_eq!(o.stats.refused_tables, 0);
    assert_eq!(o.stats.routes, 3_100);
}

/// With no good table to fall back on, the fleet is withheld: sent nothing at all, rather than
/// an empty table that would wipe a reconnecting Envoy's routes.
#[test]
fn a_table_over_the_limit_with_no_past_withholds_its_fleet() {
    let t = tempfile::tempdir().unwrap();
    fs::write(t.path().join("hostless.yaml"), many(3_000, "r", false)).unwrap();
    fs::write(t.path().join("hosts.yaml"), many(3_000, "h", true)).unwrap();
    let mut r = reloader(t.path());
    let o = r.reload(false, Instant::now());
    let served = o.served.unwrap();
    assert!(!served.published.fleets.contains_key("default"));
    let why = served.published.withholds("default").unwrap();
    assert!(why.contains("9,006,000 route entries"), "{why}");
    assert_eq!(o.stats.withheld_fleets, 1);
    let d = o
        .diagnostics
        .iter()
        .find(|d| d.severity == Severity::Error)
        .unwrap();
    assert!(
        d.message
            .ends_with("its Envoys are sent nothing until it fits")
    );
    assert!(!d.held_back);
}

/// The encoded size is a limit too, and other fleets go on.
#[test]
fn a_table_over_the_byte_limit_is_refused_and_other_fleets_are_served() {
    let t = tempfile::tempdir().unwrap();
    fs::write(t.path().join("a.yaml"), MAIN).unwrap();
    fs::write(
        t.path().join("edge.yaml"),
        "apiVersion: ambassador/v1\nkind: Mapping\nname: e\nprefix: /e/\nservice: e\nambassador_id: edge\n",
    )
    .unwrap();
    let mut r = reloader(t.path()).with_limits(RouteLimits {
        max_routes: 1_000,
        max_bytes: 5_000,
    });
    assert_eq!(r.reload(false, Instant::now()).stats.refused_tables, 0);
    fs::write(t.path().join("a.yaml"), many(200, "r", false)).unwrap();
    let o = r.reload(false, Instant::now());
    assert_eq!(o.stats.refused_tables, 1);
    let d = o
        .diagnostics
        .iter()
        .find(|d| d.severity == Severity::Error)
        .unwrap();
    assert!(
        d.message
            .starts_with("fleet default: the route table would take ")
            && d.message
                .contains("bytes encoded, over the limit of 5,000 (--max-route-bytes)"),
        "{}",
        d.message
    );
    let served = o.served.unwrap();
    assert_eq!(served.tables.fleet("default").unwrap().routes.len(), 1);
    assert_eq!(served.tables.fleet("edge").unwrap().routes.len(), 1);
}
