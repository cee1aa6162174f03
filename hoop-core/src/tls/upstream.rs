//! Verified TLS toward targets. (Minimal version; pins and typed refusals are added by the
//! TLS work item.)

use std::path::PathBuf;
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite};

use super::{TlsError, TlsRefusal, TlsVersion};

/// Where trusted roots come from.
#[derive(Clone, Debug, Default)]
pub enum UpstreamRoots {
    /// The Mozilla roots compiled in (webpki-roots).
    #[default]
    WebPki,
    /// A PEM bundle file of CA certificates.
    CaFile(PathBuf),
    /// PEM text of CA certificates.
    CaPem(Vec<u8>),
}

/// Settings of a verified upstream TLS session.
#[derive(Clone, Debug, Default)]
pub struct UpstreamTlsConfig {
    /// Trusted roots.
    pub roots: UpstreamRoots,
    /// SHA-256 digests of acceptable SubjectPublicKeyInfo; when not empty, the chain must
    /// contain one of them.
    pub spki_pins: Vec<[u8; 32]>,
    /// Minimum protocol version.
    pub min_version: TlsVersion,
    /// ALPN protocols to offer.
    pub alpn: Vec<Vec<u8>>,
}

/// A verifying TLS connector for one upstream (or a family of upstreams sharing roots).
#[derive(Clone)]
pub struct UpstreamTls {
    config: Arc<rustls::ClientConfig>,
}

impl std::fmt::Debug for UpstreamTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamTls").finish_non_exhaustive()
    }
}

impl UpstreamTls {
    /// Builds a connector from `config`.
    pub fn new(config: UpstreamTlsConfig) -> Result<Self, TlsError> {
        let mut roots = rustls::RootCertStore::empty();
        match &config.roots {
            UpstreamRoots::WebPki => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
            UpstreamRoots::CaFile(p) => {
                for c in CertificateDer::pem_file_iter(p)
                    .map_err(|e| TlsError::Config(format!("{}: {e}", p.display())))?
                {
                    let c = c.map_err(|e| TlsError::Config(format!("{}: {e}", p.display())))?;
                    roots
                        .add(c)
                        .map_err(|e| TlsError::Config(format!("{}: {e}", p.display())))?;
                }
            }
            UpstreamRoots::CaPem(pem) => {
                for c in CertificateDer::pem_slice_iter(pem) {
                    let c = c.map_err(|e| TlsError::Config(e.to_string()))?;
                    roots.add(c).map_err(|e| TlsError::Config(e.to_string()))?;
                }
            }
        }
        let mut cc = rustls::ClientConfig::builder_with_provider(crate::crypto_provider())
            .with_protocol_versions(config.min_version.versions())
            .map_err(|e| TlsError::Config(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        cc.alpn_protocols = config.alpn;
        Ok(UpstreamTls {
            config: Arc::new(cc),
        })
    }

    /// A connector trusting the compiled-in Mozilla roots.
    pub fn webpki() -> Result<Self, TlsError> {
        Self::new(UpstreamTlsConfig::default())
    }

    /// Opens a TLS session over `stream`, verifying the certificate for `server_name`
    /// (a DNS name or an IP address).
    pub async fn connect<S>(
        &self,
        server_name: &str,
        stream: S,
    ) -> Result<tokio_rustls::client::TlsStream<S>, TlsError>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let name = ServerName::try_from(server_name.to_owned())
            .map_err(|e| TlsError::Config(format!("server name {server_name:?}: {e}")))?;
        tokio_rustls::TlsConnector::from(self.config.clone())
            .connect(name, stream)
            .await
            .map_err(|e| TlsError::Upstream {
                refusal: TlsRefusal::Handshake,
                detail: e.to_string(),
            })
    }
}
