//! Listeners: the accept loop, the per-session task with its span and registry entry.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug, field::Empty, info, warn};

use super::limits::{ConnectionLimits, ConnectionPermit};
use super::registry::SessionRegistry;
use crate::tls::ServerTls;
use crate::{Adapter, ClientConn, Services, SessionCtx, SessionId};

/// Default per-listener connection limit.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// Default handshake timeout (TLS and protocol startup up to authentication).
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Default idle timeout (no byte either way).
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// Pause after an accept error that is not about one connection (e.g. out of file
/// descriptors), before accepting again.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// One listening socket bound to one protocol adapter.
///
/// ```no_run
/// # use std::sync::Arc;
/// # fn example(adapter: Arc<dyn hoop_core::Adapter>) {
/// use hoop_core::server::ListenerConfig;
/// let l = ListenerConfig::new("db", "127.0.0.1:6432".parse().unwrap(), adapter)
///     .max_connections(200);
/// # }
/// ```
#[derive(Clone)]
pub struct ListenerConfig {
    /// Name, for logs and the session span (`listener` field).
    pub name: String,
    /// Address to bind (port 0 picks a free port; see `Server::bound_addrs`).
    pub bind: SocketAddr,
    /// The protocol served on accepted connections.
    pub adapter: Arc<dyn Adapter>,
    /// The listener's TLS endpoint, handed to the adapter in [`SessionCtx::tls`].
    pub tls: Option<ServerTls>,
    /// Most concurrent connections; beyond it a connection is closed at once.
    pub max_connections: usize,
    /// Bound on TLS and protocol startup (up to authentication).
    pub handshake_timeout: Duration,
    /// A session with no byte either way for this long is ended.
    pub idle_timeout: Duration,
}

impl ListenerConfig {
    /// A listener with default limits and timeouts and no TLS.
    pub fn new(name: impl Into<String>, bind: SocketAddr, adapter: Arc<dyn Adapter>) -> Self {
        ListenerConfig {
            name: name.into(),
            bind,
            adapter,
            tls: None,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
        }
    }

    /// Sets the TLS endpoint.
    pub fn tls(mut self, tls: ServerTls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Sets the connection limit.
    pub fn max_connections(mut self, max: usize) -> Self {
        self.max_connections = max;
        self
    }

    /// Sets the handshake timeout.
    pub fn handshake_timeout(mut self, t: Duration) -> Self {
        self.handshake_timeout = t;
        self
    }

    /// Sets the idle timeout.
    pub fn idle_timeout(mut self, t: Duration) -> Self {
        self.idle_timeout = t;
        self
    }
}

impl std::fmt::Debug for ListenerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListenerConfig")
            .field("name", &self.name)
            .field("bind", &self.bind)
            .field("protocol", &self.adapter.protocol())
            .field("tls", &self.tls.is_some())
            .field("max_connections", &self.max_connections)
            .field("handshake_timeout", &self.handshake_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .finish()
    }
}

/// What every session task of a server shares.
#[derive(Clone, Debug)]
pub(crate) struct SessionShared {
    pub(crate) services: Arc<Services>,
    pub(crate) registry: SessionRegistry,
    /// Parent of every session's `ctx.cancel` (fired past the drain deadline).
    pub(crate) sessions_cancel: CancellationToken,
    /// Drops session futures that did not end after cancellation.
    pub(crate) abort: CancellationToken,
    pub(crate) tracker: TaskTracker,
}

/// A bound listener, ready to accept.
pub(crate) struct BoundListener {
    pub(crate) config: ListenerConfig,
    pub(crate) listener: TcpListener,
    pub(crate) local: SocketAddr,
    pub(crate) limits: ConnectionLimits,
}

/// Accepts until `stop` fires, then drops the listening socket (new connections are
/// refused by the kernel from then on).
pub(crate) async fn accept_loop(
    bound: BoundListener,
    shared: SessionShared,
    stop: CancellationToken,
) {
    let BoundListener {
        config,
        listener,
        local,
        limits,
    } = bound;
    let config = Arc::new(config);
    info!(listener = %config.name, addr = %local, protocol = config.adapter.protocol(), "listening");
    loop {
        let accepted = tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            r = listener.accept() => r,
        };
        match accepted {
            Ok((stream, peer)) => match limits.try_admit() {
                Ok(permit) => start_session(stream, peer, local, permit, &config, &shared),
                Err(hit) => {
                    warn!(
                        listener = %config.name,
                        %peer,
                        limit = hit.as_str(),
                        "connection limit reached; closing the new connection"
                    );
                    drop(stream);
                }
            },
            Err(e) if is_per_connection(&e) => {
                debug!(listener = %config.name, error = %e, "accept: connection failed early");
            }
            Err(e) => {
                warn!(listener = %config.name, error = %e, "accept failed; retrying shortly");
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep(ACCEPT_RETRY) => {}
                }
            }
        }
    }
    drop(listener);
    info!(listener = %config.name, addr = %local, "stopped accepting");
}

/// Errors that concern one connection only; accepting again at once is right.
fn is_per_connection(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::Interrupted
    )
}

fn start_session(
    stream: TcpStream,
    peer: SocketAddr,
    local: SocketAddr,
    permit: ConnectionPermit,
    config: &Arc<ListenerConfig>,
    shared: &SessionShared,
) {
    if let Err(e) = stream.set_nodelay(true) {
        debug!(%peer, error = %e, "TCP_NODELAY not set");
    }
    let local = stream.local_addr().unwrap_or(local);
    let id = SessionId::new();
    let protocol = config.adapter.protocol();
    let span = tracing::info_span!(
        "session",
        session = %id,
        peer = %peer,
        listener = %config.name,
        protocol = protocol,
        user = Empty,
        resource = Empty,
    );
    let cancel = shared.sessions_cancel.child_token();
    let handle = shared.registry.register(id, protocol, peer, cancel.clone());
    let ctx = SessionCtx {
        id,
        peer,
        services: shared.services.clone(),
        tls: config.tls.clone(),
        cancel,
        handle: handle.clone(),
        span: span.clone(),
        handshake_timeout: config.handshake_timeout,
        idle_timeout: config.idle_timeout,
    };
    let conn = ClientConn {
        stream,
        peer,
        local,
    };
    let adapter = config.adapter.clone();
    let abort = shared.abort.clone();
    shared.tracker.spawn(async move {
        let started = Instant::now();
        span.in_scope(|| debug!("session started"));
        let serve = adapter.serve(conn, ctx).instrument(span.clone());
        let result = tokio::select! {
            r = serve => r,
            _ = abort.cancelled() => Err(crate::Error::Ended("aborted at shutdown")),
        };
        let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        match &result {
            Ok(()) => {
                let reason = handle.end_reason().unwrap_or_else(|| String::from("closed"));
                info!(parent: &span, duration_ms, outcome = "ok", reason = %reason, "session ended");
            }
            Err(e) => {
                if handle.end_reason().is_none() {
                    handle.set_end_reason(e.to_string());
                }
                info!(parent: &span, duration_ms, outcome = "error", error = %e, "session ended");
            }
        }
        // Free the slot before the registry entry ends, so a client that sees the session
        // gone can connect again.
        drop(permit);
        drop(handle);
    });
}
