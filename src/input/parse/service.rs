//! The `service` field: a host with an optional scheme and port, as Ambassador reads it, and
//! only hosts Envoy can resolve or connect to.

use super::scalars::Quoted;
use super::scalars::quote;
use crate::model::mapping::{Scheme, Service};

/// `[scheme://]host[:port]`.
pub fn parse_service(raw: &str) -> Result<Service, String> {
    // What messages show of the service (a huge one is cut short), quoted only for a message.
    let shown = Quoted(raw);
    let raw_trimmed = raw.trim();
    let (scheme, rest) = match raw_trimmed.split_once("://") {
        Some((s, rest)) => match s.to_ascii_lowercase().as_str() {
            "http" => (Scheme::Http, rest),
            "https" => (Scheme::Https, rest),
            _ => {
                return Err(format!(
                    "unknown scheme {} in service {shown}; use http:// or https://",
                    quote(s)
                ));
            }
        },
        None => (Scheme::Http, raw_trimmed),
    };
    if let Some(i) = rest.find(['/', '?', '#']) {
        return Err(format!(
            "service {shown} has a path ({}); a service is [scheme://]host[:port], and a \
             path in it would be dropped (use rewrite for paths)",
            quote(&rest[i..])
        ));
    }
    if rest.contains('@') {
        return Err(format!("service {shown} must not contain user information"));
    }
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        let (host, after) = v6
            .split_once(']')
            .ok_or_else(|| format!("service {shown} has an unclosed ["))?;
        if host.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!(
                "{} in service {shown} is not an IPv6 address",
                quote(host)
            ));
        }
        match after {
            "" => (host, None),
            p => match p.strip_prefix(':') {
                Some(port) => (host, Some(port)),
                None => {
                    return Err(format!(
                        "unexpected {} after ] in service {shown}",
                        quote(p)
                    ));
                }
            },
        }
    } else {
        match rest.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (rest, None),
        }
    };
    let port = match port {
        None => scheme.default_port(),
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 && p.bytes().all(|b| b.is_ascii_digit()) => n,
            _ => {
                return Err(format!(
                    "bad port {} in service {shown}; use 1 to 65535",
                    quote(p)
                ));
            }
        },
    };
    if host.is_empty() {
        return Err(format!("service {shown} has no host"));
    }
    let is_ipv6 = host.parse::<std::net::Ipv6Addr>().is_ok();
    if !is_ipv6 && !is_dns_name(host) {
        return Err(format!(
            "{} in service {shown} is not a host name or IP address",
            quote(host)
        ));
    }
    Ok(Service {
        scheme,
        host: host.to_ascii_lowercase(),
        port,
        raw: raw.to_string(),
    })
}

fn is_dns_name(host: &str) -> bool {
    host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// A host to match: a DNS name, optionally with one `*` at its start or end (Envoy's
/// virtual-host wildcards), and no port.
pub(super) fn check_host(host: &str) -> Result<(), String> {
    if host == "*" {
        return Ok(());
    }
    let shown = quote(host);
    let stars = host.matches('*').count();
    let bare = host.trim_start_matches('*').trim_end_matches('*');
    if stars > 1 || (stars == 1 && !(host.starts_with('*') || host.ends_with('*'))) {
        return Err(format!(
            "host {shown}: a wildcard may only stand at the start or the end (*.example.com)"
        ));
    }
    if let Some((_, port)) = bare.rsplit_once(':')
        && port.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(format!(
            "host {shown} must not include a port: canary-xds matches hosts with any port"
        ));
    }
    // A DNS name: at most 253 characters, in labels of at most 63.
    if bare.len() > 253 || bare.split('.').any(|label| label.len() > 63) {
        return Err(format!("host {shown} is longer than a host name can be"));
    }
    let ok = !bare.is_empty()
        && bare
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(format!("host {shown} is not a host name"))
    }
}
