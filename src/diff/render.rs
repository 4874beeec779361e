//! A diff as people and programs read it: the table (80 columns, like `check`), the JSON of
//! docs/diff.md (`"format": 1`), and markdown for a pull-request comment (`markdown.rs`).

use std::fmt::Write as _;

use serde::Serialize;

use super::report::{
    BackendDelta, DIFF_FORMAT, DiffReport, FleetDiff, MirrorEnd, RiskNote, RouteChange, RouteDiff,
    SettingDelta,
};
use crate::model::diagnostic::Diagnostic;
use crate::model::mapping::Bp;
use crate::model::weights::percent;
use crate::routes::render::{WIDTH, write_diagnostic};

#[derive(Serialize)]
struct DiffJson<'a> {
    format: u32,
    base: &'a str,
    new: &'a str,
    different: bool,
    new_errors: usize,
    settings_compared: bool,
    fleets: &'a [FleetDiff],
    risks: &'a [RiskNote],
    diagnostics: DiagnosticsJson<'a>,
}

#[derive(Serialize)]
struct DiagnosticsJson<'a> {
    new: &'a [Diagnostic],
    fixed: &'a [Diagnostic],
}

/// The JSON document of `diff --format json`.
pub fn json(r: &DiffReport) -> String {
    let doc = DiffJson {
        format: DIFF_FORMAT,
        base: &r.base,
        new: &r.new,
        different: !r.is_empty(),
        new_errors: r.new_errors,
        settings_compared: r.settings_compared,
        fleets: &r.fleets,
        risks: &r.risks,
        diagnostics: DiagnosticsJson {
            new: &r.new_diagnostics,
            fixed: &r.fixed_diagnostics,
        },
    };
    serde_json::to_string_pretty(&doc).expect("the diff serializes") + "\n"
}

/// The human table: a summary line, each fleet's changes, the risk notes, the diagnostics.
pub fn table(r: &DiffReport) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "canary-xds diff {} -> {}", r.base, r.new);
    wrap(&mut out, "", &summary(r));
    for f in &r.fleets {
        out.push('\n');
        write_fleet(&mut out, f);
    }
    if !r.settings_compared {
        out.push('\n');
        wrap(
            &mut out,
            "",
            "settings not compared: a side read from a server whose /api/routes carries no \
             settings (a version older than diff)",
        );
    }
    if !r.risks.is_empty() {
        let _ = writeln!(out, "\nrisks: {}", r.risks.len());
        for n in &r.risks {
            wrap(
                &mut out,
                "  ! ",
                &format!("{}: {}", risk_name(n), n.message),
            );
        }
    }
    write_diagnostics(&mut out, r);
    out
}

/// One line: what changed, in numbers.
pub fn summary(r: &DiffReport) -> String {
    if r.is_empty() {
        let errors = match r.new_errors {
            0 => String::new(),
            n => format!(" (NEW has {n} error{})", plural(n)),
        };
        return format!("no difference: NEW serves what BASE serves{errors}");
    }
    let routes: usize = r.fleets.iter().map(|f| f.routes.len()).sum();
    let clusters: usize = r
        .fleets
        .iter()
        .map(|f| f.clusters_added.len() + f.clusters_removed.len())
        .sum();
    format!(
        "{routes} route{} and {clusters} cluster{} differ, {} risk note{}, {} new diagnostic{}, \
         {} fixed; NEW has {} error{}",
        plural(routes),
        plural(clusters),
        r.risks.len(),
        plural(r.risks.len()),
        r.new_diagnostics.len(),
        plural(r.new_diagnostics.len()),
        r.fixed_diagnostics.len(),
        r.new_errors,
        plural(r.new_errors),
    )
}

/// The name of a risk note's kind, as in the JSON.
pub fn risk_name(n: &RiskNote) -> String {
    serde_json::to_value(n.risk)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// A fleet's heading: `fleet default: 1 changed, 1 added; 1 cluster added`.
pub fn fleet_heading(f: &FleetDiff) -> String {
    let count = |c: RouteChange| f.routes.iter().filter(|r| r.change == c).count();
    let mut parts = Vec::new();
    for (c, word) in [
        (RouteChange::Changed, "changed"),
        (RouteChange::Added, "added"),
        (RouteChange::Removed, "removed"),
        (RouteChange::Moved, "moved"),
    ] {
        let n = count(c);
        if n > 0 {
            parts.push(format!("{n} route{} {word}", plural(n)));
        }
    }
    for (n, word) in [
        (f.clusters_added.len(), "added"),
        (f.clusters_removed.len(), "removed"),
    ] {
        if n > 0 {
            parts.push(format!("{n} cluster{} {word}", plural(n)));
        }
    }
    let what = if parts.is_empty() {
        "no difference".to_string()
    } else {
        parts.join(", ")
    };
    let side = match (f.in_base, f.in_new) {
        (false, true) => " (new fleet)",
        (true, false) => " (no longer has routes)",
        _ => "",
    };
    format!("fleet {}{side}: {what}", f.fleet)
}

/// A fleet's heading, then each route that changed, then its clusters.
pub fn write_fleet(out: &mut String, f: &FleetDiff) {
    // Four kinds of route change and two of cluster change run past 80 columns.
    wrap(out, "", &fleet_heading(f));
    for r in &f.routes {
        write_route(out, r);
    }
    for (sign, list) in [("+", &f.clusters_added), ("-", &f.clusters_removed)] {
        for c in list {
            let _ = writeln!(out, "{sign} cluster {}  service {}", c.name, c.service);
            // `cluster.qotm.{upstream_rq_xx, upstream_rq_time}`: the prefix once.
            let prefix = format!("cluster.{}.", c.name);
            let names: Vec<&str> = c
                .stats
                .iter()
                .map(|s| s.strip_prefix(&prefix).unwrap_or(s))
                .collect();
            wrap(
                out,
                "    stats ",
                &format!("{prefix}{{{}}}", names.join(", ")),
            );
        }
    }
}

fn write_route(out: &mut String, r: &RouteDiff) {
    let (sign, word) = match r.change {
        RouteChange::Added => ("+", "added"),
        RouteChange::Removed => ("-", "removed"),
        RouteChange::Changed => ("~", "changed"),
        RouteChange::Moved => (">", "moved"),
    };
    let place = match (r.position_before, r.position_after) {
        (Some(b), Some(a)) if a != b => format!("route {a}, was {b}"),
        (_, Some(a)) => format!("route {a}"),
        (Some(b), None) => format!("was route {b}"),
        (None, None) => String::new(),
    };
    let _ = writeln!(out, "{sign} {}  ({word}, {place})", r.route);
    if let Some(why) = &r.held {
        wrap(out, "    held: ", why);
    }
    write_backends(out, &r.backends);
    if let Some(s) = &r.shadow {
        let end = |m: &Option<MirrorEnd>| match m {
            Some(m) => format!("{} mirror {}%", m.mapping, percent(m.percent_bp)),
            None => "-".to_string(),
        };
        let _ = writeln!(out, "    shadow  {} -> {}", end(&s.before), end(&s.after));
    }
    for s in &r.settings {
        write_setting(out, s);
    }
    for (what, list) in [
        ("now shadows", &r.now_shadows),
        ("no longer shadows", &r.stopped_shadowing),
        ("now shadowed by", &r.now_shadowed_by),
        ("no longer shadowed by", &r.no_longer_shadowed_by),
    ] {
        for other in list {
            let tail = if what.ends_with("shadows") {
                ": the requests both match go to the first"
            } else {
                ""
            };
            wrap(out, "    ", &format!("{what} {other}{tail}"));
        }
    }
}

/// `qotmv2  10.00% -> 25.00%  (+15.00)`, names and shares aligned within the route.
fn write_backends(out: &mut String, backends: &[BackendDelta]) {
    let share = |bp: Option<Bp>| bp.map_or_else(|| "-".to_string(), pct);
    let name_w = backends
        .iter()
        .map(|b| b.mapping.chars().count())
        .max()
        .unwrap_or(0);
    let before_w = backends
        .iter()
        .map(|b| share(b.before_bp).len())
        .max()
        .unwrap_or(0);
    let after_w = backends
        .iter()
        .map(|b| share(b.after_bp).len())
        .max()
        .unwrap_or(0);
    for b in backends {
        let mut line = format!(
            "    {:<name_w$}  {:>before_w$} -> {:>after_w$}",
            b.mapping,
            share(b.before_bp),
            share(b.after_bp)
        );
        if b.delta_bp() != 0 {
            let _ = write!(line, "  ({})", points(b.delta_bp()));
        }
        match (b.before_bp, b.after_bp) {
            (None, Some(_)) => line.push_str("  added"),
            (Some(_), None) => line.push_str("  removed"),
            _ => {}
        }
        let _ = writeln!(out, "{line}");
    }
}

fn write_setting(out: &mut String, s: &SettingDelta) {
    let (b, a) = (value(&s.before), value(&s.after));
    let line = format!("    {}: {}  {b} -> {a}", s.mapping, s.field);
    if line.chars().count() <= WIDTH {
        let _ = writeln!(out, "{line}");
    } else {
        let _ = writeln!(out, "    {}: {}", s.mapping, s.field);
        wrap(out, "      ", &format!("{b} -> {a}"));
    }
}

/// A setting's value: `unset` for null, else its JSON.
fn value(v: &serde_json::Value) -> String {
    if v.is_null() {
        "unset".to_string()
    } else {
        v.to_string()
    }
}

fn write_diagnostics(out: &mut String, r: &DiffReport) {
    for (what, list) in [
        ("new in NEW", &r.new_diagnostics),
        ("fixed since BASE", &r.fixed_diagnostics),
    ] {
        if list.is_empty() {
            continue;
        }
        let _ = writeln!(out, "\ndiagnostics {what}: {}", list.len());
        for d in list.iter() {
            write_diagnostic(out, d);
        }
    }
}

/// A share as `check` shows it: `10.00%`.
pub fn pct(bp: Bp) -> String {
    format!("{}.{:02}%", bp / 100, bp % 100)
}

/// A change in points: `+15.00`, `-0.50`.
pub fn points(delta_bp: i64) -> String {
    let sign = if delta_bp < 0 { '-' } else { '+' };
    let d = delta_bp.unsigned_abs();
    format!("{sign}{}.{:02}", d / 100, d % 100)
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// `text` after `first`, wrapped to `WIDTH` columns, later lines indented under the text.
fn wrap(out: &mut String, first: &str, text: &str) {
    let indent = " ".repeat(first.chars().count().max(4));
    let mut line = first.to_string();
    let mut fresh = true;
    for word in text.split_whitespace() {
        if !fresh && line.chars().count() + 1 + word.chars().count() > WIDTH {
            let _ = writeln!(out, "{}", line.trim_end());
            line.clone_from(&indent);
            fresh = true;
        }
        if !fresh {
            line.push(' ');
        }
        line.push_str(word);
        fresh = false;
    }
    let _ = writeln!(out, "{}", line.trim_end());
}
