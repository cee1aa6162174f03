//! A certificate factory: a CA and leaves for localhost, in good and broken variants.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use time::{Duration, OffsetDateTime};

/// A test certificate authority.
pub struct TestCa {
    name: String,
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
    cert_der: Vec<u8>,
}

/// A generated certificate with its key.
#[derive(Clone, Debug)]
pub struct TestCert {
    /// Leaf certificate, PEM.
    pub cert_pem: String,
    /// Leaf followed by its issuing CA, PEM.
    pub chain_pem: String,
    /// Private key, PKCS#8 PEM.
    pub key_pem: String,
    /// Leaf certificate, DER.
    pub cert_der: Vec<u8>,
    /// Private key, PKCS#8 DER.
    pub key_der: Vec<u8>,
}

/// What kind of leaf to make.
#[derive(Clone, Debug)]
pub struct LeafSpec {
    /// Subject common name.
    pub common_name: String,
    /// DNS names and IP addresses (IPs are recognised by parsing).
    pub names: Vec<String>,
    /// Validity start relative to now.
    pub not_before: Duration,
    /// Validity end relative to now.
    pub not_after: Duration,
    /// Server (true) or client (false) certificate.
    pub server: bool,
}

impl LeafSpec {
    /// A server certificate for localhost, 127.0.0.1 and ::1, valid from an hour ago for a
    /// day.
    pub fn localhost() -> Self {
        LeafSpec {
            common_name: "localhost".into(),
            names: vec!["localhost".into(), "127.0.0.1".into(), "::1".into()],
            not_before: Duration::hours(-1),
            not_after: Duration::days(1),
            server: true,
        }
    }
}

impl TestCa {
    /// A new self-signed CA named `name`.
    pub fn new(name: &str) -> Self {
        let key = KeyPair::generate().expect("generate CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.distinguished_name.push(DnType::CommonName, name);
        params
            .distinguished_name
            .push(DnType::OrganizationName, "hoop test");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::days(1);
        params.not_after = now + Duration::days(3650);
        let cert = params.self_signed(&key).expect("self-sign CA");
        TestCa {
            name: name.to_owned(),
            cert_pem: cert.pem(),
            cert_der: cert.der().to_vec(),
            issuer: Issuer::new(params, key),
        }
    }

    /// The CA's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA certificate, DER.
    pub fn cert_der(&self) -> CertificateDer<'static> {
        CertificateDer::from(self.cert_der.clone())
    }

    /// Writes the CA certificate to `dir/{file}` and returns the path.
    pub fn write_cert(&self, dir: &Path, file: &str) -> PathBuf {
        let p = dir.join(file);
        std::fs::write(&p, &self.cert_pem).expect("write CA cert");
        p
    }

    /// Issues a leaf as `spec` says.
    pub fn issue(&self, spec: &LeafSpec) -> TestCert {
        let key = KeyPair::generate().expect("generate leaf key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("leaf params");
        params
            .distinguished_name
            .push(DnType::CommonName, spec.common_name.as_str());
        for n in &spec.names {
            let san = match n.parse::<std::net::IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName(n.as_str().try_into().expect("DNS name")),
            };
            params.subject_alt_names.push(san);
        }
        let now = OffsetDateTime::now_utc();
        params.not_before = now + spec.not_before;
        params.not_after = now + spec.not_after;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![if spec.server {
            ExtendedKeyUsagePurpose::ServerAuth
        } else {
            ExtendedKeyUsagePurpose::ClientAuth
        }];
        let cert = params.signed_by(&key, &self.issuer).expect("sign leaf");
        let cert_pem = cert.pem();
        TestCert {
            chain_pem: format!("{cert_pem}{}", self.cert_pem),
            cert_pem,
            key_pem: key.serialize_pem(),
            cert_der: cert.der().to_vec(),
            key_der: key.serialize_der(),
        }
    }

    /// A good server certificate for localhost / 127.0.0.1 / ::1.
    pub fn server(&self) -> TestCert {
        self.issue(&LeafSpec::localhost())
    }

    /// A server certificate for localhost that expired an hour ago.
    pub fn expired_server(&self) -> TestCert {
        self.issue(&LeafSpec {
            not_before: Duration::days(-10),
            not_after: Duration::hours(-1),
            ..LeafSpec::localhost()
        })
    }

    /// A server certificate for localhost valid only from tomorrow.
    pub fn not_yet_valid_server(&self) -> TestCert {
        self.issue(&LeafSpec {
            not_before: Duration::days(1),
            not_after: Duration::days(10),
            ..LeafSpec::localhost()
        })
    }

    /// A server certificate for another host (`wrong.example.test`, `10.255.255.1`).
    pub fn wrong_host_server(&self) -> TestCert {
        self.issue(&LeafSpec {
            common_name: "wrong.example.test".into(),
            names: vec!["wrong.example.test".into(), "10.255.255.1".into()],
            ..LeafSpec::localhost()
        })
    }

    /// A client certificate with common name `cn` (and `cn` as a DNS SAN when it is a
    /// valid DNS name, plus an e-mail-like URI is not added).
    pub fn client(&self, cn: &str) -> TestCert {
        self.issue(&LeafSpec {
            common_name: cn.into(),
            names: Vec::new(),
            server: false,
            ..LeafSpec::localhost()
        })
    }
}

impl TestCert {
    /// Writes `{stem}.crt` (the chain: leaf then CA) and `{stem}.key` into `dir`.
    pub fn write(&self, dir: &Path, stem: &str) -> (PathBuf, PathBuf) {
        let c = dir.join(format!("{stem}.crt"));
        let k = dir.join(format!("{stem}.key"));
        std::fs::write(&c, &self.chain_pem).expect("write cert");
        std::fs::write(&k, &self.key_pem).expect("write key");
        (c, k)
    }

    /// The leaf, DER.
    pub fn cert(&self) -> CertificateDer<'static> {
        CertificateDer::from(self.cert_der.clone())
    }

    /// The key, DER.
    pub fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn makes_pem() {
        let ca = TestCa::new("t");
        let s = ca.server();
        assert!(s.cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(s.chain_pem.contains(ca.cert_pem()));
        assert!(s.key_pem.contains("PRIVATE KEY"));
    }
}
