//! canary-xds: Ambassador-style canary Mappings for any Envoy, served over xDS.
//!
//! A pure pipeline inside a thin I/O shell, one top-level module per stage:
//!
//! ```text
//! directory --input--> ParsedFiles (Mappings + diagnostics; model)
//!           --routes--> RouteTables per fleet (weights split, clusters named)
//!           --envoy---> Snapshots of encoded listeners, routes, clusters, runtime layer
//!           --xds-----> every connected Envoy, over ADS (SotW or delta)
//! ```
//!
//! `reload` runs the pipeline once over the directory, holding bad files at their last good
//! content. `serve` is the shell: it watches the directory, reloads, publishes to the xDS hub
//! and runs the `admin` HTTP server. `canary` reads Envoys' stats and judges each canary; `cmd`
//! holds the subcommands. Dependencies point down this list, never up (tests/structure.rs).
//! docs/architecture.md follows one file change through every hop.

pub mod admin;
pub mod canary;
pub mod cmd;
pub mod diff;
pub mod envoy;
pub mod input;
pub mod model;
pub mod reload;
pub mod routes;
pub mod serve;
pub mod xds;

#[cfg(test)]
mod test_util;
