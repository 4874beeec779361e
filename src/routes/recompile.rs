//! The incremental compile: when only what routes carry changed (weights, route and backend
//! settings), rebuild just those routes and keep every other route and cluster as it was.

use std::cmp::Ordering;
use std::sync::Arc;

use foldhash::{HashMap, HashMapExt};

use super::compile::{is_default_only, remark_on};
use super::{Backend, Compiled, Route, Shadow, describe, diagnostic_order};
use crate::input::parse::ParsedFile;
use crate::model::diagnostic::Diagnostic;
use crate::model::mapping::{Bp, DEFAULT_FLEET, FULL, Mapping, RouteKey};
use crate::model::weights::{self, Member};

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
