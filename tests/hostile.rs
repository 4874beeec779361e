//! Hostile input: a fixed corpus of malicious and malformed Mapping files, generated and mutated
//! YAML, and a real Envoy that must accept everything our validation lets through.
//!
//! Each file of the corpus gets its diagnostics (file, line, field), within a time bound; the
//! 50 MB file is refused by its size without being read. What the corpus, the generated files
//! and the generated regexes leave in the route table is served to `envoy --mode validate` the
//! way `serve` would serve it (the snapshot builder's clusters, both route configurations and
//! the runtime layer, in a static bootstrap; no network), and Envoy must accept it: a NACK there
//! means our validation let through something Envoy refuses.
//!
//! CI installs Envoy; without it on PATH these tests fail under CI (`CI` set and not empty) and
//! skip the Envoy half elsewhere, with a note (`common::have_envoy`).

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use canary_xds::envoy::snapshot::{Listen, SnapshotBuilder};
use canary_xds::envoy::translate;
use canary_xds::input::parse::{ParsedFile, parse_file};
use canary_xds::input::regex_check;
use canary_xds::input::{DEFAULT_MAX_FILE_SIZE, Loader};
use canary_xds::model::diagnostic::{Diagnostic, Severity};
use canary_xds::routes::{Tables, compile};
use canary_xds::xds::RUNTIME_LAYER;
use common::{Mapping, envoy_validate_pb, have_envoy, mapping};
use envoy_types::pb::envoy::config::bootstrap::v3::bootstrap::StaticResources;
use envoy_types::pb::envoy::config::bootstrap::v3::runtime_layer::LayerSpecifier;
use envoy_types::pb::envoy::config::bootstrap::v3::{
    Admin, Bootstrap, LayeredRuntime, RuntimeLayer,
};
use envoy_types::pb::envoy::config::cluster::v3::Cluster as XdsCluster;
use envoy_types::pb::envoy::config::core::v3::address::Address as XdsAddressKind;
use envoy_types::pb::envoy::config::core::v3::socket_address::PortSpecifier;
use envoy_types::pb::envoy::config::core::v3::{Address, SocketAddress};
use envoy_types::pb::envoy::config::route::v3::RouteConfiguration as XdsRouteConfiguration;
use envoy_types::pb::envoy::config::route::v3::route_match::PathSpecifier;
use envoy_types::pb::envoy::config::route::v3::{DirectResponseAction, Route, RouteMatch};
use envoy_types::pb::envoy::config::route::v3::{VirtualHost, route::Action};
use envoy_types::pb::envoy::service::runtime::v3::Runtime;
use envoy_types::pb::envoy::r#type::matcher::v3::RegexMatcher;
use envoy_types::pb::google::protobuf::{Any, Struct, Value, value::Kind as ValueKind};
use proptest::prelude::*;
use proptest::test_runner::{Config as PropConfig, TestRunner};
use prost::Message;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/hostile");

/// A generous bound for reading one hostile file on a busy 2-core machine: the point is that
/// nothing hangs or blows up (an unbounded alias bomb would take hours). The slowest file, a
/// hundred thousand documents, takes about 5 s in a debug build (the test profile) and a tenth
/// of that in a release build.
const PARSE_BOUND: Duration = Duration::from_secs(if cfg!(debug_assertions) { 20 } else { 3 });

// ---------------------------------------------------------------------------------------------
// The corpus

/// What a hostile file must produce.
enum Expect {
    /// Nothing in the file is used: one error naming this line (0: no line applies).
    FileError { line: u64, says: &'static str },
    /// Every named Mapping is left out with an error on `field` at a line of its own; the
    /// others (`kept`) are read.
    Refused {
        mappings: &'static [(&'static str, &'static str)],
        kept: usize,
    },
    /// Read: `kept` Mappings, no error.
    Read { kept: usize },
}

/// The fixed corpus in `tests/fixtures/hostile`, with what each file must produce.
fn fixtures() -> Vec<(&'static str, Expect)> {
    use Expect::*;
    vec![
        (
            "alias-bomb.yaml",
            FileError {
                line: 11,
                says: "alias bomb",
            },
        ),
        (
            "invalid-utf8.yaml",
            FileError {
                line: 4,
                says: "not valid UTF-8",
            },
        ),
        (
            "nul-byte.yaml",
            FileError {
                line: 4,
                says: "unexpected character",
            },
        ),
        (
            "tab-indent.yaml",
            FileError {
                line: 7,
                says: "tabs",
            },
        ),
        (
            "duplicate-key.yaml",
            FileError {
                line: 4,
                says: "appears twice",
            },
        ),
        ("bom.yaml", Read { kept: 1 }),
        ("crlf.yaml", Read { kept: 2 }),
        ("tabs-in-values.yaml", Read { kept: 1 }),
        ("regex-accepted.yaml", Read { kept: 3 }),
        (
            "nul-escapes.yaml",
            Refused {
                mappings: &[
                    ("nul\0name", "name"),
                    ("nul-header", "add_request_headers"),
                    ("nul-prefix", "prefix"),
                    ("nul-match", "headers"),
                    ("nul-regex", "prefix"),
                ],
                kept: 0,
            },
        ),
        (
            "cr-lf-in-values.yaml",
            Refused {
                mappings: &[
                    ("crlf-header", "add_request_headers"),
                    ("crlf-rewrite", "rewrite"),
                    ("crlf-match", "headers"),
                    ("crlf\nname", "name"),
                ],
                kept: 0,
            },
        ),
        (
            "regex-refused.yaml",
            Refused {
                mappings: &[
                    ("re-nested-repeat", "prefix"),
                    ("re-nested-count", "prefix"),
                    ("re-verbose-flag", "prefix"),
                    ("re-unicode-escape", "prefix"),
                    ("re-wide-hex", "prefix"),
                    ("re-unicode-class", "prefix"),
                    ("re-non-ascii", "prefix"),
                    ("re-nested-class", "prefix"),
                    ("re-word-start", "prefix"),
                    ("re-open-count", "prefix"),
                    ("re-too-many", "prefix"),
                    ("re-literal-97", "prefix"),
                    ("re-program-size", "prefix"),
                    ("re-syntax", "prefix"),
                    ("re-header", "regex_headers"),
                    ("re-host", "host"),
                ],
                kept: 0,
            },
        ),
        (
            "header-names.yaml",
            Refused {
                mappings: &[
                    ("hn-space", "headers"),
                    ("hn-colon", "add_request_headers"),
                    ("hn-empty", "remove_request_headers"),
                    ("hn-utf8", "add_response_headers"),
                    ("hn-newline", "regex_headers"),
                    ("hn-colon-only", "headers"),
                    ("hn-nul", "remove_response_headers"),
                ],
                kept: 0,
            },
        ),
        (
            "header-host-pseudo.yaml",
            Refused {
                mappings: &[
                    ("hp-host", "add_request_headers"),
                    ("hp-path", "add_request_headers"),
                    ("hp-authority", "add_request_headers"),
                    ("hp-remove-host", "remove_request_headers"),
                    ("hp-remove-method", "remove_request_headers"),
                    ("hp-status", "add_response_headers"),
                ],
                kept: 0,
            },
        ),
        (
            "prefix-no-slash.yaml",
            Refused {
                mappings: &[
                    ("ps-relative", "prefix"),
                    ("ps-empty", "prefix"),
                    ("ps-star", "prefix"),
                    ("ps-url", "prefix"),
                    ("ps-space", "prefix"),
                ],
                kept: 0,
            },
        ),
        (
            "yaml-oddities.yaml",
            Refused {
                mappings: &[("complex", "document"), ("numbers", "weight")],
                kept: 3,
            },
        ),
    ]
}

/// Strings of about 1 MB (the file stays under the 1 MiB limit), one per field that takes free
/// text, with the field of the error when it must be refused (`""`: the file is not YAML).
fn one_megabyte_strings() -> Vec<(String, String, Option<&'static str>)> {
    let long = |c: char| c.to_string().repeat(1_000_000);
    let with = |extra: String| mapping("big", "/big/", "s", &extra);
    let cases = [
        ("name", mapping(&long('n'), "/big/", "s", ""), Some("name")),
        (
            "namespace",
            with(format!("namespace: {}\n", long('n'))),
            Some("namespace"),
        ),
        (
            "prefix",
            mapping("big", &format!("/{}", long('p')), "s", ""),
            None,
        ),
        (
            "regex",
            mapping(
                "big",
                &format!("/{}", long('r')),
                "s",
                "prefix_regex: true\n",
            ),
            Some("prefix"),
        ),
        (
            "service",
            mapping("big", "/big/", &long('s'), ""),
            Some("service"),
        ),
        (
            "host",
            with(format!("host: {}.com\n", long('h'))),
            Some("host"),
        ),
        // YAML itself limits implicit keys to 1024 characters; explicit keys (`? key`) are not.
        (
            "header-name",
            with(format!("headers:\n  x-{}: \"1\"\n", long('h'))),
            Some(""),
        ),
        (
            "header-name-explicit",
            with(format!("headers:\n  ? x-{}\n  : \"1\"\n", long('h'))),
            Some("headers"),
        ),
        (
            "added-header-name",
            with(format!(
                "add_request_headers:\n  ? x-{}\n  : \"1\"\n",
                long('h')
            )),
            Some("add_request_headers"),
        ),
        (
            "header-value",
            with(format!("headers:\n  x-h: \"{}\"\n", long('v'))),
            None,
        ),
        (
            "added-header-value",
            with(format!("add_request_headers:\n  x-h: \"{}\"\n", long('v'))),
            Some("add_request_headers"),
        ),
        (
            "removed-header",
            with(format!("remove_response_headers: [x-{}]\n", long('h'))),
            Some("remove_response_headers"),
        ),
        (
            "query-name",
            with(format!("query_parameters:\n  q{}: \"1\"\n", long('q'))),
            Some(""),
        ),
        (
            "query-name-explicit",
            with(format!(
                "query_parameters:\n  ? q{}\n  : \"1\"\n",
                long('q')
            )),
            Some("query_parameters"),
        ),
        (
            "unknown-field",
            with(format!("? x{}\n: 1\n", long('x'))),
            None,
        ),
        ("rewrite", with(format!("rewrite: /{}\n", long('w'))), None),
        (
            "host-rewrite",
            with(format!("host_rewrite: {}\n", long('h'))),
            Some("host_rewrite"),
        ),
        (
            "cluster-tag",
            with(format!("cluster_tag: {}\n", long('t'))),
            Some("cluster_tag"),
        ),
        (
            "fleet",
            with(format!("ambassador_id: {}\n", long('f'))),
            Some("ambassador_id"),
        ),
        (
            "method",
            with(format!("method: {}\n", long('M'))),
            Some("method"),
        ),
        (
            "upgrade",
            with(format!("allow_upgrade: [{}]\n", long('u'))),
            Some("allow_upgrade"),
        ),
        (
            "retry-on",
            with(format!(
                "retry_policy: {{retry_on: \"{}5xx\"}}\n",
                "5xx,".repeat(240_000)
            )),
            None,
        ),
    ];
    cases
        .into_iter()
        .map(|(what, text, refused)| (format!("1mb-{what}.yaml"), text, refused))
        .collect()
}

/// A Mapping file whose first line starts `depth` nested flow lists (and a block mapping as
/// deep, kept under the size limit by its indentation growing only to 2,000 levels).
fn deeply_nested(depth: usize) -> Vec<(String, String)> {
    let deep = |headers: String| mapping("deep", "/deep/", "s", &format!("headers: {headers}\n"));
    let flow = deep(format!("{}{}", "[".repeat(depth), "]".repeat(depth)));
    let flow_maps = deep(format!("{}1{}", "{a: ".repeat(depth), "}".repeat(depth)));
    let block: String = (0..2000)
        .map(|i| format!("{}a:\n", " ".repeat(i)))
        .collect();
    vec![
        (format!("nested-{depth}-lists.yaml"), flow),
        (format!("nested-{depth}-maps.yaml"), flow_maps),
        ("nested-2000-block.yaml".to_string(), block),
    ]
}

fn errors(p: &ParsedFile) -> Vec<&Diagnostic> {
    p.diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .collect()
}

/// Parses `bytes` as file `name`, within the time bound.
fn timed_parse(name: &str, bytes: &[u8]) -> ParsedFile {
    let started = Instant::now();
    let parsed = parse_file(name, bytes);
    let took = started.elapsed();
    assert!(took < PARSE_BOUND, "{name}: parsing took {took:?}");
    parsed
}

/// Every diagnostic names the file; every error that is not about the whole file names a line.
fn check_diagnostics(name: &str, p: &ParsedFile) {
    for d in &p.diagnostics {
        assert_eq!(d.file, name, "{d:?}");
        assert!(!d.message.is_empty(), "{d:?}");
        assert!(
            d.line > 0 && d.column > 0,
            "{name}: a diagnostic without a position: {d:?}"
        );
        assert!(
            d.message.len() < 2_000,
            "{name}: a diagnostic of {} bytes quotes too much",
            d.message.len()
        );
    }
}

#[test]
fn every_fixture_gets_its_diagnostics_in_bounded_time() {
    let mut seen = 0;
    for (name, expect) in fixtures() {
        let bytes = fs::read(Path::new(FIXTURES).join(name)).unwrap();
        let p = timed_parse(name, &bytes);
        check_diagnostics(name, &p);
        let errs = errors(&p);
        match expect {
            Expect::FileError { line, says } => {
                assert!(p.mappings.is_empty(), "{name}: {:?}", p.mappings);
                assert_eq!(errs.len(), 1, "{name}: {errs:#?}");
                assert_eq!(errs[0].line, line, "{name}: {:?}", errs[0]);
                assert!(errs[0].message.contains(says), "{name}: {:?}", errs[0]);
            }
            Expect::Refused { mappings, kept } => {
                assert_eq!(p.mappings.len(), kept, "{name}: {:#?}", p.mappings);
                for (mapping, field) in mappings {
                    // A Mapping whose name is at fault has no name to be known by.
                    let found = errs.iter().find(|d| {
                        d.field.as_deref() == Some(*field)
                            && (d.mapping.as_deref() == Some(*mapping) || d.mapping.is_none())
                    });
                    assert!(
                        found.is_some(),
                        "{name}: no error on {field} of {mapping:?}: {errs:#?}"
                    );
                }
            }
            Expect::Read { kept } => {
                assert!(errs.is_empty(), "{name}: {errs:#?}");
                assert_eq!(p.mappings.len(), kept, "{name}");
            }
        }
        seen += 1;
    }
    // Every file of the corpus directory has its expectation here.
    let on_disk = fs::read_dir(FIXTURES).unwrap().count();
    assert_eq!(seen, on_disk, "a fixture in {FIXTURES} has no expectation");
}

#[test]
fn ten_thousand_levels_of_nesting_are_refused_at_the_limit() {
    // Parsing recurses once per level: it must stay inside a 2 MiB thread stack, as tokio's
    // blocking threads have.
    let outcome = std::thread::Builder::new()
        .stack_size(2 * 1024 * 1024)
        .spawn(|| {
            for (name, text) in deeply_nested(10_000) {
                let p = timed_parse(&name, text.as_bytes());
                check_diagnostics(&name, &p);
                let errs = errors(&p);
                assert_eq!(errs.len(), 1, "{name}: {errs:?}");
                assert!(
                    errs[0].message.contains("nested more than 32"),
                    "{name}: {:?}",
                    errs[0]
                );
            }
        })
        .unwrap()
        .join();
    assert!(outcome.is_ok(), "nesting overflowed the stack or panicked");
}

#[test]
fn a_hundred_thousand_documents_are_read_in_bounded_time() {
    // Empty documents cost nothing; the 100,001st is one too many.
    let empty = "---\n".repeat(100_000);
    let p = timed_parse("empty-docs.yaml", empty.as_bytes());
    assert!(p.diagnostics.is_empty() && p.mappings.is_empty());
    // Twenty thousand small documents (no kind) get an error each, with its line.
    let small = "---\na: 1\n".repeat(20_000);
    let p = timed_parse("small-docs.yaml", small.as_bytes());
    check_diagnostics("small-docs.yaml", &p);
    assert_eq!(errors(&p).len(), 20_000);
    assert_eq!(p.diagnostics.last().unwrap().line, 40_000);
    // A hundred thousand are over the value budget: one error for the file.
    let many = "---\na: 1\n".repeat(100_000);
    assert!(many.len() < DEFAULT_MAX_FILE_SIZE as usize);
    let p = timed_parse("many-docs.yaml", many.as_bytes());
    check_diagnostics("many-docs.yaml", &p);
    let errs = errors(&p);
    assert_eq!(errs.len(), 1, "{errs:?}");
    eprintln!("{}", errs[0].message);
}

#[test]
fn one_megabyte_strings_are_read_or_refused_in_bounded_time() {
    for (name, text, refused) in one_megabyte_strings() {
        assert!(
            text.len() < DEFAULT_MAX_FILE_SIZE as usize,
            "{name} is {} bytes",
            text.len()
        );
        let p = timed_parse(&name, text.as_bytes());
        check_diagnostics(&name, &p);
        let errs = errors(&p);
        match refused {
            Some(field) => {
                assert!(p.mappings.is_empty(), "{name} was accepted");
                assert!(
                    errs.iter()
                        .any(|d| d.field.as_deref().unwrap_or("") == field),
                    "{name}: {errs:#?}"
                );
            }
            None => assert!(
                errs.is_empty() && p.mappings.len() == 1,
                "{name}: {errs:#?}"
            ),
        }
    }
}

/// The bytes this thread has read through `read` and friends so far (`rchar` of
/// `/proc/thread-self/io`), or `None` where the kernel does not say.
fn bytes_read_by_this_thread() -> Option<u64> {
    let io = fs::read_to_string("/proc/thread-self/io").ok()?;
    io.lines()
        .find_map(|l| l.strip_prefix("rchar: "))
        .and_then(|v| v.trim().parse().ok())
}

#[test]
fn a_50_mb_file_is_refused_by_its_size_without_being_read() {
    let t = tempfile::tempdir().unwrap();
    fs::write(
        t.path().join("ok.yaml"),
        mapping("ok", "/ok/", "s", "weight: 10\n"),
    )
    .unwrap();
    // Real bytes, not a sparse file: reading it would cost the full 50 MB.
    let mut big = fs::File::create(t.path().join("big.yaml")).unwrap();
    let chunk = mapping("x", "/x/", "s", "").repeat(1000);
    let mut written = 0;
    while written < 50 * 1000 * 1000 {
        big.write_all(chunk.as_bytes()).unwrap();
        written += chunk.len();
    }
    drop(big);
    let mut loader = Loader::new(t.path(), DEFAULT_MAX_FILE_SIZE);
    let before = bytes_read_by_this_thread();
    let started = Instant::now();
    let scan = loader.scan(true).unwrap();
    let took = started.elapsed();
    let after = bytes_read_by_this_thread();
    assert!(took < Duration::from_secs(2), "{took:?}");
    if let (Some(before), Some(after)) = (before, after) {
        assert!(
            after - before < 1024 * 1024,
            "the scan read {} bytes",
            after - before
        );
    }
    let big = scan.files.iter().find(|f| f.rel == "big.yaml").unwrap();
    let d = &big.parsed.diagnostics[0];
    assert_eq!((d.severity, d.file.as_str()), (Severity::Error, "big.yaml"));
    assert!(d.message.contains("over the limit"), "{}", d.message);
    assert!(big.parsed.mappings.is_empty());
    // The other file is read as usual.
    let ok = scan.files.iter().find(|f| f.rel == "ok.yaml").unwrap();
    assert_eq!(ok.parsed.mappings.len(), 1);
}

// ---------------------------------------------------------------------------------------------
// Envoy

/// Runs `envoy --mode validate` on a binary bootstrap, with `runtime_layer` as a static runtime
/// layer: `Ok` with Envoy's log when Envoy accepts it, `Err` with its last words when it
/// refuses, `None` when Envoy is not installed (outside CI: `have_envoy`).
fn envoy_validate(
    bootstrap: &Bootstrap,
    runtime_layer: Option<Struct>,
) -> Option<Result<String, String>> {
    if !have_envoy() {
        return None;
    }
    let mut bootstrap = bootstrap.clone();
    if let Some(layer) = runtime_layer {
        bootstrap.layered_runtime = Some(LayeredRuntime {
            layers: vec![RuntimeLayer {
                name: "static".into(),
                layer_specifier: Some(LayerSpecifier::StaticLayer(layer)),
            }],
        });
    }
    Some(
        envoy_validate_pb(&bootstrap)
            .map_err(|text| text.lines().rev().take(3).collect::<Vec<_>>().join("\n")),
    )
}

fn loopback(port: u16) -> Address {
    Address {
        address: Some(XdsAddressKind::SocketAddress(SocketAddress {
            address: "127.0.0.1".into(),
            port_specifier: Some(PortSpecifier::PortValue(port.into())),
            ..Default::default()
        })),
    }
}

fn decode_any(bytes: &[u8]) -> Any {
    Any::decode(bytes).expect("a resource is an encoded Any")
}

/// What Envoy says of `tables` served as `serve` serves them: per fleet, the snapshot builder's
/// clusters, its route configurations for Envoys without and with the runtime layer (each on
/// a listener of its own, inline) and its runtime layer, in one static bootstrap.
fn envoy_verdict(tables: &Tables) -> Option<Result<(), String>> {
    let listen = Listen {
        default: "127.0.0.1:10000".parse().unwrap(),
        fleets: BTreeMap::new(),
    };
    let mut builder = SnapshotBuilder::new(listen, None);
    for (fleet, table) in &tables.fleets {
        let snapshot = builder.build(fleet, Arc::clone(table));
        let clusters: Vec<XdsCluster> = snapshot
            .clusters
            .items
            .values()
            .map(|r| XdsCluster::decode(&*decode_any(&r.any).value).unwrap())
            .collect();
        let route_config = |set: &canary_xds::xds::resource::ResourceSet| {
            let r = set.items.values().next().expect("one route configuration");
            XdsRouteConfiguration::decode(&*decode_any(&r.any).value).unwrap()
        };
        let listeners = [(10000, &snapshot.routes), (10001, &snapshot.routes_runtime)]
            .into_iter()
            .map(|(port, set)| {
                let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
                translate::listener_with_routes(addr, route_config(set))
            })
            .collect();
        let layer = snapshot
            .runtime
            .items
            .get(RUNTIME_LAYER)
            .map(|r| Runtime::decode(&*decode_any(&r.any).value).unwrap())
            .and_then(|r| r.layer);
        let bootstrap = Bootstrap {
            admin: Some(Admin {
                address: Some(loopback(0)),
                ..Default::default()
            }),
            static_resources: Some(StaticResources {
                listeners,
                clusters,
                ..Default::default()
            }),
            ..Default::default()
        };
        match envoy_validate(&bootstrap, layer)? {
            Ok(_) => {}
            Err(e) => return Some(Err(format!("fleet {fleet:?}: {e}"))),
        }
    }
    Some(Ok(()))
}

/// The route tables of `files` as `serve` compiles them.
fn tables_of(files: &[ParsedFile]) -> Tables {
    compile(files, None).tables
}

#[test]
fn envoy_accepts_everything_the_corpus_lets_through() {
    let mut files: Vec<ParsedFile> = fixtures()
        .iter()
        .map(|(name, _)| parse_file(name, &fs::read(Path::new(FIXTURES).join(name)).unwrap()))
        .collect();
    let kept: usize = files.iter().map(|f| f.mappings.len()).sum();
    assert!(kept >= 10, "the corpus keeps too little to test: {kept}");
    if let Some(verdict) = envoy_verdict(&tables_of(&files)) {
        verdict.unwrap_or_else(|e| panic!("Envoy refused what the corpus let through: {e}"));
    }
    // The 1 MB strings we accept, each in a route table of its own (so that a refusal names
    // its file).
    for (name, text, refused) in one_megabyte_strings() {
        if refused.is_some() {
            continue;
        }
        files = vec![parse_file(&name, text.as_bytes())];
        if let Some(verdict) = envoy_verdict(&tables_of(&files)) {
            verdict.unwrap_or_else(|e| panic!("Envoy refused {name}: {e}"));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Generated and mutated YAML

/// Seed files to mutate: every Mapping file of the fixtures and examples.
fn seeds() -> Vec<Vec<u8>> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "yaml" || x == "yml") {
                out.push(p);
            }
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut paths = Vec::new();
    walk(&root.join("tests/fixtures"), &mut paths);
    walk(&root.join("examples/mappings"), &mut paths);
    paths.sort();
    let seeds: Vec<Vec<u8>> = paths
        .iter()
        .filter_map(|p| fs::read(p).ok())
        .filter(|b| b.len() < 16 * 1024)
        .collect();
    assert!(seeds.len() > 10, "too few seed files: {}", seeds.len());
    seeds
}

/// YAML and Mapping fragments a mutation inserts.
const TOKENS: &[&str] = &[
    "---\n",
    "\n",
    ": ",
    "- ",
    "[",
    "]",
    "{",
    "}",
    ",",
    "&a ",
    "*a",
    "!!binary ",
    "!!str ",
    "<<: ",
    "? ",
    "|\n",
    ">-\n",
    "\"",
    "'",
    "#",
    "\t",
    "  ",
    "\r\n",
    "\u{feff}",
    "\0",
    "\u{2028}",
    "~",
    "null",
    "true",
    "no",
    "1e400",
    "-1",
    "0.005",
    "100.01",
    ".nan",
    "0x1F",
    "weight: ",
    "prefix: ",
    "service: ",
    "name: ",
    "host: ",
    "headers:\n  x: ",
    "prefix_regex: true\n",
    "shadow: true\n",
    "ambassador_id: [a, b]\n",
    "kind: Mapping\n",
    "apiVersion: ambassador/v1\n",
    "metadata:\n  name: m\nspec:\n  ",
    "(",
    ")",
    "*",
    "+",
    "{2}",
    "\\",
    "\\x{100}",
    "é",
    "日",
    "😀",
];

/// One mutation of `bytes`.
#[derive(Clone, Debug)]
enum Mutation {
    Insert(usize, usize),
    Delete(usize, usize),
    Flip(usize, u8),
    Duplicate(usize, usize),
    SwapLines(usize, usize),
}

fn mutate(mut bytes: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        let len = bytes.len().max(1);
        match *m {
            Mutation::Insert(at, token) => {
                let at = at % (bytes.len() + 1);
                let token = TOKENS[token % TOKENS.len()].as_bytes();
                bytes.splice(at..at, token.iter().copied());
            }
            Mutation::Delete(at, n) => {
                let at = at % len;
                let end = (at + n % 64).min(bytes.len());
                if at < end {
                    bytes.drain(at..end);
                }
            }
            Mutation::Flip(at, b) => {
                if !bytes.is_empty() {
                    let at = at % bytes.len();
                    bytes[at] ^= b;
                }
            }
            Mutation::Duplicate(at, n) => {
                let at = at % len;
                let end = (at + n % 256).min(bytes.len());
                if at < end {
                    let copy = bytes[at..end].to_vec();
                    bytes.splice(end..end, copy);
                }
            }
            Mutation::SwapLines(a, b) => {
                let mut lines: Vec<&[u8]> = bytes.split(|&c| c == b'\n').collect();
                let n = lines.len();
                lines.swap(a % n, b % n);
                bytes = lines.join(&b'\n');
            }
        }
    }
    bytes
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        3 => (any::<usize>(), any::<usize>()).prop_map(|(a, t)| Mutation::Insert(a, t)),
        2 => (any::<usize>(), any::<usize>()).prop_map(|(a, n)| Mutation::Delete(a, n)),
        2 => (any::<usize>(), 1..=255u8).prop_map(|(a, b)| Mutation::Flip(a, b)),
        1 => (any::<usize>(), any::<usize>()).prop_map(|(a, n)| Mutation::Duplicate(a, n)),
        1 => (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Mutation::SwapLines(a, b)),
    ]
}

/// A Mapping of a small shared vocabulary, so that generated Mappings meet in routes, share
/// clusters, split weights, shadow each other and spread over fleets.
fn generated_mapping(i: usize) -> impl Strategy<Value = String> {
    let prefix = prop::sample::select(vec![
        "/a/", "/a/", "/b/", "/", "/a/b/", "'^/a/.*'", "qotm/", "/c d/",
    ]);
    let service = prop::sample::select(vec![
        "s1",
        "s2",
        "s1:8080",
        "https://s3",
        "127.0.0.1:9000",
        "[::1]:90",
        "s1/x",
        "ftp://s",
    ]);
    let weight = prop::option::of(prop::sample::select(vec![
        "0", "10", "33.33", "50", "100", "0.5", "101", "4.351", "\"10\"", "-1",
    ]));
    let extra = prop::collection::vec(
        prop::sample::select(vec![
            "prefix_regex: true",
            "shadow: true",
            "host: foo.com",
            "host: \"*.foo.com\"",
            "host: \"^a\\\\.b$\"\nhost_regex: true",
            "method: GET",
            "headers: {x-canary: \"true\"}",
            "headers: {x-present: true}",
            "regex_headers: {x-v: \"^v[0-9]$\"}",
            "query_parameters: {q: \"1\"}",
            "precedence: 2",
            "rewrite: /r/",
            "rewrite: \"\"",
            "timeout_ms: 0",
            "timeout_ms: 10",
            "idle_timeout_ms: 5000",
            "connect_timeout_ms: 250",
            "host_rewrite: h.internal",
            "add_request_headers: {x-add: v}",
            "add_response_headers: {x-r: {value: v, append: false}}",
            "remove_request_headers: [cookie]",
            "remove_response_headers: x-debug",
            "ambassador_id: edge",
            "ambassador_id: [default, edge]",
            "case_sensitive: false",
            "cluster_tag: canary",
            "grpc: true",
            "use_websocket: true",
            "allow_upgrade: [websocket, CONNECT]",
            "retry_policy: {retry_on: 5xx, num_retries: 2, per_try_timeout: 250ms}",
            "retry_policy: {num_retries: 2}",
            "namespace: other",
        ]),
        0..5,
    );
    (prefix, service, weight, extra).prop_map(move |(prefix, service, weight, extra)| {
        let mut doc = Mapping::new(&format!("m{i}"))
            .prefix(prefix)
            .service(&format!("\"{service}\""));
        if let Some(w) = weight {
            doc = doc.weight(w);
        }
        let mut seen = std::collections::BTreeSet::new();
        for e in extra {
            // One of each field, so that the document stays valid YAML.
            let key = e.split(':').next().unwrap_or(e);
            if seen.insert(key) {
                doc = doc.extra(&format!("{e}\n"));
            }
        }
        doc.text()
    })
}

/// A file of several generated Mappings.
fn generated_file() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 1..8)
        .prop_flat_map(|ids| {
            ids.into_iter()
                .enumerate()
                .map(|(i, _)| generated_mapping(i))
                .collect::<Vec<_>>()
        })
        .prop_map(|docs| docs.join("---\n").into_bytes())
}

/// Any input: generated Mappings, seed files mutated (the generated ones too), or raw bytes.
fn hostile_file(seeds: Vec<Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    let seed = prop::sample::select(seeds);
    prop_oneof![
        3 => generated_file(),
        4 => (seed, prop::collection::vec(mutation(), 1..8)).prop_map(|(s, m)| mutate(s, &m)),
        2 => (generated_file(), prop::collection::vec(mutation(), 1..4))
            .prop_map(|(s, m)| mutate(s, &m)),
        1 => prop::collection::vec(any::<u8>(), 0..512),
    ]
}

/// Parses, compiles and builds the snapshots of `files`, as `serve` does on a reload (twice:
/// the second time with the first tables as the last good ones), within the time bound.
fn pipeline(files: &[(String, Vec<u8>)]) -> (Vec<ParsedFile>, Tables) {
    let started = Instant::now();
    let parsed: Vec<ParsedFile> = files
        .iter()
        .map(|(name, bytes)| parse_file(name, bytes))
        .collect();
    let first = compile(&parsed, None);
    let again = compile(&parsed, Some(&first.tables));
    let mut builder = SnapshotBuilder::new(canary_xds::serve::parse_listen(&[]).unwrap(), None);
    for (fleet, table) in again.tables.fleets.iter().chain(&first.tables.fleets) {
        let snapshot = builder.build(fleet, Arc::clone(table));
        assert!(!snapshot.version.is_empty());
    }
    let took = started.elapsed();
    assert!(took < PARSE_BOUND, "the pipeline took {took:?}");
    (parsed, first.tables)
}

#[test]
fn generated_and_mutated_files_never_panic_and_stay_fast() {
    let seeds = seeds();
    let mut runner = TestRunner::new(PropConfig {
        cases: 600,
        failure_persistence: None,
        ..PropConfig::default()
    });
    let files = prop::collection::vec(hostile_file(seeds), 1..4);
    let accepted = std::sync::Mutex::new(Vec::new());
    runner
        .run(&files, |files| {
            let named: Vec<(String, Vec<u8>)> = files
                .into_iter()
                .enumerate()
                .map(|(i, b)| (format!("f{i}.yaml"), b))
                .collect();
            let (parsed, _) = pipeline(&named);
            for (p, (name, _)) in parsed.iter().zip(&named) {
                for d in &p.diagnostics {
                    prop_assert_eq!(&d.file, name);
                    prop_assert!(!d.message.is_empty());
                    prop_assert!(d.line > 0, "no line: {:?}", d);
                }
            }
            if parsed.iter().any(|p| !p.mappings.is_empty()) {
                accepted.lock().unwrap().push(named);
            }
            Ok(())
        })
        .unwrap();
    // A sample of what was accepted, served to Envoy: a few route tables of many files each.
    let accepted = accepted.into_inner().unwrap();
    assert!(
        accepted.len() > 100,
        "too few inputs were accepted: {}",
        accepted.len()
    );
    for (n, group) in accepted.chunks(accepted.len().div_ceil(4)).enumerate() {
        let parsed: Vec<ParsedFile> = group
            .iter()
            .enumerate()
            .flat_map(|(i, files)| {
                files
                    .iter()
                    .map(move |(name, bytes)| parse_file(&format!("g{i}/{name}"), bytes))
            })
            .collect();
        if let Some(verdict) = envoy_verdict(&tables_of(&parsed)) {
            verdict.unwrap_or_else(|e| {
                let dir = std::env::temp_dir().join(format!("canary-xds-hostile-{n}"));
                let _ = fs::create_dir_all(&dir);
                for (i, files) in group.iter().enumerate() {
                    for (name, bytes) in files {
                        let _ = fs::write(dir.join(format!("g{i}-{name}")), bytes);
                    }
                }
                panic!(
                    "Envoy refused generated files (kept in {}): {e}",
                    dir.display()
                )
            });
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Regexes against RE2

/// A tiny deterministic generator (xorshift), so that the regex corpus is the same every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
}

/// A random ASCII regex of RE2 syntax (regex-syntax's too), mostly near the program-size limit.
fn random_regex(r: &mut Rng, depth: u32) -> String {
    let atom = |r: &mut Rng| -> String {
        match r.below(12) {
            0 => r.pick(&[r"\d", r"\w", r"\s", r"\D", r"\W", r"\S"]).into(),
            1 => r
                .pick(&[
                    "[[:alpha:]]",
                    "[[:digit:]]",
                    "[[:word:]]",
                    "[[:^space:]]",
                    "[[:punct:]]",
                ])
                .into(),
            2 => r
                .pick(&[".", "(?s:.)", "[^/]", "[^/?#]", "[a-zA-Z]", "[^a]"])
                .into(),
            3 => {
                let neg = if r.below(4) == 0 { "^" } else { "" };
                let mut s = format!("[{neg}");
                for _ in 0..1 + r.below(7) {
                    match r.below(5) {
                        0 => {
                            let a = b'a' + r.below(20) as u8;
                            let b = a + r.below(6) as u8;
                            s.push_str(&format!("{}-{}", a as char, b as char));
                        }
                        1 => s.push_str(r.pick(&["0-9", "A-Z", "!-/", r"\x00-\x1f", r"\d", "_"])),
                        _ => s.push((b'a' + r.below(26) as u8) as char),
                    }
                }
                s.push(']');
                s
            }
            4 => r
                .pick(&[
                    r"\.", r"\/", r"\-", r"\*", r"\(", r"\$", r"\\", "k", "K", "s",
                ])
                .into(),
            _ => ((b'a' + r.below(26) as u8) as char).to_string(),
        }
    };
    if depth == 0 {
        return atom(r);
    }
    match r.below(9) {
        0 | 1 => atom(r),
        2 => (0..2 + r.below(5))
            .map(|_| random_regex(r, depth - 1))
            .collect(),
        3 => (0..2 + r.below(3))
            .map(|_| random_regex(r, depth - 1))
            .collect::<Vec<_>>()
            .join("|"),
        4 => {
            let inner = random_regex(r, depth - 1);
            match r.below(4) {
                0 => format!("({inner})"),
                1 => format!("(?:{inner})"),
                2 => format!("(?i:{inner})"),
                _ => format!("(?P<g{}>{inner})", r.below(1000)),
            }
        }
        5 | 6 => {
            let inner = format!("(?:{})", random_regex(r, depth - 1));
            let op = match r.below(8) {
                0 => "*".to_string(),
                1 => "+".to_string(),
                2 => "?".to_string(),
                3 => "*?".to_string(),
                4 => format!("{{{}}}", r.below(6)),
                5 => {
                    let a = r.below(4);
                    format!("{{{a},{}}}", a + r.below(5))
                }
                6 => format!("{{{},}}", r.below(4)),
                _ => "+?".to_string(),
            };
            format!("{inner}{op}")
        }
        7 => r.pick(&["^", "$", r"\b", r"\B", r"\A", r"\z"]).into(),
        _ => (0..1 + r.below(30))
            .map(|_| (b'a' + r.below(26) as u8) as char)
            .collect(),
    }
}

/// Regexes near the limit, written by hand: long literals, classes, counted repetitions.
fn regexes_near_the_limit() -> Vec<String> {
    let mut out = Vec::new();
    for n in 90..=100 {
        out.push("a".repeat(n));
        out.push(format!("^{}$", "a".repeat(n)));
    }
    for n in 1..=12 {
        out.push(format!("[acegikmoqsuwy]{{{n}}}"));
        out.push(format!("(?i)[a-z0-9_-]{{{}}}", n * 4));
        out.push(format!("(?:/[^/]+){{1,{n}}}/?"));
        out.push(format!("^/api/v[0-9]+{}", "/[a-z]+".repeat(n)));
        out.push(format!("(?:x|y?){{{}}}", n * 2));
        out.push(format!("({})+", "a|b|c|".repeat(n) + "d"));
    }
    out.push(r"^(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,6}$".into());
    out.push(r"^/(?P<ns>[a-z0-9-]+)/(?P<svc>[a-z0-9-]+)/v[0-9]+/.*$".into());
    out
}

/// A static bootstrap with one route per pattern, each matching paths with it.
fn regex_bootstrap(patterns: &[String]) -> Bootstrap {
    let route = |p: &String| Route {
        r#match: Some(RouteMatch {
            path_specifier: Some(PathSpecifier::SafeRegex(RegexMatcher {
                regex: p.clone(),
                engine_type: None,
            })),
            ..Default::default()
        }),
        action: Some(Action::DirectResponse(DirectResponseAction {
            status: 200,
            ..Default::default()
        })),
        ..Default::default()
    };
    let routes = XdsRouteConfiguration {
        name: "re2".into(),
        virtual_hosts: vec![VirtualHost {
            name: "any".into(),
            domains: vec!["*".into()],
            routes: patterns.iter().map(route).collect(),
            ..Default::default()
        }],
        ..Default::default()
    };
    Bootstrap {
        static_resources: Some(StaticResources {
            listeners: vec![translate::listener_with_routes(
                "127.0.0.1:10000".parse().unwrap(),
                routes,
            )],
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// RE2's program size of each pattern, as Envoy reports it in its warn-level log (the warn
/// level set to 1, the error level out of reach); `None` without Envoy.
fn envoy_program_sizes(patterns: &[String]) -> Option<BTreeMap<String, usize>> {
    let bootstrap = regex_bootstrap(patterns);
    let number = |n: f64| Value {
        kind: Some(ValueKind::NumberValue(n)),
    };
    let layer = Struct {
        fields: [
            ("re2.max_program_size.error_level".to_string(), number(1e6)),
            ("re2.max_program_size.warn_level".to_string(), number(1.0)),
        ]
        .into(),
    };
    let log = envoy_validate(&bootstrap, Some(layer))?
        .unwrap_or_else(|e| panic!("Envoy refused a pattern: {e}"));
    let mut sizes = BTreeMap::new();
    for line in log.lines() {
        // regex 'PATTERN' RE2 program size of N > max program size of 1 set for the warn ...
        let Some(rest) = line.split_once("regex '").map(|(_, r)| r) else {
            continue;
        };
        let Some((pattern, tail)) = rest.rsplit_once("' RE2 program size of ") else {
            continue;
        };
        if let Some(n) = tail.split_whitespace().next().and_then(|n| n.parse().ok()) {
            sizes.insert(pattern.to_string(), n);
        }
    }
    Some(sizes)
}

#[test]
fn the_regex_estimate_is_never_below_envoys_program_size() {
    let mut rng = Rng(0x5eed_cafe_f00d);
    let mut patterns: Vec<String> = regexes_near_the_limit();
    while patterns.len() < 3000 {
        let depth = 1 + rng.below(4) as u32;
        let mut p = random_regex(&mut rng, depth);
        if rng.below(3) == 0 {
            p.insert(0, '^');
        }
        patterns.push(p);
    }
    // Only what RE2 accepts can be measured: what regex-syntax accepts too (our check refuses
    // the rest of RE2's syntax anyway).
    let estimates: BTreeMap<String, Result<usize, String>> = patterns
        .iter()
        .map(|p| (p.clone(), regex_check::program_size_estimate(p)))
        .collect();
    let measurable: Vec<String> = estimates
        .iter()
        .filter(|(_, e)| e.is_ok())
        .map(|(p, _)| p.clone())
        .collect();
    let Some(sizes) = envoy_program_sizes(&measurable) else {
        return;
    };
    assert!(
        sizes.len() * 10 >= measurable.len() * 9,
        "Envoy's log gave the size of only {} of {} patterns",
        sizes.len(),
        measurable.len()
    );
    let mut near = 0;
    let mut refused_near = 0;
    for (pattern, &real) in &sizes {
        let estimate = estimates[pattern].as_ref().unwrap();
        assert!(
            *estimate >= real,
            "{pattern:?}: estimated {estimate}, Envoy's RE2 says {real}"
        );
        if (60..=100).contains(&real) {
            near += 1;
            refused_near += usize::from(*estimate > regex_check::MAX_PROGRAM_SIZE);
        }
    }
    eprintln!(
        "{} patterns measured; {near} between 60 and 100 instructions, {refused_near} of them \
         refused by the (conservative) estimate",
        sizes.len()
    );
    // Everything the check accepts, Envoy accepts at its default limit.
    let accepted: Vec<String> = patterns
        .iter()
        .filter(|p| regex_check::check(p).is_ok())
        .cloned()
        .collect();
    if let Some(Err(e)) = envoy_validate(&regex_bootstrap(&accepted), None) {
        panic!("Envoy refused a regex the check accepts: {e}");
    }
}

/// Envoy 1.40 compiles regexes with RE2 in Latin-1 mode: the reason non-ASCII is refused.
#[test]
fn envoys_re2_reads_regexes_as_latin1() {
    let refused = |pattern: &str| {
        envoy_validate(&regex_bootstrap(&[pattern.to_string()]), None).map(|v| v.is_err())
    };
    // The largest Latin-1 character is the largest RE2 accepts; a UTF-8 RE2 would take both.
    if let Some(r) = refused(r"\x{FF}") {
        assert!(!r, r"Envoy refused \x{{FF}}");
        assert_eq!(refused(r"\x{100}"), Some(true), r"Envoy accepted \x{{100}}");
    }
    assert!(regex_check::check(r"\x{100}").is_err());
    assert!(regex_check::check("é").is_err());
}
