//! A certificate authority made for a test (rcgen), writing PEM files for TLS and mTLS.

use std::path::{Path, PathBuf};

/// A certificate authority made for a test, writing PEM files into a directory.
pub struct Pki {
    pub dir: PathBuf,
    /// The CA certificate's file.
    pub ca: PathBuf,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

/// A certificate's files: (certificate, private key).
pub type CertFiles = (PathBuf, PathBuf);

impl Pki {
    /// A new CA whose files are named after `name` in `dir`.
    pub fn new(dir: &Path, name: &str) -> Pki {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, format!("{name} test CA"));
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let cert = params.self_signed(&key).unwrap();
        let ca = dir.join(format!("{name}-ca.pem"));
        std::fs::write(&ca, cert.pem()).unwrap();
        Pki {
            dir: dir.to_path_buf(),
            ca,
            issuer: rcgen::Issuer::new(params, key),
        }
    }

    /// A certificate signed by this CA for `sans`: a URI when it holds `://`, an IP address
    /// when it parses as one, a DNS name otherwise. Good for servers and clients alike.
    pub fn issue(&self, name: &str, sans: &[&str]) -> CertFiles {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name.to_string());
        params.subject_alt_names = sans
            .iter()
            .map(|s| {
                if s.contains("://") {
                    rcgen::SanType::URI(s.to_string().try_into().unwrap())
                } else if let Ok(ip) = s.parse() {
                    rcgen::SanType::IpAddress(ip)
                } else {
                    rcgen::SanType::DnsName(s.to_string().try_into().unwrap())
                }
            })
            .collect();
        params.extended_key_usages = vec![
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
            rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let files = (
            self.dir.join(format!("{name}.pem")),
            self.dir.join(format!("{name}.key")),
        );
        std::fs::write(&files.0, cert.pem()).unwrap();
        std::fs::write(&files.1, key.serialize_pem()).unwrap();
        files
    }
}
