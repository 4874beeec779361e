//! Starting `serve`: the first reload, the hub, the ADS and admin servers, the watch loop,
//! and the drain at shutdown.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use super::dir_watch::Signal;
use super::state_dir::{Saved, StateDir};
use super::tls::Security;
use crate::admin::metrics::Metrics;
use crate::admin::{AdminState, LastReload};
use crate::envoy::snapshot::SnapshotBuilder;
use crate::input::Loader;
use crate::model::mapping::DEFAULT_FLEET;
use crate::reload::{Reloader, Served};
use crate::routes::{RouteTable, Tables};
use crate::xds::identity;
use crate::xds::{Hub, Published};

use super::state_dir::persist;
use super::watch_loop::{WatchLoop, log_outcome, panic_message, start_watch};
use super::{ServeError, Settings};

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
    /// Ends when the server has shut down: after `shutdown`, or with an error after the watch
    /// loop died (`ServeError::WatchLoop`).
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
    let max_connections = connection_limit(&settings);
    let limits = settings.xds_limits;
    // tonic's own default is no limit on streams per connection (it passes `None` to hyper,
    // which removes hyper's 200).
    let mut server = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(10)))
        .max_concurrent_streams(Some(limits.max_streams_per_connection));
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
        SnapshotBuilder::new(settings.listen.clone(), settings.upstream_ca.clone())
            .with_max_layer_routes(settings.max_layer_routes),
        settings.empty_grace,
    )
    .with_limits(settings.route_limits);
    // Watch before the first scan, so that no change after it can be missed.
    let (tx, rx) = mpsc::unbounded_channel::<(Signal, Instant)>();
    let dir_watch = start_watch(&settings, &tx);
    let (state, saved) = match &settings.state_dir {
        Some(dir) => {
            let (state, saved) = StateDir::open(dir)?;
            for w in &saved.warnings {
                tracing::warn!("{w}; left out, as after a start without it");
            }
            (Some(state), saved)
        }
        None => (None, Saved::default()),
    };
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
    let remembered = if first.served.is_none() {
        reloader.from_memory(since)
    } else {
        None
    };
    let accepted = first.accepted.clone();
    let loaded = first.served.is_some() || remembered.is_some();
    let initial = Arc::new(match first.served.or(remembered) {
        Some(served) => served,
        None => {
            // The directory cannot be read yet: serve empty tables until it can.
            let mut builder =
                SnapshotBuilder::new(settings.listen.clone(), settings.upstream_ca.clone());
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
    });
    let hub = Hub::new(initial.published.clone());
    {
        let metrics = Arc::clone(&metrics);
        hub.observe(move |o| metrics.observed(&o));
    }
    let admin_state = AdminState::new(
        Arc::clone(&hub),
        Arc::clone(&metrics),
        initial,
        first_report,
        loaded,
        &settings.dir,
        &envoy_admin,
    );
    if !saved.sets.is_empty() {
        hub.with_archive(|a| {
            for (kind, set) in &saved.sets {
                a.record_published(*kind, set);
            }
        });
        tracing::info!(sets = saved.sets.len(), "resuming from --state-dir");
    }
    let state = match state {
        Some(s) => persist(s, &reloader, &hub, accepted).await,
        None => None,
    };

    // Stops everything: sent on `shutdown`, or when the watch loop dies.
    let (stop_tx, stop_rx) = watch::channel(false);
    let stop_tx = Arc::new(stop_tx);
    {
        let stop_tx = Arc::clone(&stop_tx);
        tokio::spawn(async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        });
    }

    if !envoy_admin.is_empty() {
        tokio::spawn(crate::admin::live_task::run(
            envoy_admin,
            Arc::clone(&admin_state),
            stop_rx.clone(),
        ));
    }
    let admin_task = admin.map(|listener| {
        let mut stop = stop_rx.clone();
        tokio::spawn(crate::admin::serve(
            listener,
            Arc::clone(&admin_state),
            settings.admin_limits.clone(),
            async move {
                let _ = stop.wait_for(|s| *s).await;
            },
        ))
    });
    let watch_loop = tokio::spawn(
        WatchLoop {
            reloader,
            hub: Arc::clone(&hub),
            metrics,
            admin: Arc::clone(&admin_state),
            settings: settings.clone(),
            stop: stop_rx.clone(),
            seen,
            state,
            tx,
            rx,
            dir_watch,
        }
        .run(),
    );
    // A watch loop that dies (a reload panicked) leaves Envoys on a config that no longer
    // follows the directory: everything stops, and `done` ends with why, so the process exits
    // non-zero and a supervisor restarts it.
    let (died_tx, mut died) = oneshot::channel::<ServeError>();
    let watch_task = tokio::spawn(async move {
        let result = match watch_loop.await {
            Ok(result) => result,
            Err(e) => Err(ServeError::WatchLoop(format!(
                "it panicked: {}",
                panic_message(e)
            ))),
        };
        if let Err(e) = result {
            tracing::error!("{e}");
            let _ = died_tx.send(e);
            let _ = stop_tx.send(true);
        }
    });
    let server_hub = Arc::clone(&hub);
    let service = hub.service_with(security.access).with_limits(limits.stream);
    let incoming = super::accept::incoming(xds, max_connections, Arc::clone(&hub));
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
        // Our accept loop (bounded, pausing on errors; it sets TCP_NODELAY and keepalive,
        // which the builder's options would set only on a listener tonic binds itself).
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
        let result = tokio::select! {
            result = serving => result,
            () = deadline => {
                tracing::warn!(
                    after = ?drain,
                    "connections still open after the drain time; dropping them"
                );
                Ok(())
            }
        };
        // Sent before the stop it caused, so it is here whichever way the server ended.
        match died.try_recv() {
            Ok(e) => Err(e),
            Err(_) => result,
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

/// The connection limit of the xDS port, after raising the open-file limit as far as it
/// goes: `--xds-max-connections`, or a default below the open-file limit. A limit above what
/// the open files allow is kept, with a warning: past it, accepts fail and pause.
fn connection_limit(settings: &Settings) -> usize {
    let open_files = super::accept::raise_open_files();
    let (limit, room) =
        super::accept::connection_limit(settings.xds_limits.max_connections, open_files);
    if let Some(room) = room {
        tracing::warn!(
            max_connections = limit,
            open_file_limit = open_files,
            room,
            "--xds-max-connections is above what the open-file limit (RLIMIT_NOFILE) leaves for \
             connections: past that, new connections wait until one closes"
        );
    }
    limit
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
            certificate = identity::san_list(&security.server_names),
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
