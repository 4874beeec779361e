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
//! Every write goes to a temporary file renamed into place, so a crash never leaves half a file.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryResponse, Resource as XdsResource,
};
use envoy_types::pb::google::protobuf::Any;
use prost::Message;
use sha2::{Digest, Sha256};

use crate::envoy::snapshot::FleetBases;
use crate::input::Content;
use crate::reload::Reloader;
use crate::xds::Hub;
use crate::xds::resource::{Kind, Resource, ResourceSet};

const FILE_HEADER: &str = "# canary-xds last good content of: ";

/// Why the state directory cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("--state-dir {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("--state-dir {path}: {what}")]
    Corrupt { path: PathBuf, what: String },
}

/// A state directory.
pub struct StateDir {
    root: PathBuf,
    /// What is on disk: file path -> digest of its content.
    stored: HashMap<String, [u8; 32]>,
}

/// What a state directory held at start-up.
#[derive(Default)]
pub struct Saved {
    /// Last good content of each file, by path relative to the watched directory.
    pub files: BTreeMap<String, Vec<u8>>,
    /// The sets served last.
    pub sets: Vec<(Kind, ResourceSet)>,
    /// The base weights of the runtime route configurations, by fleet.
    pub bases: HashMap<String, FleetBases>,
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StateError + '_ {
    move |source| StateError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), StateError> {
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, bytes).map_err(io_err(&tmp))?;
    fs::rename(&tmp, path).map_err(io_err(path))
}

fn file_name(rel: &str) -> String {
    Sha256::digest(rel.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl StateDir {
    /// Opens (creating if needed) a state directory and reads what it holds.
    pub fn open(root: &Path) -> Result<(StateDir, Saved), StateError> {
        let files_dir = root.join("files");
        fs::create_dir_all(&files_dir).map_err(io_err(&files_dir))?;
        let mut saved = Saved::default();
        let mut stored = HashMap::new();
        for entry in fs::read_dir(&files_dir).map_err(io_err(&files_dir))? {
            let entry = entry.map_err(io_err(&files_dir))?;
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "tmp") {
                let _ = fs::remove_file(&path);
                continue;
            }
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
        let served = root.join("served.bin");
        match fs::read(&served) {
            Ok(bytes) => {
                saved.sets = decode_sets(&bytes).map_err(|what| StateError::Corrupt {
                    path: served.clone(),
                    what,
                })?
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&served)(e)),
        }
        let bases_path = root.join("bases.json");
        match fs::read(&bases_path) {
            Ok(bytes) => {
                saved.bases = decode_bases(&bytes).map_err(|what| StateError::Corrupt {
                    path: bases_path.clone(),
                    what,
                })?
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&bases_path)(e)),
        }
        Ok((
            StateDir {
                root: root.to_path_buf(),
                stored,
            },
            saved,
        ))
    }

    /// Keeps `content` as the last good content of `rel`, unless that is what is stored.
    pub fn keep_file(&mut self, rel: &str, content: &Content) -> Result<(), StateError> {
        if self.stored.get(rel) == Some(&content.digest) {
            return Ok(());
        }
        let mut bytes = Vec::with_capacity(content.bytes.len() + rel.len() + 40);
        bytes.extend_from_slice(FILE_HEADER.as_bytes());
        bytes.extend_from_slice(rel.as_bytes());
        bytes.push(b'\n');
        bytes.extend_from_slice(&content.bytes);
        write_atomically(&self.root.join("files").join(file_name(rel)), &bytes)?;
        self.stored.insert(rel.to_string(), content.digest);
        Ok(())
    }

    /// Forgets files that no longer exist.
    pub fn retain_files(&mut self, present: &dyn Fn(&str) -> bool) -> Result<(), StateError> {
        let gone: Vec<String> = self
            .stored
            .keys()
            .filter(|r| !present(r))
            .cloned()
            .collect();
        for rel in gone {
            let path = self.root.join("files").join(file_name(&rel));
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err(&path)(e)),
            }
            self.stored.remove(&rel);
        }
        Ok(())
    }

    /// Replaces the base weights kept, so a restart serves the very route configurations an
    /// Envoy with the runtime layer already holds.
    pub fn keep_bases(&self, bases: &HashMap<String, FleetBases>) -> Result<(), StateError> {
        write_atomically(&self.root.join("bases.json"), &encode_bases(bases))
    }

    /// Replaces the sets kept as served.
    pub fn keep_sets(&self, sets: &[(Kind, Vec<Arc<Resource>>)]) -> Result<(), StateError> {
        write_atomically(&self.root.join("served.bin"), &encode_sets(sets))
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Result<[u8; 32], String> {
    if s.len() != 64 {
        return Err(format!("{s:?} is not a 32-byte hex digest"));
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).map_err(|e| e.to_string())?;
    }
    Ok(out)
}

/// The bases file: JSON, `{fleet: {"structure": hex, "bases": {hex: [weights]}}}`.
fn encode_bases(bases: &HashMap<String, FleetBases>) -> Vec<u8> {
    let v: BTreeMap<&str, serde_json::Value> = bases
        .iter()
        .map(|(fleet, b)| {
            let routes: BTreeMap<String, &Vec<u32>> =
                b.bases.iter().map(|(k, w)| (hex(k), w)).collect();
            (
                fleet.as_str(),
                serde_json::json!({"structure": hex(&b.structure), "bases": routes}),
            )
        })
        .collect();
    serde_json::to_vec(&v).expect("JSON serializes")
}

fn decode_bases(bytes: &[u8]) -> Result<HashMap<String, FleetBases>, String> {
    let v: BTreeMap<String, serde_json::Value> =
        serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    let mut out = HashMap::new();
    for (fleet, b) in v {
        let structure = unhex(b["structure"].as_str().ok_or("no structure")?)?;
        let mut bases = HashMap::new();
        for (k, w) in b["bases"].as_object().ok_or("no bases")? {
            let weights: Vec<u32> = serde_json::from_value(w.clone()).map_err(|e| e.to_string())?;
            bases.insert(unhex(k)?, weights);
        }
        out.insert(fleet, FleetBases { structure, bases });
    }
    Ok(out)
}

/// The sets file: per kind, one message with every resource (payload included, once), then one
/// message per set listing its members by name and version. A route configuration's clusters
/// travel in `aliases`.
fn encode_sets(sets: &[(Kind, Vec<Arc<Resource>>)]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut all: BTreeMap<(Kind, &str, &str), &Arc<Resource>> = BTreeMap::new();
    for (kind, items) in sets {
        for r in items {
            all.insert((*kind, &r.name, &r.version), r);
        }
    }
    for kind in Kind::ALL {
        let resources: Vec<XdsResource> = all
            .iter()
            .filter(|((k, _, _), _)| *k == kind)
            .map(|(_, r)| XdsResource {
                name: r.name.clone(),
                version: r.version.clone(),
                aliases: r.refs.to_vec(),
                resource: Any::decode(r.any.as_ref()).ok(),
                ..Default::default()
            })
            .collect();
        let block = DeltaDiscoveryResponse {
            type_url: kind.type_url().to_string(),
            resources,
            ..Default::default()
        };
        block
            .encode_length_delimited(&mut out)
            .expect("a Vec grows");
    }
    for (kind, items) in sets {
        let set = DeltaDiscoveryResponse {
            type_url: kind.type_url().to_string(),
            system_version_info: "set".into(),
            resources: items
                .iter()
                .map(|r| XdsResource {
                    name: r.name.clone(),
                    version: r.version.clone(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        };
        set.encode_length_delimited(&mut out).expect("a Vec grows");
    }
    out
}

fn decode_sets(mut bytes: &[u8]) -> Result<Vec<(Kind, ResourceSet)>, String> {
    let mut resources: HashMap<(Kind, String, String), Arc<Resource>> = HashMap::new();
    let mut sets = Vec::new();
    while !bytes.is_empty() {
        let msg = DeltaDiscoveryResponse::decode_length_delimited(&mut bytes)
            .map_err(|e| e.to_string())?;
        let kind = Kind::from_type_url(&msg.type_url)
            .ok_or_else(|| format!("unknown type {}", msg.type_url))?;
        if msg.system_version_info == "set" {
            let mut items = BTreeMap::new();
            for r in msg.resources {
                let res = resources
                    .get(&(kind, r.name.clone(), r.version.clone()))
                    .ok_or_else(|| format!("set member {} is not stored", r.name))?;
                items.insert(r.name, Arc::clone(res));
            }
            sets.push((kind, ResourceSet::new(items)));
        } else {
            for r in msg.resources {
                let value = r.resource.map(|a| a.value).unwrap_or_default();
                let res = Resource::new(kind, r.name.clone(), r.version.clone(), value, r.aliases);
                resources.insert((kind, r.name, r.version), Arc::new(res));
            }
        }
    }
    Ok(sets)
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
    let bases = reloader.bases().clone();
    let result = tokio::task::spawn_blocking(move || {
        let mut errors = Vec::new();
        for (rel, content) in accepted {
            if let Err(e) = state.keep_file(&rel, &content) {
                errors.push(e.to_string());
            }
        }
        if let Err(e) = state.retain_files(&|rel| present.contains(rel)) {
            errors.push(e.to_string());
        }
        if let Err(e) = state.keep_sets(&sets) {
            errors.push(e.to_string());
        }
        if let Err(e) = state.keep_bases(&bases) {
            errors.push(e.to_string());
        }
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
mod tests {
    use super::*;

    #[test]
    fn files_and_sets_survive_a_restart() {
        let t = tempfile::tempdir().unwrap();
        let (mut s, saved) = StateDir::open(t.path()).unwrap();
        assert!(saved.files.is_empty() && saved.sets.is_empty());
        s.keep_file("a/b.yaml", &Content::new(&b"kind: Mapping\n"[..]))
            .unwrap();
        s.keep_file("gone.yaml", &Content::new(&b"x"[..])).unwrap();
        s.retain_files(&|r| r != "gone.yaml").unwrap();
        let route = Arc::new(Resource::new(
            Kind::Route,
            "canary-xds".into(),
            "r1".into(),
            vec![1, 2],
            vec!["qotm".into()],
        ));
        let cluster = Arc::new(Resource::new(
            Kind::Cluster,
            "qotm".into(),
            "c1".into(),
            vec![3],
            vec![],
        ));
        s.keep_sets(&[
            (Kind::Route, vec![Arc::clone(&route)]),
            (Kind::Cluster, vec![Arc::clone(&cluster)]),
        ])
        .unwrap();

        let (_, saved) = StateDir::open(t.path()).unwrap();
        assert_eq!(
            saved.files,
            BTreeMap::from([("a/b.yaml".to_string(), b"kind: Mapping\n".to_vec())])
        );
        assert_eq!(saved.sets.len(), 2);
        let (kind, set) = &saved.sets[0];
        assert_eq!(*kind, Kind::Route);
        let r = &set.items["canary-xds"];
        assert_eq!(r.as_ref(), route.as_ref());
        assert_eq!(&r.refs[..], ["qotm"]);
        assert_eq!(
            set.version,
            ResourceSet::new(BTreeMap::from([("canary-xds".to_string(), route)])).version
        );
    }

    #[test]
    fn a_corrupt_sets_file_is_an_error_not_a_panic() {
        let t = tempfile::tempdir().unwrap();
        fs::write(t.path().join("served.bin"), b"\xff\xff\xff garbage").unwrap();
        assert!(matches!(
            StateDir::open(t.path()),
            Err(StateError::Corrupt { .. })
        ));
    }

    #[test]
    fn persist_keeps_the_bytes_accepted_whatever_the_path_holds_now() {
        use std::time::{Duration, Instant};

        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("m");
        fs::create_dir(&dir).unwrap();
        let fifo_text =
            "apiVersion: ambassador/v1\nkind: Mapping\nname: a\nprefix: /a/\nservice: a\n";
        let zero_text =
            "apiVersion: ambassador/v1\nkind: Mapping\nname: b\nprefix: /b/\nservice: b\n";
        fs::write(dir.join("fifo.yaml"), fifo_text).unwrap();
        fs::write(dir.join("zero.yaml"), zero_text).unwrap();
        let mut reloader = Reloader::new(
            crate::input::Loader::new(&dir, crate::input::DEFAULT_MAX_FILE_SIZE),
            crate::envoy::snapshot::SnapshotBuilder::new(
                crate::serve::parse_listen(&[]).unwrap(),
                None,
            ),
            Duration::ZERO,
        );
        let outcome = reloader.reload(false, Instant::now());
        assert_eq!(outcome.accepted.len(), 2);
        let hub = Hub::new(outcome.served.expect("served").published);
        // Right after the reload, each file is swapped: for a FIFO no one writes to (reading
        // it blocks forever) and for a link to /dev/zero (reading it never ends).
        fs::remove_file(dir.join("fifo.yaml")).unwrap();
        let made = std::process::Command::new("mkfifo")
            .arg(dir.join("fifo.yaml"))
            .status();
        assert!(made.is_ok_and(|s| s.success()), "mkfifo");
        fs::remove_file(dir.join("zero.yaml")).unwrap();
        std::os::unix::fs::symlink("/dev/zero", dir.join("zero.yaml")).unwrap();

        let (state, _) = StateDir::open(&t.path().join("state")).unwrap();
        // In a thread of its own, so that a persist that blocks fails the test instead of
        // hanging it.
        let (done, kept) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap();
            let state = runtime.block_on(persist(state, &reloader, &hub, outcome.accepted));
            let kept = state.is_some();
            drop(state);
            let _ = done.send(kept);
        });
        let kept = kept
            .recv_timeout(Duration::from_secs(10))
            .expect("persist does not block on what the paths hold now");
        assert!(kept, "the state is kept");
        let (_, saved) = StateDir::open(&t.path().join("state")).unwrap();
        assert_eq!(
            saved.files,
            BTreeMap::from([
                ("fifo.yaml".to_string(), fifo_text.as_bytes().to_vec()),
                ("zero.yaml".to_string(), zero_text.as_bytes().to_vec()),
            ])
        );
    }
}
