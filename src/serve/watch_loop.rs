//! The watch loop: file events and timers in, reloads, what is served out.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};

use super::dir_watch::{DirWatch, Signal};
use super::in_place::Writes;
use super::state_dir::StateDir;
use crate::admin::AdminState;
use crate::admin::metrics::Metrics;
use crate::model::diagnostic::{Diagnostic, Severity};
use crate::reload::{Outcome, Reloader, Served};
use crate::xds::Hub;

use super::state_dir::persist;
use super::{ServeError, Settings};

/// What a reload looks at: the paths the watcher named, or every file (`verify`: read each
/// one again even if its metadata did not change).
enum Look {
    Paths(Vec<PathBuf>),
    All { verify: bool },
}

/// Everything the watch loop works with, handed over by `start`.
pub(super) struct WatchLoop {
    pub reloader: Reloader,
    /// Where snapshots are published for the ADS streams.
    pub hub: Arc<Hub>,
    pub metrics: Arc<Metrics>,
    /// What the admin server shows (it runs or not: the readiness and the page's data).
    pub admin: Arc<AdminState>,
    pub settings: Settings,
    pub stop: watch::Receiver<bool>,
    /// The diagnostics already logged, so that each is logged once.
    pub seen: BTreeSet<Diagnostic>,
    pub state: Option<StateDir>,
    /// The file-event channel, and the watch feeding it (none while the directory is gone).
    pub tx: mpsc::UnboundedSender<(Signal, Instant)>,
    pub rx: mpsc::UnboundedReceiver<(Signal, Instant)>,
    pub dir_watch: Option<DirWatch>,
}

impl WatchLoop {
    /// Reloads on every file event, rescan and recheck until `stop`. A reload that panics ends
    /// it with an error: the reloader went with it, so nothing on disk would be served again.
    pub async fn run(self) -> Result<(), ServeError> {
        let WatchLoop {
            mut reloader,
            hub,
            metrics,
            admin,
            settings,
            mut stop,
            mut seen,
            mut state,
            tx,
            mut rx,
            mut dir_watch,
        } = self;
        let mut rescan = tokio::time::interval(settings.rescan_interval);
        rescan.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        rescan.tick().await;
        let mut retry = tokio::time::interval(Duration::from_secs(1));
        retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut recheck: Option<tokio::time::Instant> = None;
        // Files written in place, read once their writer is done with them.
        let mut writes = Writes::default();
        // A reload that removed files, waiting to be confirmed before it is served.
        let mut pending_removal = false;
        let mut removal_tries: u32 = 0;
        loop {
            let quiet_at = writes.next_due().map(tokio::time::Instant::from_std);
            let (look, since) = tokio::select! {
                received = rx.recv() => {
                    let Some(first) = received else { break };
                    // Everything queued belongs to the same burst: one reload covers it.
                    let mut look = Look::Paths(Vec::new());
                    let mut gone = false;
                    let mut since: Option<Instant> = None;
                    for (s, at) in std::iter::once(first).chain(std::iter::from_fn(|| rx.try_recv().ok())) {
                        gone |= s == Signal::RootGone;
                        if let Signal::Written(paths) = s {
                            writes.written(paths, at);
                            continue;
                        }
                        // A file closed after writing is read now, and was changed when its
                        // first write was seen.
                        let seen = match &s {
                            Signal::Changed(paths) => writes.settle(paths).map_or(at, |w| w.min(at)),
                            _ => at,
                        };
                        look = match (look, s) {
                            (Look::Paths(mut all), Signal::Changed(paths)) => {
                                all.extend(paths);
                                Look::Paths(all)
                            }
                            _ => Look::All { verify: true },
                        };
                        since = Some(since.map_or(seen, |s| s.min(seen)));
                    }
                    if gone {
                        dir_watch = None;
                    }
                    // Only writes in place, not finished yet: nothing to read.
                    let Some(since) = since else { continue };
                    (look, since)
                }
                _ = async { tokio::time::sleep_until(quiet_at.expect("guarded")).await }, if quiet_at.is_some() => {
                    let Some((paths, since)) = writes.take_quiet(Instant::now()) else { continue };
                    (Look::Paths(paths), since)
                }
                _ = rescan.tick() => (Look::All { verify: true }, Instant::now()),
                _ = async { tokio::time::sleep_until(recheck.expect("guarded")).await }, if recheck.is_some() => {
                    (Look::All { verify: false }, Instant::now())
                }
                _ = retry.tick(), if dir_watch.as_ref().is_none_or(|w| !w.is_current()) => {
                    dir_watch = start_watch(&settings, &tx);
                    if dir_watch.is_none() {
                        continue;
                    }
                    (Look::All { verify: true }, Instant::now())
                }
                _ = stop.changed() => break,
            };
            let hook = settings.reload_hook.clone();
            let (back, outcome) = match tokio::task::spawn_blocking(move || {
                hook.call();
                let outcome = match look {
                    Look::Paths(paths) => reloader.reload_paths(&paths, since),
                    Look::All { verify } => reloader.reload(verify, since),
                };
                (reloader, outcome)
            })
            .await
            {
                Ok(r) => r,
                Err(e) => {
                    return Err(ServeError::WatchLoop(format!(
                        "a reload panicked: {}",
                        panic_message(e)
                    )));
                }
            };
            reloader = back;
            log_outcome(&outcome, &mut seen);
            metrics.reload(&outcome);
            admin.reloaded(&outcome);
            if outcome.served.is_none() {
                // The directory is gone or unreadable: watch it again once it is back.
                dir_watch = None;
            }
            recheck = outcome
                .recheck_after
                .map(|d| tokio::time::Instant::now() + d);
            // A reload that finds files gone is confirmed by another one a moment later before it
            // is served: a tree being deleted must not be served half-deleted (and once the
            // directory is gone, the last good config stays).
            let confirming = std::mem::take(&mut pending_removal);
            match outcome.served {
                Some(served) if outcome.changed && outcome.removed_files > 0 => {
                    let tries = if confirming { removal_tries + 1 } else { 1 };
                    if tries * REMOVAL_SETTLE >= REMOVAL_SETTLE_MAX {
                        publish(&hub, &admin, served);
                        removal_tries = 0;
                    } else {
                        pending_removal = true;
                        removal_tries = tries;
                        recheck = Some(tokio::time::Instant::now() + REMOVAL_SETTLE);
                    }
                }
                Some(served) if outcome.changed || confirming => {
                    publish(&hub, &admin, served);
                    removal_tries = 0;
                }
                _ => removal_tries = 0,
            }
            if let Some(s) = state.take() {
                state = if outcome.changed || !outcome.accepted.is_empty() {
                    persist(s, &reloader, &hub, outcome.accepted).await
                } else {
                    Some(s)
                };
            }
        }
        Ok(())
    }
}

/// What a task that failed said: its panic's message, when it has one.
pub(super) fn panic_message(e: tokio::task::JoinError) -> String {
    if !e.is_panic() {
        return e.to_string();
    }
    let payload = e.into_panic();
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".to_string())
}

/// Serves `served`: the admin page and API take it first, so that they never lag behind what
/// Envoys are offered.
fn publish(hub: &Hub, admin: &AdminState, served: Served) {
    let served = Arc::new(served);
    admin.set_served(Arc::clone(&served));
    hub.publish(served.published.clone());
}

/// How long a reload that found files gone waits for a second look before it is served, and
/// the longest a tree still being deleted holds the last config.
const REMOVAL_SETTLE: Duration = Duration::from_millis(25);
const REMOVAL_SETTLE_MAX: Duration = Duration::from_millis(500);

pub(super) fn start_watch(
    settings: &Settings,
    tx: &mpsc::UnboundedSender<(Signal, Instant)>,
) -> Option<DirWatch> {
    match DirWatch::start(&settings.dir, tx.clone()) {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::debug!(dir = %settings.dir.display(), error = %e, "cannot watch the directory yet");
            None
        }
    }
}

/// One log line per reload, and each diagnostic once (until it goes away and comes back).
pub(super) fn log_outcome(o: &Outcome, seen: &mut BTreeSet<Diagnostic>) {
    let s = &o.stats;
    if o.changed || s.counts.errors > 0 {
        tracing::info!(
            files = s.files,
            mappings = s.mappings,
            routes = s.routes,
            clusters = s.clusters,
            version = s.version,
            ms = format!("{:.1}", s.took.as_secs_f64() * 1000.0),
            errors = s.counts.errors,
            warnings = s.counts.warnings,
            held_files = s.held_files,
            changed = o.changed,
            "reload"
        );
    } else {
        tracing::debug!(
            files = s.files,
            read = s.files_read,
            ms = format!("{:.1}", s.took.as_secs_f64() * 1000.0),
            "rescan: nothing changed"
        );
    }
    let now: BTreeSet<Diagnostic> = o.diagnostics.iter().cloned().collect();
    for d in now.difference(seen) {
        match d.severity {
            Severity::Error => tracing::error!("{d}"),
            Severity::Warning => tracing::warn!("{d}"),
            Severity::Info => tracing::info!("{d}"),
        }
    }
    *seen = now;
}
