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
pub mod bootstrap;
pub mod check;
pub mod cli;
pub mod diagnostic;
pub mod live;
pub mod mapping;
pub mod metrics;
pub mod parse;
pub mod regex_check;
pub mod reload;
pub mod report;
pub mod serve;
pub mod snapshot;
pub mod source;
pub mod state;
pub mod stats;
pub mod status;
pub mod table;
pub mod tls;
pub mod translate;
pub mod watch;
pub mod weights;
pub mod xds;
pub mod yaml;
