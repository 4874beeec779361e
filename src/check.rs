//! `canary-xds check`: the route table the files describe right now, and every diagnostic.
//!
//! `check` is a pure function of the files: no last good state, no fallback.

use std::path::Path;

use crate::diagnostic::Severity;
use crate::source::Loader;
use crate::table::{Compiled, compile};

/// Reads and compiles a directory once. A directory that cannot be read gives an error
/// diagnostic and empty tables.
pub fn check_dir(dir: &Path, max_file_size: u64) -> Compiled {
    let mut loader = Loader::new(dir, max_file_size);
    match loader.scan(false) {
        Ok(scan) => {
            let files: Vec<_> = scan.files.iter().map(|f| (*f.parsed).clone()).collect();
            let mut compiled = compile(&files, None);
            compiled.diagnostics.extend(scan.diagnostics);
            compiled
                .diagnostics
                .sort_by(|a, b| (&a.file, a.line, a.column).cmp(&(&b.file, b.line, b.column)));
            compiled
        }
        Err(e) => {
            let mut compiled = compile(&[], None);
            compiled.diagnostics.push(e.to_diagnostic());
            compiled
        }
    }
}

/// The exit code of `check`: 1 when any diagnostic is an error, else 0.
pub fn exit_code(compiled: &Compiled) -> i32 {
    i32::from(
        compiled
            .diagnostics
            .iter()
            .any(|d| d.severity == Severity::Error),
    )
}
