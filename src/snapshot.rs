//! Versioned snapshots: a fleet's route table turned into encoded Envoy resources.
//!
//! A snapshot is immutable and shared (`Arc`) by every stream of its fleet. Versions come from
//! content, so the same files give the same versions across restarts and replicas, and nothing
//! is pushed when nothing changed.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use prost::Message;
use sha2::{Digest, Sha256};

use crate::mapping::{BackendSettings, Bp, RouteKey, RouteSettings};
use crate::table::RouteTable;
use crate::translate;
use crate::xds::resource::{Kind, Resource, ResourceSet, content_version, short_hex};

/// Everything one fleet's Envoys should have.
#[derive(Clone, Debug)]
pub struct Snapshot {
    pub fleet: String,
    /// A version for the whole snapshot, for logs and status: a hash of the set versions.
    pub version: String,
    pub clusters: ResourceSet,
    pub listeners: ResourceSet,
    pub routes: ResourceSet,
    /// The route table the resources were made from.
    pub table: Arc<RouteTable>,
}

impl Snapshot {
    pub fn new(
        fleet: String,
        clusters: ResourceSet,
        listeners: ResourceSet,
        routes: ResourceSet,
        table: Arc<RouteTable>,
    ) -> Self {
        let mut h = Sha256::new();
        for set in [&clusters, &listeners, &routes] {
            h.update(set.version.as_bytes());
        }
        Snapshot {
            fleet,
            version: short_hex(&h.finalize()),
            clusters,
            listeners,
            routes,
            table,
        }
    }

    pub fn set(&self, kind: Kind) -> &ResourceSet {
        match kind {
            Kind::Cluster => &self.clusters,
            Kind::Listener => &self.listeners,
            Kind::Route => &self.routes,
        }
    }
}

/// Turns route tables into snapshots, translating and encoding only what changed since the
/// last build (a resource is cached by its content version).
pub struct SnapshotBuilder {
    options_template: Option<std::path::PathBuf>,
    listen: Listen,
    cache: std::collections::HashMap<(Kind, String, String), Arc<Resource>>,
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

/// Our model of a route configuration: everything the translation reads from the table,
/// nothing else (Mapping names and files do not change what Envoy does). Its hash is the
/// route configuration's version.
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

fn route_model(table: &RouteTable) -> Vec<RouteModel<'_>> {
    table
        .routes
        .iter()
        .map(|r| RouteModel {
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
        })
        .collect()
}

impl SnapshotBuilder {
    pub fn new(listen: Listen, upstream_ca: Option<std::path::PathBuf>) -> Self {
        SnapshotBuilder {
            options_template: upstream_ca,
            listen,
            cache: std::collections::HashMap::new(),
        }
    }

    fn options(&self, fleet: &str) -> translate::Options {
        translate::Options {
            listen: self.listen.for_fleet(fleet),
            upstream_ca: self.options_template.clone(),
        }
    }

    fn cached(
        &mut self,
        kind: Kind,
        name: &str,
        version: String,
        make: impl FnOnce() -> (Vec<u8>, Vec<String>),
    ) -> Arc<Resource> {
        let key = (kind, name.to_string(), version);
        if let Some(r) = self.cache.get(&key) {
            return Arc::clone(r);
        }
        let (bytes, refs) = make();
        let r = Arc::new(Resource::new(
            kind,
            name.to_string(),
            key.2.clone(),
            bytes,
            refs,
        ));
        self.cache.insert(key, Arc::clone(&r));
        r
    }

    /// The snapshot of `fleet` for `table`.
    pub fn build(&mut self, fleet: &str, table: Arc<RouteTable>) -> Snapshot {
        let options = self.options(fleet);
        let mut clusters = BTreeMap::new();
        for (name, spec) in &table.clusters {
            let version = content_version(Kind::Cluster, &(name, spec, &options.upstream_ca));
            let r = self.cached(Kind::Cluster, name, version, || {
                (
                    translate::cluster(name, spec, &options).encode_to_vec(),
                    Vec::new(),
                )
            });
            clusters.insert(name.clone(), r);
        }
        let addr = options.listen;
        let listener_name = translate::listener_name(addr);
        let version = content_version(Kind::Listener, &addr);
        let listener = self.cached(Kind::Listener, &listener_name, version, || {
            (translate::listener(addr).encode_to_vec(), Vec::new())
        });
        let version = content_version(Kind::Route, &route_model(&table));
        let route = self.cached(Kind::Route, translate::ROUTE_CONFIG_NAME, version, || {
            (
                translate::route_configuration(&table).encode_to_vec(),
                table.clusters.keys().cloned().collect(),
            )
        });
        Snapshot::new(
            fleet.to_string(),
            ResourceSet::new(clusters),
            ResourceSet::new(BTreeMap::from([(listener_name, listener)])),
            ResourceSet::new(BTreeMap::from([(
                translate::ROUTE_CONFIG_NAME.to_string(),
                route,
            )])),
            table,
        )
    }

    /// Forgets cached resources no snapshot in `live` uses, so the cache stays the size of what
    /// is served.
    pub fn retain(&mut self, live: &[&Snapshot]) {
        let keep: std::collections::HashSet<(Kind, &str, &str)> = live
            .iter()
            .flat_map(|s| {
                Kind::ALL.into_iter().flat_map(move |k| {
                    s.set(k)
                        .items
                        .values()
                        .map(move |r| (k, r.name.as_str(), r.version.as_str()))
                })
            })
            .collect();
        self.cache
            .retain(|(k, n, v), _| keep.contains(&(*k, n.as_str(), v.as_str())));
    }
}
