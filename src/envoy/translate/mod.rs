//! Route tables to Envoy resources: the listener (LDS), the route configuration (RDS) and the
//! clusters (CDS) that one fleet's Envoys are served.
//!
//! Pure: the same table and options always give the same protos, byte for byte once encoded
//! (every protobuf `map` field we fill holds at most one entry, since prost encodes maps in
//! `HashMap` order). Envoy's proto types are known only in `envoy`, in the xDS side (which moves them
//! encoded) and in `--state-dir`'s record of what was served; they are imported under `Xds*`
//! names so they are never confused with ours.

mod cluster;
mod listener;
mod matcher;
mod route;
mod vhosts;

pub use cluster::cluster;
pub use listener::{http_connection_manager, listener, listener_name, listener_with_routes};
pub use route::{
    envoy_routes, is_weighted, read_weights_from_runtime, route_configuration,
    weighted_route_with_runtime,
};
pub use vhosts::{
    Growth, covers, growth, links, repeated_total, repetitions, thousands, virtual_host_plan,
    virtual_hosts,
};

use crate::routes::RouteTable;
use envoy_types::pb::envoy::config::cluster::v3::Cluster as XdsCluster;
use envoy_types::pb::envoy::config::listener::v3::Listener as XdsListener;
use envoy_types::pb::envoy::config::route::v3::RouteConfiguration as XdsRouteConfiguration;
use envoy_types::pb::google::protobuf::Duration;
use std::net::SocketAddr;
use std::path::PathBuf;

/// The name of the one route configuration every listener asks for over RDS.
pub const ROUTE_CONFIG_NAME: &str = "canary-xds";

/// The HTTP connection manager's `stat_prefix`: Envoy's stats for our listener are
/// `http.canary_xds.*` (benchmarks read `http.canary_xds.rds.canary-xds.version_text`).
pub const STAT_PREFIX: &str = "canary_xds";

/// The name of Envoy's HTTP connection manager network filter.
pub const HCM_FILTER: &str = "envoy.filters.network.http_connection_manager";

/// The name of Envoy's router HTTP filter.
pub const ROUTER_FILTER: &str = "envoy.filters.http.router";

/// The key under which a cluster's HTTP protocol options (HTTP/2 for gRPC) are given.
pub const HTTP_PROTOCOL_OPTIONS: &str = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions";

/// The name of Envoy's TLS transport socket.
pub const TLS_TRANSPORT_SOCKET: &str = "envoy.transport_sockets.tls";

/// The system's trust store on Debian and its derivatives (and Envoy's own images).
///
/// Envoy has no working "system roots" switch on Linux: `system_root_certs` is accepted by Envoy
/// 1.40 but verifies nothing (a certificate from an unknown CA was accepted), so the upstream's
/// certificate is checked against this bundle unless `Options::upstream_ca` says otherwise.
pub const SYSTEM_TRUST_STORE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// The name of the virtual host (and its only domain) that takes requests for any host.
pub const ANY_HOST: &str = "*";

/// What translation needs beyond the route table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// Where the default fleet's Envoys listen for HTTP.
    pub listen: SocketAddr,
    /// The CA bundle that upstream TLS certificates are checked against; `None` uses the system
    /// trust store (`SYSTEM_TRUST_STORE`).
    pub upstream_ca: Option<PathBuf>,
}

/// Everything one fleet's Envoys are served, ready to be packed into discovery responses.
#[derive(Clone, Debug, PartialEq)]
pub struct Translated {
    /// The HTTP listener on `Options::listen`, taking its routes over RDS.
    pub listener: XdsListener,
    /// The route configuration `canary-xds`.
    pub route_config: XdsRouteConfiguration,
    /// Every cluster the routes use, sorted by name.
    pub clusters: Vec<XdsCluster>,
}

/// Translates one fleet's route table into its listener, route configuration and clusters.
pub fn translate(table: &RouteTable, options: &Options) -> Translated {
    Translated {
        listener: listener(options.listen),
        route_config: route_configuration(table),
        clusters: table
            .clusters
            .iter()
            .map(|(name, spec)| cluster(name, spec, options))
            .collect(),
    }
}

fn duration_ms(ms: u64) -> Duration {
    Duration {
        // parse caps timeouts at a year, far below i64::MAX seconds.
        seconds: (ms / 1000) as i64,
        nanos: ((ms % 1000) * 1_000_000) as i32,
    }
}

#[cfg(test)]
mod tests;
