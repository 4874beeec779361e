//! The edge that reads the directory: walking it, reading files safely, YAML, and parsing
//! Mappings into the model with a diagnostic for every problem.

pub mod loader;
pub mod parse;
mod read;
pub mod regex_check;
mod walk;
pub mod yaml;

pub use loader::{Content, DEFAULT_MAX_FILE_SIZE, FileState, Loader, Scan};
pub use read::{ReadError, read_limited};
pub use walk::{Found, SourceError, list};
