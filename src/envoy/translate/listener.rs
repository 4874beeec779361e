//! Listeners: one HTTP listener per address, its connection manager reading routes over RDS
//! from the same ADS stream.

use std::net::SocketAddr;

use envoy_types::pb::envoy::config::core::v3::{Address as XdsAddress, AggregatedConfigSource, ApiVersion, ConfigSource as XdsConfigSource, SocketAddress as XdsSocketAddress};
use envoy_types::pb::envoy::config::core::v3::address::Address as XdsAddressKind;
use envoy_types::pb::envoy::config::core::v3::config_source::ConfigSourceSpecifier;
use envoy_types::pb::envoy::config::core::v3::socket_address::{PortSpecifier, Protocol};
use envoy_types::pb::envoy::config::listener::v3::{Filter as XdsFilter, FilterChain, Listener as XdsListener};
use envoy_types::pb::envoy::config::listener::v3::filter::ConfigType as FilterConfig;
use envoy_types::pb::envoy::config::route::v3::RouteConfiguration as XdsRouteConfiguration;
use envoy_types::pb::envoy::extensions::filters::http::router::v3::Router;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{HttpConnectionManager, HttpFilter, Rds};
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::http_connection_manager::{CodecType, RouteSpecifier, StripPortMode};
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::http_filter::ConfigType as HttpFilterConfig;
use envoy_types::util::pack_any;

use super::{HCM_FILTER, ROUTE_CONFIG_NAME, ROUTER_FILTER, STAT_PREFIX};

// ----------------------------------------------------------------------------------------------
// LDS

/// The listener's name. It includes the address because Envoy cannot move a listener to a new
/// address under the same name: it would reject the update.
pub fn listener_name(addr: SocketAddr) -> String {
    format!("canary-xds-{addr}")
}

/// The HTTP listener on `addr`, whose routes come over ADS as RDS `canary-xds`.
pub fn listener(addr: SocketAddr) -> XdsListener {
    listener_with(addr, RouteSpecifier::Rds(rds()))
}

/// The same listener with the route configuration inline instead of over RDS, as a static
/// bootstrap needs it (used to have Envoy validate what we serve, without a control plane).
pub fn listener_with_routes(addr: SocketAddr, routes: XdsRouteConfiguration) -> XdsListener {
    listener_with(addr, RouteSpecifier::RouteConfig(routes))
}

fn listener_with(addr: SocketAddr, routes: RouteSpecifier) -> XdsListener {
    XdsListener {
        name: listener_name(addr),
        address: Some(socket_address(&addr.ip().to_string(), addr.port())),
        filter_chains: vec![FilterChain {
            filters: vec![XdsFilter {
                name: HCM_FILTER.into(),
                config_type: Some(FilterConfig::TypedConfig(pack_any(
                    http_connection_manager(routes),
                ))),
            }],
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// The HTTP connection manager every canary-xds listener uses; `routes` says where its route
/// configuration comes from.
pub fn http_connection_manager(routes: RouteSpecifier) -> HttpConnectionManager {
    HttpConnectionManager {
        // Envoy rejects an empty stat_prefix.
        stat_prefix: STAT_PREFIX.into(),
        codec_type: CodecType::Auto as i32,
        http_filters: vec![HttpFilter {
            name: ROUTER_FILTER.into(),
            // Without its typed_config Envoy NACKs the listener: it finds the filter by type URL.
            config_type: Some(HttpFilterConfig::TypedConfig(pack_any(Router::default()))),
            ..Default::default()
        }],
        // So that `foo.com:8080` selects the virtual host of `foo.com`, as in Ambassador.
        strip_port_mode: Some(StripPortMode::StripAnyHostPort(true)),
        route_specifier: Some(routes),
        ..Default::default()
    }
}

/// RDS over the ADS stream, asking for `canary-xds`.
pub(super) fn rds() -> Rds {
    Rds {
        config_source: Some(ads_config_source()),
        route_config_name: ROUTE_CONFIG_NAME.into(),
    }
}

fn ads_config_source() -> XdsConfigSource {
    XdsConfigSource {
        config_source_specifier: Some(ConfigSourceSpecifier::Ads(AggregatedConfigSource {})),
        resource_api_version: ApiVersion::V3 as i32,
        ..Default::default()
    }
}

pub(super) fn socket_address(host: &str, port: u16) -> XdsAddress {
    XdsAddress {
        address: Some(XdsAddressKind::SocketAddress(XdsSocketAddress {
            address: host.into(),
            port_specifier: Some(PortSpecifier::PortValue(port.into())),
            protocol: Protocol::Tcp as i32,
            ..Default::default()
        })),
    }
}
