//! Client-facing TLS: the gateway's certificate (rotated while serving), TLS 1.2+ (or
//! 1.3 only), ALPN, and optionally required client certificates.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use bytes::Bytes;
use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls_pki_types::CertificateDer;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use super::client_auth::required_verifier;
use super::pem::{self, PemSource};
use super::refusal::{Side, handshake_error};
use super::reload::{CertResolver, Stamps};
use super::{TlsError, TlsVersion};
use crate::io::Prefixed;

/// Settings of a client-facing TLS endpoint.
///
/// Build it with `..Default::default()` so that fields added later do not break you.
#[derive(Clone, Debug, Default)]
pub struct ServerTlsConfig {
    /// PEM file with the certificate chain (leaf first).
    pub cert_path: PathBuf,
    /// PEM file with the private key (PKCS#8, PKCS#1 or SEC1).
    pub key_path: PathBuf,
    /// PEM file of CAs whose client certificates are *required*; `None`: no client
    /// certificates are asked for.
    pub client_ca_path: Option<PathBuf>,
    /// Minimum protocol version (TLS 1.2 by default; older versions are never accepted).
    pub min_version: TlsVersion,
    /// ALPN protocols offered, in preference order. When set, a client offering only other
    /// protocols is refused (RFC 7301); a client offering none is accepted.
    pub alpn: Vec<Vec<u8>>,
}

impl ServerTlsConfig {
    /// The files the endpoint is built from (watched for rotation).
    fn files(&self) -> Vec<PathBuf> {
        let mut v = vec![self.cert_path.clone(), self.key_path.clone()];
        v.extend(self.client_ca_path.clone());
        v
    }
}

/// A client-facing TLS acceptor whose certificate (and client CA) can be rotated while it
/// serves: [`ServerTls::reload`] re-reads the files, [`ServerTls::watch`] does so whenever
/// they change. Sessions already established are never affected by a rotation.
///
/// Cloning is cheap; all clones share the same certificate.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use hoop_core::tls::{ServerTls, ServerTlsConfig, TlsVersion};
/// # let dir = tempfile::tempdir()?;
/// # let ca = hoop_testkit::TestCa::new("doc");
/// # let (cert_path, key_path) = ca.server().write(dir.path(), "gw");
/// let tls = ServerTls::new(ServerTlsConfig {
///     cert_path,
///     key_path,
///     min_version: TlsVersion::Tls12,
///     alpn: vec![b"h2".to_vec(), b"http/1.1".to_vec()],
///     ..Default::default()
/// })?;
/// // Pick up certificates rotated by an external agent, checking every 5 s. The task
/// // ends by itself once every clone of `tls` is dropped.
/// let _watcher = tls.watch(std::time::Duration::from_secs(5));
///
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
/// # if false {
/// loop {
///     let (tcp, _peer) = listener.accept().await?;
///     let tls = tls.clone();
///     tokio::spawn(async move {
///         match tls.accept(tcp).await {
///             Ok(stream) => { /* hand `stream` to the protocol adapter */ }
///             Err(e) => eprintln!("refused ({:?}): {e}", e.refusal()),
///         }
///     });
/// }
/// # }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct ServerTls {
    inner: Arc<Inner>,
}

struct Inner {
    settings: ServerTlsConfig,
    files: Vec<PathBuf>,
    provider: Arc<CryptoProvider>,
    resolver: Arc<CertResolver>,
    active: RwLock<Active>,
    /// Serialises reloads; holds the stamps of the files as last read.
    last_read: Mutex<Stamps>,
}

/// The rustls configuration new handshakes use, and the client CAs it was built with.
struct Active {
    config: Arc<rustls::ServerConfig>,
    client_cas: Option<Vec<CertificateDer<'static>>>,
}

/// Everything read from the files.
struct Material {
    key: Arc<CertifiedKey>,
    client_cas: Option<Vec<CertificateDer<'static>>>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("cert_path", &self.inner.settings.cert_path)
            .field("client_ca_path", &self.inner.settings.client_ca_path)
            .field("min_version", &self.inner.settings.min_version)
            .finish_non_exhaustive()
    }
}

impl ServerTls {
    /// Loads the files named by `config`. Fails when a file cannot be read or parsed, the
    /// key does not match the certificate, or the client CA file holds no usable CA.
    pub fn new(config: ServerTlsConfig) -> Result<Self, TlsError> {
        let provider = crate::crypto_provider();
        let files = config.files();
        let stamps = Stamps::of(&files);
        let material = load_material(&config, &provider)?;
        log_loaded(&material.key, "TLS certificate loaded");
        let resolver = Arc::new(CertResolver::new(material.key));
        let active = build_active(&config, &provider, &resolver, material.client_cas)?;
        Ok(ServerTls {
            inner: Arc::new(Inner {
                settings: config,
                files,
                provider,
                resolver,
                active: RwLock::new(active),
                last_read: Mutex::new(stamps),
            }),
        })
    }

    /// The settings this endpoint was built from.
    pub fn settings(&self) -> &ServerTlsConfig {
        &self.inner.settings
    }

    /// The rustls configuration new handshakes use right now (for callers that drive
    /// rustls themselves). A later reload does not change the returned value.
    pub fn rustls_config(&self) -> Arc<rustls::ServerConfig> {
        self.inner.config()
    }

    /// The certificate chain (leaf first) new handshakes get right now.
    pub fn certificate_chain(&self) -> Vec<CertificateDer<'static>> {
        self.inner.resolver.current().cert.clone()
    }

    /// Performs the server side of a handshake on `stream`.
    ///
    /// A refusal is returned as [`TlsError::Client`] with its reason (a TLS 1.1 client:
    /// `ProtocolVersion`; no client certificate where one is required: `NoCertificate`;
    /// one from an unknown CA: `UnknownIssuer`; an expired one: `Expired`) and logged.
    /// The client is sent the matching fatal alert where the connection allows it.
    pub async fn accept<S>(&self, stream: S) -> Result<tokio_rustls::server::TlsStream<S>, TlsError>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let acceptor = tokio_rustls::TlsAcceptor::from(self.inner.config());
        match acceptor.accept(stream).await {
            Ok(s) => {
                let conn = s.get_ref().1;
                debug!(
                    version = ?conn.protocol_version(),
                    alpn = ?conn.alpn_protocol().map(String::from_utf8_lossy),
                    client_cert = conn.peer_certificates().is_some_and(|c| !c.is_empty()),
                    "client TLS established"
                );
                Ok(s)
            }
            Err(e) => {
                // A connection closed before or during the handshake without any TLS
                // error (load-balancer health checks, port scans) is not worth a warning.
                let quiet = e.kind() == std::io::ErrorKind::UnexpectedEof && e.get_ref().is_none();
                let err = handshake_error(e, Side::Client);
                match err.refusal() {
                    Some(refusal) if !quiet => warn!(%refusal, error = %err, "client TLS refused"),
                    _ => debug!(error = %err, "client TLS handshake ended early"),
                }
                Err(err)
            }
        }
    }

    /// Like [`ServerTls::accept`], for a stream of which `prefix` was already read (for
    /// instance while sniffing the protocol, or buffered with a Postgres `SSLRequest`):
    /// the TLS layer reads `prefix` first, then the stream.
    pub async fn accept_with_prefix<S>(
        &self,
        stream: S,
        prefix: Bytes,
    ) -> Result<tokio_rustls::server::TlsStream<Prefixed<S>>, TlsError>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        self.accept(Prefixed::new(prefix, stream)).await
    }

    /// Reads the certificate, key and client CA files again and, when they are all valid,
    /// makes them the ones of new handshakes. Established sessions are not affected;
    /// sessions made before the reload are not resumed after it (full handshake).
    ///
    /// On failure (unreadable file, key not matching the certificate, no CA), the current
    /// certificate and client CA stay in use and the error is returned (and logged).
    /// Blocking file I/O: call it from a blocking context or accept a short stall.
    pub fn reload(&self) -> Result<(), TlsError> {
        let mut last = self
            .inner
            .last_read
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        self.inner.reload_locked(&mut last)
    }

    /// Starts a task that checks the files every `every` (modification time, length and
    /// inode) and reloads them when one changed. A failed reload keeps the current
    /// certificate and is retried once the files change again.
    ///
    /// The task holds only a weak reference: it ends once every clone of this
    /// `ServerTls` is dropped (or when the returned handle is aborted). Must be called
    /// within a Tokio runtime. `every` is at least 10 ms.
    pub fn watch(&self, every: Duration) -> JoinHandle<()> {
        let weak = Arc::downgrade(&self.inner);
        let every = every.max(Duration::from_millis(10));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(inner) = weak.upgrade() else { break };
                // Metadata and file reads are blocking; keep them off the async workers.
                let polled = tokio::task::spawn_blocking(move || inner.reload_if_changed()).await;
                if polled.is_err() {
                    warn!("TLS certificate watcher: check task failed");
                }
            }
            debug!("TLS certificate watcher stopped: endpoint dropped");
        })
    }
}

impl Inner {
    fn config(&self) -> Arc<rustls::ServerConfig> {
        self.active
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .config
            .clone()
    }

    /// Reloads when the files differ from those last read.
    fn reload_if_changed(&self) {
        let mut last = self
            .last_read
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if Stamps::of(&self.files) == *last {
            return;
        }
        debug!("TLS files changed; reloading");
        // The error is logged by reload_locked.
        let _ = self.reload_locked(&mut last);
    }

    fn reload_locked(&self, last: &mut Stamps) -> Result<(), TlsError> {
        // Stamp before reading: a write landing after this point is seen as a change at
        // the next check, so the last version of the files is always picked up.
        *last = Stamps::of(&self.files);
        let result = self.try_reload();
        if let Err(e) = &result {
            warn!(error = %e, "TLS reload failed; keeping the current certificate");
        }
        result
    }

    fn try_reload(&self) -> Result<(), TlsError> {
        let material = load_material(&self.settings, &self.provider)?;
        let ca_changed = {
            let active = self.active.read().unwrap_or_else(PoisonError::into_inner);
            active.client_cas != material.client_cas
        };
        // A new configuration is built before anything is swapped, so a failure changes
        // nothing. It also starts an empty resumption cache: a session made before the
        // rotation (under the old key, or the old client CA) is not resumed after it,
        // every client makes a full handshake against the new certificate.
        let active = build_active(
            &self.settings,
            &self.provider,
            &self.resolver,
            material.client_cas,
        )?;
        log_loaded(&material.key, "TLS certificate reloaded");
        if ca_changed {
            info!("TLS client CA reloaded");
        }
        self.resolver.swap(material.key);
        *self.active.write().unwrap_or_else(PoisonError::into_inner) = active;
        Ok(())
    }
}

fn load_material(
    settings: &ServerTlsConfig,
    provider: &CryptoProvider,
) -> Result<Material, TlsError> {
    let chain = pem::load_cert_file(&settings.cert_path)?;
    let key = pem::load_key(&PemSource::File(settings.key_path.clone()))?;
    let key = CertifiedKey::from_der(chain, key, provider).map_err(|e| {
        TlsError::Config(format!(
            "{} / {}: {e}",
            settings.cert_path.display(),
            settings.key_path.display()
        ))
    })?;
    let client_cas = match &settings.client_ca_path {
        Some(p) => {
            let cas = pem::load_cert_file(p)?;
            // Check now that they make a usable trust store.
            pem::root_store(&cas, &p.display().to_string())?;
            Some(cas)
        }
        None => None,
    };
    Ok(Material {
        key: Arc::new(key),
        client_cas,
    })
}

fn build_active(
    settings: &ServerTlsConfig,
    provider: &Arc<CryptoProvider>,
    resolver: &Arc<CertResolver>,
    client_cas: Option<Vec<CertificateDer<'static>>>,
) -> Result<Active, TlsError> {
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(settings.min_version.versions())
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder = match &client_cas {
        Some(cas) => {
            let label = settings
                .client_ca_path
                .as_ref()
                .map_or_else(|| String::from("client CA"), |p| p.display().to_string());
            builder.with_client_cert_verifier(required_verifier(cas, provider.clone(), &label)?)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(resolver.clone());
    config.alpn_protocols = settings.alpn.clone();
    Ok(Active {
        config: Arc::new(config),
        client_cas,
    })
}

fn log_loaded(key: &CertifiedKey, msg: &str) {
    let leaf = key.cert.first().map(|c| c.as_ref()).unwrap_or_default();
    let certificate = pem::describe_leaf(leaf);
    if pem::outside_validity(leaf) == Some(true) {
        warn!(%certificate, "{msg}, but it is outside its validity period");
    } else {
        info!(%certificate, "{msg}");
    }
}
