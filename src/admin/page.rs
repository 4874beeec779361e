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

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::LastReload;
use super::api::{EnvoyState, envoy_state, held_notes, rejected, rfc3339, sorted, variant_name};
use super::traffic::{LiveTraffic, TrafficVerdict};
use crate::model::diagnostic::{Counts, Diagnostic, Severity};
use crate::model::mapping::{HeaderMatch, MappingId, RouteKey};
use crate::reload::Served;
use crate::routes::Route;
use crate::xds::EnvoyStatus;

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
    pub not_ready: Option<&'static str>,
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
    let (level, headline) = if let Some(why) = d.not_ready.filter(|_| !d.last.ok) {
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

fn write_routes(out: &mut String, d: &PageData) {
    out.push_str(
        "<section id=\"routes\"><h2>Routes <span class=\"sub\">in the order Envoy tries \
         them · shares are the effective weights Envoy splits by</span></h2>\n",
    );
    let held: BTreeMap<&str, &str> = held_notes(&d.last.diagnostics)
        .map(|n| (n.file.as_str(), n.message.as_str()))
        .collect();
    for (fleet, snap, t) in d.served.fleets() {
        let _ = writeln!(
            out,
            "<h3>fleet <b>{}</b> <span class=\"sub\">version <code>{}</code> · {} · {}</span></h3>",
            esc(fleet),
            esc(&snap.version),
            count(t.routes.len(), "route", "routes"),
            count(t.mapping_count(), "Mapping", "Mappings"),
        );
        let rejecting = d
            .envoys
            .iter()
            .filter(|e| &e.fleet == fleet && envoy_state(e) == EnvoyState::Rejected)
            .count();
        if rejecting > 0 {
            let _ = writeln!(
                out,
                "<p class=\"notice bad\">&#x2716; {} rejected this version and still route{} \
                 by an earlier one: see <a href=\"#envoys\">Envoys</a>.</p>",
                count(rejecting, "Envoy of this fleet", "Envoys of this fleet"),
                if rejecting == 1 { "s" } else { "" }
            );
        }
        if t.routes.is_empty() {
            out.push_str("<p class=\"muted\">No routes: no valid Mapping names this fleet.</p>\n");
            continue;
        }
        out.push_str(
            "<div class=\"scroll\"><table class=\"routes\"><thead><tr><th>Mapping</th>\
             <th>Service</th><th class=\"sharecol\">Share</th><th>As written</th>\
             <th>Cluster</th><th>Source</th></tr></thead>\n",
        );
        for (i, r) in t.routes.iter().enumerate() {
            write_route(out, i + 1, r, &held);
        }
        out.push_str("</table></div>\n");
    }
    out.push_str("</section>\n");
}

/// One route; `held` maps each file held at its last good content to why.
fn write_route(out: &mut String, n: usize, r: &Route, held: &BTreeMap<&str, &str>) {
    let canary = r.backends.len() > 1;
    let _ = write!(
        out,
        "<tbody class=\"route{}\"><tr class=\"match\"><td colspan=\"6\"><span class=\"n\">{n}</span> \
         <code class=\"prefix\">{}</code>{}",
        if canary { " canary" } else { "" },
        esc(&prefix_text(&r.key)),
        matchers(&r.key),
    );
    if canary {
        let _ = write!(
            out,
            " <span class=\"tag\">split {} ways</span>",
            r.backends.len()
        );
    }
    if let Some(why) = &r.held {
        let _ = write!(
            out,
            " <span class=\"tag held\" title=\"{w}\">held at last good weights</span>\
             <div class=\"heldwhy\">{w}</div>",
            w = esc(why)
        );
    }
    out.push_str("</td></tr>\n");
    for b in &r.backends {
        let m = &b.mapping;
        let written = match m.weight {
            Some(w) => format!("weight {}", crate::model::weights::percent(w)),
            None => "no weight".into(),
        };
        let held_tag = held_tag(held, &m.origin.file);
        let _ = writeln!(
            out,
            "<tr class=\"backend{zero}\" data-mapping=\"{name}\"><td class=\"mapping\">{id}</td>\
             <td><code>{service}</code></td><td class=\"sharecol\"><span class=\"bar\"><span \
             style=\"width:{width:.2}%\"></span></span><span class=\"share\">{share}</span></td>\
             <td class=\"written\">{written}</td><td><code>{cluster}</code></td>\
             <td class=\"src\">{file}:{line}{held_tag}</td></tr>",
            zero = if b.weight_bp == 0 { " zero" } else { "" },
            name = esc(&m.id.name),
            id = esc(&mapping_name(&m.id)),
            service = esc(&m.service.raw),
            width = f64::from(b.weight_bp) / 100.0,
            share = share(b.weight_bp),
            written = esc(&written),
            cluster = esc(&b.cluster),
            file = esc(&m.origin.file),
            line = m.origin.line,
        );
    }
    if let Some(s) = &r.shadow {
        let m = &s.mapping;
        let held_tag = held_tag(held, &m.origin.file);
        let _ = writeln!(
            out,
            "<tr class=\"backend shadow\" data-mapping=\"{name}\"><td class=\"mapping\">{id}</td>\
             <td><code>{service}</code></td><td class=\"sharecol\"><span class=\"share\">mirror \
             {pct}%</span></td><td class=\"written\">shadow, weight {pct}</td>\
             <td><code>{cluster}</code></td><td class=\"src\">{file}:{line}{held_tag}</td></tr>",
            name = esc(&m.id.name),
            id = esc(&mapping_name(&m.id)),
            service = esc(&m.service.raw),
            pct = crate::model::weights::percent(s.percent_bp),
            cluster = esc(&s.cluster),
            file = esc(&m.origin.file),
            line = m.origin.line,
        );
    }
    out.push_str("</tbody>\n");
}

/// A tag saying that a Mapping comes from a file held at its last good content, or nothing.
fn held_tag(held: &BTreeMap<&str, &str>, file: &str) -> String {
    match held.get(file) {
        Some(why) => format!(
            " <span class=\"tag held\" title=\"{}\">held: last good content</span>",
            esc(why)
        ),
        None => String::new(),
    }
}

fn mapping_name(id: &MappingId) -> String {
    id.to_string()
}

/// A share in hundredths of a percent, as `90.00%`.
pub fn share(bp: u32) -> String {
    format!("{}.{:02}%", bp / 100, bp % 100)
}

fn prefix_text(k: &RouteKey) -> String {
    if k.prefix_regex {
        format!("~ {}", k.prefix)
    } else {
        k.prefix.clone()
    }
}

/// The route's matchers besides the prefix, as small text; empty for "any host, any method".
fn matchers(k: &RouteKey) -> String {
    let mut parts = Vec::new();
    match (&k.host, k.host_regex) {
        (None, _) => {}
        (Some(h), false) => parts.push(format!("host {h}")),
        (Some(h), true) => parts.push(format!("host ~ {h}")),
    }
    if let Some(m) = &k.method {
        parts.push(m.clone());
    }
    for (h, m) in &k.headers {
        parts.push(match m {
            HeaderMatch::Exact(v) => format!("header {h}: {v}"),
            HeaderMatch::Present => format!("header {h} present"),
        });
    }
    for (h, re) in &k.regex_headers {
        parts.push(format!("header {h} ~ {re}"));
    }
    for (q, m) in &k.query_parameters {
        parts.push(match m {
            HeaderMatch::Exact(v) => format!("?{q}={v}"),
            HeaderMatch::Present => format!("?{q}"),
        });
    }
    if k.precedence != 0 {
        parts.push(format!("precedence {}", k.precedence));
    }
    if !k.case_sensitive {
        parts.push("case-insensitive".into());
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!(
            " <span class=\"matchers\">{}</span>",
            esc(&parts.join(" · "))
        )
    }
}

fn write_traffic(out: &mut String, d: &PageData) {
    out.push_str(
        "<section id=\"traffic\"><h2>Live traffic <span class=\"sub\">each canary against \
         its primary, from Envoy's stats</span></h2>\n",
    );
    if d.envoy_admin.is_empty() {
        out.push_str(
            "<p class=\"muted\" id=\"traffic-off\">No Envoy admin configured: start \
             <code>serve</code> with <code>--envoy-admin http://127.0.0.1:9901</code> \
             (repeatable) to compare each canary with its primary here.</p>\n</section>\n",
        );
        return;
    }
    let _ = writeln!(
        out,
        "<p class=\"muted\">Envoy admin: {}</p>",
        d.envoy_admin
            .iter()
            .map(|u| format!("<code>{}</code>", esc(u)))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let Some(live) = &d.live else {
        out.push_str("<p class=\"muted\">Waiting for the first reading.</p>\n</section>\n");
        return;
    };
    for p in &live.problems {
        let _ = writeln!(out, "<p class=\"problem\">{}</p>", esc(p));
    }
    if live.routes.is_empty()
        && !live.problems.is_empty()
        && live.problems.len() >= d.envoy_admin.len()
    {
        out.push_str(
            "<p class=\"muted\">No traffic to show: no Envoy admin endpoint could be read.</p>\n\
             </section>\n",
        );
        return;
    }
    let _ = writeln!(
        out,
        "<p class=\"muted\">Over the last {} s, read {} ago.</p>",
        live.window.as_secs(),
        ago(d.now, live.taken_at)
    );
    if live.routes.is_empty() {
        out.push_str("<p class=\"muted\">No route has more than one backend.</p>\n</section>\n");
        return;
    }
    out.push_str(
        "<div class=\"scroll\"><table class=\"traffic\"><thead><tr><th>Backend</th>\
         <th>Configured</th><th>Observed</th><th>Requests</th><th>req/s</th><th>5xx</th>\
         <th>p50</th><th>p99</th><th>Verdict</th></tr></thead>\n",
    );
    for r in &live.routes {
        let _ = writeln!(
            out,
            "<tbody><tr class=\"match\"><td colspan=\"9\"><code class=\"prefix\">{}</code> \
             <span class=\"matchers\">fleet {}</span></td></tr>",
            esc(&r.route),
            esc(&r.fleet)
        );
        for b in &r.backends {
            let verdict = match &b.verdict {
                None if b.primary => "<span class=\"muted\">the baseline</span>".to_string(),
                None => String::new(),
                Some(v) => {
                    let cls = match v {
                        TrafficVerdict::Healthy | TrafficVerdict::Promoted => "good",
                        TrafficVerdict::Worse { .. } => "bad",
                        TrafficVerdict::NotEnoughTraffic => "wait",
                    };
                    let reason = match v {
                        TrafficVerdict::Worse { reason } => format!(": {}", esc(reason)),
                        _ => String::new(),
                    };
                    format!(
                        "<span class=\"pill {cls}\">{}</span>{reason}",
                        esc(v.label())
                    )
                }
            };
            let _ = writeln!(
                out,
                "<tr><td class=\"mapping\">{}{}<div class=\"muted\"><code>{}</code></div></td>\
                 <td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
                 <td class=\"num\">{:.1}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
                 <td class=\"num\">{}</td><td>{}</td></tr>",
                esc(&b.mapping),
                if b.primary {
                    " <span class=\"tag\">primary</span>"
                } else {
                    ""
                },
                esc(&b.cluster),
                share(b.configured_bp),
                opt_pct(b.observed_share),
                b.requests,
                b.rps,
                opt_pct(b.error_rate),
                opt_ms(b.p50_ms),
                opt_ms(b.p99_ms),
                verdict
            );
        }
        out.push_str("</tbody>\n");
    }
    out.push_str("</table></div>\n</section>\n");
}

fn opt_pct(v: Option<f64>) -> String {
    v.map_or_else(|| "–".into(), |v| format!("{:.2}%", v * 100.0))
}

fn opt_ms(v: Option<f64>) -> String {
    v.map_or_else(|| "–".into(), |v| format!("{v:.1} ms"))
}

fn write_envoys(out: &mut String, d: &PageData) {
    let _ = writeln!(
        out,
        "<section id=\"envoys\"><h2>Envoys <span class=\"sub\">{} over ADS</span></h2>",
        count(d.envoys.len(), "connected", "connected")
    );
    if d.envoys.is_empty() {
        out.push_str(
            "<p class=\"muted\">No Envoy is connected. Point one at this control plane with \
             <code>envoy -c &lt;(canary-xds bootstrap)</code>.</p>\n</section>\n",
        );
        return;
    }
    out.push_str(
        "<div class=\"scroll\"><table class=\"envoys\"><thead><tr><th>Node id</th><th>Fleet</th>\
         <th>ADS</th><th>Connected</th><th>State</th><th>Holds version</th>\
         <th title=\"per resource type: ✔ ACKed what was sent, … waiting for the ACK, ✖ \
         rejected\">Resource types</th></tr></thead><tbody>\n",
    );
    for e in sorted(&d.envoys) {
        let state = envoy_state(e);
        let fleet_version = d.served.published.fleet(&e.fleet).version.clone();
        let (cls, label) = match state {
            EnvoyState::InSync => ("good", "in sync"),
            EnvoyState::Rejected => ("bad", "NACK: rejected"),
            EnvoyState::Syncing => ("wait", "updating"),
        };
        let holds = match &e.synced_version {
            Some(v) if *v == fleet_version => format!("<code>{}</code>", esc(v)),
            Some(v) => format!(
                "<code>{}</code> <span class=\"muted\">(current: <code>{}</code>)</span>",
                esc(v),
                esc(&fleet_version)
            ),
            None => "<span class=\"muted\">none yet</span>".into(),
        };
        let types: Vec<String> = e
            .types
            .iter()
            .map(|(k, t)| {
                let (mark, cls) = if rejected(t) {
                    ("\u{2716}", "bad")
                } else if t.waiting_for_ack || t.sent != t.acked {
                    ("\u{2026}", "wait")
                } else {
                    ("\u{2714}", "good")
                };
                format!(
                    "<span class=\"type {cls}\" title=\"{k}: sent {} · ACKed {}\">{k} {mark}</span>",
                    esc(t.sent.as_deref().unwrap_or("nothing")),
                    esc(t.acked.as_deref().unwrap_or("nothing")),
                )
            })
            .collect();
        let _ = writeln!(
            out,
            "<tr class=\"envoy {cls}\" data-node=\"{node}\"><td class=\"mapping\">{node}</td>\
             <td>{fleet}</td><td>{ads}</td><td title=\"{since}\">{ago} ago</td>\
             <td><span class=\"pill {cls}\">{label}</span></td><td>{holds}</td>\
             <td class=\"types\">{types}</td></tr>",
            node = esc(&e.node_id),
            fleet = esc(&e.fleet),
            ads = if variant_name(e.variant) == "delta" {
                "delta"
            } else {
                "SotW"
            },
            since = rfc3339(e.connected_since),
            ago = ago(d.now, e.connected_since),
            types = types.join(" "),
        );
        for (k, t) in &e.types {
            if let Some((version, message)) = &t.last_nack {
                let current = rejected(t);
                let _ = writeln!(
                    out,
                    "<tr class=\"nack{}\"><td colspan=\"7\"><b>{}</b> {k} version <code>{}</code>: \
                     <span class=\"msg\">{}</span></td></tr>",
                    if current { "" } else { " old" },
                    if current {
                        "\u{2716} Envoy rejected"
                    } else {
                        "Earlier NACK (since superseded):"
                    },
                    esc(version),
                    esc(message)
                );
            }
        }
    }
    out.push_str("</tbody></table></div>\n</section>\n");
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

/// The page's style: system fonts, plain colours, tables that fit a laptop screen.
const STYLE: &str = r#"
:root{--fg:#1f2328;--muted:#656d76;--line:#d8dee4;--bg:#fff;--soft:#f6f8fa;
--good:#1a7f37;--good-bg:#dafbe1;--warn:#9a6700;--warn-bg:#fff8c5;--bad:#cf222e;--bad-bg:#ffebe9;
--bar:#0969da}
*{box-sizing:border-box}
body{margin:0;color:var(--fg);background:var(--bg);
font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif}
code{font:12.5px/1.3 ui-monospace,SFMono-Regular,Menlo,Consolas,"DejaVu Sans Mono",monospace}
a{color:#0969da;text-decoration:none}a:hover{text-decoration:underline}
header.top{display:flex;align-items:baseline;gap:14px;padding:10px 24px;border-bottom:1px solid var(--line);background:var(--soft)}
header.top h1{font-size:17px;margin:0}
.dir{font:13px ui-monospace,Menlo,Consolas,"DejaVu Sans Mono",monospace;color:var(--muted)}
.live{margin-left:auto;color:var(--muted);font-size:12.5px}
.dot{display:inline-block;width:8px;height:8px;border-radius:50%;background:var(--good);margin-right:6px}
body.stale .dot{background:var(--bad)}body.stale .live{color:var(--bad);font-weight:600}
body.stale header.top{background:var(--bad-bg);border-bottom:2px solid var(--bad)}
body.stale main{opacity:.45}
main,footer{max-width:1280px;margin:0 auto;padding:0 24px}
footer{color:var(--muted);font-size:12.5px;padding-bottom:24px}
.summary{margin:16px 0 8px;padding:12px 16px;border-left:6px solid;border-radius:4px}
.summary.good{border-color:var(--good);background:var(--good-bg)}
.summary.warn{border-color:var(--warn);background:var(--warn-bg)}
.summary.bad{border-color:var(--bad);background:var(--bad-bg)}
.headline{font-size:19px;font-weight:600;margin:0 0 6px}
.summary.good .mark{color:var(--good)}.summary.warn .mark{color:var(--warn)}.summary.bad .mark{color:var(--bad)}
.facts{list-style:none;margin:0;padding:0;display:flex;flex-wrap:wrap;gap:4px 22px;color:#424a53}
h2{font-size:16px;margin:22px 0 6px;padding-bottom:4px;border-bottom:1px solid var(--line)}
h3{font-size:14px;font-weight:normal;margin:10px 0 4px}
.sub{font-size:12.5px;font-weight:normal;color:var(--muted)}
.muted{color:var(--muted)}
.scroll{overflow-x:auto}
table{border-collapse:collapse;width:100%}
th{text-align:left;font-size:11.5px;font-weight:600;color:var(--muted);text-transform:uppercase;letter-spacing:.03em;padding:4px 10px;border-bottom:1px solid var(--line)}
td{padding:4px 10px;vertical-align:baseline}
tbody.route{border-top:1px solid var(--line)}
tr.match td{padding-top:9px;padding-bottom:2px}
.n{display:inline-block;min-width:20px;color:var(--muted);font-size:12px}
.prefix{font-size:14px;font-weight:600}
.matchers{color:var(--muted);font-size:12.5px;margin-left:6px}
.tag{display:inline-block;font-size:11.5px;padding:0 6px;border-radius:10px;background:#ddf4ff;color:#0550ae;margin-left:6px}
.tag.held{background:var(--warn-bg);color:var(--warn);border:1px solid #d4a72c}
.heldwhy{color:var(--warn);font-size:12.5px;margin:2px 0 0 24px}
tr.backend td:first-child{padding-left:34px}
td.mapping{font-weight:600}
.sharecol{width:300px;white-space:nowrap}
.bar{display:inline-block;width:200px;height:12px;background:#eaeef2;border-radius:2px;vertical-align:-1px;overflow:hidden}
.bar>span{display:block;height:100%;background:#8c959f}
tbody.canary .bar>span{background:var(--bar)}
.share{display:inline-block;width:80px;text-align:right;font-weight:700;font-variant-numeric:tabular-nums}
tr.zero .share,tr.zero td.mapping{color:var(--muted)}
tr.shadow .share{font-weight:normal;color:var(--muted);width:auto;margin-left:0}
.written{color:var(--muted);font-size:12.5px;white-space:nowrap}
.src{font:12.5px ui-monospace,Menlo,Consolas,"DejaVu Sans Mono",monospace;color:var(--muted);white-space:nowrap}
.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.pill{display:inline-block;font-size:12px;font-weight:600;padding:0 8px;border-radius:10px;white-space:nowrap}
.pill.good{background:var(--good-bg);color:var(--good)}.pill.wait{background:var(--warn-bg);color:var(--warn)}
.pill.bad{background:var(--bad);color:#fff}.pill.info{background:#ddf4ff;color:#0550ae}
table.envoys td,table.diagnostics td{border-bottom:1px solid #eef1f4}
.type{font-size:12px;margin-right:8px;white-space:nowrap}
.type.good{color:var(--good)}.type.wait{color:var(--warn)}.type.bad{color:var(--bad);font-weight:700}
tr.nack td{background:var(--bad-bg);color:#82071e;padding-left:24px}
tr.nack.old td{background:transparent;color:var(--muted)}
tr.nack .msg{font:12.5px ui-monospace,Menlo,Consolas,"DejaVu Sans Mono",monospace;white-space:pre-wrap}
td.msg{max-width:640px}
.problem{color:var(--bad)}
.notice{margin:4px 0 6px;padding:6px 10px;border-radius:4px}
.notice.bad{background:var(--bad-bg);color:#82071e}
.updated{color:var(--muted);font-size:12.5px;margin-top:20px}
"#;

/// The page's script: refresh by fetching the page and swapping its content in, mark the page
/// stale when canary-xds cannot be reached, and show times in the reader's time zone.
pub const SCRIPT: &str = r#"
(function () {
  var every = 1000 * (Number(document.body.dataset.refresh) || 5), lostAt = null;
  var liveText = document.getElementById('live-text').textContent;
  function localTimes() {
    document.querySelectorAll('time.local').forEach(function (t) {
      var d = new Date(t.getAttribute('datetime'));
      if (!isNaN(d)) t.textContent = d.toLocaleString();
    });
  }
  function refresh() {
    if (document.hidden) return;
    fetch(location.pathname, { cache: 'no-store' })
      .then(function (r) { if (!r.ok) throw new Error('HTTP ' + r.status); return r.text(); })
      .then(function (html) {
        var doc = new DOMParser().parseFromString(html, 'text/html');
        var fresh = doc.getElementById('content');
        if (!fresh) throw new Error('not the page');
        document.getElementById('content').replaceWith(document.adoptNode(fresh));
        document.title = doc.title;
        lostAt = null;
        document.body.classList.remove('stale');
        document.getElementById('live-text').textContent = liveText;
        localTimes();
      })
      .catch(function () {
        if (!lostAt) lostAt = new Date();
        document.body.classList.add('stale');
        document.getElementById('live-text').textContent =
          'cannot reach canary-xds since ' + lostAt.toLocaleTimeString() + ': showing its last answer';
      });
  }
  localTimes();
  setInterval(refresh, every);
  document.addEventListener('visibilitychange', refresh);
})();
"#;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::traffic::{LiveBackend, LiveRoute};
    use crate::model::diagnostic::Location;
    use crate::test_util::{CANARY, MAIN, envoy, served};
    use crate::xds::stream::{TypeStatus, Variant};

    fn data(files: &[(&str, &str)]) -> PageData {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        PageData {
            now,
            dir: "/etc/canary-xds/mappings".into(),
            served: Arc::new(served(files)),
            last: LastReload {
                at: now - Duration::from_secs(12),
                ok: true,
                stats: Default::default(),
                diagnostics: Arc::from(Vec::new()),
            },
            envoys: Vec::new(),
            envoy_admin: Vec::new(),
            live: None,
            not_ready: None,
        }
    }

    fn in_sync(d: &PageData, node: &str) -> EnvoyStatus {
        let mut e = envoy(node, "default", Variant::Sotw);
        e.in_sync = true;
        e.synced_version = Some(d.served.published.fleet("default").version.clone());
        e.connected_since = d.now - Duration::from_secs(185);
        for k in ["cds", "lds", "rds"] {
            e.types.insert(
                k,
                TypeStatus {
                    subscribed: true,
                    sent: Some(format!("{k}-1")),
                    acked: Some(format!("{k}-1")),
                    waiting_for_ack: false,
                    last_nack: None,
                },
            );
        }
        e
    }

    /// The text of the page without its tags, whitespace collapsed.
    fn text(html: &str) -> String {
        let mut out = String::new();
        let mut in_tag = false;
        for c in html.chars() {
            match c {
                '<' => in_tag = true,
                '>' => {
                    in_tag = false;
                    out.push(' ');
                }
                c if !in_tag => out.push(c),
                _ => {}
            }
        }
        out.split_whitespace().collect::<Vec<_>>().join(" ")
    }

    #[test]
    fn routes_show_effective_weights_and_where_each_mapping_came_from() {
        let lone = "apiVersion: ambassador/v1\nkind: Mapping\nname: solo\nprefix: /solo/\nservice: solo\nweight: 30\n";
        let html = render(&data(&[
            ("qotm.yaml", MAIN),
            ("qotmv2.yaml", CANARY),
            ("solo.yaml", lone),
        ]));
        let t = text(&html);
        assert!(
            t.contains("qotm qotm 90.00% no weight qotm qotm.yaml:1"),
            "{t}"
        );
        assert!(
            t.contains("qotmv2 qotmv2 10.00% weight 10 qotmv2 qotmv2.yaml:1"),
            "{t}"
        );
        // Ambassador would show 30% here; Envoy sends it everything.
        assert!(t.contains("solo solo 100.00% weight 30"), "{t}");
        assert!(html.contains("style=\"width:90.00%\""));
        assert!(t.contains("split 2 ways"));
        assert!(t.contains("No Envoy admin configured"));
    }

    #[test]
    fn the_summary_says_the_worst_thing_first() {
        let mut d = data(&[("qotm.yaml", MAIN), ("qotmv2.yaml", CANARY)]);
        assert_eq!(summary(&d).level, Level::Warn);
        assert!(summary(&d).headline.contains("no Envoy is connected"));

        d.envoys = vec![in_sync(&d, "a"), in_sync(&d, "b")];
        let s = summary(&d);
        assert_eq!(s.level, Level::Good);
        assert!(s.headline.starts_with("All 2 Envoys are in sync"), "{s:?}");

        let mut held = d.clone();
        held.last.diagnostics = Arc::from(vec![
            Diagnostic::error(&Location::new("qotmv2.yaml", 6, 9), "bad weight")
                .mapping("qotmv2")
                .field("weight"),
            Diagnostic::warning(
                &Location::new("qotmv2.yaml", 0, 0),
                "it has errors, so its last good content keeps serving: 1 Mapping (qotmv2)",
            )
            .held_back(),
        ]);
        let s = summary(&held);
        assert_eq!(s.level, Level::Warn);
        assert_eq!(
            s.headline,
            "1 error in the Mapping files; qotmv2.yaml is held at its last good content"
        );
        let t = text(&render(&held));
        assert!(
            t.contains("error qotmv2.yaml:6:9 qotmv2 weight bad weight"),
            "{t}"
        );
        // The held file's Mapping says so where it is listed.
        assert!(t.contains("qotmv2.yaml:1 held: last good content"), "{t}");
        assert!(!t.contains("qotm.yaml:1 held"), "{t}");

        // A file held while it is empty is no error: the headline says only what is held.
        let mut emptied = d.clone();
        emptied.last.diagnostics = Arc::from(vec![
            Diagnostic::warning(
                &Location::new("qotm.yaml", 0, 0),
                "it just became empty (an editor mid-save?), so its last content keeps serving \
             until it stays empty: 1 Mapping (qotm)",
            )
            .held_back(),
        ]);
        assert_eq!(
            summary(&emptied).headline,
            "qotm.yaml is held at its last good content"
        );

        let mut nacked = d.clone();
        nacked.envoys[1].in_sync = false;
        nacked.envoys[1].types.get_mut("rds").unwrap().sent = Some("rds-2".into());
        nacked.envoys[1].types.get_mut("rds").unwrap().last_nack =
            Some(("rds-2".into(), "regex program too large".into()));
        let s = summary(&nacked);
        assert_eq!(s.level, Level::Bad);
        assert!(s.headline.starts_with("1 Envoy rejected the config (NACK)"));
        let html = render(&nacked);
        let t = text(&html);
        assert!(t.contains("NACK: rejected"), "{t}");
        assert!(
            t.contains(
                "1 Envoy of this fleet rejected this version and still routes by an earlier one"
            ),
            "{t}"
        );
        assert!(
            t.contains("Envoy rejected rds version rds-2 : regex program too large"),
            "{t}"
        );
        assert!(html.starts_with("<!doctype html>"));
        assert!(html.contains("<title>\u{2716} canary-xds</title>"));
    }

    #[test]
    fn envoys_show_their_state_and_connection_age() {
        let mut d = data(&[("qotm.yaml", MAIN)]);
        d.envoys = vec![in_sync(&d, "edge-1")];
        let t = text(&render(&d));
        assert!(t.contains("edge-1 default SotW 3m 05s ago in sync"), "{t}");
        assert!(t.contains("cds \u{2714} lds \u{2714} rds \u{2714}"), "{t}");
    }

    #[test]
    fn names_from_files_are_escaped() {
        let evil = "apiVersion: ambassador/v1\nkind: Mapping\nname: x\nprefix: \"/<script>alert(1)</script>/\"\nservice: x\n";
        let mut d = data(&[("evil.yaml", evil)]);
        d.last.diagnostics = Arc::from(vec![Diagnostic::warning(
            &Location::new("<b>.yaml", 1, 1),
            "a <img src=x onerror=alert(1)> message",
        )]);
        let html = render(&d);
        assert!(!html.contains("<script>alert"), "{html}");
        assert!(!html.contains("<img"));
        assert!(html.contains("&lt;img src=x onerror=alert(1)&gt;"));
        assert!(html.contains("&lt;b&gt;.yaml:1:1"));
    }

    #[test]
    fn a_failed_reading_is_not_shown_as_a_table_without_canaries() {
        let mut d = data(&[("qotm.yaml", MAIN), ("qotmv2.yaml", CANARY)]);
        d.envoy_admin = vec!["http://127.0.0.1:9901".into()];
        d.live = Some(LiveTraffic {
            taken_at: d.now,
            window: Duration::ZERO,
            routes: Vec::new(),
            problems: vec!["http://127.0.0.1:9901/stats: client error (Connect)".into()],
        });
        let t = text(&render(&d));
        assert!(t.contains("client error (Connect)"), "{t}");
        assert!(t.contains("no Envoy admin endpoint could be read"), "{t}");
        assert!(!t.contains("No route has more than one backend"), "{t}");
    }

    #[test]
    fn the_live_traffic_section_is_ready_for_readings() {
        let mut d = data(&[("qotm.yaml", MAIN), ("qotmv2.yaml", CANARY)]);
        d.envoy_admin = vec!["http://127.0.0.1:9901".into()];
        assert!(text(&render(&d)).contains("Waiting for the first reading"));
        d.live = Some(LiveTraffic {
            taken_at: d.now - Duration::from_secs(2),
            window: Duration::from_secs(60),
            routes: vec![LiveRoute {
                fleet: "default".into(),
                route: "/qotm/".into(),
                backends: vec![
                    LiveBackend {
                        mapping: "qotm".into(),
                        cluster: "qotm".into(),
                        primary: true,
                        configured_bp: 9000,
                        observed_share: Some(0.9012),
                        requests: 5407,
                        rps: 90.1,
                        error_rate: Some(0.0),
                        p50_ms: Some(3.2),
                        p99_ms: Some(11.0),
                        verdict: None,
                    },
                    LiveBackend {
                        mapping: "qotmv2".into(),
                        cluster: "qotmv2".into(),
                        primary: false,
                        configured_bp: 1000,
                        observed_share: Some(0.0988),
                        requests: 593,
                        rps: 9.9,
                        error_rate: Some(0.2),
                        p50_ms: Some(3.5),
                        p99_ms: Some(12.5),
                        verdict: Some(TrafficVerdict::Worse {
                            reason: "5xx 20.00% vs 0.00% (p < 0.001)".into(),
                        }),
                    },
                ],
            }],
            problems: vec![],
        });
        let t = text(&render(&d));
        assert!(
            t.contains(
                "qotm primary qotm 90.00% 90.12% 5407 90.1 0.00% 3.2 ms 11.0 ms the baseline"
            ),
            "{t}"
        );
        let s = summary(&d);
        assert_eq!(s.level, Level::Bad);
        assert_eq!(
            s.headline,
            "Canary qotmv2 on /qotm/ is worse than its primary: 5xx 20.00% vs 0.00% (p < 0.001)"
        );
        assert!(
            t.contains("qotmv2 qotmv2 10.00% 9.88% 593 9.9 20.00% 3.5 ms 12.5 ms worse than the primary : 5xx 20.00% vs 0.00% (p &lt; 0.001)"),
            "{t}"
        );
    }

    #[test]
    fn ages_read_in_one_or_two_units() {
        let t0 = SystemTime::UNIX_EPOCH;
        let at = |s| t0 + Duration::from_secs(s);
        assert_eq!(ago(at(8), t0), "8s");
        assert_eq!(ago(at(185), t0), "3m 05s");
        assert_eq!(ago(at(7800), t0), "2h 10m");
        assert_eq!(ago(at(4 * 86_400 + 3 * 3600), t0), "4d 3h");
        assert_eq!(ago(t0, at(5)), "0s");
    }
}
