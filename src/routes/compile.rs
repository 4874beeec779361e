//! The full compile: parsed files to every fleet's route table. Mappings are deduplicated per
//! fleet, grouped by route key, put in Envoy's order, and each group's weights split; a group
//! that cannot be split keeps its last good route (`serve`) or is left out (`check`).

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::collections::BTreeSet;
use std::collections::hash_map::Entry;
use std::sync::Arc;

use foldhash::{HashMap, HashMapExt, HashSet};

use super::clusters::{assign_clusters, reuse_clusters, same_clusters};
use super::explain::explain_rejected;
use super::order::order_key;
use super::{Backend, Compiled, Route, RouteTable, Shadow, Tables, describe, route_order};
use crate::input::parse::ParsedFile;
use crate::model::diagnostic::{Diagnostic, Severity};
use crate::model::mapping::{Bp, DEFAULT_FLEET, FULL, Mapping, MappingId, Origin, RouteKey};
use crate::model::weights::{self, Member, Remark, SplitError, percent};

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

/// The order diagnostics are reported in: file, line, column, severity, message.
pub fn diagnostic_order(a: &Diagnostic, b: &Diagnostic) -> Ordering {
    (&a.file, a.line, a.column, a.severity, &a.message)
        .cmp(&(&b.file, b.line, b.column, b.severity, &b.message))
}

pub(super) fn is_default_only(fleets: &BTreeSet<String>) -> bool {
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

pub(super) fn remark_on(
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
