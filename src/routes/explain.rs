//! Words for routes: a route key described as people read it, and where the traffic of a
//! left-out Mapping's route goes instead.

use super::Tables;
use crate::input::parse::{ParsedFile, Rejected};
use crate::model::diagnostic::Diagnostic;
use crate::model::mapping::{DEFAULT_FLEET, RouteKey};
use crate::model::weights::percent;

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

/// Completes the error of each Mapping left out with where its traffic goes instead.
/// `diagnostics` starts with the files' own diagnostics, in file order.
pub(super) fn explain_rejected(
    files: &[&ParsedFile],
    tables: &Tables,
    diagnostics: &mut [Diagnostic],
) {
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
