//! The diff itself: routes matched by their match (never by position), backends by Mapping,
//! clusters by name, diagnostics by what they say.

use std::collections::{BTreeMap, BTreeSet};

use foldhash::{HashMap, HashMapExt};

use super::overlap::may_overlap;
use super::report::{
    BackendDelta, ClusterDelta, DiffReport, FleetDiff, MirrorEnd, RouteChange, RouteDiff,
    ShadowDelta, cluster_stats,
};
use super::risk::risk_notes;
use super::settings::setting_deltas;
use super::side::{BackendView, DiffSide, RouteView};
use crate::model::diagnostic::{Diagnostic, Severity};
use crate::model::mapping::RouteKey;
use crate::routes::describe;

/// Which fleets to compare.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FleetScope<'a> {
    One(&'a str),
    All,
}

/// Everything that differs from `base` to `new`, in the fleets of `scope`.
pub fn diff_sides(base: &DiffSide, new: &DiffSide, scope: FleetScope<'_>) -> DiffReport {
    let names: BTreeSet<&str> = match scope {
        FleetScope::One(name) => BTreeSet::from([name]),
        FleetScope::All => base
            .fleets
            .keys()
            .chain(new.fleets.keys())
            .map(String::as_str)
            .collect(),
    };
    let empty = Vec::new();
    let mut report = DiffReport {
        settings_compared: base.has_settings() && new.has_settings(),
        ..DiffReport::default()
    };
    for name in names {
        let b = base.fleets.get(name).unwrap_or(&empty);
        let n = new.fleets.get(name).unwrap_or(&empty);
        let mut fleet = diff_fleet(b, n);
        fleet.fleet = name.to_string();
        fleet.in_base = !b.is_empty();
        fleet.in_new = !n.is_empty();
        report.risks.extend(risk_notes(name, b, n, &fleet));
        report.fleets.push(fleet);
    }
    let (added, fixed) = diagnostic_changes(&base.diagnostics, &new.diagnostics);
    report.new_diagnostics = added;
    report.fixed_diagnostics = fixed;
    report.new_errors = new
        .diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .count();
    report.risks.extend(risk_notes_held(new));
    report
}

/// The held-back notes of NEW: every diagnostic that says `serve` keeps something at its last
/// good state.
fn risk_notes_held(new: &DiffSide) -> Vec<super::report::RiskNote> {
    new.diagnostics
        .iter()
        .filter(|d| d.held_back)
        .map(|d| super::report::RiskNote {
            risk: super::report::RiskKind::HeldBack,
            fleet: None,
            route: None,
            message: format!(
                "{}: {} (the diff shows what would be served)",
                d.file, d.message
            ),
        })
        .collect()
}

/// One fleet's changes (its name and sides are filled in by the caller).
fn diff_fleet(base: &[RouteView], new: &[RouteView]) -> FleetDiff {
    let base_at: HashMap<&RouteKey, usize> = index(base);
    let new_at: HashMap<&RouteKey, usize> = index(new);
    // (position in NEW or BASE order, the diff), merged into one route order at the end.
    let mut diffs: BTreeMap<&RouteKey, RouteDiff> = BTreeMap::new();
    for (j, r) in new.iter().enumerate() {
        match base_at.get(&r.key) {
            None => {
                diffs.insert(&r.key, added_or_removed(r, None, Some(j + 1)));
            }
            Some(&i) => {
                if let Some(d) = changed(&base[i], r, i + 1, j + 1) {
                    diffs.insert(&r.key, d);
                }
            }
        }
    }
    for (i, r) in base.iter().enumerate() {
        if !new_at.contains_key(&r.key) {
            diffs.insert(&r.key, added_or_removed(r, Some(i + 1), None));
        }
    }
    shadowing(base, new, &base_at, &new_at, &mut diffs);
    let mut routes: Vec<(&RouteKey, RouteDiff)> = diffs.into_iter().collect();
    routes.sort_by(|a, b| crate::routes::route_order(a.0, b.0));
    let (clusters_added, clusters_removed) = cluster_changes(base, new);
    FleetDiff {
        routes: routes.into_iter().map(|(_, d)| d).collect(),
        clusters_added,
        clusters_removed,
        ..FleetDiff::default()
    }
}

fn index(routes: &[RouteView]) -> HashMap<&RouteKey, usize> {
    let mut at = HashMap::with_capacity(routes.len());
    for (i, r) in routes.iter().enumerate() {
        at.insert(&r.key, i);
    }
    at
}

fn blank(
    r: &RouteView,
    change: RouteChange,
    before: Option<usize>,
    after: Option<usize>,
) -> RouteDiff {
    RouteDiff {
        change,
        route: describe(&r.key),
        key: r.key.clone(),
        position_before: before,
        position_after: after,
        backends: Vec::new(),
        shadow: None,
        settings: Vec::new(),
        now_shadows: Vec::new(),
        stopped_shadowing: Vec::new(),
        now_shadowed_by: Vec::new(),
        no_longer_shadowed_by: Vec::new(),
        held: None,
    }
}

fn mirror(s: &BackendView) -> MirrorEnd {
    MirrorEnd {
        mapping: s.id.to_string(),
        service: s.service.clone(),
        percent_bp: s.share_bp,
    }
}

/// A route only one side has: every backend appears or goes.
fn added_or_removed(r: &RouteView, before: Option<usize>, after: Option<usize>) -> RouteDiff {
    let removed = after.is_none();
    let change = if removed {
        RouteChange::Removed
    } else {
        RouteChange::Added
    };
    let mut d = blank(r, change, before, after);
    d.backends = r
        .backends
        .iter()
        .map(|b| BackendDelta {
            mapping: b.id.to_string(),
            service: b.service.clone(),
            before_bp: removed.then_some(b.share_bp),
            after_bp: (!removed).then_some(b.share_bp),
        })
        .collect();
    d.shadow = r.shadow.as_ref().map(|s| ShadowDelta {
        before: removed.then(|| mirror(s)),
        after: (!removed).then(|| mirror(s)),
    });
    if !removed {
        d.held.clone_from(&r.held);
    }
    d
}

/// A route both sides have, when its backends, shares, shadow or settings differ.
fn changed(b: &RouteView, n: &RouteView, before: usize, after: usize) -> Option<RouteDiff> {
    if same_route(b, n) {
        return None;
    }
    let mut d = blank(n, RouteChange::Changed, Some(before), Some(after));
    let old: BTreeMap<_, &BackendView> = b.backends.iter().map(|x| (&x.id, x)).collect();
    let now: BTreeMap<_, &BackendView> = n.backends.iter().map(|x| (&x.id, x)).collect();
    let ids: BTreeSet<_> = old.keys().chain(now.keys()).copied().collect();
    for id in ids {
        let (ob, nb) = (old.get(id), now.get(id));
        let service = nb.or(ob).map(|x| x.service.clone()).unwrap_or_default();
        d.backends.push(BackendDelta {
            mapping: id.to_string(),
            service,
            before_bp: ob.map(|x| x.share_bp),
            after_bp: nb.map(|x| x.share_bp),
        });
        if let (Some(ob), Some(nb)) = (ob, nb) {
            setting_deltas(ob, nb, &mut d.settings);
        }
    }
    match (&b.shadow, &n.shadow) {
        (Some(x), Some(y)) if x.id == y.id => {
            if x.share_bp != y.share_bp {
                d.shadow = Some(ShadowDelta {
                    before: Some(mirror(x)),
                    after: Some(mirror(y)),
                });
            }
            setting_deltas(x, y, &mut d.settings);
        }
        (None, None) => {}
        (x, y) => {
            d.shadow = Some(ShadowDelta {
                before: x.as_ref().map(mirror),
                after: y.as_ref().map(mirror),
            });
        }
    }
    d.held.clone_from(&n.held);
    // Only a place in a file moved (or only `held` differs): nothing Envoy would see.
    if d.backends.iter().all(|x| x.before_bp == x.after_bp)
        && d.shadow.is_none()
        && d.settings.is_empty()
    {
        return None;
    }
    Some(d)
}

/// The same backends, shares, shadow and settings, wherever they were read from.
fn same_route(b: &RouteView, n: &RouteView) -> bool {
    let same = |x: &BackendView, y: &BackendView| {
        x.id == y.id
            && x.share_bp == y.share_bp
            && x.service == y.service
            && x.cluster == y.cluster
            && x.weighted == y.weighted
            && (x.settings.is_none() || y.settings.is_none() || x.settings == y.settings)
    };
    b.backends.len() == n.backends.len()
        && b.backends.iter().zip(&n.backends).all(|(x, y)| same(x, y))
        && match (&b.shadow, &n.shadow) {
            (Some(x), Some(y)) => same(x, y),
            (None, None) => true,
            _ => false,
        }
}

/// Which route now shadows which: a route added before a route both sides have, that can match
/// the same requests, takes them from it; a removed one gives them back.
fn shadowing<'a>(
    base: &'a [RouteView],
    new: &'a [RouteView],
    base_at: &HashMap<&RouteKey, usize>,
    new_at: &HashMap<&RouteKey, usize>,
    diffs: &mut BTreeMap<&'a RouteKey, RouteDiff>,
) {
    let mut pairs: Vec<(&RouteKey, &RouteKey, bool)> = Vec::new();
    // (earlier, later, added): added routes against the routes after them in NEW, removed
    // ones against the routes after them in BASE; only routes both sides have can be affected.
    for (routes, other_at, added) in [(new, base_at, true), (base, new_at, false)] {
        for (i, r) in routes.iter().enumerate() {
            if other_at.contains_key(&r.key) {
                continue;
            }
            for later in &routes[i + 1..] {
                if other_at.contains_key(&later.key) && may_overlap(&r.key, &later.key) {
                    pairs.push((&r.key, &later.key, added));
                }
            }
        }
    }
    for (earlier, later, added) in pairs {
        let (e, l) = (describe(earlier), describe(later));
        if let Some(d) = diffs.get_mut(earlier) {
            if added {
                d.now_shadows.push(l.clone());
            } else {
                d.stopped_shadowing.push(l.clone());
            }
        }
        let entry = diffs.entry(later).or_insert_with(|| {
            let r = &new[new_at[later]];
            blank(
                r,
                RouteChange::Moved,
                Some(base_at[later] + 1),
                Some(new_at[later] + 1),
            )
        });
        if added {
            entry.now_shadowed_by.push(e);
        } else {
            entry.no_longer_shadowed_by.push(e);
        }
    }
}

/// The clusters each side's routes use, by name, with their service.
fn clusters(routes: &[RouteView]) -> BTreeMap<&str, &str> {
    routes
        .iter()
        .flat_map(|r| r.backends.iter().chain(&r.shadow))
        .map(|b| (b.cluster.as_str(), b.service.as_str()))
        .collect()
}

fn cluster_changes(
    base: &[RouteView],
    new: &[RouteView],
) -> (Vec<ClusterDelta>, Vec<ClusterDelta>) {
    let (b, n) = (clusters(base), clusters(new));
    let only = |x: &BTreeMap<&str, &str>, y: &BTreeMap<&str, &str>| {
        x.iter()
            .filter(|(name, _)| !y.contains_key(*name))
            .map(|(name, service)| ClusterDelta {
                name: name.to_string(),
                service: service.to_string(),
                stats: cluster_stats(name),
            })
            .collect()
    };
    (only(&n, &b), only(&b, &n))
}

/// A diagnostic as compared: what it says and where, but not its line (an edit above it moves
/// it without changing it).
type DiagnosticKey<'a> = (Severity, &'a str, Option<&'a str>, Option<&'a str>, &'a str);

fn diagnostic_key(d: &Diagnostic) -> DiagnosticKey<'_> {
    (
        d.severity,
        &d.file,
        d.mapping.as_deref(),
        d.field.as_deref(),
        &d.message,
    )
}

/// The diagnostics NEW has and BASE had not, and those BASE had and NEW has not.
fn diagnostic_changes(
    base: &[Diagnostic],
    new: &[Diagnostic],
) -> (Vec<Diagnostic>, Vec<Diagnostic>) {
    let b: BTreeSet<_> = base.iter().map(diagnostic_key).collect();
    let n: BTreeSet<_> = new.iter().map(diagnostic_key).collect();
    (
        new.iter()
            .filter(|d| !b.contains(&diagnostic_key(d)))
            .cloned()
            .collect(),
        base.iter()
            .filter(|d| !n.contains(&diagnostic_key(d)))
            .cloned()
            .collect(),
    )
}
