//! The ADS server: one tokio task per Envoy stream, moving messages between the socket and the
//! stream's protocol state.
//!
//! envoy-types' generated service would re-encode every resource for every Envoy; ours writes
//! the response body itself from the snapshot's pre-encoded, shared bytes, so a snapshot is
//! encoded once however many Envoys it goes to, and no stream keeps a copy of it. Snapshots
//! reach the streams through a `watch` channel: a stream that is busy sees only the latest one.
//!
//! A client is trusted with nothing before it is known: a request larger than what the largest
//! fleet's reconnect needs is refused as it arrives, a stream must speak within a time limit,
//! the fleet a node claims is checked against its certificate before any other part of its
//! request is looked at, a request naming more resources than any fleet has is refused before
//! any per-name work, and no per-name work is done under the archive's lock. Every refusal ends
//! the stream with a gRPC status that says why, and is counted.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::{DeltaDiscoveryRequest, DiscoveryRequest};
use tokio::sync::mpsc;
use tonic::codegen::{BoxFuture, Context, Poll, Service, http};
use tonic::server::NamedService;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tonic::{Code, Status, Streaming};

use super::archive::Archive;
use super::hub::{EnvoyStatus, Hub, Observed, XdsRefusal};
use super::identity::{self, Access, San};
use super::resource::Kind;
use super::snapshot::Published;
use super::stream::{Encoded, Event, ProtocolError, StreamState, Variant};
use super::wire::{AdsBody, EndStatus, ProstDecoder};

/// The gRPC service name Envoy calls.
pub const SERVICE_NAME: &str = "envoy.service.discovery.v3.AggregatedDiscoveryService";
const SOTW_PATH: &str =
    "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources";
const DELTA_PATH: &str =
    "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources";

/// How long a new stream has to send its first request, unless told otherwise.
pub const FIRST_REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// The limits of every ADS stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamLimits {
    /// The largest request taken, in bytes; `None` follows what is published
    /// (`Hub::request_limit`).
    pub max_request_bytes: Option<usize>,
    /// How long a new stream has to send its first request. Only the first is timed: an
    /// Envoy whose config is settled may send nothing for hours.
    pub first_request_timeout: Duration,
}

impl Default for StreamLimits {
    fn default() -> Self {
        StreamLimits {
            max_request_bytes: None,
            first_request_timeout: FIRST_REQUEST_TIMEOUT,
        }
    }
}

/// The tonic service for ADS, both variants.
#[derive(Clone)]
pub struct AdsService {
    hub: Arc<Hub>,
    access: Access,
    limits: StreamLimits,
}

impl AdsService {
    pub(super) fn new(hub: Arc<Hub>, access: Access) -> Self {
        AdsService {
            hub,
            access,
            limits: StreamLimits::default(),
        }
    }

    /// This service with `limits` on every stream.
    pub fn with_limits(mut self, limits: StreamLimits) -> Self {
        self.limits = limits;
        self
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
        let limits = self.limits;
        match req.uri().path() {
            SOTW_PATH => Box::pin(async move {
                Ok(open_stream::<DiscoveryRequest, B>(
                    hub,
                    Variant::Sotw,
                    peer,
                    limits,
                    req,
                ))
            }),
            DELTA_PATH => Box::pin(async move {
                Ok(open_stream::<DeltaDiscoveryRequest, B>(
                    hub,
                    Variant::Delta,
                    peer,
                    limits,
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
    limits: StreamLimits,
    req: http::Request<B>,
) -> http::Response<tonic::body::Body>
where
    R: AdsRequest,
    B: tonic::codegen::Body + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
{
    // tonic checks a message's length from its header, before reading it.
    let max_bytes = limits
        .max_request_bytes
        .unwrap_or_else(|| hub.request_limit());
    let requests = Streaming::new_request(
        ProstDecoder::<R>(PhantomData),
        req.into_body(),
        None,
        Some(max_bytes),
    );
    // Two responses in flight at most: a slow Envoy holds back only its own task.
    let (tx, rx) = mpsc::channel(2);
    let end = EndStatus::default();
    let stream = StreamTask {
        id: hub.next_stream.fetch_add(1, Ordering::Relaxed),
        hub,
        peer,
        state: StreamState::new(variant),
        authorized: false,
        planned_since: None,
    };
    tokio::spawn(run_stream(stream, limits, requests, tx, end.clone()));
    let mut response = http::Response::new(tonic::body::Body::new(AdsBody::new(rx, end)));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/grpc"),
    );
    response
}

/// A request type of an ADS variant and how the stream state takes it.
trait AdsRequest: prost::Message + Default + Send + 'static {
    /// The node, which only the first request of a stream must carry.
    fn node(&self) -> Option<&Node>;
    fn type_url(&self) -> &str;
    /// How many names of `kind` the stream would track after taking this, at most.
    fn names_after(&self, state: &StreamState, kind: Kind) -> usize;
    /// Whether taking this may look in the archive.
    fn reads_archive(&self) -> bool;
    fn apply(
        state: &mut StreamState,
        req: &Self,
        archive: &Archive,
    ) -> Result<Vec<Event>, ProtocolError>;
}

impl AdsRequest for DiscoveryRequest {
    fn node(&self) -> Option<&Node> {
        self.node.as_ref()
    }

    fn type_url(&self) -> &str {
        &self.type_url
    }

    fn names_after(&self, state: &StreamState, _kind: Kind) -> usize {
        state.names_after_sotw(self)
    }

    fn reads_archive(&self) -> bool {
        StreamState::sotw_reads_archive(self)
    }

    fn apply(
        state: &mut StreamState,
        req: &Self,
        archive: &Archive,
    ) -> Result<Vec<Event>, ProtocolError> {
        state.on_sotw(req, archive)
    }
}

impl AdsRequest for DeltaDiscoveryRequest {
    fn node(&self) -> Option<&Node> {
        self.node.as_ref()
    }

    fn type_url(&self) -> &str {
        &self.type_url
    }

    fn names_after(&self, state: &StreamState, kind: Kind) -> usize {
        state.names_after_delta(self, kind)
    }

    fn reads_archive(&self) -> bool {
        StreamState::delta_reads_archive(self)
    }

    fn apply(
        state: &mut StreamState,
        req: &Self,
        archive: &Archive,
    ) -> Result<Vec<Event>, ProtocolError> {
        state.on_delta(req, archive)
    }
}

/// One stream's task: its protocol state, and what the server knows of the peer.
struct StreamTask {
    hub: Arc<Hub>,
    id: u64,
    peer: Peer,
    state: StreamState,
    /// Nothing is planned before the node is known, and the node's fleet is checked against
    /// the peer's certificate as soon as it is: a refused stream is sent nothing.
    authorized: bool,
    /// The change (`Published::since`) the last responses were planned from.
    planned_since: Option<Instant>,
}

async fn run_stream<R: AdsRequest>(
    mut task: StreamTask,
    limits: StreamLimits,
    mut requests: Streaming<R>,
    tx: mpsc::Sender<Encoded>,
    end: EndStatus,
) {
    let hub = Arc::clone(&task.hub);
    let id = task.id;
    hub.counters.streams_opened.fetch_add(1, Ordering::Relaxed);
    let mut snapshots = hub.snapshots.subscribe();
    let mut closing = hub.closing.subscribe();
    let connected_since = SystemTime::now();
    let mut synced: Option<String> = None;
    // Only the first request is timed.
    let first_request_by = tokio::time::Instant::now() + limits.first_request_timeout;
    let mut spoke = false;
    let ended: Result<(), Status> = loop {
        let state = &mut task.state;
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
                task.planned_since = Some(published.since);
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
                if tx.send(r.body).await.is_err() {
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
            update_status(&hub, id, state, connected_since, synced.clone(), in_sync);
        }
        tokio::select! {
            message = requests.message() => match message {
                Ok(Some(req)) => {
                    spoke = true;
                    let published = Arc::clone(&snapshots.borrow());
                    if let Err(status) = task.take(&req, &published) {
                        break Err(status);
                    }
                }
                Ok(None) => break Ok(()),
                Err(status) => break Err(task.unreadable(status)),
            },
            () = tokio::time::sleep_until(first_request_by), if !spoke => {
                hub.counters.refuse(XdsRefusal::NoFirstRequest);
                let after = limits.first_request_timeout;
                tracing::warn!(
                    peer = task.peer.addr.map(|a| a.to_string()).unwrap_or_default(),
                    ?after,
                    "closed an xDS stream that sent no request"
                );
                break Err(Status::deadline_exceeded(format!(
                    "no request within {after:?} of opening the stream"
                )));
            }
            changed = snapshots.changed() => if changed.is_err() { break Ok(()) },
            // `wait_for`, not `changed`: a stream opened after `close` must end too.
            _ = async { closing.wait_for(|c| *c).await.is_ok() } => break Ok(()),
        }
    };
    if let Err(status) = ended {
        end.set(status);
    }
    let state = &task.state;
    hub.envoys.lock().expect("envoys lock").remove(&id);
    if let Some(node) = state.node_id() {
        tracing::info!(node, fleet = state.fleet().unwrap_or(""), variant = %state.variant(), "Envoy disconnected");
    }
}

impl StreamTask {
    /// Takes one request, or says with which status to end the stream. Who may have what is
    /// decided first, then the request's size in names, and only then is it taken.
    fn take<R: AdsRequest>(&mut self, req: &R, published: &Arc<Published>) -> Result<(), Status> {
        let hub = &self.hub;
        if !self.authorized {
            let fleet = match StreamState::claimed_fleet(req.node()) {
                Ok(fleet) => fleet,
                Err(e) => {
                    if let ProtocolError::FleetTooLong { .. } = e {
                        hub.counters.refuse(XdsRefusal::FleetNameTooLong);
                    }
                    return Err(self.refuse(Status::invalid_argument(e.to_string())));
                }
            };
            let sans = self.peer.sans.as_deref();
            if let Err(why) = self.peer.access.check(fleet, sans) {
                // Never the certificate itself, nor anything secret: who, what, why.
                tracing::warn!(
                    node = req.node().map(|n| n.id.as_str()).unwrap_or(""),
                    fleet,
                    sans = identity::san_list(sans.unwrap_or_default()),
                    peer = self.peer.addr.map(|a| a.to_string()).unwrap_or_default(),
                    reason = %why,
                    "refused an xDS stream: its client certificate does not allow this fleet"
                );
                return Err(Status::permission_denied(format!(
                    "this client certificate may not receive fleet {fleet:?}"
                )));
            }
            self.authorized = true;
        }
        if let Some(kind) = Kind::from_type_url(req.type_url()) {
            let (names, limit) = (
                req.names_after(&self.state, kind),
                hub.names_limit(Some(kind)),
            );
            if names > limit {
                hub.counters.refuse(XdsRefusal::TooManyNames);
                return Err(self.refuse(Status::resource_exhausted(format!(
                    "the request names {names} {kind} resources; at most {limit} are taken \
                     (twice the largest set of that type served, plus {})",
                    super::hub::NAMES_MARGIN
                ))));
            }
        }
        // A reconnect's versions are looked up in a copy of the archive (a few entries per
        // fleet), so that no per-name work holds the lock every stream and `publish` need.
        let copy;
        let archive = if req.reads_archive() {
            copy = hub.archive.lock().expect("archive lock").clone();
            &copy
        } else {
            &Archive::default()
        };
        match R::apply(&mut self.state, req, archive) {
            Ok(events) => {
                on_events(
                    hub,
                    self.id,
                    self.planned_since,
                    &self.state,
                    published,
                    events,
                );
                Ok(())
            }
            Err(e) => Err(self.refuse(Status::invalid_argument(e.to_string()))),
        }
    }

    /// The status that ends a stream whose requests cannot be read: a request over the size
    /// limit is `RESOURCE_EXHAUSTED` (tonic says `OUT_OF_RANGE`), anything else as it is (a
    /// client that went away reads nothing).
    fn unreadable(&self, status: Status) -> Status {
        if status.code() == Code::OutOfRange {
            self.hub.counters.refuse(XdsRefusal::RequestTooLarge);
            return self.refuse(Status::resource_exhausted(format!(
                "request too large: {}",
                status.message()
            )));
        }
        tracing::debug!(node = self.state.node_id().unwrap_or(""), %status, "stream ended");
        status
    }

    /// Logs a refusal, and returns its status.
    fn refuse(&self, status: Status) -> Status {
        tracing::warn!(
            node = self.state.node_id().unwrap_or(""),
            peer = self.peer.addr.map(|a| a.to_string()).unwrap_or_default(),
            code = ?status.code(),
            why = status.message(),
            "refusing an ADS stream"
        );
        status
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
                // Envoy's text, which a client writes: in a field of its own (`message` is the
                // event's), and with control characters escaped, so it cannot forge log lines.
                tracing::warn!(
                    node,
                    fleet,
                    %kind,
                    version,
                    error_detail = %escape_controls(&message),
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

/// `text` with its control characters escaped (`\n`, `\u{1b}`): one log line whatever a
/// client wrote.
fn escape_controls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{CANARY, MAIN, envoy, published};

    #[test]
    fn control_characters_are_escaped_for_the_log() {
        assert_eq!(
            escape_controls("bad\n2026-01-01T00:00:00Z  INFO forged\r\u{1b}[31m\t"),
            "bad\\n2026-01-01T00:00:00Z  INFO forged\\r\\u{1b}[31m\\t"
        );
        assert_eq!(escape_controls("plain: ünïcode"), "plain: ünïcode");
    }

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
