//! TLS on both legs: [`ServerTls`] terminates clients, [`UpstreamTls`] opens verified
//! sessions to targets. There is no accept-any-certificate mode.

mod error;
mod server;
mod upstream;

pub use error::{TlsError, TlsRefusal};
pub use server::{ServerTls, ServerTlsConfig};
pub use upstream::{UpstreamRoots, UpstreamTls, UpstreamTlsConfig};

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
