use super::*;

use std::sync::Mutex;

fn sets(route: &Arc<Resource>, cluster: &Arc<Resource>) -> Vec<(Kind, Vec<Arc<Resource>>)> {
    vec![
        (Kind::Route, vec![Arc::clone(route)]),
        (Kind::Cluster, vec![Arc::clone(cluster)]),
    ]
}

fn route_and_cluster() -> (Arc<Resource>, Arc<Resource>) {
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
    (route, cluster)
}

fn keep(
    s: &mut StateDir,
    files: &[(&str, &str)],
    present: &dyn Fn(&str) -> bool,
    sets: &[(Kind, Vec<Arc<Resource>>)],
) -> Vec<StateError> {
    let files: Vec<(String, Content)> = files
        .iter()
        .map(|(rel, text)| (rel.to_string(), Content::new(text.as_bytes().to_vec())))
        .collect();
    s.keep(Update {
        files: &files,
        present,
        sets,
    })
}

#[test]
fn files_and_sets_survive_a_restart() {
    let t = tempfile::tempdir().unwrap();
    let (mut s, saved) = StateDir::open(t.path()).unwrap();
    assert!(saved.files.is_empty() && saved.sets.is_empty());
    let files = [("a/b.yaml", "kind: Mapping\n"), ("gone.yaml", "x")];
    assert!(keep(&mut s, &files, &|_| true, &[]).is_empty());
    let (route, cluster) = route_and_cluster();
    let errors = keep(&mut s, &[], &|r| r != "gone.yaml", &sets(&route, &cluster));
    assert!(errors.is_empty(), "{errors:?}");
    drop(s);

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
fn a_corrupt_sets_file_is_a_warning_not_a_panic() {
    let t = tempfile::tempdir().unwrap();
    fs::write(t.path().join("served.bin"), b"\xff\xff\xff garbage").unwrap();
    let (_, saved) = StateDir::open(t.path()).expect("a corrupt cache does not stop a start");
    assert!(matches!(&saved.warnings[..], [StateError::Corrupt { .. }]));
    assert!(saved.sets.is_empty());
}

/// A good state: one file and two sets.
fn good_state(root: &Path) {
    let (mut s, _) = StateDir::open(root).unwrap();
    let (route, cluster) = route_and_cluster();
    let files = [("a.yaml".to_string(), Content::new(&b"kind: Mapping\n"[..]))];
    let errors = s.keep(Update {
        files: &files,
        present: &|_| true,
        sets: &sets(&route, &cluster),
    });
    assert!(errors.is_empty(), "{errors:?}");
}

#[test]
fn corrupt_caches_are_warnings_and_left_out_never_a_failed_start() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    good_state(root);
    let good_sets = fs::read(root.join("served.bin")).unwrap();
    let corruptions: [(&str, &str, Vec<u8>); 3] = [
        (
            "served.bin",
            "truncated",
            good_sets[..good_sets.len() / 2].to_vec(),
        ),
        ("served.bin", "NUL-filled", vec![0; good_sets.len()]),
        ("served.bin", "garbage", b"\xff\xff\xff garbage".to_vec()),
    ];
    for (name, how, bytes) in corruptions {
        fs::write(root.join(name), bytes).unwrap();
        let (_, saved) =
            StateDir::open(root).unwrap_or_else(|e| panic!("{name} {how} stopped the start: {e}"));
        let [StateError::Corrupt { path, .. }] = &saved.warnings[..] else {
            panic!("{name} {how}: {:?}", saved.warnings);
        };
        assert_eq!(path, &root.join(name), "{how}");
        // That cache is left out; the rest is read as usual.
        assert!(saved.sets.is_empty(), "{name} {how}");
        assert_eq!(saved.files.len(), 1, "{name} {how}");
    }
    // One that cannot be read at all (a directory in its place) is a warning too.
    fs::remove_file(root.join("served.bin")).unwrap();
    fs::create_dir(root.join("served.bin")).unwrap();
    let (_, saved) = StateDir::open(root).expect("starts");
    assert!(
        matches!(&saved.warnings[..], [StateError::Io { .. }]),
        "{:?}",
        saved.warnings
    );
    assert!(saved.sets.is_empty());
}

/// What is served is a function of the files alone: the base weights an earlier release kept
/// in `bases.json` are not read (corrupt or not), and the file goes.
#[test]
fn an_old_bases_file_is_ignored_and_removed() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    good_state(root);
    for old in [
        &b"{\"default\":{\"structure\":\"00\",\"bases\":{}}}"[..],
        &[0; 64][..],
    ] {
        fs::write(root.join("bases.json"), old).unwrap();
        let (_, saved) = StateDir::open(root).expect("starts");
        assert!(saved.warnings.is_empty(), "{:?}", saved.warnings);
        assert!(!root.join("bases.json").exists());
        assert_eq!(saved.files.len(), 1);
    }
}

#[test]
fn persist_keeps_the_bytes_accepted_whatever_the_path_holds_now() {
    use std::time::{Duration, Instant};

    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("m");
    fs::create_dir(&dir).unwrap();
    let fifo_text = "apiVersion: ambassador/v1\nkind: Mapping\nname: a\nprefix: /a/\nservice: a\n";
    let zero_text = "apiVersion: ambassador/v1\nkind: Mapping\nname: b\nprefix: /b/\nservice: b\n";
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

/// What a `Recorder` saw.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Call {
    /// A file flushed, and its length then.
    SyncFile(PathBuf, u64),
    Rename(PathBuf, PathBuf),
    SyncDir(PathBuf),
}

/// The file system, recording each call that makes a write durable.
struct Recorder(Arc<Mutex<Vec<Call>>>);

impl Disk for Recorder {
    fn sync_file(&self, file: &fs::File, path: &Path) -> io::Result<()> {
        let len = file.metadata()?.len();
        Fs.sync_file(file, path)?;
        self.0
            .lock()
            .unwrap()
            .push(Call::SyncFile(path.to_path_buf(), len));
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        Fs.rename(from, to)?;
        self.0
            .lock()
            .unwrap()
            .push(Call::Rename(from.to_path_buf(), to.to_path_buf()));
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        Fs.sync_dir(dir)?;
        self.0
            .lock()
            .unwrap()
            .push(Call::SyncDir(dir.to_path_buf()));
        Ok(())
    }
}

#[test]
fn each_file_is_flushed_whole_before_its_rename_and_its_directory_after() {
    let t = tempfile::tempdir().unwrap();
    let calls = Arc::new(Mutex::new(Vec::new()));
    let (mut s, _) = StateDir::open_with(t.path(), Box::new(Recorder(Arc::clone(&calls)))).unwrap();
    let (route, cluster) = route_and_cluster();
    let files = [("a.yaml", "kind: Mapping\n"), ("b/c.yaml", "x")];
    let errors = keep(&mut s, &files, &|_| true, &sets(&route, &cluster));
    assert!(errors.is_empty(), "{errors:?}");
    let calls = std::mem::take(&mut *calls.lock().unwrap());

    let renames: Vec<(usize, &PathBuf, &PathBuf)> = calls
        .iter()
        .enumerate()
        .filter_map(|(i, c)| match c {
            Call::Rename(from, to) => Some((i, from, to)),
            _ => None,
        })
        .collect();
    // Two Mapping files and the sets.
    assert_eq!(renames.len(), 3, "{calls:#?}");
    for (at, from, to) in &renames {
        let final_len = fs::metadata(to).unwrap().len();
        let synced = calls[..*at]
            .iter()
            .any(|c| *c == Call::SyncFile(from.to_path_buf(), final_len));
        assert!(
            synced,
            "{from:?} is renamed before it is flushed whole: {calls:#?}"
        );
        let parent = to.parent().unwrap().to_path_buf();
        let dir_synced = calls[*at..].contains(&Call::SyncDir(parent.clone()));
        assert!(
            dir_synced,
            "{parent:?} is not flushed after the rename: {calls:#?}"
        );
        assert!(
            from.to_str().unwrap().ends_with(TEMP_SUFFIX) && from.parent() == to.parent(),
            "{from:?}"
        );
    }
    // Each directory once, after its last rename.
    let dirs: Vec<&Call> = calls
        .iter()
        .filter(|c| matches!(c, Call::SyncDir(_)))
        .collect();
    assert_eq!(dirs.len(), 2, "{calls:#?}");
    assert!(matches!(calls.last(), Some(Call::SyncDir(_))));

    // A file forgotten: its directory is flushed after the removal.
    let calls_now = {
        let log = Arc::new(Mutex::new(Vec::new()));
        s.disk = Box::new(Recorder(Arc::clone(&log)));
        let errors = keep(&mut s, &[], &|r| r != "a.yaml", &sets(&route, &cluster));
        assert!(errors.is_empty(), "{errors:?}");
        std::mem::take(&mut *log.lock().unwrap())
    };
    assert!(!t.path().join("files").join(file_name("a.yaml")).exists());
    assert!(
        calls_now.contains(&Call::SyncDir(t.path().join("files"))),
        "{calls_now:#?}"
    );
}

#[test]
fn a_second_writer_is_refused_while_the_first_holds_the_directory() {
    let t = tempfile::tempdir().unwrap();
    let (first, _) = StateDir::open(t.path()).unwrap();
    let second = StateDir::open(t.path());
    let Err(e @ StateError::Locked { .. }) = second else {
        panic!("a second writer opened the directory");
    };
    assert!(
        e.to_string()
            .contains("another canary-xds serve is using this directory"),
        "{e}"
    );
    drop(first);
    StateDir::open(t.path()).expect("free again once the first is gone");
}

#[test]
fn temporary_names_are_never_shared_and_a_crash_s_are_cleared() {
    let t = tempfile::tempdir().unwrap();
    let path = t.path().join("served.bin");
    let (a, b) = (write::temp_path(&path), write::temp_path(&path));
    assert_ne!(a, b);
    let pid = std::process::id().to_string();
    assert!(a.to_str().unwrap().contains(&pid), "{a:?}");

    // Left by a crash, in both directories: cleared, and never read as kept files.
    fs::create_dir_all(t.path().join("files")).unwrap();
    let left = [
        t.path().join("served.bin.1234-5.tmp"),
        t.path()
            .join("files")
            .join(format!("{}.1234-6.tmp", file_name("a.yaml"))),
    ];
    for p in &left {
        fs::write(p, format!("{FILE_HEADER}a.yaml\nhalf")).unwrap();
    }
    let (_, saved) = StateDir::open(t.path()).unwrap();
    assert!(saved.files.is_empty(), "{:?}", saved.files);
    for p in &left {
        assert!(!p.exists(), "{p:?}");
    }
}
