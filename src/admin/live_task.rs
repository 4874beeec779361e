//! Fills the page's live-traffic section: reads the Envoys given by `--envoy-admin` every few
//! seconds and compares each canary with its primary over a rolling window, with the same
//! statistics as `canary-xds status`.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;

use super::AdminState;
use super::traffic::{LiveBackend, LiveRoute, LiveTraffic, TrafficVerdict};
use crate::canary::{self, AdminClient, BackendRole, FleetSample, Thresholds};

/// How often the Envoys are read.
pub const TICK: Duration = Duration::from_secs(5);
/// The window the page compares over.
pub const WINDOW: Duration = Duration::from_secs(60);

/// Reads `urls` until `stop`, publishing each window's comparison to `admin`.
pub async fn run(urls: Vec<String>, admin: Arc<AdminState>, mut stop: watch::Receiver<bool>) {
    let client = AdminClient::new(Duration::from_secs(2));
    let mut samples: VecDeque<FleetSample> = VecDeque::new();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        let mut problems = Vec::new();
        match client.sample(&urls).await {
            Ok(sample) => samples.push_back(sample),
            Err(e) => problems.push(e.to_string()),
        }
        // Keep one reading at or before the start of the window, as its base.
        while samples.len() > 2 && samples[1].at.elapsed() >= WINDOW {
            samples.pop_front();
        }
        let (Some(first), Some(last)) = (samples.front(), samples.back()) else {
            admin.set_live(Some(empty(problems)));
            continue;
        };
        if samples.len() < 2 {
            admin.set_live(Some(empty(problems)));
            continue;
        }
        let window = last.at.duration_since(first.at);
        let served = admin.served();
        let thresholds = Thresholds::default();
        let mut routes = Vec::new();
        for (fleet, _, table) in served.fleets() {
            let weights = canary::ConfiguredWeights::from_table(table, "control plane");
            let report = canary::compare(&weights, first, last, &thresholds);
            for r in report.routes {
                if !r.backends.iter().any(|b| b.in_envoy) {
                    continue; // not served by the Envoys watched
                }
                routes.push(LiveRoute {
                    fleet: fleet.clone(),
                    route: r.route,
                    backends: r.backends.into_iter().map(backend).collect(),
                });
            }
        }
        admin.set_live(Some(LiveTraffic {
            taken_at: SystemTime::now(),
            window,
            routes,
            problems,
        }));
    }
}

fn empty(problems: Vec<String>) -> LiveTraffic {
    LiveTraffic {
        taken_at: SystemTime::now(),
        window: Duration::ZERO,
        routes: Vec::new(),
        problems,
    }
}

fn backend(b: canary::BackendReport) -> LiveBackend {
    let verdict = match b.verdict {
        canary::Verdict::Primary => None,
        canary::Verdict::Promoted => Some(TrafficVerdict::Promoted),
        canary::Verdict::Healthy => Some(TrafficVerdict::Healthy),
        canary::Verdict::NotEnoughTraffic => Some(TrafficVerdict::NotEnoughTraffic),
        // The reasons that made it worse (the others say what was fine).
        canary::Verdict::Worse => Some(TrafficVerdict::Worse {
            reason: b
                .reasons
                .iter()
                .filter(|r| r.is_worse())
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; "),
        }),
    };
    LiveBackend {
        mapping: b.name,
        cluster: b.cluster,
        primary: b.role == BackendRole::Primary,
        configured_bp: b.weight_bp,
        observed_share: b.share.map(|s| s / 100.0),
        requests: b.requests,
        rps: b.requests_per_second,
        error_rate: b.success_rate.map(|s| 1.0 - s / 100.0),
        p50_ms: b.p50_ms,
        p99_ms: b.p99_ms,
        verdict,
    }
}
