//! The first load at start: what `--state-dir` saved, the first reload of the directory, and
//! what to serve when the directory cannot be read yet.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use super::Settings;
use super::state_dir::{Saved, StateDir};
use super::watch_loop::log_outcome;
use crate::admin::LastReload;
use crate::admin::metrics::Metrics;
use crate::envoy::snapshot::SnapshotBuilder;
use crate::input::Content;
use crate::input::Loader;
use crate::model::diagnostic::Diagnostic;
use crate::model::mapping::DEFAULT_FLEET;
use crate::reload::{Reloader, Served};
use crate::routes::{RouteTable, Tables};
use crate::xds::Published;

/// What the first load yields for the rest of `start`.
pub struct FirstLoad {
    /// The reloader, which keeps what it read for the watch loop's reloads.
    pub reloader: Reloader,
    /// What to serve first.
    pub served: Arc<Served>,
    /// The first reload, for the admin page.
    pub report: LastReload,
    /// Whether anything was loaded (from the directory or from `--state-dir`).
    pub loaded: bool,
    /// The files the first reload accepted, to persist.
    pub accepted: Vec<(String, Content)>,
    /// The diagnostics already logged, so the watch loop logs only new ones.
    pub seen: BTreeSet<Diagnostic>,
}

/// Opens `--state-dir` (when set): the lock, the last good content of files and the resource
/// sets Envoys may hold. Without it, nothing was saved.
pub fn open_state(settings: &Settings) -> Result<(Option<StateDir>, Saved), super::ServeError> {
    let Some(dir) = &settings.state_dir else {
        return Ok((None, Saved::default()));
    };
    let (state, saved) = StateDir::open(dir)?;
    for w in &saved.warnings {
        tracing::warn!("{w}; left out, as after a start without it");
    }
    Ok((Some(state), saved))
}

/// The first reload, with the last good content `saved` remembered first: what the directory
/// holds, else what was remembered, else (the directory cannot be read yet) empty tables.
pub async fn first_load(settings: &Settings, saved: &Saved, metrics: &Metrics) -> FirstLoad {
    let mut reloader = Reloader::new(
        Loader::new(&settings.dir, settings.max_file_size),
        builder(settings).with_max_layer_routes(settings.max_layer_routes),
        settings.empty_grace,
    )
    .with_limits(settings.route_limits);
    for (rel, bytes) in &saved.files {
        let parsed = crate::input::parse::parse_file(rel, bytes);
        if !parsed.has_errors() {
            reloader.remember(rel.clone(), Arc::new(parsed));
        }
    }
    let since = Instant::now();
    let (mut reloader, first) = tokio::task::spawn_blocking(move || {
        let outcome = reloader.reload(false, since);
        (reloader, outcome)
    })
    .await
    .expect("the first reload does not panic");
    let mut seen = BTreeSet::new();
    log_outcome(&first, &mut seen);
    metrics.reload(&first);
    let report = LastReload::of(&first, SystemTime::now());
    let remembered = if first.served.is_none() {
        reloader.from_memory(since)
    } else {
        None
    };
    let loaded = first.served.is_some() || remembered.is_some();
    let served = first
        .served
        .or(remembered)
        .unwrap_or_else(|| nothing_yet(settings, since));
    FirstLoad {
        reloader,
        served: Arc::new(served),
        report,
        loaded,
        accepted: first.accepted,
        seen,
    }
}

fn builder(settings: &Settings) -> SnapshotBuilder {
    SnapshotBuilder::new(settings.listen.clone(), settings.upstream_ca.clone())
}

/// Empty tables, served while the directory cannot be read.
fn nothing_yet(settings: &Settings, since: Instant) -> Served {
    let mut builder = builder(settings);
    let empty = Arc::new(RouteTable::default());
    let other = Arc::new(builder.build("", Arc::clone(&empty)));
    Served {
        published: Published {
            fleets: BTreeMap::from([(
                DEFAULT_FLEET.to_string(),
                Arc::new(builder.build(DEFAULT_FLEET, Arc::clone(&empty))),
            )]),
            other,
            since,
            withheld: BTreeMap::new(),
        },
        tables: Tables {
            fleets: BTreeMap::from([(DEFAULT_FLEET.to_string(), empty)]),
        },
    }
}
