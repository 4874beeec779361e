//! The diagnostics page at `/`: server-rendered HTML, a little inline style and script, nothing
//! from elsewhere. Rendering is a pure function of `PageData`.
//!
//! The page is read top-down in the order an operator asks: is anything wrong (the summary
//! line), how is traffic split (routes with their effective weights), how do the canaries do
//! (live traffic), is every Envoy up to date (Envoys), and what exactly is wrong (diagnostics).
//!
//! It refreshes by fetching itself every few seconds and swapping the content in place: one
//! renderer (this one) instead of a second one in JavaScript, no flicker, the scroll position
//! kept, and when canary-xds cannot be reached the last answer stays on screen, marked stale,
//! instead of a browser error page that would never come back by itself. Without script, a
//! `<noscript>` meta refresh does the same less smoothly.

mod assets;
mod envoys;
mod live_traffic;
mod routes;

pub use assets::SCRIPT;
pub use routes::share;

use crate::admin::LastReload;
use crate::admin::api::{EnvoyState, envoy_state, held_notes, rfc3339};
use crate::admin::traffic::{LiveTraffic, TrafficVerdict};
use crate::model::diagnostic::{Counts, Diagnostic, Severity};
use crate::reload::Served;
use crate::xds::EnvoyStatus;
use assets::STYLE;
use envoys::write_envoys;
use live_traffic::write_traffic;
use routes::write_routes;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// How often the page refreshes itself, in seconds.
pub const REFRESH_SECS: u64 = 5;

/// Everything the page shows, read at one moment.
#[derive(Clone, Debug)]
pub struct PageData {
    pub now: SystemTime,
    /// The watched directory.
    pub dir: String,
    /// What is served, with the route tables it was built from.
    pub served: Arc<Served>,
    pub last: LastReload,
    pub envoys: Vec<EnvoyStatus>,
    /// `--envoy-admin` URLs (credentials already taken out).
    pub envoy_admin: Vec<String>,
    pub live: Option<LiveTraffic>,
    /// Why the control plane is not ready, if it is not.
    pub not_ready: Option<String>,
}

/// How things stand, worst first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Bad,
    Warn,
    Good,
}

impl Level {
    fn class(self) -> &'static str {
        match self {
            Level::Bad => "bad",
            Level::Warn => "warn",
            Level::Good => "good",
        }
    }

    fn mark(self) -> &'static str {
        match self {
            Level::Bad => "\u{2716}",
            Level::Warn => "\u{26a0}",
            Level::Good => "\u{2714}",
        }
    }
}

/// The one line that says how things stand, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    pub level: Level,
    pub headline: String,
}

/// The worst thing on the page, in words.
pub fn summary(d: &PageData) -> Summary {
    let counts = Counts::of(&d.last.diagnostics);
    let held_files = held_notes(&d.last.diagnostics).count();
    let held_routes = held_routes(&d.served);
    let (mut in_sync, mut rejected, mut syncing) = (0, 0, 0);
    for e in &d.envoys {
        match envoy_state(e) {
            EnvoyState::InSync => in_sync += 1,
            EnvoyState::Rejected => rejected += 1,
            EnvoyState::Syncing => syncing += 1,
        }
    }
    let envoys = d.envoys.len();
    let (level, headline) = if let Some(why) = d.not_ready.as_deref().filter(|_| !d.last.ok) {
        (Level::Bad, format!("Not ready: {why}"))
    } else if !d.last.ok {
        (
            Level::Bad,
            "The Mapping directory cannot be read: the last good config keeps serving".into(),
        )
    } else if rejected > 0 {
        (
            Level::Bad,
            format!(
                "{} rejected the config (NACK) and keep{} serving the previous one",
                count(rejected, "Envoy", "Envoys"),
                if rejected == 1 { "s" } else { "" }
            ),
        )
    } else if let Some((route, mapping, reason)) = worse_canary(d.live.as_ref()) {
        (
            Level::Bad,
            format!("Canary {mapping} on {route} is worse than its primary: {reason}"),
        )
    } else if counts.errors > 0 || held_files > 0 || held_routes > 0 {
        let mut parts = Vec::new();
        if counts.errors > 0 {
            parts.push(count(counts.errors, "error", "errors") + " in the Mapping files");
        }
        let held: Vec<&str> = held_notes(&d.last.diagnostics)
            .map(|n| n.file.as_str())
            .collect();
        match held[..] {
            [] => {}
            [file] => parts.push(format!("{file} is held at its last good content")),
            _ => {
                parts.push(count(held_files, "file", "files") + " held at their last good content")
            }
        }
        if held_routes > 0 {
            parts.push(match held_routes {
                1 => "1 route held at its last good weights".to_string(),
                n => format!("{n} routes held at their last good weights"),
            });
        }
        (Level::Warn, parts.join("; "))
    } else if envoys == 0 {
        (
            Level::Warn,
            "Config loaded, but no Envoy is connected".to_string(),
        )
    } else if syncing > 0 {
        (
            Level::Warn,
            format!(
                "{} of {envoys} updating to the current version",
                count(syncing, "Envoy", "Envoys")
            ),
        )
    } else {
        (
            Level::Good,
            if in_sync == 1 {
                "The Envoy is in sync".to_string()
            } else {
                format!("All {in_sync} Envoys are in sync")
            },
        )
    };
    Summary { level, headline }
}

/// The first canary judged worse than its primary: (route, Mapping, why).
fn worse_canary(live: Option<&LiveTraffic>) -> Option<(&str, &str, &str)> {
    live?.routes.iter().find_map(|r| {
        r.backends.iter().find_map(|b| match &b.verdict {
            Some(TrafficVerdict::Worse { reason }) => {
                Some((r.route.as_str(), b.mapping.as_str(), reason.as_str()))
            }
            _ => None,
        })
    })
}

fn held_routes(served: &Served) -> usize {
    served
        .fleets()
        .map(|(_, _, t)| t.routes.iter().filter(|r| r.held.is_some()).count())
        .sum()
}

fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// The page.
pub fn render(d: &PageData) -> String {
    let s = summary(d);
    let mut out = String::with_capacity(16 * 1024);
    let _ = write!(
        out,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{} canary-xds</title>\
         <noscript><meta http-equiv=\"refresh\" content=\"{REFRESH_SECS}\"></noscript>\
         <style>{STYLE}</style></head>\n<body data-refresh=\"{REFRESH_SECS}\">\n",
        s.level.mark()
    );
    let _ = writeln!(
        out,
        "<header class=\"top\"><h1>canary-xds</h1><span class=\"dir\" title=\"the watched \
         directory\">{}</span><span class=\"live\" id=\"live\"><span class=\"dot\"></span>\
         <span id=\"live-text\">refreshes every {REFRESH_SECS} s</span></span></header>",
        esc(&d.dir)
    );
    out.push_str("<main id=\"content\">\n");
    write_summary(&mut out, d, &s);
    write_routes(&mut out, d);
    write_traffic(&mut out, d);
    write_envoys(&mut out, d);
    write_diagnostics(&mut out, d);
    let _ = writeln!(
        out,
        "<p class=\"updated\">Rendered <time class=\"local\" datetime=\"{t}\">{t}</time>.</p>",
        t = rfc3339(d.now)
    );
    out.push_str("</main>\n");
    out.push_str(
        "<footer>JSON: <a href=\"/api/routes\">/api/routes</a> · \
         <a href=\"/api/envoys\">/api/envoys</a> · \
         <a href=\"/api/diagnostics\">/api/diagnostics</a> · Prometheus: \
         <a href=\"/metrics\">/metrics</a> · <a href=\"/healthz\">/healthz</a> · \
         <a href=\"/readyz\">/readyz</a></footer>\n",
    );
    let _ = write!(out, "<script>{SCRIPT}</script>\n</body></html>\n");
    out
}

fn write_summary(out: &mut String, d: &PageData, s: &Summary) {
    let version = d.served.published.version();
    let counts = Counts::of(&d.last.diagnostics);
    let routes: usize = d.served.fleets().map(|(_, _, t)| t.routes.len()).sum();
    let canaries: usize = d
        .served
        .fleets()
        .map(|(_, _, t)| t.routes.iter().filter(|r| r.backends.len() > 1).count())
        .sum();
    let _ = writeln!(
        out,
        "<section class=\"summary {cls}\" id=\"summary\" data-level=\"{cls}\">\
         <p class=\"headline\"><span class=\"mark\">{mark}</span> {headline}</p>\
         <ul class=\"facts\">\
         <li>version <code>{version}</code></li>\
         <li><a href=\"#routes\">{routes}</a>, {canaries}</li>\
         <li><a href=\"#envoys\">{envoys}</a></li>\
         <li><a href=\"#diagnostics\">{errors}, {warnings}</a></li>\
         <li>last reload {ago} ago{failed}</li>\
         </ul></section>",
        cls = s.level.class(),
        mark = s.level.mark(),
        headline = esc(&s.headline),
        routes = count(routes, "route", "routes"),
        canaries = count(canaries, "canary", "canaries"),
        envoys = count(d.envoys.len(), "Envoy connected", "Envoys connected"),
        errors = count(counts.errors, "error", "errors"),
        warnings = count(counts.warnings, "warning", "warnings"),
        ago = ago(d.now, d.last.at),
        failed = if d.last.ok {
            ""
        } else {
            " (failed: the directory cannot be read)"
        },
    );
}

fn write_diagnostics(out: &mut String, d: &PageData) {
    let c = Counts::of(&d.last.diagnostics);
    let _ = writeln!(
        out,
        "<section id=\"diagnostics\"><h2>Diagnostics <span class=\"sub\">{}, {}, {} · from \
         the last reload, {} ago</span></h2>",
        count(c.errors, "error", "errors"),
        count(c.warnings, "warning", "warnings"),
        count(c.infos, "info", "infos"),
        ago(d.now, d.last.at)
    );
    if d.last.diagnostics.is_empty() {
        out.push_str("<p class=\"muted\">None: every file is served as written.</p>\n</section>\n");
        return;
    }
    let mut list: Vec<&Diagnostic> = d.last.diagnostics.iter().collect();
    list.sort_by(|a, b| {
        (a.severity, &a.file, a.line, a.column).cmp(&(b.severity, &b.file, b.line, b.column))
    });
    out.push_str(
        "<div class=\"scroll\"><table class=\"diagnostics\"><thead><tr><th></th><th>Where</th>\
         <th>Mapping</th><th>Field</th><th>Message</th></tr></thead><tbody>\n",
    );
    for diag in list {
        let cls = match diag.severity {
            Severity::Error => "bad",
            Severity::Warning => "wait",
            Severity::Info => "info",
        };
        let _ = writeln!(
            out,
            "<tr class=\"diag {cls}\"><td><span class=\"pill {cls}\">{}</span></td>\
             <td class=\"src\">{}</td><td>{}</td><td>{}</td><td class=\"msg\">{}</td></tr>",
            diag.severity,
            esc(&diag.location().to_string()),
            esc(diag.mapping.as_deref().unwrap_or("")),
            esc(diag.field.as_deref().unwrap_or("")),
            esc(&diag.message)
        );
    }
    out.push_str("</tbody></table></div>\n</section>\n");
}

/// How long ago `then` was, in one or two units: `8s`, `3m 05s`, `2h 10m`, `4d 3h`.
pub fn ago(now: SystemTime, then: SystemTime) -> String {
    let s = now.duration_since(then).unwrap_or(Duration::ZERO).as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {:02}s", s / 60, s % 60),
        3600..86_400 => format!("{}h {:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d {}h", s / 86_400, s % 86_400 / 3600),
    }
}

/// Escapes text for HTML content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests;
