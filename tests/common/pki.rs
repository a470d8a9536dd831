//! A throwaway certificate authority and the server certificates it signs, for the TLS tests.

use std::path::PathBuf;

/// A throwaway CA in a temp dir, issuing leaf certificates.
pub struct Pki {
    pub dir: tempfile::TempDir,
    pub ca: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
    pub ca_file: PathBuf,
}

/// A leaf certificate and its key, as files and as PEM text.
pub struct Leaf {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub cert_pem: String,
    pub key_pem: String,
}

impl Pki {
    pub fn new(name: &str) -> Pki {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, format!("{name} test CA"));
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let key = rcgen::KeyPair::generate().expect("CA key");
        let ca = rcgen::CertifiedIssuer::self_signed(params, key).expect("CA certificate");
        let ca_file = dir.path().join("ca.pem");
        std::fs::write(&ca_file, ca.pem()).expect("write ca.pem");
        Pki { dir, ca, ca_file }
    }

    /// A server certificate for `localhost` and `127.0.0.1` (ECDSA P-256 with SHA-256, which
    /// has a `tls-server-end-point` hash for SCRAM channel binding).
    pub fn leaf(&self, name: &str) -> Leaf {
        let mut params =
            rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
                .expect("params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name.to_owned());
        let key = rcgen::KeyPair::generate().expect("leaf key");
        let cert = params.signed_by(&key, &self.ca).expect("leaf certificate");
        let leaf = Leaf {
            cert_file: self.dir.path().join(format!("{name}.crt")),
            key_file: self.dir.path().join(format!("{name}.key")),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        };
        std::fs::write(&leaf.cert_file, &leaf.cert_pem).expect("write cert");
        std::fs::write(&leaf.key_file, &leaf.key_pem).expect("write key");
        leaf
    }
}
