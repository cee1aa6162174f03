//! Client certificates on the server side: the required-mTLS verifier, and what an
//! accepted session tells about its peer.

use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;
use rustls_pki_types::CertificateDer;

use super::{TlsError, pem};

/// A verifier that requires a client certificate chaining to one of `cas`.
pub(crate) fn required_verifier(
    cas: &[CertificateDer<'static>],
    provider: Arc<CryptoProvider>,
    label: &str,
) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
    let roots = Arc::new(pem::root_store(cas, label)?);
    WebPkiClientVerifier::builder_with_provider(roots, provider)
        .build()
        .map_err(|e| TlsError::Config(format!("{label}: client verifier: {e}")))
}

/// The verified client certificate chain (leaf first) of an accepted session, when the
/// client presented one (always, when the endpoint requires client certificates).
///
/// ```no_run
/// # async fn demo(tls: hoop_core::tls::ServerTls, tcp: tokio::net::TcpStream) -> Result<(), hoop_core::tls::TlsError> {
/// let stream = tls.accept(tcp).await?;
/// if let Some(chain) = hoop_core::tls::peer_certificates(&stream) {
///     println!("client certificate chain of {} certificates", chain.len());
/// }
/// # Ok(()) }
/// ```
pub fn peer_certificates<S>(
    stream: &tokio_rustls::server::TlsStream<S>,
) -> Option<&[CertificateDer<'static>]> {
    stream
        .get_ref()
        .1
        .peer_certificates()
        .filter(|c| !c.is_empty())
}

/// The application protocol (ALPN) agreed on in an accepted session, if any.
pub fn negotiated_alpn<S>(stream: &tokio_rustls::server::TlsStream<S>) -> Option<&[u8]> {
    stream.get_ref().1.alpn_protocol()
}

/// What the TLS handshake established about a client, owned so that it can outlive the
/// borrow of the stream (e.g. to be handed to an authenticator).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientTlsInfo {
    /// The verified client certificate chain, leaf first; empty without a client
    /// certificate.
    pub peer_certificates: Vec<CertificateDer<'static>>,
    /// The negotiated ALPN protocol.
    pub alpn: Option<Vec<u8>>,
    /// The server name (SNI) the client asked for.
    pub server_name: Option<String>,
    /// The negotiated protocol version (`TLSv1_2` / `TLSv1_3`).
    pub version: Option<rustls::ProtocolVersion>,
}

impl ClientTlsInfo {
    /// Collects the facts of an accepted session.
    pub fn of<S>(stream: &tokio_rustls::server::TlsStream<S>) -> Self {
        let conn = stream.get_ref().1;
        ClientTlsInfo {
            peer_certificates: conn
                .peer_certificates()
                .map(<[_]>::to_vec)
                .unwrap_or_default(),
            alpn: conn.alpn_protocol().map(<[u8]>::to_vec),
            server_name: conn.server_name().map(str::to_owned),
            version: conn.protocol_version(),
        }
    }

    /// The client's leaf certificate, if it presented one.
    pub fn leaf(&self) -> Option<&CertificateDer<'static>> {
        self.peer_certificates.first()
    }
}
