//! The page's routes section: every fleet's routes in Envoy's order, each backend's effective
//! share, and where each Mapping came from.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::{PageData, count, esc};
use crate::admin::api::{EnvoyState, envoy_state, held_notes};
use crate::model::mapping::{HeaderMatch, MappingId, RouteKey};
use crate::routes::Route;

pub(super) fn write_routes(out: &mut String, d: &PageData) {
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
