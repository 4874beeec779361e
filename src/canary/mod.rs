//! Judging canaries: Envoy's stats read over a window, each canary compared with its primary.

pub mod histogram;
pub mod live;
pub mod statistics;
