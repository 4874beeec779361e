//! Watching the directory: notify's callback only forwards events; an async loop turns them
//! into reloads.
//!
//! The first event of a burst is applied at once; events that arrive while a reload runs are
//! coalesced into one more reload. A bare write in place is the exception: the file is read once
//! its writer closes it or goes quiet (`in_place`), so a file written in steps is never served
//! half written. A missed event never leaves routing stale: a periodic full
//! rescan (and one after any watcher overflow or error) is the safety net, and a directory that
//! was deleted or replaced gets a new watch.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;

/// What the watcher tells the reload loop.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Signal {
    /// Something changed at these paths: read them now (created, renamed, removed, or closed
    /// after writing).
    Changed(Vec<PathBuf>),
    /// These files were written in place and may still be being written: read them once their
    /// writer closes them or goes quiet.
    Written(Vec<PathBuf>),
    /// Events may have been lost (overflow, watcher error): read everything again.
    Rescan,
    /// The directory itself went away: this watch is dead and must be started again.
    RootGone,
}

/// A live watch on a directory, and the identity of the directory it watches.
pub struct DirWatch {
    _watcher: RecommendedWatcher,
    identity: Option<(u64, u64)>,
    dir: PathBuf,
}

impl DirWatch {
    /// Starts watching `dir` recursively; events go to `tx`.
    pub fn start(
        dir: &Path,
        tx: mpsc::UnboundedSender<(Signal, Instant)>,
    ) -> notify::Result<DirWatch> {
        let root = dir.to_path_buf();
        let mut watcher =
            notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
                use notify::EventKind::{Access, Modify};
                use notify::event::{AccessKind, AccessMode, ModifyKind};
                let signal = match res {
                    // A writer is done with the file: read it now.
                    Ok(event)
                        if event.kind == Access(AccessKind::Close(AccessMode::Write))
                            && !event.paths.is_empty() =>
                    {
                        Signal::Changed(event.paths)
                    }
                    // Reading a file (ours, on every reload) is not a change: ignoring opens
                    // and closes after reading keeps a reload from triggering the next.
                    Ok(event) if matches!(event.kind, Access(_)) => return,
                    // Written in place (truncating sets the times too): maybe not finished.
                    Ok(event)
                        if matches!(
                            event.kind,
                            Modify(ModifyKind::Data(_) | ModifyKind::Metadata(_) | ModifyKind::Any)
                        ) && !event.paths.is_empty()
                            && !event.need_rescan() =>
                    {
                        Signal::Written(event.paths)
                    }
                    Ok(event) if event.need_rescan() => Signal::Rescan,
                    Ok(event)
                        if matches!(event.kind, notify::EventKind::Remove(_))
                            && event.paths.iter().any(|p| p == &root) =>
                    {
                        Signal::RootGone
                    }
                    // An event that names no path cannot narrow the reload.
                    Ok(event) if event.paths.is_empty() => Signal::Rescan,
                    Ok(event) => Signal::Changed(event.paths),
                    Err(_) => Signal::Rescan,
                };
                // The loop may be gone during shutdown; nothing to do then.
                let _ = tx.send((signal, Instant::now()));
            })?;
        watcher.watch(dir, RecursiveMode::Recursive)?;
        Ok(DirWatch {
            _watcher: watcher,
            identity: identity(dir),
            dir: dir.to_path_buf(),
        })
    }

    /// Whether the directory is still the one being watched (not deleted, not replaced).
    pub fn is_current(&self) -> bool {
        self.identity.is_some() && identity(&self.dir) == self.identity
    }
}

fn identity(dir: &Path) -> Option<(u64, u64)> {
    std::fs::metadata(dir).ok().map(|m| (m.dev(), m.ino()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn forwards_changes_and_notices_a_replaced_directory() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("m");
        std::fs::create_dir(&dir).unwrap();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let w = DirWatch::start(&dir, tx).unwrap();
        std::fs::write(dir.join("a.yaml"), "x").unwrap();
        let (signal, _) = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(signal, Signal::Changed(vec![dir.join("a.yaml")]));
        // Reading is not changing: no event, or every reload would cause the next.
        while tokio::time::timeout(Duration::from_millis(100), rx.recv())
            .await
            .is_ok()
        {}
        let _ = std::fs::read(dir.join("a.yaml")).unwrap();
        assert!(
            tokio::time::timeout(Duration::from_millis(300), rx.recv())
                .await
                .is_err(),
            "reading a file sent an event"
        );
        assert!(w.is_current());
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(!w.is_current());
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let (signal, _) = tokio::time::timeout_at(deadline.into(), rx.recv())
                .await
                .unwrap()
                .unwrap();
            if signal == Signal::RootGone {
                break;
            }
        }
    }

    /// Every signal that arrives within `quiet` of the last.
    async fn drain(
        rx: &mut mpsc::UnboundedReceiver<(Signal, Instant)>,
        quiet: Duration,
    ) -> Vec<Signal> {
        let mut out = Vec::new();
        while let Ok(Some((s, _))) = tokio::time::timeout(quiet, rx.recv()).await {
            out.push(s);
        }
        out
    }

    #[tokio::test]
    async fn a_write_in_place_is_changed_only_once_closed_and_a_rename_at_once() {
        use std::io::Write;
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("m");
        std::fs::create_dir(&dir).unwrap();
        let a = dir.join("a.yaml");
        std::fs::write(&a, "weight: 10\n").unwrap();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let _w = DirWatch::start(&dir, tx).unwrap();

        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&a)
            .unwrap();
        file.write_all(b"weight: 5").unwrap();
        let open = drain(&mut rx, Duration::from_millis(200)).await;
        assert!(!open.is_empty());
        for s in &open {
            assert_eq!(s, &Signal::Written(vec![a.clone()]), "{open:?}");
        }
        file.write_all(b"0\n").unwrap();
        drop(file);
        let closed = drain(&mut rx, Duration::from_millis(200)).await;
        assert_eq!(
            closed.last(),
            Some(&Signal::Changed(vec![a.clone()])),
            "{closed:?}"
        );

        let tmp = dir.join(".a.yaml.tmp");
        std::fs::write(&tmp, "weight: 60\n").unwrap();
        drain(&mut rx, Duration::from_millis(200)).await;
        std::fs::rename(&tmp, &a).unwrap();
        let renamed = drain(&mut rx, Duration::from_millis(200)).await;
        assert!(
            renamed
                .iter()
                .any(|s| matches!(s, Signal::Changed(p) if p.contains(&a))),
            "{renamed:?}"
        );
        assert!(
            !renamed.iter().any(|s| matches!(s, Signal::Written(_))),
            "{renamed:?}"
        );
    }
}
