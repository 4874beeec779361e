//! Header matches and header changes: names Envoy accepts, values it can match, and limits on
//! what it would refuse.

use std::collections::{BTreeMap, BTreeSet};

use super::MAX_HEADER_BYTES;
use super::fields::Builder;
use super::scalars::{Cx, clip, quote};
use crate::input::yaml::{Node, Value};
use crate::model::mapping::{AddHeader, HeaderMatch};

pub(super) fn read_headers(cx: &mut Cx<'_>, b: &mut Builder, v: &Node) {
    let field = "headers";
    for (name, kn, val) in cx.entries(field, v).unwrap_or_default() {
        let Some(name) = header_name(cx, field, &name, kn) else {
            continue;
        };
        let Some(m) = match_value(cx, field, val) else {
            continue;
        };
        if name == ":authority" || name == "host" {
            match m {
                HeaderMatch::Exact(a) => b.authority = Some((a, val.clone())),
                HeaderMatch::Present => {} // every request has an authority
            }
            continue;
        }
        if b.headers.insert(name.clone(), m).is_some() {
            cx.error(kn, field, format!("header {} is given twice", clip(&name)));
        }
    }
}

/// A header or query matcher value: a string (exact) or `true` (present).
pub(super) fn match_value(cx: &mut Cx<'_>, field: &str, v: &Node) -> Option<HeaderMatch> {
    match &v.value {
        // HTTP header and query values never hold them: such a matcher could never match.
        Value::Str(s) if s.chars().any(|c| c.is_control() && c != '\t') => {
            cx.error(
                v,
                field,
                format!("a {field} value must not contain control characters"),
            );
            None
        }
        Value::Str(s) => Some(HeaderMatch::Exact(s.clone())),
        Value::Int(i) => Some(HeaderMatch::Exact(i.to_string())),
        Value::Bool(true) => Some(HeaderMatch::Present),
        _ => {
            cx.error(
                v,
                field,
                format!(
                    "a {field} value must be a string (exact match) or true (present), found {}",
                    v.value.kind()
                ),
            );
            None
        }
    }
}

/// A lower-cased header name, checked against HTTP's token syntax.
pub(super) fn header_name(cx: &mut Cx<'_>, field: &str, name: &str, n: &Node) -> Option<String> {
    let bare = name.strip_prefix(':').unwrap_or(name);
    if bare.is_empty() || !bare.bytes().all(is_token_byte) {
        cx.error(
            n,
            field,
            format!("{} is not a valid header name", quote(name)),
        );
        return None;
    }
    if name.len() > MAX_HEADER_BYTES {
        cx.error(
            n,
            field,
            format!(
                "the header name {} is longer than Envoy allows ({MAX_HEADER_BYTES} bytes)",
                quote(name)
            ),
        );
        return None;
    }
    Some(name.to_ascii_lowercase())
}

/// Envoy refuses to add or remove pseudo-headers and `host`: say so before it does.
fn mutable_header_name(cx: &mut Cx<'_>, field: &str, name: &str, n: &Node) -> Option<String> {
    let name = header_name(cx, field, name, n)?;
    if name.starts_with(':') || name == "host" {
        let hint = if field.contains("request") && (name == "host" || name == ":authority") {
            " (use host_rewrite to change the host)"
        } else {
            ""
        };
        cx.error(
            n,
            field,
            format!("{field} cannot change the {name} header{hint}"),
        );
        return None;
    }
    Some(name)
}

pub(super) fn read_add_headers(
    cx: &mut Cx<'_>,
    field: &str,
    v: &Node,
) -> BTreeMap<String, AddHeader> {
    let mut out = BTreeMap::new();
    for (name, kn, val) in cx.entries(field, v).unwrap_or_default() {
        let Some(name) = mutable_header_name(cx, field, &name, kn) else {
            continue;
        };
        let header = match &val.value {
            Value::Str(s) => Some(AddHeader {
                value: s.clone(),
                append: true,
            }),
            Value::Int(i) => Some(AddHeader {
                value: i.to_string(),
                append: true,
            }),
            Value::Map(_) => {
                let mut value = None;
                let mut append = true;
                for (k, kn2, x) in cx.entries(field, val).unwrap_or_default() {
                    match &*k {
                        "value" => {
                            value = x
                                .scalar_text()
                                .filter(|_| !matches!(x.value, Value::Seq(_) | Value::Map(_)))
                        }
                        "append" => append = cx.bool(field, x).unwrap_or(true),
                        _ => cx.warning(
                            kn2,
                            field,
                            format!(
                                "unsupported field {field}.{}.{}, ignored",
                                clip(&name),
                                clip(&k)
                            ),
                        ),
                    }
                }
                match value {
                    Some(value) => Some(AddHeader {
                        value: value.into_owned(),
                        append,
                    }),
                    None => {
                        cx.error(val, field, format!("{field}.{} needs a value", clip(&name)));
                        None
                    }
                }
            }
            _ => {
                cx.wrong_type(val, field, "a string or {value, append}");
                None
            }
        };
        if let Some(h) = header {
            if h.value.chars().any(|c| c.is_control() && c != '\t') {
                cx.error(
                    val,
                    field,
                    format!("the value of {} has control characters", clip(&name)),
                );
            } else if h.value.len() > MAX_HEADER_BYTES || name.len() > MAX_HEADER_BYTES {
                cx.error(
                    val,
                    field,
                    format!(
                        "the header {} is longer than Envoy allows ({MAX_HEADER_BYTES} bytes for \
                         its name and for its value)",
                        clip(&name)
                    ),
                );
            } else {
                out.insert(name, h);
            }
        }
    }
    out
}

pub(super) fn read_remove_headers(cx: &mut Cx<'_>, field: &str, v: &Node) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (name, n) in cx.string_list(field, v).unwrap_or_default() {
        if let Some(name) = mutable_header_name(cx, field, &name, &n) {
            out.insert(name);
        }
    }
    out
}

/// HTTP's `tchar`.
pub(super) fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}
