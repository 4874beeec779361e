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
pub mod reload;
pub mod report;
pub mod serve;
pub mod snapshot;
pub mod source;
pub mod state;
pub mod table;
pub mod translate;
pub mod watch;
pub mod weights;
pub mod xds;
pub mod yaml;
