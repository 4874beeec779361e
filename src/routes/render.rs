//! The route table as people and programs read it: the stable JSON of `check --format json`
//! (also served by the admin API) and the human table of `check`.
//!
//! The JSON shape is documented in docs/check.md; fields may be added, never renamed or removed,
//! without bumping `format`.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use super::{Route, RouteTable, Tables};
use crate::model::diagnostic::{Counts, Diagnostic};
use crate::model::mapping::{
    BackendSettings, Bp, ClusterSettings, HeaderMatch, Mapping, RouteSettings,
};
use crate::model::weights::percent;

/// The version of the JSON format.
pub const FORMAT: u32 = 1;

#[derive(Serialize)]
pub struct RouteJson<'a> {
    pub host: &'a str,
    pub host_regex: bool,
    pub method: Option<&'a str>,
    pub prefix: &'a str,
    pub prefix_regex: bool,
    pub case_sensitive: bool,
    pub headers: &'a BTreeMap<String, HeaderMatch>,
    pub regex_headers: &'a BTreeMap<String, String>,
    pub query_parameters: &'a BTreeMap<String, HeaderMatch>,
    pub precedence: i32,
    pub backends: Vec<BackendJson<'a>>,
    pub shadow: Option<ShadowJson<'a>>,
    /// Present when `serve` holds this route at its last good weights; says why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub held: Option<&'a str>,
}

#[derive(Serialize)]
pub struct BackendJson<'a> {
    pub mapping: &'a str,
    pub namespace: &'a str,
    pub service: &'a str,
    /// The share as a percentage, for people.
    pub weight: f64,
    /// The share in hundredths of a percent; a route's add up to exactly 10000.
    pub weight_bp: Bp,
    /// The Envoy cluster, whose stats are `cluster.<name>.*`.
    pub cluster: &'a str,
    pub file: &'a str,
    pub line: u64,
    /// Whether the Mapping sets `weight`; `status` takes a route's primary among the Mappings
    /// that do not (Ambassador's default Mapping).
    pub weighted: bool,
    pub settings: MappingSettingsJson<'a>,
}

/// What a Mapping does beyond its share, field by field: what `diff` compares, also when it
/// reads a running server's `/api/routes`.
#[derive(Serialize)]
pub struct MappingSettingsJson<'a> {
    /// What the route does to a request (rewrite, timeouts, retries, upgrades).
    pub route: &'a RouteSettings,
    /// What is done to the requests sent to this backend (host rewrite, header changes).
    pub backend: &'a BackendSettings,
    /// The upstream cluster's settings (connect timeout, gRPC, cluster tag).
    pub cluster: &'a ClusterSettings,
}

fn settings_json(m: &Mapping) -> MappingSettingsJson<'_> {
    MappingSettingsJson {
        route: &m.route,
        backend: &m.backend,
        cluster: &m.cluster,
    }
}

#[derive(Serialize)]
pub struct ShadowJson<'a> {
    pub mapping: &'a str,
    pub namespace: &'a str,
    pub service: &'a str,
    /// The percentage of the route's requests mirrored.
    pub percent: f64,
    pub cluster: &'a str,
    pub file: &'a str,
    pub line: u64,
    pub settings: MappingSettingsJson<'a>,
}

pub fn route_json(r: &Route) -> RouteJson<'_> {
    RouteJson {
        host: r.key.host.as_deref().unwrap_or("*"),
        host_regex: r.key.host_regex,
        method: r.key.method.as_deref(),
        prefix: &r.key.prefix,
        prefix_regex: r.key.prefix_regex,
        case_sensitive: r.key.case_sensitive,
        headers: &r.key.headers,
        regex_headers: &r.key.regex_headers,
        query_parameters: &r.key.query_parameters,
        precedence: r.key.precedence,
        backends: r
            .backends
            .iter()
            .map(|b| BackendJson {
                mapping: &b.mapping.id.name,
                namespace: &b.mapping.id.namespace,
                service: &b.mapping.service.raw,
                weight: f64::from(b.weight_bp) / 100.0,
                weight_bp: b.weight_bp,
                cluster: &b.cluster,
                file: &b.mapping.origin.file,
                line: b.mapping.origin.line,
                weighted: b.mapping.weight.is_some(),
                settings: settings_json(&b.mapping),
            })
            .collect(),
        shadow: r.shadow.as_ref().map(|s| ShadowJson {
            mapping: &s.mapping.id.name,
            namespace: &s.mapping.id.namespace,
            service: &s.mapping.service.raw,
            percent: f64::from(s.percent_bp) / 100.0,
            cluster: &s.cluster,
            file: &s.mapping.origin.file,
            line: s.mapping.origin.line,
            settings: settings_json(&s.mapping),
        }),
        held: r.held.as_deref(),
    }
}

pub fn routes_json(t: &RouteTable) -> Vec<RouteJson<'_>> {
    t.routes.iter().map(|r| route_json(r)).collect()
}

#[derive(Serialize)]
struct FleetJson<'a> {
    routes: Vec<RouteJson<'a>>,
}

#[derive(Serialize)]
struct OneFleet<'a> {
    format: u32,
    fleet: &'a str,
    routes: Vec<RouteJson<'a>>,
    diagnostics: &'a [Diagnostic],
}

#[derive(Serialize)]
struct AllFleets<'a> {
    format: u32,
    /// Always null here: the key is in every document, so that readers need not test for it.
    fleet: Option<&'a str>,
    fleets: BTreeMap<&'a str, FleetJson<'a>>,
    diagnostics: &'a [Diagnostic],
}

/// The JSON document of `check --format json` for one fleet (which may not exist: then no
/// routes), or for every fleet.
pub fn json(tables: &Tables, fleet: Option<&str>, diagnostics: &[Diagnostic]) -> String {
    let rendered = match fleet {
        Some(fleet) => serde_json::to_string_pretty(&OneFleet {
            format: FORMAT,
            fleet,
            routes: tables.fleet(fleet).map(routes_json).unwrap_or_default(),
            diagnostics,
        }),
        None => serde_json::to_string_pretty(&AllFleets {
            format: FORMAT,
            fleet: None,
            fleets: tables
                .fleets
                .iter()
                .map(|(name, t)| {
                    (
                        name.as_str(),
                        FleetJson {
                            routes: routes_json(t),
                        },
                    )
                })
                .collect(),
            diagnostics,
        }),
    };
    rendered.expect("the report serializes") + "\n"
}

/// The human table: route by route, each backend with its service, share and source, then the
/// diagnostics. Fits 80 columns for ordinary names.
pub fn table(tables: &Tables, fleet: Option<&str>, diagnostics: &[Diagnostic]) -> String {
    let mut out = String::new();
    let fleets: Vec<(&str, Option<&RouteTable>)> = match fleet {
        Some(f) => vec![(f, tables.fleet(f))],
        None => tables
            .fleets
            .iter()
            .map(|(n, t)| (n.as_str(), Some(t.as_ref())))
            .collect(),
    };
    for (name, t) in fleets {
        let routes = t.map_or(&[][..], |t| &t.routes[..]);
        let mappings = t.map_or(0, RouteTable::mapping_count);
        let _ = writeln!(
            out,
            "fleet {name}: {} route{}, {mappings} Mapping{}",
            routes.len(),
            plural(routes.len()),
            plural(mappings)
        );
        for (i, r) in routes.iter().enumerate() {
            out.push('\n');
            write_route(&mut out, i + 1, r);
        }
        out.push('\n');
    }
    let c = Counts::of(diagnostics);
    let _ = writeln!(
        out,
        "{} error{}, {} warning{}, {} info",
        c.errors,
        plural(c.errors),
        c.warnings,
        plural(c.warnings),
        c.infos
    );
    for d in diagnostics {
        write_diagnostic(&mut out, d);
    }
    out
}

/// The width the human table is laid out for.
pub const WIDTH: usize = 80;

/// A diagnostic as a heading (`error: a.yaml:7:9: Mapping qotm, field weight`) and its
/// message wrapped to `WIDTH` columns below it.
pub fn write_diagnostic(out: &mut String, d: &Diagnostic) {
    // A diagnostic about the directory as a whole (file ".") names it in its message.
    let mut heading = if d.file == "." && d.line == 0 {
        d.severity.to_string()
    } else {
        format!("{}: {}", d.severity, d.location())
    };
    match (&d.mapping, &d.field) {
        (Some(m), Some(f)) => {
            let _ = write!(heading, ": Mapping {m}, field {f}");
        }
        (Some(m), None) => {
            let _ = write!(heading, ": Mapping {m}");
        }
        (None, Some(f)) => {
            let _ = write!(heading, ": field {f}");
        }
        (None, None) => {}
    }
    let _ = writeln!(out, "{heading}");
    let mut line = String::new();
    for word in d.message.split_whitespace() {
        if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > WIDTH {
            let _ = writeln!(out, "{}", line.trim_end());
            line.clear();
        }
        if line.is_empty() {
            line.push_str("    ");
        } else {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        let _ = writeln!(out, "{line}");
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn write_route(out: &mut String, n: usize, r: &Route) {
    let k = &r.key;
    let prefix = if k.prefix_regex {
        format!("regex {}", k.prefix)
    } else {
        k.prefix.clone()
    };
    let host = match (&k.host, k.host_regex) {
        (None, _) => "*".to_string(),
        (Some(h), false) => h.clone(),
        (Some(h), true) => format!("regex {h}"),
    };
    let _ = writeln!(
        out,
        "{n}. {prefix}  host {host}  method {}",
        k.method.as_deref().unwrap_or("*")
    );
    let mut extra = Vec::new();
    for (h, m) in &k.headers {
        extra.push(format!("header {h}={m}"));
    }
    for (h, re) in &k.regex_headers {
        extra.push(format!("header {h}~{re}"));
    }
    for (q, m) in &k.query_parameters {
        extra.push(format!("query {q}={m}"));
    }
    if k.precedence != 0 {
        extra.push(format!("precedence {}", k.precedence));
    }
    if !k.case_sensitive {
        extra.push("case-insensitive".into());
    }
    if !extra.is_empty() {
        let _ = writeln!(out, "   {}", extra.join("  "));
    }
    if let Some(why) = &r.held {
        let _ = writeln!(out, "   ({why})");
    }
    let mut rows: Vec<[String; 5]> = vec![[
        "MAPPING".into(),
        "SERVICE".into(),
        "WEIGHT".into(),
        "CLUSTER".into(),
        "SOURCE".into(),
    ]];
    for b in &r.backends {
        rows.push([
            b.mapping.id.to_string(),
            b.mapping.service.raw.clone(),
            format!("{}.{:02}%", b.weight_bp / 100, b.weight_bp % 100),
            b.cluster.clone(),
            format!("{}:{}", b.mapping.origin.file, b.mapping.origin.line),
        ]);
    }
    if let Some(s) = &r.shadow {
        rows.push([
            s.mapping.id.to_string(),
            s.mapping.service.raw.clone(),
            format!("mirror {}%", percent(s.percent_bp)),
            s.cluster.clone(),
            format!("{}:{}", s.mapping.origin.file, s.mapping.origin.line),
        ]);
    }
    let widths: Vec<usize> = (0..5)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    for row in rows {
        let mut line = String::from("   ");
        for (c, cell) in row.iter().enumerate() {
            if c == 4 {
                line.push_str(cell);
            } else if c == 2 {
                // Right-align percentages so their points line up.
                let _ = write!(line, "{cell:>w$}  ", w = widths[c]);
            } else {
                let _ = write!(line, "{cell:<w$}  ", w = widths[c]);
            }
        }
        let _ = writeln!(out, "{}", line.trim_end());
    }
}
