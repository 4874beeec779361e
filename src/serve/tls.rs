//! TLS and mTLS on the xDS port: loading the server's certificate, key and client CA, and
//! refusing plaintext beyond loopback. Who a client is and what it may receive is
//! `xds::identity`.
//!
//! `check_plaintext` is a pure function tested on values; `Security::load` only reads the files. Nothing here ever prints what a file holds: a key file's bytes
//! go to rustls and nowhere else, and errors name the flag and the path.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use tonic::transport::{Certificate, Identity, ServerTlsConfig};

use crate::xds::identity::{Access, AllowRule, San, sans};

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

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(s: &str) -> AllowRule {
        s.parse().unwrap()
    }

    fn dns(s: &str) -> San {
        San::Dns(s.into())
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
