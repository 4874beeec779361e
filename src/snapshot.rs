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
use sha2::{Digest, Sha256};

use crate::mapping::{BackendSettings, Bp, RouteKey, RouteSettings};
use crate::table::{ClusterSpec, Route, RouteTable};
use crate::translate;
use crate::xds::resource::{
    Kind, Layer, Resource, ResourceSet, content_digest, content_version, short_hex,
};

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
    /// The route table the resources were made from.
    pub table: Arc<RouteTable>,
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
        table: Arc<RouteTable>,
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
            table,
        }
    }

    /// A snapshot without a runtime variant (the runtime route configuration is the plain one,
    /// the layer empty): for tests and for Envoys that all lack the layer.
    pub fn plain(
        fleet: String,
        clusters: ResourceSet,
        listeners: ResourceSet,
        routes: ResourceSet,
        table: Arc<RouteTable>,
    ) -> Self {
        let empty = ResourceSet::new(BTreeMap::from([(
            RUNTIME_LAYER.to_string(),
            Arc::new(Resource::runtime_layer(RUNTIME_LAYER, Layer::new())),
        )]));
        Snapshot::new(
            fleet,
            clusters,
            listeners,
            routes.clone(),
            routes,
            empty,
            table,
        )
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
    generation: u64,
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
        Snapshot::new(
            fleet.to_string(),
            resources,
            one(listener),
            one(route),
            one(route_runtime),
            one(layer),
            table,
        )
    }

    /// The cluster resources of a table's cluster map, encoding only the clusters not cached.
    fn cluster_set(
        &mut self,
        table_clusters: &BTreeMap<String, Arc<ClusterSpec>>,
        options: &translate::Options,
    ) -> ResourceSet {
        let generation = self.generation;
        let mut clusters = BTreeMap::new();
        for (name, spec) in table_clusters {
            let variants = match self.clusters.get_mut(name.as_str()) {
                Some(v) => v,
                None => self.clusters.entry(name.clone()).or_default(),
            };
            let resource = match variants
                .iter_mut()
                .find(|(s, _)| Arc::ptr_eq(s, spec) || s == spec)
            {
                Some((_, used)) => {
                    used.generation = generation;
                    Arc::clone(&used.value)
                }
                None => {
                    let version = content_version(
                        Kind::Cluster,
                        &(name, ClusterModel::of(spec), &options.upstream_ca),
                    );
                    let bytes = translate::cluster(name, spec, options).encode_to_vec();
                    let r = Arc::new(Resource::new(
                        Kind::Cluster,
                        name.clone(),
                        version,
                        bytes,
                        Vec::new(),
                    ));
                    variants.push((
                        Arc::clone(spec),
                        Used {
                            value: Arc::clone(&r),
                            generation,
                        },
                    ));
                    r
                }
            };
            clusters.insert(name.clone(), resource);
        }

        ResourceSet::new(clusters)
    }

    /// The route configurations (plain, and for runtime Envoys) and the runtime layer,
    /// assembled from each route's cached bytes. A configuration's version hashes the virtual
    /// hosts and each route's content version, in order.
    fn route_configurations(
        &mut self,
        fleet: &str,
        table: &RouteTable,
        cluster_names: &Arc<[String]>,
    ) -> (Arc<Resource>, Arc<Resource>, Arc<Resource>) {
        let generation = self.generation;
        let n = table.routes.len();
        let mut digests = Vec::with_capacity(n);
        let mut structures: Vec<Option<[u8; 32]>> = Vec::with_capacity(n);
        let mut entries = Vec::with_capacity(n);
        for r in &table.routes {
            let cached = self
                .routes
                .entry(Arc::as_ptr(r) as usize)
                .or_insert_with(|| {
                    let mut bytes = Vec::new();
                    for envoy in translate::envoy_routes(r) {
                        prost::encoding::message::encode(3, &envoy, &mut bytes);
                    }
                    Used {
                        value: CachedRoute {
                            _route: Arc::clone(r),
                            digest: content_digest(Kind::Route, &RouteModel::of(r)),
                            structure: translate::is_weighted(r)
                                .then(|| content_digest(Kind::Route, &RouteModel::structure_of(r))),
                            entries: bytes::Bytes::from(bytes),
                            runtime: None,
                        },
                        generation,
                    }
                });
            cached.generation = generation;
            digests.push(cached.value.digest);
            structures.push(cached.value.structure);
            entries.push(cached.value.entries.clone());
        }
        let plan = translate::virtual_host_plan(table);
        let plain = self.assemble(cluster_names, &plan, &digests, &entries, Vec::new());

        // The runtime variant: weighted routes keep base weights and read runtime keys.
        let mut h = Sha256::new();
        hash_plan(&mut h, &plan, |i| structures[i].unwrap_or(digests[i]));
        let structure: [u8; 32] = h.finalize().into();
        let weights = |i: usize| table.routes[i].backends.iter().map(|b| b.weight_bp);
        let fleet_bases = self.bases.entry(fleet.to_string()).or_default();
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
        let mut prefixes = Vec::new();
        let mut layer = Layer::new();
        for i in 0..n {
            let Some(s) = structures[i] else { continue };
            let route = &table.routes[i];
            let base = fleet_bases
                .bases
                .entry(s)
                .or_insert_with(|| weights(i).collect());
            let cached = &mut self
                .routes
                .get_mut(&(Arc::as_ptr(route) as usize))
                .expect("cached above")
                .value;
            let (_, id, prefix) = match &mut cached.runtime {
                Some(rt) if &rt.0 == base => rt,
                slot => {
                    let mut h = Sha256::new();
                    h.update(s);
                    for w in base.iter() {
                        h.update(w.to_be_bytes());
                    }
                    let id: [u8; 32] = h.finalize().into();
                    let prefix = format!("cx.{}", short_hex(&id));
                    slot.insert((base.clone(), id, prefix))
                }
            };
            let bytes = self.runtime_routes.entry(*id).or_insert_with(|| {
                let mut bytes = Vec::new();
                let envoy = translate::weighted_route_with_runtime(route, prefix, base);
                prost::encoding::message::encode(3, &envoy, &mut bytes);
                Used {
                    value: bytes::Bytes::from(bytes),
                    generation,
                }
            });
            bytes.generation = generation;
            rt_entries[i] = bytes.value.clone();
            rt_digests[i] = *id;
            if !base.iter().copied().eq(weights(i)) {
                for b in &route.backends {
                    layer.insert(format!("{prefix}.{}", b.cluster), b.weight_bp);
                }
            }
            prefixes.push(prefix.clone());
        }
        let runtime = self.assemble(cluster_names, &plan, &rt_digests, &rt_entries, prefixes);
        let layer_version = content_version(Kind::Runtime, &layer);
        let layer = match self.layers.get_mut(&layer_version) {
            Some(c) => {
                c.generation = generation;
                Arc::clone(&c.value)
            }
            None => {
                let r = Arc::new(Resource::runtime_layer(RUNTIME_LAYER, layer));
                self.layers.insert(
                    layer_version,
                    Used {
                        value: Arc::clone(&r),
                        generation,
                    },
                );
                r
            }
        };
        (plain, runtime, layer)
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
        hash_plan(&mut h, plan, |i| digests[i]);
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
        self.cluster_sets.retain(|_, e| e.generation == g);
        // A cluster in a reused set was not looked up, but is still served.
        self.clusters.retain(|_, variants| {
            variants.retain(|(_, e)| e.generation == g || Arc::strong_count(&e.value) > 1);
            !variants.is_empty()
        });
        self.listeners.retain(|_, e| e.generation == g);
        self.routes.retain(|_, e| e.generation == g);
        self.runtime_routes.retain(|_, e| e.generation == g);
        self.configs.retain(|_, e| e.generation == g);
        self.layers.retain(|_, e| e.generation == g);
        self.generation += 1;
    }
}

/// Hashes the virtual hosts and the digest of each route they hold, in order.
fn hash_plan(h: &mut Sha256, plan: &[(String, Vec<usize>)], digest: impl Fn(usize) -> [u8; 32]) {
    for (domain, routes) in plan {
        h.update(domain.as_bytes());
        h.update([0]);
        for &i in routes {
            h.update(digest(i));
        }
        h.update([1]);
    }
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
    scheme: crate::mapping::Scheme,
    host: &'a str,
    port: u16,
    settings: &'a crate::mapping::ClusterSettings,
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
    use crate::parse::parse_file;
    use crate::table::compile;
    use envoy_types::pb::google::protobuf::Any;

    fn table(yaml: &[(&str, &str)]) -> Arc<RouteTable> {
        let files: Vec<_> = yaml
            .iter()
            .map(|(f, y)| parse_file(f, y.as_bytes()))
            .collect();
        Arc::clone(&compile(&files, None).tables.fleets["default"])
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
}
