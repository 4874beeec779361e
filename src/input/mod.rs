//! The edge that reads the directory: walking it, reading files safely, YAML, and parsing
//! Mappings into the model with a diagnostic for every problem.

pub mod parse;
pub mod regex_check;
pub mod source;
pub mod yaml;
