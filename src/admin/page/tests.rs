//! Unit tests of the page: what it says and how it escapes.

use super::*;
use crate::admin::traffic::{LiveBackend, LiveRoute};
use crate::model::diagnostic::Location;
use crate::test_util::{CANARY, MAIN, envoy, served};
use crate::xds::stream::{TypeStatus, Variant};

fn data(files: &[(&str, &str)]) -> PageData {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    PageData {
        now,
        dir: "/etc/canary-xds/mappings".into(),
        served: Arc::new(served(files)),
        last: LastReload {
            at: now - Duration::from_secs(12),
            ok: true,
            stats: Default::default(),
            diagnostics: Arc::from(Vec::new()),
        },
        envoys: Vec::new(),
        envoy_admin: Vec::new(),
        live: None,
        not_ready: None,
    }
}

fn in_sync(d: &PageData, node: &str) -> EnvoyStatus {
    let mut e = envoy(node, "default", Variant::Sotw);
    e.in_sync = true;
    e.synced_version = Some(d.served.published.fleet("default").version.clone());
    e.connected_since = d.now - Duration::from_secs(185);
    for k in ["cds", "lds", "rds"] {
        e.types.insert(
            k,
            TypeStatus {
                subscribed: true,
                sent: Some(format!("{k}-1")),
                acked: Some(format!("{k}-1")),
                waiting_for_ack: false,
                last_nack: None,
            },
        );
    }
    e
}

/// The text of the page without its tags, whitespace collapsed.
fn text(html: &str) -> String {
    let mut out = String::new();
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' => {
                in_tag = false;
                out.push(' ');
            }
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[test]
fn routes_show_effective_weights_and_where_each_mapping_came_from() {
    let lone = "apiVersion: ambassador/v1\nkind: Mapping\nname: solo\nprefix: /solo/\nservice: solo\nweight: 30\n";
    let html = render(&data(&[
        ("qotm.yaml", MAIN),
        ("qotmv2.yaml", CANARY),
        ("solo.yaml", lone),
    ]));
    let t = text(&html);
    assert!(
        t.contains("qotm qotm 90.00% no weight qotm qotm.yaml:1"),
        "{t}"
    );
    assert!(
        t.contains("qotmv2 qotmv2 10.00% weight 10 qotmv2 qotmv2.yaml:1"),
        "{t}"
    );
    // Ambassador would show 30% here; Envoy sends it everything.
    assert!(t.contains("solo solo 100.00% weight 30"), "{t}");
    assert!(html.contains("style=\"width:90.00%\""));
    assert!(t.contains("split 2 ways"));
    assert!(t.contains("No Envoy admin configured"));
}

#[test]
fn the_summary_says_the_worst_thing_first() {
    let mut d = data(&[("qotm.yaml", MAIN), ("qotmv2.yaml", CANARY)]);
    assert_eq!(summary(&d).level, Level::Warn);
    assert!(summary(&d).headline.contains("no Envoy is connected"));

    d.envoys = vec![in_sync(&d, "a"), in_sync(&d, "b")];
    let s = summary(&d);
    assert_eq!(s.level, Level::Good);
    assert!(s.headline.starts_with("All 2 Envoys are in sync"), "{s:?}");

    let mut held = d.clone();
    held.last.diagnostics = Arc::from(vec![
        Diagnostic::error(&Location::new("qotmv2.yaml", 6, 9), "bad weight")
            .mapping("qotmv2")
            .field("weight"),
        Diagnostic::warning(
            &Location::new("qotmv2.yaml", 0, 0),
            "it has errors, so its last good content keeps serving: 1 Mapping (qotmv2)",
        )
        .held_back(),
    ]);
    let s = summary(&held);
    assert_eq!(s.level, Level::Warn);
    assert_eq!(
        s.headline,
        "1 error in the Mapping files; qotmv2.yaml is held at its last good content"
    );
    let t = text(&render(&held));
    assert!(
        t.contains("error qotmv2.yaml:6:9 qotmv2 weight bad weight"),
        "{t}"
    );
    // The held file's Mapping says so where it is listed.
    assert!(t.contains("qotmv2.yaml:1 held: last good content"), "{t}");
    assert!(!t.contains("qotm.yaml:1 held"), "{t}");

    // A file held while it is empty is no error: the headline says only what is held.
    let mut emptied = d.clone();
    emptied.last.diagnostics = Arc::from(vec![
        Diagnostic::warning(
            &Location::new("qotm.yaml", 0, 0),
            "it just became empty (an editor mid-save?), so its last content keeps serving \
         until it stays empty: 1 Mapping (qotm)",
        )
        .held_back(),
    ]);
    assert_eq!(
        summary(&emptied).headline,
        "qotm.yaml is held at its last good content"
    );

    let mut nacked = d.clone();
    nacked.envoys[1].in_sync = false;
    nacked.envoys[1].types.get_mut("rds").unwrap().sent = Some("rds-2".into());
    nacked.envoys[1].types.get_mut("rds").unwrap().last_nack =
        Some(("rds-2".into(), "regex program too large".into()));
    let s = summary(&nacked);
    assert_eq!(s.level, Level::Bad);
    assert!(s.headline.starts_with("1 Envoy rejected the config (NACK)"));
    let html = render(&nacked);
    let t = text(&html);
    assert!(t.contains("NACK: rejected"), "{t}");
    assert!(
        t.contains(
            "1 Envoy of this fleet rejected this version and still routes by an earlier one"
        ),
        "{t}"
    );
    assert!(
        t.contains("Envoy rejected rds version rds-2 : regex program too large"),
        "{t}"
    );
    assert!(html.starts_with("<!doctype html>"));
    assert!(html.contains("<title>\u{2716} canary-xds</title>"));
}

#[test]
fn envoys_show_their_state_and_connection_age() {
    let mut d = data(&[("qotm.yaml", MAIN)]);
    d.envoys = vec![in_sync(&d, "edge-1")];
    let t = text(&render(&d));
    assert!(t.contains("edge-1 default SotW 3m 05s ago in sync"), "{t}");
    assert!(t.contains("cds \u{2714} lds \u{2714} rds \u{2714}"), "{t}");
}

#[test]
fn names_from_files_are_escaped() {
    let evil = "apiVersion: ambassador/v1\nkind: Mapping\nname: x\nprefix: \"/<script>alert(1)</script>/\"\nservice: x\n";
    let mut d = data(&[("evil.yaml", evil)]);
    d.last.diagnostics = Arc::from(vec![Diagnostic::warning(
        &Location::new("<b>.yaml", 1, 1),
        "a <img src=x onerror=alert(1)> message",
    )]);
    let html = render(&d);
    assert!(!html.contains("<script>alert"), "{html}");
    assert!(!html.contains("<img"));
    assert!(html.contains("&lt;img src=x onerror=alert(1)&gt;"));
    assert!(html.contains("&lt;b&gt;.yaml:1:1"));
}

#[test]
fn a_failed_reading_is_not_shown_as_a_table_without_canaries() {
    let mut d = data(&[("qotm.yaml", MAIN), ("qotmv2.yaml", CANARY)]);
    d.envoy_admin = vec!["http://127.0.0.1:9901".into()];
    d.live = Some(LiveTraffic {
        taken_at: d.now,
        window: Duration::ZERO,
        routes: Vec::new(),
        problems: vec!["http://127.0.0.1:9901/stats: client error (Connect)".into()],
    });
    let t = text(&render(&d));
    assert!(t.contains("client error (Connect)"), "{t}");
    assert!(t.contains("no Envoy admin endpoint could be read"), "{t}");
    assert!(!t.contains("No route has more than one backend"), "{t}");
}

#[test]
fn the_live_traffic_section_is_ready_for_readings() {
    let mut d = data(&[("qotm.yaml", MAIN), ("qotmv2.yaml", CANARY)]);
    d.envoy_admin = vec!["http://127.0.0.1:9901".into()];
    assert!(text(&render(&d)).contains("Waiting for the first reading"));
    d.live = Some(LiveTraffic {
        taken_at: d.now - Duration::from_secs(2),
        window: Duration::from_secs(60),
        routes: vec![LiveRoute {
            fleet: "default".into(),
            route: "/qotm/".into(),
            backends: vec![
                LiveBackend {
                    mapping: "qotm".into(),
                    cluster: "qotm".into(),
                    primary: true,
                    configured_bp: 9000,
                    observed_share: Some(0.9012),
                    requests: 5407,
                    rps: 90.1,
                    error_rate: Some(0.0),
                    p50_ms: Some(3.2),
                    p99_ms: Some(11.0),
                    verdict: None,
                },
                LiveBackend {
                    mapping: "qotmv2".into(),
                    cluster: "qotmv2".into(),
                    primary: false,
                    configured_bp: 1000,
                    observed_share: Some(0.0988),
                    requests: 593,
                    rps: 9.9,
                    error_rate: Some(0.2),
                    p50_ms: Some(3.5),
                    p99_ms: Some(12.5),
                    verdict: Some(TrafficVerdict::Worse {
                        reason: "5xx 20.00% vs 0.00% (p < 0.001)".into(),
                    }),
                },
            ],
        }],
        problems: vec![],
    });
    let t = text(&render(&d));
    assert!(
        t.contains("qotm primary qotm 90.00% 90.12% 5407 90.1 0.00% 3.2 ms 11.0 ms the baseline"),
        "{t}"
    );
    let s = summary(&d);
    assert_eq!(s.level, Level::Bad);
    assert_eq!(
        s.headline,
        "Canary qotmv2 on /qotm/ is worse than its primary: 5xx 20.00% vs 0.00% (p < 0.001)"
    );
    assert!(
        t.contains("qotmv2 qotmv2 10.00% 9.88% 593 9.9 20.00% 3.5 ms 12.5 ms worse than the primary : 5xx 20.00% vs 0.00% (p &lt; 0.001)"),
        "{t}"
    );
}

#[test]
fn ages_read_in_one_or_two_units() {
    let t0 = SystemTime::UNIX_EPOCH;
    let at = |s| t0 + Duration::from_secs(s);
    assert_eq!(ago(at(8), t0), "8s");
    assert_eq!(ago(at(185), t0), "3m 05s");
    assert_eq!(ago(at(7800), t0), "2h 10m");
    assert_eq!(ago(at(4 * 86_400 + 3 * 3600), t0), "4d 3h");
    assert_eq!(ago(t0, at(5)), "0s");
}
