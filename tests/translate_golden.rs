//! Golden files of what `translate` emits, one per feature, under `tests/golden/translate/`.
//!
//! The protos are rendered as Envoy-style YAML: their `Debug` text is parsed back into a tree,
//! `Any`s are unpacked, wrappers and durations are shown as values, and proto3 defaults (which
//! are not on the wire) are left out. Run with `UPDATE_GOLDEN=1` to rewrite the files, then
//! review the diff like code.

mod common;

use std::fmt::Write as _;

use canary_xds::envoy::translate::{self, Options};
use canary_xds::input::parse::parse_file;
use canary_xds::model::diagnostic::Severity;
use canary_xds::routes::{RouteTable, compile};
use common::{assert_golden, golden_path, mapping_body};
use envoy_types::pb::envoy::extensions::filters::http::router::v3::Router;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::HttpConnectionManager;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::UpstreamTlsContext;
use envoy_types::pb::envoy::extensions::upstreams::http::v3::HttpProtocolOptions;
use prost::{Message, Name};

// ----------------------------------------------------------------------------------------------
// Inputs

/// The default fleet's table of some Mapping files; any error in them fails the test.
fn table(files: &[(&str, String)]) -> RouteTable {
    let parsed: Vec<_> = files
        .iter()
        .map(|(f, y)| parse_file(f, y.as_bytes()))
        .collect();
    let compiled = compile(&parsed, None);
    let errors: Vec<_> = compiled
        .diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
    compiled.tables.fleet("default").unwrap().clone()
}

fn options() -> Options {
    Options {
        listen: "127.0.0.1:8080".parse().unwrap(),
        upstream_ca: None,
    }
}

// ----------------------------------------------------------------------------------------------
// Rendering

/// A value parsed from `Debug` text.
#[derive(Clone, Debug, PartialEq)]
enum D {
    /// An identifier: an enum value, a unit struct, `None`, `true`.
    Ident(String),
    /// A string literal, with its quotes and escapes.
    Str(String),
    Num(String),
    /// A value that is shown even when it equals a proto3 default (wrappers, durations).
    Kept(String),
    Struct(Vec<(String, D)>),
    /// A oneof variant, or `Some(..)`.
    Tuple(String, Vec<D>),
    Seq(Vec<D>),
    Map(Vec<(D, D)>),
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }

    fn eat(&mut self, c: u8) -> bool {
        self.ws();
        if self.s.get(self.i) == Some(&c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, c: u8) {
        assert!(self.eat(c), "expected {:?} at {}", c as char, self.i);
    }

    fn token(&mut self, ok: impl Fn(u8) -> bool) -> String {
        let start = self.i;
        while self.i < self.s.len() && ok(self.s[self.i]) {
            self.i += 1;
        }
        String::from_utf8(self.s[start..self.i].to_vec()).unwrap()
    }

    fn list<T>(&mut self, close: u8, mut item: impl FnMut(&mut Self) -> T) -> Vec<T> {
        let mut out = Vec::new();
        while !self.eat(close) {
            out.push(item(self));
            self.eat(b',');
        }
        out
    }

    fn value(&mut self) -> D {
        self.ws();
        match self.s[self.i] {
            b'"' => {
                let start = self.i;
                self.i += 1;
                while self.s[self.i] != b'"' {
                    self.i += if self.s[self.i] == b'\\' { 2 } else { 1 };
                }
                self.i += 1;
                D::Str(String::from_utf8(self.s[start..self.i].to_vec()).unwrap())
            }
            b'[' => {
                self.i += 1;
                D::Seq(self.list(b']', |p| p.value()))
            }
            b'{' => {
                self.i += 1;
                D::Map(self.list(b'}', |p| {
                    let k = p.value();
                    p.expect(b':');
                    (k, p.value())
                }))
            }
            c if c == b'-' || c.is_ascii_digit() => {
                D::Num(self.token(|c| c == b'-' || c == b'.' || c.is_ascii_alphanumeric()))
            }
            _ => {
                let name = self.token(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'#');
                if self.eat(b'{') {
                    D::Struct(self.list(b'}', |p| {
                        p.ws();
                        let k = p.token(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'#');
                        p.expect(b':');
                        (k.trim_start_matches("r#").to_string(), p.value())
                    }))
                } else if self.eat(b'(') {
                    D::Tuple(name, self.list(b')', |p| p.value()))
                } else {
                    D::Ident(name)
                }
            }
        }
    }
}

fn parse_debug(text: &str) -> D {
    let mut p = Parser {
        s: text.as_bytes(),
        i: 0,
    };
    p.value()
}

/// Enum values that are their field's default (0), hence not on the wire.
const DEFAULT_ENUMS: &[&str] = &[
    "SERVICE_UNAVAILABLE",
    "PASS_THROUGH_INTERNAL_REDIRECT",
    "DEFAULT",
    "UNKNOWN",
    "TCP",
    "UNSPECIFIED",
    "USE_CONFIGURED_PROTOCOL",
    "OVERWRITE",
    "HUNDRED",
    "AUTO",
    "ROUND_ROBIN",
    "SANITIZE",
    "IMPLEMENTATION_SPECIFIC_DEFAULT",
    "VERIFY_TRUST_CHAIN",
];

/// Messages without fields, which `Debug` shows by their type name.
const EMPTY_MESSAGES: &[&str] = &["AggregatedConfigSource", "Router", "Http2ProtocolOptions"];

/// `V4Preferred` to `V4_PREFERRED`: enum values as Envoy's YAML spells them.
fn screaming(camel: &str) -> String {
    snake(camel).to_ascii_uppercase()
}

fn is_default(d: &D) -> bool {
    match d {
        D::Ident(i) => i == "None" || i == "false" || DEFAULT_ENUMS.contains(&i.as_str()),
        D::Str(s) => s == "\"\"",
        D::Num(n) => n == "0" || n == "0.0",
        D::Seq(v) => v.is_empty(),
        D::Map(v) => v.is_empty(),
        _ => false,
    }
}

/// The Debug text of a packed message, by its type URL.
fn unpack(type_url: &str, bytes: &[u8]) -> String {
    fn show<T: Message + Name + Default + std::fmt::Debug>(bytes: &[u8]) -> String {
        format!("{:?}", T::decode(bytes).unwrap())
    }
    match type_url {
        u if u == HttpConnectionManager::type_url() => show::<HttpConnectionManager>(bytes),
        u if u == Router::type_url() => show::<Router>(bytes),
        u if u == HttpProtocolOptions::type_url() => show::<HttpProtocolOptions>(bytes),
        u if u == UpstreamTlsContext::type_url() => show::<UpstreamTlsContext>(bytes),
        other => panic!("add {other} to unpack()"),
    }
}

fn field<'a>(fields: &'a [(String, D)], name: &str) -> &'a D {
    &fields.iter().find(|(k, _)| k == name).unwrap().1
}

/// Unpacks, unwraps and drops defaults.
/// `top` is the resource itself, which is never a wrapper.
fn simplify(d: D, top: bool) -> D {
    match d {
        D::Tuple(name, mut items) if name == "Some" && items.len() == 1 => {
            match simplify(items.remove(0), false) {
                // Present but empty: Envoy tells `{}` from absent.
                D::Struct(f) if f.is_empty() => D::Kept("{}".into()),
                other => other,
            }
        }
        D::Tuple(name, items) => {
            let mut items: Vec<D> = items.into_iter().map(|i| simplify(i, false)).collect();
            for item in &mut items {
                if matches!(item, D::Struct(f) if f.is_empty()) {
                    *item = D::Kept("{}".into());
                }
            }
            D::Tuple(name, items)
        }
        D::Struct(fields) => {
            // Well-known types, recognised by their fields.
            let names: Vec<&str> = fields.iter().map(|(k, _)| k.as_str()).collect();
            if names == ["type_url", "value"] {
                let D::Str(url) = field(&fields, "type_url") else {
                    unreachable!()
                };
                let url = url.trim_matches('"').to_string();
                let D::Seq(bytes) = field(&fields, "value") else {
                    unreachable!()
                };
                let bytes: Vec<u8> = bytes
                    .iter()
                    .map(|b| match b {
                        D::Num(n) => n.parse().unwrap(),
                        _ => unreachable!(),
                    })
                    .collect();
                let inner = simplify(parse_debug(&unpack(&url, &bytes)), false);
                let mut out = vec![("\"@type\"".to_string(), D::Str(format!("{url:?}")))];
                if let D::Struct(f) = inner {
                    out.extend(f);
                }
                return D::Struct(out);
            }
            if names == ["seconds", "nanos"] {
                let n = |k| match field(&fields, k) {
                    D::Num(n) => n.parse::<i64>().unwrap(),
                    _ => unreachable!(),
                };
                let (s, ns) = (n("seconds"), n("nanos"));
                return D::Kept(if ns == 0 {
                    format!("{s}s")
                } else {
                    format!("{}s", s as f64 + ns as f64 / 1e9)
                });
            }
            // A wrapper (UInt32Value, BoolValue): its value, even 0 or false.
            if names == ["value"]
                && !top
                && let D::Num(n) | D::Ident(n) = field(&fields, "value")
            {
                return D::Kept(n.clone());
            }
            D::Struct(
                fields
                    .into_iter()
                    .map(|(k, v)| match simplify(v, false) {
                        // A oneof: Envoy's YAML names the chosen field, not the oneof.
                        // Its value is on the wire even when it is a default.
                        D::Tuple(variant, mut items) if items.len() == 1 => {
                            let v = items.remove(0);
                            let v = match scalar(&v) {
                                Some(s) if is_default(&v) => D::Kept(s),
                                _ => v,
                            };
                            (snake(&variant), v)
                        }
                        v => (k, v),
                    })
                    .filter(|(_, v)| !is_default(v))
                    .collect(),
            )
        }
        D::Ident(i) if EMPTY_MESSAGES.contains(&i.as_str()) => D::Kept("{}".into()),
        D::Ident(i) if !["None", "true", "false"].contains(&i.as_str()) => D::Ident(screaming(&i)),
        D::Seq(items) => D::Seq(items.into_iter().map(|i| simplify(i, false)).collect()),
        D::Map(entries) => D::Map(
            entries
                .into_iter()
                .map(|(k, v)| (k, simplify(v, false)))
                .collect(),
        ),
        other => other,
    }
}

fn scalar(d: &D) -> Option<String> {
    match d {
        D::Ident(s) | D::Str(s) | D::Num(s) | D::Kept(s) => Some(s.clone()),
        D::Struct(f) if f.is_empty() => Some("{}".into()),
        D::Seq(v) if v.is_empty() => Some("[]".into()),
        D::Map(v) if v.is_empty() => Some("{}".into()),
        D::Tuple(_, v) if v.is_empty() => Some("{}".into()),
        _ => None,
    }
}

/// The entries of a block mapping, each as (key, value).
fn entries(d: &D) -> Vec<(String, &D)> {
    match d {
        D::Struct(f) => f.iter().map(|(k, v)| (k.clone(), v)).collect(),
        D::Map(f) => f
            .iter()
            .map(|(k, v)| (scalar(k).unwrap_or_default(), v))
            .collect(),
        D::Tuple(name, items) if items.len() == 1 => vec![(snake(name), &items[0])],
        other => panic!("not a mapping: {other:?}"),
    }
}

/// `PresentMatch` to `present_match`: oneof variants under their proto field names.
fn snake(camel: &str) -> String {
    let mut out = String::new();
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

fn write_block(out: &mut String, d: &D, indent: usize) {
    let pad = " ".repeat(indent);
    for (k, v) in entries(d) {
        write_entry(out, &pad, &k, v, indent);
    }
}

fn write_entry(out: &mut String, pad: &str, key: &str, v: &D, indent: usize) {
    if let Some(s) = scalar(v) {
        writeln!(out, "{pad}{key}: {s}").unwrap();
    } else if let D::Seq(items) = v {
        writeln!(out, "{pad}{key}:").unwrap();
        for item in items {
            if let Some(s) = scalar(item) {
                writeln!(out, "{pad}- {s}").unwrap();
            } else {
                let mut inner = String::new();
                write_block(&mut inner, item, indent + 2);
                out.push_str(pad);
                out.push_str("- ");
                out.push_str(&inner[indent + 2..]);
            }
        }
    } else {
        writeln!(out, "{pad}{key}:").unwrap();
        write_block(out, v, indent + 2);
    }
}

/// A proto as Envoy-style YAML.
fn yaml<T: std::fmt::Debug>(message: &T) -> String {
    let d = simplify(parse_debug(&format!("{message:?}")), true);
    let mut out = String::new();
    write_block(&mut out, &d, 0);
    out
}

/// The route configuration and clusters of a table, as one document.
fn render(table: &RouteTable, options: &Options) -> String {
    let t = translate::translate(table, options);
    let mut out = String::from("# route configuration\n");
    out.push_str(&yaml(&t.route_config));
    for c in &t.clusters {
        out.push_str(&format!("---\n# cluster {}\n", c.name));
        out.push_str(&yaml(c));
    }
    out
}

// ----------------------------------------------------------------------------------------------
// Cases

fn seed() -> Vec<(&'static str, String)> {
    vec![
        (
            "qotm.yaml",
            mapping_body("qotm", "prefix: /qotm/\nservice: qotm\n"),
        ),
        (
            "qotmv2.yaml",
            mapping_body("qotmv2", "prefix: /qotm/\nservice: qotmv2\nweight: 10\n"),
        ),
    ]
}

#[test]
fn listener() {
    let t = translate::translate(&RouteTable::default(), &options());
    assert_golden(golden_path("translate/listener.yaml"), &yaml(&t.listener));
}

#[test]
fn seed_example() {
    assert_golden(
        golden_path("translate/seed.yaml"),
        &render(&table(&seed()), &options()),
    );
}

#[test]
fn header_canary() {
    let mut files = seed();
    files.push((
        "header-canary.yaml",
        mapping_body(
            "qotm-header-canary",
            "prefix: /qotm/\nservice: qotmv2\nheaders:\n  x-canary: \"true\"\n",
        ),
    ));
    assert_golden(
        golden_path("translate/header-canary.yaml"),
        &render(&table(&files), &options()),
    );
}

#[test]
fn hosts_wildcards_and_host_regex() {
    let files = vec![
        ("any.yaml", mapping_body("any", "prefix: /\nservice: any\n")),
        (
            "exact.yaml",
            mapping_body("exact", "prefix: /a/\nservice: exact\nhost: a.foo.com\n"),
        ),
        (
            "suffix.yaml",
            mapping_body(
                "suffix",
                "prefix: /s/\nservice: suffix\nhost: \"*.foo.com\"\n",
            ),
        ),
        (
            "deeper.yaml",
            mapping_body(
                "deeper",
                "prefix: /d/\nservice: deeper\nhost: \"*.b.foo.com\"\n",
            ),
        ),
        (
            "prefix.yaml",
            mapping_body(
                "prefixed",
                "prefix: /p/\nservice: prefixed\nhost: \"a.*\"\n",
            ),
        ),
        (
            "other.yaml",
            mapping_body("other", "prefix: /o/\nservice: other\nhost: bar.com\n"),
        ),
        (
            "regex.yaml",
            mapping_body(
                "regex",
                "prefix: /r/\nservice: regex\nhost: \"^[a-z]+\\\\.example\\\\.com$\"\nhost_regex: true\n",
            ),
        ),
    ];
    assert_golden(
        golden_path("translate/hosts.yaml"),
        &render(&table(&files), &options()),
    );
}

#[test]
fn chain_when_route_settings_differ() {
    let files = vec![
        (
            "a.yaml",
            mapping_body("a", "prefix: /chain/\nservice: a\ntimeout_ms: 1000\n"),
        ),
        (
            "b.yaml",
            mapping_body(
                "b",
                "prefix: /chain/\nservice: b\nweight: 30\ntimeout_ms: 5000\nhost_rewrite: b.internal\n",
            ),
        ),
        (
            "c.yaml",
            mapping_body("c", "prefix: /chain/\nservice: c\nweight: 0\n"),
        ),
    ];
    assert_golden(
        golden_path("translate/chain.yaml"),
        &render(&table(&files), &options()),
    );
}

#[test]
fn shadow_on_a_route_and_on_a_chain() {
    let files = vec![
        ("a.yaml", mapping_body("a", "prefix: /s/\nservice: a\n")),
        (
            "b.yaml",
            mapping_body("b", "prefix: /s/\nservice: b\nweight: 10\n"),
        ),
        (
            "m.yaml",
            mapping_body(
                "mirror",
                "prefix: /s/\nservice: mirror\nshadow: true\nweight: 25\n",
            ),
        ),
        (
            "c.yaml",
            mapping_body("c", "prefix: /c/\nservice: c\nrewrite: /x/\n"),
        ),
        (
            "d.yaml",
            mapping_body("d", "prefix: /c/\nservice: d\nweight: 50\n"),
        ),
        (
            "n.yaml",
            mapping_body("mirror-c", "prefix: /c/\nservice: mirror\nshadow: true\n"),
        ),
    ];
    assert_golden(
        golden_path("translate/shadow.yaml"),
        &render(&table(&files), &options()),
    );
}

fn cluster_files() -> Vec<(&'static str, String)> {
    vec![
        (
            "grpc.yaml",
            mapping_body(
                "grpc",
                "prefix: /grpc/\nservice: grpc-svc:9000\ngrpc: true\nconnect_timeout_ms: 250\n",
            ),
        ),
        (
            "https.yaml",
            mapping_body("https", "prefix: /tls/\nservice: https://api.example.com\n"),
        ),
        (
            "grpcs.yaml",
            mapping_body(
                "grpcs",
                "prefix: /grpcs/\nservice: https://grpc.example.com:8443\ngrpc: true\n",
            ),
        ),
        (
            "ip.yaml",
            mapping_body("ip", "prefix: /ip/\nservice: 127.0.0.1:9001\n"),
        ),
        (
            "ips.yaml",
            mapping_body("ips", "prefix: /ips/\nservice: https://10.0.0.7:8443\n"),
        ),
        (
            "v6.yaml",
            mapping_body("v6", "prefix: /v6/\nservice: \"[::1]:9002\"\n"),
        ),
    ]
}

#[test]
fn grpc_https_and_ip_clusters() {
    assert_golden(
        golden_path("translate/clusters.yaml"),
        &render(&table(&cluster_files()), &options()),
    );
}

#[test]
fn https_clusters_with_our_own_ca() {
    let files: Vec<_> = cluster_files()
        .into_iter()
        .filter(|(f, _)| f.starts_with("https") || f.starts_with("ips"))
        .collect();
    let options = Options {
        upstream_ca: Some("/etc/canary-xds/upstream-ca.pem".into()),
        ..options()
    };
    assert_golden(
        golden_path("translate/clusters-own-ca.yaml"),
        &render(&table(&files), &options),
    );
}

#[test]
fn every_matcher_kind() {
    let files = vec![
        (
            "all.yaml",
            mapping_body(
                "all",
                "prefix: /all/\nservice: all\nmethod: post\ncase_sensitive: false\n\
                 headers:\n  x-exact: \"yes\"\n  x-present: true\n\
                 regex_headers:\n  x-version: \"^v[0-9]+$\"\n\
                 query_parameters:\n  debug: \"1\"\n  trace: true\n",
            ),
        ),
        (
            "regex.yaml",
            mapping_body(
                "regex",
                "prefix: \"/(v1|v2)/qotm/.*\"\nprefix_regex: true\nservice: regex\nprecedence: 5\n",
            ),
        ),
        (
            "host-regex.yaml",
            mapping_body(
                "host-regex",
                "prefix: /h/\nservice: hr\nhost: \"^(www\\\\.)?foo\\\\.com$\"\nhost_regex: true\n",
            ),
        ),
    ];
    assert_golden(
        golden_path("translate/matchers.yaml"),
        &render(&table(&files), &options()),
    );
}

#[test]
fn route_and_backend_settings() {
    let files = vec![
        (
            "single.yaml",
            mapping_body(
                "single",
                "prefix: /single/\nservice: single\nrewrite: \"\"\ntimeout_ms: 0\nidle_timeout_ms: 30000\n\
                 retry_policy:\n  retry_on: 5xx,reset\n  num_retries: 3\n  per_try_timeout: 250ms\n\
                 allow_upgrade: [websocket, h2c]\nhost_rewrite: single.internal\n\
                 add_request_headers:\n  x-added: one\n  x-replaced: {value: two, append: false}\n\
                 add_response_headers:\n  x-served-by: single\n\
                 remove_request_headers: [x-secret]\nremove_response_headers: [server]\n",
            ),
        ),
        (
            "w1.yaml",
            mapping_body(
                "w1",
                "prefix: /weighted/\nservice: w1\nuse_websocket: true\nhost_rewrite: w1.internal\n\
                 add_request_headers:\n  x-backend: w1\nremove_response_headers: [x-debug]\n",
            ),
        ),
        (
            "w2.yaml",
            mapping_body(
                "w2",
                "prefix: /weighted/\nservice: w2\nweight: 25\nuse_websocket: true\n\
                 add_response_headers:\n  x-canary: {value: \"yes\", append: false}\n\
                 remove_request_headers: [cookie]\n",
            ),
        ),
    ];
    assert_golden(
        golden_path("translate/settings.yaml"),
        &render(&table(&files), &options()),
    );
}

// ----------------------------------------------------------------------------------------------
// The renderer itself

#[test]
fn the_renderer_keeps_present_zeroes_and_drops_absent_defaults() {
    let text = r#"Outer { a: 0, b: Some(UInt32Value { value: 0 }), c: "", d: [], e: Some(Empty), f: Some(Inner { x: None }), g: Some(Prefix("/p")), h: RoundRobin, i: V4Preferred, j: Some(PortValue(0)), r#match: Some(Duration { seconds: 1, nanos: 500000000 }) }"#;
    let d = simplify(parse_debug(text), true);
    let mut out = String::new();
    write_block(&mut out, &d, 0);
    assert_eq!(
        out,
        "b: 0\ne: EMPTY\nf: {}\nprefix: \"/p\"\ni: V4_PREFERRED\nport_value: 0\nmatch: 1.5s\n"
    );
}
