//! Judging canaries: Envoy's stats read over a window, each canary compared with its primary.
//!
//! Three steps, kept apart so that a one-shot command (`status`) and a page that refreshes every
//! few seconds (the admin page's live traffic) use the same code:
//!
//! 1. **Read** (I/O, [`AdminClient`]): each Envoy's `/stats?format=prometheus` becomes an
//!    [`EnvoyStats`]; the Envoys of a fleet read at one moment are a [`FleetSample`]. The
//!    configured weights become [`ConfiguredWeights`], from canary-xds's admin API
//!    (`/api/routes`), from the files ([`ConfiguredWeights::from_tables`]), or from Envoy's own
//!    `/config_dump`.
//! 2. **Window** (pure, `window`): two samples give per-cluster deltas ([`ClusterWindow`]).
//! 3. **Compare** (pure, [`compare`]): per route, the primary and its canaries side by side, with
//!    a verdict per canary from the tests in `statistics`, corrected across routes: a
//!    [`CanaryReport`].
//!
//! A page keeps a rolling buffer of samples and calls [`compare`] on the oldest and newest; the
//! CLI takes two samples a window apart.

mod client;
mod compare;
mod envoy_stats;
mod error;
mod format;
mod histogram;
mod reason;
mod report;
mod statistics;
mod thresholds;
mod weights;
mod window;

pub use client::AdminClient;
pub use compare::{compare, compare_windows};
pub use envoy_stats::{ClusterStats, EnvoyStats};
pub use error::LiveError;
pub use format::{ms, trim_float};
pub use histogram::{Bucket, Histogram, Quantile};
pub use reason::VerdictReason;
pub use report::{
    BackendReport, BackendRole, CanaryReport, ErrorTestReport, RouteReport, Verdict, VerdictCounts,
};
pub use statistics::{ErrorTest, ErrorTestMethod, RequestCounts, error_test};
pub use thresholds::Thresholds;
pub use weights::{BackendWeight, ConfiguredWeights, RouteWeights, WeightsFrom};
pub use window::{ClusterWindow, FleetSample};
