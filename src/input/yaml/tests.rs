//! Unit tests of YAML reading: positions, YAML 1.2 scalars, budgets and errors.

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
