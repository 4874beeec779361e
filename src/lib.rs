//! canary-xds: Ambassador-style canary Mappings for any Envoy, served over xDS.
//!
//! The data flows through a pure pipeline inside a thin I/O shell:
//!
//! ```text
//! files --source--> bytes --parse--> Mappings --table (weights)--> RouteTables per fleet
//! ```
//!
//! Everything from `parse` to `table` is synchronous and free of I/O; `source` is the edge that
//! reads the directory.

pub mod bootstrap;
pub mod check;
pub mod cli;
pub mod diagnostic;
pub mod mapping;
pub mod parse;
pub mod regex_check;
pub mod report;
pub mod source;
pub mod table;
pub mod translate;
pub mod weights;
pub mod yaml;
pub mod snapshot;
pub mod xds;
pub mod reload;
pub mod watch;
pub mod serve;
pub mod state;
