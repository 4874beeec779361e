//! `canary-xds serve`: the I/O shell around the pipeline. It watches the directory, reloads,
//! publishes snapshots to the ADS server, and shuts down cleanly.
//!
//! `start` takes bound listeners (xDS, and the admin server's unless it is off) and a shutdown
//! future (tests bind port 0 and read the addresses back) and returns what is running.

pub mod dir_watch;
pub mod state_dir;
pub mod tls;

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

use crate::admin::metrics::Metrics;
use crate::admin::{AdminAddr, AdminState, LastReload};
use crate::envoy::snapshot::{Listen, SnapshotBuilder};
use crate::input::source::{DEFAULT_MAX_FILE_SIZE, Loader};
use crate::model::diagnostic::{Diagnostic, Severity};
use crate::reload::{Outcome, Reloader};
use crate::serve::dir_watch::{DirWatch, Signal};
use crate::serve::state_dir::{Saved, StateDir};
use crate::serve::tls::{AllowRule, Security, TlsFiles};
use crate::xds::server::Hub;
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
    /// system trust store. A UTF-8 path: Envoy's config names files by string.
    #[arg(long, env = "CANARY_XDS_UPSTREAM_CA")]
    pub upstream_ca: Option<String>,
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
    /// Serve xDS over TLS with this certificate chain (PEM, the server's own certificate
    /// first). Needs --xds-tls-key.
    #[arg(
        long,
        value_name = "FILE",
        env = "CANARY_XDS_XDS_TLS_CERT",
        requires = "xds_tls_key"
    )]
    pub xds_tls_cert: Option<PathBuf>,
    /// The private key of --xds-tls-cert (PEM). Read once at start; never logged.
    #[arg(
        long,
        value_name = "FILE",
        env = "CANARY_XDS_XDS_TLS_KEY",
        requires = "xds_tls_cert"
    )]
    pub xds_tls_key: Option<PathBuf>,
    /// Require client certificates signed by this CA (PEM): mTLS. Each certificate then
    /// receives only the fleets --allow gives it.
    #[arg(
        long,
        value_name = "FILE",
        env = "CANARY_XDS_XDS_CLIENT_CA",
        requires = "xds_tls_cert"
    )]
    pub xds_client_ca: Option<PathBuf>,
    /// With mTLS, a client certificate with a URI or DNS SAN matching the glob may receive
    /// FLEET (`*` for every fleet): `edge=spiffe://corp/ns/*/sa/edge`. Repeatable; a fleet no
    /// rule names is refused.
    #[arg(
        long,
        value_name = "FLEET=SAN-PATTERN",
        env = "CANARY_XDS_ALLOW",
        value_delimiter = ',',
        requires = "xds_client_ca"
    )]
    pub allow: Vec<AllowRule>,
    /// Serve plaintext xDS on a --xds address that is not loopback. Anyone who reaches the
    /// port can then read every fleet's routes.
    #[arg(long, env = "CANARY_XDS_INSECURE")]
    pub insecure: bool,
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
    State(#[from] crate::serve::state_dir::StateError),
    #[error(transparent)]
    Tls(#[from] crate::serve::tls::TlsError),
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
    /// TLS on the xDS port (`--xds-tls-cert`, `--xds-tls-key`, `--xds-client-ca`); `None`
    /// for plaintext.
    pub xds_tls: Option<TlsFiles>,
    /// With mTLS, which certificates may receive which fleet (`--allow`).
    pub allow: Vec<AllowRule>,
    /// Plaintext xDS on a non-loopback address is accepted (`--insecure`).
    pub insecure: bool,
    /// After a shutdown signal, how long open streams and connections get to finish before
    /// they are dropped and `serve` exits.
    pub drain: Duration,
}

/// How long `serve` waits, after SIGTERM, for responses in flight and connections to close.
pub const DRAIN: Duration = Duration::from_secs(3);

impl Settings {
    pub fn from_args(args: &ServeArgs) -> Result<Settings, ServeError> {
        Ok(Settings {
            dir: args.dir.clone(),
            listen: parse_listen(&args.listen)?,
            state_dir: args.state_dir.clone(),
            rescan_interval: Duration::from_secs(args.rescan_interval.max(1)),
            max_file_size: args.max_file_size,
            upstream_ca: args.upstream_ca.clone().map(PathBuf::from),
            empty_grace: Duration::from_millis(args.empty_grace_ms),
            envoy_admin: args
                .envoy_admin
                .iter()
                .map(|u| u.trim().to_string())
                .filter(|u| !u.is_empty())
                .collect(),
            xds_tls: match (&args.xds_tls_cert, &args.xds_tls_key) {
                (Some(cert), Some(key)) => Some(TlsFiles {
                    cert: cert.clone(),
                    key: key.clone(),
                    client_ca: args.xds_client_ca.clone(),
                }),
                _ => None,
            },
            allow: args.allow.clone(),
            insecure: args.insecure,
            drain: DRAIN,
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
            xds_tls: None,
            allow: Vec::new(),
            insecure: false,
            drain: DRAIN,
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
/// its listener (if any), and the watch loop. When `shutdown` completes, the listeners close
/// (new connections are refused), every stream ends after the responses already queued, and
/// whatever is still open after `settings.drain` is dropped: `done` ends within that bound.
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
    // Before anything else runs: a control plane that would serve unsafely does not start.
    let security = Security::load(settings.xds_tls.as_ref(), &settings.allow)?;
    warn_about_exposure(&settings, &security, xds_addr, admin_addr)?;
    let mut server = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(10)));
    if let Some(tls) = security.tls {
        server = server
            .tls_config(tls)
            .map_err(|e| crate::serve::tls::TlsError::refused(&e))?;
    }
    // Envoy's admin has no authentication and the client sends no user information, so
    // credentials or a query in an --envoy-admin URL serve nothing; they could only leak (the
    // page shows a failed read with its URL). They are dropped here, before anything sees them.
    let envoy_admin: Vec<String> = settings
        .envoy_admin
        .iter()
        .map(|u| crate::admin::redact_url(u))
        .collect();
    if envoy_admin != settings.envoy_admin {
        tracing::warn!(
            "--envoy-admin: user information and queries in the URLs are not used (Envoy's admin \
             has no authentication) and were dropped"
        );
    }
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
                    crate::model::mapping::DEFAULT_FLEET.to_string(),
                    Arc::new(builder.build(
                        crate::model::mapping::DEFAULT_FLEET,
                        Arc::new(Default::default()),
                    )),
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
        &envoy_admin,
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

    if !envoy_admin.is_empty() {
        tokio::spawn(crate::admin::live_task::run(
            envoy_admin,
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
    let service = hub.service_with(security.access);
    let mut server_stop = stop_rx.clone();
    let mut drain_stop = stop_rx;
    let drain = settings.drain;
    let server_admin = Arc::clone(&admin_state);
    let done = tokio::spawn(async move {
        let stopping_admin = Arc::clone(&server_admin);
        let stopped = async move {
            let _ = server_stop.wait_for(|s| *s).await;
            stopping_admin.set_serving(false);
            // End every ADS stream (after the responses already queued on it) so the server
            // can finish; Envoys keep their config. tonic then closes the listener and sends
            // each connection a GOAWAY.
            server_hub.close();
        };
        // The listener is bound, so streams opened from now on are accepted.
        server_admin.set_serving(true);
        // The builder's tcp_nodelay and tcp_keepalive apply only to listeners tonic binds
        // itself; on ours they are set here. Without TCP_NODELAY a small push (one route's
        // weights) waits for Nagle's algorithm: up to 40 ms for the ACK of the last segment.
        let incoming = tonic::transport::server::TcpIncoming::from(xds)
            .with_nodelay(Some(true))
            .with_keepalive(Some(Duration::from_secs(30)));
        let serving = async move {
            let result = server
                .add_service(service)
                .serve_with_incoming_shutdown(incoming, stopped)
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
        };
        // A client that stops reading would hold its connection, and so the exit, forever.
        let deadline = async move {
            let _ = drain_stop.wait_for(|s| *s).await;
            tokio::time::sleep(drain).await;
        };
        tokio::select! {
            result = serving => result,
            () = deadline => {
                tracing::warn!(
                    after = ?drain,
                    "connections still open after the drain time; dropping them"
                );
                Ok(())
            }
        }
    });
    Ok(Running {
        xds_addr,
        admin_addr,
        hub,
        admin: admin_state,
        done,
    })
}

/// Refuses plaintext xDS on a non-loopback address without `--insecure`, and warns about every
/// exposure that was chosen: plaintext with `--insecure`, TLS without client certificates
/// beyond loopback, and an admin server beyond loopback.
fn warn_about_exposure(
    settings: &Settings,
    security: &Security,
    xds: SocketAddr,
    admin: Option<SocketAddr>,
) -> Result<(), ServeError> {
    if security.tls.is_some() {
        tracing::info!(
            xds = %xds,
            certificate = crate::serve::tls::san_list(&security.server_names),
            client_certificates = security.access.is_mutual(),
            "xDS over TLS"
        );
    }
    if security.tls.is_none() {
        if crate::serve::tls::check_plaintext(xds, settings.insecure)? {
            tracing::warn!(
                xds = %xds,
                "serving xDS in plaintext on a non-loopback address (--insecure): anyone who \
                 reaches it can read every fleet's routes, and nothing proves to Envoy that it \
                 talks to canary-xds"
            );
        }
    } else if !security.access.is_mutual() && !crate::serve::tls::is_loopback(xds) {
        tracing::warn!(
            xds = %xds,
            "xDS over TLS without client certificates (--xds-client-ca): anyone who reaches \
             it can read every fleet's routes"
        );
    }
    if let Some(admin) = admin
        && !crate::serve::tls::is_loopback(admin)
    {
        tracing::warn!(
            admin = %admin,
            "the admin server listens beyond loopback and has no authentication: anyone who \
             reaches it can read the route tables, upstream addresses, Envoy node ids and \
             diagnostics (nothing secret; it changes nothing)"
        );
    }
    Ok(())
}

/// What a reload looks at: the paths the watcher named, or every file (`verify`: read each
/// one again even if its metadata did not change).
enum Look {
    Paths(Vec<PathBuf>),
    All { verify: bool },
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
        let (look, since) = tokio::select! {
            received = rx.recv() => {
                let Some((signal, at)) = received else { break };
                // Everything queued belongs to the same burst: one reload covers it.
                let mut look = Look::Paths(Vec::new());
                let mut gone = false;
                for s in std::iter::once(signal).chain(std::iter::from_fn(|| rx.try_recv().ok().map(|(s, _)| s))) {
                    gone |= s == Signal::RootGone;
                    look = match (look, s) {
                        (Look::Paths(mut all), Signal::Changed(paths)) => {
                            all.extend(paths);
                            Look::Paths(all)
                        }
                        _ => Look::All { verify: true },
                    };
                }
                if gone {
                    dir_watch = None;
                }
                (look, at)
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
        let (back, outcome) = match tokio::task::spawn_blocking(move || {
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
                    admin.hub().publish(p);
                    removal_tries = 0;
                } else {
                    pending_removal = true;
                    removal_tries = tries;
                    recheck = Some(tokio::time::Instant::now() + REMOVAL_SETTLE);
                }
            }
            Some(p) if outcome.changed || confirming => {
                admin.hub().publish(p);
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
    let security = match (&settings.xds_tls, settings.allow.len()) {
        (None, _) => "plaintext".to_string(),
        (
            Some(TlsFiles {
                client_ca: None, ..
            }),
            _,
        ) => "tls".to_string(),
        (Some(_), rules) => format!("mtls, {rules} --allow rules"),
    };
    let running = start(settings, Listeners { xds, admin }, shutdown_signal()).await?;
    match running.admin_addr {
        Some(admin) => tracing::info!(
            xds = %running.xds_addr,
            security,
            admin = format!("http://{admin}/"),
            dir = %args.dir.display(),
            "serving"
        ),
        None => {
            tracing::info!(xds = %running.xds_addr, security, dir = %args.dir.display(), "serving")
        }
    }
    running.done.await??;
    tracing::info!("stopped");
    Ok(())
}

/// Completes on SIGINT or SIGTERM. The handlers are installed when this is called, not when
/// the future is first polled: a SIGTERM that comes right after start is a clean stop too,
/// never the default action (an immediate exit).
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    async move {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
        tracing::info!("shutting down");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cmd {
        #[command(flatten)]
        args: ServeArgs,
    }

    fn parse(flags: &[&str]) -> Result<ServeArgs, clap::Error> {
        Cmd::try_parse_from(["serve", "--dir", "d"].iter().chain(flags)).map(|c| c.args)
    }

    #[test]
    fn an_upstream_ca_path_that_is_not_utf8_is_refused_at_start() {
        use std::os::unix::ffi::OsStrExt;
        let bad = std::ffi::OsStr::from_bytes(b"/etc/ca-\xff.pem");
        let argv = ["serve".as_ref(), "--dir".as_ref(), "d".as_ref()]
            .into_iter()
            .chain(["--upstream-ca".as_ref(), bad]);
        assert!(Cmd::try_parse_from::<_, &std::ffi::OsStr>(argv).is_err());
        let args = parse(&["--upstream-ca", "/etc/ca.pem"]).unwrap();
        let settings = Settings::from_args(&args).unwrap();
        assert_eq!(settings.upstream_ca, Some(PathBuf::from("/etc/ca.pem")));
    }

    #[test]
    fn both_servers_stay_on_loopback_and_in_plaintext_by_default() {
        let args = parse(&[]).unwrap();
        assert_eq!(args.xds, "127.0.0.1:18000".parse().unwrap());
        assert!(crate::serve::tls::is_loopback(args.xds));
        match args.admin {
            AdminAddr::At(addr) => assert_eq!(addr, "127.0.0.1:8877".parse().unwrap()),
            AdminAddr::Off => panic!("the admin server is on by default"),
        }
        let settings = Settings::from_args(&args).unwrap();
        assert_eq!(settings.xds_tls, None);
        assert!(settings.allow.is_empty() && !settings.insecure);
        assert_eq!(settings.drain, DRAIN);
    }

    #[test]
    fn the_tls_flags_fill_the_settings() {
        let args = parse(&[
            "--xds-tls-cert",
            "c.pem",
            "--xds-tls-key",
            "k.pem",
            "--xds-client-ca",
            "ca.pem",
            "--allow",
            "edge=spiffe://corp/ns/*/sa/edge,internal=*.internal.corp",
            "--allow",
            "*=spiffe://corp/ns/ops/sa/*",
        ])
        .unwrap();
        let settings = Settings::from_args(&args).unwrap();
        assert_eq!(
            settings.xds_tls,
            Some(TlsFiles {
                cert: "c.pem".into(),
                key: "k.pem".into(),
                client_ca: Some("ca.pem".into()),
            })
        );
        let rules: Vec<String> = settings.allow.iter().map(|r| r.to_string()).collect();
        assert_eq!(
            rules,
            [
                "edge=spiffe://corp/ns/*/sa/edge",
                "internal=*.internal.corp",
                "*=spiffe://corp/ns/ops/sa/*"
            ]
        );
        assert!(parse(&["--insecure"]).unwrap().insecure);
    }

    #[test]
    fn tls_flags_that_make_no_sense_alone_are_refused() {
        for flags in [
            &["--xds-tls-cert", "c.pem"][..],
            &["--xds-tls-key", "k.pem"],
            &["--xds-client-ca", "ca.pem"],
            &[
                "--xds-tls-cert",
                "c",
                "--xds-tls-key",
                "k",
                "--allow",
                "a=b",
            ],
            &[
                "--xds-tls-cert",
                "c",
                "--xds-tls-key",
                "k",
                "--xds-client-ca",
                "ca",
                "--allow",
                "no-equals-sign",
            ],
        ] {
            assert!(parse(flags).is_err(), "{flags:?}");
        }
    }
}
