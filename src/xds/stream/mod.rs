//! The protocol state of one ADS stream, in plain structs with no socket (state of the world
//! and delta alike).
//!
//! The server feeds it Envoy's requests and new snapshots; it answers with the responses to
//! send. It follows Envoy's `xds_protocol`: nonces per type, NACKs detected by `error_detail` and
//! never answered with the rejected version, newly requested names always answered, and
//! make-before-break:
//!
//! - the clusters sent are the snapshot's plus those the route table Envoy holds (or is being
//!   sent) still uses, so a cluster is removed only after Envoy ACKed routes that no longer use it;
//! - a route table is sent only once Envoy has ACKed every cluster it names, and no cluster
//!   response still in flight (which Envoy takes first) removes one;
//! - listeners go after clusters.
//!
//! At most one response per type is in flight: while Envoy works on one, newer snapshots
//! coalesce, so a slow Envoy gets the latest version next, never a backlog.

mod plan;
mod requests;
mod runtime;
mod send;

pub use runtime::RUNTIME_METADATA;

use crate::xds::resource::{Items, Kind, Resource, ResourceSet};
use bytes::Bytes;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// State of the world or incremental ADS.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Variant {
    Sotw,
    Delta,
}

impl std::fmt::Display for Variant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Variant::Sotw => "sotw",
            Variant::Delta => "delta",
        })
    }
}

/// A response, encoded: the concatenation of `chunks` is the protobuf message. The resources
/// are shared, pre-encoded bytes; only the small header is encoded per stream.
#[derive(Clone, Debug)]
pub struct Encoded {
    pub chunks: Vec<Bytes>,
}

impl Encoded {
    pub fn len(&self) -> usize {
        self.chunks.iter().map(Bytes::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bytes in one piece (for tests and test clients).
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.len());
        for c in &self.chunks {
            v.extend_from_slice(c);
        }
        v
    }
}

/// A response the server should send now.
#[derive(Clone, Debug)]
pub struct Response {
    pub kind: Kind,
    pub nonce: String,
    /// The version sent: the set version (SotW) or the snapshot version (delta).
    pub version: String,
    pub resources: usize,
    pub removed: usize,
    pub body: Encoded,
}

/// Something that happened on the stream, for logs, metrics and status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    Ack {
        kind: Kind,
        version: String,
    },
    Nack {
        kind: Kind,
        version: String,
        message: String,
    },
    /// Envoy reconnected holding a version this server does not know (it restarted without
    /// `--state-dir` after the files changed): make-before-break cannot be guaranteed for the
    /// next push of this kind.
    UnknownVersion {
        kind: Kind,
        version: String,
    },
    /// A request for a type canary-xds does not serve.
    UnknownType {
        type_url: String,
    },
}

/// Why a request cannot be served at all.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    #[error("the first request of a stream must carry the node (id and cluster)")]
    NoNode,
    #[error("a request on an ADS stream must carry a type_url")]
    NoTypeUrl,
    #[error("node.cluster is {len} bytes long; no fleet name is longer than 253 bytes")]
    FleetTooLong { len: usize },
}

/// What Envoy holds of one kind: the resources we know, shared with the set they came in
/// (state of the world never copies them per stream), and, after an incremental reconnect,
/// names and versions Envoy reported that are not in the archive.
#[derive(Clone, Debug, Default)]
struct Holding {
    known: Items,
    unknown: BTreeMap<String, String>,
}

impl Holding {
    fn shared(items: Items) -> Self {
        Holding {
            known: items,
            unknown: BTreeMap::new(),
        }
    }

    fn contains_key(&self, name: &str) -> bool {
        self.known.contains_key(name) || self.unknown.contains_key(name)
    }

    fn version(&self, name: &str) -> Option<&str> {
        self.known
            .get(name)
            .map(|r| r.version.as_str())
            .or_else(|| self.unknown.get(name).map(String::as_str))
    }

    fn known(&self) -> impl Iterator<Item = &Arc<Resource>> {
        self.known.values()
    }

    fn names(&self) -> impl Iterator<Item = &String> {
        self.known.keys().chain(self.unknown.keys())
    }

    fn insert(&mut self, name: String, r: Arc<Resource>) {
        self.unknown.remove(&name);
        Arc::make_mut(&mut self.known).insert(name, r);
    }

    fn remove(&mut self, name: &str) {
        self.unknown.remove(name);
        if self.known.contains_key(name) {
            Arc::make_mut(&mut self.known).remove(name);
        }
    }

    fn is_empty(&self) -> bool {
        self.known.is_empty() && self.unknown.is_empty()
    }
}

#[derive(Clone, Debug)]
struct Inflight {
    nonce: String,
    version: String,
    /// SotW: the whole set sent. Delta: the resources added or changed.
    upserts: Items,
    removals: Vec<String>,
}

#[derive(Debug)]
struct TypeState {
    subscribed: bool,
    wildcard: bool,
    names: BTreeSet<String>,
    /// What Envoy holds, as far as we know.
    acked: Holding,
    /// False when Envoy holds a SotW version we cannot map to resources.
    acked_exact: bool,
    acked_version: Option<String>,
    inflight: Option<Inflight>,
    /// The nonce of the last response of this type.
    last_nonce: Option<String>,
    /// Respond at the next plan even if nothing changed: a first request, or new names.
    respond: bool,
    /// Delta: newly subscribed names, sent even if Envoy claims to hold them.
    force: BTreeSet<String>,
    /// SotW: the version of the last response sent (answered, ACKed or NACKed).
    sent_version: Option<String>,
    /// Delta: by name, the version Envoy last refused, not sent again while it is the version
    /// to send (one entry per resource, so NACKs of ever new versions cannot pile up).
    rejected: BTreeMap<String, String>,
    /// The last NACK: version and Envoy's message.
    last_nack: Option<(String, String)>,
}

impl TypeState {
    fn new() -> Self {
        TypeState {
            subscribed: false,
            wildcard: false,
            names: BTreeSet::new(),
            acked: Holding::default(),
            acked_exact: true,
            acked_version: None,
            inflight: None,
            last_nonce: None,
            respond: false,
            force: BTreeSet::new(),
            sent_version: None,
            rejected: BTreeMap::new(),
            last_nack: None,
        }
    }

    fn wants(&self, name: &str) -> bool {
        self.wildcard || self.names.contains(name)
    }

    /// How many entries each part of this state holds: what the protocol fuzzer bounds.
    #[cfg(any(test, feature = "fuzz"))]
    fn footprint(&self) -> Footprint {
        Footprint {
            names: self.names.len(),
            held: self.acked.known.len() + self.acked.unknown.len(),
            force: self.force.len(),
            rejected: self.rejected.len(),
            inflight: self
                .inflight
                .as_ref()
                .map_or(0, |i| i.upserts.len() + i.removals.len()),
        }
    }
}

/// The size of one type's state, part by part.
#[cfg(any(test, feature = "fuzz"))]
#[derive(Clone, Copy, Debug)]
struct Footprint {
    names: usize,
    held: usize,
    force: usize,
    rejected: usize,
    inflight: usize,
}

#[cfg(any(test, feature = "fuzz"))]
impl Footprint {
    fn parts(&self) -> [(&'static str, usize); 5] {
        [
            ("subscribed names", self.names),
            ("held resources", self.held),
            ("forced names", self.force),
            ("rejected versions", self.rejected),
            ("in-flight resources", self.inflight),
        ]
    }
}

/// Per type, what this stream sent and what Envoy ACKed: for `/api/envoys` and metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct TypeStatus {
    pub subscribed: bool,
    pub sent: Option<String>,
    pub acked: Option<String>,
    pub waiting_for_ack: bool,
    /// The last NACK: (version, Envoy's message).
    pub last_nack: Option<(String, String)>,
}

/// The protocol state of one stream.
pub struct StreamState {
    variant: Variant,
    node_id: Option<String>,
    fleet: Option<String>,
    nonce: u64,
    /// Per kind; indexed by `Kind::ALL` position.
    types: [TypeState; 4],
    /// The Envoy declared canary-xds's runtime layer in its bootstrap (node metadata): it gets
    /// the runtime variant of the routes, and weight changes over RTDS.
    runtime: bool,
    /// Route configurations Envoy may route by right now whose contents we do not know: keep
    /// every cluster Envoy holds until a route table of ours is ACKed.
    routes_unknown: bool,
    /// Counts changes to this state (requests taken, responses sent).
    epoch: u64,
    /// The snapshot version and epoch of the last plan: planning again with both unchanged
    /// cannot send anything.
    last_plan: Option<(String, u64)>,
}

/// A set to send: a snapshot's set as is (with its version and shared bodies), or resources
/// gathered for this stream.
enum Desired {
    Set(ResourceSet),
    Items(Items),
}

impl Desired {
    fn items(&self) -> &Items {
        match self {
            Desired::Set(s) => &s.items,
            Desired::Items(i) => i,
        }
    }

    fn into_set(self) -> ResourceSet {
        match self {
            Desired::Set(s) => s,
            Desired::Items(i) => ResourceSet::shared(i),
        }
    }
}

fn index(kind: Kind) -> usize {
    match kind {
        Kind::Cluster => 0,
        Kind::Runtime => 1,
        Kind::Listener => 2,
        Kind::Route => 3,
    }
}

/// Whether every name in `a` is in `b`: one walk over both sorted maps.
fn is_subset<V>(a: &BTreeMap<String, V>, b: &BTreeMap<String, V>) -> bool {
    if a.len() > b.len() {
        return false;
    }
    let mut b = b.keys().peekable();
    a.keys().all(|name| {
        while b.next_if(|k| k.as_str() < name.as_str()).is_some() {}
        b.next_if(|k| *k == name).is_some()
    })
}

impl StreamState {
    pub fn new(variant: Variant) -> Self {
        StreamState {
            variant,
            node_id: None,
            fleet: None,
            nonce: 0,
            types: [
                TypeState::new(),
                TypeState::new(),
                TypeState::new(),
                TypeState::new(),
            ],
            runtime: false,
            routes_unknown: false,
            epoch: 0,
            last_plan: None,
        }
    }

    pub fn variant(&self) -> Variant {
        self.variant
    }

    /// Whether this Envoy takes weight changes over its runtime layer.
    pub fn runtime(&self) -> bool {
        self.runtime
    }

    /// The node id from the stream's first request.
    pub fn node_id(&self) -> Option<&str> {
        self.node_id.as_deref()
    }

    /// The fleet (`node.cluster`, `default` when empty) from the stream's first request.
    pub fn fleet(&self) -> Option<&str> {
        self.fleet.as_deref()
    }

    fn ty(&mut self, kind: Kind) -> &mut TypeState {
        &mut self.types[index(kind)]
    }

    #[cfg(any(test, feature = "fuzz"))]
    fn footprint(&self, kind: Kind) -> Footprint {
        self.types[index(kind)].footprint()
    }

    pub fn status(&self, kind: Kind) -> TypeStatus {
        let t = &self.types[index(kind)];
        TypeStatus {
            subscribed: t.subscribed,
            sent: t
                .inflight
                .as_ref()
                .map(|i| i.version.clone())
                .or_else(|| t.sent_version.clone()),
            acked: t.acked_version.clone(),
            waiting_for_ack: t.inflight.is_some(),
            last_nack: t.last_nack.clone(),
        }
    }
}

#[cfg(test)]
mod proptests;
#[cfg(any(test, feature = "fuzz"))]
#[doc(hidden)]
pub mod sim;
#[cfg(test)]
mod tests;
