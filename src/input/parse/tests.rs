//! Unit tests of parsing: the two forms, every field, and the errors for bad values.

use super::*;
use crate::model::mapping::{HeaderMatch, Scheme};

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
