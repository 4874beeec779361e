//! The loader: the directory's Mapping files read and parsed, remembering what it read, so that
//! a rescan re-reads only files whose size, modification time or inode changed, and re-parses
//! only files whose content changed; and in a plain tree (no symlink, nothing skipped) a scan
//! after a watcher event looks only at the paths the event named.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use std::{fs, io};

use bytes::Bytes;
use sha2::{Digest, Sha256};

use super::read::{Looked, open_inside, read_open};
use super::walk::{Walk, walk};
use crate::input::parse::{ParsedFile, parse_file};
use crate::input::{Found, SourceError};
use crate::model::diagnostic::{Diagnostic, Location};

/// The default largest file we read: Mapping files are small, and a huge one is a mistake.
pub const DEFAULT_MAX_FILE_SIZE: u64 = 1024 * 1024;

/// A file is "racy" when it was modified this shortly before we read it: its modification time
/// may not change on a further write within the file system's timestamp granularity, so the next
/// scan reads it again instead of trusting its metadata.
const RACY_WINDOW: Duration = Duration::from_secs(2);

/// A file's metadata as far as change detection goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Stamp {
    len: u64,
    modified: Option<SystemTime>,
    inode: u64,
}

impl Stamp {
    fn of(meta: &fs::Metadata) -> Self {
        use std::os::unix::fs::MetadataExt;
        Stamp {
            len: meta.len(),
            modified: meta.modified().ok(),
            inode: meta.ino() ^ meta.dev().rotate_left(32),
        }
    }
}

struct Cached {
    stamp: Stamp,
    racy: bool,
    content: Content,
    parsed: Arc<ParsedFile>,
}

/// The bytes of a file as read, and their SHA-256. `--state-dir` keeps these very bytes: read
/// again by path, the file could be something else by then (a FIFO, a link to `/dev/zero`).
/// Cloning shares the bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Content {
    pub digest: [u8; 32],
    pub bytes: Bytes,
}

impl Content {
    /// `bytes` and their digest.
    pub fn new(bytes: impl Into<Bytes>) -> Content {
        let bytes = bytes.into();
        Content {
            digest: Sha256::digest(&bytes).into(),
            bytes,
        }
    }
}

/// One file as the last scan saw it.
#[derive(Clone, Debug)]
pub struct FileState {
    pub rel: String,
    pub parsed: Arc<ParsedFile>,
    /// The content parsed, when the file could be read.
    pub content: Option<Content>,
}

/// The result of a scan: every file in path order, or why the directory cannot be read.
#[derive(Debug)]
pub struct Scan {
    pub files: Vec<FileState>,
    /// Problems with the directory walk itself (skipped symlinks...).
    pub diagnostics: Vec<Diagnostic>,
    /// How many files were read from disk and how many were parsed again.
    pub read: usize,
    pub parsed: usize,
}

/// Reads a directory again and again, doing only the work that changed files need.
pub struct Loader {
    dir: PathBuf,
    max_file_size: u64,
    cache: HashMap<String, Cached>,
    /// The last scan's files, kept when its listing was plain enough for `scan_paths`.
    listing: Option<Listing>,
}

/// What a plain listing found: no symlink, no unreadable subdirectory, nothing skipped. In
/// such a tree each file has one path and a watcher event names it, so a scan can look at the
/// named paths alone.
struct Listing {
    root: PathBuf,
    /// In path order.
    files: Vec<FileState>,
}

impl Listing {
    fn position(&self, rel: &str) -> Result<usize, usize> {
        self.files.binary_search_by(|f| f.rel.as_str().cmp(rel))
    }

    /// Whether a listed file is under the directory `rel`.
    fn has_under(&self, rel: &str) -> bool {
        let dir = format!("{rel}/");
        let at = self.position(&dir).unwrap_or_else(|i| i);
        self.files.get(at).is_some_and(|f| f.rel.starts_with(&dir))
    }
}

impl Loader {
    pub fn new(dir: impl Into<PathBuf>, max_file_size: u64) -> Self {
        Loader {
            dir: dir.into(),
            max_file_size,
            cache: HashMap::new(),
            listing: None,
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Scans the directory. With `verify`, every file is read again even if its metadata did
    /// not change (the periodic safety net); otherwise unchanged metadata means unchanged file.
    pub fn scan(&mut self, verify: bool) -> Result<Scan, SourceError> {
        let Walk {
            root,
            found,
            diagnostics,
            unreadable,
            symlinks,
            ..
        } = walk(&self.dir)?;
        let plain = !symlinks && unreadable.is_empty() && diagnostics.is_empty();
        let mut scan = Scan {
            files: Vec::with_capacity(found.len()),
            diagnostics,
            read: 0,
            parsed: 0,
        };
        let mut seen: HashSet<String> = found.iter().map(|f| f.rel.clone()).collect();
        self.load_all(&found, &root, verify, &mut scan);
        // The files last seen in a subdirectory that cannot be read now are not deleted: each
        // is reported unreadable, so that `serve` keeps its last good content.
        if !unreadable.is_empty() {
            let mut hidden: Vec<String> = self
                .cache
                .keys()
                .filter(|rel| !seen.contains(*rel))
                .filter(|rel| {
                    unreadable.iter().any(|d| {
                        rel.strip_prefix(d.as_str())
                            .is_some_and(|r| r.starts_with('/'))
                    })
                })
                .cloned()
                .collect();
            hidden.sort();
            for rel in hidden {
                seen.insert(rel.clone());
                scan.files.push(FileState {
                    rel: rel.clone(),
                    parsed: Arc::new(ParsedFile {
                        diagnostics: vec![Diagnostic::error(
                            &Location::new(rel, 0, 0),
                            "cannot read this file: its directory cannot be read",
                        )],
                        ..ParsedFile::default()
                    }),
                    content: None,
                });
            }
            scan.files.sort_by(|a, b| a.rel.cmp(&b.rel));
        }
        self.cache.retain(|rel, _| seen.contains(rel));
        self.listing = plain.then(|| Listing {
            root,
            files: scan.files.clone(),
        });
        Ok(scan)
    }

    /// Scans after a watcher named `paths` as changed: when the last listing was plain and
    /// every path is a file (or a file gone), only the Mapping files among them are looked at,
    /// so a save costs one file, not a stat of every file; hidden paths are ignored, as the
    /// listing ignores them. Anything else - a directory or symlink among the paths, a path
    /// outside the directory, a file in a directory the listing did not know - lists
    /// everything, as `scan(false)` does; so does the first scan.
    pub fn scan_paths(&mut self, paths: &[PathBuf]) -> Result<Scan, SourceError> {
        match self.named_files(paths) {
            Some(rels) => Ok(self.scan_named(rels)),
            None => self.scan(false),
        }
    }

    /// The Mapping files (relative paths, sorted) a change of `paths` may have touched, or
    /// `None` when only a full listing can tell.
    fn named_files(&self, paths: &[PathBuf]) -> Option<Vec<String>> {
        let listing = self.listing.as_ref()?;
        let mut rels = Vec::with_capacity(paths.len());
        'paths: for path in paths {
            let rel = path
                .strip_prefix(&self.dir)
                .or_else(|_| path.strip_prefix(&listing.root))
                .ok()?;
            let mut parts = Vec::new();
            for c in rel.components() {
                let std::path::Component::Normal(name) = c else {
                    return None;
                };
                let name = name.to_str()?;
                // A listing skips hidden entries, and in a plain one no symlink leads into
                // them: an editor's hidden temporary file changes nothing.
                if name.starts_with('.') {
                    continue 'paths;
                }
                parts.push(name);
            }
            let (name, parent) = parts.split_last()?;
            let rel = parts.join("/");
            let is_yaml = name.ends_with(".yaml") || name.ends_with(".yml");
            match fs::symlink_metadata(path) {
                Ok(m) if m.is_file() => {
                    // A new file where no file was listed: its directory may be new as well.
                    let dir_known = parent.is_empty() || listing.has_under(&parent.join("/"));
                    if !is_yaml {
                        continue;
                    }
                    if !dir_known && listing.position(&rel).is_err() {
                        return None;
                    }
                    rels.push(rel);
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    if listing.has_under(&rel) {
                        return None; // a directory went away
                    }
                    if listing.position(&rel).is_ok() {
                        rels.push(rel);
                    }
                }
                // A directory, a symlink, a FIFO...: the listing decides.
                _ => return None,
            }
        }
        rels.sort_unstable();
        rels.dedup();
        Some(rels)
    }

    /// Looks at the named files only; every other file keeps its state from the listing.
    fn scan_named(&mut self, rels: Vec<String>) -> Scan {
        let mut listing = self.listing.take().expect("named_files found a listing");
        let mut part = Scan {
            files: Vec::with_capacity(rels.len()),
            diagnostics: Vec::new(),
            read: 0,
            parsed: 0,
        };
        let mut gone = Vec::new();
        for rel in rels {
            let found = Found {
                path: self.dir.join(&rel),
                rel,
            };
            match self.load(&found, &listing.root, false, &mut part) {
                Some(state) => part.files.push(state),
                None => gone.push(found.rel),
            }
        }
        for rel in gone {
            self.cache.remove(&rel);
            if let Ok(i) = listing.position(&rel) {
                listing.files.remove(i);
            }
        }
        for state in part.files {
            match listing.position(&state.rel) {
                Ok(i) => listing.files[i] = state,
                Err(i) => listing.files.insert(i, state),
            }
        }
        let scan = Scan {
            files: listing.files.clone(),
            diagnostics: Vec::new(),
            read: part.read,
            parsed: part.parsed,
        };
        self.listing = Some(listing);
        scan
    }

    /// The state of one listed file: from the cache when its metadata (or content) did not
    /// change; otherwise read, and parsed if its content is new.
    fn load(&mut self, f: &Found, root: &Path, verify: bool, scan: &mut Scan) -> Option<FileState> {
        let looked = self.look(f, root, verify);
        self.settle(f, looked, scan)
    }

    /// Loads every listed file: looked at (read and parsed) on every core when there are
    /// many - a first load of 10,000 Mappings spends most of its time there - then settled in
    /// the cache in path order.
    fn load_all(&mut self, found: &[Found], root: &Path, verify: bool, scan: &mut Scan) {
        use rayon::prelude::*;
        let looked: Vec<Looked> = if found.len() < 64 {
            found.iter().map(|f| self.look(f, root, verify)).collect()
        } else {
            found
                .par_iter()
                .map(|f| self.look(f, root, verify))
                .collect()
        };
        for (f, looked) in found.iter().zip(looked) {
            if let Some(state) = self.settle(f, looked, scan) {
                scan.files.push(state);
            }
        }
    }

    /// What the file system says about a listed file, without changing anything: the
    /// cached state still holds, or the content read now (parsed unless the cache has parsed
    /// the same bytes), or why there is none.
    fn look(&self, f: &Found, root: &Path, verify: bool) -> Looked {
        let gone_or_unreadable = |e: io::Error| match e.kind() {
            io::ErrorKind::NotFound => Looked::Gone, // deleted meanwhile
            _ => Looked::Unreadable(e.to_string()),
        };
        let cached = self.cache.get(&f.rel);
        // A stat by path first only when it can spare the read: a first load opens at once
        // and takes the stamp from the open file.
        if let Some(c) = cached
            && !c.racy
            && !verify
        {
            match fs::metadata(&f.path) {
                Ok(meta) if Stamp::of(&meta) == c.stamp => return Looked::Unchanged,
                Ok(_) => {}
                Err(e) => return gone_or_unreadable(e),
            }
        }
        let read_at = SystemTime::now();
        let (file, meta) = match open_inside(&f.path, root) {
            Ok(Some(opened)) => opened,
            // Gone, or no longer a regular file inside the directory since it was listed.
            Ok(None) => return Looked::Gone,
            Err(e) => return gone_or_unreadable(e),
        };
        // Taken before reading, from the file read: a write after this changes the stamp.
        let stamp = Stamp::of(&meta);
        let bytes = match read_open(file, meta.len(), self.max_file_size) {
            Ok(b) => b,
            Err(e) => return Looked::Unreadable(e.to_string()),
        };
        let content = Content::new(bytes);
        let racy = stamp
            .modified
            .is_none_or(|m| read_at.duration_since(m).map_or(true, |d| d < RACY_WINDOW));
        let parsed = match cached {
            Some(c) if c.content.digest == content.digest => None,
            _ => Some(Arc::new(parse_file(&f.rel, &content.bytes))),
        };
        Looked::Read {
            stamp,
            racy,
            content,
            parsed,
        }
    }

    /// Turns what `look` saw into the file's state, updating the cache.
    fn settle(&mut self, f: &Found, looked: Looked, scan: &mut Scan) -> Option<FileState> {
        let (stamp, racy, content, parsed) = match looked {
            Looked::Gone => return None,
            Looked::Unreadable(why) => return Some(self.unreadable(f, &why)),
            Looked::Unchanged => {
                let c = self.cache.get(&f.rel).expect("looked up in the cache");
                return Some(FileState {
                    rel: f.rel.clone(),
                    parsed: Arc::clone(&c.parsed),
                    content: Some(c.content.clone()),
                });
            }
            Looked::Read {
                stamp,
                racy,
                content,
                parsed,
            } => (stamp, racy, content, parsed),
        };
        scan.read += 1;
        let parsed = match parsed {
            Some(p) => {
                scan.parsed += 1;
                p
            }
            None => Arc::clone(&self.cache.get(&f.rel).expect("parsed unless cached").parsed),
        };
        self.cache.insert(
            f.rel.clone(),
            Cached {
                stamp,
                racy,
                content: content.clone(),
                parsed: Arc::clone(&parsed),
            },
        );
        Some(FileState {
            rel: f.rel.clone(),
            parsed,
            content: Some(content),
        })
    }

    fn unreadable(&mut self, f: &Found, why: &str) -> FileState {
        self.cache.remove(&f.rel);
        FileState {
            rel: f.rel.clone(),
            parsed: Arc::new(ParsedFile {
                diagnostics: vec![Diagnostic::error(
                    &Location::new(f.rel.clone(), 0, 0),
                    format!("cannot read this file: {why}"),
                )],
                ..ParsedFile::default()
            }),
            content: None,
        }
    }
}

#[cfg(test)]
mod tests;
