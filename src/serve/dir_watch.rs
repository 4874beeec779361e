//! Watching the directory: notify's callback only forwards events; an async loop turns them
//! into reloads.
//!
//! The first event of a burst is applied at once; events that arrive while a reload runs are
//! coalesced into one more reload. A missed event never leaves routing stale: a periodic full
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
    /// Something changed at these paths.
    Changed(Vec<PathBuf>),
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
                let signal = match res {
                    // Reading a file (ours, on every reload) is not a change: ignoring opens
                    // and closes after reading keeps a reload from triggering the next.
                    Ok(event) if matches!(event.kind, notify::EventKind::Access(_)) => return,
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
}
