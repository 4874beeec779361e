//! Route tables: Mappings grouped into routes in Envoy's order, weights split, clusters named.

pub mod render;
pub mod table;
