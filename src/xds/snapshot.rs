//! What is served: a fleet's snapshot of encoded resources, and the snapshots of every fleet
//! published together.
//!
//! A snapshot is immutable and shared (`Arc`) by every stream of its fleet. Versions come from
//! content, so the same files give the same versions across restarts and replicas, and nothing
//! is pushed when nothing changed.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use sha2::{Digest, Sha256};

use super::resource::{Kind, Layer, Resource, ResourceSet, short_hex};

/// Everything one fleet's Envoys should have.
#[derive(Clone, Debug)]
pub struct Snapshot {
    pub fleet: String,
    /// A version for the whole snapshot, for logs and status: a hash of the set versions.
    pub version: String,
    pub clusters: ResourceSet,
    pub listeners: ResourceSet,
    /// The route configuration for Envoys without canary-xds's runtime layer: every weight in it.
    pub routes: ResourceSet,
    /// For Envoys with the runtime layer: weighted routes read their weights from runtime keys
    /// (defaulting to base weights), so weight changes go in `runtime` alone.
    pub routes_runtime: ResourceSet,
    /// The runtime layer (RTDS): weights that differ from the base weights.
    pub runtime: ResourceSet,
    /// Whether every cluster the route configurations name is in `clusters`, as in every
    /// snapshot `SnapshotBuilder` makes: an Envoy holding `clusters` itself can then take them
    /// without a lookup per cluster. False unless the maker knows.
    pub routes_within_clusters: bool,
}

/// The name of the runtime layer, in the bootstrap and over RTDS.
pub const RUNTIME_LAYER: &str = "canary-xds";

impl Snapshot {
    /// A snapshot for Envoys with and without the runtime layer. Its version names what both
    /// kinds of Envoy are sent.
    pub fn new(
        fleet: String,
        clusters: ResourceSet,
        listeners: ResourceSet,
        routes: ResourceSet,
        routes_runtime: ResourceSet,
        runtime: ResourceSet,
    ) -> Self {
        let mut h = Sha256::new();
        for set in [&clusters, &listeners, &routes, &routes_runtime, &runtime] {
            h.update(set.version.as_bytes());
        }
        Snapshot {
            fleet,
            version: short_hex(&h.finalize()),
            clusters,
            listeners,
            routes,
            routes_runtime,
            runtime,
            routes_within_clusters: false,
        }
    }

    /// A snapshot without a runtime variant (the runtime route configuration is the plain one,
    /// the layer empty): for tests and for Envoys that all lack the layer.
    pub fn plain(
        fleet: String,
        clusters: ResourceSet,
        listeners: ResourceSet,
        routes: ResourceSet,
    ) -> Self {
        let empty = ResourceSet::new(BTreeMap::from([(
            RUNTIME_LAYER.to_string(),
            Arc::new(Resource::runtime_layer(RUNTIME_LAYER, Layer::new())),
        )]));
        Snapshot::new(fleet, clusters, listeners, routes.clone(), routes, empty)
    }

    /// What an Envoy of this fleet gets of `kind`: with `runtime`, the runtime variant.
    pub fn set_for(&self, kind: Kind, runtime: bool) -> &ResourceSet {
        match kind {
            Kind::Cluster => &self.clusters,
            Kind::Runtime => &self.runtime,
            Kind::Listener => &self.listeners,
            Kind::Route if runtime => &self.routes_runtime,
            Kind::Route => &self.routes,
        }
    }

    /// Every set, for archiving what was published.
    pub fn sets(&self) -> [(Kind, &ResourceSet); 5] {
        [
            (Kind::Cluster, &self.clusters),
            (Kind::Runtime, &self.runtime),
            (Kind::Listener, &self.listeners),
            (Kind::Route, &self.routes),
            (Kind::Route, &self.routes_runtime),
        ]
    }
}

/// The snapshots being served: one per fleet, and one for Envoys of a fleet no Mapping names.
#[derive(Clone, Debug)]
pub struct Published {
    pub fleets: BTreeMap<String, Arc<Snapshot>>,
    /// For any other fleet: an empty route table on the default listener.
    pub other: Arc<Snapshot>,
    /// When the change that led to this snapshot was seen (for propagation metrics).
    pub since: Instant,
    /// Fleets that are sent nothing at all, with why: their files give a route table that is
    /// refused and they have no good past to fall back on. An Envoy of such a fleet keeps what
    /// it holds (an empty table would wipe a reconnecting Envoy's routes).
    pub withheld: BTreeMap<String, String>,
}

impl Published {
    /// The snapshot an Envoy of fleet `name` gets.
    pub fn fleet(&self, name: &str) -> Arc<Snapshot> {
        self.fleets
            .get(name)
            .cloned()
            .unwrap_or_else(|| Arc::clone(&self.other))
    }

    /// Why fleet `name` is sent nothing, if it is withheld.
    pub fn withholds(&self, name: &str) -> Option<&str> {
        self.withheld.get(name).map(String::as_str)
    }

    /// Every fleet's snapshot version, the other fleets' last (named ""); a withheld fleet's
    /// version is `withheld`.
    pub fn fleet_versions(&self) -> Vec<(&str, &str)> {
        self.fleets
            .iter()
            .map(|(k, s)| (k.as_str(), s.version.as_str()))
            .chain(self.withheld.keys().map(|k| (k.as_str(), "withheld")))
            .chain([("", self.other.version.as_str())])
            .collect()
    }

    /// One version for everything served: the default fleet's snapshot version when it is the
    /// only fleet, else a hash of every fleet's.
    pub fn version(&self) -> String {
        if self.fleets.len() == 1
            && let Some(s) = self.fleets.values().next()
        {
            return s.version.clone();
        }
        let mut h = Sha256::new();
        for (k, v) in self.fleet_versions() {
            h.update(k.as_bytes());
            h.update([0]);
            h.update(v.as_bytes());
        }
        short_hex(&h.finalize())
    }
}
