//! A test's scratch directory, with its directory of Mapping files: deleted when the test
//! passes, kept (and named on stderr) when it fails, with the logs of the processes in it.

use std::path::{Path, PathBuf};

/// A temporary directory, kept for a look when the test fails.
pub struct WorkDir(Option<tempfile::TempDir>);

impl WorkDir {
    pub fn new() -> WorkDir {
        WorkDir(Some(tempfile::tempdir().unwrap()))
    }

    pub fn path(&self) -> &Path {
        self.0.as_ref().unwrap().path()
    }

    /// `mappings/` in here, holding `files` (name, text).
    pub fn mappings(&self, files: &[(&str, String)]) -> PathBuf {
        mappings_dir(self.path(), files)
    }
}

impl Default for WorkDir {
    fn default() -> WorkDir {
        WorkDir::new()
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        // Keep the logs of a failed test for a look.
        if std::thread::panicking()
            && let Some(tmp) = self.0.take()
        {
            eprintln!("logs kept in {}", tmp.keep().display());
        }
    }
}

/// Creates `<parent>/mappings` holding `files` (name, text), and returns its path.
pub fn mappings_dir(parent: &Path, files: &[(&str, String)]) -> PathBuf {
    let dir = parent.join("mappings");
    std::fs::create_dir(&dir).unwrap();
    for (name, text) in files {
        std::fs::write(dir.join(name), text).unwrap();
    }
    dir
}
