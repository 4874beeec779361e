//! YAML files to Mappings: every field typed, checked and defaulted once, at the edge.
//!
//! A document that is not a Mapping is skipped with an info diagnostic. A Mapping with an error
//! is left out (with an error diagnostic naming the file, line and field); a field we do not
//! support is ignored with a warning. Nothing is dropped silently.

mod fields;
mod headers;
mod mapping;
mod scalars;
mod service;

pub use fields::weight_from_float;
pub use mapping::FIELDS;
pub use service::parse_service;

use crate::input::yaml::{self, Node, Value};
use crate::model::diagnostic::{Diagnostic, Location, Severity};
use crate::model::mapping::{Bp, Mapping, Origin, RouteKey};
use mapping::read_mapping;
use scalars::Cx;
use scalars::clip;
use std::collections::BTreeSet;
use std::sync::Arc;

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

#[cfg(test)]
mod tests;
