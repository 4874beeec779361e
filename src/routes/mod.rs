//! Route tables: Mappings grouped into routes in Envoy's order, weights split, clusters named.
//!
//! A pure function of the parsed files (plus, for `serve`, the last good tables to fall back
//! on): `compile` builds every fleet's table, `recompile_routes` rebuilds only the routes a
//! weight or setting change touched, and `render` shows tables as `check` prints them.

mod clusters;
mod compile;
mod explain;
mod order;
mod recompile;
pub mod render;
mod table;

pub use compile::{compile, diagnostic_order};
pub use explain::describe;
pub use order::route_order;
pub use recompile::recompile_routes;
pub use table::{
    Backend, ClusterSpec, Compiled, RESERVED_CLUSTER_NAMES, Route, RouteTable, Shadow, Tables,
};

#[cfg(test)]
mod tests;
