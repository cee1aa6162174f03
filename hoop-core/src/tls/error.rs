//! TLS errors with a typed refusal reason for the audit trail.

use std::fmt;

/// Why a peer's certificate or handshake was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TlsRefusal {
    /// The certificate has expired.
    Expired,
    /// The certificate is not valid yet.
    NotYetValid,
    /// The chain does not lead to a trusted root.
    UnknownIssuer,
    /// The certificate is not valid for the name or IP address asked for.
    NameMismatch,
    /// No certificate in the chain matches a configured SPKI pin.
    PinMismatch,
    /// No common protocol version (e.g. a TLS 1.1 peer).
    ProtocolVersion,
    /// The certificate was revoked.
    Revoked,
    /// The peer sent no certificate where one is required.
    NoCertificate,
    /// The certificate is malformed or otherwise unacceptable.
    BadCertificate,
    /// Any other handshake failure.
    Handshake,
}

impl TlsRefusal {
    /// Stable snake_case name (for metrics labels and audit records).
    pub fn as_str(self) -> &'static str {
        match self {
            TlsRefusal::Expired => "expired",
            TlsRefusal::NotYetValid => "not_yet_valid",
            TlsRefusal::UnknownIssuer => "unknown_issuer",
            TlsRefusal::NameMismatch => "name_mismatch",
            TlsRefusal::PinMismatch => "pin_mismatch",
            TlsRefusal::ProtocolVersion => "protocol_version",
            TlsRefusal::Revoked => "revoked",
            TlsRefusal::NoCertificate => "no_certificate",
            TlsRefusal::BadCertificate => "bad_certificate",
            TlsRefusal::Handshake => "handshake",
        }
    }
}

impl fmt::Display for TlsRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A TLS failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// Certificates, keys or settings could not be loaded.
    #[error("TLS configuration: {0}")]
    Config(String),
    /// The upstream's certificate or handshake was refused.
    #[error("upstream TLS refused ({refusal}): {detail}")]
    Upstream {
        /// Typed reason.
        refusal: TlsRefusal,
        /// Human-readable detail.
        detail: String,
    },
    /// The client's handshake failed.
    #[error("client TLS refused ({refusal}): {detail}")]
    Client {
        /// Typed reason.
        refusal: TlsRefusal,
        /// Human-readable detail.
        detail: String,
    },
    /// Socket error.
    #[error("TLS I/O: {0}")]
    Io(#[from] std::io::Error),
}

impl TlsError {
    /// The typed refusal, when the error is one.
    pub fn refusal(&self) -> Option<TlsRefusal> {
        match self {
            TlsError::Upstream { refusal, .. } | TlsError::Client { refusal, .. } => Some(*refusal),
            _ => None,
        }
    }
}
