//! Route matches: path prefix or regex, method, headers, query parameters and authority, as
//! Envoy's `RouteMatch`.

use envoy_types::pb::envoy::config::route::v3::header_matcher::HeaderMatchSpecifier;
use envoy_types::pb::envoy::config::route::v3::query_parameter_matcher::QueryParameterMatchSpecifier;
use envoy_types::pb::envoy::config::route::v3::route_match::PathSpecifier;
use envoy_types::pb::envoy::config::route::v3::{HeaderMatcher, QueryParameterMatcher, RouteMatch};
use envoy_types::pb::envoy::{
    r#type::matcher::v3::string_matcher::MatchPattern,
    r#type::matcher::v3::{RegexMatcher, StringMatcher},
};
use envoy_types::pb::google::protobuf::BoolValue;

use crate::model::mapping::{HeaderMatch, RouteKey};

/// What a route matches. The host is matched by the virtual host, except for `host_regex`.
pub(super) fn route_match(key: &RouteKey) -> RouteMatch {
    let path = if key.prefix_regex {
        // Ambassador's prefix_regex matches the whole path, as safe_regex does.
        PathSpecifier::SafeRegex(regex(&key.prefix))
    } else {
        PathSpecifier::Prefix(key.prefix.clone())
    };
    let mut headers = Vec::new();
    if let (Some(host), true) = (&key.host, key.host_regex) {
        headers.push(header_matcher(":authority", string_regex(host)));
    }
    if let Some(method) = &key.method {
        headers.push(header_matcher(":method", string_exact(method)));
    }
    for (name, wanted) in &key.headers {
        headers.push(match wanted {
            HeaderMatch::Exact(value) => header_matcher(name, string_exact(value)),
            HeaderMatch::Present => HeaderMatcher {
                name: name.clone(),
                header_match_specifier: Some(HeaderMatchSpecifier::PresentMatch(true)),
                ..Default::default()
            },
        });
    }
    for (name, pattern) in &key.regex_headers {
        headers.push(header_matcher(name, string_regex(pattern)));
    }
    let query_parameters = key
        .query_parameters
        .iter()
        .map(|(name, wanted)| QueryParameterMatcher {
            name: name.clone(),
            query_parameter_match_specifier: Some(match wanted {
                HeaderMatch::Exact(value) => {
                    QueryParameterMatchSpecifier::StringMatch(string_exact(value))
                }
                HeaderMatch::Present => QueryParameterMatchSpecifier::PresentMatch(true),
            }),
        })
        .collect();
    RouteMatch {
        path_specifier: Some(path),
        // Envoy's default is case-sensitive; only say otherwise.
        case_sensitive: (!key.case_sensitive).then_some(BoolValue { value: false }),
        headers,
        query_parameters,
        ..Default::default()
    }
}

fn header_matcher(name: &str, matcher: StringMatcher) -> HeaderMatcher {
    HeaderMatcher {
        name: name.into(),
        header_match_specifier: Some(HeaderMatchSpecifier::StringMatch(matcher)),
        ..Default::default()
    }
}

pub(super) fn string_exact(value: &str) -> StringMatcher {
    StringMatcher {
        match_pattern: Some(MatchPattern::Exact(value.into())),
        ..Default::default()
    }
}

pub(super) fn string_regex(pattern: &str) -> StringMatcher {
    StringMatcher {
        match_pattern: Some(MatchPattern::SafeRegex(regex(pattern))),
        ..Default::default()
    }
}

/// A regex for Envoy's default engine (RE2); `parse` already checked Envoy will accept it.
pub(super) fn regex(pattern: &str) -> RegexMatcher {
    RegexMatcher {
        regex: pattern.into(),
        engine_type: None,
    }
}
