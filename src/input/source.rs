//! The edge of the pipeline: finding and reading the Mapping files of a directory.
//!
//! The directory is read recursively for `*.yaml` and `*.yml`, in sorted relative-path order.
//! Hidden files and directories are skipped; a Kubernetes ConfigMap mount (top-level symlinks
//! into `..data`, itself a symlink to a hidden timestamped directory) is therefore read through
//! its top-level symlinks, each file once. Symlinks are followed only when they resolve inside
//! the directory, checked again on the file actually opened (a link swapped after the listing
//! is not followed out), and only regular files are read (opened without blocking, so a FIFO
//! swapped in cannot hang a scan). `Loader` remembers what it read, so that a rescan re-reads
//! only files whose size, modification time or inode changed, and re-parses only files whose
//! content changed; and in a plain tree (no symlink, nothing skipped) a scan after a watcher
//! event looks only at the paths the event named.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};

use crate::input::parse::{ParsedFile, parse_file};
use crate::model::diagnostic::{Diagnostic, Location};

/// The default largest file we read: Mapping files are small, and a huge one is a mistake.
pub const DEFAULT_MAX_FILE_SIZE: u64 = 1024 * 1024;

/// A file is "racy" when it was modified this shortly before we read it: its modification time
/// may not change on a further write within the file system's timestamp granularity, so the next
/// scan reads it again instead of trusting its metadata.
const RACY_WINDOW: Duration = Duration::from_secs(2);

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
        Diagnostic::error(&Location::new(".", 0, 0), self.to_string())
    }
}

/// Lists the Mapping files under `dir` in path order, with diagnostics for what was skipped
/// and why (symlinks out of the directory, loops, unreadable subdirectories).
pub fn list(dir: &Path) -> Result<(Vec<Found>, Vec<Diagnostic>), SourceError> {
    let walk = walk(dir)?;
    Ok((walk.found, walk.diagnostics))
}

/// Walks `dir`: the files found, what was skipped, and where the walk could not look.
fn walk(dir: &Path) -> Result<Walk, SourceError> {
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

struct Walk {
    /// The directory's canonical path: what every file read must be under.
    root: PathBuf,
    found: Vec<Found>,
    diagnostics: Vec<Diagnostic>,
    visited: HashSet<PathBuf>,
    /// Subdirectories (relative paths) that exist but could not be read: their files are not
    /// gone, only out of sight.
    unreadable: Vec<String>,
    /// Whether any entry was a symlink: then an event on one path may change another.
    symlinks: bool,
}

impl Walk {
    fn warn(&mut self, rel: &str, message: String) {
        self.diagnostics
            .push(Diagnostic::warning(&Location::new(rel, 0, 0), message));
    }

    fn dir(&mut self, dir: &Path, rel_dir: &str) {
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

/// Reads a file, refusing one over `max_size` bytes without reading it all.
pub fn read_limited(path: &Path, max_size: u64) -> Result<Vec<u8>, ReadError> {
    let mut file = fs::File::open(path).map_err(ReadError::Io)?;
    let len = file.metadata().map_err(ReadError::Io)?.len();
    if len > max_size {
        return Err(ReadError::TooLarge { len, max_size });
    }
    let mut bytes = Vec::with_capacity(len as usize);
    file.by_ref()
        .take(max_size + 1)
        .read_to_end(&mut bytes)
        .map_err(ReadError::Io)?;
    if bytes.len() as u64 > max_size {
        return Err(ReadError::TooLarge {
            len: bytes.len() as u64,
            max_size,
        });
    }
    Ok(bytes)
}

/// Opens `path` for reading if it is a regular file whose real location is under `root`, as
/// the file actually opened says (a symlink swapped since the listing is caught here).
/// `Ok(None)` when it is not (any more): gone, moved out of reach, or not a regular file; the
/// next listing says why.
fn open_inside(path: &Path, root: &Path) -> io::Result<Option<(fs::File, fs::Metadata)>> {
    use std::os::unix::fs::OpenOptionsExt;
    // Linux's O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer.
    const O_NONBLOCK: i32 = 0o4000;
    let file = match fs::OpenOptions::new()
        .read(true)
        .custom_flags(O_NONBLOCK)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Ok(None);
    }
    let real = {
        use std::os::fd::AsRawFd;
        fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd()))
            .or_else(|_| fs::canonicalize(path))?
    };
    Ok(real.starts_with(root).then_some((file, meta)))
}

/// Reads an open file of `len` bytes (as its metadata said when it was opened), refusing one
/// over `max_size` bytes without reading it all.
fn read_open(mut file: fs::File, len: u64, max_size: u64) -> Result<Vec<u8>, ReadError> {
    if len > max_size {
        return Err(ReadError::TooLarge { len, max_size });
    }
    let mut bytes = Vec::with_capacity(len as usize);
    file.by_ref()
        .take(max_size + 1)
        .read_to_end(&mut bytes)
        .map_err(ReadError::Io)?;
    if bytes.len() as u64 > max_size {
        return Err(ReadError::TooLarge {
            len: bytes.len() as u64,
            max_size,
        });
    }
    Ok(bytes)
}

/// What a look at one listed file found (`Loader::look`).
enum Looked {
    /// Its metadata did not change: the cached state holds.
    Unchanged,
    /// Read now; `parsed` unless the cache holds the parse of these very bytes.
    Read {
        stamp: Stamp,
        racy: bool,
        digest: [u8; 32],
        parsed: Option<Arc<ParsedFile>>,
    },
    /// Deleted, or no longer a regular file inside the directory, since it was listed.
    Gone,
    Unreadable(String),
}

/// Why one file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{0}")]
    Io(io::Error),
    #[error("the file is {len} bytes, over the limit of {max_size} bytes (--max-file-size)")]
    TooLarge { len: u64, max_size: u64 },
}

/// A file's metadata as far as change detection goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
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
    digest: [u8; 32],
    parsed: Arc<ParsedFile>,
}

/// One file as the last scan saw it.
#[derive(Clone, Debug)]
pub struct FileState {
    pub rel: String,
    pub parsed: Arc<ParsedFile>,
    /// The SHA-256 of the content parsed, when the file could be read.
    pub digest: Option<[u8; 32]>,
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
                    digest: None,
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
        let digest: [u8; 32] = Sha256::digest(&bytes).into();
        let racy = stamp
            .modified
            .is_none_or(|m| read_at.duration_since(m).map_or(true, |d| d < RACY_WINDOW));
        let parsed = match cached {
            Some(c) if c.digest == digest => None,
            _ => Some(Arc::new(parse_file(&f.rel, &bytes))),
        };
        Looked::Read {
            stamp,
            racy,
            digest,
            parsed,
        }
    }

    /// Turns what `look` saw into the file's state, updating the cache.
    fn settle(&mut self, f: &Found, looked: Looked, scan: &mut Scan) -> Option<FileState> {
        let (stamp, racy, digest, parsed) = match looked {
            Looked::Gone => return None,
            Looked::Unreadable(why) => return Some(self.unreadable(f, &why)),
            Looked::Unchanged => {
                let c = self.cache.get(&f.rel).expect("looked up in the cache");
                return Some(FileState {
                    rel: f.rel.clone(),
                    parsed: Arc::clone(&c.parsed),
                    digest: Some(c.digest),
                });
            }
            Looked::Read {
                stamp,
                racy,
                digest,
                parsed,
            } => (stamp, racy, digest, parsed),
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
                digest,
                parsed: Arc::clone(&parsed),
            },
        );
        Some(FileState {
            rel: f.rel.clone(),
            parsed,
            digest: Some(digest),
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
            digest: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::os::unix::fs::{OpenOptionsExt, symlink};

    const M: &str =
        "apiVersion: ambassador/v1\nkind: Mapping\nname: NAME\nprefix: /NAME/\nservice: s\n";

    fn write(dir: &Path, rel: &str, name: &str) {
        let p = dir.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, M.replace("NAME", name)).unwrap();
    }

    fn rels(dir: &Path) -> Vec<String> {
        list(dir).unwrap().0.into_iter().map(|f| f.rel).collect()
    }

    #[test]
    fn lists_yaml_recursively_in_path_order_skipping_hidden_and_others() {
        let t = tempfile::tempdir().unwrap();
        write(t.path(), "b.yaml", "b");
        write(t.path(), "a/z.yml", "z");
        write(t.path(), "a/.hidden.yaml", "h");
        write(t.path(), ".git/x.yaml", "x");
        fs::write(t.path().join("README.md"), "hi").unwrap();
        write(t.path(), "a.yaml", "a");
        assert_eq!(rels(t.path()), ["a.yaml", "a/z.yml", "b.yaml"]);
    }

    #[test]
    fn reads_a_configmap_mount_once_per_file() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        write(d, "..2024_01_01_00_00_00.1/qotm.yaml", "qotm");
        write(d, "..2024_01_01_00_00_00.1/canary.yaml", "canary");
        symlink("..2024_01_01_00_00_00.1", d.join("..data")).unwrap();
        symlink("..data/qotm.yaml", d.join("qotm.yaml")).unwrap();
        symlink("..data/canary.yaml", d.join("canary.yaml")).unwrap();
        assert_eq!(rels(d), ["canary.yaml", "qotm.yaml"]);
    }

    #[test]
    fn symlinks_outside_the_directory_and_loops_are_skipped_with_a_warning() {
        let outside = tempfile::tempdir().unwrap();
        write(outside.path(), "secret.yaml", "s");
        let t = tempfile::tempdir().unwrap();
        write(t.path(), "a.yaml", "a");
        symlink(
            outside.path().join("secret.yaml"),
            t.path().join("out.yaml"),
        )
        .unwrap();
        symlink(t.path(), t.path().join("loop")).unwrap();
        let (found, diags) = list(t.path()).unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(diags.len(), 2, "{diags:?}");
        assert!(
            diags
                .iter()
                .any(|d| d.file == "out.yaml" && d.message.contains("outside"))
        );
        assert!(diags.iter().any(|d| d.file == "loop"));
    }

    #[test]
    fn a_missing_directory_is_an_error() {
        let t = tempfile::tempdir().unwrap();
        assert!(matches!(
            list(&t.path().join("nope")),
            Err(SourceError::Missing(_))
        ));
        fs::write(t.path().join("f"), "x").unwrap();
        assert!(matches!(
            list(&t.path().join("f")),
            Err(SourceError::NotADirectory(_))
        ));
    }

    #[test]
    fn a_directory_that_cannot_be_read_is_an_error() {
        let t = tempfile::tempdir().unwrap();
        // A symlink loop cannot be opened, even by root.
        symlink("loop", t.path().join("loop")).unwrap();
        let e = list(&t.path().join("loop")).unwrap_err();
        assert!(matches!(e, SourceError::Unreadable { .. }), "{e:?}");
        assert!(
            e.to_diagnostic()
                .message
                .starts_with("cannot read the directory")
        );
        // Permissions deny everyone but root (or a process with CAP_DAC_OVERRIDE); where they
        // do not deny, the loop above stands in.
        use std::os::unix::fs::PermissionsExt;
        let locked = t.path().join("locked");
        fs::create_dir(&locked).unwrap();
        fs::set_permissions(&locked, fs::Permissions::from_mode(0o000)).unwrap();
        if fs::read_dir(&locked).is_err() {
            assert!(matches!(list(&locked), Err(SourceError::Unreadable { .. })));
        }
        fs::set_permissions(&locked, fs::Permissions::from_mode(0o700)).unwrap();
    }

    #[test]
    fn fifos_and_dangling_links_are_skipped_with_a_warning_never_opened() {
        let t = tempfile::tempdir().unwrap();
        write(t.path(), "a.yaml", "a");
        let made = std::process::Command::new("mkfifo")
            .arg(t.path().join("pipe.yaml"))
            .status()
            .is_ok_and(|s| s.success());
        symlink("pipe.yaml", t.path().join("link-to-pipe.yaml")).unwrap();
        symlink("nowhere.yaml", t.path().join("dangling.yaml")).unwrap();
        let mut loader = Loader::new(t.path(), DEFAULT_MAX_FILE_SIZE);
        // A FIFO opened for reading would block this scan forever.
        let scan = loader.scan(false).unwrap();
        assert_eq!(scan.files.len(), 1);
        let warned: Vec<&str> = scan.diagnostics.iter().map(|d| d.file.as_str()).collect();
        assert!(warned.contains(&"dangling.yaml"), "{warned:?}");
        if made {
            assert!(warned.contains(&"pipe.yaml"), "{warned:?}");
            assert!(warned.contains(&"link-to-pipe.yaml"), "{warned:?}");
        }
    }

    #[test]
    fn files_over_the_limit_are_refused() {
        let t = tempfile::tempdir().unwrap();
        fs::write(t.path().join("big.yaml"), vec![b'#'; 2000]).unwrap();
        let mut loader = Loader::new(t.path(), 1000);
        let scan = loader.scan(false).unwrap();
        let d = &scan.files[0].parsed.diagnostics[0];
        assert!(d.message.contains("over the limit"), "{}", d.message);
        // The limit itself is allowed.
        fs::write(t.path().join("big.yaml"), vec![b'#'; 1000]).unwrap();
        let scan = Loader::new(t.path(), 1000).scan(false).unwrap();
        assert!(scan.files[0].parsed.diagnostics.is_empty());
        assert!(matches!(
            read_limited(&t.path().join("big.yaml"), 999),
            Err(ReadError::TooLarge { len: 1000, .. })
        ));
    }

    /// A link inside when the directory is listed and outside when the file is read (swapped in
    /// between) is not followed out.
    #[test]
    fn a_link_swapped_to_the_outside_after_the_listing_is_not_read() {
        let outside = tempfile::tempdir().unwrap();
        write(outside.path(), "secret.yaml", "secret");
        let t = tempfile::tempdir().unwrap();
        write(t.path(), ".in.yaml", "in");
        symlink(".in.yaml", t.path().join("link.yaml")).unwrap();
        let w = walk(t.path()).unwrap();
        assert_eq!(w.found.len(), 1);
        fs::remove_file(t.path().join("link.yaml")).unwrap();
        symlink(
            outside.path().join("secret.yaml"),
            t.path().join("link.yaml"),
        )
        .unwrap();
        let mut loader = Loader::new(t.path(), DEFAULT_MAX_FILE_SIZE);
        let mut scan = Scan {
            files: Vec::new(),
            diagnostics: Vec::new(),
            read: 0,
            parsed: 0,
        };
        assert!(loader.load(&w.found[0], &w.root, true, &mut scan).is_none());
        assert_eq!(scan.read, 0);
    }

    /// A file replaced by a FIFO after the listing is not opened for a blocking read: the scan
    /// goes on (before, it waited for a writer that never came).
    #[test]
    fn a_file_swapped_for_a_fifo_after_the_listing_does_not_block() {
        let t = tempfile::tempdir().unwrap();
        write(t.path(), "pipe.yaml", "p");
        let w = walk(t.path()).unwrap();
        fs::remove_file(t.path().join("pipe.yaml")).unwrap();
        let made = std::process::Command::new("mkfifo")
            .arg(t.path().join("pipe.yaml"))
            .status()
            .is_ok_and(|s| s.success());
        if !made {
            eprintln!("note: mkfifo is not available; skipping");
            return;
        }
        let (tx, rx) = std::sync::mpsc::channel();
        let dir = t.path().to_path_buf();
        std::thread::spawn(move || {
            let mut loader = Loader::new(&dir, DEFAULT_MAX_FILE_SIZE);
            let mut scan = Scan {
                files: Vec::new(),
                diagnostics: Vec::new(),
                read: 0,
                parsed: 0,
            };
            let state = loader.load(&w.found[0], &w.root, true, &mut scan);
            let _ = tx.send(state.is_none());
        });
        let skipped = rx.recv_timeout(std::time::Duration::from_secs(10));
        // Unblock a reader stuck in open(2), if the check failed, so the test can end.
        let _ = fs::OpenOptions::new()
            .write(true)
            .custom_flags(0o4000)
            .open(t.path().join("pipe.yaml"));
        assert_eq!(skipped, Ok(true), "the read of a FIFO blocked");
    }

    /// A subdirectory deleted between its listing and its reading is gone, like a file.
    #[test]
    fn a_subdirectory_that_vanished_is_gone_not_an_error() {
        let t = tempfile::tempdir().unwrap();
        let mut w = walk(t.path()).unwrap();
        w.dir(&t.path().join("gone"), "gone");
        assert!(w.diagnostics.is_empty(), "{:?}", w.diagnostics);
        assert!(w.unreadable.is_empty());
        // One that exists but cannot be read is kept in mind.
        write(t.path(), "file.yaml", "f");
        w.dir(&t.path().join("file.yaml"), "file.yaml");
        assert_eq!(w.diagnostics.len(), 1);
        assert_eq!(w.unreadable, ["file.yaml"]);
    }

    #[test]
    fn the_loader_rereads_only_what_changed() {
        let t = tempfile::tempdir().unwrap();
        write(t.path(), "a.yaml", "a");
        write(t.path(), "b.yaml", "b");
        let mut loader = Loader::new(t.path(), DEFAULT_MAX_FILE_SIZE);
        let first = loader.scan(false).unwrap();
        assert_eq!(first.parsed, 2);
        // Freshly written files are racy, so they are read again, but not parsed again.
        let second = loader.scan(false).unwrap();
        assert_eq!(second.parsed, 0);
        assert!(Arc::ptr_eq(&first.files[0].parsed, &second.files[0].parsed));
        write(t.path(), "b.yaml", "bb");
        let third = loader.scan(false).unwrap();
        assert_eq!(third.parsed, 1);
        assert_eq!(third.files[1].parsed.mappings[0].id.name, "bb");
        fs::remove_file(t.path().join("a.yaml")).unwrap();
        assert_eq!(loader.scan(false).unwrap().files.len(), 1);
    }

    /// What a scan says, without the cache's identity: each file and what it parsed to.
    fn seen(scan: &Scan) -> Vec<(String, ParsedFile)> {
        scan.files
            .iter()
            .map(|f| (f.rel.clone(), (*f.parsed).clone()))
            .collect()
    }

    #[test]
    fn a_scan_of_named_paths_reads_only_those_and_sees_what_a_full_scan_sees() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        write(d, "a.yaml", "a");
        write(d, "sub/b.yaml", "b");
        let mut loader = Loader::new(d, DEFAULT_MAX_FILE_SIZE);
        loader.scan(false).unwrap();
        // An edit through a hidden temporary file renamed into place.
        fs::write(d.join(".a.tmp"), M.replace("NAME", "a2")).unwrap();
        fs::rename(d.join(".a.tmp"), d.join("a.yaml")).unwrap();
        let scan = loader
            .scan_paths(&[d.join(".a.tmp"), d.join("a.yaml")])
            .unwrap();
        assert_eq!((scan.read, scan.parsed), (1, 1));
        assert_eq!(scan.files[0].parsed.mappings[0].id.name, "a2");
        assert_eq!(scan.files.len(), 2);
        // A new file beside known ones, a file removed, a file that is not YAML.
        write(d, "sub/c.yaml", "c");
        fs::remove_file(d.join("a.yaml")).unwrap();
        fs::write(d.join("notes.txt"), "x").unwrap();
        let scan = loader
            .scan_paths(&[d.join("sub/c.yaml"), d.join("a.yaml"), d.join("notes.txt")])
            .unwrap();
        assert_eq!(scan.read, 1);
        let full = Loader::new(d, DEFAULT_MAX_FILE_SIZE).scan(false).unwrap();
        assert_eq!(seen(&scan), seen(&full));
        assert_eq!(scan.files.len(), 2);
    }

    #[test]
    fn a_scan_of_named_paths_lists_everything_when_they_are_not_plain_files() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        write(d, "a.yaml", "a");
        write(d, "sub/b.yaml", "b");
        let mut loader = Loader::new(d, DEFAULT_MAX_FILE_SIZE);
        loader.scan(false).unwrap();
        // A directory removed (named alone), a new directory (only its file named).
        fs::remove_dir_all(d.join("sub")).unwrap();
        write(d, "new/c.yaml", "c");
        let scan = loader.scan_paths(&[d.join("sub")]).unwrap();
        assert_eq!(
            seen(&scan),
            seen(&Loader::new(d, DEFAULT_MAX_FILE_SIZE).scan(false).unwrap())
        );
        write(d, "other/e.yaml", "e");
        let scan = loader.scan_paths(&[d.join("other/e.yaml")]).unwrap();
        assert!(scan.files.iter().any(|f| f.rel == "other/e.yaml"));
        // A symlink anywhere makes every later scan a full one.
        symlink("a.yaml", d.join("link.yaml")).unwrap();
        let scan = loader.scan_paths(&[d.join("link.yaml")]).unwrap();
        assert!(scan.files.iter().any(|f| f.rel == "link.yaml"));
        write(d, "a.yaml", "a3");
        let scan = loader.scan_paths(&[d.join("a.yaml")]).unwrap();
        assert_eq!(
            seen(&scan),
            seen(&Loader::new(d, DEFAULT_MAX_FILE_SIZE).scan(false).unwrap())
        );
    }

    /// One change to the tree, and the paths a watcher names for it.
    #[derive(Clone, Debug)]
    enum Op {
        Write(usize, usize, u8),
        Remove(usize, usize),
        RemoveDir(usize),
        Hidden(usize),
        RenameInto(usize, usize, u8),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0..3usize, 0..4usize, any::<u8>()).prop_map(|(d, f, v)| Op::Write(d, f, v)),
            (0..3usize, 0..4usize).prop_map(|(d, f)| Op::Remove(d, f)),
            (1..3usize).prop_map(Op::RemoveDir),
            (0..3usize).prop_map(Op::Hidden),
            (0..3usize, 0..4usize, any::<u8>()).prop_map(|(d, f, v)| Op::RenameInto(d, f, v)),
        ]
    }

    fn apply(root: &Path, op: &Op) -> Vec<PathBuf> {
        let dir = |d: usize| {
            if d == 0 {
                root.to_path_buf()
            } else {
                root.join(format!("d{d}"))
            }
        };
        let file = |d: usize, f: usize| dir(d).join(format!("f{f}.yaml"));
        match *op {
            Op::Write(d, f, v) => {
                let created = !dir(d).exists();
                fs::create_dir_all(dir(d)).unwrap();
                fs::write(file(d, f), M.replace("NAME", &format!("n{d}x{f}v{v}"))).unwrap();
                if created {
                    vec![dir(d), file(d, f)]
                } else {
                    vec![file(d, f)]
                }
            }
            Op::Remove(d, f) => {
                let _ = fs::remove_file(file(d, f));
                vec![file(d, f)]
            }
            Op::RemoveDir(d) => {
                let mut paths: Vec<PathBuf> = fs::read_dir(dir(d))
                    .map(|r| r.flatten().map(|e| e.path()).collect())
                    .unwrap_or_default();
                let _ = fs::remove_dir_all(dir(d));
                paths.push(dir(d));
                paths
            }
            Op::Hidden(d) => {
                fs::create_dir_all(dir(d)).unwrap();
                let p = dir(d).join(".swap.yaml");
                fs::write(&p, "not: [yaml").unwrap();
                vec![dir(d), p]
            }
            Op::RenameInto(d, f, v) => {
                fs::create_dir_all(dir(d)).unwrap();
                let tmp = dir(d).join(".tmp");
                fs::write(&tmp, M.replace("NAME", &format!("r{d}x{f}v{v}"))).unwrap();
                fs::rename(&tmp, file(d, f)).unwrap();
                vec![dir(d), tmp, file(d, f)]
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        /// Whatever happens to the tree, a scan of the paths the watcher named sees what a
        /// full scan from scratch sees.
        #[test]
        fn named_scans_agree_with_full_scans(ops in prop::collection::vec(op(), 1..16)) {
            let t = tempfile::tempdir().unwrap();
            let d = t.path();
            write(d, "f0.yaml", "start");
            let mut loader = Loader::new(d, DEFAULT_MAX_FILE_SIZE);
            loader.scan(false).unwrap();
            for op in &ops {
                let paths = apply(d, op);
                let named = loader.scan_paths(&paths).unwrap();
                let full = Loader::new(d, DEFAULT_MAX_FILE_SIZE).scan(false).unwrap();
                prop_assert_eq!(seen(&named), seen(&full), "after {:?}", op);
            }
        }
    }
}
