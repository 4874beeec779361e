//! The admin HTTP server of `serve` (`--admin`, loopback by default): health and readiness,
//! Prometheus metrics, the JSON API (`/api/routes`, `/api/diagnostics`, `/api/envoys`) and the
//! diagnostics page at `/`.
//!
//! Everything it shows is read from shared state at request time: the hub (what is served and
//! who is connected), the last reload (its diagnostics), and the live traffic readings someone
//! else may fill in (`AdminState::set_live`). Rendering is pure (`api`, `page`); this module only
//! moves state into it and answers HTTP, within limits: only for IP addresses, `localhost` and
//! the `--admin-host` names (`host`), a bounded number of connections, each with a header-read
//! timeout (`server`).

pub mod api;
mod host;
pub mod live_task;
pub mod metrics;
pub mod page;
mod server;
pub mod traffic;

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, RwLock};
use std::time::SystemTime;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;

use crate::admin::metrics::Metrics;
use crate::model::diagnostic::Diagnostic;
use crate::reload::{Outcome, ReloadStats, Served};
use crate::xds::Hub;
pub use host::AllowedHosts;
use server::Refusals;
pub use server::{AdminLimits, DEFAULT_MAX_CONNECTIONS, HEADER_READ_TIMEOUT, Refusal};
pub use traffic::LiveTraffic;

/// The default `--admin` address: loopback, since the page and the API are for operators on
/// the host (or behind a tunnel or proxy they choose).
pub const DEFAULT_ADMIN: &str = "127.0.0.1:8877";

/// Why the admin server cannot start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// `--admin` is neither an address nor `off`.
    #[error("{0:?} is neither an address (such as 127.0.0.1:8877) nor off")]
    BadAddr(String),
    /// An `--admin-host` value that is not a host name.
    #[error(
        "--admin-host {0:?}: expected a host name without a port (such as canary-xds.example.com), \
         or * for any name"
    )]
    BadHost(String),
}

/// Where the admin server listens, or `off`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdminAddr {
    Off,
    At(SocketAddr),
}

impl FromStr for AdminAddr {
    type Err = AdminError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.trim().eq_ignore_ascii_case("off") {
            return Ok(AdminAddr::Off);
        }
        s.trim()
            .parse()
            .map(AdminAddr::At)
            .map_err(|_| AdminError::BadAddr(s.to_string()))
    }
}

impl fmt::Display for AdminAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AdminAddr::Off => f.write_str("off"),
            AdminAddr::At(a) => write!(f, "{a}"),
        }
    }
}

/// What the last reload found, as the page and `/api/diagnostics` show it.
#[derive(Clone, Debug)]
pub struct LastReload {
    pub at: SystemTime,
    /// False when the directory could not be read (the last good config keeps serving).
    pub ok: bool,
    pub stats: ReloadStats,
    pub diagnostics: Arc<[Diagnostic]>,
}

impl LastReload {
    pub fn of(outcome: &Outcome, at: SystemTime) -> LastReload {
        LastReload {
            at,
            ok: outcome.served.is_some(),
            stats: outcome.stats.clone(),
            diagnostics: outcome.diagnostics.iter().cloned().collect(),
        }
    }
}

/// The state the admin server reads: shared with the watch loop (which reports each reload)
/// and with whoever fills in live traffic.
pub struct AdminState {
    hub: Arc<Hub>,
    metrics: Arc<Metrics>,
    /// What is served now, with the route tables it was built from.
    served: RwLock<Arc<Served>>,
    last: RwLock<LastReload>,
    /// A config has been loaded: from the directory, or from `--state-dir` while the directory
    /// cannot be read.
    loaded: AtomicBool,
    /// The xDS server is accepting streams (cleared at shutdown).
    serving: AtomicBool,
    dir: String,
    /// `--envoy-admin` URLs, with any credentials taken out.
    envoy_admin: Vec<String>,
    live: RwLock<Option<LiveTraffic>>,
    /// Requests and connections the server refused, by reason.
    refusals: Arc<Refusals>,
}

impl fmt::Debug for AdminState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminState")
            .field("dir", &self.dir)
            .field("envoy_admin", &self.envoy_admin)
            .finish_non_exhaustive()
    }
}

impl AdminState {
    /// `first` is the first reload and `served` what serve started with; `loaded` whether the
    /// first reload (or `--state-dir`) gave a config.
    pub fn new(
        hub: Arc<Hub>,
        metrics: Arc<Metrics>,
        served: Arc<Served>,
        first: LastReload,
        loaded: bool,
        dir: &std::path::Path,
        envoy_admin: &[String],
    ) -> Arc<AdminState> {
        Arc::new(AdminState {
            hub,
            metrics,
            served: RwLock::new(served),
            last: RwLock::new(first),
            loaded: AtomicBool::new(loaded),
            serving: AtomicBool::new(false),
            dir: dir.display().to_string(),
            envoy_admin: envoy_admin.iter().map(|u| redact_url(u)).collect(),
            live: RwLock::new(None),
            refusals: Arc::default(),
        })
    }

    /// How many requests or connections the admin server refused for `why` since start.
    pub fn refused(&self, why: Refusal) -> u64 {
        self.refusals.get(why)
    }

    /// Takes in what serve publishes, as it publishes it.
    pub fn set_served(&self, served: Arc<Served>) {
        *self.served.write().expect("served lock") = served;
    }

    /// What is served now.
    pub fn served(&self) -> Arc<Served> {
        Arc::clone(&self.served.read().expect("served lock"))
    }

    /// Takes in a reload's outcome (the watch loop calls this after every reload).
    pub fn reloaded(&self, outcome: &Outcome) {
        if outcome.served.is_some() {
            self.loaded.store(true, Ordering::Relaxed);
        }
        *self.last.write().expect("last reload lock") = LastReload::of(outcome, SystemTime::now());
    }

    /// The last reload.
    pub fn last_reload(&self) -> LastReload {
        self.last.read().expect("last reload lock").clone()
    }

    /// Says whether the xDS server is accepting streams.
    pub fn set_serving(&self, serving: bool) {
        self.serving.store(serving, Ordering::Relaxed);
    }

    /// Why the control plane is not ready, or `None` when it is. A withheld fleet (its table
    /// refused, with no good one to serve) makes it not ready: its Envoys get nothing.
    pub fn not_ready(&self) -> Option<String> {
        if !self.loaded.load(Ordering::Relaxed) {
            Some("no config loaded yet: the Mapping directory has not been read".into())
        } else if !self.serving.load(Ordering::Relaxed) {
            Some("the xDS server is not accepting streams".into())
        } else {
            let served = self.served();
            let (fleet, why) = served.published.withheld.iter().next()?;
            Some(format!("fleet {fleet} is sent nothing: {why}"))
        }
    }

    /// Replaces the live traffic readings the page shows (`None`: no reading yet).
    pub fn set_live(&self, live: Option<LiveTraffic>) {
        *self.live.write().expect("live lock") = live;
    }

    /// The `--envoy-admin` URLs, as shown (credentials taken out).
    pub fn envoy_admin(&self) -> &[String] {
        &self.envoy_admin
    }

    /// Everything the page shows, read now.
    pub fn page_data(&self) -> page::PageData {
        page::PageData {
            now: SystemTime::now(),
            dir: self.dir.clone(),
            served: self.served(),
            last: self.last_reload(),
            envoys: self.hub.envoys(),
            envoy_admin: self.envoy_admin.clone(),
            live: self.live.read().expect("live lock").clone(),
            not_ready: self.not_ready(),
        }
    }
}

/// The admin routes over `state`, answering only requests for `hosts` (see [`AllowedHosts`]).
pub fn router(state: Arc<AdminState>, hosts: AllowedHosts) -> Router {
    let check = axum::middleware::from_fn_with_state(
        (Arc::clone(&state.refusals), Arc::new(hosts)),
        check_host,
    );
    Router::new()
        .route("/", get(page_handler))
        .route("/healthz", get(|| async { plain(StatusCode::OK, "ok\n") }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/api/routes", get(api_routes))
        .route("/api/diagnostics", get(api_diagnostics))
        .route("/api/envoys", get(api_envoys))
        .fallback(|| async {
            plain(
                StatusCode::NOT_FOUND,
                "not found: see / for the page and the API\n",
            )
        })
        .with_state(state)
        .layer(check)
}

/// Serves the admin routes on `listener` within `limits` until `shutdown` completes, then
/// returns once the connections have finished what they were answering.
pub async fn serve(
    listener: TcpListener,
    state: Arc<AdminState>,
    limits: AdminLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), AdminError> {
    let refusals = Arc::clone(&state.refusals);
    let app = router(state, limits.hosts.clone());
    server::run(listener, app, &limits, refusals, shutdown).await;
    Ok(())
}

/// Answers 421 to a request for a host name the server does not answer to (DNS rebinding:
/// see `host.rs`). Both the `Host` header and an absolute URI's authority must be allowed.
async fn check_host(
    State((refusals, hosts)): State<(Arc<Refusals>, Arc<AllowedHosts>)>,
    request: Request,
    next: Next,
) -> Response {
    let mut given = request
        .headers()
        .get_all(header::HOST)
        .iter()
        .map(|v| v.to_str().ok())
        .chain(request.uri().authority().map(|a| Some(a.as_str())));
    let refused = given.find(|host| !host.is_some_and(|h| hosts.allows(Some(h))));
    let Some(host) = refused else {
        return next.run(request).await;
    };
    refusals.count(Refusal::Host);
    let shown: String = host.unwrap_or("(not text)").chars().take(100).collect();
    tracing::debug!(host = shown, "admin request refused for its Host");
    (
        StatusCode::MISDIRECTED_REQUEST,
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        // The flag first: `status` shows only the first 200 characters of an answer.
        format!(
            "misdirected request: the admin server answers only for an IP address, localhost or \
             a name given with --admin-host (CANARY_XDS_ADMIN_HOST), not for Host {shown:?} \
             (a name could be a web page's, reading it through a browser by DNS rebinding)\n"
        ),
    )
        .into_response()
}

fn plain(status: StatusCode, text: &'static str) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        text,
    )
        .into_response()
}

async fn readyz(State(state): State<Arc<AdminState>>) -> Response {
    match state.not_ready() {
        None => plain(StatusCode::OK, "ready\n"),
        Some(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            [
                (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            format!("not ready: {why}\n"),
        )
            .into_response(),
    }
}

async fn metrics(State(state): State<Arc<AdminState>>) -> Response {
    state.metrics.admin_refusals(&state.refusals);
    let text = state.metrics.render(&state.hub);
    (
        [
            (header::CONTENT_TYPE, crate::admin::metrics::CONTENT_TYPE),
            (header::CACHE_CONTROL, "no-store"),
        ],
        text,
    )
        .into_response()
}

fn json(body: String) -> Response {
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response()
}

async fn api_routes(State(state): State<Arc<AdminState>>) -> Response {
    let last = state.last_reload();
    json(api::routes(&state.served(), &last.diagnostics))
}

async fn api_diagnostics(State(state): State<Arc<AdminState>>) -> Response {
    json(api::diagnostics(&state.hub.current(), &state.last_reload()))
}

async fn api_envoys(State(state): State<Arc<AdminState>>) -> Response {
    json(api::envoys(&state.hub.current(), &state.hub.envoys()))
}

/// The page's Content-Security-Policy: nothing from elsewhere, and only our own inline script
/// (by its hash) and style, so that a hostile name in a Mapping file could not run code even if
/// escaping ever failed.
static PAGE_CSP: LazyLock<String> = LazyLock::new(|| {
    use sha2::{Digest, Sha256};
    let hash = base64(&Sha256::digest(page::SCRIPT.as_bytes()));
    format!(
        "default-src 'none'; style-src 'unsafe-inline'; script-src 'sha256-{hash}'; \
         connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; \
         frame-ancestors 'none'"
    )
});

async fn page_handler(State(state): State<Arc<AdminState>>) -> Response {
    let html = page::render(&state.page_data());
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CONTENT_SECURITY_POLICY, PAGE_CSP.as_str()),
        ],
        html,
    )
        .into_response()
}

/// Standard base64 with padding (for the CSP hash; no dependency for 20 lines).
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A URL as it may be shown: without user information (`user:password@`) or a query, which
/// could carry credentials.
pub fn redact_url(url: &str) -> String {
    let url = url.trim();
    let (scheme, rest) = match url.split_once("://") {
        Some((s, r)) => (Some(s), r),
        None => (None, url),
    };
    let rest = rest.split(['?', '#']).next().unwrap_or("");
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    match scheme {
        Some(s) => format!("{s}://{host}{path}"),
        None => format!("{host}{path}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_addresses_parse() {
        assert_eq!("off".parse::<AdminAddr>().unwrap(), AdminAddr::Off);
        assert_eq!("OFF".parse::<AdminAddr>().unwrap(), AdminAddr::Off);
        assert_eq!(
            DEFAULT_ADMIN.parse::<AdminAddr>().unwrap(),
            AdminAddr::At("127.0.0.1:8877".parse().unwrap())
        );
        assert!("localhost".parse::<AdminAddr>().is_err());
        assert_eq!(AdminAddr::Off.to_string(), "off");
    }

    #[test]
    fn credentials_never_show() {
        assert_eq!(
            redact_url("http://admin:s3cret@127.0.0.1:9901/?token=x"),
            "http://127.0.0.1:9901/"
        );
        assert_eq!(redact_url("http://127.0.0.1:9901"), "http://127.0.0.1:9901");
        assert_eq!(redact_url("envoy-1:9901"), "envoy-1:9901");
    }

    #[test]
    fn base64_matches_known_values() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }
}
