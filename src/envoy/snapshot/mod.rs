//! The snapshot builder: a fleet's route table turned into the snapshot served to its Envoys
//! (`xds::Snapshot`), translating and encoding only what changed since the last build.
//!
//! Versions come from content, so the same files give the same versions, and nothing is pushed
//! when nothing changed.

mod clusters;
mod routes;
mod runtime;
mod size;

pub use runtime::DEFAULT_MAX_LAYER_ROUTES;
pub use size::{DEFAULT_MAX_ROUTE_BYTES, DEFAULT_MAX_ROUTES, Oversized, RouteLimits, TableSize};

use crate::envoy::translate;
use crate::routes::RouteTable;
use crate::xds::Snapshot;
use crate::xds::resource::{Kind, Layer, Resource, ResourceSet, content_version};
use clusters::ClusterSet;
use clusters::ClusterVariant;
use clusters::Used;
use prost::Message;
use routes::CachedRoute;
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

/// Turns route tables into snapshots, translating and encoding only what changed since the
/// last build: clusters are cached by content, each route's Envoy routes are cached encoded,
/// and the route configuration is assembled from those bytes.
pub struct SnapshotBuilder {
    upstream_ca: Option<PathBuf>,
    listen: Listen,
    /// By name (looked up without copying), then by spec: a name may mean another spec in
    /// another fleet.
    clusters: HashMap<String, Vec<ClusterVariant>>,
    listeners: HashMap<SocketAddr, Used<Arc<Resource>>>,
    /// Each fleet's last cluster set, with the table's cluster map it was built from: the
    /// compiler hands the same map back when no cluster changed.
    cluster_sets: HashMap<String, Used<ClusterSet>>,
    /// By the route's address: the entry keeps the route alive, so the address is not reused,
    /// and the compiler reuses every route that did not change.
    routes: HashMap<usize, Used<CachedRoute>>,
    /// Weighted routes for runtime Envoys, by (structure, base weights).
    runtime_routes: HashMap<[u8; 32], Used<bytes::Bytes>>,
    configs: HashMap<String, Used<Arc<Resource>>>,
    layers: HashMap<String, Used<Arc<Resource>>>,
    /// Per fleet: its last route configurations and what they were made of.
    built: HashMap<String, Built>,
    /// The most routes whose weights the runtime layer carries (`--max-layer-routes`).
    max_layer_routes: usize,
    /// Per fleet: its last measured table (`measure`).
    measured: HashMap<String, size::Measured>,
    /// Whether a cluster set was built since the last `retain`.
    new_clusters: bool,
    generation: u64,
}

/// A fleet's last route configurations, with what they were assembled from, route by route.
struct Built {
    table: Arc<RouteTable>,
    generation: u64,
    plan: Vec<(String, Vec<usize>)>,
    digests: Vec<[u8; 32]>,
    /// For weighted routes, the version of everything but their weights.
    structures: Vec<Option<[u8; 32]>>,
    entries: Vec<bytes::Bytes>,
    /// The runtime variant's: a weighted route's runtime id, else as above.
    rt_digests: Vec<[u8; 32]>,
    /// The runtime variant's encoded entries, as `entries`.
    rt_entries: Vec<bytes::Bytes>,
    /// A weighted route's runtime key prefix.
    prefixes: Vec<Option<String>>,
    /// Whether the layer carries a weighted route's weights (they differ from its default).
    overrides: Vec<bool>,
    /// Whether some weighted route's weights differ from its default but are in the route table
    /// (more than `max_layer_routes` differ).
    baked: bool,
    layer: Layer,
    plain: Arc<Resource>,
    runtime: Arc<Resource>,
    layer_resource: Arc<Resource>,
}

/// Below this many resources to translate, one thread does it: handing work to the pool costs
/// more than a few hundred translations.
const PARALLEL_MIN: usize = 256;

/// Where each fleet's HTTP listener is: `--listen FLEET=ADDR`, else the default address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listen {
    pub default: SocketAddr,
    pub fleets: BTreeMap<String, SocketAddr>,
}

impl Listen {
    pub fn for_fleet(&self, fleet: &str) -> SocketAddr {
        self.fleets.get(fleet).copied().unwrap_or(self.default)
    }
}

impl SnapshotBuilder {
    pub fn new(listen: Listen, upstream_ca: Option<PathBuf>) -> Self {
        SnapshotBuilder {
            upstream_ca,
            listen,
            clusters: HashMap::new(),
            listeners: HashMap::new(),
            cluster_sets: HashMap::new(),
            routes: HashMap::new(),
            runtime_routes: HashMap::new(),
            configs: HashMap::new(),
            layers: HashMap::new(),
            built: HashMap::new(),
            max_layer_routes: DEFAULT_MAX_LAYER_ROUTES,
            measured: HashMap::new(),
            new_clusters: false,
            generation: 0,
        }
    }

    /// Lets the runtime layer carry the weights of at most `n` routes (the rest are in the
    /// route table).
    pub fn with_max_layer_routes(mut self, n: usize) -> Self {
        self.max_layer_routes = n;
        self
    }

    fn options(&self, fleet: &str) -> translate::Options {
        translate::Options {
            listen: self.listen.for_fleet(fleet),
            upstream_ca: self.upstream_ca.clone(),
        }
    }

    /// The snapshot of `fleet` for `table`.
    pub fn build(&mut self, fleet: &str, table: Arc<RouteTable>) -> Snapshot {
        let options = self.options(fleet);
        let generation = self.generation;
        let ClusterSet {
            resources, names, ..
        } = match self.cluster_sets.get_mut(fleet) {
            Some(used) if Arc::ptr_eq(&used.value.map, &table.clusters) => {
                used.generation = generation;
                used.value.clone()
            }
            _ => {
                self.new_clusters = true;
                let set = ClusterSet {
                    map: Arc::clone(&table.clusters),
                    resources: self.cluster_set(&table.clusters, &options),
                    names: table.clusters.keys().cloned().collect(),
                };
                self.cluster_sets.insert(
                    fleet.to_string(),
                    Used {
                        value: set.clone(),
                        generation,
                    },
                );
                set
            }
        };

        let addr = options.listen;
        let listener = self.listeners.entry(addr).or_insert_with(|| Used {
            value: Arc::new(Resource::new(
                Kind::Listener,
                translate::listener_name(addr),
                content_version(Kind::Listener, &addr),
                translate::listener(addr).encode_to_vec(),
                Vec::new(),
            )),
            generation,
        });
        listener.generation = generation;
        let listener = Arc::clone(&listener.value);

        let (route, route_runtime, layer) = self.route_configurations(fleet, &table, &names);
        let one = |r: Arc<Resource>| ResourceSet::new(BTreeMap::from([(r.name.clone(), r)]));
        Snapshot {
            // Both route configurations name exactly the clusters of `resources` (`names`).
            routes_within_clusters: true,
            ..Snapshot::new(
                fleet.to_string(),
                resources,
                one(listener),
                one(route),
                one(route_runtime),
                one(layer),
            )
        }
    }

    /// Forgets what the snapshots built since the last call did not use, so the caches stay
    /// the size of what is served. Call once per publication, after its builds.
    pub fn retain(&mut self) {
        let g = self.generation;
        self.built.retain(|_, b| b.generation == g);
        self.cluster_sets.retain(|_, e| e.generation == g);
        // A cluster in a reused set was not looked up, but is still served.
        if std::mem::take(&mut self.new_clusters) {
            self.clusters.retain(|_, variants| {
                variants.retain(|(_, e)| e.generation == g || Arc::strong_count(&e.value) > 1);
                !variants.is_empty()
            });
        }
        self.listeners.retain(|_, e| e.generation == g);
        self.configs.retain(|_, e| e.generation == g);
        self.layers.retain(|_, e| e.generation == g);
        // Routes and their runtime variants live while a last build uses them (a patched build
        // does not look up the routes it keeps). Walking every route to find the others is
        // done once the caches hold well more than the live ones.
        let live: usize = self.built.values().map(|b| b.table.routes.len()).sum();
        if self.routes.len() + self.runtime_routes.len() > 2 * live + 64.max(live / 8) {
            let routes: std::collections::HashSet<usize> = self
                .built
                .values()
                .flat_map(|b| b.table.routes.iter().map(|r| Arc::as_ptr(r) as usize))
                .collect();
            self.routes.retain(|k, _| routes.contains(k));
            let ids: std::collections::HashSet<[u8; 32]> = self
                .built
                .values()
                .flat_map(|b| {
                    b.prefixes
                        .iter()
                        .zip(&b.rt_digests)
                        .filter(|(p, _)| p.is_some())
                        .map(|(_, id)| *id)
                })
                .collect();
            self.runtime_routes.retain(|k, _| ids.contains(k));
        }
        self.generation += 1;
    }
}

#[cfg(test)]
mod tests;
