//! canary-xds's admin server, read over HTTP: readiness, and samples of its Prometheus text.

use std::time::Duration;

use super::http::http_get;
use super::wait::wait_for;

/// Waits until the admin server on `port` says it is ready.
pub fn wait_admin_ready(port: u16) {
    wait_for(
        "the admin server to be ready",
        Duration::from_secs(20),
        || (http_get(port, "/readyz").status == 200).then_some(()),
    );
}

/// The value of one sample in Prometheus text: `series` is the name with its labels exactly as
/// printed (`canary_xds_reloads_total{result="ok"}`).
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(series)
            .and_then(|rest| rest.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
    })
}
