//! `canary-xds bootstrap`: a ready Envoy bootstrap (YAML) that points Envoy at canary-xds.
//!
//! With `--xds-tls-ca` (and `--client-cert`/`--client-key` for mTLS) the `xds_cluster` speaks
//! TLS to canary-xds's `--xds-tls-cert`, verifying it, as `serve` expects.
//!
//! Pure: the text is a function of the flags alone, so the committed examples in `envoy/` can be
//! checked against it. The flags describe the Envoy side, and are read from flags only (a
//! daemon's environment must not change what a one-off command prints).
//!
//! The names Envoy and canary-xds must agree on (route configuration, stat prefix, filters) come
//! from `translate`, which builds the same listener for LDS.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use clap::Args;
use envoy_types::pb::envoy::extensions::filters::http::router::v3::Router;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::HttpConnectionManager;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::UpstreamTlsContext;
use envoy_types::pb::envoy::extensions::upstreams::http::v3::HttpProtocolOptions;
use prost::Name;

use crate::envoy::translate;

mod yaml;

use crate::model::mapping::DEFAULT_FLEET;
use yaml::{Yaml, map, s, seq};

/// Where canary-xds serves xDS unless told otherwise (its `serve` default).
pub const DEFAULT_XDS: &str = "127.0.0.1:18000";

/// The node id Envoy presents unless told otherwise. canary-xds serves by fleet (the node's
/// cluster), not by id; the id only names this Envoy in canary-xds's logs and status, so give
/// each Envoy its own (a host or pod name) when several connect.
pub const DEFAULT_NODE_ID: &str = "envoy";

/// Where Envoy's admin interface listens unless told otherwise.
pub const DEFAULT_ADMIN: &str = "127.0.0.1:9901";

/// The name of the bootstrap's static cluster that reaches canary-xds. `table` keeps it out of
/// the names it gives Mappings' clusters.
pub const XDS_CLUSTER: &str = "xds_cluster";

/// The largest number of downstream connections Envoy accepts. Envoy warns at start when there
/// is no limit; this one is far above what one Envoy serves here.
pub const MAX_DOWNSTREAM_CONNECTIONS: u64 = 50_000;

/// Histogram buckets for every cluster's `upstream_rq_time`, in milliseconds. Envoy's defaults
/// jump from 10 to 25 to 50 ms; these are fine enough to read p50 and p99 of a canary from
/// Prometheus buckets over a window.
pub const UPSTREAM_RQ_TIME_BUCKETS_MS: &[f64] = &[
    0.5, 1.0, 2.0, 3.0, 5.0, 7.0, 10.0, 15.0, 20.0, 25.0, 30.0, 40.0, 50.0, 60.0, 75.0, 100.0,
    125.0, 150.0, 200.0, 250.0, 300.0, 400.0, 500.0, 750.0, 1000.0, 1500.0, 2000.0, 3000.0, 5000.0,
    10000.0, 30000.0, 60000.0,
];

/// Which histograms get `UPSTREAM_RQ_TIME_BUCKETS_MS`: Envoy matches the stat name before tag
/// extraction, `cluster.<name>.upstream_rq_time`. It also takes the per-origin copies Envoy keeps
/// of the same times (`cluster.<name>.external.upstream_rq_time`, measured with Envoy 1.40), which
/// want the same buckets; other histograms keep Envoy's defaults.
pub const UPSTREAM_RQ_TIME_REGEX: &str = r"^cluster\..+\.upstream_rq_time$";

/// The flags of `bootstrap`. They describe the Envoy side.
#[derive(Clone, Debug, PartialEq, Eq, Args)]
pub struct BootstrapArgs {
    /// Where canary-xds serves xDS, as host:port. A host name is resolved by Envoy (STRICT_DNS);
    /// an IP is used as is. Repeat it to list several replicas serving the same files: Envoy
    /// keeps one stream to one of them, and moves to another when that one goes away.
    #[arg(long, value_name = "HOST:PORT", default_value = DEFAULT_XDS, action = clap::ArgAction::Append)]
    pub xds: Vec<XdsAddress>,
    /// The node id this Envoy presents. canary-xds only shows it (logs, status); give each
    /// Envoy its own, such as its host or pod name.
    #[arg(long, value_name = "ID", default_value = DEFAULT_NODE_ID, value_parser = node_id)]
    pub node_id: String,
    /// The fleet (ambassador_id) whose Mappings this Envoy serves; sent as the node's cluster.
    #[arg(long, value_name = "NAME", default_value = DEFAULT_FLEET, value_parser = fleet)]
    pub fleet: String,
    /// Where Envoy's admin interface listens.
    #[arg(long, value_name = "ADDR", default_value = DEFAULT_ADMIN)]
    pub admin: SocketAddr,
    /// Use the incremental (delta) xDS protocol instead of state of the world.
    #[arg(long)]
    pub delta: bool,
    /// Keep a static HTTP listener on ADDR that takes its routes from canary-xds, instead of
    /// the listener canary-xds serves over LDS (for users who keep their own listener).
    #[arg(long, value_name = "ADDR")]
    pub static_listener: Option<SocketAddr>,
    /// Leave out canary-xds's runtime layer (RTDS). With it, a weight change reaches Envoy as
    /// a small runtime update instead of a new route table.
    #[arg(long)]
    pub no_runtime: bool,
    /// Connect to canary-xds over TLS, verifying its certificate against this CA (a PEM file,
    /// read by Envoy: a path on Envoy's host).
    #[arg(long, value_name = "FILE", value_parser = file_path)]
    pub xds_tls_ca: Option<String>,
    /// The name canary-xds's certificate must carry, also sent as SNI. Default: the --xds host
    /// (an IP is then checked against the certificate's IP SANs, without SNI); with several
    /// hosts, any of them, without SNI.
    #[arg(long, value_name = "NAME", requires = "xds_tls_ca", value_parser = dns_name)]
    pub xds_sni: Option<String>,
    /// For mTLS, the client certificate Envoy presents (a PEM chain, read by Envoy). Needs
    /// --client-key and --xds-tls-ca.
    #[arg(
        long,
        value_name = "FILE",
        requires_all = ["client_key", "xds_tls_ca"],
        value_parser = file_path
    )]
    pub client_cert: Option<String>,
    /// The private key of --client-cert (a PEM file, read by Envoy).
    #[arg(long, value_name = "FILE", requires = "client_cert", value_parser = file_path)]
    pub client_key: Option<String>,
    /// Envoy's stats flush interval, in seconds (Envoy's default: 5). With thousands of
    /// clusters each flush stops Envoy's main thread, which applies xDS updates, for up to
    /// ~100 ms; a longer interval spares most changes that wait, and histograms and stats
    /// sinks update less often (docs/serving.md, "Limits worth knowing").
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u32).range(1..=299))]
    pub stats_flush_interval: Option<u32>,
}

impl Default for BootstrapArgs {
    /// The defaults of the flags.
    fn default() -> Self {
        BootstrapArgs {
            xds: vec![DEFAULT_XDS.parse().expect("the default is valid")],
            node_id: DEFAULT_NODE_ID.into(),
            fleet: DEFAULT_FLEET.into(),
            admin: DEFAULT_ADMIN.parse().expect("the default is valid"),
            delta: false,
            static_listener: None,
            no_runtime: false,
            xds_tls_ca: None,
            xds_sni: None,
            stats_flush_interval: None,
            client_cert: None,
            client_key: None,
        }
    }
}

/// canary-xds's xDS address: a host name or an IP, and a port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct XdsAddress {
    /// A DNS name (lower-case) or an IP address (IPv6 without brackets).
    pub host: String,
    /// The TCP port, never 0.
    pub port: u16,
}

impl XdsAddress {
    fn ip(&self) -> Option<IpAddr> {
        self.host.parse().ok()
    }
}

impl FromStr for XdsAddress {
    type Err = String;

    /// `host:port`, `1.2.3.4:port` or `[::1]:port`.
    fn from_str(s: &str) -> Result<Self, String> {
        if let Ok(addr) = s.parse::<SocketAddr>() {
            return Ok(XdsAddress {
                host: addr.ip().to_string(),
                port: addr.port(),
            });
        }
        let (host, port) = s
            .rsplit_once(':')
            .ok_or_else(|| format!("{s:?} is not host:port"))?;
        let port = match port.parse::<u16>() {
            Ok(p) if p > 0 => p,
            _ => return Err(format!("bad port {port:?} in {s:?}; use 1 to 65535")),
        };
        let name_ok = !host.is_empty()
            && host.len() <= 253
            && host.split('.').all(|label| {
                !label.is_empty()
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
        if !name_ok {
            return Err(format!(
                "{host:?} in {s:?} is not a host name or IP address"
            ));
        }
        Ok(XdsAddress {
            host: host.to_ascii_lowercase(),
            port,
        })
    }
}

impl fmt::Display for XdsAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.ip() {
            Some(IpAddr::V6(ip)) => write!(f, "[{ip}]:{}", self.port),
            _ => write!(f, "{}:{}", self.host, self.port),
        }
    }
}

/// A node id: anything printable (it ends up in a YAML comment and in logs).
fn node_id(s: &str) -> Result<String, String> {
    if s.is_empty() || s.chars().any(char::is_control) {
        return Err("the node id must be non-empty, without control characters".into());
    }
    Ok(s.into())
}

/// A file path Envoy reads: any text without control characters.
fn file_path(s: &str) -> Result<String, String> {
    if s.is_empty() || s.chars().any(char::is_control) {
        return Err("the path must be non-empty, without control characters".into());
    }
    Ok(s.into())
}

/// A DNS name (lower-case), as SNI and the certificate's name carry it.
fn dns_name(s: &str) -> Result<String, String> {
    match format!("{s}:1").parse::<XdsAddress>() {
        Ok(a) if a.ip().is_none() => Ok(a.host),
        _ => Err(format!("{s:?} is not a DNS name")),
    }
}

/// A fleet name: what an `ambassador_id` may be, so that Mappings can name it.
fn fleet(s: &str) -> Result<String, String> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_graphic() && b != b'=') {
        return Err(format!("{s:?} is not a valid fleet (ambassador_id)"));
    }
    Ok(s.into())
}

/// Renders the bootstrap YAML.
pub fn render(args: &BootstrapArgs) -> String {
    let mut out = format!(
        "# Envoy bootstrap for canary-xds, printed by `{}`.\n\
         # Regenerate it with that command rather than editing it.\n",
        command_line(args)
    );
    let yaml = serde_saphyr::to_string_with_options(
        &bootstrap(args),
        // Long `@type` URLs stay on one line instead of becoming folded block scalars.
        serde_saphyr::ser_options! { prefer_block_scalars: false },
    )
    // The tree holds only maps, lists, strings and numbers: nothing the serializer refuses.
    .expect("a YAML tree serializes");
    out.push_str(&yaml);
    out
}

/// The command that prints this bootstrap: the flags that differ from their defaults.
fn command_line(args: &BootstrapArgs) -> String {
    let defaults = BootstrapArgs::default();
    let mut line = String::from("canary-xds bootstrap");
    if args.xds != defaults.xds {
        for xds in &args.xds {
            line.push_str(&format!(" --xds {xds}"));
        }
    }
    if args.node_id != defaults.node_id {
        line.push_str(&format!(" --node-id {}", shell_word(&args.node_id)));
    }
    if args.fleet != defaults.fleet {
        line.push_str(&format!(" --fleet {}", shell_word(&args.fleet)));
    }
    if args.admin != defaults.admin {
        line.push_str(&format!(" --admin {}", args.admin));
    }
    if args.delta {
        line.push_str(" --delta");
    }
    if let Some(addr) = args.static_listener {
        line.push_str(&format!(" --static-listener {addr}"));
    }
    if args.no_runtime {
        line.push_str(" --no-runtime");
    }
    if let Some(secs) = args.stats_flush_interval {
        line.push_str(&format!(" --stats-flush-interval {secs}"));
    }
    for (flag, value) in [
        ("--xds-tls-ca", &args.xds_tls_ca),
        ("--xds-sni", &args.xds_sni),
        ("--client-cert", &args.client_cert),
        ("--client-key", &args.client_key),
    ] {
        if let Some(v) = value {
            line.push_str(&format!(" {flag} {}", shell_word(v)));
        }
    }
    line
}

/// A word as a POSIX shell reads it back.
fn shell_word(s: &str) -> String {
    if s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-_.:/@%+=,".contains(&b))
    {
        s.into()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

fn bootstrap(args: &BootstrapArgs) -> Yaml {
    let ads = || map([("ads", map([])), ("resource_api_version", s("V3"))]);
    let mut dynamic = vec![
        (
            "ads_config",
            map([
                (
                    "api_type",
                    s(if args.delta { "DELTA_GRPC" } else { "GRPC" }),
                ),
                ("transport_api_version", s("V3")),
                (
                    "grpc_services",
                    seq([map([(
                        "envoy_grpc",
                        map([("cluster_name", s(XDS_CLUSTER))]),
                    )])]),
                ),
                // The node is sent once per stream, not on every request.
                ("set_node_on_first_message_only", Yaml::Bool(true)),
            ]),
        ),
        ("cds_config", ads()),
    ];
    let mut statics = vec![("clusters", seq([xds_cluster(args)]))];
    match args.static_listener {
        Some(addr) => statics.insert(0, ("listeners", seq([static_listener(addr)]))),
        None => dynamic.push(("lds_config", ads())),
    }
    let mut node = vec![("id", s(&args.node_id)), ("cluster", s(&args.fleet))];
    let mut runtime = Vec::new();
    if !args.no_runtime {
        // The metadata tells canary-xds that this Envoy reads weights from the layer.
        node.push((
            "metadata",
            map([(crate::xds::stream::RUNTIME_METADATA, Yaml::Bool(true))]),
        ));
        runtime.push((
            "layered_runtime",
            map([(
                "layers",
                seq([map([
                    ("name", s(crate::xds::RUNTIME_LAYER)),
                    (
                        "rtds_layer",
                        map([
                            ("name", s(crate::xds::RUNTIME_LAYER)),
                            ("rtds_config", ads()),
                        ]),
                    ),
                ])]),
            )]),
        ));
    }
    let mut top = vec![
        ("node", Yaml::Map(node)),
        ("dynamic_resources", Yaml::Map(dynamic)),
        ("static_resources", Yaml::Map(statics)),
        (
            "admin",
            map([(
                "address",
                socket_address(&args.admin.ip().to_string(), args.admin.port()),
            )]),
        ),
        (
            "overload_manager",
            map([(
                "resource_monitors",
                seq([map([
                    (
                        "name",
                        s("envoy.resource_monitors.global_downstream_max_connections"),
                    ),
                    (
                        "typed_config",
                        map([
                            (
                                "@type",
                                s("type.googleapis.com/envoy.extensions.resource_monitors.\
                                   downstream_connections.v3.DownstreamConnectionsConfig"),
                            ),
                            (
                                "max_active_downstream_connections",
                                Yaml::Int(MAX_DOWNSTREAM_CONNECTIONS),
                            ),
                        ]),
                    ),
                ])]),
            )]),
        ),
        (
            "stats_config",
            map([(
                "histogram_bucket_settings",
                seq([map([
                    (
                        "match",
                        map([("safe_regex", map([("regex", s(UPSTREAM_RQ_TIME_REGEX))]))]),
                    ),
                    (
                        "buckets",
                        Yaml::FlowSeq(
                            UPSTREAM_RQ_TIME_BUCKETS_MS
                                .iter()
                                .map(|&ms| Yaml::Number(ms))
                                .collect(),
                        ),
                    ),
                ])]),
            )]),
        ),
    ];
    if let Some(secs) = args.stats_flush_interval {
        top.push(("stats_flush_interval", s(format!("{secs}s"))));
    }
    top.extend(runtime);
    Yaml::Map(top)
}

/// The static cluster that reaches canary-xds over gRPC: one endpoint per `--xds`. Envoy's
/// ADS stream goes to one of them; when it breaks (that replica went away), Envoy opens a new
/// one, which its load balancer sends to another endpoint.
fn xds_cluster(args: &BootstrapArgs) -> Yaml {
    let all_ips = args.xds.iter().all(|x| x.ip().is_some());
    let mut cluster = vec![
        ("name", s(XDS_CLUSTER)),
        // A name is resolved (and re-resolved) by Envoy; an IP needs nothing.
        ("type", s(if all_ips { "STATIC" } else { "STRICT_DNS" })),
        ("connect_timeout", s("1s")),
    ];
    if !all_ips {
        // As for upstreams: `localhost` may resolve to ::1 first.
        cluster.push(("dns_lookup_family", s("V4_PREFERRED")));
    }
    let endpoints = args
        .xds
        .iter()
        .map(|xds| {
            map([(
                "endpoint",
                map([("address", socket_address(&xds.host, xds.port))]),
            )])
        })
        .collect();
    cluster.extend([
        (
            "load_assignment",
            map([
                ("cluster_name", s(XDS_CLUSTER)),
                (
                    "endpoints",
                    seq([map([("lb_endpoints", Yaml::Seq(endpoints))])]),
                ),
            ]),
        ),
        (
            // gRPC needs HTTP/2. Without it Envoy speaks HTTP/1.1 to canary-xds and fails
            // without a word in its log (only upstream_cx_protocol_error grows).
            "typed_extension_protocol_options",
            map([(
                translate::HTTP_PROTOCOL_OPTIONS,
                map([
                    ("@type", s(HttpProtocolOptions::type_url())),
                    (
                        "explicit_http_config",
                        map([(
                            "http2_protocol_options",
                            map([(
                                // Finds a dead xDS connection (a vanished peer) in seconds
                                // rather than at the next TCP timeout.
                                "connection_keepalive",
                                map([("interval", s("30s")), ("timeout", s("5s"))]),
                            )]),
                        )]),
                    ),
                ]),
            )]),
        ),
        (
            "upstream_connection_options",
            map([("tcp_keepalive", map([]))]),
        ),
    ]);
    if let Some(ca) = &args.xds_tls_ca {
        cluster.push(("transport_socket", xds_tls(args, ca)));
    }
    Yaml::Map(cluster)
}

/// TLS to canary-xds: its certificate verified against the CA and for its name, and with
/// `--client-cert` Envoy's own certificate for mTLS.
///
/// Without a SAN matcher Envoy accepts any certificate the CA signed, whatever its name, so one
/// is always set: the `--xds-sni` name, or else the `--xds` hosts (an IP gets an IP SAN check and
/// no SNI, which carries host names only). Several replicas under several names each get a
/// matcher (any one matches) and no SNI, which one name could not carry for all of them; give
/// `--xds-sni` to check one name every replica's certificate carries.
fn xds_tls(args: &BootstrapArgs, ca: &str) -> Yaml {
    let (names, sni): (Vec<(String, bool)>, Option<String>) = match &args.xds_sni {
        Some(sni) => (vec![(sni.clone(), false)], Some(sni.clone())),
        None => {
            let mut hosts: Vec<(String, bool)> = Vec::new();
            for x in &args.xds {
                let host = (x.host.clone(), x.ip().is_some());
                if !hosts.contains(&host) {
                    hosts.push(host);
                }
            }
            let sni = match hosts.as_slice() {
                [(name, false)] => Some(name.clone()),
                _ => None,
            };
            (hosts, sni)
        }
    };
    let mut common = vec![
        // gRPC over TLS negotiates HTTP/2 by ALPN; Envoy offers none by itself.
        ("alpn_protocols", Yaml::FlowSeq(vec![s("h2")])),
    ];
    if let (Some(cert), Some(key)) = (&args.client_cert, &args.client_key) {
        common.push((
            "tls_certificates",
            seq([map([
                ("certificate_chain", map([("filename", s(cert))])),
                ("private_key", map([("filename", s(key))])),
            ])]),
        ));
    }
    common.push((
        "validation_context",
        map([
            ("trusted_ca", map([("filename", s(ca))])),
            (
                "match_typed_subject_alt_names",
                Yaml::Seq(
                    names
                        .iter()
                        .map(|(name, ip)| {
                            map([
                                ("san_type", s(if *ip { "IP_ADDRESS" } else { "DNS" })),
                                ("matcher", map([("exact", s(name))])),
                            ])
                        })
                        .collect(),
                ),
            ),
        ]),
    ));
    let mut context = vec![
        ("@type", s(UpstreamTlsContext::type_url())),
        ("common_tls_context", Yaml::Map(common)),
    ];
    if let Some(sni) = sni {
        context.push(("sni", s(sni)));
    }
    map([
        ("name", s(translate::TLS_TRANSPORT_SOCKET)),
        ("typed_config", Yaml::Map(context)),
    ])
}

/// The listener of `--static-listener`: the one `translate::listener` builds for LDS, with the
/// same names, written as YAML.
fn static_listener(addr: SocketAddr) -> Yaml {
    let hcm = map([
        ("@type", s(HttpConnectionManager::type_url())),
        ("stat_prefix", s(translate::STAT_PREFIX)),
        ("codec_type", s("AUTO")),
        (
            "rds",
            map([
                (
                    "config_source",
                    map([("ads", map([])), ("resource_api_version", s("V3"))]),
                ),
                ("route_config_name", s(translate::ROUTE_CONFIG_NAME)),
            ]),
        ),
        (
            "http_filters",
            seq([map([
                ("name", s(translate::ROUTER_FILTER)),
                ("typed_config", map([("@type", s(Router::type_url()))])),
            ])]),
        ),
        ("strip_any_host_port", Yaml::Bool(true)),
    ]);
    map([
        ("name", s(translate::listener_name(addr))),
        (
            "address",
            socket_address(&addr.ip().to_string(), addr.port()),
        ),
        (
            "filter_chains",
            seq([map([(
                "filters",
                seq([map([
                    ("name", s(translate::HCM_FILTER)),
                    ("typed_config", hcm),
                ])]),
            )])]),
        ),
    ])
}

fn socket_address(host: &str, port: u16) -> Yaml {
    map([(
        "socket_address",
        map([("address", s(host)), ("port_value", Yaml::Int(port.into()))]),
    )])
}

#[cfg(test)]
mod tests;
