//! `--state-dir`: the last good state, kept on disk across restarts.
//!
//! Two things are kept:
//! - the last good content of every file (`files/<sha256 of its path>`, the path on the first
//!   line), so that a restart with a broken file on disk still serves that file's last good
//!   content;
//! - the resource sets served most recently (`served.bin`), so that an Envoy reconnecting after
//!   a restart is understood (which clusters it holds, which its routes use) and
//!   make-before-break resumes where it stopped.
//!
//! Every write goes to a temporary file (a name no other write uses), flushed, renamed into
//! place, and its directory flushed: a crash never leaves half a file, and a write that
//! finished survives a power cut. A lock file keeps a second `serve` out of the directory.

mod codec;
mod write;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use sha2::{Digest, Sha256};

use crate::input::Content;
use crate::reload::Reloader;
use crate::xds::Hub;
use crate::xds::resource::{Kind, Resource, ResourceSet};
use codec::{decode_sets, encode_sets, hex};
use write::{Disk, Fs, Staged, TEMP_SUFFIX, commit};

const FILE_HEADER: &str = "# canary-xds last good content of: ";

/// The lock file: held (`flock`) by the `serve` using the directory, for as long as it runs.
const LOCK_FILE: &str = "lock";

/// Why the state directory cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("--state-dir {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("--state-dir {path}: {what}")]
    Corrupt { path: PathBuf, what: String },
    /// Another process holds the lock: two writers would overwrite each other's state.
    #[error(
        "--state-dir {path}: another canary-xds serve is using this directory (it holds \
         {path}/lock); give each serve its own --state-dir"
    )]
    Locked { path: PathBuf },
}

/// A state directory, locked for as long as this value lives.
pub struct StateDir {
    root: PathBuf,
    /// What is on disk: file path -> digest of its content.
    stored: HashMap<String, [u8; 32]>,
    disk: Box<dyn Disk>,
    _lock: fs::File,
}

/// What a state directory held at start-up.
#[derive(Default)]
pub struct Saved {
    /// Last good content of each file, by path relative to the watched directory.
    pub files: BTreeMap<String, Vec<u8>>,
    /// The sets served last.
    pub sets: Vec<(Kind, ResourceSet)>,
    /// What could not be read back (a cache left out), for the log.
    pub warnings: Vec<StateError>,
}

/// What one `StateDir::keep` writes.
pub struct Update<'a> {
    /// Files accepted with new content, and that content.
    pub files: &'a [(String, Content)],
    /// Whether a file still exists: the others are forgotten.
    pub present: &'a dyn Fn(&str) -> bool,
    /// The sets served most recently.
    pub sets: &'a [(Kind, Vec<Arc<Resource>>)],
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StateError + '_ {
    move |source| StateError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn file_name(rel: &str) -> String {
    hex(&Sha256::digest(rel.as_bytes()))
}

/// Reads and decodes a cache file: `None` when it is not there, or (with a warning) when it
/// cannot be read or decoded.
fn read_cache<T>(
    path: &Path,
    decode: fn(&[u8]) -> Result<T, String>,
    warnings: &mut Vec<StateError>,
) -> Option<T> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
        Err(e) => {
            warnings.push(io_err(path)(e));
            return None;
        }
    };
    match decode(&bytes) {
        Ok(value) => Some(value),
        Err(what) => {
            warnings.push(StateError::Corrupt {
                path: path.to_path_buf(),
                what,
            });
            None
        }
    }
}

/// Takes the directory's lock, or says who holds it.
fn lock(root: &Path) -> Result<fs::File, StateError> {
    let path = root.join(LOCK_FILE);
    let file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io_err(&path))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(fs::TryLockError::WouldBlock) => Err(StateError::Locked {
            path: root.to_path_buf(),
        }),
        Err(fs::TryLockError::Error(e)) => Err(io_err(&path)(e)),
    }
}

/// Removes the temporary files a crash left in `dir` (only the lock holder writes there).
fn clear_temporaries(dir: &Path) -> Result<(), StateError> {
    for entry in fs::read_dir(dir).map_err(io_err(dir))? {
        let path = entry.map_err(io_err(dir))?.path();
        if path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.ends_with(TEMP_SUFFIX))
        {
            let _ = fs::remove_file(&path);
        }
    }
    Ok(())
}

impl StateDir {
    /// Opens (creating if needed) and locks a state directory, and reads what it holds.
    pub fn open(root: &Path) -> Result<(StateDir, Saved), StateError> {
        StateDir::open_with(root, Box::new(Fs))
    }

    fn open_with(root: &Path, disk: Box<dyn Disk>) -> Result<(StateDir, Saved), StateError> {
        let files_dir = root.join("files");
        fs::create_dir_all(&files_dir).map_err(io_err(&files_dir))?;
        let lock = lock(root)?;
        clear_temporaries(root)?;
        clear_temporaries(&files_dir)?;
        let mut saved = Saved::default();
        let mut stored = HashMap::new();
        for entry in fs::read_dir(&files_dir).map_err(io_err(&files_dir))? {
            let entry = entry.map_err(io_err(&files_dir))?;
            let path = entry.path();
            let bytes = fs::read(&path).map_err(io_err(&path))?;
            let Some(rest) = bytes.strip_prefix(FILE_HEADER.as_bytes()) else {
                continue;
            };
            let Some(newline) = rest.iter().position(|&b| b == b'\n') else {
                continue;
            };
            let Ok(rel) = std::str::from_utf8(&rest[..newline]) else {
                continue;
            };
            let content = rest[newline + 1..].to_vec();
            stored.insert(rel.to_string(), Sha256::digest(&content).into());
            saved.files.insert(rel.to_string(), content);
        }
        // Caches of what was served: one that cannot be read back is a warning, never a
        // reason not to start (Envoys then reconnect as after a restart without them).
        let served = root.join("served.bin");
        if let Some(sets) = read_cache(&served, decode_sets, &mut saved.warnings) {
            saved.sets = sets;
        }
        // Releases before content-only versions kept the runtime layer's base weights here.
        // What is served is now a function of the files alone: an old file is not read.
        let _ = fs::remove_file(root.join("bases.json"));
        Ok((
            StateDir {
                root: root.to_path_buf(),
                stored,
                disk,
                _lock: lock,
            },
            saved,
        ))
    }

    /// Writes what changed, in one durable commit (`write::commit`): the files whose content
    /// is not the one stored, the removal of files no longer present, and the sets.
    /// Returns the errors met; whatever could not be written keeps its previous content.
    pub fn keep(&mut self, update: Update<'_>) -> Vec<StateError> {
        let files_dir = self.root.join("files");
        let mut staged = Vec::with_capacity(update.files.len() + 2);
        let mut wrote: HashMap<PathBuf, (&str, [u8; 32])> = HashMap::new();
        for (rel, content) in update.files {
            if self.stored.get(rel) == Some(&content.digest) {
                continue;
            }
            let path = files_dir.join(file_name(rel));
            let mut head = Vec::with_capacity(FILE_HEADER.len() + rel.len() + 1);
            head.extend_from_slice(FILE_HEADER.as_bytes());
            head.extend_from_slice(rel.as_bytes());
            head.push(b'\n');
            wrote.insert(path.clone(), (rel, content.digest));
            staged.push(Staged {
                path,
                head,
                body: content.bytes.clone(),
            });
        }
        let gone: Vec<String> = self
            .stored
            .keys()
            .filter(|r| !(update.present)(r))
            .cloned()
            .collect();
        let remove: Vec<PathBuf> = gone.iter().map(|r| files_dir.join(file_name(r))).collect();
        for rel in &gone {
            self.stored.remove(rel);
        }
        staged.push(Staged {
            path: self.root.join("served.bin"),
            head: encode_sets(update.sets),
            body: Bytes::new(),
        });
        let (written, errors) = commit(self.disk.as_ref(), staged, &remove);
        for path in written {
            if let Some((rel, digest)) = wrote.remove(&path) {
                self.stored.insert(rel.to_string(), digest);
            }
        }
        errors
    }
}

/// How many generations of served sets `--state-dir` keeps: the current one and the one before,
/// which covers an Envoy caught in the middle of a change.
const PERSISTED_GENERATIONS: u64 = 2;

/// Writes the last good files and the sets served to `--state-dir`, off the async threads.
/// A file's content is the bytes the reload accepted, never the file read again: by now the
/// path may name something else (a FIFO would block, a link to `/dev/zero` never ends).
/// A failure is logged, never fatal: serving goes on.
pub(super) async fn persist(
    mut state: StateDir,
    reloader: &Reloader,
    hub: &Hub,
    accepted: Vec<(String, Content)>,
) -> Option<StateDir> {
    let present: BTreeSet<String> = reloader
        .good_files()
        .map(|(rel, _)| rel.to_string())
        .collect();
    let sets = hub.with_archive(|a| a.recent(PERSISTED_GENERATIONS));
    let result = tokio::task::spawn_blocking(move || {
        let errors = state.keep(Update {
            files: &accepted,
            present: &|rel| present.contains(rel),
            sets: &sets,
        });
        (state, errors)
    })
    .await;
    match result {
        Ok((state, errors)) => {
            for e in errors {
                tracing::warn!("cannot keep the state: {e}");
            }
            Some(state)
        }
        Err(e) => {
            tracing::error!("keeping the state failed ({e}); --state-dir is no longer updated");
            None
        }
    }
}

#[cfg(test)]
mod tests;
