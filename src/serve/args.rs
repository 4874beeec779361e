//! The flags of `serve` and the settings they fill.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;

use super::tls::TlsFiles;
use crate::admin::{AdminAddr, AdminLimits, AllowedHosts};
use crate::envoy::snapshot::{
    DEFAULT_MAX_LAYER_ROUTES, DEFAULT_MAX_ROUTE_BYTES, DEFAULT_MAX_ROUTES, Listen, RouteLimits,
};
use crate::input::DEFAULT_MAX_FILE_SIZE;
use crate::xds::identity::AllowRule;
use crate::xds::server::StreamLimits;

use super::ServeError;

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
    /// The most route entries a fleet's route configuration may hold, across its virtual hosts
    /// (every route without a host repeats in every host's virtual host). A larger table is
    /// refused: its fleet keeps its last good table.
    #[arg(long, default_value_t = DEFAULT_MAX_ROUTES, env = "CANARY_XDS_MAX_ROUTES")]
    pub max_routes: u64,
    /// The most bytes a fleet's encoded route configuration may take. A larger table is
    /// refused: its fleet keeps its last good table.
    #[arg(long, default_value_t = DEFAULT_MAX_ROUTE_BYTES, env = "CANARY_XDS_MAX_ROUTE_BYTES")]
    pub max_route_bytes: u64,
    /// The most routes whose weights the runtime layer (RTDS) carries: the routes whose weights
    /// differ from their default (100% to the primary), in table order. Any beyond have their
    /// weights in the route table, so a change of theirs resends the route table.
    #[arg(long, default_value_t = DEFAULT_MAX_LAYER_ROUTES, env = "CANARY_XDS_MAX_LAYER_ROUTES")]
    pub max_layer_routes: usize,
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
    /// A host name the admin server answers to besides IP addresses and `localhost` (say, its
    /// Service's name, when read through it); `*` for any name. Repeatable. Requests for other
    /// names are refused (421), so that no web page can read the admin server through a
    /// browser by DNS rebinding.
    #[arg(
        long = "admin-host",
        value_name = "NAME",
        env = "CANARY_XDS_ADMIN_HOST",
        value_delimiter = ','
    )]
    pub admin_host: Vec<String>,
    /// The most connections the admin server holds open at once; more are answered 503 and
    /// closed.
    #[arg(
        long,
        default_value_t = crate::admin::DEFAULT_MAX_CONNECTIONS,
        env = "CANARY_XDS_ADMIN_MAX_CONNECTIONS",
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub admin_max_connections: u32,
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
    /// Check the flags and the settings they make, print `ok` and exit, binding nothing and
    /// reading no file (for manifests checked offline). Hidden, and never read from the
    /// environment: a variable left in a daemon's environment must not make it exit.
    #[arg(long, hide = true)]
    pub validate_flags: bool,
    #[command(flatten)]
    pub xds_limits: XdsLimitArgs,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// The default address of the HTTP listener served to Envoy.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:8080";

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
    /// The most a fleet's route configuration may hold (`--max-routes`, `--max-route-bytes`).
    pub route_limits: RouteLimits,
    /// The most routes whose weights the runtime layer carries (`--max-layer-routes`).
    pub max_layer_routes: usize,
    pub upstream_ca: Option<PathBuf>,
    pub empty_grace: Duration,
    /// Envoy admin endpoints to read live traffic from (`--envoy-admin`).
    pub envoy_admin: Vec<String>,
    /// What the admin server accepts (`--admin-host`, `--admin-max-connections`).
    pub admin_limits: AdminLimits,
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
    /// What a client of the xDS port may cost (`--xds-max-*`, `--xds-first-request-timeout`).
    pub xds_limits: XdsLimits,
    /// Called inside every reload of the watch loop; tests only.
    #[doc(hidden)]
    pub reload_hook: ReloadHook,
}

/// Code run inside every reload of the watch loop, so that a test can make a reload fail (say,
/// panic) where no input can. Not a flag nor a variable: only code in the process sets it.
#[doc(hidden)]
#[derive(Clone, Default)]
pub struct ReloadHook(Option<Arc<dyn Fn() + Send + Sync>>);

impl ReloadHook {
    pub fn new(f: impl Fn() + Send + Sync + 'static) -> ReloadHook {
        ReloadHook(Some(Arc::new(f)))
    }

    pub(crate) fn call(&self) {
        if let Some(f) = &self.0 {
            f();
        }
    }
}

impl fmt::Debug for ReloadHook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() {
            "ReloadHook(set)"
        } else {
            "ReloadHook(none)"
        })
    }
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
            route_limits: RouteLimits {
                max_routes: args.max_routes,
                max_bytes: args.max_route_bytes,
            },
            max_layer_routes: args.max_layer_routes,
            upstream_ca: args.upstream_ca.clone().map(PathBuf::from),
            empty_grace: Duration::from_millis(args.empty_grace_ms),
            envoy_admin: args
                .envoy_admin
                .iter()
                .map(|u| u.trim().to_string())
                .filter(|u| !u.is_empty())
                .collect(),
            admin_limits: AdminLimits {
                hosts: AllowedHosts::new(&args.admin_host)?,
                max_connections: args.admin_max_connections,
                ..AdminLimits::default()
            },
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
            xds_limits: XdsLimits::from_args(&args.xds_limits),
            reload_hook: ReloadHook::default(),
        })
    }

    /// The settings `args` make, checked as `serve` checks them at start where that needs no
    /// file and no socket: plaintext xDS beyond loopback needs `--insecure`, and client
    /// certificates need an `--allow` (the rule `tls::Security::load` applies once it has read
    /// the CA). What `--validate-flags` runs; certificates and the directory are not read.
    pub fn check_flags(args: &ServeArgs) -> Result<Settings, ServeError> {
        let settings = Settings::from_args(args)?;
        match &settings.xds_tls {
            None => {
                super::tls::check_plaintext(args.xds, settings.insecure)?;
            }
            Some(files) if files.client_ca.is_some() && settings.allow.is_empty() => {
                return Err(super::tls::TlsError::NoAllowRules.into());
            }
            Some(_) => {}
        }
        Ok(settings)
    }

    /// Settings for `dir` with every default (for tests and embedding).
    pub fn for_dir(dir: impl Into<PathBuf>) -> Settings {
        Settings {
            dir: dir.into(),
            listen: parse_listen(&[]).expect("defaults parse"),
            state_dir: None,
            rescan_interval: Duration::from_secs(30),
            max_file_size: DEFAULT_MAX_FILE_SIZE,
            route_limits: RouteLimits::default(),
            max_layer_routes: DEFAULT_MAX_LAYER_ROUTES,
            upstream_ca: None,
            empty_grace: Duration::from_millis(1000),
            envoy_admin: Vec::new(),
            admin_limits: AdminLimits::default(),
            xds_tls: None,
            allow: Vec::new(),
            insecure: false,
            drain: DRAIN,
            xds_limits: XdsLimits::default(),
            reload_hook: ReloadHook::default(),
        }
    }
}

// --- the limits of the xDS port ---

/// The flags that bound what a client of the xDS port may cost: each is a row of the Limits
/// table in docs/operating.md.
#[derive(Clone, Debug, Args)]
pub struct XdsLimitArgs {
    /// The largest ADS request taken, in bytes; a larger one ends its stream with
    /// RESOURCE_EXHAUSTED. By default it follows what is published: twice the largest fleet's
    /// resource names and versions (what a delta reconnect reports), and at least 4 MiB.
    #[arg(long, value_name = "BYTES", env = "CANARY_XDS_XDS_MAX_REQUEST_BYTES")]
    pub xds_max_request_bytes: Option<usize>,
    /// Seconds a new ADS stream has to send its first request before it is closed.
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = 15,
        value_parser = clap::value_parser!(u64).range(1..),
        env = "CANARY_XDS_XDS_FIRST_REQUEST_TIMEOUT"
    )]
    pub xds_first_request_timeout: u64,
    /// Seconds a new connection to the xDS port has to open: to send the HTTP/2 preface in
    /// plaintext, to finish the TLS handshake with TLS. It is closed otherwise.
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = 10,
        value_parser = clap::value_parser!(u64).range(1..),
        env = "CANARY_XDS_XDS_HANDSHAKE_TIMEOUT"
    )]
    pub xds_handshake_timeout: u64,
    /// ADS streams one HTTP/2 connection may have open at once (Envoy opens one).
    #[arg(
        long,
        value_name = "N",
        default_value_t = DEFAULT_MAX_STREAMS_PER_CONNECTION,
        value_parser = clap::value_parser!(u32).range(1..),
        env = "CANARY_XDS_XDS_MAX_STREAMS_PER_CONNECTION"
    )]
    pub xds_max_streams_per_connection: u32,
    /// Connections the xDS port may have open at once; one more is closed as it is accepted.
    /// By default 10,000, or fewer when the open-file limit (raised to its hard limit at
    /// start) would not hold them.
    #[arg(long, value_name = "N", env = "CANARY_XDS_XDS_MAX_CONNECTIONS")]
    pub xds_max_connections: Option<usize>,
}

/// How long a new xDS connection has to open, by default.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Streams per xDS connection by default: Envoy opens one ADS stream on its connection.
pub const DEFAULT_MAX_STREAMS_PER_CONNECTION: u32 = 100;

/// What a client of the xDS port may cost.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XdsLimits {
    /// Per stream: the request size limit and the first request's deadline.
    pub stream: StreamLimits,
    pub max_streams_per_connection: u32,
    /// How long a new connection has for the HTTP/2 preface (plaintext) or the TLS handshake.
    pub handshake_timeout: Duration,
    /// `None`: the default, below the open-file limit (`accept::connection_limit`).
    pub max_connections: Option<usize>,
}

impl Default for XdsLimits {
    fn default() -> Self {
        XdsLimits {
            stream: StreamLimits::default(),
            max_streams_per_connection: DEFAULT_MAX_STREAMS_PER_CONNECTION,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            max_connections: None,
        }
    }
}

impl XdsLimits {
    fn from_args(args: &XdsLimitArgs) -> Self {
        XdsLimits {
            stream: StreamLimits {
                max_request_bytes: args.xds_max_request_bytes,
                first_request_timeout: Duration::from_secs(args.xds_first_request_timeout),
            },
            max_streams_per_connection: args.xds_max_streams_per_connection,
            handshake_timeout: Duration::from_secs(args.xds_handshake_timeout),
            max_connections: args.xds_max_connections,
        }
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
    fn check_flags_refuses_what_serve_would_refuse_at_start() {
        let ok = |flags: &[&str]| Settings::check_flags(&parse(flags).unwrap()).is_ok();
        assert!(ok(&[]));
        assert!(!ok(&["--xds", "0.0.0.0:18000"]));
        assert!(ok(&["--xds", "0.0.0.0:18000", "--insecure"]));
        let tls = [
            "--xds",
            "0.0.0.0:18000",
            "--xds-tls-cert",
            "c",
            "--xds-tls-key",
            "k",
        ];
        assert!(ok(&tls));
        assert!(!ok(&[&tls[..], &["--xds-client-ca", "ca"]].concat()));
        assert!(ok(&[
            &tls[..],
            &["--xds-client-ca", "ca", "--allow", "*=**"]
        ]
        .concat()));
        assert!(!ok(&["--listen", "nowhere"]));
        assert!(parse(&["--validate-flags"]).unwrap().validate_flags);
    }

    #[test]
    fn the_admin_server_limits_have_flags_and_defaults() {
        let settings = Settings::from_args(&parse(&[]).unwrap()).unwrap();
        assert_eq!(settings.admin_limits, AdminLimits::default());
        assert_eq!(settings.admin_limits.max_connections, 256);
        assert_eq!(
            settings.admin_limits.header_read_timeout,
            Duration::from_secs(10)
        );
        let args = parse(&[
            "--admin-host",
            "canary-xds.ops.svc,Admin.Example.",
            "--admin-host",
            "canary-xds",
            "--admin-max-connections",
            "16",
        ])
        .unwrap();
        let settings = Settings::from_args(&args).unwrap();
        assert_eq!(
            settings.admin_limits.hosts,
            AllowedHosts::new(&["canary-xds.ops.svc", "admin.example", "canary-xds"]).unwrap()
        );
        assert_eq!(settings.admin_limits.max_connections, 16);
        assert!(parse(&["--admin-max-connections", "0"]).is_err());
        // A port or a URL is not a name: refused at start, and by --validate-flags.
        for bad in ["canary-xds:8877", "http://canary-xds"] {
            let args = parse(&["--admin-host", bad]).unwrap();
            assert!(Settings::check_flags(&args).is_err(), "{bad}");
        }
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
