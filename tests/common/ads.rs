//! An ADS client for canary-xds (tonic, plaintext or TLS): a stream opened as an Envoy opens
//! it, and the first cluster response; connections and streams of either variant opened by
//! hand (requests as a test writes them), and the status a stream ends with.

use std::path::Path;
use std::time::Duration;

use super::pki::CertFiles;

/// How an ADS test client talks to canary-xds.
pub enum ClientTls<'a> {
    Plaintext,
    /// TLS verifying the server as `localhost` against `ca`, presenting `cert` if given.
    Tls {
        ca: &'a Path,
        cert: Option<&'a CertFiles>,
    },
}

/// Opens a state-of-the-world ADS stream to canary-xds on 127.0.0.1:`port` as node `id` of
/// `fleet`, asks for clusters, and returns the first response, or the status that ended the
/// stream (a failed connection or handshake is `Unavailable`). Waits at most 10 s.
pub async fn first_cds(
    port: u16,
    tls: ClientTls<'_>,
    id: &str,
    fleet: &str,
) -> Result<envoy_types::pb::envoy::service::discovery::v3::DiscoveryResponse, tonic::Status> {
    let (mut stream, _requests) = open_ads(port, tls, id, fleet).await?;
    tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .map_err(|_| tonic::Status::deadline_exceeded("no answer in 10 s"))??
        .ok_or_else(|| tonic::Status::ok("the stream ended without a response"))
}

/// An open ADS stream after its first request (clusters, as node `id` of `fleet`): the
/// responses, and the sender of further requests (the stream ends when it is dropped).
pub async fn open_ads(
    port: u16,
    tls: ClientTls<'_>,
    id: &str,
    fleet: &str,
) -> Result<
    (
        tonic::Streaming<envoy_types::pb::envoy::service::discovery::v3::DiscoveryResponse>,
        tokio::sync::mpsc::Sender<envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest>,
    ),
    tonic::Status,
> {
    open_ads_with_window(port, tls, id, fleet, None).await
}

/// `open_ads` with HTTP/2 flow-control windows of `window` bytes (stream and connection): a
/// response larger than that stays in flight until the client reads it.
pub async fn open_ads_with_window(
    port: u16,
    tls: ClientTls<'_>,
    id: &str,
    fleet: &str,
    window: Option<u32>,
) -> Result<
    (
        tonic::Streaming<envoy_types::pb::envoy::service::discovery::v3::DiscoveryResponse>,
        tokio::sync::mpsc::Sender<envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest>,
    ),
    tonic::Status,
> {
    use envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest;
    use prost::Name;

    let channel = ads_channel(port, tls, window).await?;
    sotw_on(
        channel,
        Some(DiscoveryRequest {
            node: Some(node(id, fleet)),
            type_url: envoy_types::pb::envoy::config::cluster::v3::Cluster::type_url(),
            ..Default::default()
        }),
    )
    .await
}

/// One HTTP/2 connection to canary-xds on 127.0.0.1:`port` (a failed connection or handshake
/// is `Unavailable`), with flow-control windows of `window` bytes if given. Every stream opened
/// on it (and its clones) shares the connection.
pub async fn ads_channel(
    port: u16,
    tls: ClientTls<'_>,
    window: Option<u32>,
) -> Result<tonic::transport::Channel, tonic::Status> {
    use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

    let unavailable = |e: &dyn std::error::Error| {
        let mut text = e.to_string();
        let mut source = e.source();
        while let Some(s) = source {
            text.push_str(&format!(": {s}"));
            source = s.source();
        }
        tonic::Status::unavailable(text)
    };
    let mut endpoint = match tls {
        ClientTls::Plaintext => Endpoint::from_shared(format!("http://127.0.0.1:{port}")),
        ClientTls::Tls { .. } => Endpoint::from_shared(format!("https://127.0.0.1:{port}")),
    }
    .unwrap()
    .connect_timeout(Duration::from_secs(5))
    .initial_stream_window_size(window)
    .initial_connection_window_size(window);
    if let ClientTls::Tls { ca, cert } = tls {
        let mut config = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(std::fs::read(ca).unwrap()))
            .domain_name("localhost");
        if let Some((cert, key)) = cert {
            config = config.identity(Identity::from_pem(
                std::fs::read(cert).unwrap(),
                std::fs::read(key).unwrap(),
            ));
        }
        endpoint = endpoint.tls_config(config).unwrap();
    }
    endpoint.connect().await.map_err(|e| unavailable(&e))
}

/// A node as a bootstrap names it: `id` of fleet `fleet` (`node.cluster`).
pub fn node(id: &str, fleet: &str) -> envoy_types::pb::envoy::config::core::v3::Node {
    envoy_types::pb::envoy::config::core::v3::Node {
        id: id.into(),
        cluster: fleet.into(),
        ..Default::default()
    }
}

/// Opens a state-of-the-world ADS stream on `channel`, its first request `first` (none: the
/// stream stays silent until the caller sends one): the responses, and the sender of requests
/// (the stream ends when it is dropped).
pub async fn sotw_on(
    channel: tonic::transport::Channel,
    first: Option<envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest>,
) -> Result<
    (
        tonic::Streaming<envoy_types::pb::envoy::service::discovery::v3::DiscoveryResponse>,
        tokio::sync::mpsc::Sender<envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest>,
    ),
    tonic::Status,
> {
    use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;

    let (tx, rx) = tokio::sync::mpsc::channel(4);
    if let Some(first) = first {
        tx.send(first).await.unwrap();
    }
    let stream = AggregatedDiscoveryServiceClient::new(channel)
        .max_decoding_message_size(usize::MAX)
        .stream_aggregated_resources(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await?
        .into_inner();
    Ok((stream, tx))
}

/// `sotw_on` for an incremental (delta) ADS stream.
pub async fn delta_on(
    channel: tonic::transport::Channel,
    first: Option<envoy_types::pb::envoy::service::discovery::v3::DeltaDiscoveryRequest>,
) -> Result<
    (
        tonic::Streaming<envoy_types::pb::envoy::service::discovery::v3::DeltaDiscoveryResponse>,
        tokio::sync::mpsc::Sender<
            envoy_types::pb::envoy::service::discovery::v3::DeltaDiscoveryRequest,
        >,
    ),
    tonic::Status,
> {
    use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;

    let (tx, rx) = tokio::sync::mpsc::channel(4);
    if let Some(first) = first {
        tx.send(first).await.unwrap();
    }
    let stream = AggregatedDiscoveryServiceClient::new(channel)
        .max_decoding_message_size(usize::MAX)
        .delta_aggregated_resources(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await?
        .into_inner();
    Ok((stream, tx))
}

/// The status that ends `stream` (responses still on their way are read and dropped; a stream
/// that ends cleanly is `Ok`), or a panic after `timeout`.
pub async fn end_status<T>(stream: &mut tonic::Streaming<T>, timeout: Duration) -> tonic::Status {
    let ending = async {
        loop {
            match stream.message().await {
                Ok(Some(_)) => continue,
                Ok(None) => return tonic::Status::ok(""),
                Err(status) => return status,
            }
        }
    };
    tokio::time::timeout(timeout, ending)
        .await
        .unwrap_or_else(|_| panic!("the stream did not end within {timeout:?}"))
}
