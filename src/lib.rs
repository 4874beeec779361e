//! canary-xds: Ambassador-style canary Mappings for any Envoy, served over xDS.
//!
//! The data flows through a pure pipeline inside a thin I/O shell:
//!
//! ```text
//! files --source--> bytes --parse--> Mappings --table (weights)--> RouteTables per fleet
//! ```
//!
//! Everything from `parse` to `table` is synchronous and free of I/O; `source` is the edge that
//! reads the directory. `serve` is the shell around it: the watch loop (`watch`, `reload`), the
//! ADS server (`xds`) and the admin HTTP server (`admin`, with `metrics`). `status` reads
//! Envoys' stats and the configured weights (`live`) and judges each canary (`stats`).

pub mod admin;
pub mod canary;
pub mod cmd;
pub mod envoy;
pub mod input;
pub mod model;
pub mod reload;
pub mod routes;
pub mod serve;
pub mod xds;

#[cfg(test)]
mod test_util;
