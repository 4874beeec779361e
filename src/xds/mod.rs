//! The xDS side: what is served (resources encoded once, snapshots, the hub they are published
//! to), who may receive which fleet, the per-stream protocol state, and the ADS server. It knows
//! nothing of Mappings or route tables: only of encoded resources.

pub mod archive;
pub mod hub;
pub mod identity;
pub mod resource;
pub mod server;
pub mod snapshot;
pub mod stream;
mod wire;

pub use hub::{EnvoyStatus, Hub, Observed};
pub use snapshot::{Published, RUNTIME_LAYER, Snapshot};
