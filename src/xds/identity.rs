//! Who a client is and which fleets it may receive: its certificate's URI and DNS SANs, and the
//! `--allow` rules they are matched against.
//!
//! The decisions are pure functions tested on values (`authorize`, `SanPattern::matches`); the
//! server hands them the SANs of a stream's peer.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use rustls_pki_types::CertificateDer;

/// A name a certificate is issued for, from its subject alternative names.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum San {
    /// A DNS name, lower-case.
    Dns(String),
    /// A URI, such as a SPIFFE id (`spiffe://corp/ns/prod/sa/edge`).
    Uri(String),
}

impl fmt::Display for San {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            San::Dns(name) => write!(f, "DNS:{name}"),
            San::Uri(uri) => write!(f, "URI:{uri}"),
        }
    }
}

/// The SANs as one list for a log line: `URI:spiffe://a, DNS:b`, or `none`.
pub fn san_list(sans: &[San]) -> String {
    if sans.is_empty() {
        return "none".into();
    }
    sans.iter()
        .map(San::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The URI and DNS SANs of a certificate (DER): what an identity is. The certificate was
/// verified by rustls against the client CA before this is asked; this only reads it.
pub fn sans(cert: &CertificateDer<'_>) -> Result<Vec<San>, String> {
    let cert = webpki::EndEntityCert::try_from(cert).map_err(|e| e.to_string())?;
    let mut out: Vec<San> = cert
        .valid_uri_names()
        .map(|u| San::Uri(u.to_string()))
        .chain(
            cert.valid_dns_names()
                .map(|d| San::Dns(d.to_ascii_lowercase())),
        )
        .collect();
    out.sort();
    out.dedup();
    Ok(out)
}

/// A glob over one kind of SAN.
///
/// A pattern with a `:` is matched against URI SANs (a URI always has a scheme, and a DNS name
/// never holds a `:`), one without against DNS SANs, so a pattern meant for one kind can never
/// match a name of the other. `*` matches any run of characters within one segment: up to the
/// next `/` in a URI, the next `.` in a DNS name. `**` matches any run at all. Every other
/// character is itself; DNS names compare case-insensitively, URIs exactly.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SanPattern {
    text: String,
    uri: bool,
    tokens: Vec<Token>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Token {
    Char(char),
    /// `*`: within a segment.
    Star,
    /// `**`: anything.
    Any,
}

impl FromStr for SanPattern {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s.is_empty() {
            return Err("the SAN pattern is empty".into());
        }
        if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err("a SAN pattern has no spaces or control characters".into());
        }
        let uri = s.contains(':');
        let text = if uri {
            s.to_string()
        } else {
            s.to_ascii_lowercase()
        };
        let mut tokens = Vec::new();
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            if c != '*' {
                tokens.push(Token::Char(c));
                continue;
            }
            let mut run = 1;
            while chars.next_if_eq(&'*').is_some() {
                run += 1;
            }
            tokens.push(if run == 1 { Token::Star } else { Token::Any });
        }
        Ok(SanPattern { text, uri, tokens })
    }
}

impl fmt::Display for SanPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl SanPattern {
    /// Whether `san` matches: a URI pattern only URIs, a DNS pattern only DNS names.
    pub fn matches(&self, san: &San) -> bool {
        match san {
            San::Uri(uri) if self.uri => glob(&self.tokens, uri, '/'),
            San::Dns(name) if !self.uri => glob(&self.tokens, &name.to_ascii_lowercase(), '.'),
            _ => false,
        }
    }
}

/// Glob matching in time proportional to pattern length times text length (no backtracking):
/// `reach[j]` says whether the tokens so far can match the first `j` characters.
fn glob(tokens: &[Token], text: &str, separator: char) -> bool {
    let text: Vec<char> = text.chars().collect();
    let n = text.len();
    let mut reach = vec![false; n + 1];
    reach[0] = true;
    for token in tokens {
        let mut next = vec![false; n + 1];
        match *token {
            Token::Char(c) => {
                for j in 0..n {
                    next[j + 1] = reach[j] && text[j] == c;
                }
            }
            Token::Star => {
                next[0] = reach[0];
                for j in 1..=n {
                    next[j] = reach[j] || (next[j - 1] && text[j - 1] != separator);
                }
            }
            Token::Any => {
                next[0] = reach[0];
                for j in 1..=n {
                    next[j] = reach[j] || next[j - 1];
                }
            }
        }
        if !next.contains(&true) {
            return false;
        }
        reach = next;
    }
    reach[n]
}

/// One `--allow FLEET=SAN-PATTERN`: certificates with a SAN that matches may receive the fleet
/// (`*`: every fleet).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AllowRule {
    /// The fleet (`node.cluster`), or `None` for every fleet (`*`).
    pub fleet: Option<String>,
    pub pattern: SanPattern,
}

/// An `--allow` value that is not `FLEET=SAN-PATTERN`.
#[derive(Debug, thiserror::Error)]
#[error("--allow {value:?}: {why}")]
pub struct BadAllowRule {
    pub value: String,
    pub why: String,
}

impl FromStr for AllowRule {
    type Err = BadAllowRule;

    fn from_str(s: &str) -> Result<Self, BadAllowRule> {
        let bad = |why: &str| BadAllowRule {
            value: s.to_string(),
            why: why.to_string(),
        };
        let (fleet, pattern) = s.split_once('=').ok_or_else(|| {
            bad("expected FLEET=SAN-PATTERN, such as edge=spiffe://corp/ns/*/sa/edge")
        })?;
        let fleet = fleet.trim();
        if fleet.is_empty() {
            return Err(bad("the fleet is empty (use * for every fleet)"));
        }
        let pattern = pattern.trim().parse().map_err(|why: String| bad(&why))?;
        Ok(AllowRule {
            fleet: (fleet != "*").then(|| fleet.to_string()),
            pattern,
        })
    }
}

impl fmt::Display for AllowRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}={}",
            self.fleet.as_deref().unwrap_or("*"),
            self.pattern
        )
    }
}

/// Why a stream was refused its fleet.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    /// No `--allow` names the fleet: a fleet nobody was allowed is nobody's.
    #[error("no --allow rule names fleet {fleet:?}")]
    NoRule { fleet: String },
    /// Rules name the fleet, and none matches any SAN of the certificate.
    #[error("no SAN of the certificate matches --allow for fleet {fleet:?} ({patterns})")]
    NoMatch { fleet: String, patterns: String },
    /// No verified client certificate on the connection (the server is not doing mTLS there).
    #[error("the client presented no verified certificate")]
    NoCertificate,
}

/// Whether a client whose certificate carries `sans` may receive `fleet`: some rule for that
/// fleet (or for every fleet) matches one of its SANs. A fleet no rule names is refused.
pub fn authorize(fleet: &str, sans: &[San], rules: &[AllowRule]) -> Result<(), Denied> {
    let for_fleet: Vec<&AllowRule> = rules
        .iter()
        .filter(|r| r.fleet.as_deref().is_none_or(|f| f == fleet))
        .collect();
    if for_fleet.is_empty() {
        return Err(Denied::NoRule {
            fleet: fleet.into(),
        });
    }
    if for_fleet
        .iter()
        .any(|r| sans.iter().any(|s| r.pattern.matches(s)))
    {
        return Ok(());
    }
    Err(Denied::NoMatch {
        fleet: fleet.into(),
        patterns: for_fleet
            .iter()
            .map(|r| r.pattern.to_string())
            .collect::<Vec<_>>()
            .join(", "),
    })
}

/// Who may receive which fleet over the xDS port.
#[derive(Clone, Debug, Default)]
pub enum Access {
    /// Any client that reaches the port may receive any fleet: plaintext, or TLS without
    /// client certificates.
    #[default]
    Open,
    /// mTLS: a fleet goes only to a certificate that an `--allow` rule allows for it.
    Certificates(Arc<[AllowRule]>),
}

impl Access {
    /// Whether the peer of a stream may receive `fleet`; `sans` is `None` when the connection
    /// carries no verified client certificate.
    pub fn check(&self, fleet: &str, sans: Option<&[San]>) -> Result<(), Denied> {
        match self {
            Access::Open => Ok(()),
            Access::Certificates(rules) => match sans {
                Some(sans) => authorize(fleet, sans, rules),
                None => Err(Denied::NoCertificate),
            },
        }
    }

    /// Whether client certificates decide (mTLS).
    pub fn is_mutual(&self) -> bool {
        matches!(self, Access::Certificates(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> SanPattern {
        s.parse().unwrap()
    }

    fn uri(s: &str) -> San {
        San::Uri(s.into())
    }

    fn dns(s: &str) -> San {
        San::Dns(s.into())
    }

    fn rule(s: &str) -> AllowRule {
        s.parse().unwrap()
    }

    #[test]
    fn a_star_matches_within_one_segment_of_a_uri() {
        let edge = p("spiffe://corp/ns/*/sa/edge");
        assert!(edge.matches(&uri("spiffe://corp/ns/prod/sa/edge")));
        assert!(edge.matches(&uri("spiffe://corp/ns/my.team/sa/edge")));
        assert!(!edge.matches(&uri("spiffe://corp/ns/a/b/sa/edge")));
        assert!(!edge.matches(&uri("spiffe://corp/ns/prod/sa/edge2")));
        assert!(!edge.matches(&uri("spiffe://corp/ns/prod/sa/edg")));
        assert!(!edge.matches(&uri("spiffe://other/ns/prod/sa/edge")));
        // URIs compare exactly.
        assert!(!edge.matches(&uri("SPIFFE://corp/ns/prod/sa/edge")));
        // Within a segment, a star can stand anywhere.
        assert!(p("spiffe://corp/sa/edge-*").matches(&uri("spiffe://corp/sa/edge-7")));
        assert!(!p("spiffe://corp/sa/edge-*").matches(&uri("spiffe://corp/sa/edge-7/x")));
    }

    #[test]
    fn a_double_star_matches_across_segments() {
        let corp = p("spiffe://corp/**");
        assert!(corp.matches(&uri("spiffe://corp/ns/a/sa/b")));
        assert!(corp.matches(&uri("spiffe://corp/")));
        assert!(!corp.matches(&uri("spiffe://corporate/ns/a")));
        assert!(p("spiffe://corp/**/sa/edge").matches(&uri("spiffe://corp/ns/a/b/sa/edge")));
        // Three stars are two.
        assert_eq!(p("a:***").tokens, p("a:**").tokens);
    }

    #[test]
    fn dns_patterns_match_dns_names_label_by_label_ignoring_case() {
        let edge = p("*.Edge.Corp");
        assert!(edge.matches(&dns("envoy-1.edge.corp")));
        assert!(edge.matches(&dns("ENVOY-1.EDGE.CORP")));
        assert!(!edge.matches(&dns("a.b.edge.corp")));
        assert!(!edge.matches(&dns("edge.corp")));
        assert!(!edge.matches(&dns("envoy-1.edge.corp.evil")));
        assert!(p("**.edge.corp").matches(&dns("a.b.edge.corp")));
        assert!(p("envoy-1.edge.corp").matches(&dns("envoy-1.edge.corp")));
        assert!(!p("envoy-1.edge.corp").matches(&dns("envoy-10.edge.corp")));
    }

    #[test]
    fn a_pattern_never_matches_the_other_kind_of_san() {
        // `*.corp` is a DNS pattern: a URI that would fit it as text does not match.
        assert!(!p("*.corp").matches(&uri("urn:x.corp")));
        assert!(!p("**").matches(&uri("spiffe://corp/a")));
        assert!(p("**").matches(&dns("anything.at.all")));
        assert!(!p("spiffe://**").matches(&dns("spiffe")));
    }

    #[test]
    fn matching_takes_time_proportional_to_the_input() {
        // A pattern that makes a backtracking matcher explode.
        let pattern = p(&format!("x:{}b", "**a".repeat(30)));
        let text = uri(&format!("x:{}", "a".repeat(2000)));
        let started = std::time::Instant::now();
        assert!(!pattern.matches(&text));
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
    }

    #[test]
    fn bad_patterns_and_rules_are_refused() {
        assert!("".parse::<SanPattern>().is_err());
        assert!("a b".parse::<SanPattern>().is_err());
        assert!("a\n".parse::<SanPattern>().is_err());
        for bad in ["edge", "=spiffe://x", "edge=", " =x"] {
            assert!(bad.parse::<AllowRule>().is_err(), "{bad}");
        }
        let r = rule("edge=spiffe://corp/ns/*/sa/edge");
        assert_eq!(r.fleet.as_deref(), Some("edge"));
        assert_eq!(r.to_string(), "edge=spiffe://corp/ns/*/sa/edge");
        assert_eq!(rule("*=**").fleet, None);
        // The first `=` splits: a pattern may hold more.
        assert_eq!(rule("a=urn:x=y").pattern.to_string(), "urn:x=y");
    }

    #[test]
    fn a_fleet_goes_only_to_a_certificate_a_rule_allows_for_it() {
        let rules = [
            rule("edge=spiffe://corp/ns/*/sa/edge"),
            rule("edge=*.edge.corp"),
            rule("internal=spiffe://corp/ns/internal/sa/*"),
        ];
        let edge_sa = [uri("spiffe://corp/ns/prod/sa/edge")];
        assert_eq!(authorize("edge", &edge_sa, &rules), Ok(()));
        assert_eq!(
            authorize("edge", &[dns("e1.edge.corp")], &rules),
            Ok(()),
            "any rule for the fleet will do"
        );
        // A stolen node id claims fleet `internal` with the edge certificate: refused.
        assert_eq!(
            authorize("internal", &edge_sa, &rules),
            Err(Denied::NoMatch {
                fleet: "internal".into(),
                patterns: "spiffe://corp/ns/internal/sa/*".into()
            })
        );
        // A fleet no rule names is nobody's.
        assert_eq!(
            authorize("default", &edge_sa, &rules),
            Err(Denied::NoRule {
                fleet: "default".into()
            })
        );
        // A certificate without SANs matches nothing.
        assert!(matches!(
            authorize("edge", &[], &rules),
            Err(Denied::NoMatch { .. })
        ));
    }

    #[test]
    fn a_star_fleet_covers_every_fleet() {
        let rules = [rule("*=spiffe://corp/ns/ops/sa/*")];
        let ops = [uri("spiffe://corp/ns/ops/sa/debug")];
        assert_eq!(authorize("edge", &ops, &rules), Ok(()));
        assert_eq!(authorize("default", &ops, &rules), Ok(()));
        assert!(authorize("edge", &[uri("spiffe://corp/ns/prod/sa/edge")], &rules).is_err());
    }

    #[test]
    fn access_is_open_without_client_certificates() {
        assert_eq!(Access::Open.check("anything", None), Ok(()));
        let mtls = Access::Certificates(vec![rule("*=**")].into());
        assert_eq!(mtls.check("edge", None), Err(Denied::NoCertificate));
        assert_eq!(mtls.check("edge", Some(&[dns("a.b")])), Ok(()));
    }
}
