//! A YAML document as a tree of nodes that each know their line and column.
//!
//! serde-saphyr does the parsing (with its budget against alias bombs and deep nesting); we read
//! every document into this generic tree first, so that field validation in `parse` can name the
//! exact line of any key or value and can tell a quoted `"10"` from a number `10`.

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
    pub fn scalar_text(&self) -> Option<String> {
        match &self.value {
            Value::Str(s) => Some(s.clone()),
            Value::Bool(b) => Some(b.to_string()),
            Value::Int(i) => Some(i.to_string()),
            Value::Float(f) => Some(f.to_string()),
            Value::Null => Some(String::new()),
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
    if let Err(e) = std::str::from_utf8(bytes) {
        let (line, column) = position_of(bytes, e.valid_up_to());
        return Err(YamlError {
            line,
            column,
            message: "the file is not valid UTF-8".into(),
        });
    }
    let options = serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_depth: 64,
        },
        // Let `.nan` and `.inf` through as numbers, so the field that holds one gets the error.
        non_finite_float_policy: serde_saphyr::options::NonFiniteFloatPolicy::PassThrough,
    };
    serde_saphyr::from_slice_multiple_with_options::<Node>(bytes, options).map_err(|e| {
        let (line, column) = e
            .location()
            .map(|l| (l.line(), l.column()))
            .unwrap_or((0, 0));
        YamlError {
            line,
            column,
            message: first_line_of(&e.to_string()),
        }
    })
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

/// serde-saphyr renders errors with a source snippet; a diagnostic wants only the sentence.
fn first_line_of(rendered: &str) -> String {
    let line = rendered.lines().next().unwrap_or(rendered).trim();
    let line = line.strip_prefix("error: ").unwrap_or(line);
    // Drop a leading "line N column M: ", since the diagnostic carries the position itself.
    if let Some(rest) = line.strip_prefix("line ")
        && let Some((_, after)) = rest.split_once(": ")
        && rest
            .split_once(": ")
            .is_some_and(|(pos, _)| pos.contains("column"))
    {
        return after.to_string();
    }
    line.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_keep_order_and_positions() {
        let docs = parse_documents(b"a: 1\n---\n---\nb: \"2\"\nc: [x]\n").unwrap();
        assert_eq!(docs.len(), 2);
        let b = docs[1].get("b").unwrap();
        assert_eq!((b.line, b.column), (4, 4));
        assert_eq!(b.value, Value::Str("2".into()));
        assert_eq!(docs[0].get("a").unwrap().value, Value::Int(1));
    }

    #[test]
    fn quoted_numbers_stay_strings() {
        let docs = parse_documents(b"w: \"10\"\nf: 4.35\ni: 10\n").unwrap();
        assert_eq!(docs[0].get("w").unwrap().value, Value::Str("10".into()));
        assert_eq!(docs[0].get("f").unwrap().value, Value::Float(4.35));
        assert_eq!(docs[0].get("i").unwrap().value, Value::Int(10));
    }

    #[test]
    fn syntax_errors_have_a_position_and_one_line() {
        let e = parse_documents(b"a: 1\nb: [\n").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(!e.message.contains('\n'), "{}", e.message);
        assert!(e.message.contains("bracket"), "{}", e.message);
    }

    #[test]
    fn duplicate_keys_are_errors() {
        let e = parse_documents(b"a: 1\na: 2\n").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.message.contains("duplicate"), "{}", e.message);
    }

    #[test]
    fn invalid_utf8_points_at_the_byte() {
        let e = parse_documents(b"a: 1\nb: x\xff\n").unwrap_err();
        assert_eq!((e.line, e.column), (2, 5));
    }

    #[test]
    fn nesting_and_alias_bombs_are_bounded() {
        let deep = "[".repeat(10_000) + &"]".repeat(10_000);
        assert!(parse_documents(deep.as_bytes()).is_err());
        let mut bomb = String::from("a: &a [x,x,x,x,x,x,x,x,x,x]\n");
        for (i, c) in "bcdefgh".chars().enumerate() {
            let prev = (b'a' + i as u8) as char;
            let refs = vec![format!("*{prev}"); 10].join(",");
            bomb.push_str(&format!("{c}: &{c} [{refs}]\n"));
        }
        assert!(parse_documents(bomb.as_bytes()).is_err());
    }

    #[test]
    fn bom_and_crlf_are_accepted() {
        let docs = parse_documents(b"\xef\xbb\xbfa: 1\r\nb: 2\r\n").unwrap();
        assert_eq!(docs[0].get("b").unwrap().value, Value::Int(2));
    }
}
