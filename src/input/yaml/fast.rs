//! A fast reader for the plain subset of YAML that Mapping files nearly always are.
//!
//! Why it exists: serde-saphyr costs about 8-12 us per Mapping, 60% of a full rebuild, and a
//! full rebuild of 10,000 Mappings should take under 50 ms. A Mapping file is almost always
//! flat `key: value` lines, one nested mapping (`headers:`) and `---` between documents, which a
//! line-by-line scan reads in well under a microsecond per Mapping.
//!
//! Why it is safe: `parse_simple` answers only when it is certain its tree is exactly the one
//! serde-saphyr builds (same documents, values, lines and columns), and returns `None` for
//! anything else (flow collections, lists, anchors, tags, block or multi-line scalars, escapes,
//! trailing comments, tabs, CR, non-ASCII, duplicate keys, any scalar spelling it has not been
//! checked against serde-saphyr...), so that serde-saphyr reads it, errors included. The tests
//! below compare the two on generated and mutated input and on every YAML file of the
//! repository, and the `yaml_fast` fuzz target compares them on any bytes.

use super::{MAX_DOCUMENTS, MAX_NODES, Node, Value};

#[cfg(test)]
#[path = "../../../benches/shared/mapping_doc.rs"]
mod bench_docs;

/// The longest key we read: serde-saphyr looks at most 1024 characters ahead for a key's `:`.
const MAX_KEY: usize = 256;
/// The most comment lines we read between a `key:` and its value: serde-saphyr buffers them
/// while it looks for the value, and refuses more than 32.
const MAX_PENDING_COMMENTS: usize = 16;
/// The largest file we read; serde-saphyr's budget counts scalar bytes (up to 64 MiB).
const MAX_TEXT: usize = 16 * 1024 * 1024;

/// Parses `text` if it is in the simple subset, giving exactly what serde-saphyr gives through
/// `parse_documents`; `None` when it is not in the subset (or might not be).
pub(super) fn parse_simple(text: &str) -> Option<Vec<Node>> {
    // Printable ASCII and line feeds only: no tabs, CRs, BOM or control characters, and a
    // column is a byte offset.
    if text.len() > MAX_TEXT
        || !text
            .bytes()
            .all(|b| b == b'\n' || (b' '..=b'~').contains(&b))
    {
        return None;
    }
    let mut reader = Reader::default();
    for (index, line) in text.split('\n').enumerate() {
        reader.line(index as u64 + 1, line)?;
    }
    reader.end_document()?;
    // Stay far inside serde-saphyr's budget, so that it would not have refused the file.
    if reader.documents > MAX_DOCUMENTS / 2 || reader.nodes > MAX_NODES / 2 {
        return None;
    }
    Some(reader.docs)
}

/// The state of the line-by-line scan.
#[derive(Default)]
struct Reader {
    docs: Vec<Node>,
    /// The entries of the current document's top-level mapping.
    top: Vec<(Node, Node)>,
    /// A top-level key whose value is on the lines below it (or is empty).
    open: Option<Open>,
    /// Documents begun, empty ones included, and nodes read.
    documents: usize,
    nodes: usize,
}

/// A top-level `key:` with nothing after it, and the nested entries read so far.
struct Open {
    key: Node,
    /// The position of the `:`, where serde-saphyr places an empty value.
    colon: (u64, u64),
    /// The indentation of the nested entries, set by the first one.
    indent: usize,
    entries: Vec<(Node, Node)>,
    /// Comment lines read before the first nested entry.
    comments: usize,
}

impl Reader {
    fn line(&mut self, number: u64, line: &str) -> Option<()> {
        let rest = line.trim_start_matches(' ');
        let indent = line.len() - rest.len();
        // Blank lines and full-line comments, at any indentation.
        if rest.is_empty() {
            return Some(());
        }
        if rest.starts_with('#') {
            if let Some(open) = &mut self.open
                && open.entries.is_empty()
            {
                open.comments += 1;
                if open.comments > MAX_PENDING_COMMENTS {
                    return None;
                }
            }
            return Some(());
        }
        if line == "---" {
            return self.end_document();
        }
        let (key, colon, value) = entry(number, indent, rest)?;
        if indent == 0 {
            self.close_open()?;
            match value {
                Some(value) => self.push_top(key, value),
                None => {
                    self.open = Some(Open {
                        colon: (number, colon),
                        key,
                        indent: 0,
                        entries: Vec::new(),
                        comments: 0,
                    })
                }
            }
            return Some(());
        }
        // An indented line must be an entry of the open nested mapping, at its indentation.
        let open = self.open.as_mut()?;
        if open.indent == 0 {
            open.indent = indent;
        } else if indent != open.indent {
            return None;
        }
        // A nested `key:` with nothing after it would be null or a third level: leave it.
        open.entries.push((key, value?));
        Some(())
    }

    fn push_top(&mut self, key: Node, value: Node) {
        self.nodes += 2;
        self.top.push((key, value));
    }

    /// Completes the open top-level key: a nested mapping, or null when nothing followed.
    fn close_open(&mut self) -> Option<()> {
        let Some(open) = self.open.take() else {
            return Some(());
        };
        let value = match open.entries.first() {
            None => Node {
                line: open.colon.0,
                column: open.colon.1,
                value: Value::Null,
            },
            Some((first, _)) => {
                if has_duplicate_keys(&open.entries) {
                    return None;
                }
                self.nodes += 2 * open.entries.len();
                Node {
                    line: first.line,
                    column: first.column,
                    value: Value::Map(open.entries),
                }
            }
        };
        self.push_top(open.key, value);
        Some(())
    }

    fn end_document(&mut self) -> Option<()> {
        self.close_open()?;
        self.documents += 1;
        // A document without entries (only comments, or nothing) is dropped, as serde-saphyr
        // drops it.
        if let Some((first, _)) = self.top.first() {
            if has_duplicate_keys(&self.top) {
                return None;
            }
            let (line, column) = (first.line, first.column);
            self.nodes += 1;
            self.docs.push(Node {
                line,
                column,
                value: Value::Map(std::mem::take(&mut self.top)),
            });
        }
        Some(())
    }
}

/// Reads `key: value` or `key:` from a line whose indentation is `indent` and whose text after
/// the indentation is `rest`, with the column of the colon. The value is `None` when nothing
/// follows the colon.
fn entry(number: u64, indent: usize, rest: &str) -> Option<(Node, u64, Option<Node>)> {
    let colon = rest.find(':')?;
    let key_text = &rest[..colon];
    if key_text.len() > MAX_KEY
        || !key_text.starts_with(|c: char| c.is_ascii_alphabetic())
        || !key_text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'/'))
    {
        return None;
    }
    // The key must read as a string (not `true` or `null`).
    let Value::Str(_) = plain(key_text)? else {
        return None;
    };
    let key = Node {
        line: number,
        column: indent as u64 + 1,
        value: Value::Str(key_text.to_owned()),
    };
    let colon_column = (indent + colon) as u64 + 1;
    let after = &rest[colon + 1..];
    let value_text = after.trim_start_matches(' ');
    if value_text.is_empty() {
        return Some((key, colon_column, None));
    }
    // `key:value` is one plain scalar, not an entry.
    if value_text.len() == after.len() {
        return None;
    }
    let column = (indent + colon + 1 + after.len() - value_text.len()) as u64 + 1;
    let value = scalar(value_text.trim_end_matches(' '))?;
    Some((
        key,
        colon_column,
        Some(Node {
            line: number,
            column,
            value,
        }),
    ))
}

/// A one-line scalar value (no surrounding spaces): quoted without escapes, or plain.
fn scalar(text: &str) -> Option<Value> {
    for quote in ['"', '\''] {
        if let Some(inner) = text.strip_prefix(quote) {
            let inner = inner.strip_suffix(quote)?;
            // No escapes (`\` in double quotes, `''` in single quotes), no inner quote, no
            // trailing comment after the closing quote.
            if inner.contains(quote) || (quote == '"' && inner.contains('\\')) {
                return None;
            }
            return Some(Value::Str(inner.to_owned()));
        }
    }
    // A plain scalar: `: ` would start a mapping, ` #` a comment; other characters are not
    // needed by Mapping files and are left to serde-saphyr.
    if text.ends_with(':')
        || text.contains(": ")
        || !text.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b' ' | b'-'
                        | b'_'
                        | b'.'
                        | b'/'
                        | b':'
                        | b'@'
                        | b'+'
                        | b'='
                        | b','
                        | b'%'
                        | b'~'
                        | b'$'
                )
        })
    {
        return None;
    }
    plain(text)
}

/// What serde-saphyr (YAML 1.2 core schema, strict booleans) makes of a plain scalar, for the
/// spellings checked against it; `None` for any other spelling (`007`, `0x1F`, `1e3`, `.5`,
/// `-3`, `1_000`, huge numbers... which it reads in ways that are easy to get wrong).
fn plain(text: &str) -> Option<Value> {
    let first = *text.as_bytes().first()?;
    if first.is_ascii_alphabetic() {
        return Some(match text {
            "true" | "True" | "TRUE" => Value::Bool(true),
            "false" | "False" | "FALSE" => Value::Bool(false),
            "null" | "Null" | "NULL" => Value::Null,
            // `yes`, `no`, `on`, `off`, `inf`, `nan`... are strings with strict booleans.
            _ => Value::Str(text.to_owned()),
        });
    }
    if first == b'/' {
        return Some(Value::Str(text.to_owned()));
    }
    if text == "~" {
        return Some(Value::Null);
    }
    let (whole, fraction) = match text.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (text, None),
    };
    // A decimal integer part without a leading zero (serde-saphyr reads `007` as a float).
    let whole_ok = |max| {
        whole.len() <= max
            && whole.bytes().all(|b| b.is_ascii_digit())
            && (whole == "0" || whole.starts_with(|c: char| c != '0' && c.is_ascii_digit()))
    };
    match fraction {
        // Up to 18 digits always fit the u64 serde-saphyr reads them into.
        None if whole_ok(18) => Some(Value::Int(whole.parse().ok()?)),
        Some(fraction)
            if whole_ok(15)
                && (1..=15).contains(&fraction.len())
                && fraction.bytes().all(|b| b.is_ascii_digit()) =>
        {
            // Rust's parser is the one serde-saphyr uses, so the rounding is the same.
            Some(Value::Float(text.parse().ok()?))
        }
        _ => None,
    }
}

/// Whether two entries of a mapping have the same key (serde-saphyr rejects that).
fn has_duplicate_keys(entries: &[(Node, Node)]) -> bool {
    if entries.len() <= 32 {
        return entries
            .iter()
            .enumerate()
            .any(|(i, (k, _))| entries[..i].iter().any(|(other, _)| other.value == k.value));
    }
    let mut keys: Vec<_> = entries.iter().filter_map(|(k, _)| k.as_str()).collect();
    keys.sort_unstable();
    keys.windows(2).any(|w| w[0] == w[1])
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::input::yaml::parse_with_saphyr;

    /// serde-saphyr's reading of `text`, for comparison. `Debug` tells `-0.0` from `0.0`.
    fn saphyr(text: &str) -> String {
        format!("{:?}", parse_with_saphyr(text.as_bytes()))
    }

    /// Asserts that the fast path reads `text`, exactly as serde-saphyr does.
    fn same(text: &str) -> Vec<Node> {
        let fast = parse_simple(text).unwrap_or_else(|| panic!("fell back on {text:?}"));
        assert_eq!(format!("Ok({fast:?})"), saphyr(text), "{text:?}");
        fast
    }

    fn falls_back(text: &str) {
        assert_eq!(parse_simple(text), None, "{text:?}");
    }

    /// The value of `k` when `k: <text>` is read by each parser, if the fast path reads it.
    fn value_of(text: &str) -> Option<Value> {
        let doc = format!("k: {text}\n");
        let fast = parse_simple(&doc)?;
        assert_eq!(format!("Ok({fast:?})"), saphyr(&doc), "{text:?}");
        fast[0].get("k").map(|n| n.value.clone())
    }

    #[test]
    fn a_typical_file_is_read_with_positions() {
        let text = "# canaries\napiVersion: ambassador/v1\nkind: Mapping\nname: m12\n\
                    prefix: /svc4/\nservice: s12.ns:8080\nhost: h3.example.com\nheaders:\n  \
                    x-canary: \"true\"\n  x-user: 'beta'\nweight: 10\n---\n---\n# only a \
                    comment\n---\nname: m13\nweight: 4.35\n";
        let docs = same(text);
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
    fn layout_variations_match_serde_saphyr() {
        for text in [
            "",
            "\n\n",
            "# only\n",
            "---\n",
            "---\n---\n",
            "a: 1\n---\n",
            "---\na: 1",
            "a:    x  \nb: 2   \n",
            "a: 1\nh:\n\n  # c\n   x: 1\n# c\n   y: 2\n\nb: 3\n",
            "h:\n x: 1\n",
            "h:\n        x: 1\n",
            "a:\nb: 1\n",
            "a:   \n",
            "a:\n# c\n---\nb:\n",
            "a: \"\"\nb: ''\nc: \"# x: 'y'\"\nd: '\" \\\\'\n",
            "a: \"  spaced  \"\n",
            "a: x y  z\nb: x$y\nc: a$x\nd: a:b\ne: s.ns:8080\nf: a,b\ng: a%b\n",
            "A-b_c.d/e: 1\ny: n\n",
            "a: b\n  # an indented comment ends nothing\nc: d\n",
        ] {
            same(text);
        }
    }

    #[test]
    fn scalars_resolve_as_serde_saphyr_does() {
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
            assert_eq!(value_of(text), Some(want), "{text:?}");
        }
    }

    #[test]
    fn tricky_scalars_are_left_to_serde_saphyr() {
        // What serde-saphyr makes of these (checked here so that a new version that changes
        // its mind is noticed): the fast path must not guess any of them.
        for (text, saphyr_reads) in [
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
            let doc = format!("k: {text}\n");
            falls_back(&doc);
            let docs = parse_with_saphyr(doc.as_bytes()).unwrap();
            let value = &docs[0].get("k").unwrap().value;
            assert_eq!(format!("{value:?}"), saphyr_reads, "{text:?}");
        }
    }

    #[test]
    fn anything_unusual_falls_back() {
        for text in [
            // Flow collections, lists, anchors, aliases, tags, block scalars.
            "a: [x]\n",
            "a: {x: 1}\n",
            "a:\n- x\n",
            "a:\n  - x\n",
            "a: &x 1\n",
            "a: *x\n",
            "a: !!str 1\n",
            "a: |\n  x\n",
            "a: >\n  x\n",
            // Multi-line scalars and deeper or uneven nesting.
            "a: b\n  c\n",
            "a: \"b\n  c\"\n",
            "h:\n  x:\n    y: 1\n",
            "h:\n  x: 1\n   y: 2\n",
            "h:\n   x: 1\n  y: 2\n",
            "h:\n  x:\n",
            "  a: 1\n",
            // Escapes and quotes.
            "a: \"x\\ny\"\n",
            "a: 'it''s'\n",
            "a: \"x\" # c\n",
            "a: \"x\n",
            "\"a\": 1\n",
            "'a': 1\n",
            // Comments after values, and characters the subset leaves out.
            "a: b # c\n",
            "a: b#c\n",
            "a: b: c\n",
            "a: b:\n",
            "a:b\n",
            "a : b\n",
            "a b: c\n",
            "a:\tb\n",
            "a: b\r\n",
            "\u{feff}a: b\n",
            "a: é\n",
            "a: \u{0}\n",
            // Document markers other than a bare `---`.
            "a: 1\n...\n",
            "--- \na: 1\n",
            "--- a: 1\n",
            "%YAML 1.2\n---\na: 1\n",
            // Keys that are not strings, and a scalar or list document.
            "true: 1\n",
            "null: 1\n",
            "1: x\n",
            "~: x\n",
            "x\n",
            "- a\n",
            "? a\n: b\n",
            "<<: x\n",
            // serde-saphyr rejects these.
            "a: 1\na: 2\n",
            "h:\n  x: 1\n  x: 2\n",
        ] {
            falls_back(text);
        }
        let long_key = "k".repeat(MAX_KEY + 1) + ": 1\n";
        falls_back(&long_key);
    }

    #[test]
    fn long_keys_and_values_are_read() {
        // serde-saphyr looks at most 1024 characters ahead for the `:` of a key.
        let key = "k".repeat(MAX_KEY);
        let value = "v".repeat(5000);
        same(&format!("{key}: {value}\nh:\n  {key}: \"{value}\"\n"));
    }

    #[test]
    fn long_comment_runs_stay_inside_serde_saphyr_budget() {
        let comments = |n: usize| "# c\n\n".repeat(n);
        // serde-saphyr buffers the comments between `key:` and what follows, up to 32 of them
        // (the fuzzer found this).
        for text in [
            format!("a:\n{}b: 1\n", comments(33)),
            format!("a:\n{}  b: 1\n", comments(33)),
            format!("a:\n{}", comments(33)),
        ] {
            assert!(parse_with_saphyr(text.as_bytes()).is_err());
            falls_back(&text);
        }
        falls_back(&format!("a:\n{}b: 1\n", comments(MAX_PENDING_COMMENTS + 1)));
        same(&format!("a:\n{}b: 1\n", comments(MAX_PENDING_COMMENTS)));
        // Anywhere else, such as a long licence header, they are no trouble.
        for text in [
            format!("{}a: 1\n", comments(200)),
            format!("a: 1\n{}b: 1\n", comments(200)),
            format!("a:\n  x: 1\n{}  b: 1\n", comments(200)),
            format!("a:\n  x: 1\n{}b: 1\n", comments(200)),
            format!("a: 1\n---\n{}b: 1\n", comments(200)),
            format!("a: 1\n{}---\nb: 1\n", comments(200)),
            format!("a: 1\n{}", comments(200)),
            comments(200),
        ] {
            same(&text);
        }
    }

    #[test]
    fn many_keys_are_checked_for_duplicates() {
        let mut text: String = (0..100).map(|i| format!("k{i}: {i}\n")).collect();
        same(&text);
        text.push_str("k42: 0\n");
        falls_back(&text);
        assert!(parse_with_saphyr(text.as_bytes()).is_err());
    }

    #[test]
    fn budgets_are_left_to_serde_saphyr() {
        falls_back(&"---\n".repeat(MAX_DOCUMENTS / 2 + 1));
        let big: String = (0..MAX_NODES / 4 + 1)
            .map(|i| format!("k{i}: 1\n"))
            .collect();
        falls_back(&big);
    }

    /// The Mapping documents the benches generate (`benches/shared/mapping_doc.rs`).
    fn generated(n: usize) -> String {
        let docs: Vec<String> = (0..n).map(bench_docs::mapping_doc).collect();
        docs.join("---\n")
    }

    #[test]
    fn generated_mappings_take_the_fast_path() {
        for chunk in generated(200).split_inclusive("weight: 0.0\n") {
            same(chunk);
        }
        let docs = same(&generated(1000));
        assert_eq!(docs.len(), 1000);
    }

    /// Every YAML file of the repository's examples and tests: the fast path either reads it as
    /// serde-saphyr does or leaves it.
    #[test]
    fn repository_yaml_files_agree() {
        fn walk(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    walk(&path, out);
                } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                    out.push(path);
                }
            }
        }
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut files = Vec::new();
        walk(&root.join("examples"), &mut files);
        walk(&root.join("tests"), &mut files);
        let mut fast = 0;
        for file in &files {
            let bytes = std::fs::read(file).unwrap();
            let Ok(text) = std::str::from_utf8(&bytes) else {
                continue;
            };
            if let Some(docs) = parse_simple(text) {
                fast += 1;
                assert_eq!(format!("Ok({docs:?})"), saphyr(text), "{}", file.display());
            }
        }
        assert!(files.len() > 20, "{files:?}");
        // The plain Mapping examples are in the subset.
        assert!(fast * 3 > files.len(), "{fast} of {}", files.len());
    }

    /// A line of a generated document.
    #[derive(Clone, Debug)]
    enum Line {
        Entry {
            key: String,
            colon: String,
            value: String,
        },
        Nested {
            key: String,
            indent: usize,
            entries: Vec<(usize, String, String)>,
        },
        Blank(usize),
        Comment(usize),
        /// Many comment lines, each followed by a blank line.
        Comments(usize, usize),
    }

    fn key() -> impl Strategy<Value = String> {
        prop_oneof![
            12 => prop::sample::select(vec![
                "apiVersion", "kind", "name", "prefix", "service", "host", "weight", "headers",
                "x-canary", "a", "b", "a.b", "a/b", "a_b", "A-1", "y", "n", "yes",
            ])
            .prop_map(String::from),
            12 => "[a-zA-Z][a-zA-Z0-9_./-]{0,6}",
            1 => prop::sample::select(vec![
                "true", "null", "Null", "~", "1", "-a", "a b", "\"q\"", "'q'", "<<", "? a",
                "&a a", "!t a", "a#b", "a:b", "[a]", "", " a", "a ",
            ])
            .prop_map(String::from),
        ]
    }

    fn colon() -> impl Strategy<Value = String> {
        prop_oneof![
            30 => Just(": ".to_string()),
            2 => Just(":   ".to_string()),
            1 => prop::sample::select(vec![":", " : ", ":\t", ": \t"]).prop_map(String::from),
        ]
    }

    fn scalar_text() -> impl Strategy<Value = String> {
        prop_oneof![
            12 => prop::sample::select(vec![
                "ambassador/v1", "Mapping", "m12", "/svc4/", "s12.ns:8080", "h3.example.com",
                "\"true\"", "10", "4.35", "0", "0.0", "true", "False", "TRUE", "null", "Null",
                "~", "yes", "no", "on", "off", "y", "n", "inf", "nan", "'q'", "a b", "x$y",
            ])
            .prop_map(String::from),
            2 => prop::sample::select(vec![
                "007", "00", "-3", "+3", "0x1F", "0o17",
                "1_000", "1e3", ".5", "5.", ".inf", "-.inf", ".nan", "-0.0", "inf", "nan",
                "18446744073709551616", "999999999999999999", "9999999999999999999", "1.2.3",
                "2001-12-14", "12:30", "a: b", "a:", "a #b", "a#b", "[x]", "{x: 1}", "&a x",
                "*a", "!!str x", "|", ">", "- x", "'it''s'", "\"a\\nb\"", "\"\"", "''", "%x",
                "@x", "`x`", "\"a\" # c", "x # c", "? x", "$x", "${x}", "a, b",
            ])
            .prop_map(String::from),
            6 => "[a-zA-Z/][a-zA-Z0-9/._:@+=,%~$ -]{0,10}",
            1 => "[a-zA-Z0-9/._:@+=,%~$ #-]{0,10}",
            3 => "[1-9][0-9]{0,17}",
            1 => "[0-9]{1,21}",
            3 => "(0|[1-9][0-9]{0,3})\\.[0-9]{1,4}",
            1 => "[0-9]{1,4}\\.[0-9]{0,4}",
            2 => "\"[ -~]{0,8}\"",
            2 => "'[ -~]{0,8}'",
        ]
    }

    fn line() -> impl Strategy<Value = Line> {
        let nested = (
            key(),
            prop_oneof![4 => Just(2usize), 1 => 1usize..5],
            prop::collection::vec(
                (
                    prop_oneof![12 => Just(0usize), 1 => 0usize..4],
                    key(),
                    scalar_text(),
                ),
                0..4,
            ),
        )
            .prop_map(|(key, indent, entries)| Line::Nested {
                key,
                indent,
                entries,
            });
        prop_oneof![
            8 => (key(), colon(), scalar_text()).prop_map(|(key, colon, value)| Line::Entry { key, colon, value }),
            2 => nested,
            1 => (0usize..4).prop_map(Line::Blank),
            1 => (0usize..4).prop_map(Line::Comment),
            1 => (0usize..4, 10usize..40).prop_map(|(indent, n)| Line::Comments(indent, n)),
        ]
    }

    fn render(lines: &[Line]) -> String {
        let mut out = String::new();
        for line in lines {
            match line {
                Line::Entry { key, colon, value } => {
                    out.push_str(&format!("{key}{colon}{value}\n"))
                }
                Line::Nested {
                    key,
                    indent,
                    entries,
                } => {
                    out.push_str(&format!("{key}:\n"));
                    for (jitter, k, v) in entries {
                        // A jitter of 1 or more moves the line off the mapping's indentation.
                        let pad = " ".repeat(indent + jitter);
                        out.push_str(&format!("{pad}{k}: {v}\n"));
                    }
                }
                Line::Blank(n) => out.push_str(&format!("{}\n", " ".repeat(*n))),
                Line::Comment(n) => out.push_str(&format!("{}# note: x\n", " ".repeat(*n))),
                Line::Comments(indent, n) => {
                    out.push_str(&format!("{}#\n\n", " ".repeat(*indent)).repeat(*n));
                }
            }
        }
        out
    }

    fn file() -> impl Strategy<Value = String> {
        let separator = prop_oneof![
            8 => Just("---\n"),
            1 => prop::sample::select(vec!["--- \n", "---\n---\n", "...\n---\n", "--- a: 1\n", "\n---\n# c\n", "----\n", ""]),
        ];
        (
            any::<bool>(),
            prop::collection::vec((prop::collection::vec(line(), 0..8), separator), 1..4),
            any::<bool>(),
        )
            .prop_map(|(leading, docs, trailing_newline)| {
                let mut out = if leading {
                    "---\n".to_string()
                } else {
                    String::new()
                };
                for (i, (lines, separator)) in docs.iter().enumerate() {
                    if i > 0 {
                        out.push_str(separator);
                    }
                    out.push_str(&render(lines));
                }
                if !trailing_newline {
                    out.pop();
                }
                out
            })
    }

    /// Byte-level damage: characters inserted, removed or replaced at random places.
    fn mutate(text: &str, edits: &[(prop::sample::Index, u8, char)]) -> String {
        let mut chars: Vec<char> = text.chars().collect();
        for (at, op, c) in edits {
            let i = at.index(chars.len() + 1);
            match op % 3 {
                0 => chars.insert(i, *c),
                1 if i < chars.len() => {
                    chars.remove(i);
                }
                _ if i < chars.len() => chars[i] = *c,
                _ => {}
            }
        }
        chars.into_iter().collect()
    }

    fn edit() -> impl Strategy<Value = (prop::sample::Index, u8, char)> {
        (
            any::<prop::sample::Index>(),
            any::<u8>(),
            prop::sample::select(vec![
                ' ', ' ', '\n', '\n', ':', '-', '#', '"', '\'', '\t', '[', '{', '}', '&', '*', '!',
                '|', '>', '%', '.', '0', '1', 'a', '\r', '\u{feff}', 'é', '\\', '?', ',', '~',
                '\0',
            ]),
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(8000))]

        /// Whenever the fast path answers, its answer is serde-saphyr's.
        #[test]
        fn the_fast_path_agrees_with_serde_saphyr(
            text in file(),
            edits in prop_oneof![2 => Just(vec![]), 1 => prop::collection::vec(edit(), 1..4)],
        ) {
            let text = mutate(&text, &edits);
            if let Some(docs) = parse_simple(&text) {
                prop_assert_eq!(format!("Ok({docs:?})"), saphyr(&text), "{:?}", text);
            }
        }
    }

    /// `cargo test --release --lib -- --ignored --nocapture parse_timing`: serde-saphyr alone
    /// against `parse_documents` on 10,000 generated Mappings in files of 10.
    #[test]
    #[ignore]
    fn parse_timing() {
        let all = generated(10_000);
        let docs: Vec<&str> = all.split("---\n").collect();
        let files: Vec<String> = docs.chunks(10).map(|c| c.join("---\n")).collect();
        let time = |f: &dyn Fn(&[u8]) -> usize| {
            let mut runs: Vec<_> = (0..11)
                .map(|_| {
                    let start = std::time::Instant::now();
                    let n: usize = files.iter().map(|file| f(file.as_bytes())).sum();
                    assert_eq!(n, 10_000);
                    start.elapsed()
                })
                .collect();
            runs.sort();
            runs[5]
        };
        let before = time(&|b| parse_with_saphyr(b).unwrap().len());
        let after = time(&|b| crate::input::yaml::parse_documents(b).unwrap().len());
        println!(
            "10,000 Mappings: serde-saphyr {:.2} ms ({:.2} us each), parse_documents {:.2} ms \
             ({:.2} us each)",
            before.as_secs_f64() * 1e3,
            before.as_secs_f64() * 1e2,
            after.as_secs_f64() * 1e3,
            after.as_secs_f64() * 1e2,
        );
    }
}
