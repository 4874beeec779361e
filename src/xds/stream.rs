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
//! - a route table is sent only once Envoy has ACKed every cluster it names;
//! - listeners go after clusters.
//!
//! At most one response per type is in flight: while Envoy works on one, newer snapshots
//! coalesce, so a slow Envoy gets the latest version next, never a backlog.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use bytes::Bytes;
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use prost::Message;
use sha2::{Digest, Sha256};

use super::archive::Archive;
use super::resource::{Items, Kind, Layer, Resource, ResourceSet, short_hex};
use super::snapshot::Snapshot;

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
    /// Delta: (name, version) pairs Envoy rejected; not sent again.
    rejected: BTreeSet<(String, String)>,
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
            rejected: BTreeSet::new(),
            last_nack: None,
        }
    }

    fn wants(&self, name: &str) -> bool {
        self.wildcard || self.names.contains(name)
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

/// The node metadata field by which a bootstrap declares canary-xds's runtime layer.
pub const RUNTIME_METADATA: &str = "canary_xds_rtds";

/// Runtime key prefixes, sorted and without repeats.
struct Prefixes<'a>(&'a [&'a str]);

impl Prefixes<'_> {
    fn contains(&self, p: &str) -> bool {
        self.0.binary_search(&p).is_ok()
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

/// The prefix of a runtime key (`cx.<id>.<cluster>` -> `cx.<id>`).
fn key_prefix(key: &str) -> &str {
    match key.match_indices('.').nth(1) {
        Some((i, _)) => &key[..i],
        None => key,
    }
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

    fn take_node(
        &mut self,
        node: Option<&envoy_types::pb::envoy::config::core::v3::Node>,
    ) -> Result<(), ProtocolError> {
        if self.node_id.is_some() {
            return Ok(());
        }
        let node = node.ok_or(ProtocolError::NoNode)?;
        self.node_id = Some(node.id.clone());
        self.fleet = Some(if node.cluster.is_empty() {
            crate::model::mapping::DEFAULT_FLEET.to_string()
        } else {
            node.cluster.clone()
        });
        use envoy_types::pb::google::protobuf::value::Kind as ValueKind;
        self.runtime = node
            .metadata
            .as_ref()
            .and_then(|m| m.fields.get(RUNTIME_METADATA))
            .is_some_and(|v| matches!(v.kind, Some(ValueKind::BoolValue(true))));
        Ok(())
    }

    /// Takes a state-of-the-world request.
    pub fn on_sotw(
        &mut self,
        req: &DiscoveryRequest,
        archive: &Archive,
    ) -> Result<Vec<Event>, ProtocolError> {
        self.epoch += 1;
        self.take_node(req.node.as_ref())?;
        if req.type_url.is_empty() {
            return Err(ProtocolError::NoTypeUrl);
        }
        let Some(kind) = Kind::from_type_url(&req.type_url) else {
            return Ok(vec![Event::UnknownType {
                type_url: req.type_url.clone(),
            }]);
        };
        let mut events = Vec::new();
        let names: BTreeSet<String> = req.resource_names.iter().cloned().collect();
        let first = !self.ty(kind).subscribed;
        {
            let t = self.ty(kind);
            t.subscribed = true;
            // Wildcard: `*`, or a wildcard kind that never named a resource (legacy wildcard).
            let wildcard = names.contains("*")
                || (kind.is_wildcard() && names.is_empty() && (first || t.wildcard));
            if wildcard != t.wildcard || (!wildcard && names != t.names) {
                t.respond = true;
            }
            t.wildcard = wildcard;
            t.names = names.into_iter().filter(|n| n != "*").collect();
        }
        if req.response_nonce.is_empty() {
            // The first request of this type on the stream: answer it whatever the versions.
            self.ty(kind).respond = true;
            if kind == Kind::Cluster && first && !req.version_info.is_empty() {
                // A reconnecting Envoy: until its route table is known, it may route to any
                // cluster it holds.
                self.routes_unknown = true;
            }
            if !req.version_info.is_empty() && first {
                match archive.set(kind, &req.version_info) {
                    Some(set) => {
                        let t = self.ty(kind);
                        t.acked = Holding::shared(set);
                        t.acked_version = Some(req.version_info.clone());
                        t.acked_exact = true;
                    }
                    None => {
                        let t = self.ty(kind);
                        t.acked_exact = false;
                        t.acked_version = Some(req.version_info.clone());
                        if kind == Kind::Route {
                            self.routes_unknown = true;
                        }
                        events.push(Event::UnknownVersion {
                            kind,
                            version: req.version_info.clone(),
                        });
                    }
                }
            }
            return Ok(events);
        }
        let t = self.ty(kind);
        let current = t
            .inflight
            .as_ref()
            .is_some_and(|i| i.nonce == req.response_nonce);
        if !current {
            // A stale nonce, or a request about a response already answered (a change of
            // names, handled above). Nothing to ACK.
            return Ok(events);
        }
        let inflight = t.inflight.take().expect("checked above");
        match &req.error_detail {
            None => {
                t.acked = Holding::shared(Arc::clone(&inflight.upserts));
                t.acked_exact = true;
                t.acked_version = Some(inflight.version.clone());
                if kind == Kind::Route {
                    self.routes_unknown = false;
                }
                events.push(Event::Ack {
                    kind,
                    version: inflight.version,
                });
            }
            Some(status) => {
                t.last_nack = Some((inflight.version.clone(), status.message.clone()));
                events.push(Event::Nack {
                    kind,
                    version: inflight.version,
                    message: status.message.clone(),
                });
            }
        }
        Ok(events)
    }

    /// Takes an incremental (delta) request.
    pub fn on_delta(
        &mut self,
        req: &DeltaDiscoveryRequest,
        archive: &Archive,
    ) -> Result<Vec<Event>, ProtocolError> {
        self.epoch += 1;
        self.take_node(req.node.as_ref())?;
        if req.type_url.is_empty() {
            return Err(ProtocolError::NoTypeUrl);
        }
        let Some(kind) = Kind::from_type_url(&req.type_url) else {
            return Ok(vec![Event::UnknownType {
                type_url: req.type_url.clone(),
            }]);
        };
        let mut events = Vec::new();
        let first = !self.ty(kind).subscribed;
        if first {
            let t = self.ty(kind);
            t.subscribed = true;
            t.respond = true;
            // Legacy wildcard: a wildcard kind whose first request names nothing.
            t.wildcard = kind.is_wildcard() && req.resource_names_subscribe.is_empty();
            let mut unknown_routes = false;
            for (name, version) in &req.initial_resource_versions {
                match archive.resource(kind, name, version) {
                    Some(r) => t.acked.insert(name.clone(), r),
                    None => {
                        if kind == Kind::Route {
                            unknown_routes = true;
                        }
                        t.acked.unknown.insert(name.clone(), version.clone());
                    }
                }
            }
            if kind == Kind::Cluster && !req.initial_resource_versions.is_empty() {
                // A reconnecting Envoy: until its route table is known, it may route to any
                // cluster it holds.
                unknown_routes = true;
            }
            if unknown_routes {
                self.routes_unknown = true;
                if kind == Kind::Route {
                    events.push(Event::UnknownVersion {
                        kind,
                        version: "(initial_resource_versions)".into(),
                    });
                }
            }
        }
        // Subscription changes are honoured whatever the nonce (xds_protocol, incremental).
        {
            let t = self.ty(kind);
            for name in &req.resource_names_subscribe {
                if name == "*" {
                    t.wildcard = true;
                } else if t.names.insert(name.clone()) || first {
                    t.force.insert(name.clone());
                    t.respond = true;
                }
            }
            for name in &req.resource_names_unsubscribe {
                if name == "*" {
                    t.wildcard = false;
                } else {
                    t.names.remove(name);
                    t.force.remove(name);
                    if !t.wildcard {
                        t.acked.remove(name);
                    }
                }
            }
        }
        if req.response_nonce.is_empty() {
            return Ok(events);
        }
        let t = self.ty(kind);
        if t.inflight
            .as_ref()
            .is_none_or(|i| i.nonce != req.response_nonce)
        {
            return Ok(events);
        }
        let inflight = t.inflight.take().expect("checked above");
        match &req.error_detail {
            None => {
                for (name, r) in inflight.upserts.iter() {
                    t.acked.insert(name.clone(), Arc::clone(r));
                }
                for name in &inflight.removals {
                    t.acked.remove(name);
                }
                t.acked_version = Some(inflight.version.clone());
                if kind == Kind::Route && t.acked.unknown.is_empty() {
                    self.routes_unknown = false;
                }
                events.push(Event::Ack {
                    kind,
                    version: inflight.version,
                });
            }
            Some(status) => {
                for (name, r) in inflight.upserts.iter() {
                    t.rejected.insert((name.clone(), r.version.clone()));
                }
                t.last_nack = Some((inflight.version.clone(), status.message.clone()));
                events.push(Event::Nack {
                    kind,
                    version: inflight.version,
                    message: status.message.clone(),
                });
            }
        }
        Ok(events)
    }

    /// What to send now, given the fleet's current snapshot, in push order. Every response
    /// returned is in flight until Envoy ACKs or NACKs it.
    pub fn plan(&mut self, snap: &Snapshot, archive: &mut Archive) -> Vec<Response> {
        if self.settled_for(snap) {
            return Vec::new();
        }
        let mut out = Vec::new();
        let rt = self.runtime;
        // Clusters: the snapshot's, plus any still used by routes Envoy holds or is being sent.
        let (clusters, protected) = self.desired_clusters(snap, archive);
        if let Some(r) = self.send(Kind::Cluster, clusters, &protected, &snap.version, archive) {
            out.push(r);
        }
        // The runtime layer: the snapshot's, plus the values routes Envoy holds still read.
        let route_set = snap.set_for(Kind::Route, rt);
        let routes = self.wanted(Kind::Route, route_set);
        // Sorted (a route configuration's prefixes come sorted, so this is one pass).
        let mut target_prefixes: Vec<&str> = routes
            .items()
            .values()
            .flat_map(|r| r.prefixes.iter().map(String::as_str))
            .collect();
        target_prefixes.sort_unstable();
        target_prefixes.dedup();
        let target_prefixes = Prefixes(&target_prefixes);
        let snap_layer = snap.runtime.items.values().next();
        let target_layer = snap_layer.and_then(|r| r.layer.clone()).unwrap_or_default();
        if rt {
            let layer = self.desired_layer(&target_layer, &target_prefixes);
            let desired = if snap_layer.and_then(|r| r.layer.as_deref()) == Some(&layer) {
                self.wanted(Kind::Runtime, &snap.runtime)
            } else {
                let r = Resource::runtime_layer(super::snapshot::RUNTIME_LAYER, layer);
                let set = ResourceSet::new(BTreeMap::from([(r.name.clone(), Arc::new(r))]));
                self.wanted(Kind::Runtime, &set)
            };
            if let Some(r) = self.send(
                Kind::Runtime,
                desired,
                &BTreeSet::new(),
                &snap.version,
                archive,
            ) {
                out.push(r);
            }
        }
        // Listeners: after clusters are settled.
        if self.types[index(Kind::Cluster)].inflight.is_none() {
            let listeners = Desired::Set(snap.listeners.clone());
            if let Some(r) = self.send(
                Kind::Listener,
                listeners,
                &BTreeSet::new(),
                &snap.version,
                archive,
            ) {
                out.push(r);
            }
        }
        // Routes: only once Envoy holds every cluster they name and, for a runtime Envoy, the
        // runtime values they read.
        let held = &self.types[index(Kind::Cluster)].acked;
        // Holding the snapshot's very cluster map, Envoy holds every cluster its routes name;
        // else each is looked up.
        let mut ready = (snap.routes_within_clusters
            && Arc::ptr_eq(&held.known, &snap.clusters.items))
            || routes
                .items()
                .values()
                .all(|r| r.refs.iter().all(|c| held.contains_key(c)));
        if rt {
            ready &= self.layer_ready(&target_layer, &target_prefixes);
        }
        if ready
            && let Some(r) = self.send(
                Kind::Route,
                routes,
                &BTreeSet::new(),
                &snap.version,
                archive,
            )
        {
            out.push(r);
        }
        self.last_plan = Some((snap.version.clone(), self.epoch));
        out
    }

    /// Whether planning for `snap` now would send nothing because neither the snapshot nor
    /// anything Envoy said changed since the last plan: a thousand streams waking up for
    /// nothing cost nothing (and take no lock).
    pub fn settled_for(&self, snap: &Snapshot) -> bool {
        self.last_plan
            .as_ref()
            .is_some_and(|(v, e)| *v == snap.version && *e == self.epoch)
    }

    /// The resources of `set` this stream asks for: the set itself (shared, with its
    /// version) when it wants them all.
    fn wanted(&self, kind: Kind, set: &ResourceSet) -> Desired {
        let t = &self.types[index(kind)];
        if set.items.keys().all(|n| t.wants(n)) {
            Desired::Set(set.clone())
        } else {
            let items: BTreeMap<String, Arc<Resource>> = set
                .items
                .iter()
                .filter(|(n, _)| t.wants(n))
                .map(|(n, r)| (n.clone(), Arc::clone(r)))
                .collect();
            Desired::Items(Arc::new(items))
        }
    }

    /// The runtime layer Envoy should hold: the snapshot's values for the prefixes of the
    /// routes being sent, and the held values for prefixes that only the routes Envoy holds
    /// (or is being sent) still read.
    fn desired_layer(&self, target: &Layer, target_prefixes: &Prefixes<'_>) -> Layer {
        let mut layer = target.clone();
        let held = self.held_layer();
        // Values of routes that are not in the target but that Envoy may still hold. Usually
        // there are none, and the prefixes its routes read need not be gathered.
        let leaving: Vec<(&String, &u32)> = held
            .iter()
            .filter(|(k, _)| !target_prefixes.contains(key_prefix(k)))
            .collect();
        if leaving.is_empty() {
            return layer;
        }
        let rds = &self.types[index(Kind::Route)];
        let mut in_use: BTreeSet<&str> = BTreeSet::new();
        for r in rds
            .acked
            .known()
            .chain(rds.inflight.iter().flat_map(|i| i.upserts.values()))
        {
            in_use.extend(r.prefixes.iter().map(String::as_str));
        }
        let keep_everything = self.routes_unknown || !rds.acked_exact;
        for (k, v) in leaving {
            if keep_everything || in_use.contains(key_prefix(k)) {
                layer.insert(k.clone(), *v);
            }
        }
        layer
    }

    /// The runtime layer Envoy holds (empty before it ACKed one).
    fn held_layer(&self) -> Layer {
        self.types[index(Kind::Runtime)]
            .acked
            .known()
            .filter_map(|r| r.layer.as_deref().cloned())
            .next()
            .unwrap_or_default()
    }

    /// Whether the layer Envoy holds gives the routes about to be sent exactly the values the
    /// snapshot means for them.
    fn layer_ready(&self, target: &Layer, target_prefixes: &Prefixes<'_>) -> bool {
        if target_prefixes.0.is_empty() {
            return true;
        }
        let rtds = &self.types[index(Kind::Runtime)];
        if !rtds.subscribed {
            return false;
        }
        let held = self.held_layer();
        let relevant = |l: &Layer| -> Vec<(String, u32)> {
            l.iter()
                .filter(|(k, _)| target_prefixes.contains(key_prefix(k)))
                .map(|(k, v)| (k.clone(), *v))
                .collect()
        };
        relevant(&held) == relevant(target)
    }

    /// The clusters Envoy should hold now (the snapshot's set itself when nothing else must
    /// stay), and (delta) names it holds that we must not remove though we cannot send them.
    fn desired_clusters(&self, snap: &Snapshot, archive: &Archive) -> (Desired, BTreeSet<String>) {
        let snap_set = snap.set_for(Kind::Cluster, self.runtime);
        let mut extra: BTreeMap<String, Arc<Resource>> = BTreeMap::new();
        let mut protected = BTreeSet::new();
        let cds = &self.types[index(Kind::Cluster)];
        let rds = &self.types[index(Kind::Route)];
        // Nearly always Envoy holds exactly the snapshot's clusters, or fewer (a weight moved,
        // a cluster was added): then nothing else must stay, and the clusters its routes use
        // need not be gathered (ten thousand names into a set, on every push to every stream).
        let holds_only_snapshot_clusters = cds.acked_exact
            && !cds.acked.is_empty()
            && cds.acked.unknown.is_empty()
            && (Arc::ptr_eq(&cds.acked.known, &snap_set.items)
                || is_subset(&cds.acked.known, &snap_set.items));
        if holds_only_snapshot_clusters {
            return (Desired::Set(snap_set.clone()), protected);
        }
        let mut in_use: BTreeSet<&str> = BTreeSet::new();
        for r in rds
            .acked
            .known()
            .chain(rds.inflight.iter().flat_map(|i| i.upserts.values()))
        {
            in_use.extend(r.refs.iter().map(String::as_str));
        }
        let keep_everything = self.routes_unknown || !rds.acked_exact;
        // Clusters the routes Envoy holds use but whose definition this stream never saw (a
        // SotW reconnect to a restarted server): send the last definition we know.
        if !cds.acked_exact || cds.acked.is_empty() {
            for name in &in_use {
                if !snap_set.items.contains_key(*name)
                    && !cds.acked.contains_key(name)
                    && let Some(r) = archive.latest(Kind::Cluster, name)
                {
                    extra.insert(name.to_string(), r);
                }
            }
        }
        for (name, r) in cds.acked.known.iter() {
            if !snap_set.items.contains_key(name)
                && (keep_everything || in_use.contains(name.as_str()))
            {
                extra.insert(name.clone(), Arc::clone(r));
            }
        }
        for name in cds.acked.unknown.keys() {
            if !snap_set.items.contains_key(name)
                && (keep_everything || in_use.contains(name.as_str()))
            {
                protected.insert(name.clone());
            }
        }
        if extra.is_empty() {
            return (Desired::Set(snap_set.clone()), protected);
        }
        let mut all = (*snap_set.items).clone();
        all.extend(extra);
        (Desired::Items(Arc::new(all)), protected)
    }

    fn next_nonce(&mut self) -> String {
        self.nonce += 1;
        self.nonce.to_string()
    }

    fn send(
        &mut self,
        kind: Kind,
        desired: Desired,
        protected: &BTreeSet<String>,
        snapshot_version: &str,
        archive: &mut Archive,
    ) -> Option<Response> {
        {
            let t = &self.types[index(kind)];
            if !t.subscribed || t.inflight.is_some() {
                return None;
            }
        }
        match self.variant {
            Variant::Sotw => self.send_sotw(kind, desired, archive),
            Variant::Delta => self.send_delta(kind, desired, protected, snapshot_version, archive),
        }
    }

    fn send_sotw(
        &mut self,
        kind: Kind,
        desired: Desired,
        archive: &mut Archive,
    ) -> Option<Response> {
        let set = desired.into_set();
        {
            let t = &self.types[index(kind)];
            if !t.respond && t.sent_version.as_deref() == Some(set.version.as_str()) {
                return None;
            }
        }
        self.epoch += 1;
        archive.record(kind, &set);
        let nonce = self.next_nonce();
        let header = DiscoveryResponse {
            version_info: set.version.clone(),
            type_url: kind.type_url().to_string(),
            nonce: nonce.clone(),
            ..Default::default()
        };
        let chunks = vec![Bytes::from(header.encode_to_vec()), set.sotw_body()];
        let t = self.ty(kind);
        t.respond = false;
        t.sent_version = Some(set.version.clone());
        t.last_nonce = Some(nonce.clone());
        let resources = set.len();
        t.inflight = Some(Inflight {
            nonce: nonce.clone(),
            version: set.version.clone(),
            upserts: set.items,
            removals: Vec::new(),
        });
        Some(Response {
            kind,
            nonce,
            version: set.version,
            resources,
            removed: 0,
            body: Encoded { chunks },
        })
    }

    fn send_delta(
        &mut self,
        kind: Kind,
        desired: Desired,
        protected: &BTreeSet<String>,
        snapshot_version: &str,
        archive: &mut Archive,
    ) -> Option<Response> {
        let desired = desired.into_set();
        let t = &self.types[index(kind)];
        // Envoy already holds this very set (the map is shared): nothing to compare. On a push
        // that moves only routes, this is every other type of every stream.
        if !t.respond
            && t.force.is_empty()
            && t.acked.unknown.is_empty()
            && Arc::ptr_eq(&t.acked.known, &desired.items)
        {
            return None;
        }
        let upserts: BTreeMap<String, Arc<Resource>> = desired
            .items
            .iter()
            .filter(|(name, _)| t.wants(name))
            .filter(|(name, r)| {
                t.force.contains(*name) || t.acked.version(name).is_none_or(|v| v != r.version)
            })
            .filter(|(name, r)| !t.rejected.contains(&((*name).clone(), r.version.clone())))
            .map(|(n, r)| (n.clone(), Arc::clone(r)))
            .collect();
        let removals: Vec<String> = t
            .acked
            .names()
            .filter(|n| !desired.items.contains_key(*n) && !protected.contains(*n))
            .cloned()
            .collect();
        if upserts.is_empty() && removals.is_empty() && !t.respond {
            // Envoy holds exactly this set: share its map rather than keep a copy per stream.
            if t.acked.unknown.is_empty()
                && t.acked.known.len() == desired.items.len()
                && !Arc::ptr_eq(&t.acked.known, &desired.items)
            {
                self.ty(kind).acked = Holding::shared(Arc::clone(&desired.items));
            }
            return None;
        }
        self.epoch += 1;
        // Everything at once (a first answer): the set's shared body; else just the changes.
        let set = if upserts.len() == desired.items.len() {
            desired
        } else {
            ResourceSet::new(upserts)
        };
        archive.record(kind, &set);
        let mut h = Sha256::new();
        h.update(set.version.as_bytes());
        for r in &removals {
            h.update(r.as_bytes());
            h.update([0]);
        }
        let change = short_hex(&h.finalize());
        let nonce = self.next_nonce();
        let header = DeltaDiscoveryResponse {
            system_version_info: snapshot_version.to_string(),
            type_url: kind.type_url().to_string(),
            removed_resources: removals.clone(),
            nonce: nonce.clone(),
            ..Default::default()
        };
        let chunks = vec![Bytes::from(header.encode_to_vec()), set.delta_body()];
        let t = self.ty(kind);
        t.respond = false;
        t.force.clear();
        t.last_nonce = Some(nonce.clone());
        t.sent_version = Some(change.clone());
        let (resources, removed) = (set.len(), removals.len());
        t.inflight = Some(Inflight {
            nonce: nonce.clone(),
            version: change.clone(),
            upserts: set.items,
            removals,
        });
        Some(Response {
            kind,
            nonce,
            version: change,
            resources,
            removed,
            body: Encoded { chunks },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_subset_walks_both_sorted_maps() {
        let m = |names: &[&str]| -> BTreeMap<String, ()> {
            names.iter().map(|n| (n.to_string(), ())).collect()
        };
        assert!(is_subset(&m(&[]), &m(&["a"])));
        assert!(is_subset(&m(&["a", "c"]), &m(&["a", "b", "c"])));
        assert!(!is_subset(&m(&["a", "d"]), &m(&["a", "b", "c"])));
        assert!(!is_subset(&m(&["0"]), &m(&["a"])));
        assert!(!is_subset(&m(&["a", "b"]), &m(&["a"])));
    }

    /// The kinds an Envoy without the runtime layer asks for.
    const PLAIN: [Kind; 3] = [Kind::Cluster, Kind::Listener, Kind::Route];
    use envoy_types::pb::envoy::config::core::v3::Node;
    use envoy_types::pb::google::rpc::Status;

    fn resource(kind: Kind, name: &str, version: &str, refs: &[&str]) -> Arc<Resource> {
        Arc::new(Resource::new(
            kind,
            name.into(),
            version.into(),
            vec![],
            refs.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        ))
    }

    /// A snapshot with the given clusters (name@version) and one route table naming `refs`.
    fn snap(clusters: &[(&str, &str)], route_version: &str, refs: &[&str]) -> Snapshot {
        let set = |items: Vec<Arc<Resource>>| {
            ResourceSet::new(items.into_iter().map(|r| (r.name.clone(), r)).collect())
        };
        Snapshot::plain(
            "default".into(),
            set(clusters
                .iter()
                .map(|(n, v)| resource(Kind::Cluster, n, v, &[]))
                .collect()),
            set(vec![resource(Kind::Listener, "l", "1", &[])]),
            set(vec![resource(
                Kind::Route,
                "canary-xds",
                route_version,
                refs,
            )]),
        )
    }

    fn node() -> Option<Node> {
        Some(Node {
            id: "envoy-1".into(),
            cluster: "default".into(),
            ..Default::default()
        })
    }

    fn req(kind: Kind, names: &[&str], version: &str, nonce: &str) -> DiscoveryRequest {
        DiscoveryRequest {
            node: node(),
            type_url: kind.type_url().into(),
            resource_names: names.iter().map(|s| s.to_string()).collect(),
            version_info: version.into(),
            response_nonce: nonce.into(),
            ..Default::default()
        }
    }

    fn nack(kind: Kind, nonce: &str) -> DiscoveryRequest {
        DiscoveryRequest {
            error_detail: Some(Status {
                code: 13,
                message: "bad".into(),
                ..Default::default()
            }),
            ..req(
                kind,
                if kind == Kind::Route {
                    &["canary-xds"]
                } else {
                    &[]
                },
                "",
                nonce,
            )
        }
    }

    fn decode(r: &Response) -> DiscoveryResponse {
        DiscoveryResponse::decode(r.body.to_vec().as_slice()).unwrap()
    }

    /// Connects a SotW stream and ACKs everything until it is in sync with `s`.
    fn sync(st: &mut StreamState, s: &Snapshot, a: &mut Archive) {
        for kind in PLAIN {
            let names: &[&str] = if kind == Kind::Route {
                &["canary-xds"]
            } else {
                &[]
            };
            if !st.types[index(kind)].subscribed {
                st.on_sotw(&req(kind, names, "", ""), a).unwrap();
            }
        }
        for _ in 0..10 {
            let out = st.plan(s, a);
            if out.is_empty() {
                return;
            }
            for r in out {
                let names: &[&str] = if r.kind == Kind::Route {
                    &["canary-xds"]
                } else {
                    &[]
                };
                st.on_sotw(&req(r.kind, names, &r.version, &r.nonce), a)
                    .unwrap();
            }
        }
        panic!("never in sync");
    }

    fn held(st: &StreamState, kind: Kind) -> Vec<String> {
        st.types[index(kind)].acked.names().cloned().collect()
    }

    #[test]
    fn a_new_envoy_gets_clusters_then_listeners_then_routes() {
        let mut a = Archive::default();
        let mut st = StreamState::new(Variant::Sotw);
        let s = snap(&[("qotm", "1"), ("qotmv2", "1")], "r1", &["qotm", "qotmv2"]);
        st.on_sotw(&req(Kind::Cluster, &[], "", ""), &a).unwrap();
        st.on_sotw(&req(Kind::Listener, &[], "", ""), &a).unwrap();
        let out = st.plan(&s, &mut a);
        assert_eq!(out.len(), 1, "only CDS before its ACK");
        assert_eq!(out[0].kind, Kind::Cluster);
        assert_eq!(decode(&out[0]).resources.len(), 2);
        st.on_sotw(&req(Kind::Cluster, &[], &out[0].version, &out[0].nonce), &a)
            .unwrap();
        let out = st.plan(&s, &mut a);
        assert_eq!(
            out.iter().map(|r| r.kind).collect::<Vec<_>>(),
            [Kind::Listener]
        );
        st.on_sotw(&req(Kind::Route, &["canary-xds"], "", ""), &a)
            .unwrap();
        let out2 = st.plan(&s, &mut a);
        assert_eq!(
            out2.iter().map(|r| r.kind).collect::<Vec<_>>(),
            [Kind::Route]
        );
        assert_eq!(decode(&out2[0]).resources.len(), 1);
    }

    #[test]
    fn routes_wait_for_their_clusters_and_old_clusters_go_last() {
        let mut a = Archive::default();
        let mut st = StreamState::new(Variant::Sotw);
        let s1 = snap(&[("qotm", "1")], "r1", &["qotm"]);
        sync(&mut st, &s1, &mut a);
        // One save moves the route from qotm to other.
        let s2 = snap(&[("other", "1")], "r2", &["other"]);
        let out = st.plan(&s2, &mut a);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].kind, Kind::Cluster);
        // Both clusters: qotm is still used by the route Envoy holds.
        assert_eq!(decode(&out[0]).resources.len(), 2);
        st.on_sotw(&req(Kind::Cluster, &[], &out[0].version, &out[0].nonce), &a)
            .unwrap();
        let out = st.plan(&s2, &mut a);
        assert_eq!(
            out.iter().map(|r| r.kind).collect::<Vec<_>>(),
            [Kind::Route]
        );
        // While the route is in flight, qotm stays.
        assert!(st.plan(&s2, &mut a).is_empty());
        st.on_sotw(
            &req(Kind::Route, &["canary-xds"], &out[0].version, &out[0].nonce),
            &a,
        )
        .unwrap();
        let out = st.plan(&s2, &mut a);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].kind, Kind::Cluster);
        assert_eq!(
            decode(&out[0]).resources.len(),
            1,
            "qotm removed after the route ACK"
        );
        st.on_sotw(&req(Kind::Cluster, &[], &out[0].version, &out[0].nonce), &a)
            .unwrap();
        assert!(st.plan(&s2, &mut a).is_empty());
        assert_eq!(held(&st, Kind::Cluster), ["other"]);
    }

    #[test]
    fn a_weight_change_sends_only_routes() {
        let mut a = Archive::default();
        let mut st = StreamState::new(Variant::Sotw);
        sync(
            &mut st,
            &snap(&[("a", "1"), ("b", "1")], "r1", &["a", "b"]),
            &mut a,
        );
        let out = st.plan(&snap(&[("a", "1"), ("b", "1")], "r2", &["a", "b"]), &mut a);
        assert_eq!(
            out.iter().map(|r| r.kind).collect::<Vec<_>>(),
            [Kind::Route]
        );
    }

    #[test]
    fn nothing_is_sent_when_nothing_changed() {
        let mut a = Archive::default();
        let mut st = StreamState::new(Variant::Sotw);
        let s = snap(&[("a", "1")], "r1", &["a"]);
        sync(&mut st, &s, &mut a);
        assert!(st.plan(&s, &mut a).is_empty());
        // An equal snapshot built again is the same content.
        assert!(
            st.plan(&snap(&[("a", "1")], "r1", &["a"]), &mut a)
                .is_empty()
        );
    }

    #[test]
    fn a_nack_is_not_answered_with_the_same_version() {
        let mut a = Archive::default();
        let mut st = StreamState::new(Variant::Sotw);
        let s1 = snap(&[("a", "1")], "r1", &["a"]);
        sync(&mut st, &s1, &mut a);
        let s2 = snap(&[("a", "1")], "r2", &["a"]);
        let out = st.plan(&s2, &mut a);
        let ev = st.on_sotw(&nack(Kind::Route, &out[0].nonce), &a).unwrap();
        assert!(
            matches!(&ev[0], Event::Nack { kind: Kind::Route, message, .. } if message == "bad")
        );
        // No resend loop: the same snapshot sends nothing.
        assert!(st.plan(&s2, &mut a).is_empty());
        assert!(st.plan(&s2, &mut a).is_empty());
        assert_eq!(
            st.status(Kind::Route).acked,
            Some(ResourceSet::shared(s1.routes.items.clone()).version)
        );
        // The next change goes out.
        let s3 = snap(&[("a", "1")], "r3", &["a"]);
        assert_eq!(st.plan(&s3, &mut a).len(), 1);
    }

    #[test]
    fn stale_nonces_are_not_acks() {
        let mut a = Archive::default();
        let mut st = StreamState::new(Variant::Sotw);
        sync(&mut st, &snap(&[("a", "1")], "r1", &["a"]), &mut a);
        let out = st.plan(&snap(&[("a", "1")], "r2", &["a"]), &mut a);
        let ev = st
            .on_sotw(&req(Kind::Route, &["canary-xds"], "x", "999"), &a)
            .unwrap();
        assert!(ev.is_empty());
        assert!(st.status(Kind::Route).waiting_for_ack);
        st.on_sotw(
            &req(Kind::Route, &["canary-xds"], &out[0].version, &out[0].nonce),
            &a,
        )
        .unwrap();
        assert!(!st.status(Kind::Route).waiting_for_ack);
    }

    #[test]
    fn newly_requested_names_are_answered_even_when_unchanged() {
        let mut a = Archive::default();
        let mut st = StreamState::new(Variant::Sotw);
        let s = snap(&[("a", "1")], "r1", &["a"]);
        sync(&mut st, &s, &mut a);
        let nonce = st.types[index(Kind::Route)].last_nonce.clone().unwrap();
        // Envoy drops the name, then asks for it again.
        st.on_sotw(&req(Kind::Route, &[], "", &nonce), &a).unwrap();
        let out = st.plan(&s, &mut a);
        assert_eq!(out.len(), 1);
        assert_eq!(decode(&out[0]).resources.len(), 0);
        st.on_sotw(&req(Kind::Route, &[], &out[0].version, &out[0].nonce), &a)
            .unwrap();
        st.on_sotw(&req(Kind::Route, &["canary-xds"], "", &out[0].nonce), &a)
            .unwrap();
        let out = st.plan(&s, &mut a);
        assert_eq!(decode(&out[0]).resources.len(), 1);
    }

    #[test]
    fn a_reconnecting_envoy_is_answered_with_the_same_versions() {
        let mut a = Archive::default();
        let s = snap(&[("a", "1")], "r1", &["a"]);
        let mut st = StreamState::new(Variant::Sotw);
        sync(&mut st, &s, &mut a);
        let versions: Vec<Option<String>> = PLAIN.iter().map(|k| st.status(*k).acked).collect();
        let mut again = StreamState::new(Variant::Sotw);
        for (kind, v) in PLAIN.iter().zip(&versions) {
            let names: &[&str] = if *kind == Kind::Route {
                &["canary-xds"]
            } else {
                &[]
            };
            let ev = again
                .on_sotw(&req(*kind, names, v.as_deref().unwrap(), ""), &a)
                .unwrap();
            assert!(ev.is_empty(), "{ev:?}");
        }
        // Every first request is answered, and with the very versions Envoy holds.
        let out = again.plan(&s, &mut a);
        assert_eq!(out[0].kind, Kind::Cluster);
        assert_eq!(Some(out[0].version.clone()), versions[0]);
        let mut sent: Vec<(Kind, String)> =
            out.iter().map(|r| (r.kind, r.version.clone())).collect();
        for r in &out {
            let names: &[&str] = if r.kind == Kind::Route {
                &["canary-xds"]
            } else {
                &[]
            };
            again
                .on_sotw(&req(r.kind, names, &r.version, &r.nonce), &a)
                .unwrap();
        }
        for r in again.plan(&s, &mut a) {
            sent.push((r.kind, r.version.clone()));
        }
        for (kind, v) in sent {
            let i = PLAIN.iter().position(|k| *k == kind).unwrap();
            assert_eq!(Some(v), versions[i], "{kind}");
        }
    }

    #[test]
    fn a_reconnecting_envoy_keeps_its_clusters_until_its_routes_are_known() {
        let mut a = Archive::default();
        let s1 = snap(&[("old", "1")], "r1", &["old"]);
        let mut st = StreamState::new(Variant::Sotw);
        sync(&mut st, &s1, &mut a);
        let cds_version = st.status(Kind::Cluster).acked.unwrap();
        let rds_version = st.status(Kind::Route).acked.unwrap();
        // The server restarted, the route moved to `new`; Envoy reconnects, CDS first.
        let s2 = snap(&[("new", "1")], "r2", &["new"]);
        let mut again = StreamState::new(Variant::Sotw);
        again
            .on_sotw(&req(Kind::Cluster, &[], &cds_version, ""), &a)
            .unwrap();
        let out = again.plan(&s2, &mut a);
        assert_eq!(
            decode(&out[0]).resources.len(),
            2,
            "old is kept: Envoy may still route to it"
        );
        again
            .on_sotw(&req(Kind::Cluster, &[], &out[0].version, &out[0].nonce), &a)
            .unwrap();
        again
            .on_sotw(&req(Kind::Route, &["canary-xds"], &rds_version, ""), &a)
            .unwrap();
        let out = again.plan(&s2, &mut a);
        assert_eq!(
            out.iter().map(|r| r.kind).collect::<Vec<_>>(),
            [Kind::Route]
        );
        again
            .on_sotw(
                &req(Kind::Route, &["canary-xds"], &out[0].version, &out[0].nonce),
                &a,
            )
            .unwrap();
        let out = again.plan(&s2, &mut a);
        assert_eq!(
            decode(&out[0]).resources.len(),
            1,
            "old goes once the new routes are held"
        );
    }

    #[test]
    fn a_reconnect_with_an_unknown_version_is_reported() {
        let mut a = Archive::default();
        let mut st = StreamState::new(Variant::Sotw);
        let ev = st
            .on_sotw(&req(Kind::Route, &["canary-xds"], "from-before", ""), &a)
            .unwrap();
        assert_eq!(
            ev,
            [Event::UnknownVersion {
                kind: Kind::Route,
                version: "from-before".into()
            }]
        );
        let _ = st.plan(&snap(&[("a", "1")], "r1", &["a"]), &mut a);
    }

    #[test]
    fn the_first_request_needs_a_node() {
        let a = Archive::default();
        let mut st = StreamState::new(Variant::Sotw);
        let r = DiscoveryRequest {
            node: None,
            ..req(Kind::Cluster, &[], "", "")
        };
        assert_eq!(st.on_sotw(&r, &a), Err(ProtocolError::NoNode));
        let r = DiscoveryRequest {
            type_url: String::new(),
            ..req(Kind::Cluster, &[], "", "")
        };
        assert_eq!(st.on_sotw(&r, &a), Err(ProtocolError::NoTypeUrl));
        assert_eq!(st.fleet(), Some("default"));
    }

    #[test]
    fn unknown_types_are_reported_not_answered() {
        let mut a = Archive::default();
        let mut st = StreamState::new(Variant::Sotw);
        let r = DiscoveryRequest {
            type_url: "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment".into(),
            ..req(Kind::Cluster, &[], "", "")
        };
        assert!(matches!(
            st.on_sotw(&r, &a).unwrap()[0],
            Event::UnknownType { .. }
        ));
        assert!(st.plan(&snap(&[], "r", &[]), &mut a).is_empty());
    }

    // --- delta ---

    fn dreq(kind: Kind, subscribe: &[&str], nonce: &str) -> DeltaDiscoveryRequest {
        DeltaDiscoveryRequest {
            node: node(),
            type_url: kind.type_url().into(),
            resource_names_subscribe: subscribe.iter().map(|s| s.to_string()).collect(),
            response_nonce: nonce.into(),
            ..Default::default()
        }
    }

    fn ddecode(r: &Response) -> DeltaDiscoveryResponse {
        DeltaDiscoveryResponse::decode(r.body.to_vec().as_slice()).unwrap()
    }

    fn dsync(st: &mut StreamState, s: &Snapshot, a: &mut Archive) -> Vec<DeltaDiscoveryResponse> {
        let mut seen = Vec::new();
        for kind in PLAIN {
            if !st.types[index(kind)].subscribed {
                let names: &[&str] = if kind == Kind::Route {
                    &["canary-xds"]
                } else {
                    &[]
                };
                st.on_delta(&dreq(kind, names, ""), a).unwrap();
            }
        }
        for _ in 0..10 {
            let out = st.plan(s, a);
            if out.is_empty() {
                return seen;
            }
            for r in out {
                seen.push(ddecode(&r));
                st.on_delta(&dreq(r.kind, &[], &r.nonce), a).unwrap();
            }
        }
        panic!("never in sync");
    }

    #[test]
    fn delta_sends_only_changes_and_removes_old_clusters_after_routes_move() {
        let mut a = Archive::default();
        let mut st = StreamState::new(Variant::Delta);
        let first = dsync(
            &mut st,
            &snap(&[("a", "1"), ("b", "1")], "r1", &["a", "b"]),
            &mut a,
        );
        assert_eq!(first[0].resources.len(), 2);
        // The canary b is deleted.
        let seen = dsync(&mut st, &snap(&[("a", "1")], "r2", &["a"]), &mut a);
        let kinds: Vec<&str> = seen
            .iter()
            .map(|r| r.type_url.rsplit('.').next().unwrap())
            .collect();
        assert_eq!(kinds, ["RouteConfiguration", "Cluster"]);
        assert_eq!(seen[1].removed_resources, ["b"]);
        assert!(seen[1].resources.is_empty(), "a removal, not a full resend");
        assert_eq!(held(&st, Kind::Cluster), ["a"]);
    }

    #[test]
    fn delta_reconnect_with_initial_versions_sends_nothing_new_and_keeps_unknown_clusters() {
        let mut a = Archive::default();
        let s = snap(&[("a", "1")], "r1", &["a"]);
        let mut st = StreamState::new(Variant::Delta);
        dsync(&mut st, &s, &mut a);
        let mut again = StreamState::new(Variant::Delta);
        let mut r = dreq(Kind::Cluster, &[], "");
        r.initial_resource_versions = [
            ("a".to_string(), "1".to_string()),
            ("mystery".to_string(), "9".to_string()),
        ]
        .into();
        again.on_delta(&r, &a).unwrap();
        let mut r = dreq(Kind::Route, &["canary-xds"], "");
        r.initial_resource_versions = [("canary-xds".to_string(), "old".to_string())].into();
        let ev = again.on_delta(&r, &a).unwrap();
        assert!(matches!(ev[0], Event::UnknownVersion { .. }));
        let out = again.plan(&s, &mut a);
        let cds = ddecode(&out[0]);
        assert!(cds.resources.is_empty());
        assert!(
            cds.removed_resources.is_empty(),
            "mystery may still be routed to"
        );
        // Envoy already holds cluster a, so the route table goes at once.
        assert_eq!(out[1].kind, Kind::Route);
        again
            .on_delta(&dreq(Kind::Cluster, &[], &out[0].nonce), &a)
            .unwrap();
        again
            .on_delta(&dreq(Kind::Route, &[], &out[1].nonce), &a)
            .unwrap();
        // Now our route table is held: mystery goes.
        let out = again.plan(&s, &mut a);
        assert_eq!(ddecode(&out[0]).removed_resources, ["mystery"]);
    }

    #[test]
    fn delta_nack_is_not_resent() {
        let mut a = Archive::default();
        let mut st = StreamState::new(Variant::Delta);
        dsync(&mut st, &snap(&[("a", "1")], "r1", &["a"]), &mut a);
        let s2 = snap(&[("a", "1")], "r2", &["a"]);
        let out = st.plan(&s2, &mut a);
        let mut n = dreq(Kind::Route, &[], &out[0].nonce);
        n.error_detail = Some(Status {
            code: 13,
            message: "no".into(),
            ..Default::default()
        });
        assert!(matches!(
            st.on_delta(&n, &a).unwrap()[0],
            Event::Nack { .. }
        ));
        assert!(st.plan(&s2, &mut a).is_empty());
    }
    // --- runtime (RTDS) ---

    fn rt_node() -> Option<Node> {
        use envoy_types::pb::google::protobuf::{Struct, Value, value::Kind as VK};
        Some(Node {
            id: "rt".into(),
            cluster: "default".into(),
            metadata: Some(Struct {
                fields: [(
                    RUNTIME_METADATA.to_string(),
                    Value {
                        kind: Some(VK::BoolValue(true)),
                    },
                )]
                .into(),
            }),
            ..Default::default()
        })
    }

    struct Built {
        builder: crate::envoy::snapshot::SnapshotBuilder,
    }

    impl Built {
        fn new() -> Self {
            Built {
                builder: crate::test_util::builder(),
            }
        }

        fn snap(&mut self, canary_weight: u32, canary_service: &str) -> Snapshot {
            let canary = format!(
                "apiVersion: ambassador/v1\nkind: Mapping\nname: canary\nprefix: /q/\nservice: {canary_service}\nweight: {canary_weight}\n"
            );
            let main = "apiVersion: ambassador/v1\nkind: Mapping\nname: main\nprefix: /q/\nservice: main\n";
            crate::test_util::snapshot(&mut self.builder, &[("a.yaml", main), ("b.yaml", &canary)])
        }
    }

    fn rt_req(kind: Kind, version: &str, nonce: &str) -> DiscoveryRequest {
        let names: &[&str] = match kind {
            Kind::Route => &["canary-xds"],
            Kind::Runtime => &["canary-xds"],
            _ => &[],
        };
        DiscoveryRequest {
            node: rt_node(),
            ..req(kind, names, version, nonce)
        }
    }

    /// Plans and ACKs until nothing is left to send; returns the kinds sent, in order.
    fn rt_sync(st: &mut StreamState, s: &Snapshot, a: &mut Archive) -> Vec<Kind> {
        let mut sent = Vec::new();
        for _ in 0..10 {
            let out = st.plan(s, a);
            if out.is_empty() {
                return sent;
            }
            for r in out {
                sent.push(r.kind);
                st.on_sotw(&rt_req(r.kind, &r.version, &r.nonce), a)
                    .unwrap();
            }
        }
        panic!("never in sync");
    }

    fn held_layer_of(st: &StreamState) -> Layer {
        st.held_layer()
    }

    #[test]
    fn a_runtime_envoy_gets_the_layer_before_routes_and_weight_changes_over_rtds_only() {
        let mut b = Built::new();
        let mut a = Archive::default();
        let mut st = StreamState::new(Variant::Sotw);
        for kind in Kind::ALL {
            st.on_sotw(&rt_req(kind, "", ""), &a).unwrap();
        }
        assert!(st.runtime());
        let s1 = b.snap(10, "canary");
        let sent = rt_sync(&mut st, &s1, &mut a);
        let rds = sent.iter().position(|k| *k == Kind::Route).unwrap();
        let rtds = sent.iter().position(|k| *k == Kind::Runtime).unwrap();
        assert!(rtds < rds, "{sent:?}");
        assert!(
            held_layer_of(&st).is_empty(),
            "a new route's weights are its base"
        );

        // Weight changes: the runtime layer alone.
        let s2 = b.snap(50, "canary");
        assert_eq!(s2.routes_runtime.version, s1.routes_runtime.version);
        assert_ne!(s2.routes.version, s1.routes.version);
        assert_eq!(rt_sync(&mut st, &s2, &mut a), [Kind::Runtime]);
        let layer = held_layer_of(&st);
        assert_eq!(layer.values().copied().collect::<Vec<_>>(), [5000, 5000]);
        assert_eq!(
            rt_sync(&mut st, &b.snap(0, "canary"), &mut a),
            [Kind::Runtime]
        );
        assert_eq!(
            held_layer_of(&st).values().copied().collect::<Vec<_>>(),
            [0, 10000]
        );
    }

    #[test]
    fn a_structural_change_keeps_old_runtime_values_until_the_new_routes_are_held() {
        let mut b = Built::new();
        let mut a = Archive::default();
        let mut st = StreamState::new(Variant::Sotw);
        for kind in Kind::ALL {
            st.on_sotw(&rt_req(kind, "", ""), &a).unwrap();
        }
        rt_sync(&mut st, &b.snap(10, "canary"), &mut a);
        rt_sync(&mut st, &b.snap(30, "canary"), &mut a);
        let before = held_layer_of(&st);
        assert_eq!(before.len(), 2);
        // The canary moves to another service: a new structure, rebased, new prefix. The
        // layer Envoy holds already keeps the old routes' values: no RTDS before the routes.
        let s3 = b.snap(40, "canary2");
        let out = st.plan(&s3, &mut a);
        assert_eq!(
            out.iter().map(|r| r.kind).collect::<Vec<_>>(),
            [Kind::Cluster]
        );
        st.on_sotw(&rt_req(Kind::Cluster, &out[0].version, &out[0].nonce), &a)
            .unwrap();
        let out = st.plan(&s3, &mut a);
        assert_eq!(
            out.iter().map(|r| r.kind).collect::<Vec<_>>(),
            [Kind::Route]
        );
        assert_eq!(
            held_layer_of(&st),
            before,
            "old values stay while the old routes are held"
        );
        st.on_sotw(&rt_req(Kind::Route, &out[0].version, &out[0].nonce), &a)
            .unwrap();
        // Then the layer is pruned, and the old cluster goes.
        let rest = rt_sync(&mut st, &s3, &mut a);
        assert!(
            rest.contains(&Kind::Runtime) && rest.contains(&Kind::Cluster),
            "{rest:?}"
        );
        assert!(held_layer_of(&st).is_empty());
    }

    #[test]
    fn overrides_for_routes_being_replaced_are_sent_before_the_routes() {
        // Two weight changes in a row while the first one's routes are in flight keep the
        // layer consistent with whichever routes Envoy holds.
        let mut b = Built::new();
        let mut a = Archive::default();
        let mut st = StreamState::new(Variant::Sotw);
        for kind in Kind::ALL {
            st.on_sotw(&rt_req(kind, "", ""), &a).unwrap();
        }
        rt_sync(&mut st, &b.snap(10, "canary"), &mut a);
        // A new structure whose base is 20, then (before Envoy took it) a weight change to 60:
        // the layer must carry 60 for the new prefix before the new routes are sent.
        let _ = b.snap(20, "canary2");
        let s = b.snap(60, "canary2");
        let sent = rt_sync(&mut st, &s, &mut a);
        let rds = sent.iter().position(|k| *k == Kind::Route).unwrap();
        let rtds = sent.iter().position(|k| *k == Kind::Runtime).unwrap();
        assert!(rtds < rds, "{sent:?}");
        // Keys sort by cluster name: canary2 (60%) before main (40%).
        assert_eq!(
            held_layer_of(&st).values().copied().collect::<Vec<_>>(),
            [6000, 4000]
        );
    }

    #[test]
    fn an_envoy_without_the_layer_gets_every_weight_in_its_routes() {
        let mut b = Built::new();
        let mut a = Archive::default();
        let mut st = StreamState::new(Variant::Sotw);
        sync(&mut st, &b.snap(10, "canary"), &mut a);
        let out = st.plan(&b.snap(50, "canary"), &mut a);
        assert_eq!(
            out.iter().map(|r| r.kind).collect::<Vec<_>>(),
            [Kind::Route]
        );
    }
}
