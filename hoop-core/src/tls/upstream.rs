//! Verified TLS toward targets: trusted roots, name or IP checked, optional SPKI pins,
//! a minimum version, optional client certificate. There is no way to skip verification.

use std::path::PathBuf;
use std::sync::Arc;

use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tracing::{debug, warn};

use super::pem::{self, PemSource};
use super::refusal::{Side, handshake_error};
use super::verifier::PinningVerifier;
use super::{TlsError, TlsVersion};

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

/// A client certificate the gateway presents to targets that require mTLS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpstreamClientCert {
    /// The certificate chain, leaf first.
    pub chain: PemSource,
    /// The private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PemSource,
}

/// Settings of a verified upstream TLS session.
///
/// Build it with `..Default::default()` so that fields added later do not break you.
#[derive(Clone, Debug, Default)]
pub struct UpstreamTlsConfig {
    /// Trusted roots.
    pub roots: UpstreamRoots,
    /// SHA-256 digests of acceptable SubjectPublicKeyInfos (see [`super::spki_pin`] and
    /// [`super::parse_spki_pin`]). When not empty, after the usual verification succeeded,
    /// a certificate of the verified chain (leaf, intermediate or trust anchor) must have
    /// one of these keys.
    pub spki_pins: Vec<[u8; 32]>,
    /// Minimum protocol version.
    pub min_version: TlsVersion,
    /// ALPN protocols to offer.
    pub alpn: Vec<Vec<u8>>,
    /// Client certificate for targets that require one.
    pub client_cert: Option<UpstreamClientCert>,
}

/// A verifying TLS connector for one upstream (or a family of upstreams sharing roots).
///
/// Verification checks the chain up to a trusted root, validity dates, the DNS name or IP
/// address asked for and, when configured, SPKI pins. A refused certificate is a
/// [`TlsError::Upstream`] whose [`refusal`](TlsError::refusal) says why.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use hoop_core::tls::{parse_spki_pin, TlsVersion, UpstreamRoots, UpstreamTls, UpstreamTlsConfig};
/// # let ca = hoop_testkit::TestCa::new("doc");
/// # let ca_pem = ca.cert_pem().as_bytes().to_vec();
/// let tls = UpstreamTls::new(UpstreamTlsConfig {
///     roots: UpstreamRoots::CaPem(ca_pem),
///     spki_pins: vec![parse_spki_pin("sha256/47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=")?],
///     min_version: TlsVersion::Tls13,
///     alpn: vec![b"postgresql".to_vec()],
///     ..Default::default()
/// })?;
/// # if false {
/// let tcp = tokio::net::TcpStream::connect("127.0.0.1:5432").await?;
/// match tls.connect("127.0.0.1", tcp).await {
///     Ok(stream) => { /* talk to the target */ }
///     Err(e) => eprintln!("target refused: {:?}", e.refusal()),
/// }
/// # }
/// # Ok(()) }
/// ```
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
    /// Builds a connector from `config`. Fails when a CA bundle or client certificate
    /// cannot be loaded, or the bundle holds no CA.
    pub fn new(config: UpstreamTlsConfig) -> Result<Self, TlsError> {
        let provider = crate::crypto_provider();
        let roots = match &config.roots {
            UpstreamRoots::WebPki => rustls::RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            },
            UpstreamRoots::CaFile(p) => {
                pem::root_store(&pem::load_cert_file(p)?, &p.display().to_string())?
            }
            UpstreamRoots::CaPem(b) => pem::root_store(
                &pem::load_certs(&PemSource::Pem(b.clone()))?,
                "upstream CA PEM",
            )?,
        };
        let verifier = PinningVerifier::new(Arc::new(roots), &config.spki_pins, provider.clone())?;
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(config.min_version.versions())
            .map_err(|e| TlsError::Config(e.to_string()))?
            // Not a way around verification: the verifier is WebPKI plus pins.
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier));
        let mut cc = match &config.client_cert {
            Some(cc) => builder
                .with_client_auth_cert(pem::load_certs(&cc.chain)?, pem::load_key(&cc.key)?)
                .map_err(|e| TlsError::Config(format!("upstream client certificate: {e}")))?,
            None => builder.with_no_client_auth(),
        };
        cc.alpn_protocols = config.alpn;
        Ok(UpstreamTls {
            config: Arc::new(cc),
        })
    }

    /// A connector trusting the compiled-in Mozilla roots.
    pub fn webpki() -> Result<Self, TlsError> {
        Self::new(UpstreamTlsConfig::default())
    }

    /// The same connector (roots, pins, versions, client certificate) offering `alpn`
    /// instead of its configured ALPN protocols; verification is unchanged. For instance
    /// an HTTP adapter opens connections that must speak HTTP/1.1 (protocol upgrades)
    /// with `with_alpn(vec![b"http/1.1".to_vec()])` from a connector offering `h2` too.
    pub fn with_alpn(&self, alpn: Vec<Vec<u8>>) -> UpstreamTls {
        let mut cc = (*self.config).clone();
        cc.alpn_protocols = alpn;
        UpstreamTls {
            config: Arc::new(cc),
        }
    }

    /// The ALPN protocols this connector offers.
    pub fn alpn(&self) -> &[Vec<u8>] {
        &self.config.alpn_protocols
    }

    /// The rustls configuration (for callers that drive rustls themselves).
    pub fn rustls_config(&self) -> Arc<rustls::ClientConfig> {
        self.config.clone()
    }

    /// Opens a TLS session over `stream`, verifying the certificate for `server_name`: a
    /// DNS name (checked against DNS SANs) or an IP address such as `127.0.0.1` or `::1`
    /// (also `[::1]`; checked against IP SANs).
    ///
    /// A refusal is logged (warn, with its reason) and returned as
    /// [`TlsError::Upstream`]. With TLS 1.3 the client side finishes first: a target that
    /// refuses *our* client certificate does so with an alert that surfaces on the first
    /// read of the returned stream.
    pub async fn connect<S>(
        &self,
        server_name: &str,
        stream: S,
    ) -> Result<tokio_rustls::client::TlsStream<S>, TlsError>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let bare = server_name
            .strip_prefix('[')
            .and_then(|s| s.strip_suffix(']'))
            .unwrap_or(server_name);
        let name = ServerName::try_from(bare.to_owned())
            .map_err(|e| TlsError::Config(format!("server name {server_name:?}: {e}")))?;
        match tokio_rustls::TlsConnector::from(self.config.clone())
            .connect(name, stream)
            .await
        {
            Ok(s) => {
                debug!(server_name, version = ?s.get_ref().1.protocol_version(), "upstream TLS established");
                Ok(s)
            }
            Err(e) => {
                let err = handshake_error(e, Side::Upstream);
                match err.refusal() {
                    Some(refusal) => {
                        warn!(server_name, %refusal, error = %err, "upstream TLS refused")
                    }
                    None => debug!(server_name, error = %err, "upstream TLS handshake I/O error"),
                }
                Err(err)
            }
        }
    }
}
