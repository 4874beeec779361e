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
/// Envoy knows are absent.
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
            let responses = c.responses() - p.responses();
            w.requests += responses;
            w.errors_5xx += c.rq_xx[4] - p.rq_xx[4];
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
}
