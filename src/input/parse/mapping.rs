//! One YAML document to one Mapping: the two forms (Ambassador's flat one and Kubernetes'
//! `metadata`/`spec`), the known fields, and what is refused or ignored with a warning.

use std::borrow::Cow;
use std::collections::BTreeSet;

use super::fields::{Builder, read_field};
use super::scalars::{Cx, clip, quote};
use super::{API_VERSIONS, DEFAULT_CONNECT_TIMEOUT_MS, DEFAULT_TIMEOUT_MS, Rejected};
use crate::input::yaml::Node;
use crate::model::diagnostic::Diagnostic;
use crate::model::mapping::{
    ClusterSettings, DEFAULT_FLEET, Mapping, MappingId, Origin, RouteKey, RouteSettings, Service,
};

/// Known fields of a Mapping's spec (or of a flat Mapping).
pub const FIELDS: &[&str] = &[
    "name",
    "namespace",
    "prefix",
    "prefix_regex",
    "service",
    "weight",
    "host",
    "host_regex",
    "method",
    "headers",
    "regex_headers",
    "query_parameters",
    "precedence",
    "rewrite",
    "timeout_ms",
    "idle_timeout_ms",
    "connect_timeout_ms",
    "host_rewrite",
    "add_request_headers",
    "add_response_headers",
    "remove_request_headers",
    "remove_response_headers",
    "shadow",
    "ambassador_id",
    "case_sensitive",
    "cluster_tag",
    "grpc",
    "allow_upgrade",
    "use_websocket",
    "retry_policy",
];

/// Kubernetes object metadata that is not part of a Mapping's meaning and is ignored quietly.
const K8S_METADATA: &[&str] = &[
    "labels",
    "annotations",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "ownerReferences",
    "finalizers",
    "selfLink",
    "generateName",
];

/// One document (already known to be a Mapping) read into a Mapping, or rejected with what
/// could be read of it. Every problem is pushed to `cx` in the order of the document.
pub(super) fn read_mapping(
    cx: &mut Cx<'_>,
    doc: &Node,
    origin: Origin,
) -> Result<Mapping, Box<Rejected>> {
    check_api_version(cx, doc, &origin);
    let Some(form) = read_form(cx, doc) else {
        return Err(Box::new(Rejected::unknown(origin)));
    };
    let (name, namespace) = read_identity(cx, &form, &origin);
    let mut b = read_spec(cx, &form, &origin);
    let shadow = b.shadow.unwrap_or(false);
    if shadow {
        warn_shadow_fields(cx, &b, &form.spec);
    }
    let key = b.route_key(cx, &form.spec);
    let fleets = b
        .fleets
        .clone()
        .unwrap_or_else(|| BTreeSet::from([DEFAULT_FLEET.to_string()]));
    let (Some(namespace), Some(name), Some(key), Some(service), false) = (
        namespace.clone(),
        name.clone(),
        key.clone(),
        b.service.clone(),
        cx.failed,
    ) else {
        return Err(Box::new(Rejected {
            name,
            namespace,
            origin,
            key,
            weight: b.weight,
            shadow,
            fleets,
            diagnostic: None,
        }));
    };
    Ok(build(
        b,
        MappingId { namespace, name },
        origin,
        fleets,
        key,
        service,
        shadow,
    ))
}

/// An error unless the document's apiVersion is one we read.
fn check_api_version(cx: &mut Cx<'_>, doc: &Node, origin: &Origin) {
    match doc.get("apiVersion") {
        None => {
            let d = Diagnostic::error(
                &origin.location(),
                format!(
                    "the Mapping has no apiVersion; use one of {}",
                    API_VERSIONS.join(", ")
                ),
            )
            .field("apiVersion");
            cx.diagnostics.push(d);
            cx.failed = true;
        }
        Some(v) => match v.as_str() {
            Some(s) if API_VERSIONS.contains(&s) => {}
            _ => {
                let text = v.scalar_text().unwrap_or_else(|| v.value.kind().into());
                cx.error(
                    v,
                    "apiVersion",
                    format!(
                        "unsupported apiVersion {}; use one of {}",
                        quote(&text),
                        API_VERSIONS.join(", ")
                    ),
                );
            }
        },
    }
}

/// Where a document keeps its fields: Kubernetes' `metadata` and `spec`, or Ambassador's flat
/// form with everything at the top.
struct Form<'n> {
    kubernetes: bool,
    name: Option<&'n Node>,
    namespace: Option<&'n Node>,
    spec: Vec<(Cow<'n, str>, &'n Node, &'n Node)>,
}

/// The document's form and its fields; `None` when it is not a map at all.
fn read_form<'n>(cx: &mut Cx<'_>, doc: &'n Node) -> Option<Form<'n>> {
    let kubernetes = doc.get("spec").is_some() || doc.get("metadata").is_some();
    let top = cx.entries("document", doc)?;
    let mut form = Form {
        kubernetes,
        name: None,
        namespace: None,
        spec: Vec::new(),
    };
    if kubernetes {
        for (key, k, v) in top {
            match &*key {
                "apiVersion" | "kind" | "status" => {}
                "metadata" => {
                    for (mk, mkn, mv) in cx.entries("metadata", v).unwrap_or_default() {
                        match &*mk {
                            "name" => form.name = Some(mv),
                            "namespace" => form.namespace = Some(mv),
                            m if K8S_METADATA.contains(&m) => {}
                            other => cx.warning(
                                mkn,
                                "metadata",
                                format!("unsupported field metadata.{}, ignored", clip(other)),
                            ),
                        }
                    }
                }
                "spec" => form.spec = cx.entries("spec", v).unwrap_or_default(),
                other => cx.warning(
                    k,
                    &clip(other),
                    format!(
                        "unsupported field {}, ignored (Mapping fields go under spec)",
                        clip(other)
                    ),
                ),
            }
        }
    } else {
        for (key, k, v) in top {
            match &*key {
                "apiVersion" | "kind" => {}
                _ => form.spec.push((key, k, v)),
            }
        }
        let find = |name: &str| {
            form.spec
                .iter()
                .find(|(k, _, _)| k == name)
                .map(|(_, _, v)| *v)
        };
        (form.name, form.namespace) = (find("name"), find("namespace"));
    }
    Some(form)
}

/// The Mapping's name and namespace (`default` unless given). Once the name is known, the
/// diagnostics already pushed for this document name the Mapping too.
fn read_identity(
    cx: &mut Cx<'_>,
    form: &Form<'_>,
    origin: &Origin,
) -> (Option<String>, Option<String>) {
    let name = match form.name {
        Some(n) => cx.object_name("name", n),
        None => {
            let field = if form.kubernetes {
                "metadata.name"
            } else {
                "name"
            };
            let d = Diagnostic::error(
                &origin.location(),
                format!("the Mapping has no name; add {field}"),
            )
            .field("name");
            cx.diagnostics.push(d);
            cx.failed = true;
            None
        }
    };
    cx.mapping = name.clone();
    if let Some(name) = &name {
        for d in cx.diagnostics.iter_mut().rev() {
            if d.file != cx.file || d.line < origin.line || d.mapping.is_some() {
                break;
            }
            d.mapping = Some(name.clone());
        }
    }
    let namespace = match form.namespace {
        Some(n) => cx.object_name("namespace", n),
        None => Some("default".to_string()),
    };
    (name, namespace)
}

/// Every field of the spec read into a builder: unknown fields warned about, the required ones
/// (`prefix`, `service`) errors when missing.
fn read_spec(cx: &mut Cx<'_>, form: &Form<'_>, origin: &Origin) -> Builder {
    let mut b = Builder::default();
    for (key, k, v) in &form.spec {
        if let Some(&field) = FIELDS.iter().find(|f| **f == &**key) {
            b.fields.insert(field, (k.line, k.column));
            read_field(cx, &mut b, field, v);
        } else if !(form.kubernetes && (key == "name" || key == "namespace")) {
            let key = clip(key);
            cx.warning(k, &key, format!("unsupported field {key}, ignored"));
        }
    }
    if form.kubernetes {
        // In the Kubernetes form name and namespace live in metadata only.
        for key in ["name", "namespace"] {
            if let Some((_, k, _)) = form.spec.iter().find(|(s, _, _)| s == key) {
                cx.warning(
                    k,
                    key,
                    format!("unsupported field spec.{key}, ignored (use metadata.{key})"),
                );
            }
        }
    }
    let doc_location = origin.location();
    let mut missing = |field: &str, what: &str| {
        let mut d = Diagnostic::error(&doc_location, format!("the Mapping has no {field}; {what}"))
            .field(field);
        d.mapping = cx.mapping.clone();
        cx.diagnostics.push(d);
        cx.failed = true;
    };
    if b.prefix.is_none() && !b.fields.contains_key("prefix") {
        missing(
            "prefix",
            "add the path prefix to route, such as prefix: /qotm/",
        );
    }
    if b.service.is_none() && !b.fields.contains_key("service") {
        missing("service", "add the upstream, such as service: qotm:8080");
    }
    b
}

/// The Mapping a builder with every required part describes, with the defaults of what was
/// not given.
fn build(
    b: Builder,
    id: MappingId,
    origin: Origin,
    fleets: BTreeSet<String>,
    key: RouteKey,
    service: Service,
    shadow: bool,
) -> Mapping {
    let cluster_base = crate::model::mapping::cluster_base_name(&service, b.cluster_tag.as_deref());
    let key_hash = key.hash_once();
    Mapping {
        id,
        origin,
        fleets,
        key,
        service,
        weight: b.weight,
        shadow,
        cluster: ClusterSettings {
            connect_timeout_ms: b.connect_timeout_ms.unwrap_or(DEFAULT_CONNECT_TIMEOUT_MS),
            grpc: b.grpc.unwrap_or(false),
            cluster_tag: b.cluster_tag,
        },
        route: RouteSettings {
            // Ambassador's default rewrite is `/`. For a regex prefix it would replace every
            // matching path with `/` (Envoy rewrites the whole path of a regex match), so a
            // regex Mapping keeps its path unless it asks for a rewrite.
            rewrite: match b.rewrite {
                None if b.prefix_regex == Some(true) => None,
                None => Some("/".to_string()),
                Some(r) if r.is_empty() => None,
                Some(r) => Some(r),
            },
            timeout_ms: b.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS),
            idle_timeout_ms: b.idle_timeout_ms,
            retry_policy: b.retry_policy,
            upgrades: b.upgrades,
        },
        backend: b.backend,
        cluster_base,
        key_hash,
        fields: b.fields,
    }
}

impl Rejected {
    fn unknown(origin: Origin) -> Self {
        Rejected {
            name: None,
            namespace: None,
            origin,
            key: None,
            weight: None,
            shadow: false,
            fleets: BTreeSet::from([DEFAULT_FLEET.to_string()]),
            diagnostic: None,
        }
    }
}

/// Fields of a shadow Mapping that Envoy cannot honour: it mirrors the request as routed.
const SHADOW_IGNORED: &[&str] = &[
    "rewrite",
    "timeout_ms",
    "idle_timeout_ms",
    "retry_policy",
    "host_rewrite",
    "add_request_headers",
    "add_response_headers",
    "remove_request_headers",
    "remove_response_headers",
    "allow_upgrade",
    "use_websocket",
];

fn warn_shadow_fields(cx: &mut Cx<'_>, b: &Builder, spec: &[(Cow<str>, &Node, &Node)]) {
    for (key, k, _) in spec {
        if SHADOW_IGNORED.contains(&key.as_ref()) && b.fields.contains_key(key.as_ref()) {
            cx.warning(
                k,
                key,
                format!(
                    "{key} is ignored on a shadow Mapping: Envoy mirrors the request as the \
                     route sends it"
                ),
            );
        }
    }
}
