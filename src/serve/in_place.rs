//! Files written in place, held back until their writer is done: a file written in several
//! steps (`weight: 5`, then `0`) read after the first step would be served truncated, yet
//! valid. Each waits for its writer to close it (inotify's close-after-write) or to be quiet
//! for `QUIET`; a rename or a create is read at once, as before.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// How long a file written in place and still open must go unwritten before it is read.
pub(super) const QUIET: Duration = Duration::from_millis(20);

/// The files written in place and not read since.
#[derive(Debug, Default)]
pub(super) struct Writes {
    /// Path -> when its first and its last write were seen.
    open: HashMap<PathBuf, (Instant, Instant)>,
}

impl Writes {
    /// Writes in place to `paths` were seen at `at`: each waits (again) for `QUIET`.
    pub fn written(&mut self, paths: Vec<PathBuf>, at: Instant) {
        for path in paths {
            self.open
                .entry(path)
                .and_modify(|(_, last)| *last = (*last).max(at))
                .or_insert((at, at));
        }
    }

    /// `paths` are read now (closed after writing, renamed, created, removed): they wait no
    /// more. Returns when the first write among them was seen, if any was waiting.
    pub fn settle(&mut self, paths: &[PathBuf]) -> Option<Instant> {
        paths
            .iter()
            .filter_map(|p| self.open.remove(p))
            .map(|(first, _)| first)
            .min()
    }

    /// When the next file will have been quiet long enough.
    pub fn next_due(&self) -> Option<Instant> {
        self.open.values().map(|(_, last)| *last + QUIET).min()
    }

    /// Takes the files quiet for `QUIET` at `now`, and when the first write among them was
    /// seen; `None` when no file is quiet yet.
    pub fn take_quiet(&mut self, now: Instant) -> Option<(Vec<PathBuf>, Instant)> {
        let quiet: Vec<PathBuf> = self
            .open
            .iter()
            .filter(|(_, (_, last))| *last + QUIET <= now)
            .map(|(p, _)| p.clone())
            .collect();
        let since = self.settle(&quiet)?;
        Some((quiet, since))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_is_read_once_closed_or_quiet_and_each_write_restarts_its_wait() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let (a, b) = (PathBuf::from("a.yaml"), PathBuf::from("b.yaml"));
        let mut w = Writes::default();
        assert_eq!(w.next_due(), None);
        w.written(vec![a.clone()], ms(0));
        w.written(vec![b.clone()], ms(5));
        assert_eq!(w.next_due(), Some(ms(20)));
        // A second write to `a` restarts its wait.
        w.written(vec![a.clone()], ms(15));
        assert_eq!(w.next_due(), Some(ms(25)));
        assert_eq!(w.take_quiet(ms(24)), None);
        assert_eq!(w.take_quiet(ms(25)), Some((vec![b.clone()], ms(5))));
        // `a` is closed: read now, and since its first write.
        assert_eq!(w.settle(&[a.clone(), b.clone()]), Some(ms(0)));
        assert_eq!(w.next_due(), None);
        assert_eq!(w.take_quiet(ms(100)), None);
        assert_eq!(w.settle(&[a]), None);
    }
}
