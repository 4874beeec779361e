//! Risk notes: the changes a reviewer should look at twice, each named (`RiskKind`), so that a
//! CI job can act on one kind without reading the text.

use std::cmp::Ordering;
use std::collections::BTreeSet;

use super::overlap::may_overlap;
use super::report::{FleetDiff, RiskKind, RiskNote, RouteChange};
use super::side::RouteView;
use crate::model::mapping::FULL;
use crate::model::weights::percent;
use crate::routes::{describe, route_order};

/// A share that moves by more than this many hundredths of a point in one change is a risk.
pub const BIG_MOVE_BP: i64 = 5_000;

/// The risk notes of one fleet's change.
pub fn risk_notes(
    fleet: &str,
    base: &[RouteView],
    new: &[RouteView],
    diff: &FleetDiff,
) -> Vec<RiskNote> {
    let note = |risk, route: Option<String>, message: String| RiskNote {
        risk,
        fleet: Some(fleet.to_string()),
        route,
        message,
    };
    let mut out = Vec::new();
    for d in &diff.routes {
        match d.change {
            RouteChange::Removed => {
                // The routes after it, found by a binary search: NEW is in route order.
                let after =
                    new.partition_point(|r| route_order(&r.key, &d.key) != Ordering::Greater);
                let to = new[after..].iter().find(|r| may_overlap(&d.key, &r.key));
                let goes = match to {
                    Some(r) => format!(
                        "its requests reach the less specific route {}",
                        describe(&r.key)
                    ),
                    None => "its requests get a 404".to_string(),
                };
                out.push(note(
                    RiskKind::RouteLosesEveryBackend,
                    Some(d.route.clone()),
                    format!("route {} loses every backend: {goes}", d.route),
                ));
            }
            RouteChange::Changed => {
                for b in d
                    .backends
                    .iter()
                    .filter(|b| b.delta_bp().abs() > BIG_MOVE_BP)
                {
                    out.push(note(
                        RiskKind::ShareMovesOver50Points,
                        Some(d.route.clone()),
                        format!(
                            "{}'s share of {} moves by more than 50 points: {}% -> {}%",
                            b.mapping,
                            d.route,
                            percent(b.before_bp.unwrap_or(0)),
                            percent(b.after_bp.unwrap_or(0))
                        ),
                    ));
                }
            }
            RouteChange::Added | RouteChange::Moved => {}
        }
    }
    out.extend(new_services(base, new).into_iter().map(|(service, route)| {
        note(
            RiskKind::NewService,
            Some(route.clone()),
            format!(
                "traffic goes to service {service} (route {route}), which no route used before"
            ),
        )
    }));
    for r in new.iter().filter(|r| full_canary(r)) {
        let was = base
            .iter()
            .find(|b| b.key == r.key)
            .is_some_and(full_canary);
        if !was {
            let route = describe(&r.key);
            out.push(note(
                RiskKind::CanaryFullPrimaryZero,
                Some(route.clone()),
                format!("route {route}: a canary takes 100% beside a primary at 0%"),
            ));
        }
    }
    for r in new.iter().filter(|r| r.held.is_some()) {
        let was = base.iter().find(|b| b.key == r.key).map(|b| &b.held);
        if was != Some(&r.held) {
            let route = describe(&r.key);
            out.push(note(
                RiskKind::HeldBack,
                Some(route.clone()),
                format!("route {route}: {}", r.held.as_deref().unwrap_or_default()),
            ));
        }
    }
    out
}

/// The services NEW sends traffic to (a share above 0, or mirrored) that no route of BASE
/// used, each with the first route that does.
fn new_services(base: &[RouteView], new: &[RouteView]) -> Vec<(String, String)> {
    let before: BTreeSet<&str> = base
        .iter()
        .flat_map(|r| r.backends.iter().chain(&r.shadow))
        .map(|b| b.service.as_str())
        .collect();
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for r in new {
        let used = r
            .backends
            .iter()
            .filter(|b| b.share_bp > 0)
            .chain(r.shadow.iter().filter(|s| s.share_bp > 0));
        for b in used {
            if !before.contains(b.service.as_str()) && seen.insert(b.service.as_str()) {
                out.push((b.service.clone(), describe(&r.key)));
            }
        }
    }
    out
}

/// A canary (a Mapping with a weight) at 100% beside a primary (one without) at 0%.
fn full_canary(r: &RouteView) -> bool {
    r.backends.iter().any(|b| b.weighted && b.share_bp == FULL)
        && r.backends.iter().any(|b| !b.weighted && b.share_bp == 0)
}
