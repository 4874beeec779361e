//! `canary-xds serve`: the I/O shell around the pipeline. It watches the directory, reloads,
//! publishes snapshots to the ADS server, and shuts down cleanly.
//!
//! `start` takes bound listeners (xDS, and the admin server's unless it is off) and a shutdown
//! future (tests bind port 0 and read the addresses back) and returns what is running.

mod accept;
mod args;
pub mod dir_watch;
mod first_load;
mod in_place;
mod start;
pub mod state_dir;
pub mod tls;
mod watch_loop;

pub use args::{
    DEFAULT_LISTEN, DRAIN, LogFormat, ReloadHook, ServeArgs, Settings, XdsLimitArgs, XdsLimits,
    parse_listen,
};
pub use start::{Listeners, Running, start};
use std::future::Future;

use tokio::net::TcpListener;

use crate::admin::AdminAddr;
use tls::TlsFiles;

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
    /// The watch loop died: no change on disk would reach Envoy any more, so `serve` ends, for
    /// a supervisor to restart it (`--state-dir` restores the last good state).
    #[error("the watch loop stopped ({0}); exiting, so that serve is restarted")]
    WatchLoop(String),
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
