//! TLS on both legs: [`ServerTls`] terminates clients, [`UpstreamTls`] opens verified
//! sessions to targets. There is no accept-any-certificate mode.
//!
//! - [`ServerTls`]: the gateway's certificate chain and key from PEM files, TLS 1.2+ (or
//!   1.3 only), ALPN, optionally *required* client certificates from a CA; the files are
//!   re-read on [`ServerTls::reload`] or whenever they change ([`ServerTls::watch`])
//!   without disturbing established sessions.
//! - [`UpstreamTls`]: roots from webpki-roots or a CA bundle, DNS name or IP address
//!   verification, optional SPKI pins ([`spki_pin`], [`parse_spki_pin`]), a minimum
//!   version, an optional client certificate, ALPN.
//!
//! Every refusal is a [`TlsError`] whose [`TlsError::refusal`] tells why
//! ([`TlsRefusal`]), for the audit trail.

mod client_auth;
mod error;
mod pem;
mod pin;
mod refusal;
mod reload;
mod server;
mod upstream;
mod verifier;

pub use client_auth::{ClientTlsInfo, negotiated_alpn, peer_certificates};
pub use error::{TlsError, TlsRefusal};
pub use pem::PemSource;
pub use pin::{format_spki_pin, parse_spki_pin, spki_pin, spki_pin_of_spki};
pub use server::{ServerTls, ServerTlsConfig};
pub use upstream::{UpstreamClientCert, UpstreamRoots, UpstreamTls, UpstreamTlsConfig};

/// TLS protocol versions a configuration may require as its minimum.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsVersion {
    /// TLS 1.2 and 1.3.
    #[default]
    Tls12,
    /// TLS 1.3 only.
    Tls13,
}

impl TlsVersion {
    pub(crate) fn versions(self) -> &'static [&'static rustls::SupportedProtocolVersion] {
        static BOTH: [&rustls::SupportedProtocolVersion; 2] =
            [&rustls::version::TLS13, &rustls::version::TLS12];
        static ONLY13: [&rustls::SupportedProtocolVersion; 1] = [&rustls::version::TLS13];
        match self {
            TlsVersion::Tls12 => &BOTH,
            TlsVersion::Tls13 => &ONLY13,
        }
    }
}
