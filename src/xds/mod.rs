//! The xDS side: resources encoded once, per-stream protocol state, and the ADS server.

pub mod archive;
pub mod resource;
pub mod server;
pub mod stream;
