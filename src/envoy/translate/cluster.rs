//! Clusters: one per upstream, with its connect timeout, HTTP/2 for gRPC, and TLS to upstreams
//! that use https.

use std::path::Path;

use envoy_types::pb::envoy::config::cluster::v3::Cluster as XdsCluster;
use envoy_types::pb::envoy::config::cluster::v3::cluster::{ClusterDiscoveryType, DiscoveryType, DnsLookupFamily, LbPolicy};
use envoy_types::pb::envoy::config::core::v3::{DataSource, Http2ProtocolOptions, TransportSocket};
use envoy_types::pb::envoy::config::core::v3::data_source::Specifier as DataSourceSpecifier;
use envoy_types::pb::envoy::config::core::v3::transport_socket::ConfigType as TransportSocketConfig;
use envoy_types::pb::envoy::config::endpoint::v3::{ClusterLoadAssignment, Endpoint as XdsEndpoint, LbEndpoint, LocalityLbEndpoints};
use envoy_types::pb::envoy::config::endpoint::v3::lb_endpoint::HostIdentifier;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{CertificateValidationContext, CommonTlsContext, SubjectAltNameMatcher, UpstreamTlsContext};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::common_tls_context::ValidationContextType;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::subject_alt_name_matcher::SanType;
use envoy_types::pb::envoy::extensions::upstreams::http::v3::HttpProtocolOptions;
use envoy_types::pb::envoy::extensions::upstreams::http::v3::http_protocol_options::{ExplicitHttpConfig, UpstreamProtocolOptions};
use envoy_types::pb::envoy::extensions::upstreams::http::v3::http_protocol_options::explicit_http_config::ProtocolConfig;
use envoy_types::util::pack_any;

use super::listener::socket_address;
use super::matcher::string_exact;
use super::{
    HTTP_PROTOCOL_OPTIONS, Options, SYSTEM_TRUST_STORE, TLS_TRANSPORT_SOCKET, duration_ms,
};
use crate::model::mapping::Scheme;
use crate::routes::ClusterSpec;

// ----------------------------------------------------------------------------------------------
// CDS

/// The Envoy cluster `name` for one upstream. Built one at a time so that a snapshot can
/// re-translate only the clusters that changed.
pub fn cluster(name: &str, spec: &ClusterSpec, options: &Options) -> XdsCluster {
    let service = &spec.service;
    let ip = service.is_ip();
    let mut cluster = XdsCluster {
        name: name.into(),
        // An IP needs no resolution, and a STATIC cluster warms at once.
        cluster_discovery_type: Some(ClusterDiscoveryType::Type(if ip {
            DiscoveryType::Static as i32
        } else {
            DiscoveryType::StrictDns as i32
        })),
        connect_timeout: Some(duration_ms(spec.settings.connect_timeout_ms)),
        lb_policy: LbPolicy::RoundRobin as i32,
        // `localhost` may resolve to ::1 first while the upstream listens on 127.0.0.1 only.
        dns_lookup_family: if ip {
            DnsLookupFamily::Auto as i32
        } else {
            DnsLookupFamily::V4Preferred as i32
        },
        load_assignment: Some(ClusterLoadAssignment {
            cluster_name: name.into(),
            endpoints: vec![LocalityLbEndpoints {
                lb_endpoints: vec![LbEndpoint {
                    host_identifier: Some(HostIdentifier::Endpoint(XdsEndpoint {
                        address: Some(socket_address(&service.host, service.port)),
                        ..Default::default()
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    };
    if spec.settings.grpc {
        // The only map entry: prost encodes maps in HashMap order, so more would make the
        // encoding vary between runs.
        cluster
            .typed_extension_protocol_options
            .insert(HTTP_PROTOCOL_OPTIONS.into(), pack_any(http2_options()));
    }
    if service.scheme == Scheme::Https {
        cluster.transport_socket = Some(upstream_tls(
            &service.host,
            ip,
            spec.settings.grpc,
            options.upstream_ca.as_deref(),
        ));
    }
    cluster
}

/// HTTP/2 to the upstream, whatever the downstream speaks.
pub(super) fn http2_options() -> HttpProtocolOptions {
    HttpProtocolOptions {
        upstream_protocol_options: Some(UpstreamProtocolOptions::ExplicitHttpConfig(
            ExplicitHttpConfig {
                protocol_config: Some(ProtocolConfig::Http2ProtocolOptions(
                    Http2ProtocolOptions::default(),
                )),
            },
        )),
        ..Default::default()
    }
}

/// TLS to the upstream, verifying its certificate against the CA bundle and its name.
///
/// Without `trusted_ca` Envoy verifies nothing at all, and without a SAN matcher any certificate
/// from a trusted CA would do; both are set. An IP literal gets an IP SAN check and no SNI (SNI
/// carries host names only).
fn upstream_tls(host: &str, ip: bool, grpc: bool, ca: Option<&Path>) -> TransportSocket {
    let ca = ca.unwrap_or(Path::new(SYSTEM_TRUST_STORE));
    let context = UpstreamTlsContext {
        common_tls_context: Some(CommonTlsContext {
            // gRPC servers insist on ALPN h2 over TLS; Envoy does not offer it by itself.
            alpn_protocols: if grpc { vec!["h2".into()] } else { Vec::new() },
            validation_context_type: Some(ValidationContextType::ValidationContext(
                CertificateValidationContext {
                    trusted_ca: Some(DataSource {
                        // A proto string: a path that is not UTF-8 cannot be sent as is.
                        specifier: Some(DataSourceSpecifier::Filename(
                            ca.to_string_lossy().into_owned(),
                        )),
                        ..Default::default()
                    }),
                    match_typed_subject_alt_names: vec![SubjectAltNameMatcher {
                        san_type: if ip { SanType::IpAddress } else { SanType::Dns } as i32,
                        matcher: Some(string_exact(host)),
                        ..Default::default()
                    }],
                    ..Default::default()
                },
            )),
            ..Default::default()
        }),
        sni: if ip { String::new() } else { host.into() },
        ..Default::default()
    };
    TransportSocket {
        name: TLS_TRANSPORT_SOCKET.into(),
        config_type: Some(TransportSocketConfig::TypedConfig(pack_any(context))),
    }
}
