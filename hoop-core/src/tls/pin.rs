//! SPKI pins: SHA-256 digests of a certificate's DER SubjectPublicKeyInfo, in the
//! `sha256/BASE64` form used by HPKP and curl's `--pinnedpubkey`.

use aws_lc_rs::digest;
use base64::Engine as _;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::{DecodePaddingMode, general_purpose};
use rustls_pki_types::{CertificateDer, SubjectPublicKeyInfoDer};

use super::TlsError;

/// The prefix of a pin in text form.
const PREFIX: &str = "sha256/";

/// Standard alphabet, padding optional on input.
const LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// SHA-256 of a DER SubjectPublicKeyInfo (outer SEQUENCE included).
pub fn spki_pin_of_spki(spki_der: &[u8]) -> [u8; 32] {
    let d = digest::digest(&digest::SHA256, spki_der);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// The SPKI pin of a certificate (leaf, intermediate or CA) given in DER.
///
/// ```
/// use hoop_core::tls::{format_spki_pin, parse_spki_pin, spki_pin};
/// let ca = hoop_testkit::TestCa::new("doc");
/// let pin = spki_pin(ca.server().cert_der.as_slice()).unwrap();
/// assert_eq!(parse_spki_pin(&format_spki_pin(&pin)).unwrap(), pin);
/// ```
pub fn spki_pin(cert_der: &[u8]) -> Result<[u8; 32], TlsError> {
    let der = CertificateDer::from(cert_der);
    let cert = webpki::EndEntityCert::try_from(&der)
        .map_err(|e| TlsError::Config(format!("certificate for SPKI pin: {e}")))?;
    Ok(spki_pin_of(&cert.subject_public_key_info()))
}

pub(crate) fn spki_pin_of(spki: &SubjectPublicKeyInfoDer<'_>) -> [u8; 32] {
    spki_pin_of_spki(spki.as_ref())
}

/// Parses a pin written as `sha256/BASE64` (standard alphabet, padding optional;
/// surrounding whitespace ignored).
pub fn parse_spki_pin(text: &str) -> Result<[u8; 32], TlsError> {
    let text = text.trim();
    let b64 = text
        .get(..PREFIX.len())
        .filter(|p| p.eq_ignore_ascii_case(PREFIX))
        .and_then(|_| text.get(PREFIX.len()..))
        .ok_or_else(|| TlsError::Config(format!("SPKI pin must start with {PREFIX:?}")))?;
    let bytes = LENIENT
        .decode(b64)
        .map_err(|e| TlsError::Config(format!("SPKI pin base64: {e}")))?;
    <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| {
        TlsError::Config(format!(
            "SPKI pin must be 32 bytes (SHA-256), got {}",
            bytes.len()
        ))
    })
}

/// Writes a pin as `sha256/BASE64` (standard alphabet, padded).
pub fn format_spki_pin(pin: &[u8; 32]) -> String {
    format!("{PREFIX}{}", general_purpose::STANDARD.encode(pin))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pin_round_trips_and_differs_per_key() {
        let ca = hoop_testkit::TestCa::new("pin");
        let a = spki_pin(&ca.server().cert_der).unwrap();
        let b = spki_pin(&ca.server().cert_der).unwrap();
        assert_ne!(a, b, "fresh keys give different pins");
        let text = format_spki_pin(&a);
        assert!(text.starts_with("sha256/"));
        assert_eq!(text.len(), 7 + 44);
        assert_eq!(parse_spki_pin(&text).unwrap(), a);
        assert_eq!(
            parse_spki_pin(&format!("  {}  ", text.trim_end_matches('='))).unwrap(),
            a
        );
        assert_eq!(
            parse_spki_pin(&text.replace("sha256/", "SHA256/")).unwrap(),
            a
        );
    }

    #[test]
    fn pin_matches_x509_parser_spki() {
        let ca = hoop_testkit::TestCa::new("pin2");
        let leaf = ca.server();
        let (_, cert) = x509_parser::parse_x509_certificate(&leaf.cert_der).unwrap();
        let expected = spki_pin_of_spki(cert.tbs_certificate.subject_pki.raw);
        assert_eq!(spki_pin(&leaf.cert_der).unwrap(), expected);
    }

    #[test]
    fn bad_pins_are_refused() {
        assert!(parse_spki_pin("md5/AAAA").is_err());
        assert!(parse_spki_pin("sha256/").is_err());
        assert!(parse_spki_pin("sha256/AAAA").is_err());
        assert!(parse_spki_pin("sha256/!!!!").is_err());
        assert!(parse_spki_pin("sha").is_err());
        assert!(parse_spki_pin("ſha256/AAAA").is_err());
        assert!(spki_pin(b"not a certificate").is_err());
    }
}
