//! Whether two routes can match one request: then the one Envoy tries first takes it, and the
//! other never sees it. A route added before another that overlaps it takes some of its
//! requests; a route removed gives them back.
//!
//! The answer errs towards "they may": a regex (host, prefix or header) is taken to match
//! anything, since comparing regexes is not worth its cost here.

use std::collections::BTreeMap;

use crate::model::mapping::{HeaderMatch, RouteKey};

/// Whether some request can match both `a` and `b`.
pub fn may_overlap(a: &RouteKey, b: &RouteKey) -> bool {
    prefixes_overlap(a, b)
        && hosts_overlap(a, b)
        && (a.method.is_none() || b.method.is_none() || a.method == b.method)
        && matchers_agree(&a.headers, &b.headers)
        && matchers_agree(&a.query_parameters, &b.query_parameters)
}

fn prefixes_overlap(a: &RouteKey, b: &RouteKey) -> bool {
    if a.prefix_regex || b.prefix_regex {
        return true;
    }
    let (p, q) = (a.prefix.as_str(), b.prefix.as_str());
    if a.case_sensitive && b.case_sensitive {
        p.starts_with(q) || q.starts_with(p)
    } else {
        let (p, q) = (p.to_lowercase(), q.to_lowercase());
        p.starts_with(&q) || q.starts_with(&p)
    }
}

fn hosts_overlap(a: &RouteKey, b: &RouteKey) -> bool {
    match (&a.host, &b.host) {
        (Some(x), Some(y)) => {
            a.host_regex || b.host_regex || x.contains('*') || y.contains('*') || x == y
        }
        _ => true,
    }
}

/// No header (or query parameter) both require with different exact values.
fn matchers_agree(a: &BTreeMap<String, HeaderMatch>, b: &BTreeMap<String, HeaderMatch>) -> bool {
    a.iter().all(|(k, v)| match (v, b.get(k)) {
        (HeaderMatch::Exact(x), Some(HeaderMatch::Exact(y))) => x == y,
        _ => true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(prefix: &str) -> RouteKey {
        RouteKey {
            precedence: 0,
            host: None,
            host_regex: false,
            method: None,
            prefix: prefix.into(),
            prefix_regex: false,
            case_sensitive: true,
            headers: BTreeMap::new(),
            regex_headers: BTreeMap::new(),
            query_parameters: BTreeMap::new(),
        }
    }

    #[test]
    fn a_header_canary_on_the_same_prefix_overlaps_the_route() {
        let mut canary = key("/qotm/");
        canary
            .headers
            .insert("x-canary".into(), HeaderMatch::Exact("true".into()));
        assert!(may_overlap(&canary, &key("/qotm/")));
        assert!(may_overlap(&key("/qotm/v2/"), &key("/qotm/")));
        assert!(!may_overlap(&key("/a/"), &key("/b/")));
    }

    #[test]
    fn different_hosts_methods_or_exact_headers_never_overlap() {
        let (mut a, mut b) = (key("/"), key("/"));
        a.host = Some("a.com".into());
        b.host = Some("b.com".into());
        assert!(!may_overlap(&a, &b));
        let (mut a, mut b) = (key("/"), key("/"));
        a.method = Some("GET".into());
        b.method = Some("POST".into());
        assert!(!may_overlap(&a, &b));
        let (mut a, mut b) = (key("/"), key("/"));
        a.headers.insert("x".into(), HeaderMatch::Exact("1".into()));
        b.headers.insert("x".into(), HeaderMatch::Exact("2".into()));
        assert!(!may_overlap(&a, &b));
        b.headers.insert("x".into(), HeaderMatch::Present);
        assert!(may_overlap(&a, &b));
    }

    #[test]
    fn case_insensitive_prefixes_compare_without_case() {
        let mut a = key("/QOTM/");
        a.case_sensitive = false;
        assert!(may_overlap(&a, &key("/qotm/")));
        assert!(!may_overlap(&key("/QOTM/"), &key("/qotm/")));
    }
}
