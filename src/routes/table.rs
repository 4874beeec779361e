//! Mappings to route tables: one table per fleet, routes in the order Envoy will try them, each
//! route's backends with their exact shares and the Envoy cluster each one goes through.
//!
//! This is the model the rest of canary-xds serves and shows. It is a pure function of the
//! parsed files (plus, for `serve`, the last good tables to fall back on).

use std::borrow::Borrow;
use std::cmp::{Ordering, Reverse};
use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};

use crate::input::parse::{ParsedFile, Rejected};
use crate::model::diagnostic::{Diagnostic, Location, Severity};
use crate::model::mapping::{
    Bp, ClusterSettings, DEFAULT_FLEET, FULL, Mapping, MappingId, Origin, RouteKey, Scheme, Service,
};
use crate::model::weights::{self, Member, Remark, SplitError, percent};

/// Cluster names Envoy already uses for its own purposes (the bootstrap's xDS cluster).
pub const RESERVED_CLUSTER_NAMES: &[&str] = &["xds_cluster"];

/// The route tables of every fleet, by fleet name. The `default` fleet is always present.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Tables {
    pub fleets: BTreeMap<String, Arc<RouteTable>>,
}

impl Tables {
    pub fn fleet(&self, name: &str) -> Option<&RouteTable> {
        self.fleets.get(name).map(Arc::as_ref)
    }
}

/// The routes of one fleet, in Envoy's matching order, and the clusters they use.
///
/// Routes and cluster specs are shared: a compile given the last tables reuses each route whose
/// Mappings did not change, so a reload costs what changed and the snapshot builder can tell
/// an unchanged route by its address.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RouteTable {
    pub routes: Vec<Arc<Route>>,
    pub clusters: Arc<BTreeMap<String, Arc<ClusterSpec>>>,
}

impl RouteTable {
    pub fn route(&self, key: &RouteKey) -> Option<&Route> {
        self.routes.iter().find(|r| &r.key == key).map(Arc::as_ref)
    }

    pub fn mapping_count(&self) -> usize {
        self.routes
            .iter()
            .map(|r| r.backends.len() + usize::from(r.shadow.is_some()))
            .sum()
    }
}

/// One route: the Mappings that share a match, with their shares.
#[derive(Clone, Debug, PartialEq)]
pub struct Route {
    pub key: RouteKey,
    /// In (namespace, name) order; the weights sum to exactly 10000.
    pub backends: Vec<Backend>,
    pub shadow: Option<Shadow>,
    /// Set when `serve` kept this route's last good weights; says why.
    pub held: Option<String>,
    /// What the arithmetic had to say about the weights, reported again on every compile.
    pub remark: Option<Remark>,
}

/// A Mapping's share of a route, with everything it carries.
#[derive(Clone, Debug, PartialEq)]
pub struct Backend {
    pub mapping: Arc<Mapping>,
    pub weight_bp: Bp,
    pub cluster: String,
}

/// A shadow Mapping: `percent_bp` hundredths of the route's requests are mirrored to it.
#[derive(Clone, Debug, PartialEq)]
pub struct Shadow {
    pub mapping: Arc<Mapping>,
    pub percent_bp: Bp,
    pub cluster: String,
}

/// What Envoy needs to know of a cluster: its upstream and settings.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub struct ClusterSpec {
    pub service: Service,
    pub settings: ClusterSettings,
}

/// The route tables and every diagnostic about the input.
#[derive(Clone, Debug, Default)]
pub struct Compiled {
    pub tables: Tables,
    pub diagnostics: Vec<Diagnostic>,
}

/// Builds every fleet's route table from parsed files, given in path order.
///
/// `fallback` is the last good tables: a route whose weights became invalid keeps its
/// previous backends from there (as `serve` needs), instead of being left out (as `check` does).
pub fn compile<F: Borrow<ParsedFile>>(files: &[F], fallback: Option<&Tables>) -> Compiled {
    let files: Vec<&ParsedFile> = files.iter().map(Borrow::borrow).collect();
    let files = files.as_slice();
    let mut diagnostics: Vec<Diagnostic> = files
        .iter()
        .flat_map(|f| f.diagnostics.iter().cloned())
        .collect();
    let mappings: Vec<Arc<Mapping>> = files.iter().flat_map(|f| &f.mappings).cloned().collect();

    let mut fleets: HashSet<&str> = HashSet::from_iter([DEFAULT_FLEET]);
    // Nearly every Mapping is in the default fleet alone: no need to look into its set.
    for m in mappings.iter().filter(|m| !is_default_only(&m.fleets)) {
        fleets.extend(m.fleets.iter().map(String::as_str));
    }
    let fleets: BTreeSet<&str> = fleets.into_iter().collect();
    let mut tables = Tables::default();
    for fleet in fleets {
        let members = dedupe(files, &mappings, fleet, &mut diagnostics);
        let previous = fallback.and_then(|t| t.fleet(fleet));
        let table = build_fleet(&members, previous, &mut diagnostics);
        tables.fleets.insert(fleet.to_string(), Arc::new(table));
    }
    explain_rejected(files, &tables, &mut diagnostics);
    diagnostics.sort_by(diagnostic_order);
    diagnostics.dedup();
    Compiled {
        tables,
        diagnostics,
    }
}

/// The compile of `files` when they are `last_files` with some files replaced by ones whose
/// Mappings differ from theirs only in what their routes carry - weights, route and backend
/// settings (see `Mapping::same_place`) - given `last`, the compile of `last_files`. Then every
/// route and cluster keeps its place and only the routes of those Mappings are rebuilt: moving
/// a canary, what a rollout does all day, or changing a timeout costs its route instead of a
/// regrouping of every Mapping. Equal to `compile(files, Some(&last.tables))`.
///
/// `None` when the change is anything else, or needs the full compile's care: a split that
/// fails (and holds its route), a held route, a Mapping in another fleet than the default one,
/// a left-out Mapping whose error names the route's weights.
pub fn recompile_routes(
    last_files: &[Arc<ParsedFile>],
    last: &Compiled,
    files: &[Arc<ParsedFile>],
) -> Option<Compiled> {
    if last_files.len() != files.len() {
        return None;
    }
    let mut swap: HashMap<*const Mapping, &Arc<Mapping>> = HashMap::new();
    for (old, new) in last_files.iter().zip(files) {
        if Arc::ptr_eq(old, new) {
            continue;
        }
        if !(old.rejected.is_empty()
            && new.rejected.is_empty()
            && old.mappings.len() == new.mappings.len()
            && old.diagnostics == new.diagnostics)
        {
            return None;
        }
        for (o, n) in old.mappings.iter().zip(&new.mappings) {
            if !(o.same_place(n) && is_default_only(&o.fleets)) {
                return None;
            }
            swap.insert(Arc::as_ptr(o), n);
        }
    }
    let mut compiled = last.clone();
    let Some(table) = compiled.tables.fleets.get_mut(DEFAULT_FLEET) else {
        return Some(compiled);
    };
    let swapped = |m: &Arc<Mapping>| swap.get(&Arc::as_ptr(m)).copied();
    let (mut gone, mut came) = (Vec::new(), Vec::new());
    let mut routes: Option<Vec<Arc<Route>>> = None;
    let mut found = 0;
    for (i, route) in table.routes.iter().enumerate() {
        if found == swap.len() {
            break;
        }
        let members = route
            .backends
            .iter()
            .map(|b| &b.mapping)
            .chain(route.shadow.iter().map(|s| &s.mapping));
        let here = members.filter(|m| swapped(m).is_some()).count();
        if here == 0 {
            continue;
        }
        found += here;
        if route.held.is_some() {
            return None;
        }
        let new = rebuild_route(route, &swapped)?;
        let label = describe(&route.key);
        for (r, out) in [(route, &mut gone), (&new, &mut came)] {
            if let Some(remark) = &r.remark {
                let members: Vec<&Arc<Mapping>> = r.backends.iter().map(|b| &b.mapping).collect();
                let shares: Vec<Bp> = r.backends.iter().map(|b| b.weight_bp).collect();
                remark_on(&label, &members, &shares, remark, out);
            }
        }
        routes.get_or_insert_with(|| table.routes.clone())[i] = new;
    }
    // A Mapping in no route was left out (a duplicate, a failed split...): its new weight
    // may bring it back, which only the full compile can tell.
    if found < swap.len() {
        return None;
    }
    let Some(routes) = routes else {
        return Some(compiled);
    };
    // A left-out Mapping's error says how its route's traffic is split.
    let changed: Vec<&RouteKey> = routes
        .iter()
        .zip(&table.routes)
        .filter(|(a, b)| !Arc::ptr_eq(a, b))
        .map(|(a, _)| &a.key)
        .collect();
    let named = files
        .iter()
        .flat_map(|f| &f.rejected)
        .any(|r| r.key.as_ref().is_some_and(|k| changed.contains(&k)));
    if named {
        return None;
    }
    Arc::make_mut(table).routes = routes;
    // Every remark names a Mapping of its route, and each Mapping is in one route: the old
    // remarks of these routes are theirs alone.
    // (Diagnostics that sort alike but differ are left to the full compile, which orders them
    // by when it found them.)
    let diagnostics = &mut compiled.diagnostics;
    let alike = |list: &[Diagnostic], d: &Diagnostic| {
        let from = list.partition_point(|x| diagnostic_order(x, d) == Ordering::Less);
        let to = list.partition_point(|x| diagnostic_order(x, d) != Ordering::Greater);
        from..to
    };
    for d in gone {
        let at = alike(diagnostics, &d);
        if at.len() != 1 || diagnostics[at.start] != d {
            return None;
        }
        diagnostics.remove(at.start);
    }
    for d in came {
        let at = alike(diagnostics, &d);
        match at.len() {
            0 => diagnostics.insert(at.start, d),
            1 if diagnostics[at.start] == d => {}
            _ => return None,
        }
    }
    Some(compiled)
}

/// A route with some of its Mappings replaced by new versions of themselves (`same_place`);
/// `None` when their weights cannot be split.
fn rebuild_route<'m>(
    route: &Route,
    swapped: &impl Fn(&Arc<Mapping>) -> Option<&'m Arc<Mapping>>,
) -> Option<Arc<Route>> {
    let now = |m: &Arc<Mapping>| Arc::clone(swapped(m).unwrap_or(m));
    let members: Vec<Arc<Mapping>> = route.backends.iter().map(|b| now(&b.mapping)).collect();
    let arithmetic: Vec<Member<'_>> = members
        .iter()
        .map(|m| Member {
            id: &m.id,
            weight: m.weight,
        })
        .collect();
    let (split, remark) = weights::split(&arithmetic).ok()?;
    let backends = members
        .into_iter()
        .zip(split.shares())
        .zip(&route.backends)
        .map(|((mapping, &weight_bp), old)| Backend {
            mapping,
            weight_bp,
            cluster: old.cluster.clone(),
        })
        .collect();
    let shadow = route.shadow.as_ref().map(|s| {
        let mapping = now(&s.mapping);
        Shadow {
            percent_bp: mapping.weight.unwrap_or(FULL),
            mapping,
            cluster: s.cluster.clone(),
        }
    });
    Some(Arc::new(Route {
        key: route.key.clone(),
        backends,
        shadow,
        held: None,
        remark,
    }))
}

/// The order diagnostics are reported in: file, line, column, severity, message.
pub fn diagnostic_order(a: &Diagnostic, b: &Diagnostic) -> Ordering {
    (&a.file, a.line, a.column, a.severity, &a.message)
        .cmp(&(&b.file, b.line, b.column, b.severity, &b.message))
}

fn is_default_only(fleets: &BTreeSet<String>) -> bool {
    fleets.len() == 1 && fleets.first().is_some_and(|f| f == DEFAULT_FLEET)
}

/// The Mappings of one fleet, keeping the first of each (namespace, name) in path order; the
/// others are errors. Names clash only within a fleet, as they do between the resources one
/// Ambassador sees. A Mapping left out for an error of its own still holds its name: a later one
/// with the same name is a duplicate too, rather than silently taking its place.
fn dedupe<'m>(
    files: &[&'m ParsedFile],
    mappings: &'m [Arc<Mapping>],
    fleet: &str,
    diagnostics: &mut Vec<Diagnostic>,
) -> Vec<&'m Arc<Mapping>> {
    let rejected: Vec<(&Origin, MappingId)> = files
        .iter()
        .flat_map(|f| &f.rejected)
        .filter(|r| r.fleets.contains(fleet))
        .filter_map(|r| {
            let id = MappingId {
                namespace: r.namespace.clone()?,
                name: r.name.clone()?,
            };
            Some((&r.origin, id))
        })
        .collect();
    let mut all: Vec<(&Origin, &MappingId, Option<&'m Arc<Mapping>>)> = mappings
        .iter()
        .filter(|m| m.fleets.contains(fleet))
        .map(|m| (&m.origin, &m.id, Some(m)))
        .chain(rejected.iter().map(|(origin, id)| (*origin, id, None)))
        .collect();
    // Files come in path order and their Mappings in document order, so without rejected
    // Mappings (which come after) this is sorted already when the files are: checking the
    // files is a thousand comparisons where sorting, even sorted input, is ten thousand.
    let firsts: Vec<&str> = files
        .iter()
        .filter_map(|f| f.mappings.first())
        .map(|m| m.origin.file.as_str())
        .collect();
    let in_path_order = firsts.windows(2).all(|w| w[0] < w[1]);
    if !(rejected.is_empty() && in_path_order) {
        all.sort_by(|a, b| a.0.cmp(b.0));
    }
    let in_fleet = if fleet == DEFAULT_FLEET {
        String::new()
    } else {
        format!(" (fleet {fleet})")
    };
    let mut first: HashMap<&MappingId, (&Origin, bool)> = HashMap::with_capacity(all.len());
    let mut out = Vec::with_capacity(all.len());
    for (origin, id, mapping) in all {
        match first.entry(id) {
            Entry::Occupied(e) => {
                let &(at, valid) = e.get();
                let outcome = if valid {
                    "is kept and this one is left out"
                } else {
                    "counts (though its own error leaves it out), so this one is left out too"
                };
                diagnostics.push(
                    Diagnostic::error(
                        &origin.location(),
                        format!(
                            "duplicate Mapping name {} in namespace {}{in_fleet}: the first one \
                             in path order, at {}, {outcome}",
                            id.name,
                            id.namespace,
                            at.location()
                        ),
                    )
                    .mapping(&id.name)
                    .field("name"),
                );
            }
            Entry::Vacant(e) => {
                e.insert((origin, mapping.is_some()));
                out.extend(mapping);
            }
        }
    }
    out
}

/// Envoy's matching order: higher precedence, longer prefix, more matchers, then text.
pub fn route_order(a: &RouteKey, b: &RouteKey) -> Ordering {
    order_key(a).cmp(&order_key(b))
}

/// The sort key of `route_order`, computed once per route when sorting many.
type OrderKey<'a> = (
    Reverse<i32>,
    Reverse<usize>,
    Reverse<usize>,
    &'a str,
    Option<&'a str>,
    String,
    // Whatever is left decides too, so the order is total and never follows file order.
    &'a RouteKey,
);

fn order_key(k: &RouteKey) -> OrderKey<'_> {
    (
        Reverse(k.precedence),
        Reverse(k.prefix.chars().count()),
        Reverse(k.matcher_count()),
        &k.prefix,
        k.method.as_deref(),
        k.matcher_text(),
        k,
    )
}

/// A route key with the hash its Mapping computed once (`Mapping::key_hash`).
struct Prehashed<'a>(u64, &'a RouteKey);

impl PartialEq for Prehashed<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0 && self.1 == other.1
    }
}

impl Eq for Prehashed<'_> {}

impl std::hash::Hash for Prehashed<'_> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u64(self.0);
    }
}

/// A route's Mappings before the arithmetic: the ones taking a share and the shadow.
struct Group<'a> {
    key: &'a RouteKey,
    members: Vec<&'a Arc<Mapping>>,
    /// The index of this route in the last table, when one of its Mappings was there.
    was: Option<usize>,
}

/// Sorts groups into route order. Routes that were in the last table are already in order
/// among themselves (the order is a total order on keys), so after a small change only the
/// new ones are placed, each by a binary search: computing every route's order key and
/// sorting takes a few milliseconds at 10,000 Mappings.
fn in_route_order(groups: Vec<Group<'_>>) -> Vec<Group<'_>> {
    let (mut known, mut new): (Vec<Group<'_>>, Vec<Group<'_>>) =
        groups.into_iter().partition(|g| g.was.is_some());
    if new.len() * 8 > known.len() {
        known.append(&mut new);
        known.sort_by_cached_key(|g| order_key(g.key));
        return known;
    }
    known.sort_unstable_by_key(|g| g.was);
    new.sort_by_cached_key(|g| order_key(g.key));
    let at: Vec<usize> = new
        .iter()
        .map(|n| known.partition_point(|k| route_order(k.key, n.key) == Ordering::Less))
        .collect();
    let mut out = Vec::with_capacity(known.len() + new.len());
    let mut new = new.into_iter().zip(at).peekable();
    for (i, k) in known.into_iter().enumerate() {
        while let Some((n, _)) = new.next_if(|(_, at)| *at == i) {
            out.push(n);
        }
        out.push(k);
    }
    out.extend(new.map(|(n, _)| n));
    out
}

fn build_fleet(
    mappings: &[&Arc<Mapping>],
    previous: Option<&RouteTable>,
    diagnostics: &mut Vec<Diagnostic>,
) -> RouteTable {
    let mut index: HashMap<Prehashed<'_>, usize> = HashMap::with_capacity(mappings.len());
    let mut groups: Vec<Group<'_>> = Vec::new();
    for &m in mappings {
        match index.entry(Prehashed(m.key_hash, &m.key)) {
            Entry::Occupied(e) => groups[*e.get()].members.push(m),
            Entry::Vacant(e) => {
                e.insert(groups.len());
                groups.push(Group {
                    key: &m.key,
                    members: vec![m],
                    was: None,
                });
            }
        }
    }
    // Where each group's route was in the last table, found by any of its Mappings that is
    // the very same (same key, so the same route).
    if let Some(last) = previous {
        let placed: HashMap<*const Mapping, usize> = last
            .routes
            .iter()
            .enumerate()
            .flat_map(|(i, r)| {
                r.backends
                    .iter()
                    .map(|b| &b.mapping)
                    .chain(r.shadow.iter().map(|s| &s.mapping))
                    .map(move |m| (Arc::as_ptr(m), i))
            })
            .collect();
        for g in &mut groups {
            g.was = g
                .members
                .iter()
                .find_map(|m| placed.get(&Arc::as_ptr(m)).copied());
        }
    }
    let groups = in_route_order(groups);

    let mut routes = Vec::with_capacity(groups.len());
    // Each group's Mappings are in path order, as `dedupe` gives them.
    for group in groups {
        if let Some(route) = build_route(&group, previous, diagnostics) {
            routes.push(route);
        }
    }
    let clusters = match previous {
        Some(last) if same_clusters(&routes, last) => reuse_clusters(&mut routes, last),
        _ => Arc::new(assign_clusters(&mut routes, previous, diagnostics)),
    };
    RouteTable { routes, clusters }
}

/// Whether the routes need the very clusters of the last table: the same routes in the same
/// order, each either unchanged or with backends of the same Mappings (by name), upstreams and
/// settings. Then only weights changed, which is what a canary rollout does all day.
fn same_clusters(routes: &[Arc<Route>], last: &RouteTable) -> bool {
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
fn reuse_clusters(
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

/// A short description of a route for messages: `/qotm/` or `/qotm/ (host foo.com, GET)`.
pub fn describe(key: &RouteKey) -> String {
    let mut parts = Vec::new();
    if let Some(h) = &key.host {
        parts.push(if key.host_regex {
            format!("host ~{h}")
        } else {
            format!("host {h}")
        });
    }
    if let Some(m) = &key.method {
        parts.push(m.clone());
    }
    for (k, v) in &key.headers {
        parts.push(format!("{k}: {v}"));
    }
    for (k, v) in &key.regex_headers {
        parts.push(format!("{k} ~ {v}"));
    }
    for (k, v) in &key.query_parameters {
        parts.push(format!("?{k}={v}"));
    }
    if key.precedence != 0 {
        parts.push(format!("precedence {}", key.precedence));
    }
    let prefix = if key.prefix_regex {
        format!("~{}", key.prefix)
    } else {
        key.prefix.clone()
    };
    if parts.is_empty() {
        prefix
    } else {
        format!("{prefix} ({})", parts.join(", "))
    }
}

fn build_route(
    group: &Group<'_>,
    previous: Option<&RouteTable>,
    diagnostics: &mut Vec<Diagnostic>,
) -> Option<Arc<Route>> {
    if let Some(last) = reuse(group, previous) {
        if let Some(remark) = &last.remark {
            let members: Vec<&Arc<Mapping>> = last.backends.iter().map(|b| &b.mapping).collect();
            let shares: Vec<Bp> = last.backends.iter().map(|b| b.weight_bp).collect();
            remark_on(&describe(group.key), &members, &shares, remark, diagnostics);
        }
        return Some(Arc::clone(last));
    }
    let mut shadow: Option<&Arc<Mapping>> = None;
    let mut members: Vec<&Arc<Mapping>> = Vec::new();
    for &m in &group.members {
        if !m.shadow {
            members.push(m);
            continue;
        }
        match shadow {
            None => shadow = Some(m),
            Some(first) => diagnostics.push(
                Diagnostic::error(
                    &m.origin.location(),
                    format!(
                        "route {} already has a shadow, {} at {}; a route mirrors to one \
                         shadow at most, so this one is left out",
                        describe(group.key),
                        first.id,
                        first.origin.location()
                    ),
                )
                .mapping(&m.id.name)
                .field("shadow"),
            ),
        }
    }
    members.sort_by(|a, b| a.id.cmp(&b.id));
    let arithmetic: Vec<Member<'_>> = members
        .iter()
        .map(|m| Member {
            id: &m.id,
            weight: m.weight,
        })
        .collect();
    let (split, remark) = match weights::split(&arithmetic) {
        Ok(ok) => ok,
        Err(e) => {
            return group_failed(group, &members, shadow, &e, previous, diagnostics);
        }
    };
    if let Some(remark) = &remark {
        remark_on(
            &describe(group.key),
            &members,
            split.shares(),
            remark,
            diagnostics,
        );
    }
    let backends = members
        .iter()
        .zip(split.shares())
        .map(|(m, &weight_bp)| Backend {
            mapping: Arc::clone(m),
            weight_bp,
            cluster: String::new(),
        })
        .collect();
    Some(Arc::new(Route {
        key: group.key.clone(),
        backends,
        shadow: shadow.map(|m| Shadow {
            mapping: Arc::clone(m),
            percent_bp: m.weight.unwrap_or(FULL),
            cluster: String::new(),
        }),
        held: None,
        remark,
    }))
}

/// The last table's route for these very Mappings, if it had one (not held): the same
/// Mappings make the same route, since its weights follow from them.
fn reuse<'r>(group: &Group<'_>, previous: Option<&'r RouteTable>) -> Option<&'r Arc<Route>> {
    let last = &previous?.routes[group.was?];
    if last.held.is_some() {
        return None;
    }
    let parts = || {
        last.backends
            .iter()
            .map(|b| &b.mapping)
            .chain(last.shadow.iter().map(|s| &s.mapping))
    };
    let same = parts().count() == group.members.len()
        && parts().all(|p| group.members.iter().any(|m| Arc::ptr_eq(p, m)));
    same.then_some(last)
}

/// Reports a route whose Mappings cannot share its traffic, and keeps its last good state when
/// there is one.
fn group_failed(
    group: &Group<'_>,
    members: &[&Arc<Mapping>],
    shadow: Option<&Arc<Mapping>>,
    error: &SplitError,
    previous: Option<&RouteTable>,
    diagnostics: &mut Vec<Diagnostic>,
) -> Option<Arc<Route>> {
    let route = describe(group.key);
    let first = members.first().copied().or(shadow)?;
    let held = previous.and_then(|t| t.routes.iter().find(|r| &r.key == group.key));
    let outcome = match held {
        Some(_) => "its last good weights keep serving".to_string(),
        None => "the route is left out".to_string(),
    };
    let message = match error {
        SplitError::Empty => format!(
            "route {route} has only the shadow Mapping {}, and nothing to serve its traffic; {outcome}",
            first.id
        ),
        SplitError::OverFull { .. } | SplitError::AllZero => {
            let who: Vec<String> = members
                .iter()
                .map(|m| {
                    let w = m
                        .weight
                        .map_or("no weight".into(), |w| format!("{}%", percent(w)));
                    format!("{} ({w}, {})", m.id, m.origin.location())
                })
                .collect();
            format!("route {route}: {error}: {}; {outcome}", who.join(", "))
        }
    };
    let field = match error {
        SplitError::Empty => "shadow",
        _ => "weight",
    };
    diagnostics.push(
        Diagnostic::error(&first.field_location(field), message)
            .mapping(&first.id.name)
            .field(field),
    );
    let note = format!("held at its last good weights: {error}");
    held.map(|r| {
        if r.held.as_ref() == Some(&note) {
            return Arc::clone(r);
        }
        let mut r = Route::clone(r);
        r.held = Some(note);
        Arc::new(r)
    })
}

fn remark_on(
    route: &str,
    members: &[&Arc<Mapping>],
    shares: &[Bp],
    remark: &Remark,
    diagnostics: &mut Vec<Diagnostic>,
) {
    let first = members[0];
    let (severity, at, mapping, message) = match remark {
        Remark::LoneZeroWeight => (
            Severity::Warning,
            first.field_location("weight"),
            first,
            format!(
                "{} is the only Mapping of route {route}: it still receives 100% of its traffic \
                 despite weight 0",
                first.id
            ),
        ),
        Remark::LoneWeight(w) => (
            Severity::Info,
            first.field_location("weight"),
            first,
            format!(
                "{} is the only Mapping of route {route}: it receives 100%; its weight {}% \
                 applies only beside other Mappings",
                first.id,
                percent(*w)
            ),
        ),
        Remark::UnweightedGetNothing => {
            for (m, _) in members
                .iter()
                .zip(shares)
                .filter(|(m, _)| m.weight.is_none())
            {
                diagnostics.push(
                    Diagnostic::warning(
                        &m.origin.location(),
                        format!(
                            "the weights of route {route} add up to 100%, so {} (no weight) \
                             receives 0%; delete it when the canary is done",
                            m.id
                        ),
                    )
                    .mapping(&m.id.name)
                    .field("weight"),
                );
            }
            return;
        }
        Remark::ScaledUp { total } => {
            let scaled: Vec<String> = members
                .iter()
                .zip(shares)
                .map(|(m, &s)| {
                    format!(
                        "{} {}% -> {}%",
                        m.id,
                        percent(m.weight.unwrap_or(0)),
                        percent(s)
                    )
                })
                .collect();
            (
                Severity::Warning,
                first.field_location("weight"),
                first,
                format!(
                    "the weights of route {route} add up to {}% and no Mapping without a weight \
                     takes the rest, so they are scaled up to 100%: {}",
                    percent(*total),
                    scaled.join(", ")
                ),
            )
        }
    };
    diagnostics.push(
        Diagnostic::new(severity, &at, message)
            .mapping(&mapping.id.name)
            .field("weight"),
    );
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
/// agree on its settings. The naming rule is in the README: users read stats by these names.
/// A cluster the last table had with the same name and spec keeps its spec (shared).
fn assign_clusters(
    routes: &mut Vec<Arc<Route>>,
    previous: Option<&RouteTable>,
    diagnostics: &mut Vec<Diagnostic>,
) -> BTreeMap<String, Arc<ClusterSpec>> {
    // Shared clusters: the first Mapping in path order decides their settings.
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

    // Every cluster, and where each name goes.
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
    let names = cluster_names(routes, &clusters);
    let specs: BTreeMap<String, Arc<ClusterSpec>> = clusters
        .iter()
        .zip(&names)
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
        .collect();
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
    specs
}

pub use crate::model::mapping::sanitize;

/// The naming rule (published in the README, since users read stats by these names):
/// 1. every cluster has a base name from its upstream (`base_name`);
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

/// Completes the error of each Mapping left out with where its traffic goes instead.
/// `diagnostics` starts with the files' own diagnostics, in file order.
fn explain_rejected(files: &[&ParsedFile], tables: &Tables, diagnostics: &mut [Diagnostic]) {
    let mut offset = 0;
    for f in files {
        for r in &f.rejected {
            let (Some(_), Some(key), Some(i)) = (&r.name, &r.key, r.diagnostic) else {
                continue;
            };
            if let (Some(sentence), Some(d)) = (
                where_traffic_goes(r, key, tables),
                diagnostics.get_mut(offset + i),
            ) {
                d.message.push_str("; ");
                d.message.push_str(&sentence);
            }
        }
        offset += f.diagnostics.len();
    }
}

fn where_traffic_goes(r: &Rejected, key: &RouteKey, tables: &Tables) -> Option<String> {
    let fleet = if r.fleets.contains(DEFAULT_FLEET) {
        DEFAULT_FLEET
    } else {
        r.fleets.iter().next()?
    };
    let route = tables.fleet(fleet).and_then(|t| t.route(key));
    let what = if r.shadow {
        "its mirroring stops".to_string()
    } else {
        match (route, r.weight) {
            (None, _) => format!(
                "the Mapping is left out and no route serves {}",
                describe(key)
            ),
            (Some(route), weight) => {
                let rest: Vec<String> = route
                    .backends
                    .iter()
                    .map(|b| format!("{} {}%", b.mapping.id, percent(b.weight_bp)))
                    .collect();
                match (weight, route.backends.as_slice()) {
                    (Some(w), [only]) => format!(
                        "the Mapping is left out: its {}% goes back to {}",
                        percent(w),
                        only.mapping.id
                    ),
                    _ => format!(
                        "the Mapping is left out and route {} goes on with {}",
                        describe(key),
                        rest.join(", ")
                    ),
                }
            }
        }
    };
    Some(what)
}

/// Where a diagnostic about the whole input (not one file) points: the directory itself.
pub fn directory_location() -> Location {
    Location::new(".", 0, 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::parse::parse_file;
    use proptest::prelude::*;

    fn mapping_yaml(name: &str, extra: &str) -> String {
        format!(
            "---\napiVersion: ambassador/v1\nkind: Mapping\nname: {name}\nprefix: /qotm/\n\
             service: {name}\n{extra}"
        )
    }

    fn compile_files(files: &[(&str, String)]) -> Compiled {
        let parsed: Vec<ParsedFile> = files
            .iter()
            .map(|(f, y)| parse_file(f, y.as_bytes()))
            .collect();
        compile(&parsed, None)
    }

    fn default_routes(c: &Compiled) -> &[Arc<Route>] {
        &c.tables.fleet("default").unwrap().routes
    }

    fn shares(route: &Route) -> Vec<(String, Bp)> {
        route
            .backends
            .iter()
            .map(|b| (b.mapping.id.name.clone(), b.weight_bp))
            .collect()
    }

    fn errors(c: &Compiled) -> Vec<&Diagnostic> {
        c.diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .collect()
    }

    #[test]
    fn the_docs_example_is_90_10_with_clusters_named_after_services() {
        let c = compile_files(&[
            ("qotm.yaml", mapping_yaml("qotm", "")),
            ("qotmv2.yaml", mapping_yaml("qotmv2", "weight: 10\n")),
        ]);
        assert!(c.diagnostics.is_empty(), "{:?}", c.diagnostics);
        let routes = default_routes(&c);
        assert_eq!(routes.len(), 1);
        assert_eq!(
            shares(&routes[0]),
            [("qotm".into(), 9000), ("qotmv2".into(), 1000)]
        );
        let clusters: Vec<&str> = routes[0]
            .backends
            .iter()
            .map(|b| b.cluster.as_str())
            .collect();
        assert_eq!(clusters, ["qotm", "qotmv2"]);
    }

    #[test]
    fn over_100_is_an_error_naming_every_mapping_and_the_route_is_left_out() {
        let c = compile_files(&[
            ("a.yaml", mapping_yaml("a", "weight: 60\n")),
            ("b.yaml", mapping_yaml("b", "weight: 50\n")),
        ]);
        assert!(default_routes(&c).is_empty());
        let e = errors(&c);
        assert_eq!(e.len(), 1);
        assert!(e[0].message.contains("110%"), "{}", e[0].message);
        assert!(
            e[0].message.contains("a (60%, a.yaml:2:1)"),
            "{}",
            e[0].message
        );
        assert!(
            e[0].message.contains("b (50%, b.yaml:2:1)"),
            "{}",
            e[0].message
        );
    }

    #[test]
    fn a_failed_route_keeps_its_last_good_state_when_given_one() {
        let good = compile_files(&[
            ("a.yaml", mapping_yaml("a", "weight: 60\n")),
            ("b.yaml", mapping_yaml("b", "weight: 40\n")),
        ]);
        let files: Vec<ParsedFile> = [
            ("a.yaml", mapping_yaml("a", "weight: 60\n")),
            ("b.yaml", mapping_yaml("b", "weight: 50\n")),
        ]
        .iter()
        .map(|(f, y)| parse_file(f, y.as_bytes()))
        .collect();
        let c = compile(&files, Some(&good.tables));
        let routes = default_routes(&c);
        assert_eq!(shares(&routes[0]), [("a".into(), 6000), ("b".into(), 4000)]);
        assert!(routes[0].held.is_some());
        assert!(
            errors(&c)[0]
                .message
                .contains("last good weights keep serving")
        );
    }

    #[test]
    fn a_held_route_with_one_backend_keeps_a_cluster() {
        // The route's only Mapping becomes a shadow: the route fails, and its last good state,
        // one backend, is held. Its cluster must still be found.
        let good = compile_files(&[("a.yaml", mapping_yaml("a", ""))]);
        let files = [parse_file(
            "a.yaml",
            mapping_yaml("a", "shadow: true\n").as_bytes(),
        )];
        let c = compile(&files, Some(&good.tables));
        let routes = default_routes(&c);
        assert_eq!(shares(&routes[0]), [("a".into(), FULL)]);
        assert!(routes[0].held.is_some());
        assert_eq!(routes[0].backends[0].cluster, "a");
        assert!(
            c.tables
                .fleet("default")
                .unwrap()
                .clusters
                .contains_key("a")
        );
    }

    #[test]
    fn a_rejected_mapping_says_where_its_traffic_goes() {
        let c = compile_files(&[
            ("qotm.yaml", mapping_yaml("qotm", "")),
            (
                "qotmv2.yaml",
                mapping_yaml("qotmv2", "weight: 10\ntimeout_ms: soon\n"),
            ),
        ]);
        assert_eq!(shares(&default_routes(&c)[0]), [("qotm".into(), FULL)]);
        let e = errors(&c);
        assert_eq!(e[0].field.as_deref(), Some("timeout_ms"));
        assert!(
            e[0].message.ends_with("its 10% goes back to qotm"),
            "{}",
            e[0].message
        );
    }

    #[test]
    fn duplicates_keep_the_first_in_path_order() {
        let c = compile_files(&[
            ("a.yaml", mapping_yaml("qotm", "")),
            (
                "b.yaml",
                mapping_yaml("qotm", "weight: 10\n").replace("prefix: /qotm/", "prefix: /other/"),
            ),
        ]);
        let routes = default_routes(&c);
        assert_eq!(routes.len(), 1);
        assert_eq!(routes[0].key.prefix, "/qotm/");
        let e = errors(&c);
        assert_eq!(
            (e[0].file.as_str(), e[0].field.as_deref()),
            ("b.yaml", Some("name"))
        );
        assert!(e[0].message.contains("a.yaml:2:1"));
    }

    #[test]
    fn names_clash_only_within_a_fleet() {
        let c = compile_files(&[
            (
                "a.yaml",
                mapping_yaml("qotm", "ambassador_id: [default, edge]\n"),
            ),
            (
                "b.yaml",
                mapping_yaml("qotm", "ambassador_id: edge\nweight: 10\n"),
            ),
            ("c.yaml", mapping_yaml("qotm", "ambassador_id: internal\n")),
        ]);
        let e = errors(&c);
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!(e[0].file, "b.yaml");
        assert!(e[0].message.contains("(fleet edge)"), "{}", e[0].message);
        for fleet in ["default", "edge", "internal"] {
            let routes = &c.tables.fleet(fleet).unwrap().routes;
            assert_eq!(routes[0].backends.len(), 1, "{fleet}");
        }
    }

    #[test]
    fn the_same_name_in_another_namespace_is_not_a_duplicate() {
        let c = compile_files(&[
            ("a.yaml", mapping_yaml("qotm", "")),
            (
                "b.yaml",
                mapping_yaml("qotm", "namespace: canary\nweight: 10\n"),
            ),
        ]);
        assert!(errors(&c).is_empty());
        assert_eq!(default_routes(&c)[0].backends.len(), 2);
    }

    #[test]
    fn shadows_mirror_and_take_no_share() {
        let c = compile_files(&[
            ("a.yaml", mapping_yaml("qotm", "")),
            (
                "b.yaml",
                mapping_yaml("mirror", "shadow: true\nweight: 5\n"),
            ),
            ("c.yaml", mapping_yaml("mirror2", "shadow: true\n")),
        ]);
        let r = &default_routes(&c)[0];
        assert_eq!(shares(r), [("qotm".into(), FULL)]);
        let s = r.shadow.as_ref().unwrap();
        assert_eq!((s.mapping.id.name.as_str(), s.percent_bp), ("mirror", 500));
        let e = errors(&c);
        assert_eq!((e.len(), e[0].file.as_str()), (1, "c.yaml"));
    }

    #[test]
    fn a_route_with_only_a_shadow_is_an_error() {
        let c = compile_files(&[("b.yaml", mapping_yaml("mirror", "shadow: true\n"))]);
        assert!(default_routes(&c).is_empty());
        assert_eq!(errors(&c)[0].field.as_deref(), Some("shadow"));
    }

    #[test]
    fn fleets_have_their_own_tables() {
        let c = compile_files(&[
            ("a.yaml", mapping_yaml("qotm", "")),
            (
                "b.yaml",
                mapping_yaml("edge", "ambassador_id: [edge]\n").replace("/qotm/", "/edge/"),
            ),
            (
                "c.yaml",
                mapping_yaml("both", "ambassador_id: [edge, default]\n")
                    .replace("/qotm/", "/both/"),
            ),
        ]);
        let names = |f: &str| -> Vec<String> {
            c.tables
                .fleet(f)
                .unwrap()
                .routes
                .iter()
                .map(|r| r.key.prefix.clone())
                .collect()
        };
        assert_eq!(names("default"), ["/both/", "/qotm/"]);
        assert_eq!(names("edge"), ["/both/", "/edge/"]);
    }

    #[test]
    fn routes_are_ordered_as_envoy_tries_them() {
        let m = |name: &str, prefix: &str, extra: &str| {
            (
                format!("{name}.yaml"),
                mapping_yaml(name, extra).replace("/qotm/", prefix),
            )
        };
        let files = [
            m("root", "/", ""),
            m("short", "/a/", ""),
            m("long", "/a/b/", ""),
            m("hdr", "/a/", "headers: {x-canary: \"true\"}\n"),
            m("prec", "/", "precedence: 10\n"),
            m("get", "/a/", "method: GET\n"),
        ];
        let files: Vec<(&str, String)> =
            files.iter().map(|(f, y)| (f.as_str(), y.clone())).collect();
        let c = compile_files(&files);
        let order: Vec<String> = default_routes(&c)
            .iter()
            .map(|r| r.backends[0].mapping.id.name.clone())
            .collect();
        // get and hdr tie on matchers and prefix; no method sorts before GET.
        assert_eq!(order, ["prec", "long", "hdr", "get", "short", "root"]);
    }

    #[test]
    fn header_order_does_not_split_a_group() {
        let c = compile_files(&[
            (
                "a.yaml",
                mapping_yaml("a", "headers: {x: \"1\", y: \"2\"}\n"),
            ),
            (
                "b.yaml",
                mapping_yaml("b", "weight: 10\nheaders: {y: \"2\", x: \"1\"}\n"),
            ),
        ]);
        assert_eq!(default_routes(&c).len(), 1);
    }

    #[test]
    fn host_case_joins_groups_and_method_none_differs_from_get() {
        let c = compile_files(&[
            ("a.yaml", mapping_yaml("a", "host: Foo.com\n")),
            ("b.yaml", mapping_yaml("b", "weight: 10\nhost: foo.COM\n")),
            ("c.yaml", mapping_yaml("c", "method: GET\n")),
            ("d.yaml", mapping_yaml("d", "")),
        ]);
        let sizes: Vec<usize> = default_routes(&c)
            .iter()
            .map(|r| r.backends.len())
            .collect();
        assert_eq!(sizes, [2, 1, 1]);
    }

    #[test]
    fn shared_clusters_need_agreeing_settings() {
        let c = compile_files(&[
            (
                "a.yaml",
                mapping_yaml("a", "connect_timeout_ms: 1000\n").replace("service: a", "service: s"),
            ),
            (
                "b.yaml",
                mapping_yaml("b", "connect_timeout_ms: 2000\n")
                    .replace("service: b", "service: s")
                    .replace("/qotm/", "/b/"),
            ),
        ]);
        let e = errors(&c);
        assert_eq!((e.len(), e[0].file.as_str()), (1, "b.yaml"));
        assert_eq!(e[0].field.as_deref(), Some("connect_timeout_ms"));
        assert_eq!(default_routes(&c).len(), 1);
    }

    #[test]
    fn cluster_names_follow_the_published_rule() {
        let c = compile_files(&[
            // /qotm/: a weighted route over qotm and qotmv2.
            ("a.yaml", mapping_yaml("qotm", "")),
            ("b.yaml", mapping_yaml("qotmv2", "weight: 10\n")),
            // /other/: qotm alone: its shared cluster yields the plain name to /qotm/'s backend.
            (
                "c.yaml",
                mapping_yaml("other", "")
                    .replace("service: other", "service: qotm")
                    .replace("/qotm/", "/other/"),
            ),
            (
                "d.yaml",
                mapping_yaml("tls", "")
                    .replace("service: tls", "service: https://api.example.com:8443")
                    .replace("/qotm/", "/tls/"),
            ),
            (
                "e.yaml",
                mapping_yaml("tagged", "cluster_tag: blue\n")
                    .replace("service: tagged", "service: qotm.prod:8080")
                    .replace("/qotm/", "/tag/"),
            ),
        ]);
        assert!(errors(&c).is_empty(), "{:?}", c.diagnostics);
        let names: BTreeSet<&str> = c
            .tables
            .fleet("default")
            .unwrap()
            .clusters
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            names,
            BTreeSet::from([
                "qotm",
                "qotm__shared",
                "qotmv2",
                "api_example_com_8443_https",
                "qotm_prod_8080_blue"
            ])
        );
        let weighted = &default_routes(&c)
            .iter()
            .find(|r| r.key.prefix == "/qotm/")
            .unwrap()
            .backends;
        assert_eq!(
            (weighted[0].cluster.as_str(), weighted[1].cluster.as_str()),
            ("qotm", "qotmv2")
        );
    }

    #[test]
    fn one_service_in_two_weighted_routes_gets_a_cluster_per_mapping() {
        let c = compile_files(&[
            (
                "a.yaml",
                mapping_yaml("a", "").replace("service: a", "service: main"),
            ),
            (
                "b.yaml",
                mapping_yaml("b", "weight: 10\n").replace("service: b", "service: canary"),
            ),
            (
                "c.yaml",
                mapping_yaml("c", "")
                    .replace("service: c", "service: main")
                    .replace("/qotm/", "/c/"),
            ),
            (
                "d.yaml",
                mapping_yaml("d", "weight: 20\n")
                    .replace("service: d", "service: canary")
                    .replace("/qotm/", "/c/"),
            ),
        ]);
        let names: BTreeSet<&str> = c
            .tables
            .fleet("default")
            .unwrap()
            .clusters
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            names,
            BTreeSet::from(["main__a", "main__c", "canary__b", "canary__d"])
        );
    }

    #[test]
    fn reserved_and_sanitized_names_never_collide() {
        let c = compile_files(&[
            (
                "a.yaml",
                mapping_yaml("a", "").replace("service: a", "service: xds_cluster"),
            ),
            (
                "b.yaml",
                mapping_yaml("b", "")
                    .replace("service: b", "service: x.y")
                    .replace("/qotm/", "/b/"),
            ),
            (
                "c.yaml",
                mapping_yaml("c", "")
                    .replace("service: c", "service: x_y")
                    .replace("/qotm/", "/c/"),
            ),
        ]);
        let names: BTreeSet<&str> = c
            .tables
            .fleet("default")
            .unwrap()
            .clusters
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(names, BTreeSet::from(["xds_cluster_2", "x_y", "x_y_2"]));
    }

    fn warnings(c: &Compiled) -> Vec<&Diagnostic> {
        c.diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Warning)
            .collect()
    }

    #[test]
    fn rule_1_a_lone_mapping_with_weight_0_gets_everything_with_a_warning() {
        let c = compile_files(&[("a.yaml", mapping_yaml("qotm", "weight: 0\n"))]);
        assert_eq!(shares(&default_routes(&c)[0]), [("qotm".into(), FULL)]);
        let w = warnings(&c);
        assert_eq!(w.len(), 1, "{:?}", c.diagnostics);
        assert!(
            w[0].message.contains("still receives 100%"),
            "{}",
            w[0].message
        );
        assert_eq!((w[0].line, w[0].field.as_deref()), (7, Some("weight")));
    }

    #[test]
    fn rule_3_leftovers_go_by_namespace_and_name_whatever_the_files() {
        // Three unweighted Mappings beside a 10% canary: 9000 / 3 = 3000 each; with 10.01%,
        // 8999 / 3 = 2999 rest 2: the first two in (namespace, name) order get one more.
        let c = compile_files(&[
            ("1.yaml", mapping_yaml("c", "namespace: a\n")),
            ("2.yaml", mapping_yaml("a", "namespace: b\n")),
            ("3.yaml", mapping_yaml("b", "namespace: a\n")),
            ("4.yaml", mapping_yaml("z", "weight: 10.01\n")),
        ]);
        let r = &default_routes(&c)[0];
        let got: Vec<(String, Bp)> = r
            .backends
            .iter()
            .map(|b| (b.mapping.id.to_string(), b.weight_bp))
            .collect();
        assert_eq!(
            got,
            [
                ("b.a".to_string(), 3000),
                ("c.a".into(), 3000),
                ("a.b".into(), 2999),
                ("z".into(), 1001)
            ]
        );
    }

    #[test]
    fn rule_5_exactly_100_leaves_the_unweighted_with_0_and_a_warning() {
        let c = compile_files(&[
            ("a.yaml", mapping_yaml("qotm", "")),
            ("b.yaml", mapping_yaml("qotmv2", "weight: 100\n")),
        ]);
        assert_eq!(
            shares(&default_routes(&c)[0]),
            [("qotm".into(), 0), ("qotmv2".into(), FULL)]
        );
        let w = warnings(&c);
        assert_eq!(w.len(), 1);
        assert_eq!(
            (w[0].file.as_str(), w[0].mapping.as_deref()),
            ("a.yaml", Some("qotm"))
        );
        assert!(w[0].message.contains("receives 0%"), "{}", w[0].message);
    }

    #[test]
    fn rule_6_under_100_is_scaled_up_with_a_warning() {
        let c = compile_files(&[
            ("a.yaml", mapping_yaml("a", "weight: 20\n")),
            ("b.yaml", mapping_yaml("b", "weight: 30\n")),
        ]);
        assert_eq!(
            shares(&default_routes(&c)[0]),
            [("a".into(), 4000), ("b".into(), 6000)]
        );
        let w = warnings(&c);
        assert_eq!(w.len(), 1);
        assert!(
            w[0].message.contains("a 20% -> 40%, b 30% -> 60%"),
            "{}",
            w[0].message
        );
    }

    #[test]
    fn rule_7_all_weights_0_is_an_error() {
        let c = compile_files(&[
            ("a.yaml", mapping_yaml("a", "weight: 0\n")),
            ("b.yaml", mapping_yaml("b", "weight: 0\n")),
        ]);
        assert!(default_routes(&c).is_empty());
        let e = errors(&c);
        assert_eq!(e.len(), 1);
        assert!(
            e[0].message.contains("every weight is 0"),
            "{}",
            e[0].message
        );
    }

    #[test]
    fn rule_8_the_second_shadow_in_path_order_is_left_out() {
        // Path order is file, then document: "a-mirror" comes second although its name sorts
        // first.
        let doc = mapping_yaml("z-mirror", "shadow: true\n")
            + &mapping_yaml("a-mirror", "shadow: true\nweight: 50\n");
        let c = compile_files(&[("a.yaml", mapping_yaml("qotm", "")), ("b.yaml", doc)]);
        let s = default_routes(&c)[0].shadow.as_ref().unwrap();
        assert_eq!(
            (s.mapping.id.name.as_str(), s.percent_bp),
            ("z-mirror", FULL)
        );
        let e = errors(&c);
        assert_eq!(e.len(), 1);
        assert_eq!(
            (e[0].mapping.as_deref(), e[0].field.as_deref()),
            (Some("a-mirror"), Some("shadow"))
        );
    }

    #[test]
    fn rule_10_each_backend_keeps_its_own_settings() {
        let c = compile_files(&[
            (
                "a.yaml",
                mapping_yaml(
                    "qotm",
                    "rewrite: /v1/\ntimeout_ms: 1000\nadd_request_headers: {x-version: v1}\n",
                ),
            ),
            (
                "b.yaml",
                mapping_yaml(
                    "qotmv2",
                    "weight: 10\nrewrite: \"\"\nidle_timeout_ms: 500\nhost_rewrite: v2.internal\n\
                     remove_response_headers: [server]\nallow_upgrade: [websocket]\n",
                ),
            ),
        ]);
        assert!(c.diagnostics.is_empty(), "{:?}", c.diagnostics);
        let r = &default_routes(&c)[0];
        let (v1, v2) = (&r.backends[0].mapping, &r.backends[1].mapping);
        assert_eq!(v1.route.rewrite.as_deref(), Some("/v1/"));
        assert_eq!(v2.route.rewrite, None);
        assert_eq!((v1.route.timeout_ms, v2.route.timeout_ms), (1000, 3000));
        assert_eq!(v2.route.idle_timeout_ms, Some(500));
        assert!(v2.route.upgrades.contains("websocket") && v1.route.upgrades.is_empty());
        assert_eq!(v1.backend.add_request_headers["x-version"].value, "v1");
        assert!(v2.backend.add_request_headers.is_empty());
        assert_eq!(v2.backend.host_rewrite.as_deref(), Some("v2.internal"));
        assert!(v2.backend.remove_response_headers.contains("server"));
        assert!(v1.backend.remove_response_headers.is_empty());
    }

    #[test]
    fn a_duplicate_of_a_mapping_with_an_error_is_still_a_duplicate() {
        let c = compile_files(&[
            ("a.yaml", mapping_yaml("qotm", "timeout_ms: soon\n")),
            ("b.yaml", mapping_yaml("qotm", "")),
        ]);
        assert!(default_routes(&c).is_empty());
        let e = errors(&c);
        assert_eq!(e.len(), 2, "{e:?}");
        assert_eq!(
            (e[1].file.as_str(), e[1].field.as_deref()),
            ("b.yaml", Some("name"))
        );
        assert!(e[1].message.contains("a.yaml:2:1"), "{}", e[1].message);
    }

    #[test]
    fn a_mapping_without_a_name_or_route_says_it_is_left_out() {
        let c = compile_files(&[(
            "a.yaml",
            "apiVersion: ambassador/v1\nkind: Mapping\nprefix: /a/\nservice: a\n---\n\
             apiVersion: ambassador/v1\nkind: Mapping\nname: b\nprefix: b\nservice: b\n"
                .to_string(),
        )]);
        let e = errors(&c);
        assert_eq!(e.len(), 2);
        for d in e {
            assert!(
                d.message.ends_with("; the Mapping is left out"),
                "{}",
                d.message
            );
        }
    }

    #[test]
    fn diagnostics_carry_file_line_column_mapping_and_field() {
        let c = compile_files(&[
            ("qotm.yaml", mapping_yaml("qotm", "")),
            ("dir/qotmv2.yaml", mapping_yaml("qotmv2", "weight:   101\n")),
        ]);
        let e = errors(&c);
        assert_eq!(e.len(), 1);
        let d = e[0];
        assert_eq!(
            (
                d.file.as_str(),
                d.line,
                d.column,
                d.mapping.as_deref(),
                d.field.as_deref()
            ),
            ("dir/qotmv2.yaml", 7, 11, Some("qotmv2"), Some("weight"))
        );
        assert_eq!(
            d.message,
            "weight must be between 0 and 100, found 101; the Mapping is left out and route \
             /qotm/ goes on with qotm 100%"
        );
    }

    #[test]
    fn grouping_treats_query_and_regex_headers_as_sets_and_authority_as_host() {
        let c = compile_files(&[
            (
                "a.yaml",
                mapping_yaml(
                    "a",
                    "host: foo.com\nquery_parameters: {a: \"1\", b: true}\n\
                     regex_headers: {x: \"^1\", y: \"^2\"}\n",
                ),
            ),
            (
                "b.yaml",
                mapping_yaml(
                    "b",
                    "weight: 10\nheaders: {\":authority\": FOO.com}\n\
                     query_parameters: {b: true, a: \"1\"}\nregex_headers: {y: \"^2\", x: \"^1\"}\n",
                ),
            ),
        ]);
        assert!(errors(&c).is_empty(), "{:?}", c.diagnostics);
        let routes = default_routes(&c);
        assert_eq!(routes.len(), 1);
        assert_eq!(shares(&routes[0]), [("a".into(), 9000), ("b".into(), 1000)]);
    }

    #[test]
    fn namespace_is_not_part_of_the_group() {
        let c = compile_files(&[
            ("a.yaml", mapping_yaml("qotm", "namespace: prod\n")),
            (
                "b.yaml",
                mapping_yaml("qotmv2", "namespace: canary\nweight: 10\n"),
            ),
        ]);
        let r = default_routes(&c);
        assert_eq!(r.len(), 1);
        assert_eq!(
            shares(&r[0]),
            [("qotmv2".into(), 1000), ("qotm".into(), 9000)]
        );
    }

    #[test]
    fn every_part_of_the_match_makes_its_own_group() {
        let variants = [
            "",
            "precedence: 1\n",
            "host: foo.com\n",
            "host: \"^foo\"\nhost_regex: true\n",
            "method: GET\n",
            "method: POST\n",
            "case_sensitive: false\n",
            "headers: {x: \"1\"}\n",
            "headers: {x: true}\n",
            "regex_headers: {x: \"1\"}\n",
            "query_parameters: {x: \"1\"}\n",
            "query_parameters: {x: true}\n",
        ];
        let mut files: Vec<(String, String)> = variants
            .iter()
            .enumerate()
            .map(|(i, v)| (format!("{i:02}.yaml"), mapping_yaml(&format!("m{i:02}"), v)))
            .collect();
        files.push((
            "98.yaml".into(),
            mapping_yaml("regex", "prefix_regex: true\n"),
        ));
        files.push((
            "99.yaml".into(),
            mapping_yaml("longer", "").replace("/qotm/", "/qotm/x"),
        ));
        let files: Vec<(&str, String)> =
            files.iter().map(|(f, y)| (f.as_str(), y.clone())).collect();
        let c = compile_files(&files);
        assert!(errors(&c).is_empty(), "{:?}", c.diagnostics);
        assert_eq!(default_routes(&c).len(), variants.len() + 2);
    }

    #[test]
    fn ties_in_route_order_fall_to_prefix_then_method_then_matchers() {
        let m = |name: &str, prefix: &str, extra: &str| {
            (
                format!("{name}.yaml"),
                mapping_yaml(name, extra).replace("/qotm/", prefix),
            )
        };
        let files = [
            // Equal length and matcher count: the prefix string decides.
            m("a1", "/b/", ""),
            m("a2", "/a/", ""),
            // Equal prefix and count: the method decides, then the header text.
            m("b1", "/c/", "method: POST\n"),
            m("b2", "/c/", "method: GET\n"),
            m("c1", "/d/", "headers: {y: \"1\"}\n"),
            m("c2", "/d/", "headers: {x: \"1\"}\n"),
            // A longer regex prefix goes before a shorter plain one.
            m("d1", "^/e.*$", "prefix_regex: true\n"),
        ];
        let files: Vec<(&str, String)> =
            files.iter().map(|(f, y)| (f.as_str(), y.clone())).collect();
        let c = compile_files(&files);
        let order: Vec<String> = default_routes(&c)
            .iter()
            .map(|r| r.backends[0].mapping.id.name.clone())
            .collect();
        assert_eq!(order, ["d1", "b2", "b1", "c2", "c1", "a2", "a1"]);
    }

    /// Valid files to mutate: every form and most fields.
    const CORPUS: &[&str] = &[
        "apiVersion: ambassador/v1\nkind: Mapping\nname: qotm\nprefix: /qotm/\nservice: qotm\n",
        "apiVersion: ambassador/v1\nkind: Mapping\nname: qotmv2\nprefix: /qotm/\n\
         service: qotmv2\nweight: 10\n",
        "apiVersion: getambassador.io/v2\nkind: Mapping\nmetadata:\n  name: canary\n  \
         namespace: prod\nspec:\n  prefix: /qotm/\n  service: https://qotm.prod:8443\n  \
         weight: 4.35\n  headers:\n    x-canary: \"true\"\n    :authority: Foo.com\n  \
         ambassador_id: [default, edge]\n",
        "---\napiVersion: ambassador/v0\nkind: Module\nname: ambassador\n---\n\
         apiVersion: ambassador/v1\nkind: Mapping\nname: m\nprefix: ^/q.*$\nprefix_regex: true\n\
         service: m:8080\nshadow: true\nweight: 0.5\nrewrite: \"\"\n\
         query_parameters: {debug: true}\nregex_headers: {x-user: \"^a\"}\n",
        "apiVersion: getambassador.io/v3alpha1\nkind: Mapping\nmetadata: {name: full}\nspec:\n  \
         prefix: /full/\n  service: full\n  host: full.example.com\n  method: GET\n  \
         precedence: 2\n  timeout_ms: 0\n  idle_timeout_ms: 5\n  connect_timeout_ms: 9\n  \
         host_rewrite: x\n  add_request_headers: {a: b, c: {value: d, append: false}}\n  \
         add_response_headers: {e: f}\n  remove_request_headers: [g]\n  \
         remove_response_headers: h\n  case_sensitive: false\n  cluster_tag: t\n  grpc: true\n  \
         allow_upgrade: [websocket]\n  use_websocket: true\n  \
         retry_policy: {retry_on: 5xx, num_retries: 2, per_try_timeout: 1s}\n  cors: {}\n",
        "a: &a [x, *b]\nb: &b {k: *a}\n<<: *b\n",
    ];

    /// One edit of a file: what to do, where (modulo the length) and with which byte.
    fn mutation() -> impl Strategy<Value = (u8, usize, u8)> {
        let interesting =
            prop::sample::select(b":-[]{}&*!|>'\"#%@`,?\n\t 0123456789.~\\\xff\xc3\x00".to_vec());
        (
            0u8..5,
            any::<usize>(),
            prop_oneof![interesting, any::<u8>()],
        )
    }

    fn mutate(base: &str, edits: &[(u8, usize, u8)]) -> Vec<u8> {
        let mut bytes = base.as_bytes().to_vec();
        for &(op, at, byte) in edits {
            let at = at % (bytes.len() + 1);
            match op {
                0 => bytes.insert(at, byte),
                1 if at < bytes.len() => bytes[at] = byte,
                2 if at < bytes.len() => {
                    let end = (at + usize::from(byte % 16) + 1).min(bytes.len());
                    bytes.drain(at..end);
                }
                3 => {
                    // Repeat a short stretch: indentation and structure get shuffled.
                    let end = (at + usize::from(byte % 32) + 1).min(bytes.len());
                    let stretch = bytes[at.min(end)..end].to_vec();
                    bytes.splice(at..at, stretch);
                }
                _ => bytes.truncate(at),
            }
        }
        bytes
    }

    fn compile_bytes(files: &[Vec<u8>]) -> Compiled {
        let parsed: Vec<ParsedFile> = files
            .iter()
            .enumerate()
            .map(|(i, b)| parse_file(&format!("f{i}.yaml"), b))
            .collect();
        let first = compile(&parsed, None);
        // And once more with a fallback, as `serve` compiles.
        compile(&parsed, Some(&first.tables))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn random_bytes_never_panic(files in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..512), 1..4)) {
            let started = std::time::Instant::now();
            compile_bytes(&files);
            prop_assert!(started.elapsed() < std::time::Duration::from_secs(5));
        }

        #[test]
        fn mutated_mappings_never_panic(
            picks in prop::collection::vec((0..CORPUS.len(), prop::collection::vec(mutation(), 1..8)), 1..5)
        ) {
            let files: Vec<Vec<u8>> = picks.iter().map(|(i, edits)| mutate(CORPUS[*i], edits)).collect();
            let started = std::time::Instant::now();
            let c = compile_bytes(&files);
            prop_assert!(started.elapsed() < std::time::Duration::from_secs(5));
            for t in c.tables.fleets.values() {
                for r in &t.routes {
                    prop_assert_eq!(r.backends.iter().map(|b| b.weight_bp).sum::<Bp>(), FULL);
                }
            }
        }
    }

    #[test]
    fn a_compile_given_the_last_tables_reuses_the_routes_that_did_not_change() {
        let doc = |name: &str, prefix: &str, extra: &str| {
            format!(
                "---\napiVersion: ambassador/v1\nkind: Mapping\nname: {name}\nprefix: {prefix}\nservice: {name}\n{extra}"
            )
        };
        let a = |w: u32| doc("a2", "/a/", &format!("weight: {w}\n")) + &doc("a1", "/a/", "");
        let b = Arc::new(parse_file("b.yaml", doc("b", "/b/", "").as_bytes()));
        let first = compile(
            &[
                Arc::new(parse_file("a.yaml", a(10).as_bytes())),
                Arc::clone(&b),
            ],
            None,
        );
        let files = [Arc::new(parse_file("a.yaml", a(20).as_bytes())), b];
        let second = compile(&files, Some(&first.tables));
        let (one, two) = (default_routes(&first), default_routes(&second));
        let by_prefix = |routes: &[Arc<Route>], p: &str| {
            Arc::clone(routes.iter().find(|r| r.key.prefix == p).unwrap())
        };
        assert!(Arc::ptr_eq(&by_prefix(one, "/b/"), &by_prefix(two, "/b/")));
        assert!(!Arc::ptr_eq(&by_prefix(one, "/a/"), &by_prefix(two, "/a/")));
        let t1 = first.tables.fleet("default").unwrap();
        let t2 = second.tables.fleet("default").unwrap();
        assert!(Arc::ptr_eq(&t1.clusters["b"], &t2.clusters["b"]));
        // And the result is what a compile from nothing gives.
        assert_eq!(second.tables, compile(&files, None).tables);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        /// Whatever changed, a compile that reuses the last tables gives what a compile from
        /// nothing gives, as long as no route is held at its last good weights.
        #[test]
        fn reusing_the_last_tables_changes_nothing(
            before in prop::collection::vec(arbitrary_mapping(), 1..10),
            after in prop::collection::vec(prop::option::of(arbitrary_mapping()), 1..10),
            services in prop::collection::vec(0u8..4, 10),
        ) {
            let doc = |i: usize, body: &str| {
                format!("apiVersion: ambassador/v1\nkind: Mapping\nname: m{i:02}\nservice: s{}\n{body}", services[i])
            };
            let first_files: Vec<Arc<ParsedFile>> = before.iter().enumerate()
                .map(|(i, b)| Arc::new(parse_file(&format!("f{i:02}.yaml"), doc(i, b).as_bytes())))
                .collect();
            let first = compile(&first_files, None);
            // `None` keeps a file as it was (the same parse, as the loader does); files may be
            // added or removed too.
            let files: Vec<Arc<ParsedFile>> = after.iter().enumerate().map(|(i, b)| match (b, first_files.get(i)) {
                (None, Some(f)) => Arc::clone(f),
                (b, _) => {
                    let b = b.as_ref().unwrap_or(&before[0]);
                    Arc::new(parse_file(&format!("f{i:02}.yaml"), doc(i, b).as_bytes()))
                }
            }).collect();
            let reused = compile(&files, Some(&first.tables));
            prop_assume!(reused.tables.fleets.values().all(|t| t.routes.iter().all(|r| r.held.is_none())));
            let fresh = compile(&files, None);
            prop_assert_eq!(&reused.tables, &fresh.tables);
            prop_assert_eq!(reused.diagnostics, fresh.diagnostics);
        }
    }

    /// A Mapping whose weight and timeout may move: its weight line comes last, so that moving
    /// it moves nothing else. `None` for the weight leaves the line out.
    fn movable() -> impl Strategy<Value = (String, Option<u32>, Option<u32>, u32, u32)> {
        (
            prop::sample::select(vec!["/a/", "/b/", "/c/"]),
            prop::option::of(prop::sample::select(vec!["foo.com", "bar.com"])),
            prop::sample::select(vec![
                "",
                "",
                "",
                "shadow: true\n",
                "ambassador_id: [blue]\n",
                "name: dup\n",
            ]),
            prop::option::of(0u32..=120),
            prop::option::of(0u32..=120),
            1000u32..1003,
            1000u32..1003,
        )
            .prop_map(|(prefix, host, extra, before, after, t1, t2)| {
                let host = host.map(|h| format!("host: {h}\n")).unwrap_or_default();
                (
                    format!("prefix: {prefix}\n{host}{extra}"),
                    before,
                    after,
                    t1,
                    t2,
                )
            })
    }

    #[test]
    fn a_weight_change_recompiles_only_its_route() {
        let doc = |name: &str, prefix: &str, w: Option<u32>| {
            let w = w.map(|w| format!("weight: {w}\n")).unwrap_or_default();
            format!(
                "---\napiVersion: ambassador/v1\nkind: Mapping\nname: {name}\nprefix: {prefix}\nservice: {name}\n{w}"
            )
        };
        let a = |w| doc("a2", "/a/", Some(w)) + &doc("a1", "/a/", None);
        let b = Arc::new(parse_file("b.yaml", doc("b", "/b/", Some(120)).as_bytes()));
        let before = vec![
            Arc::new(parse_file("a.yaml", a(10).as_bytes())),
            Arc::clone(&b),
        ];
        let first = compile(&before, None);
        let after = vec![Arc::new(parse_file("a.yaml", a(30).as_bytes())), b];
        let quick = recompile_routes(&before, &first, &after).expect("a weight-only change");
        let full = compile(&after, Some(&first.tables));
        assert_eq!(quick.tables, full.tables);
        assert_eq!(quick.diagnostics, full.diagnostics);
        let shares: Vec<Bp> = default_routes(&quick)[0]
            .backends
            .iter()
            .map(|b| b.weight_bp)
            .collect();
        assert_eq!(shares, [7000, 3000]);
        // Anything but a weight is a full compile's work.
        let moved = vec![
            Arc::new(parse_file("a.yaml", a(30).replace("/a/", "/z/").as_bytes())),
            Arc::clone(&after[1]),
        ];
        assert!(recompile_routes(&before, &first, &moved).is_none());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Whenever `recompile_routes` takes a change on, it gives what the full compile gives.
        #[test]
        fn recompiling_routes_agrees_with_the_full_compile(
            mappings in prop::collection::vec(movable(), 1..12),
            per_file in 1usize..4,
            changed in prop::collection::vec(prop::bool::ANY, 12),
        ) {
            let doc = |i: usize, body: &str, w: Option<u32>, t: u32| {
                let w = w.map(|w| format!("weight: {w}\n")).unwrap_or_default();
                let name = if body.contains("name: dup") { String::new() } else { format!("name: m{i:02}\n") };
                format!("---\napiVersion: ambassador/v1\nkind: Mapping\n{name}service: s{}\n{body}timeout_ms: {t}\n{w}", i % 3)
            };
            let files = |after: bool| -> Vec<Arc<ParsedFile>> {
                mappings.chunks(per_file).enumerate().map(|(f, chunk)| {
                    let text: String = chunk.iter().enumerate().map(|(j, (body, before, later, t1, t2))| {
                        let i = f * per_file + j;
                        if after && changed[f] { doc(i, body, *later, *t2) } else { doc(i, body, *before, *t1) }
                    }).collect();
                    Arc::new(parse_file(&format!("f{f:02}.yaml"), text.as_bytes()))
                }).collect()
            };
            let before = files(false);
            let first = compile(&before, None);
            // Unchanged files are the very same parse, as the loader gives them.
            let after: Vec<Arc<ParsedFile>> = files(true).into_iter().zip(&before).enumerate()
                .map(|(f, (new, old))| if changed[f] { new } else { Arc::clone(old) })
                .collect();
            if let Some(quick) = recompile_routes(&before, &first, &after) {
                let full = compile(&after, Some(&first.tables));
                prop_assert_eq!(&quick.tables, &full.tables);
                prop_assert_eq!(quick.diagnostics, full.diagnostics);
            }
        }
    }

    #[test]
    fn the_corpus_is_valid_before_mutation() {
        // Only the last entry (aliases, no Mapping) is meant to be refused.
        for doc in &CORPUS[..CORPUS.len() - 1] {
            let p = parse_file("c.yaml", doc.as_bytes());
            assert!(!p.has_errors(), "{doc}: {:?}", p.diagnostics);
            assert!(!p.mappings.is_empty(), "{doc}");
        }
    }

    fn arbitrary_mapping() -> impl Strategy<Value = String> {
        (
            prop::sample::select(vec!["/a/", "/b/", "/a/b/"]),
            prop::option::of(prop::sample::select(vec!["GET", "POST"])),
            prop::option::of(prop::sample::select(vec!["foo.com", "bar.com"])),
            prop::option::of(0u32..=60),
            prop::option::of(-1i32..=1),
            prop::bool::ANY,
        )
            .prop_map(|(prefix, method, host, weight, precedence, header)| {
                let mut extra = String::new();
                if let Some(m) = method {
                    extra.push_str(&format!("method: {m}\n"));
                }
                if let Some(h) = host {
                    extra.push_str(&format!("host: {h}\n"));
                }
                if let Some(w) = weight {
                    extra.push_str(&format!("weight: {w}\n"));
                }
                if let Some(p) = precedence {
                    extra.push_str(&format!("precedence: {p}\n"));
                }
                if header {
                    extra.push_str("headers: {x-canary: \"true\"}\n");
                }
                format!("prefix: {prefix}\n{extra}")
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn the_table_does_not_depend_on_file_order_or_names(
            bodies in prop::collection::vec(arbitrary_mapping(), 1..12),
            rotate in 0usize..12,
        ) {
            let docs: Vec<(String, String)> = bodies.iter().enumerate().map(|(i, body)| {
                (format!("f{i:02}.yaml"), format!("apiVersion: ambassador/v1\nkind: Mapping\nname: m{i:02}\nservice: s{i}\n{body}"))
            }).collect();
            let mut renamed = docs.clone();
            renamed.rotate_left(rotate % docs.len());
            // Rename files so that the path order changes too.
            let renamed: Vec<(String, String)> = renamed.into_iter().enumerate().map(|(i, (_, y))| (format!("g{i:02}.yaml"), y)).collect();
            let a = compile_files(&docs.iter().map(|(f, y)| (f.as_str(), y.clone())).collect::<Vec<_>>());
            let b = compile_files(&renamed.iter().map(|(f, y)| (f.as_str(), y.clone())).collect::<Vec<_>>());
            type View = Vec<(RouteKey, Vec<(String, Bp, String)>)>;
            let view = |c: &Compiled| -> View {
                default_routes(c).iter().map(|r| (r.key.clone(), r.backends.iter().map(|b| (b.mapping.id.name.clone(), b.weight_bp, b.cluster.clone())).collect())).collect()
            };
            prop_assert_eq!(view(&a), view(&b));
            // Renaming the Mappings (reversing the name order) moves no route either.
            let n = docs.len();
            let renamed_mappings: Vec<(String, String)> = docs.iter().enumerate().map(|(i, (f, y))| {
                (f.clone(), y.replace(&format!("name: m{i:02}\n"), &format!("name: x{:02}\n", n - i)))
            }).collect();
            let d = compile_files(&renamed_mappings.iter().map(|(f, y)| (f.as_str(), y.clone())).collect::<Vec<_>>());
            let keys = |c: &Compiled| -> Vec<RouteKey> { default_routes(c).iter().map(|r| r.key.clone()).collect() };
            prop_assert_eq!(keys(&a), keys(&d));
            for r in default_routes(&a) {
                prop_assert_eq!(r.backends.iter().map(|b| b.weight_bp).sum::<Bp>(), FULL);
            }
        }
    }
}
