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
        assert_eq!(e.message, "unclosed bracket '['");
    }

    #[test]
    fn duplicate_keys_are_errors() {
        let e = parse_documents(b"a: 1\na: 2\n").unwrap_err();
        assert_eq!(e.line, 2);
        assert_eq!(e.message, "the key a appears twice in one mapping");
    }

    #[test]
    fn invalid_utf8_points_at_the_byte() {
        let e = parse_documents(b"a: 1\nb: x\xff\n").unwrap_err();
        assert_eq!((e.line, e.column), (2, 5));
    }

    /// A block mapping nested `depth` levels deep, and a flow list as deep.
    fn nested(depth: usize) -> [String; 2] {
        let block = (0..depth)
            .map(|i| format!("{}a:\n", "  ".repeat(i)))
            .collect::<String>()
            + &"  ".repeat(depth)
            + "x\n";
        let flow = "[".repeat(depth) + &"]".repeat(depth);
        [block, flow]
    }

    #[test]
    fn nesting_is_bounded_within_a_small_thread_stack() {
        // Parsing recurses once per level: the limit must keep it inside the 2 MiB stack of a
        // tokio or test thread, in this (debug) build too.
        let outcome = std::thread::Builder::new()
            .stack_size(2 * 1024 * 1024)
            .spawn(|| {
                for doc in nested(MAX_DEPTH - 1) {
                    parse_documents(doc.as_bytes()).unwrap();
                }
                // An alias does not reset the depth: replayed levels count too.
                let half = "[".repeat(30) + "x" + &"]".repeat(30);
                let aliased = format!("a: &a {half}\nb: {}*a{}\n", "[".repeat(30), "]".repeat(30));
                let e = parse_documents(aliased.as_bytes()).unwrap_err();
                assert!(e.message.contains("nested more than 32"), "{}", e.message);
                let very_deep = "[".repeat(100_000) + &"]".repeat(100_000);
                for depth in [MAX_DEPTH + 1, 1000] {
                    for doc in nested(depth).into_iter().chain([very_deep.clone()]) {
                        let e = parse_documents(doc.as_bytes()).unwrap_err();
                        assert!(e.message.contains("nested more than 32"), "{}", e.message);
                    }
                }
            })
            .unwrap()
            .join();
        assert!(outcome.is_ok());
    }

    #[test]
    fn alias_bombs_are_bounded() {
        let e = parse_documents(alias_bomb(9).as_bytes()).unwrap_err();
        assert!(e.message.contains("alias bomb"), "{}", e.message);
        assert!(e.line > 0);
        // A modest use of aliases is fine.
        assert!(parse_documents(alias_bomb(3).as_bytes()).is_ok());
    }

    /// The "billion laughs": `levels` anchors, each a list of ten aliases of the one before.
    fn alias_bomb(levels: u8) -> String {
        let mut bomb = String::from("a: &a [x,x,x,x,x,x,x,x,x,x]\n");
        for i in 1..levels {
            let (prev, c) = ((b'a' + i - 1) as char, (b'a' + i) as char);
            let refs = vec![format!("*{prev}"); 10].join(",");
            bomb.push_str(&format!("{c}: &{c} [{refs}]\n"));
        }
        bomb
    }

    #[test]
    fn booleans_are_yaml_1_2() {
        let docs = parse_documents(b"a: no\nb: yes\nc: true\nd: False\ne: n\n").unwrap();
        let v = |k| docs[0].get(k).unwrap().value.clone();
        assert_eq!(v("a"), Value::Str("no".into()));
        assert_eq!(v("b"), Value::Str("yes".into()));
        assert_eq!(v("c"), Value::Bool(true));
        assert_eq!(v("d"), Value::Bool(false));
        assert_eq!(v("e"), Value::Str("n".into()));
    }

    #[test]
    fn many_documents_are_read() {
        let yaml = "---\na: 1\n".repeat(5000);
        assert_eq!(parse_documents(yaml.as_bytes()).unwrap().len(), 5000);
    }

    /// What `k: <text>` reads as.
    fn value_of(text: &str) -> Value {
        let docs = parse_documents(format!("k: {text}\n").as_bytes()).unwrap();
        docs[0].get("k").unwrap().value.clone()
    }

    #[test]
    fn a_typical_file_is_read_with_positions() {
        let text = "# canaries\napiVersion: ambassador/v1\nkind: Mapping\nname: m12\n\
                    prefix: /svc4/\nservice: s12.ns:8080\nhost: h3.example.com\nheaders:\n  \
                    x-canary: \"true\"\n  x-user: 'beta'\nweight: 10\n---\n---\n# only a \
                    comment\n---\nname: m13\nweight: 4.35\n";
        let docs = parse_documents(text.as_bytes()).unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!((docs[0].line, docs[0].column), (2, 1));
        let headers = docs[0].get("headers").unwrap();
        assert_eq!((headers.line, headers.column), (9, 3));
        let canary = headers.get("x-canary").unwrap();
        assert_eq!((canary.line, canary.column), (9, 13));
        assert_eq!(canary.value, Value::Str("true".into()));
        assert_eq!(docs[1].get("weight").unwrap().value, Value::Float(4.35));
    }

    #[test]
    fn scalars_resolve_as_yaml_1_2() {
        let b = Value::Bool;
        let s = |t: &str| Value::Str(t.into());
        for (text, want) in [
            ("true", b(true)),
            ("True", b(true)),
            ("TRUE", b(true)),
            ("false", b(false)),
            ("False", b(false)),
            ("FALSE", b(false)),
            // YAML 1.1 booleans and odd capitalisations stay strings.
            ("tRue", s("tRue")),
            ("yes", s("yes")),
            ("no", s("no")),
            ("on", s("on")),
            ("off", s("off")),
            ("y", s("y")),
            ("n", s("n")),
            ("null", Value::Null),
            ("Null", Value::Null),
            ("NULL", Value::Null),
            ("~", Value::Null),
            ("nULL", s("nULL")),
            // Rust's float parser knows these; YAML does not.
            ("inf", s("inf")),
            ("nan", s("nan")),
            ("NaN", s("NaN")),
            ("infinity", s("infinity")),
            ("Infinity", s("Infinity")),
            ("0", Value::Int(0)),
            ("10", Value::Int(10)),
            ("8080", Value::Int(8080)),
            ("999999999999999999", Value::Int(999_999_999_999_999_999)),
            ("4.35", Value::Float(4.35)),
            ("0.0", Value::Float(0.0)),
            ("0.5", Value::Float(0.5)),
            ("10.0", Value::Float(10.0)),
            (
                "123456789012345.123456789012345",
                Value::Float(123456789012345.12),
            ),
            ("/svc4/", s("/svc4/")),
            ("/", s("/")),
            ("h3.example.com", s("h3.example.com")),
            ("s12.ns:8080", s("s12.ns:8080")),
            ("ambassador/v1", s("ambassador/v1")),
            ("a1", s("a1")),
            ("\"10\"", s("10")),
            ("\"true\"", s("true")),
            ("\"\"", s("")),
            ("''", s("")),
            ("'null'", s("null")),
            ("\"~\"", s("~")),
        ] {
            assert_eq!(value_of(text), want, "{text:?}");
        }
    }

    #[test]
    fn tricky_scalars_read_as_serde_saphyr_reads_them() {
        // Checked here so that a new version of serde-saphyr that changes its mind is noticed.
        // `Debug` tells `-0.0` from `0.0` and shows NaN.
        for (text, reads) in [
            ("007", "Float(7.0)"),
            ("00", "Float(0.0)"),
            ("-3", "Int(-3)"),
            ("+3", "Int(3)"),
            ("0x1F", "Int(31)"),
            ("0X1F", "Str(\"0X1F\")"),
            ("0o17", "Int(15)"),
            ("0b11", "Int(3)"),
            ("1_000", "Int(1000)"),
            ("18446744073709551615", "Int(18446744073709551615)"),
            ("18446744073709551616", "Float(1.8446744073709552e19)"),
            ("-9223372036854775809", "Float(-9.223372036854776e18)"),
            (".5", "Float(0.5)"),
            ("5.", "Float(5.0)"),
            ("01.5", "Float(1.5)"),
            ("1e3", "Float(1000.0)"),
            ("1E3", "Float(1000.0)"),
            ("1e999", "Float(inf)"),
            (".inf", "Float(inf)"),
            ("-.inf", "Float(-inf)"),
            (".nan", "Float(NaN)"),
            ("-.nan", "Str(\"-.nan\")"),
            ("-0.0", "Float(-0.0)"),
            ("1.2.3", "Str(\"1.2.3\")"),
            ("2001-12-14", "Str(\"2001-12-14\")"),
            ("12:30:00", "Str(\"12:30:00\")"),
        ] {
            assert_eq!(format!("{:?}", value_of(text)), reads, "{text:?}");
        }
    }

    #[test]
    fn long_comment_runs() {
        let comments = |n: usize| "# c\n\n".repeat(n);
        // serde-saphyr buffers the comments between `key:` and what follows, up to 32 of them.
        for text in [
            format!("a:\n{}b: 1\n", comments(33)),
            format!("a:\n{}  b: 1\n", comments(33)),
            format!("a:\n{}", comments(33)),
        ] {
            assert!(parse_documents(text.as_bytes()).is_err(), "{text:?}");
        }
        // Anywhere else, such as a long licence header, they are no trouble.
        for text in [
            format!("a:\n{}b: 1\n", comments(16)),
            format!("{}a: 1\n", comments(200)),
            format!("a: 1\n{}b: 1\n", comments(200)),
            format!("a:\n  x: 1\n{}  b: 1\n", comments(200)),
            format!("a:\n  x: 1\n{}b: 1\n", comments(200)),
            format!("a: 1\n---\n{}b: 1\n", comments(200)),
            format!("a: 1\n{}---\nb: 1\n", comments(200)),
            format!("a: 1\n{}", comments(200)),
            comments(200),
        ] {
            assert!(parse_documents(text.as_bytes()).is_ok(), "{text:?}");
        }
    }

    #[test]
    fn a_duplicate_among_many_keys_is_an_error() {
        let mut text: String = (0..100).map(|i| format!("k{i}: {i}\n")).collect();
        assert!(parse_documents(text.as_bytes()).is_ok());
        text.push_str("k42: 0\n");
        assert!(parse_documents(text.as_bytes()).is_err());
    }

    #[test]
    fn bom_and_crlf_are_accepted() {
        let docs = parse_documents(b"\xef\xbb\xbfa: 1\r\nb: 2\r\n").unwrap();
        assert_eq!(docs[0].get("b").unwrap().value, Value::Int(2));
    }
}
