//! Finding the Mapping files of a directory: recursively, `*.yaml` and `*.yml` in sorted
//! relative-path order, hidden entries skipped, symlinks followed only when they resolve inside
//! the directory (a Kubernetes ConfigMap mount is read through its top-level symlinks, each file
//! once).

use std::collections::HashSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::model::diagnostic::{Diagnostic, Location};

/// A Mapping file found in the directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Found {
    /// The path relative to the directory, with `/` separators: how diagnostics name it.
    pub rel: String,
    pub path: PathBuf,
}

/// Why the directory itself cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("the directory {0} does not exist")]
    Missing(PathBuf),
    #[error("{0} is not a directory")]
    NotADirectory(PathBuf),
    #[error("cannot read the directory {path}: {source}")]
    Unreadable { path: PathBuf, source: io::Error },
}

impl SourceError {
    pub fn to_diagnostic(&self) -> Diagnostic {
        Diagnostic::error(&Location::directory(), self.to_string())
    }
}

/// Lists the Mapping files under `dir` in path order, with diagnostics for what was skipped
/// and why (symlinks out of the directory, loops, unreadable subdirectories).
pub fn list(dir: &Path) -> Result<(Vec<Found>, Vec<Diagnostic>), SourceError> {
    let walk = walk(dir)?;
    Ok((walk.found, walk.diagnostics))
}

/// Walks `dir`: the files found, what was skipped, and where the walk could not look.
pub(crate) fn walk(dir: &Path) -> Result<Walk, SourceError> {
    let meta = fs::metadata(dir).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => SourceError::Missing(dir.to_path_buf()),
        _ => SourceError::Unreadable {
            path: dir.to_path_buf(),
            source: e,
        },
    })?;
    if !meta.is_dir() {
        return Err(SourceError::NotADirectory(dir.to_path_buf()));
    }
    let root = fs::canonicalize(dir).map_err(|e| SourceError::Unreadable {
        path: dir.to_path_buf(),
        source: e,
    })?;
    // The top level must be readable; below it, problems are diagnostics.
    fs::read_dir(dir).map_err(|e| SourceError::Unreadable {
        path: dir.to_path_buf(),
        source: e,
    })?;
    let mut walk = Walk {
        root,
        found: Vec::new(),
        diagnostics: Vec::new(),
        visited: HashSet::new(),
        unreadable: Vec::new(),
        symlinks: false,
    };
    walk.visited.insert(walk.root.clone());
    walk.dir(dir, "");
    walk.found.sort_by(|a, b| a.rel.cmp(&b.rel));
    Ok(walk)
}

pub(super) struct Walk {
    /// The directory's canonical path: what every file read must be under.
    pub(super) root: PathBuf,
    pub(super) found: Vec<Found>,
    pub(super) diagnostics: Vec<Diagnostic>,
    pub(super) visited: HashSet<PathBuf>,
    /// Subdirectories (relative paths) that exist but could not be read: their files are not
    /// gone, only out of sight.
    pub(super) unreadable: Vec<String>,
    /// Whether any entry was a symlink: then an event on one path may change another.
    pub(super) symlinks: bool,
}

impl Walk {
    fn warn(&mut self, rel: &str, message: String) {
        self.diagnostics
            .push(Diagnostic::warning(&Location::new(rel, 0, 0), message));
    }

    pub(crate) fn dir(&mut self, dir: &Path, rel_dir: &str) {
        let entries = match fs::read_dir(dir) {
            Ok(e) => e,
            // Deleted since it was listed: gone, as a deleted file is.
            Err(e) if e.kind() == io::ErrorKind::NotFound && !rel_dir.is_empty() => return,
            Err(e) => {
                self.diagnostics.push(Diagnostic::error(
                    &Location::new(rel_dir, 0, 0),
                    format!(
                        "cannot read this directory: {e}; the files in it keep their last good \
                         content, if they had one"
                    ),
                ));
                self.unreadable.push(rel_dir.to_string());
                return;
            }
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') {
                continue;
            }
            let rel = if rel_dir.is_empty() {
                name.to_string()
            } else {
                format!("{rel_dir}/{name}")
            };
            // The type as the listing gives it (no stat on most file systems; lstat where
            // the file system does not say), a symlink as a symlink.
            let Ok(file_type) = entry.file_type() else {
                continue; // vanished since the listing
            };
            let is_yaml = name.ends_with(".yaml") || name.ends_with(".yml");
            if !is_yaml && file_type.is_file() {
                continue;
            }
            let path = entry.path();
            if file_type.is_symlink() {
                self.symlinks = true;
                let target = match fs::canonicalize(&path) {
                    Ok(t) => t,
                    Err(e) if is_yaml || e.raw_os_error() == Some(40) => {
                        // ELOOP, or a dangling link where a Mapping file was expected.
                        self.warn(&rel, format!("cannot follow this symlink ({e}); ignored"));
                        continue;
                    }
                    Err(_) => continue,
                };
                if !target.starts_with(&self.root) {
                    if is_yaml || target.is_dir() {
                        self.warn(
                            &rel,
                            format!(
                                "this symlink points outside the directory (to {}); ignored",
                                target.display()
                            ),
                        );
                    }
                    continue;
                }
                if target.is_dir() {
                    self.subdir(&path, &target, &rel);
                } else if is_yaml {
                    self.file(rel, path, target.is_file());
                }
            } else if file_type.is_dir() {
                let canonical = fs::canonicalize(&path).unwrap_or(path.clone());
                self.subdir(&path, &canonical, &rel);
            } else if is_yaml {
                self.file(rel, path, file_type.is_file());
            }
        }
    }

    /// A `*.yaml` entry: read if it is a regular file. A FIFO or a device is never opened,
    /// since reading it could block forever.
    fn file(&mut self, rel: String, path: PathBuf, regular: bool) {
        if regular {
            self.found.push(Found { rel, path });
        } else {
            self.warn(
                &rel,
                "not a regular file (a FIFO, socket or device?); ignored".into(),
            );
        }
    }

    fn subdir(&mut self, path: &Path, canonical: &Path, rel: &str) {
        if !self.visited.insert(canonical.to_path_buf()) {
            self.warn(
                rel,
                "this directory was already read through another path (a symlink loop?); \
                 skipped"
                    .into(),
            );
            return;
        }
        self.dir(path, rel);
    }
}
