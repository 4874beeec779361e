//! A window: what each cluster did between two readings of a fleet's Envoys. Envoy's counters
//! and histograms are cumulative since it started, so only differences describe the window; an
//! Envoy that restarted in between counts from zero, as Prometheus' `rate()` does.

use std::collections::BTreeMap;
use std::time::Instant;

use crate::canary::envoy_stats::{ClusterStats, EnvoyStats};
use crate::canary::histogram::Histogram;

/// The Envoys of a fleet, read at (about) one moment.
#[derive(Clone, Debug)]
pub struct FleetSample {
    /// When the reading finished.
    pub at: Instant,
    /// Each Envoy's stats by its admin URL.
    pub envoys: BTreeMap<String, EnvoyStats>,
}

/// What one cluster did over a window, all Envoys added up.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ClusterWindow {
    /// Responses (every class): the requests that finished in the window.
    pub requests: u64,
    /// Of those, 5xx.
    pub errors_5xx: u64,
    /// The latencies of the window, in milliseconds (differences of cumulative buckets).
    pub rq_time: Histogram,
}

/// Per cluster, what happened between two samples, added up over the Envoys read both times.
/// An Envoy that restarted in between (uptime went down, or a counter did) counts from zero, and
/// so does a cluster that appeared in between. An Envoy missing from either sample (not read,
/// just added) contributes nothing: its totals since it started are not a window. Clusters no
/// Envoy knows are absent. Counts saturate at `u64::MAX`: Envoy's text is read as it comes, and
/// a counter near the top must not overflow (a panic in a debug build, nonsense in release).
pub fn window(before: &FleetSample, after: &FleetSample) -> BTreeMap<String, ClusterWindow> {
    let mut out: BTreeMap<String, ClusterWindow> = BTreeMap::new();
    for (url, now) in &after.envoys {
        let Some(then) = before.envoys.get(url) else {
            continue;
        };
        let restarted = matches!((then.uptime, now.uptime), (Some(t), Some(n)) if n < t);
        for (cluster, c) in &now.clusters {
            let zero = ClusterStats::default();
            let mut p = if restarted {
                &zero
            } else {
                then.clusters.get(cluster).unwrap_or(&zero)
            };
            let went_down =
                c.rq_total < p.rq_total || c.rq_xx.iter().zip(&p.rq_xx).any(|(n, t)| n < t);
            if went_down {
                p = &zero;
            }
            let w = out.entry(cluster.clone()).or_default();
            // Class by class (no class went down, so no difference is negative), then added
            // up; sums saturate at u64::MAX rather than overflow, whatever Envoy printed.
            let responses = c
                .rq_xx
                .iter()
                .zip(&p.rq_xx)
                .fold(0u64, |sum, (n, t)| sum.saturating_add(n.saturating_sub(*t)));
            w.requests = w.requests.saturating_add(responses);
            w.errors_5xx = w
                .errors_5xx
                .saturating_add(c.rq_xx[4].saturating_sub(p.rq_xx[4]));
            let times = c
                .rq_time
                .since(&p.rq_time)
                .unwrap_or_else(|| c.rq_time.clone());
            w.rq_time = w.rq_time.add(&times);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::test_util::canary::{envoy, sample, stats, times};

    #[test]
    fn a_window_is_deltas_summed_over_envoys() {
        let t0 = Instant::now();
        let before = sample(
            t0,
            &[
                (
                    "e1",
                    envoy(100, &[("c", stats(100, 90, 10, times(100, 1.0, 2.0)))]),
                ),
                (
                    "e2",
                    envoy(100, &[("c", stats(50, 50, 0, times(50, 1.0, 2.0)))]),
                ),
            ],
        );
        let after = sample(
            t0 + Duration::from_secs(10),
            &[
                (
                    "e1",
                    envoy(
                        110,
                        &[
                            ("c", stats(130, 120, 10, times(130, 1.0, 2.0))),
                            // A cluster that appeared in between counts from zero.
                            ("new", stats(4, 4, 0, times(4, 1.0, 2.0))),
                        ],
                    ),
                ),
                (
                    "e2",
                    envoy(110, &[("c", stats(70, 68, 2, times(70, 1.0, 2.0)))]),
                ),
                // An Envoy not read the first time says nothing about the window: its totals
                // since it started are not one.
                (
                    "e3",
                    envoy(5000, &[("c", stats(900, 900, 0, times(900, 1.0, 2.0)))]),
                ),
            ],
        );
        let windows = window(&before, &after);
        let w = &windows["c"];
        assert_eq!(w.requests, 30 + 20);
        assert_eq!(w.errors_5xx, 2);
        assert_eq!(w.rq_time.count(), 50);
        assert_eq!(windows["new"].requests, 4);
    }

    #[test]
    fn an_envoy_that_restarted_counts_from_zero() {
        let t0 = Instant::now();
        let before = sample(
            t0,
            &[(
                "e",
                envoy(
                    1000,
                    &[("c", stats(5000, 4000, 1000, times(5000, 1.0, 2.0)))],
                ),
            )],
        );
        // Restarted: uptime went down, and the counters happen to be higher again.
        let after = sample(
            t0 + Duration::from_secs(60),
            &[(
                "e",
                envoy(30, &[("c", stats(6000, 6000, 0, times(6000, 1.0, 2.0)))]),
            )],
        );
        let w = &window(&before, &after)["c"];
        assert_eq!((w.requests, w.errors_5xx), (6000, 0));
        // Without an uptime, a counter that went down says the same.
        let mut before = before;
        before.envoys.get_mut("e").unwrap().uptime = None;
        let after = sample(
            t0 + Duration::from_secs(60),
            &[(
                "e",
                envoy(30, &[("c", stats(10, 10, 0, times(10, 1.0, 2.0)))]),
            )],
        );
        let w = &window(&before, &after)["c"];
        assert_eq!((w.requests, w.errors_5xx, w.rq_time.count()), (10, 0, 10));
    }

    /// One Envoy's Prometheus text: clusters `main` and `canary`, each with `ok` 2xx, `errors`
    /// 5xx and every request timed in (1, 2] ms.
    fn prometheus(uptime: u64, clusters: &[(&str, u64, u64)]) -> EnvoyStats {
        let mut text = format!("envoy_server_uptime{{}} {uptime}\n");
        for &(c, ok, errors) in clusters {
            let total = ok.saturating_add(errors);
            text.push_str(&format!(
                "envoy_cluster_upstream_rq_total{{envoy_cluster_name=\"{c}\"}} {total}\n\
                 envoy_cluster_upstream_rq_xx{{envoy_response_code_class=\"2\",envoy_cluster_name=\"{c}\"}} {ok}\n\
                 envoy_cluster_upstream_rq_xx{{envoy_response_code_class=\"5\",envoy_cluster_name=\"{c}\"}} {errors}\n\
                 envoy_cluster_upstream_rq_time_bucket{{envoy_cluster_name=\"{c}\",le=\"1\"}} 0\n\
                 envoy_cluster_upstream_rq_time_bucket{{envoy_cluster_name=\"{c}\",le=\"2\"}} {total}\n\
                 envoy_cluster_upstream_rq_time_bucket{{envoy_cluster_name=\"{c}\",le=\"+Inf\"}} {total}\n"
            ));
        }
        crate::canary::envoy_stats::parse_prometheus(&text).unwrap()
    }

    /// Counters at `u64::MAX` (a broken or hostile Envoy admin, or one that wrapped) must not
    /// panic anywhere from the window to the verdict; sums saturate instead of wrapping.
    #[test]
    fn counters_at_u64_max_saturate_from_the_window_to_the_verdict() {
        use crate::canary::Thresholds;
        use crate::test_util::canary::{backend, weights};
        const MAX: u64 = u64::MAX;
        let t0 = Instant::now();
        let before = sample(
            t0,
            &[
                ("e1", prometheus(10, &[("main", 0, 0), ("canary", 0, 0)])),
                ("e2", prometheus(10, &[("main", 0, 0), ("canary", 0, 0)])),
            ],
        );
        let after = sample(
            t0 + Duration::from_secs(10),
            &[
                (
                    "e1",
                    prometheus(20, &[("main", MAX, MAX), ("canary", MAX, 0)]),
                ),
                (
                    "e2",
                    prometheus(20, &[("main", MAX, MAX), ("canary", 7, MAX)]),
                ),
            ],
        );
        let windows = window(&before, &after);
        // Two Envoys with MAX 2xx and MAX 5xx each: every sum is pinned at MAX.
        let main = &windows["main"];
        assert_eq!((main.requests, main.errors_5xx), (MAX, MAX));
        assert_eq!(main.rq_time.count(), MAX);
        let canary = &windows["canary"];
        assert_eq!((canary.requests, canary.errors_5xx), (MAX, MAX));
        let w = weights(vec![vec![
            backend("main", 9000, Some(false)),
            backend("canary", 1000, Some(true)),
        ]]);
        let report = crate::canary::compare(&w, &before, &after, &Thresholds::default());
        let c = &report.routes[0].backends[1];
        assert_eq!(c.requests, MAX);
        assert!(
            c.p99_ms.is_some_and(|p| p > 1.0 && p <= 2.0),
            "{:?}",
            c.p99_ms
        );

        // Then the counters go down (Envoy restarted, uptime kept going up here): counted
        // from zero, as Prometheus' rate() does, never a huge wrapped difference.
        let later = sample(
            t0 + Duration::from_secs(20),
            &[
                ("e1", prometheus(30, &[("main", 5, 1), ("canary", 3, 0)])),
                ("e2", prometheus(30, &[("main", 2, 0), ("canary", 7, MAX)])),
            ],
        );
        let windows = window(&after, &later);
        assert_eq!(
            (windows["main"].requests, windows["main"].errors_5xx),
            (8, 1)
        );
        assert_eq!(windows["main"].rq_time.count(), 8);
        // e2's canary did not move: nothing happened there.
        assert_eq!(
            (windows["canary"].requests, windows["canary"].errors_5xx),
            (3, 0)
        );
        let report = crate::canary::compare(&w, &after, &later, &Thresholds::default());
        assert_eq!(report.routes[0].backends[0].requests, 8);
    }
}
