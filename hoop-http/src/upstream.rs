//! Connections to the target: opened through the proof-token sequence, one small pool
//! per session.
//!
//! Every upstream connection is opened with [`Authorized::connect_upstream`], so it is
//! verified as the target's [`UpstreamSecurity`](hoop_core::sequence::UpstreamSecurity)
//! says and a TLS refusal is recorded in the session that caused it. Connections are
//! therefore pooled *per session* (a client connection): an HTTP/2 target connection is
//! shared by all of the session's requests; HTTP/1.1 connections are reused once their
//! previous response ended, and at most `max_conns` HTTP/1.1 connections are open at
//! once (further requests wait for one to come back, up to the upstream timeout). A pool
//! never outlives its session and only ever holds
//! connections to its one target opened with its one security setting, so a pooled
//! connection is always reused with the settings it was opened with.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use hoop_core::io::MaybeTls;
use hoop_core::sequence::{Authorized, UpstreamSecurity};
use http_body_util::combinators::UnsyncBoxBody;
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tracing::debug;

use crate::config::HttpTarget;
use crate::error::{BoxError, HttpError};

/// The body type the adapter sends and returns.
pub type Body = UnsyncBoxBody<Bytes, BoxError>;

/// A connection ready to send one request.
pub(crate) enum Sender {
    H1(http1::SendRequest<Body>, Option<OwnedSemaphorePermit>),
    H2(http2::SendRequest<Body>),
}

impl Sender {
    pub(crate) fn is_h2(&self) -> bool {
        matches!(self, Sender::H2(_))
    }

    pub(crate) async fn send(
        &mut self,
        req: http::Request<Body>,
    ) -> Result<http::Response<Incoming>, hyper::Error> {
        match self {
            Sender::H1(s, _) => {
                s.ready().await?;
                s.send_request(req).await
            }
            Sender::H2(s) => {
                s.ready().await?;
                s.send_request(req).await
            }
        }
    }
}

/// What a connection was opened with: the route (one target, one credential), the
/// address, the name verified and the TLS settings (roots, pins, versions, client
/// certificate and ALPN, by the identity of their configuration). A pool only hands out
/// connections of its own key.
#[derive(Clone, Debug)]
pub(crate) struct PoolKey {
    route: usize,
    addr: SocketAddr,
    server_name: Option<String>,
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl PoolKey {
    /// The key of connections to `target`, the adapter's route number `route`.
    pub(crate) fn of(route: usize, target: &HttpTarget) -> PoolKey {
        let (server_name, tls) = match &target.security {
            UpstreamSecurity::Tls { tls, server_name } => {
                (Some(server_name.clone()), Some(tls.rustls_config()))
            }
            UpstreamSecurity::PlaintextOptIn => (None, None),
        };
        PoolKey {
            route,
            addr: target.addr,
            server_name,
            tls,
        }
    }
}

impl PartialEq for PoolKey {
    fn eq(&self, other: &Self) -> bool {
        self.route == other.route
            && self.addr == other.addr
            && self.server_name == other.server_name
            && match (&self.tls, &other.tls) {
                (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                (None, None) => true,
                _ => false,
            }
    }
}

/// The connections of one session to one target.
pub(crate) struct Pool {
    key: PoolKey,
    h2: Mutex<Option<http2::SendRequest<Body>>>,
    idle_h1: Mutex<Vec<(http1::SendRequest<Body>, Option<OwnedSemaphorePermit>)>>,
    max_idle: usize,
    conns: Arc<Semaphore>,
    returned: Notify,
}

impl Pool {
    pub(crate) fn new(max_conns: usize, key: PoolKey) -> Self {
        let max_conns = max_conns.max(1);
        Pool {
            key,
            h2: Mutex::new(None),
            idle_h1: Mutex::new(Vec::new()),
            max_idle: max_conns,
            conns: Arc::new(Semaphore::new(max_conns)),
            returned: Notify::new(),
        }
    }

    /// A pooled connection, or a new one when fewer than `max_conns` are open, or the
    /// first one given back. `key` must be the pool's own (that of `target`): a pool never
    /// serves another target or security setting.
    pub(crate) async fn get(
        &self,
        auth: &Authorized,
        target: &HttpTarget,
        key: &PoolKey,
    ) -> Result<Sender, HttpError> {
        if *key != self.key {
            return Err(HttpError::Upstream(String::from(
                "connection pool of another target or security setting",
            )));
        }
        loop {
            if let Some(s) = self.take() {
                return Ok(s);
            }
            if let Ok(permit) = self.conns.clone().try_acquire_owned() {
                let mut s = connect(auth, target, &target.security).await?;
                if let Sender::H1(_, p) = &mut s {
                    *p = Some(permit);
                }
                return Ok(s);
            }
            // Woken when a connection comes back; closed ones free their permit without
            // a notification, hence the re-check.
            tokio::select! {
                () = self.returned.notified() => {}
                () = tokio::time::sleep(std::time::Duration::from_millis(50)) => {}
            }
        }
    }

    /// A live pooled connection, if there is one.
    pub(crate) fn take(&self) -> Option<Sender> {
        {
            let mut h2 = self.h2.lock().unwrap_or_else(PoisonError::into_inner);
            match h2.as_ref() {
                Some(s) if !s.is_closed() => return Some(Sender::H2(s.clone())),
                Some(_) => *h2 = None,
                None => {}
            }
        }
        let mut idle = self.idle_h1.lock().unwrap_or_else(PoisonError::into_inner);
        while let Some((s, permit)) = idle.pop() {
            if !s.is_closed() {
                return Some(Sender::H1(s, permit));
            }
        }
        None
    }

    /// Keeps a connection for later requests.
    pub(crate) fn put(&self, sender: Sender) {
        match sender {
            Sender::H2(s) => {
                *self.h2.lock().unwrap_or_else(PoisonError::into_inner) = Some(s);
            }
            Sender::H1(s, permit) => {
                let mut idle = self.idle_h1.lock().unwrap_or_else(PoisonError::into_inner);
                if !s.is_closed() && idle.len() < self.max_idle {
                    idle.push((s, permit));
                }
                drop(idle);
                self.returned.notify_one();
            }
        }
    }
}

/// Opens a new connection to the target through the proof token, secured by `security`
/// (the target's own, or its HTTP/1.1-only variant for upgrades); HTTP/2 when the TLS
/// session agreed on `h2` by ALPN, HTTP/1.1 otherwise (with upgrades enabled).
pub(crate) async fn connect(
    auth: &Authorized,
    target: &HttpTarget,
    security: &UpstreamSecurity,
) -> Result<Sender, HttpError> {
    let stream = auth.connect_upstream(target.addr, security).await?;
    let h2 = match &stream {
        MaybeTls::Tls { inner } => inner.get_ref().1.alpn_protocol() == Some(b"h2"),
        MaybeTls::Plain { .. } => false,
    };
    let io = TokioIo::new(stream);
    if h2 {
        let (sender, conn) = http2::handshake(TokioExecutor::new(), io).await?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                debug!(error = %e, "upstream HTTP/2 connection ended");
            }
        });
        Ok(Sender::H2(sender))
    } else {
        let (sender, conn) = http1::handshake(io).await?;
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                debug!(error = %e, "upstream HTTP/1.1 connection ended");
            }
        });
        Ok(Sender::H1(sender, None))
    }
}

/// `security` offering only `http/1.1` by ALPN when it offers `h2`: an upgrade needs an
/// HTTP/1.1 connection, which a target offered both would not choose. The verification
/// (roots, pins, name, client certificate) is the same.
pub(crate) fn http1_only(security: &UpstreamSecurity) -> UpstreamSecurity {
    match security {
        UpstreamSecurity::Tls { tls, server_name } if tls.alpn().iter().any(|p| p == b"h2") => {
            UpstreamSecurity::Tls {
                tls: tls.with_alpn(vec![b"http/1.1".to_vec()]),
                server_name: server_name.clone(),
            }
        }
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hoop_core::Resource;
    use hoop_core::tls::{UpstreamRoots, UpstreamTls, UpstreamTlsConfig};

    fn tls(ca: &hoop_testkit::TestCa, alpn: &[&[u8]]) -> UpstreamTls {
        UpstreamTls::new(UpstreamTlsConfig {
            roots: UpstreamRoots::CaPem(ca.cert_pem().as_bytes().to_vec()),
            alpn: alpn.iter().map(|p| p.to_vec()).collect(),
            ..Default::default()
        })
        .unwrap()
    }

    fn target(tls: &UpstreamTls, name: &str, port: u16) -> HttpTarget {
        HttpTarget::new(
            Resource::new("api", "http"),
            ([127, 0, 0, 1], port).into(),
            UpstreamSecurity::Tls {
                tls: tls.clone(),
                server_name: name.into(),
            },
        )
    }

    #[test]
    fn pool_keys_differ_with_any_security_setting() {
        let ca = hoop_testkit::TestCa::new("pool-key");
        let a = tls(&ca, &[b"h2", b"http/1.1"]);
        let key = PoolKey::of(0, &target(&a, "api.internal", 443));
        // The same target and connector: the same key.
        assert_eq!(
            key,
            PoolKey::of(0, &target(&a.clone(), "api.internal", 443))
        );
        // Another name verified, address, route (credential) or connector: another key,
        // even a connector built from equal settings.
        assert_ne!(key, PoolKey::of(0, &target(&a, "other.internal", 443)));
        assert_ne!(key, PoolKey::of(0, &target(&a, "api.internal", 444)));
        assert_ne!(key, PoolKey::of(1, &target(&a, "api.internal", 443)));
        let b = tls(&ca, &[b"h2", b"http/1.1"]);
        assert_ne!(key, PoolKey::of(0, &target(&b, "api.internal", 443)));
        let h1 = http1_only(&target(&a, "api.internal", 443).security);
        let mut t = target(&a, "api.internal", 443);
        t.security = h1;
        assert_ne!(key, PoolKey::of(0, &t));
        let mut plain = target(&a, "api.internal", 443);
        plain.security = UpstreamSecurity::PlaintextOptIn;
        assert_ne!(key, PoolKey::of(0, &plain));
        assert_eq!(PoolKey::of(0, &plain), PoolKey::of(0, &plain.clone()));
    }

    #[test]
    fn upgrades_offer_only_http1() {
        let ca = hoop_testkit::TestCa::new("alpn");
        let both = tls(&ca, &[b"h2", b"http/1.1"]);
        let sec = http1_only(&target(&both, "x", 1).security);
        let UpstreamSecurity::Tls {
            tls: derived,
            server_name,
        } = sec
        else {
            panic!("not TLS")
        };
        assert_eq!(derived.alpn(), [b"http/1.1".to_vec()]);
        assert_eq!(server_name, "x");
        assert_eq!(both.alpn().len(), 2);
        // Already HTTP/1.1 only: the same connector.
        let one = tls(&ca, &[b"http/1.1"]);
        let UpstreamSecurity::Tls { tls: same, .. } = http1_only(&target(&one, "x", 1).security)
        else {
            panic!("not TLS")
        };
        assert!(Arc::ptr_eq(&same.rustls_config(), &one.rustls_config()));
    }
}
