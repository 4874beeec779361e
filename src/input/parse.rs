//! YAML files to Mappings: every field typed, checked and defaulted once, at the edge.
//!
//! A document that is not a Mapping is skipped with an info diagnostic. A Mapping with an error
//! is left out (with an error diagnostic naming the file, line and field); a field we do not
//! support is ignored with a warning. Nothing is dropped silently.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::input::regex_check;
use crate::input::yaml::{self, Node, Value};
use crate::model::diagnostic::{Diagnostic, Location, Severity};
use crate::model::mapping::{
    AddHeader, BackendSettings, Bp, ClusterSettings, DEFAULT_FLEET, HeaderMatch, Mapping,
    MappingId, Origin, RetryPolicy, RouteKey, RouteSettings, Scheme, Service,
};

/// The apiVersions whose Mappings we read.
pub const API_VERSIONS: &[&str] = &[
    "ambassador/v0",
    "ambassador/v1",
    "getambassador.io/v1",
    "getambassador.io/v2",
    "getambassador.io/v3alpha1",
];

/// Ambassador's default route timeout, in milliseconds.
pub const DEFAULT_TIMEOUT_MS: u64 = 3000;
/// Ambassador's default connect timeout, in milliseconds.
pub const DEFAULT_CONNECT_TIMEOUT_MS: u64 = 3000;
/// A timeout longer than a year is surely a mistake (and Envoy's Duration has limits).
const MAX_TIMEOUT_MS: u64 = 365 * 24 * 3600 * 1000;
/// The longest name, namespace, cluster tag, fleet, method or upgrade: Kubernetes' limit for
/// object names.
const MAX_NAME: usize = 253;
/// The longest header name or value Envoy accepts in headers it adds (`HeaderValue`).
const MAX_HEADER_BYTES: usize = 16 * 1024;
/// The longest query parameter name Envoy accepts in a matcher (`QueryParameterMatcher`).
const MAX_QUERY_NAME_BYTES: usize = 1024;

/// The Mappings of one file and what was found wrong with it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ParsedFile {
    pub mappings: Vec<Arc<Mapping>>,
    /// Mappings left out for an error, with what could be read of them.
    pub rejected: Vec<Rejected>,
    pub diagnostics: Vec<Diagnostic>,
}

/// What could be read of a Mapping that was left out for an error: enough to tell its owner
/// where its traffic goes instead.
#[derive(Clone, Debug, PartialEq)]
pub struct Rejected {
    pub name: Option<String>,
    pub namespace: Option<String>,
    pub origin: Origin,
    pub key: Option<RouteKey>,
    pub weight: Option<Bp>,
    pub shadow: bool,
    pub fleets: BTreeSet<String>,
    /// The index in the file's `diagnostics` of the first error that left it out, which
    /// `compile` completes with where the Mapping's traffic goes instead.
    pub diagnostic: Option<usize>,
}

impl ParsedFile {
    /// Whether anything in the file was an error (then `serve` keeps its last good content).
    pub fn has_errors(&self) -> bool {
        self.diagnostics
            .iter()
            .any(|d| d.severity == Severity::Error)
    }
}

/// Reads the Mappings of one file. `file` is its path relative to the watched directory.
pub fn parse_file(file: &str, bytes: &[u8]) -> ParsedFile {
    let mut out = ParsedFile::default();
    let documents = match yaml::parse_documents(bytes) {
        Ok(docs) => docs,
        Err(e) => {
            out.diagnostics.push(Diagnostic::error(
                &Location::new(file, e.line, e.column),
                format!(
                    "not valid YAML: {}; nothing in this file is used",
                    e.message
                ),
            ));
            return out;
        }
    };
    for (index, doc) in documents.iter().enumerate() {
        parse_document(file, index, doc, &mut out);
    }
    out
}

fn parse_document(file: &str, index: usize, doc: &Node, out: &mut ParsedFile) {
    let at = Location::new(file, doc.line, doc.column);
    let Value::Map(_) = &doc.value else {
        out.diagnostics.push(Diagnostic::error(
            &at,
            format!(
                "a document must be a mapping with kind and apiVersion, found {}",
                doc.value.kind()
            ),
        ));
        return;
    };
    let kind = match doc.get("kind") {
        None => {
            out.diagnostics.push(
                Diagnostic::error(&at, "the document has no kind; expected kind: Mapping")
                    .field("kind"),
            );
            return;
        }
        Some(k) => k,
    };
    match kind.as_str() {
        Some("Mapping") => {}
        Some(other) => {
            out.diagnostics.push(
                Diagnostic::info(
                    &at,
                    format!(
                        "skipping kind {}: canary-xds reads only Mappings",
                        clip(other)
                    ),
                )
                .field("kind"),
            );
            return;
        }
        None => {
            out.diagnostics.push(
                Diagnostic::error(
                    &Location::new(file, kind.line, kind.column),
                    format!("kind must be a string, found {}", kind.value.kind()),
                )
                .field("kind"),
            );
            return;
        }
    }
    let origin = Origin {
        file: file.to_string(),
        document: index,
        line: doc.line,
        column: doc.column,
    };
    let first = out.diagnostics.len();
    let mut cx = Cx {
        file,
        mapping: None,
        diagnostics: &mut out.diagnostics,
        failed: false,
    };
    match read_mapping(&mut cx, doc, origin) {
        Ok(m) => out.mappings.push(Arc::new(m)),
        Err(mut r) => {
            r.diagnostic = (first..out.diagnostics.len())
                .find(|&i| out.diagnostics[i].severity == Severity::Error);
            // Without a name or a route there is no more to say than this; `compile` says
            // where the traffic of the others goes.
            if let (None, _) | (_, None) = (&r.name, &r.key)
                && let Some(i) = r.diagnostic
            {
                out.diagnostics[i]
                    .message
                    .push_str("; the Mapping is left out");
            }
            out.rejected.push(*r);
        }
    }
}

/// The context of one Mapping while it is read: where diagnostics go and whether any was an
/// error.
struct Cx<'a> {
    file: &'a str,
    mapping: Option<String>,
    diagnostics: &'a mut Vec<Diagnostic>,
    failed: bool,
}

impl Cx<'_> {
    fn at(&self, n: &Node) -> Location {
        Location::new(self.file, n.line, n.column)
    }

    fn push(&mut self, severity: Severity, n: &Node, field: &str, message: String) {
        let mut d = Diagnostic::new(severity, &self.at(n), message).field(field);
        d.mapping = self.mapping.clone();
        if severity == Severity::Error {
            self.failed = true;
        }
        self.diagnostics.push(d);
    }

    fn error(&mut self, n: &Node, field: &str, message: impl Into<String>) {
        self.push(Severity::Error, n, field, message.into());
    }

    fn warning(&mut self, n: &Node, field: &str, message: impl Into<String>) {
        self.push(Severity::Warning, n, field, message.into());
    }

    fn wrong_type(&mut self, n: &Node, field: &str, expected: &str) {
        let found = found(&n.value);
        let found = match &n.value {
            Value::Int(_) | Value::Float(_) | Value::Bool(_)
                if expected.starts_with("a string") =>
            {
                format!("{found}; put it in quotes if it is meant as text")
            }
            _ => found,
        };
        self.error(
            n,
            field,
            format!("{field} must be {expected}, found {found}"),
        );
    }

    fn string(&mut self, field: &str, n: &Node) -> Option<String> {
        match &n.value {
            Value::Str(s) => Some(s.clone()),
            _ => {
                self.wrong_type(n, field, "a string");
                None
            }
        }
    }

    fn non_empty_string(&mut self, field: &str, n: &Node) -> Option<String> {
        let s = self.string(field, n)?;
        if s.trim().is_empty() {
            self.error(n, field, format!("{field} must not be empty"));
            return None;
        }
        Some(s)
    }

    /// A name, namespace or cluster tag: it shows in logs, on the admin page and in Envoy's
    /// route or cluster names, so it must be printable, and at most as long as Kubernetes
    /// allows names to be (253 characters).
    fn object_name(&mut self, field: &str, n: &Node) -> Option<String> {
        let s = self.non_empty_string(field, n)?;
        if s.chars().any(char::is_control) {
            self.error(
                n,
                field,
                format!("{field} must not contain control characters"),
            );
            return None;
        }
        if s.chars().count() > MAX_NAME {
            self.error(
                n,
                field,
                format!("{field} is longer than {MAX_NAME} characters, as Kubernetes allows"),
            );
            return None;
        }
        Some(s)
    }

    fn bool(&mut self, field: &str, n: &Node) -> Option<bool> {
        match &n.value {
            Value::Bool(b) => Some(*b),
            // YAML 1.1 spellings, as Ambassador (PyYAML) reads them.
            Value::Str(s) if YAML11_TRUE.contains(&s.as_str()) => Some(true),
            Value::Str(s) if YAML11_FALSE.contains(&s.as_str()) => Some(false),
            _ => {
                self.wrong_type(n, field, "true or false");
                None
            }
        }
    }

    fn integer(&mut self, field: &str, n: &Node, min: i128, max: i128) -> Option<i128> {
        match &n.value {
            Value::Int(i) if (min..=max).contains(i) => Some(*i),
            Value::Int(i) => {
                self.error(
                    n,
                    field,
                    format!("{field} must be between {min} and {max}, found {i}"),
                );
                None
            }
            _ => {
                self.wrong_type(n, field, "a whole number");
                None
            }
        }
    }

    fn millis(&mut self, field: &str, n: &Node, min: u64) -> Option<u64> {
        self.integer(field, n, min.into(), MAX_TIMEOUT_MS.into())
            .map(|i| i as u64)
    }

    /// A string or a list of strings.
    fn string_list(&mut self, field: &str, n: &Node) -> Option<Vec<(String, Node)>> {
        match &n.value {
            Value::Str(s) => Some(vec![(s.clone(), n.clone())]),
            Value::Seq(items) => {
                let mut out = Vec::new();
                for item in items {
                    out.push((self.string(field, item)?, item.clone()));
                }
                Some(out)
            }
            _ => {
                self.wrong_type(n, field, "a string or a list of strings");
                None
            }
        }
    }

    /// The entries of a mapping node, with string keys.
    fn entries<'n>(
        &mut self,
        field: &str,
        n: &'n Node,
    ) -> Option<Vec<(Cow<'n, str>, &'n Node, &'n Node)>> {
        let Value::Map(entries) = &n.value else {
            self.wrong_type(n, field, "a mapping");
            return None;
        };
        let mut out = Vec::new();
        for (k, v) in entries {
            match k.scalar_text() {
                Some(key) => out.push((key, k, v)),
                None => {
                    self.error(k, field, format!("the keys of {field} must be strings"));
                    return None;
                }
            }
        }
        Some(out)
    }
}

/// YAML 1.1 booleans. The YAML reader keeps them as strings (so that `service: no` is a
/// service), and boolean fields accept them.
const YAML11_TRUE: &[&str] = &["yes", "Yes", "YES", "on", "On", "ON"];
const YAML11_FALSE: &[&str] = &["no", "No", "NO", "off", "Off", "OFF"];

/// `quote` as a `Display`, so that it costs nothing until a message is written.
struct Quoted<'a>(&'a str);

impl std::fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&quote(self.0))
    }
}

/// What a value is, for "expected X, found Y": strings and numbers are quoted in full (short
/// ones), so that the user recognizes them.
fn found(v: &Value) -> String {
    let text = match v {
        Value::Str(s) => format!("{s:?}"),
        Value::Int(i) => i.to_string(),
        Value::Float(f) => f.to_string(),
        Value::Bool(b) => b.to_string(),
        _ => return v.kind().to_string(),
    };
    if text.chars().count() > 40 {
        v.kind().to_string()
    } else {
        format!("{} {text}", v.kind())
    }
}

/// Known fields of a Mapping's spec (or of a flat Mapping).
const FIELDS: &[&str] = &[
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

fn read_mapping(cx: &mut Cx<'_>, doc: &Node, origin: Origin) -> Result<Mapping, Box<Rejected>> {
    // apiVersion
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

    // Kubernetes form: metadata + spec; flat form: fields at the top.
    let kubernetes = doc.get("spec").is_some() || doc.get("metadata").is_some();
    let mut name_node: Option<&Node> = None;
    let mut namespace_node: Option<&Node> = None;
    let mut spec: Vec<(Cow<str>, &Node, &Node)> = Vec::new();
    let Some(top) = cx.entries("document", doc) else {
        return Err(Box::new(Rejected::unknown(origin)));
    };
    if kubernetes {
        for (key, k, v) in top {
            match &*key {
                "apiVersion" | "kind" | "status" => {}
                "metadata" => {
                    for (mk, mkn, mv) in cx.entries("metadata", v).unwrap_or_default() {
                        match &*mk {
                            "name" => name_node = Some(mv),
                            "namespace" => namespace_node = Some(mv),
                            m if K8S_METADATA.contains(&m) => {}
                            other => cx.warning(
                                mkn,
                                "metadata",
                                format!("unsupported field metadata.{}, ignored", clip(other)),
                            ),
                        }
                    }
                }
                "spec" => spec = cx.entries("spec", v).unwrap_or_default(),
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
                _ => spec.push((key, k, v)),
            }
        }
    }
    if !kubernetes {
        name_node = spec
            .iter()
            .find(|(k, _, _)| k == "name")
            .map(|(_, _, v)| *v);
        namespace_node = spec
            .iter()
            .find(|(k, _, _)| k == "namespace")
            .map(|(_, _, v)| *v);
    }

    let name = match name_node {
        Some(n) => cx.object_name("name", n),
        None => {
            let field = if kubernetes { "metadata.name" } else { "name" };
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
    // Name the Mapping in diagnostics already pushed for it.
    if let Some(name) = &name {
        for d in cx.diagnostics.iter_mut().rev() {
            if d.file != cx.file || d.line < origin.line || d.mapping.is_some() {
                break;
            }
            d.mapping = Some(name.clone());
        }
    }
    let namespace = match namespace_node {
        Some(n) => cx.object_name("namespace", n),
        None => Some("default".to_string()),
    };

    let mut b = Builder::default();
    for (key, k, v) in &spec {
        if let Some(&field) = FIELDS.iter().find(|f| **f == &**key) {
            b.fields.insert(field, (k.line, k.column));
            read_field(cx, &mut b, field, v);
        } else if !(kubernetes && (key == "name" || key == "namespace")) {
            let key = clip(key);
            cx.warning(k, &key, format!("unsupported field {key}, ignored"));
        }
    }
    if kubernetes {
        // In the Kubernetes form name and namespace live in metadata only.
        for key in ["name", "namespace"] {
            if let Some((_, k, _)) = spec.iter().find(|(s, _, _)| s == key) {
                cx.warning(
                    k,
                    key,
                    format!("unsupported field spec.{key}, ignored (use metadata.{key})"),
                );
            }
        }
    }

    let doc_location = origin.location();
    let missing = |cx: &mut Cx<'_>, field: &str, what: &str| {
        let mut d = Diagnostic::error(&doc_location, format!("the Mapping has no {field}; {what}"))
            .field(field);
        d.mapping = cx.mapping.clone();
        cx.diagnostics.push(d);
        cx.failed = true;
    };
    if b.prefix.is_none() && !b.fields.contains_key("prefix") {
        missing(
            cx,
            "prefix",
            "add the path prefix to route, such as prefix: /qotm/",
        );
    }
    if b.service.is_none() && !b.fields.contains_key("service") {
        missing(
            cx,
            "service",
            "add the upstream, such as service: qotm:8080",
        );
    }

    let shadow = b.shadow.unwrap_or(false);
    if shadow {
        warn_shadow_fields(cx, &b, &spec);
    }
    let key = b.route_key(cx, &spec);
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
    let cluster_base = crate::model::mapping::cluster_base_name(&service, b.cluster_tag.as_deref());
    let key_hash = key.hash_once();
    Ok(Mapping {
        id: MappingId { namespace, name },
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
    })
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

/// The fields of one Mapping as they are read, before defaults.
#[derive(Default)]
struct Builder {
    fields: BTreeMap<&'static str, (u64, u64)>,
    prefix: Option<String>,
    prefix_regex: Option<bool>,
    service: Option<Service>,
    weight: Option<Bp>,
    host: Option<(String, Node)>,
    host_regex: Option<bool>,
    method: Option<String>,
    headers: BTreeMap<String, HeaderMatch>,
    authority: Option<(String, Node)>,
    regex_headers: BTreeMap<String, String>,
    query_parameters: BTreeMap<String, HeaderMatch>,
    precedence: Option<i32>,
    rewrite: Option<String>,
    timeout_ms: Option<u64>,
    idle_timeout_ms: Option<u64>,
    connect_timeout_ms: Option<u64>,
    backend: BackendSettings,
    shadow: Option<bool>,
    fleets: Option<BTreeSet<String>>,
    case_sensitive: Option<bool>,
    cluster_tag: Option<String>,
    grpc: Option<bool>,
    upgrades: BTreeSet<String>,
    retry_policy: Option<RetryPolicy>,
}

fn read_field(cx: &mut Cx<'_>, b: &mut Builder, field: &'static str, v: &Node) {
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
        "method" => {
            if let Some(m) = cx.non_empty_string(field, v) {
                if m.len() <= MAX_NAME && m.bytes().all(is_token_byte) {
                    b.method = Some(m.to_ascii_uppercase());
                } else {
                    cx.error(v, field, format!("{} is not an HTTP method", quote(&m)));
                }
            }
        }
        "headers" => read_headers(cx, b, v),
        "regex_headers" => {
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
        "query_parameters" => {
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
        "precedence" => {
            b.precedence = cx
                .integer(field, v, i32::MIN.into(), i32::MAX.into())
                .map(|i| i as i32)
        }
        "rewrite" => {
            if let Some(r) = cx.string(field, v) {
                if !r.is_empty() && !r.starts_with('/') {
                    cx.error(v, field, "rewrite must start with / (or be \"\" for none)");
                } else if r.chars().any(char::is_control) {
                    cx.error(v, field, "rewrite must not contain control characters");
                } else {
                    b.rewrite = Some(r);
                }
            }
        }
        "timeout_ms" => b.timeout_ms = cx.millis(field, v, 0),
        "idle_timeout_ms" => b.idle_timeout_ms = cx.millis(field, v, 0),
        "connect_timeout_ms" => b.connect_timeout_ms = cx.millis(field, v, 1),
        "host_rewrite" => {
            if let Some(h) = cx.non_empty_string(field, v) {
                // A host name (253 characters at most) and a port.
                if h.len() <= 253 + 6
                    && h.bytes()
                        .all(|c| c.is_ascii_alphanumeric() || b"-._:[]".contains(&c))
                {
                    b.backend.host_rewrite = Some(h);
                } else {
                    cx.error(v, field, format!("{} is not a host name", quote(&h)));
                }
            }
        }
        "add_request_headers" => b.backend.add_request_headers = read_add_headers(cx, field, v),
        "add_response_headers" => b.backend.add_response_headers = read_add_headers(cx, field, v),
        "remove_request_headers" => {
            b.backend.remove_request_headers = read_remove_headers(cx, field, v)
        }
        "remove_response_headers" => {
            b.backend.remove_response_headers = read_remove_headers(cx, field, v)
        }
        "shadow" => b.shadow = cx.bool(field, v),
        "ambassador_id" => {
            if let Some(ids) = cx.string_list(field, v) {
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
                } else {
                    b.fleets = Some(fleets);
                }
            }
        }
        "case_sensitive" => b.case_sensitive = cx.bool(field, v),
        // It is part of a cluster's name, and so of every stat Envoy keeps for the cluster.
        "cluster_tag" => b.cluster_tag = cx.object_name(field, v),
        "grpc" => b.grpc = cx.bool(field, v),
        "allow_upgrade" => {
            if let Some(list) = cx.string_list(field, v) {
                for (u, n) in list {
                    if !u.is_empty() && u.len() <= MAX_NAME && u.bytes().all(is_token_byte) {
                        b.upgrades.insert(u.to_ascii_lowercase());
                    } else {
                        cx.error(
                            &n,
                            field,
                            format!("{} is not an upgrade protocol", quote(&u)),
                        );
                    }
                }
            }
        }
        "use_websocket" => {
            if cx.bool(field, v) == Some(true) {
                b.upgrades.insert("websocket".into());
            }
        }
        "retry_policy" => b.retry_policy = read_retry_policy(cx, v),
        _ => unreachable!("every field of FIELDS is handled"),
    }
}

impl Builder {
    /// Checks the route's matchers together and builds its key.
    fn route_key(
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

fn read_headers(cx: &mut Cx<'_>, b: &mut Builder, v: &Node) {
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
fn match_value(cx: &mut Cx<'_>, field: &str, v: &Node) -> Option<HeaderMatch> {
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
fn header_name(cx: &mut Cx<'_>, field: &str, name: &str, n: &Node) -> Option<String> {
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

fn read_add_headers(cx: &mut Cx<'_>, field: &str, v: &Node) -> BTreeMap<String, AddHeader> {
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

fn read_remove_headers(cx: &mut Cx<'_>, field: &str, v: &Node) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (name, n) in cx.string_list(field, v).unwrap_or_default() {
        if let Some(name) = mutable_header_name(cx, field, &name, &n) {
            out.insert(name);
        }
    }
    out
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

/// `500ms`, `2.5s`, `1m`, `1h` to milliseconds.
fn parse_duration_ms(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let (number, unit) = s.split_at(split);
    let number: f64 = number.parse().ok()?;
    let scale = match unit {
        "ms" => 1.0,
        "s" => 1_000.0,
        "m" => 60_000.0,
        "h" => 3_600_000.0,
        _ => return None,
    };
    let ms = number * scale;
    (ms.is_finite() && ms >= 0.0 && ms.fract() == 0.0).then_some(ms as u64)
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

/// `[scheme://]host[:port]`.
pub fn parse_service(raw: &str) -> Result<Service, String> {
    // What messages show of the service (a huge one is cut short), quoted only for a message.
    let shown = Quoted(raw);
    let raw_trimmed = raw.trim();
    let (scheme, rest) = match raw_trimmed.split_once("://") {
        Some((s, rest)) => match s.to_ascii_lowercase().as_str() {
            "http" => (Scheme::Http, rest),
            "https" => (Scheme::Https, rest),
            _ => {
                return Err(format!(
                    "unknown scheme {} in service {shown}; use http:// or https://",
                    quote(s)
                ));
            }
        },
        None => (Scheme::Http, raw_trimmed),
    };
    if let Some(i) = rest.find(['/', '?', '#']) {
        return Err(format!(
            "service {shown} has a path ({}); a service is [scheme://]host[:port], and a \
             path in it would be dropped (use rewrite for paths)",
            quote(&rest[i..])
        ));
    }
    if rest.contains('@') {
        return Err(format!("service {shown} must not contain user information"));
    }
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        let (host, after) = v6
            .split_once(']')
            .ok_or_else(|| format!("service {shown} has an unclosed ["))?;
        if host.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!(
                "{} in service {shown} is not an IPv6 address",
                quote(host)
            ));
        }
        match after {
            "" => (host, None),
            p => match p.strip_prefix(':') {
                Some(port) => (host, Some(port)),
                None => {
                    return Err(format!(
                        "unexpected {} after ] in service {shown}",
                        quote(p)
                    ));
                }
            },
        }
    } else {
        match rest.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (rest, None),
        }
    };
    let port = match port {
        None => scheme.default_port(),
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 && p.bytes().all(|b| b.is_ascii_digit()) => n,
            _ => {
                return Err(format!(
                    "bad port {} in service {shown}; use 1 to 65535",
                    quote(p)
                ));
            }
        },
    };
    if host.is_empty() {
        return Err(format!("service {shown} has no host"));
    }
    let is_ipv6 = host.parse::<std::net::Ipv6Addr>().is_ok();
    if !is_ipv6 && !is_dns_name(host) {
        return Err(format!(
            "{} in service {shown} is not a host name or IP address",
            quote(host)
        ));
    }
    Ok(Service {
        scheme,
        host: host.to_ascii_lowercase(),
        port,
        raw: raw.to_string(),
    })
}

fn is_dns_name(host: &str) -> bool {
    host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// A host to match: a DNS name, optionally with one `*` at its start or end (Envoy's
/// virtual-host wildcards), and no port.
fn check_host(host: &str) -> Result<(), String> {
    if host == "*" {
        return Ok(());
    }
    let shown = quote(host);
    let stars = host.matches('*').count();
    let bare = host.trim_start_matches('*').trim_end_matches('*');
    if stars > 1 || (stars == 1 && !(host.starts_with('*') || host.ends_with('*'))) {
        return Err(format!(
            "host {shown}: a wildcard may only stand at the start or the end (*.example.com)"
        ));
    }
    if let Some((_, port)) = bare.rsplit_once(':')
        && port.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(format!(
            "host {shown} must not include a port: canary-xds matches hosts with any port"
        ));
    }
    // A DNS name: at most 253 characters, in labels of at most 63.
    if bare.len() > 253 || bare.split('.').any(|label| label.len() > 63) {
        return Err(format!("host {shown} is longer than a host name can be"));
    }
    let ok = !bare.is_empty()
        && bare
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(format!("host {shown} is not a host name"))
    }
}

/// A value quoted for a message, cut short when long: a diagnostic names the value, it does not
/// carry a megabyte of it.
fn quote(s: &str) -> String {
    const SHOWN: usize = 60;
    if s.chars().count() <= SHOWN {
        format!("{s:?}")
    } else {
        let head: String = s.chars().take(SHOWN).collect();
        format!("{head:?}... ({} bytes)", s.len())
    }
}

/// Text for a message, cut short when long, unquoted.
fn clip(s: &str) -> String {
    let quoted = quote(s);
    if quoted.starts_with('"') && quoted.ends_with('"') {
        s.to_string()
    } else {
        quoted
    }
}

/// HTTP's `tchar`.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse(yaml: &str) -> ParsedFile {
        parse_file("t.yaml", yaml.as_bytes())
    }

    fn one(yaml: &str) -> Mapping {
        let p = parse(yaml);
        assert_eq!(p.mappings.len(), 1, "{:#?}", p.diagnostics);
        (*p.mappings[0]).clone()
    }

    fn errors(p: &ParsedFile) -> Vec<&Diagnostic> {
        p.diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .collect()
    }

    const SEED: &str = "apiVersion: ambassador/v1\nkind: Mapping\nname: qotm2_mapping\n\
                        prefix: /qotm/\nservice: qotmv2\nweight: 10\n";

    #[test]
    fn the_docs_example_parses_with_defaults() {
        let m = one(SEED);
        assert_eq!(m.id.name, "qotm2_mapping");
        assert_eq!(m.id.namespace, "default");
        assert_eq!(m.weight, Some(1000));
        assert_eq!(m.key.prefix, "/qotm/");
        assert_eq!(m.service.host, "qotmv2");
        assert_eq!(m.service.port, 80);
        assert_eq!(m.route.rewrite.as_deref(), Some("/"));
        assert_eq!(m.route.timeout_ms, 3000);
        assert_eq!(m.cluster.connect_timeout_ms, 3000);
        assert_eq!(m.fleets, BTreeSet::from(["default".to_string()]));
        assert_eq!((m.origin.line, m.origin.column), (1, 1));
        assert_eq!(m.field_location("weight").line, 6);
    }

    #[test]
    fn kubernetes_form_reads_metadata_and_spec() {
        let m = one(
            "apiVersion: getambassador.io/v2\nkind: Mapping\nmetadata:\n  name: q\n  \
             namespace: prod\n  labels: {a: b}\nspec:\n  prefix: /q/\n  service: q:8080\n  \
             ambassador_id: [edge, internal]\n",
        );
        assert_eq!(m.id.namespace, "prod");
        assert_eq!(m.service.port, 8080);
        assert_eq!(m.fleets.len(), 2);
    }

    #[test]
    fn all_api_versions_are_accepted_and_others_are_errors() {
        for v in API_VERSIONS {
            one(&SEED.replace("ambassador/v1", v));
        }
        let p = parse(&SEED.replace("ambassador/v1", "getambassador.io/v9"));
        assert!(p.mappings.is_empty());
        assert_eq!(errors(&p)[0].field.as_deref(), Some("apiVersion"));
    }

    #[test]
    fn other_kinds_and_empty_documents_are_skipped_with_info() {
        let p = parse("---\n---\nkind: Module\nname: ambassador\n---\n");
        assert!(p.mappings.is_empty());
        assert_eq!(p.diagnostics.len(), 1);
        assert_eq!(p.diagnostics[0].severity, Severity::Info);
        assert!(p.diagnostics[0].message.contains("Module"));
    }

    #[test]
    fn several_documents_keep_their_order() {
        let mut yaml = String::new();
        for i in 0..12 {
            yaml.push_str(&format!(
                "---\napiVersion: ambassador/v1\nkind: Mapping\nname: m{i}\nprefix: /m{i}/\nservice: s\n"
            ));
        }
        let p = parse(&yaml);
        let names: Vec<_> = p.mappings.iter().map(|m| m.id.name.clone()).collect();
        let expected: Vec<_> = (0..12).map(|i| format!("m{i}")).collect();
        assert_eq!(names, expected);
        assert!(p.mappings[10].origin > p.mappings[2].origin);
    }

    #[test]
    fn unknown_fields_warn_and_are_ignored() {
        let p = parse(&format!("{SEED}cors: {{origins: '*'}}\n"));
        assert_eq!(p.mappings.len(), 1);
        let w = &p.diagnostics[0];
        assert_eq!(w.severity, Severity::Warning);
        assert_eq!(w.message, "unsupported field cors, ignored");
        assert_eq!((w.line, w.field.as_deref()), (7, Some("cors")));
        assert_eq!(w.mapping.as_deref(), Some("qotm2_mapping"));
    }

    #[test]
    fn weights_are_hundredths_exactly() {
        for (text, bp) in [
            ("0.29", 29),
            ("4.35", 435),
            ("33.33", 3333),
            ("0", 0),
            ("100", 10000),
            ("0.5", 50),
            ("100.0", 10000),
        ] {
            assert_eq!(
                one(&SEED.replace("weight: 10", &format!("weight: {text}"))).weight,
                Some(bp),
                "{text}"
            );
        }
        for bad in ["4.351", "-1", "101", "\"10\"", "[10]", "100.01", ".nan"] {
            let p = parse(&SEED.replace("weight: 10", &format!("weight: {bad}")));
            assert!(p.mappings.is_empty(), "{bad} accepted");
            let e = errors(&p);
            assert_eq!(e[0].field.as_deref(), Some("weight"), "{bad}");
            assert_eq!(e[0].line, 6, "{bad}");
        }
        let p = parse(&SEED.replace("weight: 10", "weight: \"10\""));
        assert!(errors(&p)[0].message.contains("remove the quotes"));
    }

    #[test]
    fn float_weights_must_be_within_a_millionth_of_a_hundredth() {
        assert_eq!(weight_from_float(0.29), Ok(29));
        assert_eq!(weight_from_float(4.35), Ok(435));
        assert_eq!(weight_from_float(33.33), Ok(3333));
        assert_eq!(weight_from_float(10.000_000_000_1), Ok(1000));
        for bad in [
            4.351,
            10.0001,
            10.000_001,
            99.999,
            0.001,
            100.001,
            -0.01,
            f64::NAN,
        ] {
            assert!(weight_from_float(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn services_parse_or_explain() {
        let s = parse_service("https://api.example.com").unwrap();
        assert_eq!((s.scheme, s.port), (Scheme::Https, 443));
        let s = parse_service("http://[::1]:8080").unwrap();
        assert_eq!((s.host.as_str(), s.port), ("::1", 8080));
        assert_eq!(parse_service("qotm.default:5000").unwrap().port, 5000);
        assert!(parse_service("qotm/v2").unwrap_err().contains("path"));
        assert!(parse_service("ftp://qotm").unwrap_err().contains("scheme"));
        assert!(parse_service("qotm:0").unwrap_err().contains("port"));
        assert!(parse_service("qotm:99999").unwrap_err().contains("port"));
        assert!(parse_service("qotm:").unwrap_err().contains("port"));
        assert!(parse_service("bad host").is_err());
    }

    #[test]
    fn headers_authority_and_query() {
        let m = one(&format!(
            "{SEED}headers:\n  X-Canary: \"true\"\n  x-present: true\n  :authority: Foo.COM\n\
             query_parameters:\n  debug: true\n  v: 2\nregex_headers:\n  x-user: \"^a.*\"\n"
        ));
        assert_eq!(m.key.host.as_deref(), Some("foo.com"));
        assert_eq!(m.key.headers["x-canary"], HeaderMatch::Exact("true".into()));
        assert_eq!(m.key.headers["x-present"], HeaderMatch::Present);
        assert!(!m.key.headers.contains_key(":authority"));
        assert_eq!(m.key.query_parameters["v"], HeaderMatch::Exact("2".into()));
        assert_eq!(m.key.regex_headers["x-user"], "^a.*");
    }

    #[test]
    fn bad_fields_are_errors_with_their_line() {
        let cases = [
            ("prefix: qotm/", "prefix"),
            ("timeout_ms: \"3000\"", "timeout_ms"),
            ("connect_timeout_ms: 0", "connect_timeout_ms"),
            ("method: \"GET ME\"", "method"),
            ("host: foo.com:8080", "host"),
            ("host: a*b.com", "host"),
            ("shadow: yes please", "shadow"),
            ("add_request_headers: {host: x}", "add_request_headers"),
            ("add_request_headers: {':path': x}", "add_request_headers"),
            (
                "remove_response_headers: [':status']",
                "remove_response_headers",
            ),
            ("regex_headers: {x: '('}", "regex_headers"),
            ("retry_policy: {retry_on: sometimes}", "retry_policy"),
            ("precedence: 1.5", "precedence"),
            ("ambassador_id: []", "ambassador_id"),
        ];
        for (line, field) in cases {
            let yaml = SEED
                .replace("prefix: /qotm/\n", "")
                .replace("weight: 10\n", "")
                + "prefix: /qotm/\n"
                + line
                + "\n";
            let yaml = if field == "prefix" {
                yaml.replace("prefix: /qotm/\n", "")
            } else {
                yaml
            };
            let p = parse(&yaml);
            assert!(p.mappings.is_empty(), "{line} accepted: {:?}", p.mappings);
            let e = errors(&p);
            assert!(
                e.iter().any(|d| d.field.as_deref() == Some(field)),
                "{line}: {e:?}"
            );
            assert!(
                e.iter()
                    .all(|d| d.line > 0 && d.mapping.as_deref() == Some("qotm2_mapping")),
                "{line}: {e:?}"
            );
        }
    }

    #[test]
    fn missing_required_fields_are_errors() {
        let p = parse("apiVersion: ambassador/v1\nkind: Mapping\nname: x\n");
        let fields: Vec<_> = errors(&p)
            .iter()
            .map(|d| d.field.clone().unwrap())
            .collect();
        assert_eq!(fields, ["prefix", "service"]);
        let p = parse("apiVersion: ambassador/v1\nkind: Mapping\nprefix: /\nservice: s\n");
        assert_eq!(errors(&p)[0].field.as_deref(), Some("name"));
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let p = parse(&format!("{SEED}headers: [\n"));
        assert!(p.mappings.is_empty());
        let e = errors(&p);
        assert_eq!(e.len(), 1);
        assert!(e[0].line >= 7, "{e:?}");
        assert!(e[0].message.starts_with("not valid YAML"));
    }

    #[test]
    fn a_regex_mapping_keeps_its_path_unless_it_asks_for_a_rewrite() {
        let regex = SEED.replace("prefix: /qotm/", "prefix: \"/qotm/.*\"\nprefix_regex: true");
        assert_eq!(one(&regex).route.rewrite, None);
        assert_eq!(
            one(&format!("{regex}rewrite: /x/\n"))
                .route
                .rewrite
                .as_deref(),
            Some("/x/")
        );
        assert_eq!(one(SEED).route.rewrite.as_deref(), Some("/"));
    }

    #[test]
    fn a_retry_policy_without_retry_on_warns() {
        let p = parse(&format!("{SEED}retry_policy: {{num_retries: 3}}\n"));
        assert_eq!(p.mappings.len(), 1);
        assert!(p.diagnostics.iter().any(|d| d.severity == Severity::Warning
            && d.field.as_deref() == Some("retry_policy")
            && d.message.contains("retries nothing")));
    }

    #[test]
    fn rewrite_timeouts_and_upgrades() {
        let m = one(&format!(
            "{SEED}rewrite: \"\"\ntimeout_ms: 0\nidle_timeout_ms: 5000\nuse_websocket: true\n\
             allow_upgrade: [CONNECT]\nretry_policy: {{retry_on: 5xx, num_retries: 3, per_try_timeout: 0.5s}}\n"
        ));
        assert_eq!(m.route.rewrite, None);
        assert_eq!(m.route.timeout_ms, 0);
        assert_eq!(m.route.idle_timeout_ms, Some(5000));
        assert_eq!(
            m.route.upgrades,
            BTreeSet::from(["connect".to_string(), "websocket".into()])
        );
        let r = m.route.retry_policy.unwrap();
        assert_eq!((r.num_retries, r.per_try_timeout_ms), (Some(3), Some(500)));
    }

    #[test]
    fn shadow_fields_that_cannot_apply_warn() {
        let p = parse(&format!("{SEED}shadow: true\nrewrite: /x/\n"));
        assert_eq!(p.mappings.len(), 1);
        assert!(
            p.diagnostics
                .iter()
                .any(|d| d.severity == Severity::Warning && d.field.as_deref() == Some("rewrite"))
        );
    }

    /// A YAML value of any shape, written as JSON (which YAML reads): strings of any
    /// characters, numbers, booleans, null, lists and mappings.
    fn any_value() -> impl Strategy<Value = String> {
        let leaf = prop_oneof![
            "\\PC{0,24}".prop_map(|s| serde_json::to_string(&s).unwrap()),
            prop::sample::select(vec![
                "/",
                "/qotm/",
                "^/a.*$",
                "[é]",
                "x:99999",
                "https://h",
                "::1",
                "*",
                "GET",
                "true",
                "5xx",
                "1s",
                "websocket",
                "0.29",
                "100",
                "-1",
                "1e400",
                ".nan",
            ])
            .prop_map(|s| serde_json::to_string(s).unwrap()),
            any::<i64>().prop_map(|i| i.to_string()),
            any::<f64>().prop_map(|f| format!("{f:?}")),
            Just("true".to_string()),
            Just("null".to_string()),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4)
                    .prop_map(|v| format!("[{}]", v.join(", "))),
                prop::collection::vec(("\\PC{0,8}", inner), 0..4).prop_map(|v| {
                    let entries: Vec<String> = v
                        .into_iter()
                        .map(|(k, v)| format!("{}: {v}", serde_json::to_string(&k).unwrap()))
                        .collect();
                    format!("{{{}}}", entries.join(", "))
                }),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Every field, given any value: a Mapping or diagnostics, never a panic.
        #[test]
        fn any_value_in_any_field_is_read_or_refused(
            fields in prop::collection::btree_map(prop::sample::select(FIELDS.to_vec()), any_value(), 1..6),
            kubernetes in any::<bool>(),
        ) {
            let mut yaml = String::from("apiVersion: getambassador.io/v2\nkind: Mapping\n");
            let indent = if kubernetes {
                yaml.push_str("metadata: {name: m}\nspec:\n");
                "  "
            } else {
                yaml.push_str("name: m\n");
                ""
            };
            for (field, value) in &fields {
                yaml.push_str(&format!("{indent}{field}: {value}\n"));
            }
            let p = parse_file("f.yaml", yaml.as_bytes());
            let c = crate::routes::compile(std::slice::from_ref(&p), None);
            for d in &c.diagnostics {
                prop_assert!(!d.message.is_empty());
            }
        }
    }

    /// Each of these was accepted before: Envoy refused the first two (NACK: a header value
    /// over 16 KiB, a query parameter name over 1 KiB), the others could never match or would
    /// carry control characters and megabytes into logs, route and cluster names.
    #[test]
    fn values_envoy_refuses_or_that_cannot_be_meant_are_errors() {
        let big = "v".repeat(16 * 1024 + 1);
        let cases = [
            (
                format!("add_request_headers: {{x-big: {big}}}"),
                "add_request_headers",
            ),
            (
                format!("query_parameters:\n  ? {}\n  : \"1\"", "q".repeat(1025)),
                "query_parameters",
            ),
            ("headers: {x-a: \"a\\0b\"}".into(), "headers"),
            (
                "query_parameters: {q: \"a\\r\\nb\"}".into(),
                "query_parameters",
            ),
            ("namespace: \"a\\nb\"".into(), "namespace"),
            (format!("namespace: {}", "n".repeat(254)), "namespace"),
            (format!("cluster_tag: {}", "t".repeat(254)), "cluster_tag"),
            (
                format!("ambassador_id: {}", "f".repeat(254)),
                "ambassador_id",
            ),
            (format!("host: {}.com", "h".repeat(64)), "host"),
            (format!("host_rewrite: {}", "h".repeat(300)), "host_rewrite"),
        ];
        for (line, field) in cases {
            let p = parse(&format!("{SEED}{line}\n"));
            assert!(p.mappings.is_empty(), "{field} accepted");
            let e = errors(&p);
            assert!(
                e.iter().any(|d| d.field.as_deref() == Some(field)),
                "{field}: {e:?}"
            );
            // A diagnostic names a huge value; it does not carry it.
            assert!(e.iter().all(|d| d.message.len() < 500), "{field}: {e:?}");
        }
        let p = parse(&SEED.replace("name: qotm2_mapping", "name: \"a\\tb\""));
        assert_eq!(errors(&p)[0].field.as_deref(), Some("name"));
        let p = parse(&SEED.replace("qotm2_mapping", &"n".repeat(254)));
        assert_eq!(errors(&p)[0].field.as_deref(), Some("name"));
        // The limits themselves are fine.
        one(&format!(
            "{SEED}add_request_headers: {{x-big: {}}}\n",
            &big[1..]
        ));
        one(&SEED.replace("qotm2_mapping", &"n".repeat(253)));
    }

    #[test]
    fn non_mapping_documents_are_errors() {
        let p = parse("- a\n- b\n");
        assert_eq!(errors(&p).len(), 1);
        let p = parse("just a string\n");
        assert_eq!(errors(&p).len(), 1);
    }
}
