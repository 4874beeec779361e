//! The ADS server: one tokio task per Envoy stream, moving messages between the socket and the
//! stream's protocol state.
//!
//! envoy-types' generated service would re-encode every resource for every Envoy; ours writes
//! the response body itself from the snapshot's pre-encoded, shared bytes, so a snapshot is
//! encoded once however many Envoys it goes to, and no stream keeps a copy of it. Snapshots
//! reach the streams through a `watch` channel: a stream that is busy sees only the latest one.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Instant, SystemTime};

use envoy_types::pb::envoy::service::discovery::v3::{DeltaDiscoveryRequest, DiscoveryRequest};
use tokio::sync::mpsc;
use tonic::codec::{DecodeBuf, Decoder};
use tonic::codegen::{BoxFuture, Context, Poll, Service, http};
use tonic::server::NamedService;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tonic::{Status, Streaming};

use super::archive::Archive;
use super::hub::{EnvoyStatus, Hub, Observed};
use super::identity::{self, Access, San};
use super::resource::Kind;
use super::snapshot::Published;
use super::stream::{Encoded, Event, ProtocolError, StreamState, Variant};

/// The gRPC service name Envoy calls.
pub const SERVICE_NAME: &str = "envoy.service.discovery.v3.AggregatedDiscoveryService";
const SOTW_PATH: &str =
    "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources";
const DELTA_PATH: &str =
    "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources";

/// Requests larger than this are refused. Delta reconnects carry every resource's version, so
/// the limit is far above tonic's 4 MiB default.
pub const MAX_REQUEST_BYTES: usize = 64 * 1024 * 1024;

/// The tonic service for ADS, both variants.
#[derive(Clone)]
pub struct AdsService {
    hub: Arc<Hub>,
    access: Access,
}

impl AdsService {
    pub(super) fn new(hub: Arc<Hub>, access: Access) -> Self {
        AdsService { hub, access }
    }
}

impl NamedService for AdsService {
    const NAME: &'static str = SERVICE_NAME;
}

impl<B> Service<http::Request<B>> for AdsService
where
    B: tonic::codegen::Body + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let hub = Arc::clone(&self.hub);
        let peer = Peer::of(&req, &self.access);
        match req.uri().path() {
            SOTW_PATH => Box::pin(async move {
                Ok(open_stream::<DiscoveryRequest, B>(
                    hub,
                    Variant::Sotw,
                    peer,
                    req,
                ))
            }),
            DELTA_PATH => Box::pin(async move {
                Ok(open_stream::<DeltaDiscoveryRequest, B>(
                    hub,
                    Variant::Delta,
                    peer,
                    req,
                ))
            }),
            _ => {
                Box::pin(async move { Ok(Status::unimplemented("not an ADS method").into_http()) })
            }
        }
    }
}

/// The other end of a stream, as far as deciding what it may receive goes.
struct Peer {
    access: Access,
    addr: Option<SocketAddr>,
    /// The SANs of its verified client certificate; `None` without one. Read only under mTLS.
    sans: Option<Vec<San>>,
}

impl Peer {
    /// tonic puts the connection's details in the request's extensions: the TCP peer always,
    /// and over TLS the certificates the client presented (rustls verified them against the
    /// client CA during the handshake).
    fn of<B>(req: &http::Request<B>, access: &Access) -> Peer {
        let addr = req
            .extensions()
            .get::<TcpConnectInfo>()
            .and_then(TcpConnectInfo::remote_addr);
        let sans = access
            .is_mutual()
            .then(|| {
                let certs = req
                    .extensions()
                    .get::<TlsConnectInfo<TcpConnectInfo>>()?
                    .peer_certs()?;
                match identity::sans(certs.first()?) {
                    Ok(sans) => Some(sans),
                    Err(e) => {
                        tracing::warn!(peer = ?addr, error = %e, "cannot read the client certificate's names");
                        Some(Vec::new())
                    }
                }
            })
            .flatten();
        Peer {
            access: access.clone(),
            addr,
            sans,
        }
    }
}

/// Answers an ADS call: requests are decoded by tonic; responses go out as the shared,
/// pre-encoded bytes themselves (a gRPC frame header, then each resource's bytes), so that no
/// stream holds a private copy of a snapshot, however large the route table.
fn open_stream<R, B>(
    hub: Arc<Hub>,
    variant: Variant,
    peer: Peer,
    req: http::Request<B>,
) -> http::Response<tonic::body::Body>
where
    R: AdsRequest,
    B: tonic::codegen::Body + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
{
    let requests = Streaming::new_request(
        ProstDecoder::<R>(PhantomData),
        req.into_body(),
        None,
        Some(MAX_REQUEST_BYTES),
    );
    // Two responses in flight at most: a slow Envoy holds back only its own task.
    let (tx, rx) = mpsc::channel(2);
    tokio::spawn(run_stream(hub, variant, peer, requests, tx));
    let mut response = http::Response::new(tonic::body::Body::new(AdsBody {
        rx,
        pending: std::collections::VecDeque::new(),
        done: false,
    }));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/grpc"),
    );
    response
}

/// The response body of an ADS stream: gRPC frames made of shared `Bytes`, then the status in
/// trailers.
struct AdsBody {
    rx: mpsc::Receiver<Result<Encoded, Status>>,
    pending: std::collections::VecDeque<bytes::Bytes>,
    done: bool,
}

impl http_body::Body for AdsBody {
    type Data = bytes::Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<bytes::Bytes>, Status>>> {
        if let Some(chunk) = self.pending.pop_front() {
            return Poll::Ready(Some(Ok(http_body::Frame::data(chunk))));
        }
        if self.done {
            return Poll::Ready(None);
        }
        match self.rx.poll_recv(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Ok(encoded))) => {
                // The gRPC message header: not compressed, then the length, big-endian.
                let mut header = [0u8; 5];
                header[1..].copy_from_slice(&(encoded.len() as u32).to_be_bytes());
                self.pending
                    .push_back(bytes::Bytes::copy_from_slice(&header));
                self.pending
                    .extend(encoded.chunks.into_iter().filter(|c| !c.is_empty()));
                let first = self.pending.pop_front().expect("the header was pushed");
                Poll::Ready(Some(Ok(http_body::Frame::data(first))))
            }
            Poll::Ready(end) => {
                self.done = true;
                let status = match end {
                    Some(Err(status)) => status,
                    _ => Status::ok(""),
                };
                let mut trailers = http::HeaderMap::new();
                let _ = status.add_header(&mut trailers);
                Poll::Ready(Some(Ok(http_body::Frame::trailers(trailers))))
            }
        }
    }
}

/// A request type of an ADS variant and how the stream state takes it.
trait AdsRequest: prost::Message + Default + Send + 'static {
    fn apply(
        state: &mut StreamState,
        req: &Self,
        archive: &Archive,
    ) -> Result<Vec<Event>, ProtocolError>;
}

impl AdsRequest for DiscoveryRequest {
    fn apply(
        state: &mut StreamState,
        req: &Self,
        archive: &Archive,
    ) -> Result<Vec<Event>, ProtocolError> {
        state.on_sotw(req, archive)
    }
}

impl AdsRequest for DeltaDiscoveryRequest {
    fn apply(
        state: &mut StreamState,
        req: &Self,
        archive: &Archive,
    ) -> Result<Vec<Event>, ProtocolError> {
        state.on_delta(req, archive)
    }
}

async fn run_stream<R: AdsRequest>(
    hub: Arc<Hub>,
    variant: Variant,
    peer: Peer,
    mut requests: Streaming<R>,
    tx: mpsc::Sender<Result<Encoded, Status>>,
) {
    let id = hub.next_stream.fetch_add(1, Ordering::Relaxed);
    hub.counters.streams_opened.fetch_add(1, Ordering::Relaxed);
    let mut snapshots = hub.snapshots.subscribe();
    let mut closing = hub.closing.subscribe();
    let mut state = StreamState::new(variant);
    let connected_since = SystemTime::now();
    let mut synced: Option<String> = None;
    // The change (`Published::since`) the last responses were planned from.
    let mut planned_since: Option<Instant> = None;
    // Nothing is planned before the node is known, and the node's fleet is checked against the
    // peer's certificate as soon as it is: a refused stream is sent nothing.
    let mut authorized = false;
    loop {
        if let Some(fleet) = state.fleet().map(str::to_string) {
            let published = Arc::clone(&snapshots.borrow_and_update());
            let snap = published.fleet(&fleet);
            // A withheld fleet is sent nothing: its Envoys keep what they hold.
            let withheld = published.withholds(&fleet).is_some();
            let responses = if withheld || state.settled_for(&snap) {
                Vec::new()
            } else {
                let mut archive = hub.archive.lock().expect("archive lock");
                state.plan(&snap, &mut archive)
            };
            let sent_any = !responses.is_empty();
            if sent_any {
                planned_since = Some(published.since);
            }
            for r in responses {
                tracing::debug!(
                    node = state.node_id().unwrap_or(""),
                    fleet,
                    kind = %r.kind,
                    version = r.version,
                    nonce = r.nonce,
                    resources = r.resources,
                    removed = r.removed,
                    bytes = r.body.len(),
                    "push"
                );
                hub.counters.responses.fetch_add(1, Ordering::Relaxed);
                if tx.send(Ok(r.body)).await.is_err() {
                    break;
                }
            }
            // Settled: nothing new to send, nothing in flight, and the last response of every
            // type was ACKed (a NACKed snapshot is not held).
            let settled = !withheld
                && !sent_any
                && Kind::ALL.iter().all(|k| {
                    let t = state.status(*k);
                    !t.waiting_for_ack && t.sent == t.acked
                });
            if settled {
                synced = Some(snap.version.clone());
            }
            let in_sync = synced.as_deref() == Some(snap.version.as_str());
            update_status(&hub, id, &state, connected_since, synced.clone(), in_sync);
        }
        tokio::select! {
            message = requests.message() => match message {
                Ok(Some(req)) => {
                    let applied = {
                        let archive = hub.archive.lock().expect("archive lock");
                        R::apply(&mut state, &req, &archive)
                    };
                    if let (Ok(_), false, Some(fleet)) = (&applied, authorized, state.fleet()) {
                        if let Err(why) = peer.access.check(fleet, peer.sans.as_deref()) {
                            // Never the certificate itself, nor anything secret: who, what, why.
                            tracing::warn!(
                                node = state.node_id().unwrap_or(""),
                                fleet,
                                sans = identity::san_list(peer.sans.as_deref().unwrap_or_default()),
                                peer = peer.addr.map(|a| a.to_string()).unwrap_or_default(),
                                reason = %why,
                                "refused an xDS stream: its client certificate does not allow this fleet"
                            );
                            let _ = tx
                                .send(Err(Status::permission_denied(format!(
                                    "this client certificate may not receive fleet {fleet:?}"
                                ))))
                                .await;
                            return;
                        }
                        authorized = true;
                    }
                    match applied {
                        Ok(events) => {
                            let published = Arc::clone(&snapshots.borrow());
                            on_events(&hub, id, planned_since, &state, &published, events);
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "refusing an ADS stream");
                            let _ = tx.send(Err(Status::invalid_argument(e.to_string()))).await;
                            break;
                        }
                    }
                }
                Ok(None) => break,
                Err(status) => {
                    tracing::debug!(node = state.node_id().unwrap_or(""), %status, "stream ended");
                    break;
                }
            },
            changed = snapshots.changed() => if changed.is_err() { break },
            // `wait_for`, not `changed`: a stream opened after `close` must end too.
            _ = async { closing.wait_for(|c| *c).await.is_ok() } => break,
        }
    }
    hub.envoys.lock().expect("envoys lock").remove(&id);
    if let Some(node) = state.node_id() {
        tracing::info!(node, fleet = state.fleet().unwrap_or(""), variant = %variant, "Envoy disconnected");
    }
}

fn on_events(
    hub: &Hub,
    id: u64,
    planned_since: Option<Instant>,
    state: &StreamState,
    published: &Arc<Published>,
    events: Vec<Event>,
) {
    let node = state.node_id().unwrap_or("");
    let fleet = state.fleet().unwrap_or("");
    for e in events {
        match e {
            Event::Ack { kind, version } => {
                hub.counters.acks.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(node, fleet, %kind, version, "ack");
                // Only the ACK of a response planned from what is served now counts for the
                // change, not a late ACK of the one before it.
                if planned_since == Some(published.since) && hub.take_awaited(id, kind) {
                    hub.notify(Observed::ChangeAcked {
                        kind,
                        since_change: published.since.elapsed(),
                    });
                }
            }
            Event::Nack {
                kind,
                version,
                message,
            } => {
                hub.counters.nacks.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    node,
                    fleet,
                    %kind,
                    version,
                    message,
                    "Envoy rejected a config (NACK); it keeps its previous one, and this version \
                     is not sent again"
                );
            }
            Event::UnknownVersion { kind, version } => tracing::warn!(
                node,
                fleet,
                %kind,
                version,
                "Envoy reconnected holding a version this server does not know (a restart \
                 without --state-dir after the files changed?): its next {kind} update cannot \
                 be ordered make-before-break"
            ),
            Event::UnknownType { type_url } => {
                tracing::debug!(
                    node,
                    type_url,
                    "ignoring a request for a type canary-xds does not serve"
                )
            }
        }
    }
}

fn update_status(
    hub: &Hub,
    id: u64,
    state: &StreamState,
    connected_since: SystemTime,
    synced_version: Option<String>,
    in_sync: bool,
) {
    let mut envoys = hub.envoys.lock().expect("envoys lock");
    let status = envoys.entry(id).or_insert_with(|| EnvoyStatus {
        node_id: state.node_id().unwrap_or("").to_string(),
        fleet: state.fleet().unwrap_or("").to_string(),
        variant: state.variant(),
        runtime: state.runtime(),
        connected_since,
        types: BTreeMap::new(),
        synced_version: None,
        in_sync: false,
        // Not connected when the change was published: not part of its propagation.
        awaiting: 0,
    });
    status.runtime = state.runtime();
    status.synced_version = synced_version;
    status.in_sync = in_sync;
    for k in Kind::ALL {
        status.types.insert(k.short(), state.status(k));
    }
}

/// Decodes requests with prost.
struct ProstDecoder<R>(PhantomData<R>);

impl<R: prost::Message + Default> Decoder for ProstDecoder<R> {
    type Item = R;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<R>, Status> {
        R::decode(src)
            .map(Some)
            .map_err(|e| Status::invalid_argument(format!("cannot decode the request: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{CANARY, MAIN, envoy, published};

    #[test]
    fn a_change_awaits_the_first_ack_of_each_type_it_moved_from_envoys_already_there() {
        let edge = "apiVersion: ambassador/v1\nkind: Mapping\nname: edge\nprefix: /edge/\nservice: edge\nambassador_id: edge\n";
        let hub = Hub::new(published(&[("a.yaml", MAIN), ("e.yaml", edge)]));
        {
            let mut envoys = hub.envoys.lock().unwrap();
            envoys.insert(1, envoy("d", "default", Variant::Sotw));
            envoys.insert(2, envoy("e", "edge", Variant::Delta));
        }
        hub.publish(published(&[
            ("a.yaml", MAIN),
            ("b.yaml", CANARY),
            ("e.yaml", edge),
        ]));
        assert!(hub.take_awaited(1, Kind::Route));
        assert!(
            !hub.take_awaited(1, Kind::Route),
            "only the first ACK counts"
        );
        assert!(hub.take_awaited(1, Kind::Cluster));
        assert!(
            !hub.take_awaited(1, Kind::Listener),
            "listeners did not change"
        );
        for kind in Kind::ALL {
            assert!(!hub.take_awaited(2, kind), "the edge fleet did not change");
        }
        assert!(
            !hub.take_awaited(3, Kind::Route),
            "an Envoy that connected after the change is not counted"
        );
    }
}
