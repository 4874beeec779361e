//! Reading one YAML value as the type a field needs, with a diagnostic naming the file, line
//! and field when it is not: strings, names, booleans, integers, durations, lists and maps.

use std::borrow::Cow;

use super::{MAX_NAME, MAX_TIMEOUT_MS};
use crate::input::yaml::{Node, Value};
use crate::model::diagnostic::{Diagnostic, Location, Severity};

/// The context of one Mapping while it is read: where diagnostics go and whether any was an
/// error.
pub(super) struct Cx<'a> {
    pub(super) file: &'a str,
    pub(super) mapping: Option<String>,
    pub(super) diagnostics: &'a mut Vec<Diagnostic>,
    pub(super) failed: bool,
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

    pub(super) fn error(&mut self, n: &Node, field: &str, message: impl Into<String>) {
        self.push(Severity::Error, n, field, message.into());
    }

    pub(super) fn warning(&mut self, n: &Node, field: &str, message: impl Into<String>) {
        self.push(Severity::Warning, n, field, message.into());
    }

    pub(super) fn wrong_type(&mut self, n: &Node, field: &str, expected: &str) {
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

    pub(super) fn string(&mut self, field: &str, n: &Node) -> Option<String> {
        match &n.value {
            Value::Str(s) => Some(s.clone()),
            _ => {
                self.wrong_type(n, field, "a string");
                None
            }
        }
    }

    pub(super) fn non_empty_string(&mut self, field: &str, n: &Node) -> Option<String> {
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
    pub(super) fn object_name(&mut self, field: &str, n: &Node) -> Option<String> {
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

    pub(super) fn bool(&mut self, field: &str, n: &Node) -> Option<bool> {
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

    pub(super) fn integer(&mut self, field: &str, n: &Node, min: i128, max: i128) -> Option<i128> {
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

    pub(super) fn millis(&mut self, field: &str, n: &Node, min: u64) -> Option<u64> {
        self.integer(field, n, min.into(), MAX_TIMEOUT_MS.into())
            .map(|i| i as u64)
    }

    /// A string or a list of strings.
    pub(super) fn string_list(&mut self, field: &str, n: &Node) -> Option<Vec<(String, Node)>> {
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
    pub(super) fn entries<'n>(
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
pub(super) struct Quoted<'a>(pub(super) &'a str);

impl std::fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&quote(self.0))
    }
}

/// What a value is, for "expected X, found Y": strings and numbers are quoted in full (short
/// ones), so that the user recognizes them.
pub(super) fn found(v: &Value) -> String {
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

/// `500ms`, `2.5s`, `1m`, `1h` to milliseconds.
pub(super) fn parse_duration_ms(s: &str) -> Option<u64> {
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

/// A value quoted for a message, cut short when long: a diagnostic names the value, it does not
/// carry a megabyte of it.
pub(super) fn quote(s: &str) -> String {
    const SHOWN: usize = 60;
    if s.chars().count() <= SHOWN {
        format!("{s:?}")
    } else {
        let head: String = s.chars().take(SHOWN).collect();
        format!("{head:?}... ({} bytes)", s.len())
    }
}

/// Text for a message, cut short when long, unquoted.
pub(super) fn clip(s: &str) -> String {
    let quoted = quote(s);
    if quoted.starts_with('"') && quoted.ends_with('"') {
        s.to_string()
    } else {
        quoted
    }
}
