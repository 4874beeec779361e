//! An ADS client for canary-xds (tonic, plaintext or TLS): a stream opened as an Envoy opens
//! it, and the first cluster response.

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
    use envoy_types::pb::envoy::config::core::v3::Node;
    use envoy_types::pb::envoy::service::discovery::v3::DiscoveryRequest;
    use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
    use prost::Name;
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
    let channel = endpoint.connect().await.map_err(|e| unavailable(&e))?;
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(DiscoveryRequest {
        node: Some(Node {
            id: id.into(),
            cluster: fleet.into(),
            ..Default::default()
        }),
        type_url: envoy_types::pb::envoy::config::cluster::v3::Cluster::type_url(),
        ..Default::default()
    })
    .await
    .unwrap();
    let stream = AggregatedDiscoveryServiceClient::new(channel)
        .stream_aggregated_resources(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await?
        .into_inner();
    Ok((stream, tx))
}
