//! TLS and mTLS on the xDS port: the server's TLS settings, the identity of a client (its
//! certificate's URI and DNS SANs), and which fleets an identity may receive (`--allow`).
//!
//! The decisions are pure functions tested on values (`authorize`, `SanPattern::matches`,
//! `check_plaintext`); the xDS server only hands them the SANs of the peer of a stream, and
//! `serve` only loads the files. Nothing here ever prints what a file holds: a key file's bytes
//! go to rustls and nowhere else, and errors name the flag and the path.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tonic::transport::{Certificate, Identity, ServerTlsConfig};

/// How long a client has to complete the TLS handshake before its connection is dropped, so
/// that half-open handshakes cannot pile up.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the xDS port's security settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file named by a flag cannot be read.
    #[error("cannot read {flag} {}: {source}", path.display())]
    Read {
        flag: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    /// A file holds nothing usable of what its flag needs. The content is never quoted: it may
    /// be a private key.
    #[error("{flag} {}: no {what} in PEM form", path.display())]
    NoPem {
        flag: &'static str,
        path: PathBuf,
        what: &'static str,
    },
    /// rustls refused the files together (say, a key that is not the certificate's).
    #[error("the xDS TLS settings are refused: {0}")]
    Refused(String),
    /// An `--allow` value that is not `FLEET=SAN-PATTERN`.
    #[error("--allow {value:?}: {why}")]
    BadAllow { value: String, why: String },
    /// `--allow` given without client certificates, which would have nothing to match.
    #[error(
        "--allow needs --xds-client-ca: without client certificates there is no identity to \
         allow"
    )]
    AllowWithoutClientCa,
    /// mTLS without a single `--allow`: every Envoy would be refused.
    #[error(
        "--xds-client-ca without --allow would refuse every Envoy: say which certificates may \
         receive which fleet (--allow edge=spiffe://corp/ns/*/sa/edge), or --allow '*=**' to let \
         any DNS name the CA signed receive any fleet"
    )]
    NoAllowRules,
    /// Plaintext xDS on an address other hosts can reach, without `--insecure`.
    #[error(
        "refusing to serve xDS in plaintext on {addr}, which is not a loopback address: anyone \
         who reaches it could read every fleet's routes. Serve TLS (--xds-tls-cert and \
         --xds-tls-key, with --xds-client-ca for mTLS), listen on loopback, or pass --insecure \
         to accept that"
    )]
    PlaintextExposed { addr: SocketAddr },
}

impl TlsError {
    /// tonic's error with its causes (its own `Display` says only "transport error").
    pub fn refused(e: &(dyn std::error::Error + 'static)) -> TlsError {
        let mut text = e.to_string();
        let mut source = e.source();
        while let Some(s) = source {
            text.push_str(": ");
            text.push_str(&s.to_string());
            source = s.source();
        }
        TlsError::Refused(text)
    }
}

// --- plaintext ---

/// Whether plaintext xDS may be served on `addr`. Loopback always may; any other address only
/// with `--insecure`, and then `Ok(true)` says it deserves a warning.
pub fn check_plaintext(addr: SocketAddr, insecure: bool) -> Result<bool, TlsError> {
    if is_loopback(addr) {
        Ok(false)
    } else if insecure {
        Ok(true)
    } else {
        Err(TlsError::PlaintextExposed { addr })
    }
}

/// Only this host can reach `addr` (`127.0.0.0/8`, `::1`, or `::ffff:127.x.y.z`).
pub fn is_loopback(addr: SocketAddr) -> bool {
    addr.ip().to_canonical().is_loopback()
}

// --- the server's files ---

/// The files of `--xds-tls-cert`, `--xds-tls-key` and `--xds-client-ca`. Read once, at start:
/// a renewed certificate is served after a restart.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// The server's certificate chain (PEM), its own certificate first.
    pub cert: PathBuf,
    /// The server's private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// The CA (PEM, one or more certificates) that client certificates must chain to: mTLS.
    pub client_ca: Option<PathBuf>,
}

/// The security of the xDS port, loaded and checked.
pub struct Security {
    /// tonic's TLS settings; `None` for plaintext.
    pub tls: Option<ServerTlsConfig>,
    /// Who may receive which fleet.
    pub access: Access,
    /// The DNS and URI names of the server's own certificate (for the start-up log).
    pub server_names: Vec<San>,
}

impl Security {
    /// Reads and checks the files, and matches the rules to them: `--allow` only with client
    /// certificates, and client certificates only with at least one `--allow`.
    pub fn load(files: Option<&TlsFiles>, allow: &[AllowRule]) -> Result<Security, TlsError> {
        let Some(files) = files else {
            if !allow.is_empty() {
                return Err(TlsError::AllowWithoutClientCa);
            }
            return Ok(Security {
                tls: None,
                access: Access::Open,
                server_names: Vec::new(),
            });
        };
        let cert = read(&files.cert, "--xds-tls-cert")?;
        let chain = pem_certs(&cert, &files.cert, "--xds-tls-cert")?;
        let key = read(&files.key, "--xds-tls-key")?;
        // The PEM parser's own errors may quote a line of the file: they are not shown.
        if PrivateKeyDer::from_pem_slice(&key).is_err() {
            return Err(TlsError::NoPem {
                flag: "--xds-tls-key",
                path: files.key.clone(),
                what: "private key",
            });
        }
        let server_names = sans(&chain[0]).unwrap_or_default();
        let mut tls = ServerTlsConfig::new()
            .identity(Identity::from_pem(cert, key))
            .timeout(HANDSHAKE_TIMEOUT);
        let access = match &files.client_ca {
            None => {
                if !allow.is_empty() {
                    return Err(TlsError::AllowWithoutClientCa);
                }
                Access::Open
            }
            Some(path) => {
                let ca = read(path, "--xds-client-ca")?;
                let anchors = pem_certs(&ca, path, "--xds-client-ca")?;
                // rustls skips a CA certificate it cannot use; refuse the file instead.
                if anchors
                    .iter()
                    .any(|c| webpki::anchor_from_trusted_cert(c).is_err())
                {
                    return Err(TlsError::NoPem {
                        flag: "--xds-client-ca",
                        path: path.clone(),
                        what: "usable CA certificate",
                    });
                }
                if allow.is_empty() {
                    return Err(TlsError::NoAllowRules);
                }
                tls = tls.client_ca_root(Certificate::from_pem(ca));
                Access::Certificates(allow.to_vec().into())
            }
        };
        Ok(Security {
            tls: Some(tls),
            access,
            server_names,
        })
    }
}

fn read(path: &Path, flag: &'static str) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        flag,
        path: path.to_path_buf(),
        source,
    })
}

/// Every certificate of a PEM file; at least one.
fn pem_certs(
    pem: &[u8],
    path: &Path,
    flag: &'static str,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let none = || TlsError::NoPem {
        flag,
        path: path.to_path_buf(),
        what: "certificate",
    };
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| none())?;
    if certs.is_empty() {
        return Err(none());
    }
    Ok(certs)
}

// --- identities ---

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

// --- rules ---

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

impl FromStr for AllowRule {
    type Err = TlsError;

    fn from_str(s: &str) -> Result<Self, TlsError> {
        let bad = |why: &str| TlsError::BadAllow {
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

    #[test]
    fn plaintext_needs_loopback_or_insecure() {
        let addr = |s: &str| s.parse::<SocketAddr>().unwrap();
        for lo in [
            "127.0.0.1:18000",
            "127.3.2.1:1",
            "[::1]:18000",
            "[::ffff:127.0.0.1]:1",
        ] {
            assert!(!check_plaintext(addr(lo), false).unwrap(), "{lo}");
        }
        for open in [
            "0.0.0.0:18000",
            "[::]:18000",
            "10.1.2.3:18000",
            "[::ffff:10.0.0.1]:1",
        ] {
            let e = check_plaintext(addr(open), false).unwrap_err();
            assert!(e.to_string().contains("--insecure"), "{e}");
            assert!(check_plaintext(addr(open), true).unwrap(), "{open}: warn");
        }
    }

    #[test]
    fn rules_need_client_certificates_and_client_certificates_need_rules() {
        assert!(matches!(
            Security::load(None, &[rule("*=**")]),
            Err(TlsError::AllowWithoutClientCa)
        ));
        let open = Security::load(None, &[]).unwrap();
        assert!(open.tls.is_none() && !open.access.is_mutual());
    }

    /// A CA and a server certificate it signed, as PEM files in `dir`: (ca, cert, key).
    fn pki(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca, ca_key);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])
            .unwrap()
            .signed_by(&key, &issuer)
            .unwrap();
        let paths = (
            dir.join("ca.pem"),
            dir.join("cert.pem"),
            dir.join("key.pem"),
        );
        std::fs::write(&paths.0, ca_cert.pem()).unwrap();
        std::fs::write(&paths.1, cert.pem()).unwrap();
        std::fs::write(&paths.2, key.serialize_pem()).unwrap();
        paths
    }

    #[test]
    fn good_files_load_and_mtls_takes_the_rules() {
        let dir = tempfile::tempdir().unwrap();
        let (ca, cert, key) = pki(dir.path());
        let tls = TlsFiles {
            cert,
            key,
            client_ca: None,
        };
        let server = Security::load(Some(&tls), &[]).unwrap();
        assert!(server.tls.is_some() && !server.access.is_mutual());
        assert_eq!(server.server_names, [dns("localhost")]);
        let mtls = TlsFiles {
            client_ca: Some(ca),
            ..tls.clone()
        };
        assert!(matches!(
            Security::load(Some(&mtls), &[]),
            Err(TlsError::NoAllowRules)
        ));
        assert!(
            Security::load(Some(&mtls), &[rule("edge=*.edge.corp")])
                .unwrap()
                .access
                .is_mutual()
        );
        // Rules without client certificates have nothing to match.
        assert!(matches!(
            Security::load(Some(&tls), &[rule("edge=*.edge.corp")]),
            Err(TlsError::AllowWithoutClientCa)
        ));
    }

    #[test]
    fn errors_name_the_file_and_never_quote_it() {
        let dir = tempfile::tempdir().unwrap();
        let (ca, cert, key) = pki(dir.path());
        let files = TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
            client_ca: None,
        };
        // A key file that is not a key: the error names it, and shows none of it.
        std::fs::write(&key, "-----BEGIN PRIVATE KEY-----\nc2VjcmV0\n").unwrap();
        let e = Security::load(Some(&files), &[]).err().unwrap().to_string();
        assert!(e.contains("--xds-tls-key") && e.contains("key.pem"), "{e}");
        assert!(!e.contains("c2VjcmV0") && !e.contains("BEGIN"), "{e}");
        // A certificate file that is not one.
        std::fs::write(&ca, "not a certificate").unwrap();
        let e = Security::load(
            Some(&TlsFiles {
                cert: ca.clone(),
                ..files.clone()
            }),
            &[],
        )
        .err()
        .unwrap()
        .to_string();
        assert!(e.contains("--xds-tls-cert") && e.contains("ca.pem"), "{e}");
        // A file that is not there.
        let missing = TlsFiles {
            cert: dir.path().join("nope.pem"),
            ..files
        };
        let e = Security::load(Some(&missing), &[])
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("cannot read --xds-tls-cert") && e.contains("nope.pem"),
            "{e}"
        );
    }
}
