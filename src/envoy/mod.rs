//! Envoy's side of the pipeline: route tables translated into listeners, routes, clusters and
//! the runtime layer, built into snapshots; and the bootstrap that points Envoy at us.

pub mod bootstrap;
pub mod snapshot;
pub mod translate;
