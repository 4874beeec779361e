//! The xDS side: resources encoded once, per-stream protocol state, and the ADS server.

pub mod archive;
pub mod hub;
pub mod identity;
pub mod resource;
pub mod server;
pub mod snapshot;
pub mod stream;

pub use hub::{EnvoyStatus, Hub, Observed};
pub use snapshot::{Published, RUNTIME_LAYER, Snapshot};
