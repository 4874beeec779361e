//! The model every stage shares: Mappings as parsed, diagnostics, and the weight rules.

pub mod diagnostic;
pub mod mapping;
pub mod weights;
