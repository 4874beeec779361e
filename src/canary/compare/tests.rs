use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::*;
use crate::canary::histogram::Histogram;
use crate::canary::reason::VerdictReason;
use crate::canary::statistics::ErrorTestMethod;
use crate::test_util::canary::{backend, envoy, sample, stats, times, weights, win, windows};

#[test]
fn the_primary_is_the_unweighted_mapping_else_the_largest_share() {
    // Ambassador's default Mapping is the primary even with the smaller share.
    let b = [
        backend("canary", 6000, Some(true)),
        backend("main", 4000, Some(false)),
    ];
    assert_eq!(primary_index(&b), Some(1));
    // Several unweighted: the largest share among them.
    let b = [
        backend("a", 3000, Some(false)),
        backend("b", 1000, Some(true)),
        backend("c", 6000, Some(false)),
    ];
    assert_eq!(primary_index(&b), Some(2));
    // All weighted, or not known (Envoy's config): the largest share.
    let b = [
        backend("a", 2000, Some(true)),
        backend("b", 8000, Some(true)),
    ];
    assert_eq!(primary_index(&b), Some(1));
    let b = [backend("a", 2000, None), backend("b", 8000, None)];
    assert_eq!(primary_index(&b), Some(1));
    // Ties by (namespace, name): the first.
    let mut b = [
        backend("b", 5000, Some(true)),
        backend("a", 5000, Some(true)),
    ];
    assert_eq!(primary_index(&b), Some(1));
    b[1].namespace = Some("zz".into());
    assert_eq!(primary_index(&b), Some(0));
    assert_eq!(primary_index(&[]), None);
}

fn main_canary(canary_bp: u32) -> ConfiguredWeights {
    weights(vec![vec![
        backend("main", 10_000 - canary_bp, Some(false)),
        backend("canary", canary_bp, Some(true)),
    ]])
}

fn verdict_of(r: &CanaryReport) -> (Verdict, bool, bool) {
    let c = &r.routes[0].backends[1];
    (c.verdict, c.worse_errors, c.worse_latency)
}

#[test]
fn a_canary_failing_20_percent_is_worse_and_exits_3() {
    let t = Thresholds::default();
    let w = windows(&[
        ("main", win(9000, 0, times(9000, 1.0, 2.0))),
        ("canary", win(1000, 200, times(1000, 1.0, 2.0))),
    ]);
    let r = compare_windows(&main_canary(1000), &w, 60.0, &t);
    assert_eq!(verdict_of(&r), (Verdict::Worse, true, false));
    let c = &r.routes[0].backends[1];
    assert_eq!(c.role, BackendRole::Canary);
    assert_eq!(r.routes[0].backends[0].verdict, Verdict::Primary);
    assert_eq!(c.share, Some(10.0));
    assert_eq!(c.success_rate, Some(80.0));
    assert!((c.requests_per_second - 1000.0 / 60.0).abs() < 1e-9);
    assert!((c.errors_5xx_per_second - 200.0 / 60.0).abs() < 1e-9);
    assert_eq!(c.error_test.unwrap().method, ErrorTestMethod::Fisher);
    assert!(
        c.reasons[0]
            .to_string()
            .starts_with("5xx 20% vs 0%: worse (Fisher p="),
        "{:?}",
        c.reasons
    );
    assert!(
        matches!(c.reasons[0], VerdictReason::ErrorTest { worse: true, .. }),
        "{:?}",
        c.reasons
    );
    assert_eq!(r.exit_code(false), 3);
    assert_eq!(r.summary().worse, 1);
}

#[test]
fn identical_healthy_traffic_is_healthy_and_exits_0() {
    let t = Thresholds::default();
    let w = windows(&[
        ("main", win(9000, 9, times(9000, 5.0, 10.0))),
        ("canary", win(1000, 1, times(1000, 5.0, 10.0))),
    ]);
    let r = compare_windows(&main_canary(1000), &w, 60.0, &t);
    assert_eq!(verdict_of(&r), (Verdict::Healthy, false, false));
    assert_eq!(r.exit_code(true), 0);
    let c = &r.routes[0].backends[1];
    assert_eq!(c.p50_ms, Some(7.5));
    assert!((c.p99_ms.unwrap() - 9.95).abs() < 1e-9);
}

#[test]
fn too_little_traffic_is_undecided_and_exits_4_only_when_required() {
    let t = Thresholds::default();
    let w = windows(&[
        ("main", win(1800, 0, times(1800, 1.0, 2.0))),
        ("canary", win(199, 0, times(199, 1.0, 2.0))),
    ]);
    let r = compare_windows(&main_canary(1000), &w, 60.0, &t);
    assert_eq!(verdict_of(&r).0, Verdict::NotEnoughTraffic);
    assert!(
        r.routes[0].backends[1]
            .reasons
            .iter()
            .any(|m| m.to_string().contains("199 requests on the canary")),
        "{:?}",
        r.routes[0].backends[1].reasons
    );
    assert!(
        r.routes[0].backends[1]
            .reasons
            .contains(&VerdictReason::TooFewRequests {
                canary: 199,
                primary: 1800,
                needed: 200
            })
    );
    assert_eq!(r.exit_code(false), 0);
    assert_eq!(r.exit_code(true), 4);
    // A few requests can still be enough to be worse: 8 of 10 failing against none.
    let w = windows(&[
        ("main", win(1800, 0, times(1800, 1.0, 2.0))),
        ("canary", win(10, 8, times(10, 1.0, 2.0))),
    ]);
    let r = compare_windows(&main_canary(1000), &w, 60.0, &t);
    assert_eq!(verdict_of(&r), (Verdict::Worse, true, false));
    // Counters enough, but the histograms lag (no timings yet): undecided, and it says why.
    let w = windows(&[
        ("main", win(1800, 0, Histogram::default())),
        ("canary", win(300, 0, Histogram::default())),
    ]);
    let r = compare_windows(&main_canary(1000), &w, 60.0, &t);
    assert_eq!(verdict_of(&r).0, Verdict::NotEnoughTraffic);
    assert!(
        r.routes[0].backends[1].reasons[1]
            .to_string()
            .starts_with("latency: 0 timed requests")
    );
    assert_eq!(
        r.routes[0].backends[1].reasons[1],
        VerdictReason::TooFewTimedRequests {
            canary: 0,
            primary: 0,
            needed: 200
        }
    );
    // A cluster no Envoy knows.
    let w = windows(&[("main", win(1800, 0, times(1800, 1.0, 2.0)))]);
    let r = compare_windows(&main_canary(1000), &w, 60.0, &t);
    let c = &r.routes[0].backends[1];
    assert!(!c.in_envoy && c.verdict == Verdict::NotEnoughTraffic);
    assert!(
        c.reasons[0]
            .to_string()
            .contains("no Envoy has a cluster canary"),
        "{:?}",
        c.reasons
    );
    assert_eq!(
        c.reasons[0],
        VerdictReason::NotInEnvoy {
            cluster: "canary".into()
        }
    );
}

#[test]
fn p99_is_worse_only_past_both_the_ratio_and_the_margin() {
    let t = Thresholds::default();
    let run = |primary: Histogram, canary: Histogram| {
        let w = windows(&[
            ("main", win(primary.count(), 0, primary)),
            ("canary", win(canary.count(), 0, canary)),
        ]);
        verdict_of(&compare_windows(&main_canary(2000), &w, 60.0, &t))
    };
    // 49.9 ms against 19.9: x2.5 and +30 ms.
    assert_eq!(
        run(times(1000, 10.0, 20.0), times(300, 40.0, 50.0)),
        (Verdict::Worse, false, true)
    );
    // 19.9 against 9.95: x2 but only +9.95 ms.
    assert_eq!(
        run(times(1000, 5.0, 10.0), times(300, 10.0, 20.0)),
        (Verdict::Healthy, false, false)
    );
    // 239.9 against 209.9: +30 ms but only x1.14.
    assert_eq!(
        run(times(1000, 200.0, 210.0), times(300, 230.0, 240.0)),
        (Verdict::Healthy, false, false)
    );
    // Clearly slower, but 150 timed requests on the canary: the latency test cannot decide.
    assert_eq!(
        run(times(1000, 10.0, 20.0), times(150, 40.0, 50.0)),
        (Verdict::NotEnoughTraffic, false, false)
    );
}

/// Holm across routes: two canaries each at p = 0.0077 are each worse alone, but not
/// together (the smallest is compared with alpha / 2); beside a clear failure, the step
/// down lets the second through at alpha / 1 again, where Bonferroni would not.
#[test]
fn the_error_test_is_corrected_across_routes() {
    let t = Thresholds::default();
    // 7 of 1000 against 0 of 1000: Fisher p = C(1000, 7) / C(2000, 7) = 0.0077.
    let borderline = |i: usize| {
        [
            (format!("main{i}"), win(1000, 0, times(1000, 1.0, 2.0))),
            (format!("canary{i}"), win(1000, 7, times(1000, 1.0, 2.0))),
        ]
    };
    let route = |i: usize| {
        vec![
            backend(&format!("main{i}"), 5000, Some(false)),
            backend(&format!("canary{i}"), 5000, Some(true)),
        ]
    };
    let mut w: BTreeMap<String, ClusterWindow> = borderline(0).into_iter().collect();
    let one = compare_windows(&weights(vec![route(0)]), &w, 60.0, &t);
    let p = one.routes[0].backends[1].error_test.unwrap().p_value;
    assert!(p > 0.0076 && p < 0.0078, "{p}");
    assert_eq!(one.routes[0].backends[1].verdict, Verdict::Worse);

    w.extend(borderline(1));
    let two = compare_windows(&weights(vec![route(0), route(1)]), &w, 60.0, &t);
    for r in &two.routes {
        let c = &r.backends[1];
        assert_eq!(c.verdict, Verdict::Healthy, "{:?}", c.reasons);
        assert!((c.error_test.unwrap().adjusted_p_value - 2.0 * p).abs() < 1e-12);
    }

    w.insert("canary1".into(), win(1000, 100, times(1000, 1.0, 2.0)));
    let step = compare_windows(&weights(vec![route(0), route(1)]), &w, 60.0, &t);
    assert_eq!(step.routes[0].backends[1].verdict, Verdict::Worse);
    assert_eq!(step.routes[1].backends[1].verdict, Verdict::Worse);
}

#[test]
fn a_canary_at_100_percent_is_promoted() {
    let c = weights(vec![vec![
        backend("main", 0, Some(false)),
        backend("canary", 10_000, Some(true)),
    ]]);
    let w = windows(&[("canary", win(5000, 5, times(5000, 1.0, 2.0)))]);
    let r = compare_windows(&c, &w, 60.0, &Thresholds::default());
    assert_eq!(r.routes[0].backends[0].name, "main");
    assert_eq!(r.routes[0].backends[1].verdict, Verdict::Promoted);
    assert_eq!(r.routes[0].backends[1].share, Some(100.0));
    assert_eq!(r.exit_code(true), 0);
    assert_eq!(r.summary().promoted, 1);
}

/// The window is deltas: a canary that failed before the first reading and is healthy
/// between the two readings is healthy; over the totals since Envoy started it would not be.
#[test]
fn errors_before_the_window_do_not_count() {
    let t0 = Instant::now();
    let before = sample(
        t0,
        &[(
            "e",
            envoy(
                100,
                &[
                    ("main", stats(9000, 9000, 0, times(9000, 1.0, 2.0))),
                    ("canary", stats(1000, 500, 500, times(1000, 1.0, 2.0))),
                ],
            ),
        )],
    );
    let after = sample(
        t0 + Duration::from_secs(60),
        &[(
            "e",
            envoy(
                160,
                &[
                    ("main", stats(18000, 18000, 0, times(18000, 1.0, 2.0))),
                    ("canary", stats(2000, 1500, 500, times(2000, 1.0, 2.0))),
                ],
            ),
        )],
    );
    let t = Thresholds::default();
    let r = compare(&main_canary(1000), &before, &after, &t);
    assert_eq!(verdict_of(&r).0, Verdict::Healthy);
    assert_eq!(r.routes[0].backends[1].requests, 1000);
    assert!((r.window_seconds - 60.0).abs() < 1e-9);
    // The same Envoy read when it started: the totals since then.
    let at_start = sample(t0, &[("e", envoy(0, &[]))]);
    let totals = compare(&main_canary(1000), &at_start, &after, &t);
    assert_eq!(verdict_of(&totals).0, Verdict::Worse);
}
