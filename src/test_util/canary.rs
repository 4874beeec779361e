//! Unit-test fixtures of the canary stage: stats, samples, windows and configured
//! weights built from a few numbers.

use std::collections::BTreeMap;
use std::time::Instant;

use crate::canary::{
    BackendWeight, Bucket, ClusterStats, ClusterWindow, ConfiguredWeights, EnvoyStats, FleetSample,
    Histogram, RouteWeights, WeightsFrom,
};

/// A cumulative histogram from `(le, count)` pairs.
pub fn hist(pairs: &[(f64, u64)]) -> Histogram {
    Histogram::new(
        pairs
            .iter()
            .map(|&(le, count)| Bucket { le, count })
            .collect(),
    )
}

/// `n` requests all timed in (lo, hi]: p50 is the middle, p99 99% of the way.
pub fn times(n: u64, lo: f64, hi: f64) -> Histogram {
    hist(&[(lo, 0), (hi, n), (f64::INFINITY, n)])
}

/// One cluster's cumulative stats: `ok` 2xx and `errors` 5xx of `total` requests.
pub fn stats(total: u64, ok: u64, errors: u64, rq_time: Histogram) -> ClusterStats {
    ClusterStats {
        rq_total: total,
        rq_xx: [0, ok, 0, 0, errors],
        rq_time,
    }
}

/// One Envoy's stats at `uptime` seconds.
pub fn envoy(uptime: u64, clusters: &[(&str, ClusterStats)]) -> EnvoyStats {
    EnvoyStats {
        clusters: clusters
            .iter()
            .map(|(n, c)| (n.to_string(), c.clone()))
            .collect(),
        uptime: Some(uptime),
    }
}

/// A fleet read at `at`, Envoys by admin URL.
pub fn sample(at: Instant, envoys: &[(&str, EnvoyStats)]) -> FleetSample {
    FleetSample {
        at,
        envoys: envoys
            .iter()
            .map(|(u, e)| (u.to_string(), e.clone()))
            .collect(),
    }
}

/// A backend whose cluster and Mapping are both `cluster`, in `default`.
pub fn backend(cluster: &str, weight_bp: u32, weighted: Option<bool>) -> BackendWeight {
    BackendWeight {
        cluster: cluster.to_string(),
        mapping: Some(cluster.to_string()),
        namespace: Some("default".to_string()),
        weight_bp,
        weighted,
    }
}

/// Configured weights with one route (`/r0/`, `/r1/`...) per list of backends.
pub fn weights(routes: Vec<Vec<BackendWeight>>) -> ConfiguredWeights {
    ConfiguredWeights {
        weights_from: WeightsFrom::Dir,
        source: "test".into(),
        version: None,
        routes: routes
            .into_iter()
            .enumerate()
            .map(|(i, backends)| RouteWeights {
                route: format!("/r{i}/"),
                note: None,
                backends,
            })
            .collect(),
    }
}

/// A cluster's window: `errors` 5xx of `requests`.
pub fn win(requests: u64, errors: u64, rq_time: Histogram) -> ClusterWindow {
    ClusterWindow {
        requests,
        errors_5xx: errors,
        rq_time,
    }
}

/// Windows by cluster.
pub fn windows(list: &[(&str, ClusterWindow)]) -> BTreeMap<String, ClusterWindow> {
    list.iter()
        .map(|(n, w)| (n.to_string(), w.clone()))
        .collect()
}
