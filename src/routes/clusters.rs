//! Envoy cluster names: one cluster per distinct upstream and settings, named after the
//! service, stable across reloads, and never a name Envoy reserves.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::collections::hash_map::Entry;
use std::sync::Arc;

use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};

use super::{ClusterSpec, RESERVED_CLUSTER_NAMES, Route, RouteTable};
use crate::model::diagnostic::Diagnostic;
use crate::model::mapping::{ClusterSettings, Mapping, MappingId, Scheme, Service, sanitize};

/// Whether the routes need the very clusters of the last table: the same routes in the same
/// order, each either unchanged or with backends of the same Mappings (by name), upstreams and
/// settings. Then only weights changed, which is what a canary rollout does all day.
pub(super) fn same_clusters(routes: &[Arc<Route>], last: &RouteTable) -> bool {
    let same =
        |a: &Mapping, b: &Mapping| a.id == b.id && a.service == b.service && a.cluster == b.cluster;
    let same_upstreams = |r: &Route, l: &Route| {
        r.key == l.key
            && r.backends.len() == l.backends.len()
            && r.backends
                .iter()
                .zip(&l.backends)
                .all(|(a, b)| same(&a.mapping, &b.mapping))
            && match (&r.shadow, &l.shadow) {
                (None, None) => true,
                (Some(a), Some(b)) => same(&a.mapping, &b.mapping),
                _ => false,
            }
    };
    routes.len() == last.routes.len()
        && routes
            .iter()
            .zip(&last.routes)
            .all(|(r, l)| Arc::ptr_eq(r, l) || same_upstreams(r, l))
}

/// Gives each changed route the cluster names its predecessor had (see `same_clusters`).
pub(super) fn reuse_clusters(
    routes: &mut [Arc<Route>],
    last: &RouteTable,
) -> Arc<BTreeMap<String, Arc<ClusterSpec>>> {
    for (r, l) in routes.iter_mut().zip(&last.routes) {
        if Arc::ptr_eq(r, l) {
            continue;
        }
        let r = Arc::make_mut(r);
        for (b, lb) in r.backends.iter_mut().zip(&l.backends) {
            b.cluster.clone_from(&lb.cluster);
        }
        if let (Some(s), Some(ls)) = (&mut r.shadow, &l.shadow) {
            s.cluster.clone_from(&ls.cluster);
        }
    }
    Arc::clone(&last.clusters)
}

/// The shared cluster of an upstream: Mappings with the same service (scheme, host, port) and
/// `cluster_tag` share it. Hashes and compares through the Mapping, without copying.
#[derive(Clone)]
struct SharedKey(Arc<Mapping>);

impl SharedKey {
    fn parts(&self) -> (Scheme, &str, u16, Option<&str>) {
        let m = &self.0;
        (
            m.service.scheme,
            &m.service.host,
            m.service.port,
            m.cluster.cluster_tag.as_deref(),
        )
    }
}

impl PartialEq for SharedKey {
    fn eq(&self, other: &Self) -> bool {
        self.parts() == other.parts()
    }
}

impl Eq for SharedKey {}

impl std::hash::Hash for SharedKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.parts().hash(state);
    }
}

/// Who a cluster serves: one upstream for every single-backend route that uses it, or one
/// backend (or the shadow) of one route.
enum Owner {
    Shared(SharedKey),
    Dedicated { route: usize, mapping: Arc<Mapping> },
}

/// The fixed order that numbers clashing names: shared before dedicated; shared by upstream,
/// dedicated by route, then Mapping. Never file order.
fn owner_order(routes: &[Arc<Route>], a: &Owner, b: &Owner) -> Ordering {
    match (a, b) {
        (Owner::Shared(x), Owner::Shared(y)) => x.parts().cmp(&y.parts()),
        (Owner::Shared(_), Owner::Dedicated { .. }) => Ordering::Less,
        (Owner::Dedicated { .. }, Owner::Shared(_)) => Ordering::Greater,
        (
            Owner::Dedicated {
                route: r1,
                mapping: m1,
            },
            Owner::Dedicated {
                route: r2,
                mapping: m2,
            },
        ) => routes[*r1]
            .key
            .cmp(&routes[*r2].key)
            .then_with(|| m1.id.cmp(&m2.id)),
    }
}

/// Where a cluster name goes: a backend of a route, or its shadow.
#[derive(Clone, Copy)]
enum Slot {
    Backend(usize, usize),
    Shadow(usize),
}

/// A cluster before it is named: who it serves, the Mapping whose settings it takes, and the
/// base of its name.
struct Cluster<'a> {
    owner: Owner,
    service: &'a Service,
    settings: &'a ClusterSettings,
    base: &'a str,
}

/// Gives every backend and shadow its cluster and checks that Mappings sharing a cluster
/// agree on its settings. The naming rule is in docs/mappings.md: users read stats by these names.
/// A cluster the last table had with the same name and spec keeps its spec (shared).
pub(super) fn assign_clusters(
    routes: &mut Vec<Arc<Route>>,
    previous: Option<&RouteTable>,
    diagnostics: &mut Vec<Diagnostic>,
) -> BTreeMap<String, Arc<ClusterSpec>> {
    let shared = shared_settings(routes, diagnostics);
    let (clusters, slots) = clusters_of(routes, &shared);
    let names = cluster_names(routes, &clusters);
    let specs = cluster_specs(&clusters, &names, previous);
    name_clusters(routes, slots, &names);
    specs
}

/// The settings of each shared cluster: the first Mapping in path order decides them, and a
/// Mapping that disagrees is left out with an error.
fn shared_settings(
    routes: &mut Vec<Arc<Route>>,
    diagnostics: &mut Vec<Diagnostic>,
) -> HashMap<SharedKey, Arc<Mapping>> {
    let mut shared: HashMap<SharedKey, Arc<Mapping>> = HashMap::new();
    let mut rejected: HashSet<MappingId> = HashSet::new();
    // A held route (last good state) goes after the current ones and is never left out here:
    // it shares whatever settings the current Mappings give the cluster.
    let mut singles: Vec<(bool, &Arc<Mapping>)> = routes
        .iter()
        .filter(|r| r.backends.len() == 1)
        .map(|r| (r.held.is_some(), &r.backends[0].mapping))
        .collect();
    singles.sort_by(|a, b| (a.0, &a.1.origin).cmp(&(b.0, &b.1.origin)));
    for (held, m) in singles {
        let key = SharedKey(Arc::clone(m));
        let Some(first) = shared.get(&key) else {
            shared.insert(key, Arc::clone(m));
            continue;
        };
        if held || first.cluster == m.cluster {
            continue;
        }
        let (field, what) = if first.cluster.connect_timeout_ms != m.cluster.connect_timeout_ms {
            (
                "connect_timeout_ms",
                format!(
                    "connect_timeout_ms {} where {} at {} has {}",
                    m.cluster.connect_timeout_ms,
                    first.id,
                    first.origin.location(),
                    first.cluster.connect_timeout_ms
                ),
            )
        } else {
            (
                "grpc",
                format!(
                    "grpc {} where {} at {} has grpc {}",
                    m.cluster.grpc,
                    first.id,
                    first.origin.location(),
                    first.cluster.grpc
                ),
            )
        };
        diagnostics.push(
            Diagnostic::error(
                &m.field_location(field),
                format!(
                    "Mappings sharing the cluster for {} must agree on its settings, and this \
                     one has {what}; it is left out",
                    m.service.raw
                ),
            )
            .mapping(&m.id.name)
            .field(field),
        );
        rejected.insert(m.id.clone());
    }
    if !rejected.is_empty() {
        routes.retain(|r| {
            !(r.backends.len() == 1
                && r.held.is_none()
                && rejected.contains(&r.backends[0].mapping.id))
        });
    }

    shared
}

/// Every cluster the routes need, and which cluster each backend and shadow goes through.
fn clusters_of<'a>(
    routes: &'a [Arc<Route>],
    shared: &'a HashMap<SharedKey, Arc<Mapping>>,
) -> (Vec<Cluster<'a>>, Vec<(Slot, usize)>) {
    let mut clusters: Vec<Cluster<'_>> = Vec::with_capacity(routes.len());
    let mut shared_index: HashMap<SharedKey, usize> = HashMap::with_capacity(shared.len());
    let mut slots: Vec<(Slot, usize)> = Vec::with_capacity(routes.len());
    for (ri, route) in routes.iter().enumerate() {
        let dedicated = route.backends.len() > 1;
        let all = route
            .backends
            .iter()
            .enumerate()
            .map(|(bi, b)| (Slot::Backend(ri, bi), &b.mapping, dedicated))
            .chain(
                route
                    .shadow
                    .iter()
                    .map(|s| (Slot::Shadow(ri), &s.mapping, true)),
            );
        for (slot, m, dedicated) in all {
            let index = if dedicated {
                clusters.push(Cluster {
                    owner: Owner::Dedicated {
                        route: ri,
                        mapping: Arc::clone(m),
                    },
                    service: &m.service,
                    settings: &m.cluster,
                    base: &m.cluster_base,
                });
                clusters.len() - 1
            } else {
                let key = SharedKey(Arc::clone(m));
                match shared_index.entry(key) {
                    Entry::Occupied(e) => *e.get(),
                    Entry::Vacant(e) => {
                        let first = &shared[e.key()];
                        clusters.push(Cluster {
                            owner: Owner::Shared(e.key().clone()),
                            service: &m.service,
                            settings: &first.cluster,
                            base: &m.cluster_base,
                        });
                        *e.insert(clusters.len() - 1)
                    }
                }
            };
            slots.push((slot, index));
        }
    }
    (clusters, slots)
}

/// Each cluster's spec by name, reusing the last table's spec where it is the same, so that an
/// unchanged cluster stays the same shared value (and is not encoded again).
fn cluster_specs(
    clusters: &[Cluster<'_>],
    names: &[String],
    previous: Option<&RouteTable>,
) -> BTreeMap<String, Arc<ClusterSpec>> {
    clusters
        .iter()
        .zip(names)
        .map(|(c, name)| {
            let last = previous
                .and_then(|t| t.clusters.get(name))
                .filter(|s| &s.service == c.service && &s.settings == c.settings);
            let spec = match last {
                Some(spec) => Arc::clone(spec),
                None => Arc::new(ClusterSpec {
                    service: c.service.clone(),
                    settings: c.settings.clone(),
                }),
            };
            (name.clone(), spec)
        })
        .collect()
}

/// Writes each cluster's name into the backends and shadows that go through it.
fn name_clusters(routes: &mut [Arc<Route>], slots: Vec<(Slot, usize)>, names: &[String]) {
    // A reused route changes (and is copied) only when one of its names did.
    for (slot, index) in slots {
        let name = &names[index];
        match slot {
            Slot::Backend(r, b) => {
                if &routes[r].backends[b].cluster != name {
                    Arc::make_mut(&mut routes[r]).backends[b].cluster = name.clone();
                }
            }
            Slot::Shadow(r) => {
                if routes[r]
                    .shadow
                    .as_ref()
                    .is_some_and(|s| &s.cluster != name)
                    && let Some(s) = &mut Arc::make_mut(&mut routes[r]).shadow
                {
                    s.cluster = name.clone();
                }
            }
        }
    }
}

/// The naming rule (published in docs/mappings.md, since users read stats by these names):
/// 1. every cluster has a base name from its upstream (`Mapping::cluster_base`, made by
///    `cluster_base_name`);
/// 2. a dedicated cluster (a backend of a route with several, or a shadow) takes the base name
///    when it is the only dedicated one with it, else adds `__<mapping>` (and `_<namespace>`
///    outside `default`);
/// 3. a shared cluster (routes with one backend) takes the base name unless rule 2 took it,
///    else adds `__shared`;
/// 4. any clash left, or with a reserved name, numbers the later ones `_2`, `_3`... in a fixed
///    order (`owner_order`).
///
/// Returns one name per owner, by index.
fn cluster_names(routes: &[Arc<Route>], clusters: &[Cluster<'_>]) -> Vec<String> {
    // How many dedicated clusters want each base name.
    let mut dedicated: HashMap<&str, usize> = HashMap::with_capacity(clusters.len());
    for c in clusters {
        if let Owner::Dedicated { .. } = c.owner {
            *dedicated.entry(c.base).or_default() += 1;
        }
    }
    let mut names: Vec<String> = clusters
        .iter()
        .map(|c| {
            let crowd = dedicated.get(c.base).copied().unwrap_or(0);
            match &c.owner {
                Owner::Dedicated { mapping, .. } if crowd > 1 => {
                    let mut n = format!("{}__{}", c.base, sanitize(&mapping.id.name));
                    if mapping.id.namespace != "default" {
                        n.push('_');
                        n.push_str(&sanitize(&mapping.id.namespace));
                    }
                    n
                }
                Owner::Shared(_) if crowd == 1 => format!("{}__shared", c.base),
                _ => c.base.to_string(),
            }
        })
        .collect();
    // Clashes are rare: resolve them in a fixed order of names, then of owners.
    let mut first: HashMap<&str, usize> = HashMap::with_capacity(names.len());
    let mut clashes: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, name) in names.iter().enumerate() {
        if RESERVED_CLUSTER_NAMES.contains(&name.as_str()) {
            clashes.entry(name).or_default().push(i);
            continue;
        }
        match first.entry(name) {
            Entry::Vacant(e) => {
                e.insert(i);
            }
            Entry::Occupied(e) => {
                let list = clashes.entry(name).or_default();
                if list.is_empty() {
                    list.push(*e.get());
                }
                list.push(i);
            }
        }
    }
    if clashes.is_empty() {
        return names;
    }
    let mut taken: HashSet<String> = RESERVED_CLUSTER_NAMES
        .iter()
        .map(|s| s.to_string())
        .chain(names.iter().cloned())
        .collect();
    let clashes: Vec<(String, Vec<usize>)> = clashes
        .into_iter()
        .map(|(name, list)| (name.to_string(), list))
        .collect();
    for (name, mut list) in clashes {
        list.sort_by(|&a, &b| owner_order(routes, &clusters[a].owner, &clusters[b].owner));
        let reserved = RESERVED_CLUSTER_NAMES.contains(&name.as_str());
        let mut n = 1;
        for (i, owner) in list.into_iter().enumerate() {
            names[owner] = if i == 0 && !reserved {
                name.clone()
            } else {
                n += 1;
                while taken.contains(&format!("{name}_{n}")) {
                    n += 1;
                }
                let numbered = format!("{name}_{n}");
                taken.insert(numbered.clone());
                numbered
            };
        }
    }
    names
}
