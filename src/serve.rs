//! `canary-xds serve`: the I/O shell around the pipeline. It watches the directory, reloads,
//! publishes snapshots to the ADS server, and shuts down cleanly.
//!
//! `start` takes bound listeners (xDS, and the admin server's unless it is off) and a shutdown
//! future (tests bind port 0 and read the addresses back) and returns what is running.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use clap::Args;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::TcpListenerStream;

use crate::admin::{AdminAddr, AdminState, LastReload};
use crate::diagnostic::{Diagnostic, Severity};
use crate::metrics::Metrics;
use crate::reload::{Outcome, Reloader};
use crate::snapshot::{Listen, SnapshotBuilder};
use crate::source::{DEFAULT_MAX_FILE_SIZE, Loader};
use crate::state::{Saved, StateDir};
use crate::watch::{DirWatch, Signal};
use crate::xds::server::{Hub, Published};
use sha2::Digest;

/// The flags of `serve`; each is also read from the environment (`CANARY_XDS_<FLAG>`).
#[derive(Clone, Debug, Args)]
pub struct ServeArgs {
    /// The directory of Mapping YAML files to watch (read recursively).
    #[arg(long, env = "CANARY_XDS_DIR")]
    pub dir: PathBuf,
    /// Where the xDS (ADS) server listens. Loopback by default: exposing the control plane is
    /// an explicit choice.
    #[arg(long, default_value = "127.0.0.1:18000", env = "CANARY_XDS_XDS")]
    pub xds: SocketAddr,
    /// The address of the HTTP listener Envoy opens: `ADDR` for every fleet, or `FLEET=ADDR`
    /// for one fleet. Repeatable.
    #[arg(
        long,
        value_name = "[FLEET=]ADDR",
        env = "CANARY_XDS_LISTEN",
        value_delimiter = ','
    )]
    pub listen: Vec<String>,
    /// Keep the last good state here, so a restart with a broken file still serves its last
    /// good content and resumes make-before-break where it stopped.
    #[arg(long, env = "CANARY_XDS_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, env = "CANARY_XDS_LOG_FORMAT")]
    pub log_format: LogFormat,
    /// Seconds between full rescans of the directory (the safety net for missed events).
    #[arg(long, default_value_t = 30, env = "CANARY_XDS_RESCAN_INTERVAL")]
    pub rescan_interval: u64,
    /// The largest file read, in bytes.
    #[arg(long, default_value_t = DEFAULT_MAX_FILE_SIZE, env = "CANARY_XDS_MAX_FILE_SIZE")]
    pub max_file_size: u64,
    /// Verify TLS upstreams (`https://` services) against this CA file instead of the
    /// system trust store.
    #[arg(long, env = "CANARY_XDS_UPSTREAM_CA")]
    pub upstream_ca: Option<PathBuf>,
    /// Milliseconds a file that suddenly became empty keeps its content (editors truncate
    /// before they write).
    #[arg(long, default_value_t = 1000, env = "CANARY_XDS_EMPTY_GRACE_MS")]
    pub empty_grace_ms: u64,
    /// Where the admin HTTP server listens (health, metrics, the JSON API and the diagnostics
    /// page), or `off`. Loopback by default.
    #[arg(
        long,
        value_name = "ADDR|off",
        default_value = crate::admin::DEFAULT_ADMIN,
        env = "CANARY_XDS_ADMIN"
    )]
    pub admin: AdminAddr,
    /// An Envoy admin endpoint (`http://127.0.0.1:9901`) whose stats show live traffic per
    /// backend on the page. Repeatable.
    #[arg(
        long = "envoy-admin",
        value_name = "URL",
        env = "CANARY_XDS_ENVOY_ADMIN",
        value_delimiter = ','
    )]
    pub envoy_admin: Vec<String>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// The default address of the HTTP listener served to Envoy.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:8080";

/// Why `serve` cannot start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(
        "--listen {0:?}: expected ADDR or FLEET=ADDR, such as 0.0.0.0:8080 or edge=0.0.0.0:8081"
    )]
    BadListen(String),
    #[error("--listen gives fleet {0:?} two addresses")]
    DuplicateListen(String),
    #[error("the xDS server failed: {0}")]
    Server(#[from] tonic::transport::Error),
    #[error(transparent)]
    Admin(#[from] crate::admin::AdminError),
    #[error(transparent)]
    State(#[from] crate::state::StateError),
}

/// Parses `--listen` values.
pub fn parse_listen(values: &[String]) -> Result<Listen, ServeError> {
    let mut default: Option<SocketAddr> = None;
    let mut fleets = BTreeMap::new();
    for v in values {
        match v.split_once('=') {
            Some((fleet, addr)) if !fleet.is_empty() => {
                let addr = addr.parse().map_err(|_| ServeError::BadListen(v.clone()))?;
                if fleets.insert(fleet.to_string(), addr).is_some() {
                    return Err(ServeError::DuplicateListen(fleet.to_string()));
                }
            }
            Some(_) => return Err(ServeError::BadListen(v.clone())),
            None => {
                let addr = v.parse().map_err(|_| ServeError::BadListen(v.clone()))?;
                if default.replace(addr).is_some() {
                    return Err(ServeError::DuplicateListen("(every other fleet)".into()));
                }
            }
        }
    }
    Ok(Listen {
        default: default.unwrap_or_else(|| DEFAULT_LISTEN.parse().expect("valid default")),
        fleets,
    })
}

/// What `serve` runs with.
#[derive(Clone, Debug)]
pub struct Settings {
    pub dir: PathBuf,
    pub listen: Listen,
    pub state_dir: Option<PathBuf>,
    pub rescan_interval: Duration,
    pub max_file_size: u64,
    pub upstream_ca: Option<PathBuf>,
    pub empty_grace: Duration,
    /// Envoy admin endpoints to read live traffic from (`--envoy-admin`).
    pub envoy_admin: Vec<String>,
}

impl Settings {
    pub fn from_args(args: &ServeArgs) -> Result<Settings, ServeError> {
        Ok(Settings {
            dir: args.dir.clone(),
            listen: parse_listen(&args.listen)?,
            state_dir: args.state_dir.clone(),
            rescan_interval: Duration::from_secs(args.rescan_interval.max(1)),
            max_file_size: args.max_file_size,
            upstream_ca: args.upstream_ca.clone(),
            empty_grace: Duration::from_millis(args.empty_grace_ms),
            envoy_admin: args
                .envoy_admin
                .iter()
                .map(|u| u.trim().to_string())
                .filter(|u| !u.is_empty())
                .collect(),
        })
    }

    /// Settings for `dir` with every default (for tests and embedding).
    pub fn for_dir(dir: impl Into<PathBuf>) -> Settings {
        Settings {
            dir: dir.into(),
            listen: parse_listen(&[]).expect("defaults parse"),
            state_dir: None,
            rescan_interval: Duration::from_secs(30),
            max_file_size: DEFAULT_MAX_FILE_SIZE,
            upstream_ca: None,
            empty_grace: Duration::from_millis(1000),
            envoy_admin: Vec::new(),
        }
    }
}

/// The sockets `serve` listens on, bound by the caller.
pub struct Listeners {
    pub xds: TcpListener,
    /// The admin server's; `None` when it is off.
    pub admin: Option<TcpListener>,
}

/// Just an xDS listener: no admin server.
impl From<TcpListener> for Listeners {
    fn from(xds: TcpListener) -> Self {
        Listeners { xds, admin: None }
    }
}

/// A running control plane.
pub struct Running {
    pub xds_addr: SocketAddr,
    /// Where the admin server listens, when it runs.
    pub admin_addr: Option<SocketAddr>,
    pub hub: Arc<Hub>,
    /// What the admin server shows; `set_live` feeds its live-traffic section.
    pub admin: Arc<AdminState>,
    /// Ends when the server has shut down.
    pub done: JoinHandle<Result<(), ServeError>>,
}

/// Starts serving: the first reload, the ADS server on the xDS listener, the admin server on
/// its listener (if any), and the watch loop. Everything stops when `shutdown` completes.
pub async fn start(
    settings: Settings,
    listeners: impl Into<Listeners>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<Running, ServeError> {
    let Listeners { xds, admin } = listeners.into();
    let xds_addr = xds
        .local_addr()
        .map_err(|e| ServeError::BadListen(e.to_string()))?;
    let admin_addr = match &admin {
        Some(l) => Some(
            l.local_addr()
                .map_err(|e| ServeError::BadListen(e.to_string()))?,
        ),
        None => None,
    };
    let metrics = Arc::new(Metrics::new());
    let mut reloader = Reloader::new(
        Loader::new(&settings.dir, settings.max_file_size),
        SnapshotBuilder::new(settings.listen.clone(), settings.upstream_ca.clone()),
        settings.empty_grace,
    );
    // Watch before the first scan, so that no change after it can be missed.
    let (tx, rx) = mpsc::unbounded_channel::<(Signal, Instant)>();
    let dir_watch = start_watch(&settings, &tx);
    let (state, mut saved) = match &settings.state_dir {
        Some(dir) => {
            let (state, saved) = StateDir::open(dir)?;
            (Some(state), saved)
        }
        None => (None, Saved::default()),
    };
    reloader.restore_bases(std::mem::take(&mut saved.bases));
    for (rel, bytes) in &saved.files {
        let parsed = crate::parse::parse_file(rel, bytes);
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
    let first_report = LastReload::of(&first, SystemTime::now());
    let remembered = if first.published.is_none() {
        reloader.from_memory(since)
    } else {
        None
    };
    let accepted = first.accepted.clone();
    let loaded = first.published.is_some() || remembered.is_some();
    let initial = match first.published.or(remembered) {
        Some(p) => p,
        None => {
            // The directory cannot be read yet: serve empty tables until it can.
            let mut builder =
                SnapshotBuilder::new(settings.listen.clone(), settings.upstream_ca.clone());
            let other = Arc::new(builder.build("", Arc::new(Default::default())));
            crate::xds::server::Published {
                fleets: BTreeMap::from([(
                    crate::mapping::DEFAULT_FLEET.to_string(),
                    Arc::new(
                        builder.build(crate::mapping::DEFAULT_FLEET, Arc::new(Default::default())),
                    ),
                )]),
                other,
                since,
            }
        }
    };
    let hub = Hub::new(initial);
    {
        let metrics = Arc::clone(&metrics);
        hub.observe(move |o| metrics.observed(&o));
    }
    let admin_state = AdminState::new(
        Arc::clone(&hub),
        metrics,
        first_report,
        loaded,
        &settings.dir,
        &settings.envoy_admin,
    );
    if !saved.sets.is_empty() {
        hub.with_archive(|a| {
            for (kind, set) in &saved.sets {
                a.record(*kind, set);
            }
        });
        tracing::info!(sets = saved.sets.len(), "resuming from --state-dir");
    }
    let state = match state {
        Some(s) => persist(s, &reloader, &hub, accepted, &settings.dir).await,
        None => None,
    };

    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });

    if !settings.envoy_admin.is_empty() {
        tokio::spawn(crate::admin::live_task::run(
            settings.envoy_admin.clone(),
            Arc::clone(&hub),
            Arc::clone(&admin_state),
            stop_rx.clone(),
        ));
    }
    let admin_task = admin.map(|listener| {
        let mut stop = stop_rx.clone();
        tokio::spawn(crate::admin::serve(
            listener,
            Arc::clone(&admin_state),
            async move {
                let _ = stop.wait_for(|s| *s).await;
            },
        ))
    });
    let watch_task = tokio::spawn(watch_loop(
        reloader,
        Arc::clone(&admin_state),
        settings.clone(),
        stop_rx.clone(),
        seen,
        state,
        (tx, rx, dir_watch),
    ));
    let server_hub = Arc::clone(&hub);
    let service = hub.service();
    let mut server_stop = stop_rx;
    let server_admin = Arc::clone(&admin_state);
    let done = tokio::spawn(async move {
        let stopping_admin = Arc::clone(&server_admin);
        let stopped = async move {
            let _ = server_stop.wait_for(|s| *s).await;
            stopping_admin.set_serving(false);
            // End every ADS stream so the server can finish; Envoys keep their config.
            server_hub.close();
        };
        // The listener is bound, so streams opened from now on are accepted.
        server_admin.set_serving(true);
        let result = tonic::transport::Server::builder()
            .http2_keepalive_interval(Some(Duration::from_secs(30)))
            .http2_keepalive_timeout(Some(Duration::from_secs(10)))
            .tcp_keepalive(Some(Duration::from_secs(30)))
            .tcp_nodelay(true)
            .add_service(service)
            .serve_with_incoming_shutdown(TcpListenerStream::new(xds), stopped)
            .await;
        let _ = watch_task.await;
        result?;
        if let Some(task) = admin_task {
            match task.await {
                Ok(r) => r?,
                Err(e) => tracing::error!("the admin server panicked: {e}"),
            }
        }
        Ok(())
    });
    Ok(Running {
        xds_addr,
        admin_addr,
        hub,
        admin: admin_state,
        done,
    })
}

/// The file-event channel and the watch feeding it.
type Events = (
    mpsc::UnboundedSender<(Signal, Instant)>,
    mpsc::UnboundedReceiver<(Signal, Instant)>,
    Option<DirWatch>,
);

async fn watch_loop(
    mut reloader: Reloader,
    admin: Arc<AdminState>,
    settings: Settings,
    mut stop: watch::Receiver<bool>,
    mut seen: BTreeSet<Diagnostic>,
    mut state: Option<StateDir>,
    events: Events,
) {
    let (tx, mut rx, mut dir_watch) = events;
    let hub = Arc::clone(admin.hub());
    let mut rescan = tokio::time::interval(settings.rescan_interval);
    rescan.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    rescan.tick().await;
    let mut retry = tokio::time::interval(Duration::from_secs(1));
    retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut recheck: Option<tokio::time::Instant> = None;
    // A reload that removed files, waiting to be confirmed before it is served.
    let mut pending_removal = false;
    let mut removal_tries: u32 = 0;
    loop {
        let (verify, since) = tokio::select! {
            received = rx.recv() => {
                let Some((signal, at)) = received else { break };
                // Everything queued belongs to the same burst: one reload covers it.
                let mut verify = signal != Signal::Changed;
                let mut gone = signal == Signal::RootGone;
                while let Ok((s, _)) = rx.try_recv() {
                    verify |= s != Signal::Changed;
                    gone |= s == Signal::RootGone;
                }
                if gone {
                    dir_watch = None;
                }
                (verify, at)
            }
            _ = rescan.tick() => (true, Instant::now()),
            _ = async { tokio::time::sleep_until(recheck.expect("guarded")).await }, if recheck.is_some() => {
                (false, Instant::now())
            }
            _ = retry.tick(), if dir_watch.as_ref().is_none_or(|w| !w.is_current()) => {
                dir_watch = start_watch(&settings, &tx);
                if dir_watch.is_none() {
                    continue;
                }
                (true, Instant::now())
            }
            _ = stop.changed() => break,
        };
        let (back, outcome) = match tokio::task::spawn_blocking(move || {
            let outcome = reloader.reload(verify, since);
            (reloader, outcome)
        })
        .await
        {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "a reload panicked; the last good config keeps serving");
                return;
            }
        };
        reloader = back;
        log_outcome(&outcome, &mut seen);
        admin.metrics().reload(&outcome);
        admin.reloaded(&outcome);
        if outcome.published.is_none() {
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
        match outcome.published {
            Some(p) if outcome.changed && outcome.removed_files > 0 => {
                let tries = if confirming { removal_tries + 1 } else { 1 };
                if tries * REMOVAL_SETTLE >= REMOVAL_SETTLE_MAX {
                    publish(&admin, p);
                    removal_tries = 0;
                } else {
                    pending_removal = true;
                    removal_tries = tries;
                    recheck = Some(tokio::time::Instant::now() + REMOVAL_SETTLE);
                }
            }
            Some(p) if outcome.changed || confirming => {
                publish(&admin, p);
                removal_tries = 0;
            }
            _ => removal_tries = 0,
        }
        if let Some(s) = state.take() {
            state = if outcome.changed || !outcome.accepted.is_empty() {
                persist(s, &reloader, &hub, outcome.accepted, &settings.dir).await
            } else {
                Some(s)
            };
        }
    }
}

/// Serves `p`, telling the metrics first which ACKs will measure how fast it spreads.
fn publish(admin: &AdminState, p: Published) {
    let hub = admin.hub();
    admin
        .metrics()
        .expect_acks(&hub.current(), &p, &hub.envoys());
    hub.publish(p);
}

/// How many generations of served sets `--state-dir` keeps: the current one and the one before,
/// which covers an Envoy caught in the middle of a change.
const PERSISTED_GENERATIONS: u64 = 2;

/// Writes the last good files and the sets served to `--state-dir`, off the async threads.
/// A failure is logged, never fatal: serving goes on.
async fn persist(
    mut state: StateDir,
    reloader: &Reloader,
    hub: &Hub,
    accepted: Vec<(String, [u8; 32])>,
    dir: &std::path::Path,
) -> Option<StateDir> {
    let present: BTreeSet<String> = reloader
        .good_files()
        .map(|(rel, _)| rel.to_string())
        .collect();
    let sets = hub.with_archive(|a| a.recent(PERSISTED_GENERATIONS));
    let bases = reloader.bases().clone();
    let dir = dir.to_path_buf();
    let result = tokio::task::spawn_blocking(move || {
        let mut errors = Vec::new();
        for (rel, digest) in accepted {
            // Keep the content only if it is still what was accepted.
            match std::fs::read(dir.join(&rel)) {
                Ok(bytes) if <[u8; 32]>::from(sha2::Sha256::digest(&bytes)) == digest => {
                    if let Err(e) = state.keep_file(&rel, &bytes) {
                        errors.push(e.to_string());
                    }
                }
                _ => {}
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

/// How long a reload that found files gone waits for a second look before it is served, and
/// the longest a tree still being deleted holds the last config.
const REMOVAL_SETTLE: Duration = Duration::from_millis(25);
const REMOVAL_SETTLE_MAX: Duration = Duration::from_millis(500);

fn start_watch(
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
fn log_outcome(o: &Outcome, seen: &mut BTreeSet<Diagnostic>) {
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

/// Sets up logging for `serve`: `RUST_LOG` filters (default `info`), text or JSON lines.
pub fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// Runs `serve` until SIGINT or SIGTERM.
pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let settings = Settings::from_args(&args)?;
    let xds = TcpListener::bind(args.xds)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on --xds {}: {e}", args.xds))?;
    let admin = match args.admin {
        AdminAddr::Off => None,
        AdminAddr::At(addr) => Some(
            TcpListener::bind(addr)
                .await
                .map_err(|e| anyhow::anyhow!("cannot listen on --admin {addr}: {e}"))?,
        ),
    };
    let running = start(settings, Listeners { xds, admin }, shutdown_signal()).await?;
    match running.admin_addr {
        Some(admin) => tracing::info!(
            xds = %running.xds_addr,
            admin = format!("http://{admin}/"),
            dir = %args.dir.display(),
            "serving"
        ),
        None => tracing::info!(xds = %running.xds_addr, dir = %args.dir.display(), "serving"),
    }
    running.done.await??;
    tracing::info!("stopped");
    Ok(())
}

/// Completes on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down");
}
