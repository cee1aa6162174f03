//! The upstream certificate verifier: rustls' WebPKI verification, then SPKI pins.
//!
//! Verification is never replaced: [`PinningVerifier`] first asks
//! [`WebPkiServerVerifier`] (chain to a trusted root, validity period, name or IP,
//! extended key usage), and only when that succeeds checks the pins. Handshake
//! signatures are verified by the WebPKI verifier too.
//!
//! A pin matches when it is the SHA-256 of the SubjectPublicKeyInfo of a certificate on a
//! *verified* path from the leaf to a trust anchor (leaf, intermediates, anchor). A
//! certificate that is merely appended to the presented chain, but not part of a path
//! that verifies, cannot satisfy a pin.

use std::cell::Cell;
use std::fmt;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, RootCertStore};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use super::TlsError;
use super::pin::spki_pin_of;

/// The error a [`PinningVerifier`] returns (inside `CertificateError::Other`) when no
/// certificate of a verified path matches a pin; recognised by the refusal mapping.
#[derive(Debug)]
pub(crate) struct PinMismatch;

impl fmt::Display for PinMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("no certificate of the verified chain matches a configured SPKI pin")
    }
}

impl std::error::Error for PinMismatch {}

/// WebPKI verification plus optional SPKI pins.
pub(crate) struct PinningVerifier {
    inner: Arc<WebPkiServerVerifier>,
    roots: Arc<RootCertStore>,
    pins: Box<[[u8; 32]]>,
    algs: WebPkiSupportedAlgorithms,
}

impl fmt::Debug for PinningVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PinningVerifier")
            .field("roots", &self.roots.len())
            .field("pins", &self.pins.len())
            .finish_non_exhaustive()
    }
}

impl PinningVerifier {
    /// A verifier trusting `roots`, requiring one of `pins` when there are any.
    pub(crate) fn new(
        roots: Arc<RootCertStore>,
        pins: &[[u8; 32]],
        provider: Arc<CryptoProvider>,
    ) -> Result<Self, TlsError> {
        let algs = provider.signature_verification_algorithms;
        let inner = WebPkiServerVerifier::builder_with_provider(roots.clone(), provider)
            .build()
            .map_err(|e| TlsError::Config(format!("upstream verifier: {e}")))?;
        Ok(PinningVerifier {
            inner,
            roots,
            pins: pins.into(),
            algs,
        })
    }

    /// Looks for a verified path containing a pinned key. Path building is repeated (the
    /// WebPKI verifier does not expose the path it found), with a callback that rejects
    /// paths without a pin so that alternative paths are tried.
    fn check_pins(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<(), rustls::Error> {
        let ee = webpki::EndEntityCert::try_from(end_entity)
            .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?;
        let saw_path = Cell::new(false);
        let has_pin = |path: &webpki::VerifiedPath<'_>| -> Result<(), webpki::Error> {
            saw_path.set(true);
            let mut spkis = std::iter::once(path.end_entity().subject_public_key_info())
                .chain(
                    path.intermediate_certificates()
                        .map(|c| c.subject_public_key_info()),
                )
                .chain(std::iter::once(webpki::spki_for_anchor(path.anchor())));
            if spkis.any(|spki| self.pins.contains(&spki_pin_of(&spki))) {
                Ok(())
            } else {
                // Non-fatal: path building goes on with other candidate issuers.
                Err(webpki::Error::UnknownIssuer)
            }
        };
        let result = ee.verify_for_usage(
            self.algs.all,
            &self.roots.roots,
            intermediates,
            now,
            webpki::KeyUsage::server_auth(),
            None,
            Some(&has_pin),
        );
        match result {
            Ok(_) => Ok(()),
            Err(_) if saw_path.get() => Err(rustls::Error::InvalidCertificate(
                CertificateError::Other(rustls::OtherError(Arc::new(PinMismatch))),
            )),
            // The WebPKI verifier accepted the chain but this second pass found no path:
            // it cannot be classified, so it is refused.
            Err(e) => Err(rustls::Error::InvalidCertificate(CertificateError::Other(
                rustls::OtherError(Arc::new(e)),
            ))),
        }
    }
}

impl ServerCertVerifier for PinningVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verified = self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )?;
        if !self.pins.is_empty() {
            self.check_pins(end_entity, intermediates, now)?;
        }
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }

    fn requires_raw_public_keys(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> Option<&[DistinguishedName]> {
        self.inner.root_hint_subjects()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::pin::spki_pin;

    fn verifier(ca: &hoop_testkit::TestCa, pins: &[[u8; 32]]) -> PinningVerifier {
        let mut roots = RootCertStore::empty();
        roots.add(ca.cert_der()).unwrap();
        PinningVerifier::new(Arc::new(roots), pins, crate::crypto_provider()).unwrap()
    }

    fn verify(
        v: &PinningVerifier,
        leaf: &hoop_testkit::TestCert,
        extra: &[CertificateDer<'static>],
    ) -> Result<ServerCertVerified, rustls::Error> {
        let name = ServerName::try_from("localhost").unwrap();
        v.verify_server_cert(&leaf.cert(), extra, &name, &[], UnixTime::now())
    }

    #[test]
    fn pins_on_leaf_or_anchor_match() {
        let ca = hoop_testkit::TestCa::new("v");
        let leaf = ca.server();
        let by_leaf = verifier(&ca, &[[1; 32], spki_pin(&leaf.cert_der).unwrap()]);
        assert!(verify(&by_leaf, &leaf, &[]).is_ok());
        let by_ca = verifier(&ca, &[spki_pin(ca.cert_der().as_ref()).unwrap()]);
        assert!(verify(&by_ca, &leaf, &[]).is_ok());
        let none = verifier(&ca, &[]);
        assert!(verify(&none, &leaf, &[]).is_ok());
    }

    #[test]
    fn unrelated_pin_and_appended_certificate_do_not_match() {
        let ca = hoop_testkit::TestCa::new("v");
        let leaf = ca.server();
        let other = ca.server();
        let v = verifier(&ca, &[spki_pin(&other.cert_der).unwrap()]);
        let err = verify(&v, &leaf, &[]).unwrap_err();
        assert_eq!(
            crate::tls::refusal::classify(&err),
            crate::tls::TlsRefusal::PinMismatch
        );
        // Appending the pinned certificate to the presented chain does not help: it is
        // not on the verified path.
        let err = verify(&v, &leaf, &[other.cert()]).unwrap_err();
        assert_eq!(
            crate::tls::refusal::classify(&err),
            crate::tls::TlsRefusal::PinMismatch
        );
    }

    #[test]
    fn webpki_failure_comes_first() {
        let ca = hoop_testkit::TestCa::new("v");
        let leaf = ca.expired_server();
        let v = verifier(&ca, &[spki_pin(&leaf.cert_der).unwrap()]);
        let err = verify(&v, &leaf, &[]).unwrap_err();
        assert_eq!(
            crate::tls::refusal::classify(&err),
            crate::tls::TlsRefusal::Expired
        );
    }
}
