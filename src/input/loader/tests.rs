//! Unit tests of walking, safe reading and loading a directory.

use std::os::unix::fs::{OpenOptionsExt, symlink};

use proptest::prelude::*;

use super::*;
use crate::input::walk::walk;
use crate::input::{ReadError, SourceError, list, read_limited};

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
