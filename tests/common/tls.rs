//! A throwaway CA and a server certificate for 127.0.0.1/localhost, written as PEM files.

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};

pub struct TestCert {
    pub ca_pem: String,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Issues a fresh CA and a server certificate signed by it into `dir` (`{name}.crt/.key`).
pub fn issue(dir: &Path, name: &str) -> TestCert {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("CA key"))
        .expect("CA certificate");
    let key = KeyPair::generate().expect("server key");
    let cert = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
        .expect("server params")
        .signed_by(&key, &ca)
        .expect("server certificate");
    let cert_path = dir.join(format!("{name}.crt"));
    let key_path = dir.join(format!("{name}.key"));
    std::fs::write(&cert_path, cert.pem()).expect("write certificate");
    std::fs::write(&key_path, key.serialize_pem()).expect("write key");
    TestCert {
        ca_pem: ca.pem(),
        cert: cert_path,
        key: key_path,
    }
}

/// A client that trusts only `ca_pem`.
pub fn client(ca_pem: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .tls_certs_only([reqwest::Certificate::from_pem(ca_pem.as_bytes()).expect("CA PEM")])
        .build()
        .expect("TLS client")
}
