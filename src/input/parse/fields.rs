//! The fields of a Mapping, one by one, into a builder that becomes the Mapping: route match,
//! route and backend settings, weight, retry policy.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

use super::headers::{
    header_name, is_token_byte, match_value, read_add_headers, read_headers, read_remove_headers,
};
use super::scalars::{Cx, clip, found, parse_duration_ms, quote};
use super::service::check_host;
use super::{MAX_NAME, MAX_QUERY_NAME_BYTES, MAX_TIMEOUT_MS, parse_service};
use crate::input::regex_check;
use crate::input::yaml::{Node, Value};
use crate::model::mapping::{BackendSettings, Bp, HeaderMatch, RetryPolicy, RouteKey, Service};

/// The fields of one Mapping as they are read, before defaults.
#[derive(Default)]
pub(super) struct Builder {
    pub(super) fields: BTreeMap<&'static str, (u64, u64)>,
    pub(super) prefix: Option<String>,
    pub(super) prefix_regex: Option<bool>,
    pub(super) service: Option<Service>,
    pub(super) weight: Option<Bp>,
    pub(super) host: Option<(String, Node)>,
    pub(super) host_regex: Option<bool>,
    pub(super) method: Option<String>,
    pub(super) headers: BTreeMap<String, HeaderMatch>,
    pub(super) authority: Option<(String, Node)>,
    pub(super) regex_headers: BTreeMap<String, String>,
    pub(super) query_parameters: BTreeMap<String, HeaderMatch>,
    pub(super) precedence: Option<i32>,
    pub(super) rewrite: Option<String>,
    pub(super) timeout_ms: Option<u64>,
    pub(super) idle_timeout_ms: Option<u64>,
    pub(super) connect_timeout_ms: Option<u64>,
    pub(super) backend: BackendSettings,
    pub(super) shadow: Option<bool>,
    pub(super) fleets: Option<BTreeSet<String>>,
    pub(super) case_sensitive: Option<bool>,
    pub(super) cluster_tag: Option<String>,
    pub(super) grpc: Option<bool>,
    pub(super) upgrades: BTreeSet<String>,
    pub(super) retry_policy: Option<RetryPolicy>,
}

pub(super) fn read_field(cx: &mut Cx<'_>, b: &mut Builder, field: &'static str, v: &Node) {
    match field {
        "name" | "namespace" => {}
        "prefix" => b.prefix = cx.non_empty_string(field, v),
        "prefix_regex" => b.prefix_regex = cx.bool(field, v),
        "service" => {
            if let Some(s) = cx.non_empty_string(field, v) {
                match parse_service(&s) {
                    Ok(service) => b.service = Some(service),
                    Err(e) => cx.error(v, field, e),
                }
            }
        }
        "weight" => b.weight = read_weight(cx, v),
        "host" => {
            if let Some(h) = cx.non_empty_string(field, v) {
                b.host = Some((h, v.clone()));
            }
        }
        "host_regex" => b.host_regex = cx.bool(field, v),
        "method" => b.method = read_method(cx, v),
        "headers" => read_headers(cx, b, v),
        "regex_headers" => read_regex_headers(cx, b, v),
        "query_parameters" => read_query_parameters(cx, b, v),
        "precedence" => {
            b.precedence = cx
                .integer(field, v, i32::MIN.into(), i32::MAX.into())
                .map(|i| i as i32)
        }
        "rewrite" => b.rewrite = read_rewrite(cx, v),
        "timeout_ms" => b.timeout_ms = cx.millis(field, v, 0),
        "idle_timeout_ms" => b.idle_timeout_ms = cx.millis(field, v, 0),
        "connect_timeout_ms" => b.connect_timeout_ms = cx.millis(field, v, 1),
        "host_rewrite" => b.backend.host_rewrite = read_host_rewrite(cx, v),
        "add_request_headers" => b.backend.add_request_headers = read_add_headers(cx, field, v),
        "add_response_headers" => b.backend.add_response_headers = read_add_headers(cx, field, v),
        "remove_request_headers" => {
            b.backend.remove_request_headers = read_remove_headers(cx, field, v)
        }
        "remove_response_headers" => {
            b.backend.remove_response_headers = read_remove_headers(cx, field, v)
        }
        "shadow" => b.shadow = cx.bool(field, v),
        "ambassador_id" => b.fleets = read_fleets(cx, v),
        "case_sensitive" => b.case_sensitive = cx.bool(field, v),
        // It is part of a cluster's name, and so of every stat Envoy keeps for the cluster.
        "cluster_tag" => b.cluster_tag = cx.object_name(field, v),
        "grpc" => b.grpc = cx.bool(field, v),
        "allow_upgrade" => read_upgrades(cx, b, v),
        "use_websocket" => {
            if cx.bool(field, v) == Some(true) {
                b.upgrades.insert("websocket".into());
            }
        }
        "retry_policy" => b.retry_policy = read_retry_policy(cx, v),
        _ => unreachable!("every field of FIELDS is handled"),
    }
}

fn read_method(cx: &mut Cx<'_>, v: &Node) -> Option<String> {
    let m = cx.non_empty_string("method", v)?;
    if m.len() <= MAX_NAME && m.bytes().all(is_token_byte) {
        Some(m.to_ascii_uppercase())
    } else {
        cx.error(v, "method", format!("{} is not an HTTP method", quote(&m)));
        None
    }
}

fn read_regex_headers(cx: &mut Cx<'_>, b: &mut Builder, v: &Node) {
    let field = "regex_headers";
    for (name, kn, val) in cx.entries(field, v).unwrap_or_default() {
        let Some(name) = header_name(cx, field, &name, kn) else {
            continue;
        };
        if let Some(re) = cx.non_empty_string(field, val) {
            match regex_check::check(&re) {
                Ok(()) => {
                    b.regex_headers.insert(name, re);
                }
                Err(e) => cx.error(
                    val,
                    field,
                    format!("invalid regex for {}: {e}", clip(&name)),
                ),
            }
        }
    }
}

fn read_query_parameters(cx: &mut Cx<'_>, b: &mut Builder, v: &Node) {
    let field = "query_parameters";
    for (name, kn, val) in cx.entries(field, v).unwrap_or_default() {
        if name.is_empty() {
            cx.error(kn, field, "a query parameter name must not be empty");
            continue;
        }
        if name.len() > MAX_QUERY_NAME_BYTES {
            cx.error(
                kn,
                field,
                format!(
                    "the query parameter name {} is longer than Envoy allows \
                     ({MAX_QUERY_NAME_BYTES} bytes)",
                    quote(&name)
                ),
            );
            continue;
        }
        if let Some(m) = match_value(cx, field, val) {
            b.query_parameters.insert(name.into_owned(), m);
        }
    }
}

fn read_rewrite(cx: &mut Cx<'_>, v: &Node) -> Option<String> {
    let r = cx.string("rewrite", v)?;
    if !r.is_empty() && !r.starts_with('/') {
        cx.error(
            v,
            "rewrite",
            "rewrite must start with / (or be \"\" for none)",
        );
    } else if r.chars().any(char::is_control) {
        cx.error(v, "rewrite", "rewrite must not contain control characters");
    } else {
        return Some(r);
    }
    None
}

fn read_host_rewrite(cx: &mut Cx<'_>, v: &Node) -> Option<String> {
    let h = cx.non_empty_string("host_rewrite", v)?;
    // A host name (253 characters at most) and a port.
    if h.len() <= 253 + 6
        && h.bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"-._:[]".contains(&c))
    {
        Some(h)
    } else {
        cx.error(
            v,
            "host_rewrite",
            format!("{} is not a host name", quote(&h)),
        );
        None
    }
}

/// `ambassador_id`: the fleets a Mapping belongs to.
fn read_fleets(cx: &mut Cx<'_>, v: &Node) -> Option<BTreeSet<String>> {
    let field = "ambassador_id";
    let ids = cx.string_list(field, v)?;
    let mut fleets = BTreeSet::new();
    for (id, n) in ids {
        if id.is_empty()
            || id.len() > MAX_NAME
            || !id.bytes().all(|c| c.is_ascii_graphic() && c != b'=')
        {
            cx.error(
                &n,
                field,
                format!("{} is not a valid ambassador_id", quote(&id)),
            );
        } else {
            fleets.insert(id);
        }
    }
    if fleets.is_empty() {
        cx.error(v, field, "ambassador_id must name at least one fleet");
        return None;
    }
    Some(fleets)
}

fn read_upgrades(cx: &mut Cx<'_>, b: &mut Builder, v: &Node) {
    let Some(list) = cx.string_list("allow_upgrade", v) else {
        return;
    };
    for (u, n) in list {
        if !u.is_empty() && u.len() <= MAX_NAME && u.bytes().all(is_token_byte) {
            b.upgrades.insert(u.to_ascii_lowercase());
        } else {
            cx.error(
                &n,
                "allow_upgrade",
                format!("{} is not an upgrade protocol", quote(&u)),
            );
        }
    }
}

impl Builder {
    /// Checks the route's matchers together and builds its key.
    pub(super) fn route_key(
        &mut self,
        cx: &mut Cx<'_>,
        spec: &[(Cow<str>, &Node, &Node)],
    ) -> Option<RouteKey> {
        let node_of = |field: &str| {
            spec.iter()
                .find(|(k, _, _)| k == field)
                .map(|(_, _, v)| (*v).clone())
        };
        let prefix_regex = self.prefix_regex.unwrap_or(false);
        let mut prefix = self.prefix.clone();
        if let (Some(p), Some(n)) = (&prefix, node_of("prefix")) {
            if prefix_regex {
                if let Err(e) = regex_check::check(p) {
                    cx.error(&n, "prefix", format!("invalid prefix regex: {e}"));
                    prefix = None;
                }
            } else if !p.starts_with('/') {
                cx.error(
                    &n,
                    "prefix",
                    format!(
                        "prefix {} must start with / (or set prefix_regex: true)",
                        quote(p)
                    ),
                );
                prefix = None;
            } else if p.chars().any(|c| c.is_control() || c == ' ') {
                cx.error(
                    &n,
                    "prefix",
                    "prefix must not contain spaces or control characters",
                );
                prefix = None;
            }
        }
        let host_regex = self.host_regex.unwrap_or(false);
        let mut host = match (self.host.take(), self.authority.take()) {
            (Some((h, hn)), Some((a, an))) => {
                if h.eq_ignore_ascii_case(&a) && !host_regex {
                    Some((h, hn))
                } else {
                    cx.error(
                        &an,
                        "headers",
                        format!(
                            "the :authority header {} contradicts host {}",
                            quote(&a),
                            quote(&h)
                        ),
                    );
                    None
                }
            }
            (h, None) => h,
            (None, Some(a)) if host_regex => {
                cx.error(
                    &a.1,
                    "headers",
                    "an exact :authority header cannot be combined with host_regex",
                );
                None
            }
            (None, a) => a,
        };
        if let Some((h, n)) = &host {
            if host_regex {
                if let Err(e) = regex_check::check(h) {
                    cx.error(n, "host", format!("invalid host regex: {e}"));
                }
            } else if let Err(e) = check_host(h) {
                cx.error(n, "host", e);
            }
        }
        if host_regex
            && host.is_none()
            && let Some(n) = node_of("host_regex")
        {
            cx.warning(&n, "host_regex", "host_regex has no effect without host");
        }
        if let Some((h, _)) = &host
            && !host_regex
            && h == "*"
        {
            host = None;
        }
        Some(RouteKey {
            precedence: self.precedence.unwrap_or(0),
            host: host.map(|(h, _)| {
                if host_regex {
                    h
                } else {
                    h.to_ascii_lowercase()
                }
            }),
            host_regex: host_regex && self.fields.contains_key("host"),
            method: self.method.clone(),
            prefix: prefix?,
            prefix_regex,
            case_sensitive: self.case_sensitive.unwrap_or(true),
            headers: std::mem::take(&mut self.headers),
            regex_headers: std::mem::take(&mut self.regex_headers),
            query_parameters: std::mem::take(&mut self.query_parameters),
        })
    }
}

/// Envoy's `retry_on` conditions.
const RETRY_ON: &[&str] = &[
    "5xx",
    "gateway-error",
    "reset",
    "reset-before-request",
    "connect-failure",
    "envoy-ratelimited",
    "retriable-4xx",
    "refused-stream",
    "retriable-status-codes",
    "retriable-headers",
    "http3-post-connect-failure",
];

fn read_retry_policy(cx: &mut Cx<'_>, v: &Node) -> Option<RetryPolicy> {
    let field = "retry_policy";
    let mut policy = RetryPolicy {
        retry_on: None,
        num_retries: None,
        per_try_timeout_ms: None,
    };
    for (k, kn, x) in cx.entries(field, v)? {
        match &*k {
            "retry_on" => {
                if let Some(s) = cx.non_empty_string("retry_policy.retry_on", x) {
                    let bad: Vec<&str> = s
                        .split(',')
                        .map(str::trim)
                        .filter(|c| !RETRY_ON.contains(c))
                        .collect();
                    if bad.is_empty() {
                        policy.retry_on = Some(s);
                    } else {
                        cx.error(
                            x,
                            field,
                            format!(
                                "unknown retry_on condition {}; use {}",
                                clip(&bad.join(", ")),
                                RETRY_ON.join(", ")
                            ),
                        );
                    }
                }
            }
            "num_retries" => {
                policy.num_retries = cx
                    .integer("retry_policy.num_retries", x, 0, 1000)
                    .map(|i| i as u32)
            }
            "per_try_timeout" => {
                if let Some(s) = cx.non_empty_string("retry_policy.per_try_timeout", x) {
                    match parse_duration_ms(&s) {
                        Some(ms) if ms <= MAX_TIMEOUT_MS => policy.per_try_timeout_ms = Some(ms),
                        _ => cx.error(
                            x,
                            field,
                            format!(
                                "per_try_timeout {} is not a duration such as 500ms or 2.5s",
                                quote(&s)
                            ),
                        ),
                    }
                }
            }
            other => cx.warning(
                kn,
                field,
                format!("unsupported field retry_policy.{}, ignored", clip(other)),
            ),
        }
    }
    if policy.retry_on.is_none() {
        cx.warning(
            v,
            field,
            "retry_policy has no retry_on, so Envoy retries nothing; add one, such as retry_on: 5xx",
        );
    }
    Some(policy)
}

/// A weight: a YAML number from 0 to 100 with at most two decimals, in hundredths.
fn read_weight(cx: &mut Cx<'_>, v: &Node) -> Option<Bp> {
    let field = "weight";
    let result = match &v.value {
        Value::Int(i) if (0..=100).contains(i) => Ok(*i as Bp * 100),
        Value::Int(i) => Err(format!("weight must be between 0 and 100, found {i}")),
        Value::Float(f) => weight_from_float(*f),
        Value::Str(s) if s.trim().parse::<f64>().is_ok() => Err(format!(
            "weight must be a number, found the string {}; remove the quotes",
            quote(s)
        )),
        other => Err(format!("weight must be a number, found {}", found(other))),
    };
    match result {
        Ok(bp) => Some(bp),
        Err(e) => {
            cx.error(v, field, e);
            None
        }
    }
}

/// Converts a float weight to hundredths exactly, or says why it cannot be.
pub fn weight_from_float(f: f64) -> Result<Bp, String> {
    if !f.is_finite() || !(0.0..=100.0).contains(&f) {
        return Err(format!("weight must be between 0 and 100, found {f}"));
    }
    let hundredths = f * 100.0;
    let rounded = hundredths.round();
    if (hundredths - rounded).abs() > 1e-6 {
        return Err(format!(
            "weight {f} has more than two decimals; weights are in hundredths of a percent"
        ));
    }
    Ok(rounded as Bp)
}
