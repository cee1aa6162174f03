//! Client-facing TLS. (Minimal version; rotation and mTLS are added by the TLS work item.)

use std::path::PathBuf;
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite};

use super::{TlsError, TlsRefusal, TlsVersion};

/// Settings of a client-facing TLS endpoint.
#[derive(Clone, Debug, Default)]
pub struct ServerTlsConfig {
    /// PEM file with the certificate chain (leaf first).
    pub cert_path: PathBuf,
    /// PEM file with the private key.
    pub key_path: PathBuf,
    /// PEM file of CAs whose client certificates are required; `None`: no client certs.
    pub client_ca_path: Option<PathBuf>,
    /// Minimum protocol version.
    pub min_version: TlsVersion,
    /// ALPN protocols offered, in preference order.
    pub alpn: Vec<Vec<u8>>,
}

/// A client-facing TLS acceptor whose certificate can be rotated while it serves.
#[derive(Clone)]
pub struct ServerTls {
    config: Arc<rustls::ServerConfig>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls").finish_non_exhaustive()
    }
}

impl ServerTls {
    /// Loads the files named by `config`.
    pub fn new(config: ServerTlsConfig) -> Result<Self, TlsError> {
        let certs = CertificateDer::pem_file_iter(&config.cert_path)
            .map_err(|e| TlsError::Config(format!("{}: {e}", config.cert_path.display())))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| TlsError::Config(format!("{}: {e}", config.cert_path.display())))?;
        let key = PrivateKeyDer::from_pem_file(&config.key_path)
            .map_err(|e| TlsError::Config(format!("{}: {e}", config.key_path.display())))?;
        let mut sc = rustls::ServerConfig::builder_with_provider(crate::crypto_provider())
            .with_protocol_versions(config.min_version.versions())
            .map_err(|e| TlsError::Config(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|e| TlsError::Config(e.to_string()))?;
        sc.alpn_protocols = config.alpn;
        Ok(ServerTls {
            config: Arc::new(sc),
        })
    }

    /// Performs the server side of a handshake on `stream`.
    pub async fn accept<S>(&self, stream: S) -> Result<tokio_rustls::server::TlsStream<S>, TlsError>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        tokio_rustls::TlsAcceptor::from(self.config.clone())
            .accept(stream)
            .await
            .map_err(|e| TlsError::Client {
                refusal: TlsRefusal::Handshake,
                detail: e.to_string(),
            })
    }
}
