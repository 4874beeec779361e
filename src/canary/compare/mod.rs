//! The comparison: per route, the primary and its canaries side by side over a window, with a
//! verdict per canary from the tests in [`crate::canary::statistics`], corrected across routes.

use std::collections::BTreeMap;

use crate::canary::reason::VerdictReason;
use crate::canary::report::{
    BackendReport, BackendRole, CanaryReport, ErrorTestReport, RouteReport, Verdict,
};
use crate::canary::statistics::{self, RequestCounts};
use crate::canary::thresholds::Thresholds;
use crate::canary::weights::{BackendWeight, ConfiguredWeights};
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
    config: &ConfiguredWeights,
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
    compare_windows(config, &windows, seconds, t)
}

/// [`compare`] on windows already computed (`seconds` long).
pub fn compare_windows(
    config: &ConfiguredWeights,
    windows: &BTreeMap<String, ClusterWindow>,
    seconds: f64,
    t: &Thresholds,
) -> CanaryReport {
    let none = ClusterWindow::default();
    let mut routes = Vec::new();
    // (route index, backend index, p-value) of every error test, for Holm's correction.
    let mut tests: Vec<(usize, usize, f64)> = Vec::new();
    for rc in config.routes.iter().filter(|r| r.backends.len() > 1) {
        let Some(p) = primary_index(&rc.backends) else {
            continue;
        };
        let order = std::iter::once(p).chain((0..rc.backends.len()).filter(|&i| i != p));
        let total: u64 = rc
            .backends
            .iter()
            .map(|b| windows.get(&b.cluster).map_or(0, |w| w.requests))
            .sum();
        let mut backends: Vec<BackendReport> = order
            .map(|i| {
                let b = &rc.backends[i];
                let w = windows.get(&b.cluster).unwrap_or(&none);
                measure(
                    b,
                    w,
                    windows.contains_key(&b.cluster),
                    total,
                    seconds,
                    i == p,
                )
            })
            .collect();
        let (primary, canaries) = backends.split_at_mut(1);
        let primary_w = windows.get(&primary[0].cluster).unwrap_or(&none);
        for (j, canary) in canaries.iter_mut().enumerate() {
            let canary_w = windows.get(&canary.cluster).unwrap_or(&none);
            judge(canary, &primary[0], canary_w, primary_w, t);
            if let Some(e) = &canary.error_test {
                tests.push((routes.len(), j + 1, e.p_value));
            }
        }
        routes.push(RouteReport {
            route: rc.route.clone(),
            note: rc.note.clone(),
            backends,
        });
    }
    let adjusted = statistics::holm_adjust(&tests.iter().map(|t| t.2).collect::<Vec<_>>());
    for ((r, b, _), adj) in tests.into_iter().zip(adjusted) {
        if let Some(e) = &mut routes[r].backends[b].error_test {
            e.adjusted_p_value = adj;
        }
    }
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
    if let (Some(c99), Some(p99)) = (canary.p99_ms, primary.p99_ms)
        && canary.timed_requests >= t.min_requests
        && primary.timed_requests >= t.min_requests
    {
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
    let mut reasons = Vec::new();
    canary.worse_errors = canary
        .error_test
        .is_some_and(|e| e.adjusted_p_value <= t.alpha);
    let five_xx = |b: &BackendReport| b.success_rate.map(|s| 100.0 - s);
    if let Some(e) = &canary.error_test {
        reasons.push(VerdictReason::ErrorTest {
            canary_5xx_percent: five_xx(canary),
            primary_5xx_percent: five_xx(primary),
            method: e.method,
            p_value: e.p_value,
            adjusted_p_value: e.adjusted_p_value,
            alpha: t.alpha,
            worse: canary.worse_errors,
        });
    }
    let latency_decided = canary.timed_requests >= t.min_requests
        && primary.timed_requests >= t.min_requests
        && canary.p99_ms.is_some()
        && primary.p99_ms.is_some();
    if let (Some(c99), Some(p99)) = (canary.p99_ms, primary.p99_ms)
        && latency_decided
    {
        reasons.push(VerdictReason::LatencyTest {
            canary_p99_ms: c99,
            primary_p99_ms: p99,
            p99_ratio: t.p99_ratio,
            p99_margin_ms: t.p99_margin_ms,
            worse: canary.worse_latency,
        });
    }
    let enough = canary.requests >= t.min_requests && primary.requests >= t.min_requests;
    canary.verdict = if canary.worse_errors || canary.worse_latency {
        Verdict::Worse
    } else if enough && latency_decided {
        Verdict::Healthy
    } else {
        if !canary.in_envoy {
            reasons.push(VerdictReason::NotInEnvoy {
                cluster: canary.cluster.clone(),
            });
        }
        if !enough {
            reasons.push(VerdictReason::TooFewRequests {
                canary: canary.requests,
                primary: primary.requests,
                needed: t.min_requests,
            });
        } else if !latency_decided {
            reasons.push(VerdictReason::TooFewTimedRequests {
                canary: canary.timed_requests,
                primary: primary.timed_requests,
                needed: t.min_requests,
            });
        }
        Verdict::NotEnoughTraffic
    };
    canary.reasons = reasons;
}

#[cfg(test)]
mod tests;
