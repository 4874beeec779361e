//! A YAML document as a tree of nodes that each know their line and column.
//!
//! serde-saphyr does the parsing (with its budget against alias bombs and deep nesting); we read
//! every document into this generic tree first, so that field validation in `parse` can name the
//! exact line of any key or value and can tell a quoted `"10"` from a number `10`. serde-saphyr
//! is the only YAML parser: a second reader of the same untrusted bytes could read them
//! differently (a parser differential), so there is none.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

/// A YAML node with its 1-based position.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub line: u64,
    pub column: u64,
    pub value: Value,
}

/// The value of a node. Mapping keys keep their order and their own positions.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

impl Value {
    /// What kind of value this is, for messages such as "expected a string, found a list".
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }
}

impl Node {
    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The node's text when it is a scalar (`10`, `true`, `"x"`), for keys and messages.
    pub fn scalar_text(&self) -> Option<Cow<'_, str>> {
        match &self.value {
            Value::Str(s) => Some(Cow::Borrowed(s)),
            Value::Bool(b) => Some(Cow::Owned(b.to_string())),
            Value::Int(i) => Some(Cow::Owned(i.to_string())),
            Value::Float(f) => Some(Cow::Owned(f.to_string())),
            Value::Null => Some(Cow::Borrowed("")),
            Value::Seq(_) | Value::Map(_) => None,
        }
    }

    /// The entry for `key` when this node is a mapping.
    pub fn get(&self, key: &str) -> Option<&Node> {
        match &self.value {
            Value::Map(entries) => entries
                .iter()
                .find(|(k, _)| k.as_str() == Some(key))
                .map(|(_, v)| v),
            _ => None,
        }
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let spanned = Spanned::<Value>::deserialize(deserializer)?;
        Ok(Node {
            line: spanned.referenced.line(),
            column: spanned.referenced.column(),
            value: spanned.value,
        })
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        Value::deserialize(d)
    }

    fn visit_bool<E>(self, b: bool) -> Result<Value, E> {
        Ok(Value::Bool(b))
    }

    fn visit_i64<E>(self, i: i64) -> Result<Value, E> {
        Ok(Value::Int(i.into()))
    }

    fn visit_u64<E>(self, i: u64) -> Result<Value, E> {
        Ok(Value::Int(i.into()))
    }

    fn visit_i128<E>(self, i: i128) -> Result<Value, E> {
        Ok(Value::Int(i))
    }

    fn visit_u128<E: de::Error>(self, i: u128) -> Result<Value, E> {
        i128::try_from(i)
            .map(Value::Int)
            .map_err(|_| E::custom("integer too large"))
    }

    fn visit_f64<E>(self, f: f64) -> Result<Value, E> {
        Ok(Value::Float(f))
    }

    fn visit_str<E>(self, s: &str) -> Result<Value, E> {
        Ok(Value::Str(s.to_owned()))
    }

    fn visit_string<E>(self, s: String) -> Result<Value, E> {
        Ok(Value::Str(s))
    }

    fn visit_bytes<E>(self, b: &[u8]) -> Result<Value, E> {
        Ok(Value::Str(String::from_utf8_lossy(b).into_owned()))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Node>()? {
            items.push(item);
        }
        Ok(Value::Seq(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Node>()? {
            let value = map.next_value::<Node>()?;
            entries.push((key, value));
        }
        Ok(Value::Map(entries))
    }
}

/// Why a file is not YAML we can read, and where.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct YamlError {
    pub line: u64,
    pub column: u64,
    pub message: String,
}

/// Parses every document of a (possibly multi-document) YAML file, in file order. Empty
/// documents are dropped. The parser's budget bounds the work an alias bomb or deep nesting can
/// cause, so this returns an error for such input instead of hanging.
pub fn parse_documents(bytes: &[u8]) -> Result<Vec<Node>, YamlError> {
    // Checked here rather than by serde-saphyr, so that the error names the first bad byte.
    let text = match std::str::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => {
            let (line, column) = position_of(bytes, e.valid_up_to());
            return Err(YamlError {
                line,
                column,
                message: "the file is not valid UTF-8".into(),
            });
        }
    };
    let options = serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_depth: MAX_DEPTH,
            // The file size limit bounds the documents; the node budget bounds the work.
            max_documents: MAX_DOCUMENTS,
            max_nodes: MAX_NODES,
        },
        // Alias replays are counted on their own: bound them by the same number.
        alias_limits: serde_saphyr::alias_limits! {
            max_total_replayed_events: MAX_NODES,
        },
        // YAML 1.2 booleans only, so that `service: no` or `x-canary: yes` stay strings;
        // `parse` still accepts the YAML 1.1 spellings where a boolean is expected.
        strict_booleans: true,
        // Let `.nan` and `.inf` through as numbers, so the field that holds one gets the error.
        non_finite_float_policy: serde_saphyr::options::NonFiniteFloatPolicy::PassThrough,
        // A diagnostic carries the position; it wants the sentence, not a source excerpt.
        with_snippet: false,
    };
    serde_saphyr::from_str_multiple_with_options::<Node, Vec<Node>>(text, options).map_err(|e| {
        let (line, column) = e
            .location()
            .map(|l| (l.line(), l.column()))
            .unwrap_or((0, 0));
        YamlError {
            line,
            column,
            message: explain(&e),
        }
    })
}

/// The deepest nesting of lists and mappings we read. A Mapping needs five levels; parsing
/// recurses once per level, and 32 levels stay well inside a 2 MiB thread stack even in a debug
/// build (about 35 KiB a level there), as tokio and test threads have.
pub const MAX_DEPTH: usize = 32;
/// The most nodes (scalars, lists, mappings, counting those an alias repeats) in one file.
pub const MAX_NODES: usize = 250_000;
/// The most documents in one file (the file size limit bounds them first).
pub const MAX_DOCUMENTS: usize = 100_000;

/// A parser error as a sentence for a person: budget breaches get our own words.
fn explain(mut e: &serde_saphyr::Error) -> String {
    use serde_saphyr::budget::BudgetBreach;
    while let serde_saphyr::Error::WithSnippet { error, .. }
    | serde_saphyr::Error::AliasError { error, .. } = e
    {
        e = error;
    }
    match e {
        serde_saphyr::Error::Budget { breach, .. } => match breach {
            BudgetBreach::Depth { .. } => {
                format!("lists and mappings are nested more than {MAX_DEPTH} levels deep")
            }
            BudgetBreach::Nodes { .. } | BudgetBreach::Events { .. } => format!(
                "the file holds more than {MAX_NODES} values, counting those its aliases \
                 repeat (an alias bomb?); Mapping files are far smaller"
            ),
            other => format!("the file is too large or complex to read ({other:?})"),
        },
        serde_saphyr::Error::AliasReplayLimitExceeded { .. }
        | serde_saphyr::Error::AliasExpansionLimitExceeded { .. }
        | serde_saphyr::Error::AliasReplayStackDepthExceeded { .. }
        | serde_saphyr::Error::AliasReplayCounterOverflow { .. } => {
            "its aliases expand to too much data (an alias bomb?)".to_string()
        }
        _ => {
            let message = sentence_of(&e.to_string());
            if message == "recursion limit exceeded" {
                format!("lists and mappings are nested more than {MAX_DEPTH} levels deep")
            } else {
                message
            }
        }
    }
}

/// The 1-based line and column of a byte offset.
fn position_of(bytes: &[u8], offset: usize) -> (u64, u64) {
    let before = &bytes[..offset.min(bytes.len())];
    let line = before.iter().filter(|&&b| b == b'\n').count() as u64 + 1;
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |p| p + 1);
    let column = String::from_utf8_lossy(&before[line_start..])
        .chars()
        .count() as u64
        + 1;
    (line, column)
}

/// The message of a parser error without its position (the diagnostic carries that) and with
/// advice meant for programmers turned into advice for people.
fn sentence_of(rendered: &str) -> String {
    let line = rendered.lines().next().unwrap_or(rendered).trim();
    let line = match line.rsplit_once(" at line ") {
        Some((before, pos)) if pos.contains(", column ") => before,
        _ => line,
    };
    if let Some(key) = line
        .strip_prefix("duplicate mapping key: ")
        .and_then(|rest| rest.split_once(", set DuplicateKeyPolicy"))
        .map(|(key, _)| key)
    {
        return format!("the key {key} appears twice in one mapping");
    }
    line.to_string()
}

#[cfg(test)]
mod tests;
