//! Versioned snapshots: a fleet's route table turned into encoded Envoy resources.
//!
//! A snapshot is immutable and shared (`Arc`) by every stream of its fleet. Versions come from
//! content, so the same files give the same versions across restarts and replicas, and nothing
//! is pushed when nothing changed.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use prost::Message;
use rayon::prelude::*;
use sha2::{Digest, Sha256};

use crate::envoy::translate;
use crate::model::mapping::{BackendSettings, Bp, RouteKey, RouteSettings};
use crate::routes::{ClusterSpec, Route, RouteTable};
use crate::xds::resource::{
    Kind, Layer, Resource, ResourceSet, content_digest, content_version, short_hex,
};
use crate::xds::{RUNTIME_LAYER, Snapshot};

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
    /// Per fleet: the base weights of each weighted route's structure.
    bases: HashMap<String, FleetBases>,
    /// Per fleet: its last route configurations and what they were made of.
    built: HashMap<String, Built>,
    /// Whether a cluster set was built since the last `retain`.
    new_clusters: bool,
    generation: u64,
}

/// At most this many changed routes are patched into the last build (`SnapshotBuilder::patch`);
/// more are built from scratch.
const MAX_PATCHED_ROUTES: usize = 64;

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
    /// A weighted route's runtime key prefix.
    prefixes: Vec<Option<String>>,
    /// Whether the layer carries a weighted route's weights (they differ from its bases).
    overrides: Vec<bool>,
    layer: Layer,
    plain: Arc<Resource>,
    runtime: Arc<Resource>,
    layer_resource: Arc<Resource>,
}

/// The base weights baked into a fleet's runtime route configuration, by route structure.
/// A weight change keeps the bases (the runtime layer carries the difference); any other
/// change to the route configuration rebases every route, emptying the layer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FleetBases {
    /// The structure version the bases were taken at.
    pub structure: [u8; 32],
    pub bases: HashMap<[u8; 32], Vec<Bp>>,
}

/// A runtime layer larger than this many routes is folded into the route configuration
/// (rebased): Envoy rebuilds its runtime snapshot on every layer update, so it must stay small.
pub const MAX_LAYER_ROUTES: usize = 256;

/// A cluster encoded for one spec.
type ClusterVariant = (Arc<ClusterSpec>, Used<Arc<Resource>>);

/// A cache entry and the generation that last used it.
struct Used<T> {
    value: T,
    generation: u64,
}

/// A fleet's cluster resources, kept while its table's cluster map is the same `Arc`.
#[derive(Clone)]
struct ClusterSet {
    map: Arc<BTreeMap<String, Arc<ClusterSpec>>>,
    resources: ResourceSet,
    /// The cluster names, which every route configuration built on this map refers to.
    names: Arc<[String]>,
}

/// One table route, translated and encoded.
struct CachedRoute {
    /// Keeps the route alive, so that its address (the key) is not reused.
    _route: Arc<Route>,
    /// The content version of this route (our model, SHA-256).
    digest: [u8; 32],
    /// For a weighted route, the version of everything but its weights.
    structure: Option<[u8; 32]>,
    /// Its Envoy routes as entries of `VirtualHost.routes` (field 3).
    entries: bytes::Bytes,
    /// For a weighted route, its runtime variant as last built: base weights, id and the
    /// prefix of its runtime keys.
    runtime: Option<(Vec<Bp>, [u8; 32], String)>,
}

/// A weighted route's runtime variant: its id and its entries.
type RuntimeVariant = ([u8; 32], bytes::Bytes);

impl CachedRoute {
    /// Translates and encodes a route. With `with_runtime`, a weighted route's runtime variant
    /// on its own weights too (what a first load serves: the bases are the table's weights),
    /// from the same translation.
    fn of(r: &Arc<Route>, with_runtime: bool) -> (Self, Option<RuntimeVariant>) {
        let mut envoy = translate::envoy_routes(r);
        let structure = translate::is_weighted(r)
            .then(|| content_digest(Kind::Route, &RouteModel::structure_of(r)));
        let weights: Vec<Bp> = r.backends.iter().map(|b| b.weight_bp).collect();
        let mut cached = CachedRoute {
            _route: Arc::clone(r),
            // A weighted route's content is its structure and its weights.
            digest: match structure {
                Some(s) => hash_weights(b"plain", s, &weights),
                None => content_digest(Kind::Route, &RouteModel::of(r)),
            },
            structure,
            entries: encode_entries(&envoy),
            runtime: None,
        };
        let variant = match (structure, envoy.as_mut_slice()) {
            (Some(s), [route]) if with_runtime => {
                let (id, prefix) = runtime_id(s, &weights);
                translate::read_weights_from_runtime(route, &prefix);
                cached.runtime = Some((weights, id, prefix));
                Some((id, encode_entries(&envoy)))
            }
            _ => None,
        };
        (cached, variant)
    }
}

/// Envoy routes as entries of `VirtualHost.routes` (field 3).
fn encode_entries(routes: &[impl prost::Message]) -> bytes::Bytes {
    let mut bytes = Vec::new();
    for envoy in routes {
        prost::encoding::message::encode(3, envoy, &mut bytes);
    }
    bytes::Bytes::from(bytes)
}

/// A digest of a route structure and weights, `tag` telling apart what it names.
fn hash_weights(tag: &[u8], structure: [u8; 32], weights: &[Bp]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(tag);
    h.update(structure);
    for w in weights {
        h.update(w.to_be_bytes());
    }
    h.finalize().into()
}

/// The id (content version) of a weighted route's runtime variant on base weights `base`,
/// and the prefix of its runtime keys.
fn runtime_id(structure: [u8; 32], base: &[Bp]) -> ([u8; 32], String) {
    let id = hash_weights(b"runtime", structure, base);
    let prefix = format!("cx.{}", short_hex(&id));
    (id, prefix)
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

/// Our model of one route: everything the translation reads from the table, nothing else
/// (Mapping names and files do not change what Envoy does). Its hash is the route's content
/// version; the route configuration's version hashes those in order.
#[derive(serde::Serialize)]
struct RouteModel<'a> {
    key: &'a RouteKey,
    backends: Vec<BackendModel<'a>>,
    shadow: Option<(&'a str, Bp)>,
}

#[derive(serde::Serialize)]
struct BackendModel<'a> {
    cluster: &'a str,
    weight_bp: Bp,
    route: &'a RouteSettings,
    backend: &'a BackendSettings,
}

impl<'a> RouteModel<'a> {
    /// Everything but the weights: what must stay the same for a runtime layer to move them.
    fn structure_of(r: &'a Route) -> Self {
        let mut m = Self::of(r);
        for b in &mut m.backends {
            b.weight_bp = 0;
        }
        m
    }

    fn of(r: &'a Route) -> Self {
        RouteModel {
            key: &r.key,
            backends: r
                .backends
                .iter()
                .map(|b| BackendModel {
                    cluster: &b.cluster,
                    weight_bp: b.weight_bp,
                    route: &b.mapping.route,
                    backend: &b.mapping.backend,
                })
                .collect(),
            shadow: r
                .shadow
                .as_ref()
                .map(|s| (s.cluster.as_str(), s.percent_bp)),
        }
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
            bases: HashMap::new(),
            built: HashMap::new(),
            new_clusters: false,
            generation: 0,
        }
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

    /// The cluster resources of a table's cluster map, encoding only the clusters not cached
    /// (on every core when there are many: a first load encodes them all).
    fn cluster_set(
        &mut self,
        table_clusters: &BTreeMap<String, Arc<ClusterSpec>>,
        options: &translate::Options,
    ) -> ResourceSet {
        let generation = self.generation;
        let mut clusters = BTreeMap::new();
        let mut missing = Vec::new();
        for (name, spec) in table_clusters {
            let cached = self.clusters.get_mut(name.as_str()).and_then(|variants| {
                variants
                    .iter_mut()
                    .find(|(s, _)| Arc::ptr_eq(s, spec) || s == spec)
            });
            match cached {
                Some((_, used)) => {
                    used.generation = generation;
                    clusters.insert(name.clone(), Arc::clone(&used.value));
                }
                None => missing.push((name, spec)),
            }
        }
        let encode = |&(name, spec): &(&String, &Arc<ClusterSpec>)| {
            let version = content_version(
                Kind::Cluster,
                &(name, ClusterModel::of(spec), &options.upstream_ca),
            );
            let bytes = translate::cluster(name, spec, options).encode_to_vec();
            Arc::new(Resource::new(
                Kind::Cluster,
                name.clone(),
                version,
                bytes,
                Vec::new(),
            ))
        };
        let encoded: Vec<Arc<Resource>> = if missing.len() < PARALLEL_MIN {
            missing.iter().map(encode).collect()
        } else {
            missing.par_iter().map(encode).collect()
        };
        for ((name, spec), r) in missing.into_iter().zip(encoded) {
            self.clusters.entry(name.clone()).or_default().push((
                Arc::clone(spec),
                Used {
                    value: Arc::clone(&r),
                    generation,
                },
            ));
            clusters.insert(name.clone(), r);
        }
        ResourceSet::new(clusters)
    }

    /// The route configurations (plain, and for runtime Envoys) and the runtime layer,
    /// assembled from each route's cached bytes. A configuration's version hashes the virtual
    /// hosts and each route's content version, in order.
    fn route_configurations(
        &mut self,
        fleet: &str,
        table: &Arc<RouteTable>,
        cluster_names: &Arc<[String]>,
    ) -> (Arc<Resource>, Arc<Resource>, Arc<Resource>) {
        let built = match self.built.remove(fleet) {
            Some(last) => match self.patch(fleet, last, table, cluster_names) {
                Ok(built) => built,
                Err(()) => self.assemble_all(fleet, table, cluster_names),
            },
            None => self.assemble_all(fleet, table, cluster_names),
        };
        let out = (
            Arc::clone(&built.plain),
            Arc::clone(&built.runtime),
            Arc::clone(&built.layer_resource),
        );
        self.built.insert(fleet.to_string(), built);
        out
    }

    /// A route's cache entry, translating and encoding it if it is not cached.
    fn cached_route(&mut self, r: &Arc<Route>) -> &mut CachedRoute {
        let generation = self.generation;
        let used = self
            .routes
            .entry(Arc::as_ptr(r) as usize)
            .or_insert_with(|| Used {
                value: CachedRoute::of(r, false).0,
                generation,
            });
        used.generation = generation;
        &mut used.value
    }

    /// Caches every route of `routes` not cached yet, translated on every core when there are
    /// many (a first load), with the runtime variants on their own weights.
    fn cache_routes(&mut self, routes: &[Arc<Route>]) {
        let missing: Vec<&Arc<Route>> = routes
            .iter()
            .filter(|r| !self.routes.contains_key(&(Arc::as_ptr(r) as usize)))
            .collect();
        if missing.len() < PARALLEL_MIN {
            return; // `cached_route` does them one by one
        }
        let made: Vec<_> = missing
            .par_iter()
            .map(|r| CachedRoute::of(r, true))
            .collect();
        let generation = self.generation;
        for (r, (value, variant)) in missing.into_iter().zip(made) {
            self.routes
                .insert(Arc::as_ptr(r) as usize, Used { value, generation });
            if let Some((id, value)) = variant {
                self.runtime_routes
                    .entry(id)
                    .or_insert(Used { value, generation });
            }
        }
    }

    /// The runtime variant of a weighted route on base weights `base`: its id (content
    /// version) and runtime key prefix, remembered with the route.
    fn runtime_key(
        &mut self,
        route: &Arc<Route>,
        structure: [u8; 32],
        base: &[Bp],
    ) -> ([u8; 32], String) {
        let cached = self.cached_route(route);
        let (_, id, prefix) = match &mut cached.runtime {
            Some(rt) if rt.0 == base => rt,
            slot => {
                let (id, prefix) = runtime_id(structure, base);
                slot.insert((base.to_vec(), id, prefix))
            }
        };
        (*id, prefix.clone())
    }

    /// Builds a fleet's route configurations and layer from every route of its table.
    fn assemble_all(
        &mut self,
        fleet: &str,
        table: &Arc<RouteTable>,
        cluster_names: &Arc<[String]>,
    ) -> Built {
        let n = table.routes.len();
        self.cache_routes(&table.routes);
        let mut digests = Vec::with_capacity(n);
        let mut structures: Vec<Option<[u8; 32]>> = Vec::with_capacity(n);
        let mut entries = Vec::with_capacity(n);
        for r in &table.routes {
            let cached = self.cached_route(r);
            digests.push(cached.digest);
            structures.push(cached.structure);
            entries.push(cached.entries.clone());
        }
        let plan = translate::virtual_host_plan(table);
        let plain = self.assemble(cluster_names, &plan, &digests, &entries, Vec::new());

        // The runtime variant: weighted routes keep base weights and read runtime keys.
        let mut h = Sha256::new();
        hash_plan(&mut h, &plan, n, |i| structures[i].unwrap_or(digests[i]));
        let structure: [u8; 32] = h.finalize().into();
        let weights = |i: usize| table.routes[i].backends.iter().map(|b| b.weight_bp);
        let mut fleet_bases = self.bases.remove(fleet).unwrap_or_default();
        let mut rebase = fleet_bases.structure != structure;
        if !rebase {
            let overridden = (0..n)
                .filter(|&i| {
                    structures[i].is_some_and(|s| {
                        fleet_bases
                            .bases
                            .get(&s)
                            .is_none_or(|base| !base.iter().copied().eq(weights(i)))
                    })
                })
                .count();
            rebase = overridden > MAX_LAYER_ROUTES;
        }
        if rebase {
            fleet_bases.structure = structure;
            fleet_bases.bases = (0..n)
                .filter_map(|i| structures[i].map(|s| (s, weights(i).collect())))
                .collect();
        }
        let mut rt_digests = digests.clone();
        let mut rt_entries = entries.clone();
        let mut prefixes: Vec<Option<String>> = vec![None; n];
        let mut overrides = vec![false; n];
        let mut layer = Layer::new();
        // Each weighted route's runtime variant: its key first, then the entries not cached,
        // translated together (on every core for a first load).
        let mut missing = Vec::new();
        for i in 0..n {
            let Some(s) = structures[i] else { continue };
            let base = fleet_bases
                .bases
                .entry(s)
                .or_insert_with(|| weights(i).collect());
            let (id, prefix) = self.runtime_key(&table.routes[i], s, base);
            if !self.runtime_routes.contains_key(&id) {
                missing.push((i, id, prefix.clone(), base.clone()));
            }
            rt_digests[i] = id;
            prefixes[i] = Some(prefix);
        }
        let encode = |(i, _, prefix, base): &(usize, [u8; 32], String, Vec<Bp>)| {
            let mut bytes = Vec::new();
            let envoy = translate::weighted_route_with_runtime(&table.routes[*i], prefix, base);
            prost::encoding::message::encode(3, &envoy, &mut bytes);
            bytes::Bytes::from(bytes)
        };
        let made: Vec<bytes::Bytes> = if missing.len() < PARALLEL_MIN {
            missing.iter().map(encode).collect()
        } else {
            missing.par_iter().map(encode).collect()
        };
        let generation = self.generation;
        for ((_, id, _, _), value) in missing.iter().zip(made) {
            self.runtime_routes.insert(*id, Used { value, generation });
        }
        for i in 0..n {
            let (Some(s), Some(prefix)) = (structures[i], &prefixes[i]) else {
                continue;
            };
            let route = &table.routes[i];
            let base = &fleet_bases.bases[&s];
            let bytes = self
                .runtime_routes
                .get_mut(&rt_digests[i])
                .expect("cached above");
            bytes.generation = generation;
            rt_entries[i] = bytes.value.clone();
            if !base.iter().copied().eq(weights(i)) {
                overrides[i] = true;
                for b in &route.backends {
                    layer.insert(format!("{prefix}.{}", b.cluster), b.weight_bp);
                }
            }
        }
        self.bases.insert(fleet.to_string(), fleet_bases);
        let all_prefixes = prefixes.iter().flatten().cloned().collect();
        let runtime = self.assemble(cluster_names, &plan, &rt_digests, &rt_entries, all_prefixes);
        let layer_resource = self.layer(&layer);
        Built {
            table: Arc::clone(table),
            generation: self.generation,
            plan,
            digests,
            structures,
            entries,
            rt_digests,
            prefixes,
            overrides,
            layer,
            plain,
            runtime,
            layer_resource,
        }
    }

    /// Builds a fleet's route configurations from its last build when its table differs in
    /// a few routes and only in their weights (a rollout step) and the layer can carry the new
    /// weights: the routes that did not change are not looked up again and the runtime
    /// variant stays as it is. `Err` when this is not such a change (the caller builds
    /// everything), so the result is always what `assemble_all` would give.
    fn patch(
        &mut self,
        fleet: &str,
        mut last: Built,
        table: &Arc<RouteTable>,
        cluster_names: &Arc<[String]>,
    ) -> Result<Built, ()> {
        let n = table.routes.len();
        if last.table.routes.len() != n || !Arc::ptr_eq(&last.table.clusters, &table.clusters) {
            return Err(());
        }
        let changed: Vec<usize> = (0..n)
            .filter(|&i| !Arc::ptr_eq(&table.routes[i], &last.table.routes[i]))
            .collect();
        if changed.len() > MAX_PATCHED_ROUTES {
            return Err(());
        }
        if !self.bases.contains_key(fleet) {
            return Err(());
        }
        let mut overridden = last.overrides.iter().filter(|o| **o).count();
        let mut now = Vec::with_capacity(changed.len());
        for &i in &changed {
            let route = &table.routes[i];
            if route.key != last.table.routes[i].key {
                return Err(());
            }
            let cached = self.cached_route(route);
            let (digest, structure, entries) =
                (cached.digest, cached.structure, cached.entries.clone());
            // A new structure (not only weights) needs new bases, and so does any change to
            // a route without weights (its digest is part of the fleet's structure): the full
            // build decides.
            if structure != last.structures[i] || (structure.is_none() && digest != last.digests[i])
            {
                return Err(());
            }
            let bases = self.bases.get(fleet).expect("checked above");
            let weights = || route.backends.iter().map(|b| b.weight_bp);
            let overrides = match structure {
                Some(s) => match bases.bases.get(&s) {
                    Some(base) => !base.iter().copied().eq(weights()),
                    None => return Err(()),
                },
                None => false,
            };
            overridden = overridden + usize::from(overrides) - usize::from(last.overrides[i]);
            now.push((i, digest, entries, overrides));
        }
        if overridden > MAX_LAYER_ROUTES {
            return Err(());
        }
        for (i, digest, entries, overrides) in now {
            let route = &table.routes[i];
            last.digests[i] = digest;
            last.entries[i] = entries;
            // The runtime variant reads the weights from the layer: only the layer moves.
            if let Some(prefix) = &last.prefixes[i] {
                for b in &route.backends {
                    let key = format!("{prefix}.{}", b.cluster);
                    if overrides {
                        last.layer.insert(key, b.weight_bp);
                    } else {
                        last.layer.remove(&key);
                    }
                }
            }
            last.overrides[i] = overrides;
        }
        last.plain = self.assemble(
            cluster_names,
            &last.plan,
            &last.digests,
            &last.entries,
            Vec::new(),
        );
        if let Some(c) = self.configs.get_mut(&last.runtime.version) {
            c.generation = self.generation;
        }
        last.layer_resource = self.layer(&last.layer);
        last.table = Arc::clone(table);
        last.generation = self.generation;
        Ok(last)
    }

    /// The runtime layer resource holding `layer`.
    fn layer(&mut self, layer: &Layer) -> Arc<Resource> {
        let generation = self.generation;
        let version = content_version(Kind::Runtime, layer);
        match self.layers.get_mut(&version) {
            Some(c) => {
                c.generation = generation;
                Arc::clone(&c.value)
            }
            None => {
                let r = Arc::new(Resource::runtime_layer(RUNTIME_LAYER, layer.clone()));
                self.layers.insert(
                    version,
                    Used {
                        value: Arc::clone(&r),
                        generation,
                    },
                );
                r
            }
        }
    }

    /// One route configuration from per-route digests and encoded entries.
    fn assemble(
        &mut self,
        cluster_names: &Arc<[String]>,
        plan: &[(String, Vec<usize>)],
        digests: &[[u8; 32]],
        entries: &[bytes::Bytes],
        prefixes: Vec<String>,
    ) -> Arc<Resource> {
        let generation = self.generation;
        let mut h = Sha256::new();
        hash_plan(&mut h, plan, digests.len(), |i| digests[i]);
        // The runtime variant differs from the plain one even when no route is weighted.
        h.update(if prefixes.is_empty() { [0] } else { [1] });
        let version = short_hex(&h.finalize());
        if let Some(c) = self.configs.get_mut(&version) {
            c.generation = generation;
            return Arc::clone(&c.value);
        }
        let bytes = assemble_route_configuration(plan, entries);
        let resource = Arc::new(
            Resource::new(
                Kind::Route,
                translate::ROUTE_CONFIG_NAME.to_string(),
                version.clone(),
                bytes,
                Arc::clone(cluster_names),
            )
            .with_prefixes(prefixes),
        );
        self.configs.insert(
            version,
            Used {
                value: Arc::clone(&resource),
                generation,
            },
        );
        resource
    }

    /// The base weights of every fleet, for `--state-dir`.
    pub fn bases(&self) -> &HashMap<String, FleetBases> {
        &self.bases
    }

    /// Restores base weights kept by `--state-dir`, so a restart serves the very route
    /// configurations it served before.
    pub fn restore_bases(&mut self, bases: HashMap<String, FleetBases>) {
        self.bases = bases;
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

/// Hashes the virtual hosts with the indices of the routes each holds, in order, then the
/// digest of each of the `n` routes once: a route without a host is in every virtual host, so
/// hashing digests per entry would hash most of them once per host.
fn hash_plan(
    h: &mut Sha256,
    plan: &[(String, Vec<usize>)],
    n: usize,
    digest: impl Fn(usize) -> [u8; 32],
) {
    // Written out first and hashed in one call: tens of thousands of small updates cost more
    // than the bytes.
    let entries: usize = plan.iter().map(|(_, routes)| routes.len()).sum();
    let mut bytes = Vec::with_capacity(8 + plan.len() * 64 + entries * 4 + 8 + n * 32);
    bytes.extend_from_slice(&(plan.len() as u64).to_be_bytes());
    for (domain, routes) in plan {
        bytes.extend_from_slice(&(domain.len() as u64).to_be_bytes());
        bytes.extend_from_slice(domain.as_bytes());
        bytes.extend_from_slice(&(routes.len() as u64).to_be_bytes());
        for &i in routes {
            bytes.extend_from_slice(&(i as u32).to_be_bytes());
        }
    }
    bytes.extend_from_slice(&(n as u64).to_be_bytes());
    for i in 0..n {
        bytes.extend_from_slice(&digest(i));
    }
    h.update(&bytes);
}

/// Encodes a `RouteConfiguration` from pre-encoded `VirtualHost.routes` entries: the same
/// bytes prost would write for `translate::route_configuration` (fields in tag order).
fn assemble_route_configuration(
    plan: &[(String, Vec<usize>)],
    entries: &[bytes::Bytes],
) -> Vec<u8> {
    use prost::encoding::{WireType, encode_key, encode_varint, string};
    let name = translate::ROUTE_CONFIG_NAME.to_string();
    let total: usize = plan
        .iter()
        .map(|(d, routes)| {
            routes.iter().map(|&i| entries[i].len()).sum::<usize>() + 2 * d.len() + 16
        })
        .sum();
    let mut out = Vec::with_capacity(total + name.len() + 8);
    string::encode(1, &name, &mut out);
    for (domain, routes) in plan {
        let body = string::encoded_len(1, domain)
            + string::encoded_len(2, domain)
            + routes.iter().map(|&i| entries[i].len()).sum::<usize>();
        encode_key(2, WireType::LengthDelimited, &mut out);
        encode_varint(body as u64, &mut out);
        string::encode(1, domain, &mut out);
        string::encode(2, domain, &mut out);
        for &i in routes {
            out.extend_from_slice(&entries[i]);
        }
    }
    out
}

/// Our model of a cluster for its version: the upstream without the text as written.
#[derive(serde::Serialize)]
struct ClusterModel<'a> {
    scheme: crate::model::mapping::Scheme,
    host: &'a str,
    port: u16,
    settings: &'a crate::model::mapping::ClusterSettings,
}

impl<'a> ClusterModel<'a> {
    fn of(spec: &'a ClusterSpec) -> Self {
        ClusterModel {
            scheme: spec.service.scheme,
            host: &spec.service.host,
            port: spec.service.port,
            settings: &spec.settings,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::parse::parse_file;
    use crate::routes::compile;
    use envoy_types::pb::google::protobuf::Any;

    fn table(yaml: &[(&str, &str)]) -> Arc<RouteTable> {
        let files: Vec<_> = yaml
            .iter()
            .map(|(f, y)| parse_file(f, y.as_bytes()))
            .collect();
        Arc::clone(&compile(&files, None).tables.fleets["default"])
    }

    #[test]
    fn a_runtime_variant_made_with_the_plain_one_is_the_runtime_translation() {
        let t = table(&[
            (
                "a.yaml",
                "apiVersion: ambassador/v1\nkind: Mapping\nname: a\nprefix: /a/\nservice: a\n",
            ),
            (
                "b.yaml",
                "apiVersion: ambassador/v1\nkind: Mapping\nname: b\nprefix: /a/\nservice: b\nweight: 30\n",
            ),
        ]);
        let r = &t.routes[0];
        assert!(translate::is_weighted(r));
        let (cached, variant) = CachedRoute::of(r, true);
        let (id, entries) = variant.expect("a weighted route has a runtime variant");
        let weights: Vec<Bp> = r.backends.iter().map(|b| b.weight_bp).collect();
        let (want, prefix) = runtime_id(cached.structure.expect("weighted"), &weights);
        assert_eq!(id, want);
        let runtime = translate::weighted_route_with_runtime(r, &prefix, &weights);
        assert_eq!(entries, encode_entries(&[runtime]));
        assert_ne!(entries, cached.entries);
        assert_ne!(
            id, cached.digest,
            "the two variants have different versions"
        );
        // Without asking, and for a route with one backend, there is none.
        assert!(CachedRoute::of(r, false).1.is_none());
        let single = table(&[RICH[2]]);
        assert!(CachedRoute::of(&single.routes[0], true).1.is_none());
    }

    const RICH: &[(&str, &str)] = &[
        (
            "a.yaml",
            "apiVersion: ambassador/v1\nkind: Mapping\nname: qotm\nprefix: /qotm/\nservice: qotm\n",
        ),
        (
            "b.yaml",
            "apiVersion: ambassador/v1\nkind: Mapping\nname: qotmv2\nprefix: /qotm/\nservice: qotmv2\nweight: 10\ntimeout_ms: 500\n",
        ),
        (
            "c.yaml",
            "apiVersion: ambassador/v1\nkind: Mapping\nname: h\nprefix: /h/\nservice: h\nhost: foo.com\n",
        ),
        (
            "d.yaml",
            "apiVersion: ambassador/v1\nkind: Mapping\nname: w\nprefix: /w/\nservice: w\nhost: \"*.foo.com\"\n",
        ),
        (
            "e.yaml",
            "apiVersion: ambassador/v1\nkind: Mapping\nname: s\nprefix: /qotm/\nservice: mirror\nshadow: true\nweight: 5\n",
        ),
        (
            "f.yaml",
            "apiVersion: ambassador/v1\nkind: Mapping\nname: hdr\nprefix: /qotm/\nservice: qotmv2\nheaders: {x-canary: \"true\"}\n",
        ),
    ];

    fn decoded(r: &Resource) -> Vec<u8> {
        Any::decode(r.any.as_ref()).unwrap().value
    }

    #[test]
    fn the_assembled_route_configuration_is_what_prost_would_encode() {
        let t = table(RICH);
        let snap = SnapshotBuilder::new(
            Listen {
                default: "0.0.0.0:8080".parse().unwrap(),
                fleets: BTreeMap::new(),
            },
            None,
        )
        .build("default", Arc::clone(&t));
        let r = &snap.routes.items[translate::ROUTE_CONFIG_NAME];
        assert_eq!(
            decoded(r),
            translate::route_configuration(&t).encode_to_vec()
        );
        assert_eq!(r.refs.len(), t.clusters.len());
    }

    #[test]
    fn built_route_configurations_name_only_the_snapshots_clusters() {
        let listen = Listen {
            default: "0.0.0.0:8080".parse().unwrap(),
            fleets: BTreeMap::new(),
        };
        let snap = SnapshotBuilder::new(listen, None).build("default", table(RICH));
        assert!(snap.routes_within_clusters);
        for set in [&snap.routes, &snap.routes_runtime] {
            for r in set.items.values() {
                assert!(!r.refs.is_empty());
                assert!(r.refs.iter().all(|c| snap.clusters.items.contains_key(c)));
            }
        }
    }

    #[test]
    fn rebuilding_reuses_and_versions_follow_content() {
        let listen = Listen {
            default: "0.0.0.0:8080".parse().unwrap(),
            fleets: BTreeMap::new(),
        };
        let mut b = SnapshotBuilder::new(listen.clone(), None);
        let first = b.build("default", table(RICH));
        b.retain();
        let again = b.build("default", table(RICH));
        b.retain();
        // Parsed again, so new Mappings: same content, same versions.
        assert_eq!(first.version, again.version);
        // A fresh builder agrees (versions come from content, not from the cache).
        let fresh = SnapshotBuilder::new(listen, None).build("default", table(RICH));
        assert_eq!(fresh.version, first.version);
        // A weight change changes the route configuration only.
        let mut changed = RICH.to_vec();
        changed[1].1 = "apiVersion: ambassador/v1\nkind: Mapping\nname: qotmv2\nprefix: /qotm/\nservice: qotmv2\nweight: 20\ntimeout_ms: 500\n";
        let moved = b.build("default", table(&changed));
        assert_eq!(moved.clusters.version, first.clusters.version);
        assert_ne!(moved.routes.version, first.routes.version);
        let r = &moved.routes.items[translate::ROUTE_CONFIG_NAME];
        assert_eq!(
            decoded(r),
            translate::route_configuration(&table(&changed)).encode_to_vec()
        );
    }

    /// What Envoy gets from a snapshot's route configurations and layer.
    fn served(s: &Snapshot) -> Vec<(String, Vec<u8>)> {
        let name = translate::ROUTE_CONFIG_NAME;
        let layer = &s.runtime.items[RUNTIME_LAYER];
        vec![
            (s.routes.version.clone(), decoded(&s.routes.items[name])),
            (
                s.routes_runtime.version.clone(),
                decoded(&s.routes_runtime.items[name]),
            ),
            (layer.version.clone(), Vec::new()),
        ]
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

        /// Building from the last build (weights moved) serves what building everything serves.
        #[test]
        fn a_patched_build_serves_what_a_full_build_serves(
            start in proptest::collection::vec(proptest::option::of(0u32..=100), 12),
            steps in proptest::collection::vec((0usize..12, proptest::option::of(0u32..=100), 0u8..10), 1..12),
        ) {
            use crate::input::parse::ParsedFile;
            use crate::routes::recompile_routes;
            // Four routes of three Mappings, one file each; weights last, so that moving one
            // moves nothing else.
            let file = |i: usize, w: Option<u32>, service: u8| {
                let w = w.map(|w| format!("weight: {w}\n")).unwrap_or_default();
                let yaml = format!(
                    "apiVersion: ambassador/v1\nkind: Mapping\nname: m{i}\nprefix: /r{}/\nservice: s{i}x{service}\n{w}",
                    i % 4
                );
                Arc::new(parse_file(&format!("f{i:02}.yaml"), yaml.as_bytes()))
            };
            let mut weights = start.clone();
            let mut files: Vec<Arc<ParsedFile>> = (0..12).map(|i| file(i, weights[i], 0)).collect();
            let mut compiled = compile(&files, None);
            let listen = Listen { default: "0.0.0.0:8080".parse().unwrap(), fleets: BTreeMap::new() };
            let mut patching = SnapshotBuilder::new(listen.clone(), None);
            let mut full = SnapshotBuilder::new(listen, None);
            for (i, w, other) in steps {
                let t = Arc::clone(&compiled.tables.fleets["default"]);
                let a = patching.build("default", Arc::clone(&t));
                full.built.clear();
                let b = full.build("default", t);
                patching.retain();
                full.retain();
                proptest::prop_assert_eq!(served(&a), served(&b));
                proptest::prop_assert_eq!(&a.version, &b.version);
                // Mostly a weight; now and then an upstream (not a patch).
                weights[i] = w;
                let mut next = files.clone();
                next[i] = file(i, w, u8::from(other == 0));
                compiled = recompile_routes(&files, &compiled, &next)
                    .unwrap_or_else(|| compile(&next, Some(&compiled.tables)));
                files = next;
            }
        }
    }
}
