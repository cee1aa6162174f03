//! Loading certificates, keys and trust stores from PEM files or PEM text.
//!
//! Error messages name the file (or "inline PEM") and the parse error; they never contain
//! key material.

use std::fmt;
use std::path::{Path, PathBuf};

use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::TlsError;

/// Where PEM data comes from: a file (read again on every load) or text held in memory.
///
/// The `Debug` output never shows the PEM text, so a source holding a private key can be
/// logged safely.
///
/// ```
/// use hoop_core::tls::PemSource;
/// let src = PemSource::Pem(b"secret".to_vec());
/// assert_eq!(format!("{src:?}"), "Pem(<6 bytes>)");
/// ```
#[derive(Clone, PartialEq, Eq)]
pub enum PemSource {
    /// A PEM file.
    File(PathBuf),
    /// PEM text.
    Pem(Vec<u8>),
}

impl fmt::Debug for PemSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PemSource::File(p) => f.debug_tuple("File").field(p).finish(),
            PemSource::Pem(b) => write!(f, "Pem(<{} bytes>)", b.len()),
        }
    }
}

impl PemSource {
    fn label(&self) -> String {
        match self {
            PemSource::File(p) => p.display().to_string(),
            PemSource::Pem(_) => String::from("inline PEM"),
        }
    }
}

fn config_err(what: &str, e: impl fmt::Display) -> TlsError {
    TlsError::Config(format!("{what}: {e}"))
}

/// Reads every certificate of `src` (in order). Fails when there is none.
pub(crate) fn load_certs(src: &PemSource) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let label = src.label();
    let certs = match src {
        PemSource::File(p) => CertificateDer::pem_file_iter(p)
            .map_err(|e| config_err(&label, e))?
            .collect::<Result<Vec<_>, _>>(),
        PemSource::Pem(b) => CertificateDer::pem_slice_iter(b).collect::<Result<Vec<_>, _>>(),
    }
    .map_err(|e| config_err(&label, e))?;
    if certs.is_empty() {
        return Err(config_err(&label, "no CERTIFICATE section"));
    }
    Ok(certs)
}

/// Reads the first private key (PKCS#8, PKCS#1 or SEC1) of `src`.
pub(crate) fn load_key(src: &PemSource) -> Result<PrivateKeyDer<'static>, TlsError> {
    let label = src.label();
    match src {
        PemSource::File(p) => PrivateKeyDer::from_pem_file(p),
        PemSource::Pem(b) => PrivateKeyDer::from_pem_slice(b),
    }
    // The pem errors describe structure (missing section, bad base64 offset), never
    // the key bytes themselves.
    .map_err(|e| config_err(&label, e))
}

/// Builds a trust store from certificates; every one must be a usable trust anchor.
pub(crate) fn root_store(
    certs: &[CertificateDer<'static>],
    label: &str,
) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for c in certs {
        roots.add(c.clone()).map_err(|e| config_err(label, e))?;
    }
    if roots.is_empty() {
        return Err(config_err(label, "no CA certificate"));
    }
    Ok(roots)
}

/// [`load_certs`] of a file.
pub(crate) fn load_cert_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    load_certs(&PemSource::File(path.to_owned()))
}

/// A short description of a leaf certificate for logs: subject, serial and validity.
/// Contains only public data.
pub(crate) fn describe_leaf(der: &[u8]) -> String {
    match x509_parser::parse_x509_certificate(der) {
        Ok((_, cert)) => format!(
            "subject=\"{}\" serial={} not_after={}",
            cert.subject(),
            cert.raw_serial_as_string(),
            cert.validity().not_after
        ),
        Err(_) => String::from("unparsable certificate"),
    }
}

/// Whether `der` is outside its validity period right now (`None` when unparsable).
pub(crate) fn outside_validity(der: &[u8]) -> Option<bool> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    Some(!cert.validity().is_valid())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_chain_key_and_roots() {
        let ca = hoop_testkit::TestCa::new("pem-test");
        let leaf = ca.server();
        let chain = load_certs(&PemSource::Pem(leaf.chain_pem.clone().into_bytes())).unwrap();
        assert_eq!(chain.len(), 2);
        assert_eq!(chain[0].as_ref(), leaf.cert_der.as_slice());
        let key = load_key(&PemSource::Pem(leaf.key_pem.clone().into_bytes())).unwrap();
        assert_eq!(key.secret_der(), leaf.key_der.as_slice());
        let roots = root_store(&[ca.cert_der()], "ca").unwrap();
        assert_eq!(roots.len(), 1);
        assert!(describe_leaf(&leaf.cert_der).contains("CN=localhost"));
        assert_eq!(outside_validity(&leaf.cert_der), Some(false));
        assert_eq!(outside_validity(&ca.expired_server().cert_der), Some(true));
    }

    #[test]
    fn empty_or_missing_is_an_error() {
        assert!(matches!(
            load_certs(&PemSource::Pem(b"nothing here".to_vec())),
            Err(TlsError::Config(_))
        ));
        assert!(load_key(&PemSource::Pem(Vec::new())).is_err());
        let missing = load_cert_file(Path::new("/nonexistent/hoop/cert.pem")).unwrap_err();
        assert!(missing.to_string().contains("/nonexistent/hoop/cert.pem"));
        assert!(root_store(&[], "x").is_err());
    }

    #[test]
    fn key_error_does_not_echo_pem() {
        let bogus =
            b"-----BEGIN PRIVATE KEY-----\nc2VjcmV0c2VjcmV0!!!\n-----END PRIVATE KEY-----\n";
        let e = load_key(&PemSource::Pem(bogus.to_vec())).unwrap_err();
        assert!(!e.to_string().contains("c2VjcmV0c2VjcmV0"));
    }
}
