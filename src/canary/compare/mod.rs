//! The comparison: per route, the primary and its canaries side by side over a window, with a
//! verdict per canary from the tests in [`crate::canary::statistics`], corrected across routes.

use std::collections::BTreeMap;

use crate::canary::reason::VerdictReason;
use crate::canary::report::{
    BackendReport, BackendRole, CanaryReport, ErrorTestReport, RouteReport, Verdict,
};
use crate::canary::statistics::{self, RequestCounts};
use crate::canary::thresholds::Thresholds;
use crate::canary::weights::{BackendWeight, ConfiguredWeights, RouteWeights};
use crate::canary::window::{ClusterWindow, FleetSample, window};

/// The primary of a route: the backend of a Mapping without a weight (Ambassador's default
/// Mapping; with several, the largest share); when every backend has a weight (or it is not
/// known), the largest share. Ties go to the first by (namespace, name).
pub fn primary_index(backends: &[BackendWeight]) -> Option<usize> {
    let unweighted: Vec<usize> = (0..backends.len())
        .filter(|&i| backends[i].weighted == Some(false))
        .collect();
    let candidates: Vec<usize> = if unweighted.is_empty() {
        (0..backends.len()).collect()
    } else {
        unweighted
    };
    let key = |i: usize| {
        let b = &backends[i];
        (
            b.namespace.clone().unwrap_or_default(),
            b.mapping.clone().unwrap_or_else(|| b.cluster.clone()),
        )
    };
    candidates.into_iter().min_by(|&a, &b| {
        backends[b]
            .weight_bp
            .cmp(&backends[a].weight_bp)
            .then_with(|| key(a).cmp(&key(b)))
    })
}

/// Compares every canary with its route's primary over the window from `before` to `after`.
/// Routes with fewer than two backends are left out.
pub fn compare(
    weights: &ConfiguredWeights,
    before: &FleetSample,
    after: &FleetSample,
    t: &Thresholds,
) -> CanaryReport {
    let windows = window(before, after);
    let seconds = after
        .at
        .saturating_duration_since(before.at)
        .as_secs_f64()
        .max(1e-3);
    compare_windows(weights, &windows, seconds, t)
}

/// [`compare`] on windows already computed (`seconds` long): each route measured and its
/// canaries tested, the error tests corrected across routes, then each canary's verdict.
pub fn compare_windows(
    weights: &ConfiguredWeights,
    windows: &BTreeMap<String, ClusterWindow>,
    seconds: f64,
    t: &Thresholds,
) -> CanaryReport {
    let mut routes: Vec<RouteReport> = weights
        .routes
        .iter()
        .filter(|r| r.backends.len() > 1)
        .filter_map(|r| measure_route(r, windows, seconds, t))
        .collect();
    correct_across_routes(&mut routes);
    for route in &mut routes {
        let (primary, canaries) = route.backends.split_at_mut(1);
        for canary in canaries {
            conclude(canary, &primary[0], t);
        }
    }
    CanaryReport {
        window_seconds: seconds,
        thresholds: *t,
        routes,
    }
}

/// One route over the window: its backends measured, the primary first, and each canary run
/// through the tests that do not depend on other routes. `None` without a primary.
fn measure_route(
    route: &RouteWeights,
    windows: &BTreeMap<String, ClusterWindow>,
    seconds: f64,
    t: &Thresholds,
) -> Option<RouteReport> {
    let p = primary_index(&route.backends)?;
    // A cluster no Envoy has did nothing in the window.
    let none = ClusterWindow::default();
    let window_of = |cluster: &str| windows.get(cluster).unwrap_or(&none);
    let total = route
        .backends
        .iter()
        .map(|b| window_of(&b.cluster).requests)
        .fold(0u64, u64::saturating_add);
    let order = std::iter::once(p).chain((0..route.backends.len()).filter(|&i| i != p));
    let mut backends: Vec<BackendReport> = order
        .map(|i| {
            let b = &route.backends[i];
            let in_envoy = windows.contains_key(&b.cluster);
            measure(b, window_of(&b.cluster), in_envoy, total, seconds, i == p)
        })
        .collect();
    let (primary, canaries) = backends.split_at_mut(1);
    let primary_w = window_of(&primary[0].cluster);
    for canary in canaries {
        let canary_w = window_of(&canary.cluster);
        judge(canary, &primary[0], canary_w, primary_w, t);
    }
    Some(RouteReport {
        route: route.route.clone(),
        note: route.note.clone(),
        backends,
    })
}

/// Holm's correction across every canary of every route: each error test gets its adjusted
/// p-value, so that the false-positive rate of a whole report is at most `alpha`.
fn correct_across_routes(routes: &mut [RouteReport]) {
    let mut tests: Vec<&mut ErrorTestReport> = routes
        .iter_mut()
        .flat_map(|r| r.backends.iter_mut())
        .filter_map(|b| b.error_test.as_mut())
        .collect();
    let p_values: Vec<f64> = tests.iter().map(|e| e.p_value).collect();
    for (e, adjusted) in tests.iter_mut().zip(statistics::holm_adjust(&p_values)) {
        e.adjusted_p_value = adjusted;
    }
}

/// The numbers of one backend over the window.
fn measure(
    b: &BackendWeight,
    w: &ClusterWindow,
    in_envoy: bool,
    route_total: u64,
    seconds: f64,
    primary: bool,
) -> BackendReport {
    let pct = |x: u64, of: u64| (of > 0).then(|| 100.0 * x as f64 / of as f64);
    let p50 = w.rq_time.quantile(0.5);
    let p99 = w.rq_time.quantile(0.99);
    BackendReport {
        name: b.label(),
        cluster: b.cluster.clone(),
        mapping: b.mapping.clone(),
        namespace: b.namespace.clone(),
        role: if primary {
            BackendRole::Primary
        } else {
            BackendRole::Canary
        },
        weight: f64::from(b.weight_bp) / 100.0,
        weight_bp: b.weight_bp,
        share: pct(w.requests, route_total),
        requests: w.requests,
        errors_5xx: w.errors_5xx,
        success_rate: pct(w.requests - w.errors_5xx.min(w.requests), w.requests),
        requests_per_second: w.requests as f64 / seconds,
        errors_5xx_per_second: w.errors_5xx as f64 / seconds,
        p50_ms: p50.map(|q| q.value),
        p99_ms: p99.map(|q| q.value),
        p99_capped: p99.is_some_and(|q| q.capped),
        timed_requests: w.rq_time.count(),
        in_envoy,
        verdict: if primary {
            Verdict::Primary
        } else if b.weight_bp >= crate::model::mapping::FULL {
            Verdict::Promoted
        } else {
            // Until judged.
            Verdict::NotEnoughTraffic
        },
        worse_errors: false,
        worse_latency: false,
        reasons: Vec::new(),
        error_test: None,
    }
}

/// Runs the tests that do not depend on other routes: the error test's raw p-value and the
/// latency rule.
fn judge(
    canary: &mut BackendReport,
    primary: &BackendReport,
    canary_w: &ClusterWindow,
    primary_w: &ClusterWindow,
    t: &Thresholds,
) {
    if canary.verdict == Verdict::Promoted {
        return;
    }
    let counts = |w: &ClusterWindow| RequestCounts {
        requests: w.requests,
        errors: w.errors_5xx.min(w.requests),
    };
    canary.error_test =
        statistics::error_test(counts(canary_w), counts(primary_w)).map(|e| ErrorTestReport {
            method: e.method,
            p_value: e.p_value,
            adjusted_p_value: e.p_value,
            z: e.z,
        });
    if let Some((c99, p99)) = p99s_to_compare(canary, primary, t) {
        canary.worse_latency = c99 > p99 * t.p99_ratio && c99 - p99 > t.p99_margin_ms;
    }
}

/// The verdict and its reasons, once the error test's p-value is corrected.
fn conclude(canary: &mut BackendReport, primary: &BackendReport, t: &Thresholds) {
    if canary.verdict == Verdict::Promoted {
        canary.reasons = vec![VerdictReason::Promoted {
            primary: primary.name.clone(),
        }];
        return;
    }
    canary.worse_errors = canary
        .error_test
        .is_some_and(|e| e.adjusted_p_value <= t.alpha);
    let mut reasons: Vec<VerdictReason> = [
        error_test_reason(canary, primary, t),
        latency_test_reason(canary, primary, t),
    ]
    .into_iter()
    .flatten()
    .collect();
    canary.verdict = if canary.worse_errors || canary.worse_latency {
        Verdict::Worse
    } else if enough_requests(canary, primary, t) && p99s_to_compare(canary, primary, t).is_some() {
        Verdict::Healthy
    } else {
        reasons.extend(undecided_reasons(canary, primary, t));
        Verdict::NotEnoughTraffic
    };
    canary.reasons = reasons;
}

/// Whether both sides had the requests a verdict of healthy needs.
fn enough_requests(canary: &BackendReport, primary: &BackendReport, t: &Thresholds) -> bool {
    canary.requests >= t.min_requests && primary.requests >= t.min_requests
}

/// The canary's and the primary's p99 when the latency rule can decide: both known, each from
/// at least `min_requests` timed requests.
fn p99s_to_compare(
    canary: &BackendReport,
    primary: &BackendReport,
    t: &Thresholds,
) -> Option<(f64, f64)> {
    let timed = canary.timed_requests >= t.min_requests && primary.timed_requests >= t.min_requests;
    Some((canary.p99_ms?, primary.p99_ms?)).filter(|_| timed)
}

/// The error test's outcome, when it ran.
fn error_test_reason(
    canary: &BackendReport,
    primary: &BackendReport,
    t: &Thresholds,
) -> Option<VerdictReason> {
    let e = canary.error_test?;
    let five_xx = |b: &BackendReport| b.success_rate.map(|s| 100.0 - s);
    Some(VerdictReason::ErrorTest {
        canary_5xx_percent: five_xx(canary),
        primary_5xx_percent: five_xx(primary),
        method: e.method,
        p_value: e.p_value,
        adjusted_p_value: e.adjusted_p_value,
        alpha: t.alpha,
        worse: canary.worse_errors,
    })
}

/// The latency rule's outcome, when it could decide.
fn latency_test_reason(
    canary: &BackendReport,
    primary: &BackendReport,
    t: &Thresholds,
) -> Option<VerdictReason> {
    let (c99, p99) = p99s_to_compare(canary, primary, t)?;
    Some(VerdictReason::LatencyTest {
        canary_p99_ms: c99,
        primary_p99_ms: p99,
        p99_ratio: t.p99_ratio,
        p99_margin_ms: t.p99_margin_ms,
        worse: canary.worse_latency,
    })
}

/// What kept the tests from a verdict: a cluster no Envoy has, too few requests, or (the
/// histograms lagging the counters) too few timed ones.
fn undecided_reasons(
    canary: &BackendReport,
    primary: &BackendReport,
    t: &Thresholds,
) -> Vec<VerdictReason> {
    let mut reasons = Vec::new();
    if !canary.in_envoy {
        reasons.push(VerdictReason::NotInEnvoy {
            cluster: canary.cluster.clone(),
        });
    }
    if !enough_requests(canary, primary, t) {
        reasons.push(VerdictReason::TooFewRequests {
            canary: canary.requests,
            primary: primary.requests,
            needed: t.min_requests,
        });
    } else if p99s_to_compare(canary, primary, t).is_none() {
        reasons.push(VerdictReason::TooFewTimedRequests {
            canary: canary.timed_requests,
            primary: primary.timed_requests,
            needed: t.min_requests,
        });
    }
    reasons
}

#[cfg(test)]
mod tests;
