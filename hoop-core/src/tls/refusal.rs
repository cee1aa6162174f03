//! Turning rustls handshake failures into typed refusals.

use std::io;

use rustls::{AlertDescription, CertificateError, PeerIncompatible};

use super::verifier::PinMismatch;
use super::{TlsError, TlsRefusal};

/// Which leg a failure happened on.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Side {
    /// We are the client (toward a target).
    Upstream,
    /// We are the server (toward a user).
    Client,
}

/// The typed reason of a rustls error. Anything not recognised is `Handshake`: a refusal
/// either way, only less specific.
pub(crate) fn classify(err: &rustls::Error) -> TlsRefusal {
    match err {
        rustls::Error::InvalidCertificate(c) => classify_cert(c),
        rustls::Error::NoCertificatesPresented => TlsRefusal::NoCertificate,
        rustls::Error::PeerIncompatible(
            PeerIncompatible::Tls12NotOffered
            | PeerIncompatible::Tls12NotOfferedOrEnabled
            | PeerIncompatible::SupportedVersionsExtensionRequired
            | PeerIncompatible::ServerTlsVersionIsDisabledByOurConfig
            | PeerIncompatible::ServerDoesNotSupportTls12Or13
            | PeerIncompatible::Tls13RequiredForQuic
            // rustls insists on `signature_algorithms`, which TLS 1.2 and 1.3 clients send
            // and which pre-1.2 clients (a TLS 1.0/1.1-only OpenSSL) do not: its absence
            // marks a client below our minimum version.
            | PeerIncompatible::SignatureAlgorithmsExtensionRequired,
        ) => TlsRefusal::ProtocolVersion,
        rustls::Error::AlertReceived(a) => classify_alert(*a),
        _ => TlsRefusal::Handshake,
    }
}

fn classify_cert(c: &CertificateError) -> TlsRefusal {
    match c {
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => TlsRefusal::Expired,
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
            TlsRefusal::NotYetValid
        }
        CertificateError::UnknownIssuer => TlsRefusal::UnknownIssuer,
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
            TlsRefusal::NameMismatch
        }
        CertificateError::Revoked => TlsRefusal::Revoked,
        CertificateError::Other(other) if other.0.downcast_ref::<PinMismatch>().is_some() => {
            TlsRefusal::PinMismatch
        }
        _ => TlsRefusal::BadCertificate,
    }
}

/// What the peer's alert tells about why it refused us.
fn classify_alert(a: AlertDescription) -> TlsRefusal {
    match a {
        AlertDescription::ProtocolVersion => TlsRefusal::ProtocolVersion,
        AlertDescription::CertificateExpired => TlsRefusal::Expired,
        AlertDescription::CertificateRevoked => TlsRefusal::Revoked,
        AlertDescription::UnknownCA => TlsRefusal::UnknownIssuer,
        AlertDescription::CertificateRequired => TlsRefusal::NoCertificate,
        AlertDescription::BadCertificate
        | AlertDescription::UnsupportedCertificate
        | AlertDescription::CertificateUnknown => TlsRefusal::BadCertificate,
        _ => TlsRefusal::Handshake,
    }
}

/// Converts a tokio-rustls handshake error (an `io::Error`, carrying the `rustls::Error`
/// when TLS failed) into a [`TlsError`] for `side`.
pub(crate) fn handshake_error(e: io::Error, side: Side) -> TlsError {
    let (refusal, detail) = match e.get_ref().and_then(|r| r.downcast_ref::<rustls::Error>()) {
        Some(tls) => (classify(tls), tls.to_string()),
        None if e.kind() == io::ErrorKind::UnexpectedEof => (
            TlsRefusal::Handshake,
            String::from("peer closed the connection during the TLS handshake"),
        ),
        None => return TlsError::Io(e),
    };
    match side {
        Side::Upstream => TlsError::Upstream { refusal, detail },
        Side::Client => TlsError::Client { refusal, detail },
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn io_of(e: rustls::Error) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, e)
    }

    #[test]
    fn certificate_errors() {
        let cases = [
            (CertificateError::Expired, TlsRefusal::Expired),
            (CertificateError::NotValidYet, TlsRefusal::NotYetValid),
            (CertificateError::UnknownIssuer, TlsRefusal::UnknownIssuer),
            (CertificateError::NotValidForName, TlsRefusal::NameMismatch),
            (CertificateError::Revoked, TlsRefusal::Revoked),
            (CertificateError::BadSignature, TlsRefusal::BadCertificate),
            (CertificateError::BadEncoding, TlsRefusal::BadCertificate),
            (
                CertificateError::Other(rustls::OtherError(Arc::new(PinMismatch))),
                TlsRefusal::PinMismatch,
            ),
            (
                CertificateError::Other(rustls::OtherError(Arc::new(io::Error::other("x")))),
                TlsRefusal::BadCertificate,
            ),
        ];
        for (c, want) in cases {
            let e = handshake_error(io_of(rustls::Error::InvalidCertificate(c)), Side::Upstream);
            assert_eq!(e.refusal(), Some(want), "{e}");
            assert!(matches!(e, TlsError::Upstream { .. }));
        }
    }

    #[test]
    fn versions_alerts_and_others() {
        let cases = [
            (
                rustls::Error::PeerIncompatible(PeerIncompatible::Tls12NotOffered),
                TlsRefusal::ProtocolVersion,
            ),
            (
                rustls::Error::PeerIncompatible(PeerIncompatible::NoCipherSuitesInCommon),
                TlsRefusal::Handshake,
            ),
            (
                rustls::Error::AlertReceived(AlertDescription::ProtocolVersion),
                TlsRefusal::ProtocolVersion,
            ),
            (
                rustls::Error::AlertReceived(AlertDescription::CertificateRequired),
                TlsRefusal::NoCertificate,
            ),
            (
                rustls::Error::AlertReceived(AlertDescription::UnknownCA),
                TlsRefusal::UnknownIssuer,
            ),
            (
                rustls::Error::NoCertificatesPresented,
                TlsRefusal::NoCertificate,
            ),
            (rustls::Error::DecryptError, TlsRefusal::Handshake),
        ];
        for (r, want) in cases {
            let e = handshake_error(io_of(r), Side::Client);
            assert_eq!(e.refusal(), Some(want), "{e}");
            assert!(matches!(e, TlsError::Client { .. }));
        }
    }

    #[test]
    fn plain_io_errors() {
        let eof = handshake_error(io::ErrorKind::UnexpectedEof.into(), Side::Client);
        assert_eq!(eof.refusal(), Some(TlsRefusal::Handshake));
        let reset = handshake_error(io::ErrorKind::ConnectionReset.into(), Side::Upstream);
        assert!(matches!(reset, TlsError::Io(_)));
    }
}
