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

/// The connections of one session.
pub(crate) struct Pool {
    h2: Mutex<Option<http2::SendRequest<Body>>>,
    idle_h1: Mutex<Vec<(http1::SendRequest<Body>, Option<OwnedSemaphorePermit>)>>,
    max_idle: usize,
    conns: Arc<Semaphore>,
    returned: Notify,
}

impl Pool {
    pub(crate) fn new(max_conns: usize) -> Self {
        let max_conns = max_conns.max(1);
        Pool {
            h2: Mutex::new(None),
            idle_h1: Mutex::new(Vec::new()),
            max_idle: max_conns,
            conns: Arc::new(Semaphore::new(max_conns)),
            returned: Notify::new(),
        }
    }

    /// A pooled connection, or a new one when fewer than `max_conns` are open, or the
    /// first one given back.
    pub(crate) async fn get(
        &self,
        auth: &Authorized,
        target: &HttpTarget,
    ) -> Result<Sender, HttpError> {
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
