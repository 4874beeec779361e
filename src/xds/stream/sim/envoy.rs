//! The simulated Envoy: what it holds of each type (kept across reconnects, as Envoy keeps its
//! config), what it subscribes to, how it reads responses and what its requests say.

use std::collections::{BTreeMap, BTreeSet};

use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::config::listener::v3::Listener;
use envoy_types::pb::envoy::config::route::v3::{
    RouteConfiguration, route::Action, route_action::ClusterSpecifier,
};
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use envoy_types::pb::envoy::service::runtime::v3::Runtime;
use envoy_types::pb::google::protobuf::{Any, Struct, Value, value::Kind as ValueKind};
use envoy_types::pb::google::rpc::Status;
use prost::Message;

use super::super::{RUNTIME_METADATA, Response, Variant, index};
use crate::xds::RUNTIME_LAYER;
use crate::xds::resource::Kind;

/// A resource as Envoy holds it: its version (delta; empty in state of the world) and, for a
/// route table, the clusters it routes to, read from the bytes received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Item {
    pub version: String,
    pub clusters: BTreeSet<String>,
}

/// What Envoy holds of one type.
#[derive(Clone, Debug, Default)]
pub struct Held {
    /// The version of the last response accepted (state of the world).
    pub version_info: String,
    pub items: BTreeMap<String, Item>,
}

/// A response as Envoy reads it.
#[derive(Debug)]
pub struct Decoded {
    pub kind: Kind,
    pub nonce: String,
    /// State of the world: the response's version. Delta: the system version.
    pub version: String,
    pub resources: Vec<(String, Item)>,
    pub removed: Vec<String>,
}

pub struct Envoy {
    pub variant: Variant,
    pub runtime: bool,
    /// By `index(kind)`.
    pub held: [Held; 4],
    /// The route configurations it subscribes to.
    pub routes: BTreeSet<String>,
    /// Whether it names the wildcard `*` (else it leaves the names empty).
    pub explicit_wildcard: bool,
    /// State of the world: route tables it dropped while its `version_info` still names a set
    /// holding them. Asked for again on a new stream, with that version, no server can tell
    /// that it lacks them (xds_protocol lets a server skip a reconnect's response only "if
    /// they know that the client is not subscribing to a new resource"): canary-xds's own
    /// Envoys ask for one route table, always, so this never arises with them.
    pub forgotten: BTreeSet<String>,
}

/// The clusters a route configuration routes to.
fn route_clusters(rc: &RouteConfiguration) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for route in rc.virtual_hosts.iter().flat_map(|v| &v.routes) {
        if let Some(Action::Route(action)) = &route.action {
            match &action.cluster_specifier {
                Some(ClusterSpecifier::Cluster(c)) => {
                    out.insert(c.clone());
                }
                Some(ClusterSpecifier::WeightedClusters(w)) => {
                    out.extend(w.clusters.iter().map(|c| c.name.clone()));
                }
                _ => {}
            }
        }
    }
    out
}

/// The name of a resource (and the clusters of a route table), from its `Any`.
fn read_any(kind: Kind, any: &Any) -> Result<(String, BTreeSet<String>), String> {
    if any.type_url != kind.type_url() {
        return Err(format!("a {kind} response holds a {}", any.type_url));
    }
    let bad = |e: prost::DecodeError| format!("a {kind} resource does not decode: {e}");
    let v = any.value.as_slice();
    Ok(match kind {
        Kind::Cluster => (Cluster::decode(v).map_err(bad)?.name, BTreeSet::new()),
        Kind::Listener => (Listener::decode(v).map_err(bad)?.name, BTreeSet::new()),
        Kind::Runtime => (Runtime::decode(v).map_err(bad)?.name, BTreeSet::new()),
        Kind::Route => {
            let rc = RouteConfiguration::decode(v).map_err(bad)?;
            let clusters = route_clusters(&rc);
            (rc.name, clusters)
        }
    })
}

/// Reads a response as Envoy would, checking that it is what the server says it is.
pub fn decode(variant: Variant, r: &Response) -> Result<Decoded, String> {
    let bytes = r.body.to_vec();
    let bad = |e: prost::DecodeError| format!("a response does not decode: {e}");
    let d = match variant {
        Variant::Sotw => {
            let m = DiscoveryResponse::decode(bytes.as_slice()).map_err(bad)?;
            let resources = m
                .resources
                .iter()
                .map(|any| {
                    let (name, clusters) = read_any(r.kind, any)?;
                    let version = String::new();
                    Ok((name, Item { version, clusters }))
                })
                .collect::<Result<Vec<_>, String>>()?;
            (m.type_url, m.nonce, m.version_info, resources, Vec::new())
        }
        Variant::Delta => {
            let m = DeltaDiscoveryResponse::decode(bytes.as_slice()).map_err(bad)?;
            let resources = m
                .resources
                .iter()
                .map(|res| {
                    let any = res
                        .resource
                        .as_ref()
                        .ok_or("a delta resource without body")?;
                    let (name, clusters) = read_any(r.kind, any)?;
                    if name != res.name {
                        return Err(format!("resource {} named {name} inside", res.name));
                    }
                    let version = res.version.clone();
                    Ok((name, Item { version, clusters }))
                })
                .collect::<Result<Vec<_>, String>>()?;
            (
                m.type_url,
                m.nonce,
                m.system_version_info,
                resources,
                m.removed_resources,
            )
        }
    };
    let (type_url, nonce, version, resources, removed) = d;
    if type_url != r.kind.type_url() || nonce != r.nonce {
        return Err(format!(
            "a {} response with nonce {} reads as {type_url} with nonce {nonce}",
            r.kind, r.nonce
        ));
    }
    Ok(Decoded {
        kind: r.kind,
        nonce,
        version,
        resources,
        removed,
    })
}

fn status(message: &str) -> Status {
    Status {
        code: 3,
        message: message.into(),
        ..Default::default()
    }
}

impl Envoy {
    pub fn new(variant: Variant, runtime: bool) -> Envoy {
        Envoy {
            variant,
            runtime,
            held: Default::default(),
            routes: BTreeSet::from(["canary-xds".to_string()]),
            explicit_wildcard: false,
            forgotten: BTreeSet::new(),
        }
    }

    pub fn held(&self, kind: Kind) -> &Held {
        &self.held[index(kind)]
    }

    pub fn wants(&self, kind: Kind, name: &str) -> bool {
        kind != Kind::Route || self.routes.contains(name)
    }

    /// Applies an accepted response.
    pub fn apply(&mut self, d: &Decoded) {
        let kind = d.kind;
        let (fresh, unwanted): (Vec<_>, Vec<_>) = d
            .resources
            .iter()
            .cloned()
            .partition(|(name, _)| self.wants(kind, name));
        let held = &mut self.held[index(kind)];
        match self.variant {
            Variant::Sotw => {
                held.version_info = d.version.clone();
                held.items = fresh.into_iter().collect();
                if kind == Kind::Route {
                    // Its version now names a set that holds the tables it left out (one it
                    // stopped asking for while the response was on its way).
                    self.forgotten = unwanted.into_iter().map(|(name, _)| name).collect();
                }
            }
            Variant::Delta => {
                held.items.extend(fresh);
                for name in &d.removed {
                    held.items.remove(name);
                }
            }
        }
    }

    /// Stops using a route configuration.
    pub fn unsubscribe(&mut self, name: &str) {
        self.routes.remove(name);
        let held = &mut self.held[index(Kind::Route)];
        if held.items.remove(name).is_some() && self.variant == Variant::Sotw {
            self.forgotten.insert(name.to_string());
        }
    }

    /// Every (route configuration, cluster) it holds where it does not hold the cluster.
    pub fn missing(&self) -> BTreeSet<(String, String)> {
        let clusters = &self.held(Kind::Cluster).items;
        self.held(Kind::Route)
            .items
            .iter()
            .flat_map(|(rc, item)| item.clusters.iter().map(move |c| (rc, c)))
            .filter(|(_, c)| !clusters.contains_key(*c))
            .map(|(rc, c)| (rc.clone(), c.clone()))
            .collect()
    }

    pub fn node(&self) -> Node {
        Node {
            id: "simulated".into(),
            cluster: "default".into(),
            metadata: self.runtime.then(|| Struct {
                fields: [(
                    RUNTIME_METADATA.to_string(),
                    Value {
                        kind: Some(ValueKind::BoolValue(true)),
                    },
                )]
                .into(),
            }),
            ..Default::default()
        }
    }

    /// The names a state-of-the-world request of `kind` carries.
    fn sotw_names(&self, kind: Kind) -> Vec<String> {
        match kind {
            Kind::Cluster | Kind::Listener if self.explicit_wildcard => vec!["*".into()],
            Kind::Cluster | Kind::Listener => Vec::new(),
            Kind::Route => self.routes.iter().cloned().collect(),
            Kind::Runtime => vec![RUNTIME_LAYER.into()],
        }
    }

    /// A state-of-the-world request: the names it wants, the version it holds, and the nonce
    /// it answers (a NACK with `error`).
    pub fn sotw(&self, kind: Kind, nonce: &str, error: Option<&str>) -> DiscoveryRequest {
        DiscoveryRequest {
            version_info: self.held(kind).version_info.clone(),
            resource_names: self.sotw_names(kind),
            type_url: kind.type_url().into(),
            response_nonce: nonce.into(),
            error_detail: error.map(status),
            ..Default::default()
        }
    }

    /// The first delta request of `kind` on a stream: what it subscribes to and, by name,
    /// the versions it holds.
    pub fn delta_first(&self, kind: Kind) -> DeltaDiscoveryRequest {
        DeltaDiscoveryRequest {
            type_url: kind.type_url().into(),
            resource_names_subscribe: self.sotw_names(kind),
            initial_resource_versions: self
                .held(kind)
                .items
                .iter()
                .map(|(n, i)| (n.clone(), i.version.clone()))
                .collect(),
            ..Default::default()
        }
    }

    /// A later delta request: subscription changes, the nonce it answers, a NACK's error.
    pub fn delta(
        &self,
        kind: Kind,
        subscribe: Vec<String>,
        unsubscribe: Vec<String>,
        nonce: &str,
        error: Option<&str>,
    ) -> DeltaDiscoveryRequest {
        DeltaDiscoveryRequest {
            type_url: kind.type_url().into(),
            resource_names_subscribe: subscribe,
            resource_names_unsubscribe: unsubscribe,
            response_nonce: nonce.into(),
            error_detail: error.map(status),
            ..Default::default()
        }
    }
}
