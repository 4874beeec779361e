//! Which `Host` the admin server answers: an IP address, `localhost`, or a name given with
//! `--admin-host`. Pure.
//!
//! The admin server has no authentication. A web page an operator opens can make the browser
//! send requests to it, but not read the answers (the same-origin policy), unless by DNS
//! rebinding: the page's own name is made to resolve to the admin server's address, and the
//! page, still same-origin with itself, reads `/api/*`. Every such request carries the page's
//! name in `Host`, because the browser sends the name it was given. Answering only to IP
//! addresses, to `localhost` (no page elsewhere has that origin) and to the names the operator
//! chose stops it, while kubelet probes and Prometheus scrapes (which use the pod IP) and
//! `kubectl port-forward` (localhost) keep working.
//!
//! A request without a `Host` is answered: HTTP/1.0 has none, and a browser always sends one.

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::admin::AdminError;

/// The host names the admin server answers to besides IP addresses and `localhost`
/// (`--admin-host`), or any name at all (`*`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AllowedHosts {
    /// Lower case, without a trailing dot.
    names: Vec<String>,
    any: bool,
}

impl AllowedHosts {
    /// The names given with `--admin-host`: host names without a port (case and a trailing
    /// dot do not matter), or `*` for any name.
    pub fn new<S: AsRef<str>>(names: &[S]) -> Result<AllowedHosts, AdminError> {
        let mut out = AllowedHosts::default();
        for name in names {
            let given = name.as_ref().trim();
            if given == "*" {
                out.any = true;
                continue;
            }
            let bad = given.is_empty()
                || given.len() > 253
                || !given
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b));
            if bad {
                return Err(AdminError::BadHost(given.to_string()));
            }
            let name = normal(given);
            if !out.names.contains(&name) {
                out.names.push(name);
            }
        }
        Ok(out)
    }

    /// Whether a request with this `Host` (or URI authority) is answered. `None` and an empty
    /// value (no host given) are. Any port is.
    pub fn allows(&self, host: Option<&str>) -> bool {
        let Some(host) = host.map(str::trim).filter(|h| !h.is_empty()) else {
            return true;
        };
        let name = if let Some(rest) = host.strip_prefix('[') {
            // An IPv6 literal, in brackets, perhaps with a port.
            return rest.split_once(']').is_some_and(|(ip, port)| {
                ip.parse::<Ipv6Addr>().is_ok()
                    && (port.is_empty() || port.strip_prefix(':').is_some_and(is_port))
            });
        } else {
            match host.split_once(':') {
                Some((name, port)) if is_port(port) => name,
                Some(_) => return false,
                None => host,
            }
        };
        if name.parse::<Ipv4Addr>().is_ok() {
            return true;
        }
        let name = normal(name);
        name == "localhost" || self.any || self.names.contains(&name)
    }
}

/// A host name as compared: lower case, without the trailing dot of a fully qualified name.
fn normal(name: &str) -> String {
    name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase()
}

/// A port as a `Host` may carry it: up to five digits (none is allowed too, `host:`).
fn is_port(p: &str) -> bool {
    p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_addresses_and_localhost_are_answered_other_names_are_not() {
        let none = AllowedHosts::default();
        for host in [
            "127.0.0.1",
            "127.0.0.1:8877",
            "10.42.0.17:8877",
            "[::1]",
            "[::1]:8877",
            "[fd00::17]:8877",
            "localhost",
            "LocalHost:8877",
            "localhost.:8877",
            "",
        ] {
            assert!(none.allows(Some(host)), "{host:?}");
        }
        assert!(none.allows(None));
        for host in [
            "evil.example",
            "evil.example:8877",
            "127.0.0.1.nip.io",
            "localhost.evil.example",
            "canary-xds",
            // Not an address: an IPv6 literal needs brackets, a port is digits.
            "::1",
            "[::1",
            "[::1]x",
            "[evil.example]",
            "127.0.0.1:x",
            "127.0.0.1:8877:1",
            "localhost:123456",
        ] {
            assert!(!none.allows(Some(host)), "{host:?}");
        }
    }

    #[test]
    fn names_given_are_answered_any_case_any_port() {
        let hosts = AllowedHosts::new(&["canary-xds.ops.svc", "Admin.Example.COM."]).unwrap();
        for host in [
            "canary-xds.ops.svc",
            "canary-xds.ops.svc:8877",
            "CANARY-XDS.ops.svc.",
            "admin.example.com",
            "127.0.0.1",
        ] {
            assert!(hosts.allows(Some(host)), "{host:?}");
        }
        assert!(!hosts.allows(Some("canary-xds")));
        assert!(!hosts.allows(Some("evil.example")));
        let any = AllowedHosts::new(&["*"]).unwrap();
        assert!(any.allows(Some("evil.example:80")));
        // Still not a malformed value.
        assert!(!any.allows(Some("a:b:c")));
    }

    #[test]
    fn a_name_with_a_port_or_a_path_is_refused_at_start() {
        for bad in ["", "host:8877", "http://host", "a b", "[::1]", "host/"] {
            assert!(
                matches!(AllowedHosts::new(&[bad]), Err(AdminError::BadHost(_))),
                "{bad:?}"
            );
        }
    }
}
