//! Starting `serve`: the first reload, the hub, the ADS and admin servers, the watch loop,
//! and the drain at shutdown.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::Stream;

use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use tonic::transport::Server;
use tonic::transport::server::{Router, ServerTlsConfig};

use super::accept::Conn;
use super::dir_watch::Signal;
use super::first_load::{first_load, open_state};
use super::state_dir::persist;
use super::tls::Security;
use super::watch_loop::{WatchLoop, panic_message, start_watch};
use super::{ServeError, Settings, XdsLimits};
use crate::admin::AdminState;
use crate::admin::metrics::Metrics;
use crate::xds::Hub;
use crate::xds::identity;

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
    let xds_addr = local_addr(&xds)?;
    let admin_addr = admin.as_ref().map(local_addr).transpose()?;
    // Before anything else runs: a control plane that would serve unsafely does not start.
    let security = Security::load(settings.xds_tls.as_ref(), &settings.allow)?;
    warn_about_exposure(&settings, &security, xds_addr, admin_addr)?;
    let max_connections = connection_limit(&settings);
    let limits = settings.xds_limits;
    let plaintext = security.tls.is_none();
    let mut server = grpc_server(security.tls, &limits)?;
    let envoy_admin = envoy_admin_urls(&settings);
    let metrics = Arc::new(Metrics::new());
    // Watch before the first scan, so that no change after it can be missed.
    let (tx, rx) = mpsc::unbounded_channel::<(Signal, Instant)>();
    let dir_watch = start_watch(&settings, &tx);
    let (state, saved) = open_state(&settings)?;
    let first = first_load(&settings, &saved, &metrics).await;
    let hub = Hub::new(first.served.published.clone());
    {
        let metrics = Arc::clone(&metrics);
        hub.observe(move |o| metrics.observed(&o));
    }
    let admin_state = AdminState::new(
        Arc::clone(&hub),
        Arc::clone(&metrics),
        first.served,
        first.report,
        first.loaded,
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
        Some(s) => persist(s, &first.reloader, &hub, first.accepted).await,
        None => None,
    };

    let (stop_tx, stop_rx) = stop_on(shutdown);
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
    let (watch_task, died) = supervise(
        WatchLoop {
            reloader: first.reloader,
            hub: Arc::clone(&hub),
            metrics,
            admin: Arc::clone(&admin_state),
            settings: settings.clone(),
            stop: stop_rx.clone(),
            seen: first.seen,
            state,
            tx,
            rx,
            dir_watch,
        },
        stop_tx,
    );
    let service = hub.service_with(security.access).with_limits(limits.stream);
    // With TLS, tonic times the handshake; in plaintext, our accept loop times the preface.
    let preface_timeout = plaintext.then_some(limits.handshake_timeout);
    let incoming = super::accept::incoming(xds, max_connections, preface_timeout, Arc::clone(&hub));
    let done = tokio::spawn(serve_until_drained(
        server.add_service(service),
        incoming,
        Tasks {
            hub: Arc::clone(&hub),
            admin: Arc::clone(&admin_state),
            watch: watch_task,
            admin_server: admin_task,
            died,
        },
        stop_rx,
        settings.drain,
    ));
    Ok(Running {
        xds_addr,
        admin_addr,
        hub,
        admin: admin_state,
        done,
    })
}

fn local_addr(listener: &TcpListener) -> Result<SocketAddr, ServeError> {
    listener
        .local_addr()
        .map_err(|e| ServeError::BadListen(e.to_string()))
}

/// The gRPC server, with keepalives, a cap on streams per connection (tonic's own default is
/// no limit: it passes `None` to hyper, which removes hyper's 200) and TLS when configured,
/// with a deadline for the handshake.
fn grpc_server(tls: Option<ServerTlsConfig>, limits: &XdsLimits) -> Result<Server, ServeError> {
    let server = Server::builder()
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(10)))
        .max_concurrent_streams(Some(limits.max_streams_per_connection));
    match tls {
        Some(tls) => Ok(server
            .tls_config(tls.timeout(limits.handshake_timeout))
            .map_err(|e| crate::serve::tls::TlsError::refused(&e))?),
        None => Ok(server),
    }
}

/// The `--envoy-admin` URLs without user information or queries. Envoy's admin has no
/// authentication and the client sends no user information, so those serve nothing; they could
/// only leak (the page shows a failed read with its URL). They are dropped here, before
/// anything sees them.
fn envoy_admin_urls(settings: &Settings) -> Vec<String> {
    let urls: Vec<String> = settings
        .envoy_admin
        .iter()
        .map(|u| crate::admin::redact_url(u))
        .collect();
    if urls != settings.envoy_admin {
        tracing::warn!(
            "--envoy-admin: user information and queries in the URLs are not used (Envoy's admin \
             has no authentication) and were dropped"
        );
    }
    urls
}

/// The stop signal of everything: sent when `shutdown` completes, or when the watch loop dies.
fn stop_on(
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> (Arc<watch::Sender<bool>>, watch::Receiver<bool>) {
    let (stop_tx, stop_rx) = watch::channel(false);
    let stop_tx = Arc::new(stop_tx);
    let on_shutdown = Arc::clone(&stop_tx);
    tokio::spawn(async move {
        shutdown.await;
        let _ = on_shutdown.send(true);
    });
    (stop_tx, stop_rx)
}

/// Runs the watch loop. One that dies (a reload panicked) leaves Envoys on a config that no
/// longer follows the directory: everything stops, and the returned receiver holds why, so the
/// process exits non-zero and a supervisor restarts it.
fn supervise(
    watch_loop: WatchLoop,
    stop_tx: Arc<watch::Sender<bool>>,
) -> (JoinHandle<()>, oneshot::Receiver<ServeError>) {
    let watch_loop = tokio::spawn(watch_loop.run());
    let (died_tx, died) = oneshot::channel::<ServeError>();
    let task = tokio::spawn(async move {
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
    (task, died)
}

/// What the server waits for as it ends.
struct Tasks {
    hub: Arc<Hub>,
    admin: Arc<AdminState>,
    watch: JoinHandle<()>,
    admin_server: Option<JoinHandle<Result<(), crate::admin::AdminError>>>,
    /// Why the watch loop died, if it did.
    died: oneshot::Receiver<ServeError>,
}

/// Serves ADS on `incoming` until the stop signal, then drains: every stream ends after the
/// responses already queued on it, and whatever is still open after `drain` is dropped.
async fn serve_until_drained(
    router: Router,
    incoming: impl Stream<Item = Result<Conn, Infallible>> + Send + 'static,
    tasks: Tasks,
    stop: watch::Receiver<bool>,
    drain: Duration,
) -> Result<(), ServeError> {
    let Tasks {
        hub,
        admin,
        watch,
        admin_server,
        mut died,
    } = tasks;
    let mut server_stop = stop.clone();
    let mut drain_stop = stop;
    let stopping_admin = Arc::clone(&admin);
    let stopped = async move {
        let _ = server_stop.wait_for(|s| *s).await;
        stopping_admin.set_serving(false);
        // End every ADS stream (after the responses already queued on it) so the server can
        // finish; Envoys keep their config. tonic then closes the listener and sends each
        // connection a GOAWAY.
        hub.close();
    };
    // The listener is bound, so streams opened from now on are accepted.
    admin.set_serving(true);
    // Our accept loop (bounded, pausing on errors; it sets TCP_NODELAY and keepalive, which
    // the builder's options would set only on a listener tonic binds itself).
    let serving = async move {
        let result = router.serve_with_incoming_shutdown(incoming, stopped).await;
        let _ = watch.await;
        result?;
        if let Some(task) = admin_server {
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
