//! The route configuration of a snapshot, assembled from each route's cached encoding: a route
//! that did not change is not translated or encoded again, and a weight change patches the
//! last assembly instead of redoing it.

use std::sync::Arc;

use rayon::prelude::*;
use sha2::{Digest, Sha256};

use super::clusters::Used;
use super::runtime::{default_weights, hash_weights, runtime_id};
use super::{Built, PARALLEL_MIN, SnapshotBuilder};
use crate::envoy::translate;
use crate::model::mapping::{BackendSettings, Bp, RouteKey, RouteSettings};
use crate::routes::{Route, RouteTable};
use crate::xds::resource::{Kind, Layer, Resource, content_digest, short_hex};

/// At most this many changed routes are patched into the last build (`SnapshotBuilder::patch`);
/// more are built from scratch.
const MAX_PATCHED_ROUTES: usize = 64;

/// One table route, translated and encoded.
pub(super) struct CachedRoute {
    /// Keeps the route alive, so that its address (the key) is not reused.
    pub(super) _route: Arc<Route>,
    /// The content version of this route (our model, SHA-256).
    pub(super) digest: [u8; 32],
    /// For a weighted route, the version of everything but its weights.
    pub(super) structure: Option<[u8; 32]>,
    /// Its Envoy routes as entries of `VirtualHost.routes` (field 3).
    pub(super) entries: bytes::Bytes,
    /// For a weighted route, its runtime variant as last built: its configured weights, id and
    /// the prefix of its runtime keys.
    pub(super) runtime: Option<(Vec<Bp>, [u8; 32], String)>,
}

/// A weighted route's runtime variant: its id and its entries.
type RuntimeVariant = ([u8; 32], bytes::Bytes);

impl CachedRoute {
    /// Translates and encodes a route. With `with_runtime`, a weighted route's runtime variant
    /// on its default weights too (what a first load nearly always serves), from the same
    /// translation.
    pub(super) fn of(r: &Arc<Route>, with_runtime: bool) -> (Self, Option<RuntimeVariant>) {
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
                let configured = default_weights(r);
                let (id, prefix) = runtime_id(s, &configured);
                translate::read_weights_from_runtime(route, &prefix, &configured);
                cached.runtime = Some((configured, id, prefix));
                Some((id, encode_entries(&envoy)))
            }
            _ => None,
        };
        (cached, variant)
    }
}

/// Envoy routes as entries of `VirtualHost.routes` (field 3).
pub(super) fn encode_entries(routes: &[impl prost::Message]) -> bytes::Bytes {
    let mut bytes = Vec::new();
    for envoy in routes {
        prost::encoding::message::encode(3, envoy, &mut bytes);
    }
    bytes::Bytes::from(bytes)
}

/// Our model of one route: everything the translation reads from the table, nothing else
/// (Mapping names and files do not change what Envoy does). Its hash is the route's content
/// version; the route configuration's version hashes those in order.
#[derive(serde::Serialize)]
pub(super) struct RouteModel<'a> {
    pub(super) key: &'a RouteKey,
    pub(super) backends: Vec<BackendModel<'a>>,
    pub(super) shadow: Option<(&'a str, Bp)>,
}

#[derive(serde::Serialize)]
pub(super) struct BackendModel<'a> {
    pub(super) cluster: &'a str,
    pub(super) weight_bp: Bp,
    pub(super) route: &'a RouteSettings,
    pub(super) backend: &'a BackendSettings,
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

impl SnapshotBuilder {
    /// The route configurations (plain, and for runtime Envoys) and the runtime layer,
    /// assembled from each route's cached bytes. A configuration's version hashes the virtual
    /// hosts and each route's content version, in order.
    pub(super) fn route_configurations(
        &mut self,
        fleet: &str,
        table: &Arc<RouteTable>,
        cluster_names: &Arc<[String]>,
    ) -> (Arc<Resource>, Arc<Resource>, Arc<Resource>) {
        let built = match self.built.remove(fleet) {
            Some(last) => match self.patch(last, table, cluster_names) {
                Ok(built) => built,
                Err(()) => self.assemble_all(table, cluster_names),
            },
            None => self.assemble_all(table, cluster_names),
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
    pub(super) fn cached_route(&mut self, r: &Arc<Route>) -> &mut CachedRoute {
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

    /// Builds a fleet's route configurations and layer from every route of its table.
    fn assemble_all(&mut self, table: &Arc<RouteTable>, cluster_names: &Arc<[String]>) -> Built {
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

        // The runtime variant: each weighted route's table weights are its default (100% to
        // its primary) and the layer carries the routes whose weights differ from it, in table
        // order, as many as the layer may hold; beyond that, a route's own weights are in the
        // table. A pure function of the files.
        let weights = |i: usize| -> Vec<Bp> {
            table.routes[i]
                .backends
                .iter()
                .map(|b| b.weight_bp)
                .collect()
        };
        let mut layered = 0;
        let mut baked = false;
        let configured: Vec<Option<(Vec<Bp>, bool)>> = (0..n)
            .map(|i| {
                structures[i]?;
                let default = default_weights(&table.routes[i]);
                let own = weights(i);
                if own == default {
                    Some((default, false))
                } else if layered < self.max_layer_routes {
                    layered += 1;
                    Some((default, true))
                } else {
                    baked = true;
                    Some((own, false))
                }
            })
            .collect();
        let mut rt_digests = digests.clone();
        let mut rt_entries = entries.clone();
        let mut prefixes: Vec<Option<String>> = vec![None; n];
        let mut overrides = vec![false; n];
        let mut layer = Layer::new();
        // Each weighted route's runtime variant: its key first, then the entries not cached,
        // translated together (on every core for a first load).
        let mut missing = Vec::new();
        for i in 0..n {
            let (Some(s), Some((configured, _))) = (structures[i], &configured[i]) else {
                continue;
            };
            let (id, prefix) = self.runtime_key(&table.routes[i], s, configured);
            if !self.runtime_routes.contains_key(&id) {
                missing.push((i, id, prefix.clone(), configured.clone()));
            }
            rt_digests[i] = id;
            prefixes[i] = Some(prefix);
        }
        let encode = |(i, _, prefix, configured): &(usize, [u8; 32], String, Vec<Bp>)| {
            encode_runtime_route(&table.routes[*i], prefix, configured)
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
            let (Some(prefix), Some((_, in_layer))) = (&prefixes[i], &configured[i]) else {
                continue;
            };
            let bytes = self
                .runtime_routes
                .get_mut(&rt_digests[i])
                .expect("cached above");
            bytes.generation = generation;
            rt_entries[i] = bytes.value.clone();
            if *in_layer {
                overrides[i] = true;
                for b in &table.routes[i].backends {
                    layer.insert(format!("{prefix}.{}", b.cluster), b.weight_bp);
                }
            }
        }
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
            rt_entries,
            prefixes,
            overrides,
            baked,
            layer,
            plain,
            runtime,
            layer_resource,
        }
    }

    /// Builds a fleet's route configurations from its last build when its table differs in
    /// a few routes and only in their weights (a rollout step), and no route joins or leaves
    /// the layer's routes beyond its cap: the routes that did not change are not looked up
    /// again, and the runtime variant stays as it is unless a route beyond the cap (its
    /// weights in the table) moved. `Err` when this is not such a change (the caller builds
    /// everything), so the result is always what `assemble_all` would give.
    fn patch(
        &mut self,
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
            // A new structure (not only weights) is a new runtime variant, and so is any change
            // to a route without weights (its digest is part of the fleet's structure): the full
            // build decides.
            if structure != last.structures[i] || (structure.is_none() && digest != last.digests[i])
            {
                return Err(());
            }
            let (overrides, in_table) = match structure {
                Some(s) => {
                    let was = &last.table.routes[i];
                    // A new primary (a Mapping gained or lost its weight) is a new default.
                    let default = default_weights(route);
                    if default != default_weights(was) {
                        return Err(());
                    }
                    let own: Vec<Bp> = route.backends.iter().map(|b| b.weight_bp).collect();
                    let differs = own != default;
                    // With more routes differing than the layer holds, which routes it carries
                    // depends on every route that differs: one joining or leaving them moves
                    // the cap's boundary, and the full build decides.
                    let differed = !was.backends.iter().map(|b| b.weight_bp).eq(default);
                    if last.baked && differs != differed {
                        return Err(());
                    }
                    if differs && last.baked && !last.overrides[i] {
                        // Beyond the cap: its own weights are in the runtime variant's table.
                        (false, Some((s, own)))
                    } else {
                        (differs, None)
                    }
                }
                None => (false, None),
            };
            overridden = overridden + usize::from(overrides) - usize::from(last.overrides[i]);
            now.push((i, digest, entries, overrides, in_table));
        }
        if overridden > self.max_layer_routes {
            return Err(());
        }
        let mut table_moved = false;
        for (i, digest, entries, overrides, in_table) in now {
            let route = &table.routes[i];
            last.digests[i] = digest;
            last.entries[i] = entries;
            if let Some((structure, own)) = in_table {
                let (id, prefix) = self.runtime_key(route, structure, &own);
                let generation = self.generation;
                let used = self.runtime_routes.entry(id).or_insert_with(|| Used {
                    value: encode_runtime_route(route, &prefix, &own),
                    generation,
                });
                used.generation = generation;
                last.rt_digests[i] = id;
                last.rt_entries[i] = used.value.clone();
                table_moved = true;
                continue;
            }
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
        if table_moved {
            let prefixes = last.prefixes.iter().flatten().cloned().collect();
            last.runtime = self.assemble(
                cluster_names,
                &last.plan,
                &last.rt_digests,
                &last.rt_entries,
                prefixes,
            );
        } else if let Some(c) = self.configs.get_mut(&last.runtime.version) {
            c.generation = self.generation;
        }
        last.layer_resource = self.layer(&last.layer);
        last.table = Arc::clone(table);
        last.generation = self.generation;
        Ok(last)
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
}

/// A weighted route's runtime variant, encoded as a `VirtualHost.routes` entry (field 3): its
/// weights read from the runtime keys under `prefix`, `configured` where the layer has none.
fn encode_runtime_route(route: &Route, prefix: &str, configured: &[Bp]) -> bytes::Bytes {
    let mut bytes = Vec::new();
    let envoy = translate::weighted_route_with_runtime(route, prefix, configured);
    prost::encoding::message::encode(3, &envoy, &mut bytes);
    bytes::Bytes::from(bytes)
}
