//! [`Server`] and its builder: binds the listeners and starts serving.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::limits::{ConnectionLimits, MAX_LIMIT};
use super::listener::{BoundListener, ListenerConfig, SessionShared, accept_loop};
use super::registry::SessionRegistry;
use super::shutdown::{ServerHandle, ShutdownReport};
use crate::{Error, Services};

/// Default time sessions get to end after their cancellation token fired at shutdown,
/// before their tasks are dropped.
pub const DEFAULT_CANCEL_GRACE: Duration = Duration::from_secs(5);

/// Builds a [`Server`].
#[derive(Debug, Default)]
pub struct ServerBuilder {
    services: Option<Arc<Services>>,
    listeners: Vec<ListenerConfig>,
    max_connections: Option<usize>,
    registry: Option<SessionRegistry>,
    cancel_grace: Option<Duration>,
}

impl ServerBuilder {
    /// The services every session uses (required).
    pub fn services(mut self, services: Arc<Services>) -> Self {
        self.services = Some(services);
        self
    }

    /// Adds a listener (at least one is required).
    pub fn listener(mut self, listener: ListenerConfig) -> Self {
        self.listeners.push(listener);
        self
    }

    /// A limit on connections over all listeners, on top of each listener's own.
    pub fn max_connections(mut self, max: usize) -> Self {
        self.max_connections = Some(max);
        self
    }

    /// Uses `registry` for the sessions (to share one with an admin API built earlier).
    /// By default the server makes its own; see [`Server::registry`].
    pub fn registry(mut self, registry: SessionRegistry) -> Self {
        self.registry = Some(registry);
        self
    }

    /// How long sessions get to end after cancellation at shutdown before their tasks are
    /// dropped (default [`DEFAULT_CANCEL_GRACE`]).
    pub fn cancel_grace(mut self, grace: Duration) -> Self {
        self.cancel_grace = Some(grace);
        self
    }

    /// Checks the configuration and binds every listener.
    pub async fn build(self) -> Result<Server, Error> {
        let services = self
            .services
            .ok_or_else(|| Error::Config(String::from("server: services are required")))?;
        if self.listeners.is_empty() {
            return Err(Error::Config(String::from(
                "server: at least one listener is required",
            )));
        }
        let global = match self.max_connections {
            Some(0) => {
                return Err(Error::Config(String::from(
                    "server: max_connections must be at least 1",
                )));
            }
            Some(n) => Some(Arc::new(Semaphore::new(n.min(MAX_LIMIT)))),
            None => None,
        };
        let mut bound = Vec::with_capacity(self.listeners.len());
        for l in self.listeners {
            validate(&l)?;
            if bound
                .iter()
                .any(|b: &BoundListener| b.config.name == l.name)
            {
                return Err(Error::Config(format!(
                    "listener {:?}: duplicate listener name",
                    l.name
                )));
            }
            let listener = TcpListener::bind(l.bind).await.map_err(|e| {
                Error::Io(io::Error::new(
                    e.kind(),
                    format!("listener {:?}: bind {}: {e}", l.name, l.bind),
                ))
            })?;
            let local = listener.local_addr()?;
            let limits = ConnectionLimits::new(l.max_connections, global.clone());
            bound.push(BoundListener {
                config: l,
                listener,
                local,
                limits,
            });
        }
        Ok(Server {
            listeners: bound,
            shared: SessionShared {
                services,
                registry: self.registry.unwrap_or_default(),
                sessions_cancel: CancellationToken::new(),
                abort: CancellationToken::new(),
                tracker: TaskTracker::new(),
            },
            cancel_grace: self.cancel_grace.unwrap_or(DEFAULT_CANCEL_GRACE),
        })
    }
}

fn validate(l: &ListenerConfig) -> Result<(), Error> {
    let bad = |what: &str| Err(Error::Config(format!("listener {:?}: {what}", l.name)));
    if l.max_connections == 0 {
        return bad("max_connections must be at least 1");
    }
    if l.handshake_timeout.is_zero() {
        return bad("handshake_timeout must not be zero");
    }
    if l.idle_timeout.is_zero() {
        return bad("idle_timeout must not be zero");
    }
    Ok(())
}

/// A gateway server: bound listeners, each serving one [`crate::Adapter`], with
/// connection limits, session registry and graceful shutdown.
///
/// ```no_run
/// # async fn example(services: std::sync::Arc<hoop_core::Services>,
/// #                  adapter: std::sync::Arc<dyn hoop_core::Adapter>) -> Result<(), hoop_core::Error> {
/// use std::time::Duration;
/// use hoop_core::server::{ListenerConfig, Server};
///
/// let server = Server::builder()
///     .services(services)
///     .listener(ListenerConfig::new("tcp", "127.0.0.1:0".parse().unwrap(), adapter))
///     .build()
///     .await?;
/// println!("listening on {:?}", server.bound_addrs());
/// let handle = server.spawn();
/// // ... later:
/// let report = handle.shutdown(Duration::from_secs(30)).await;
/// println!("{report:?}");
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Server {
    listeners: Vec<BoundListener>,
    shared: SessionShared,
    cancel_grace: Duration,
}

impl std::fmt::Debug for BoundListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BoundListener")
            .field("config", &self.config)
            .field("local", &self.local)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// A builder.
    pub fn builder() -> ServerBuilder {
        ServerBuilder::default()
    }

    /// The registry of this server's sessions (list, inspect, kill).
    pub fn registry(&self) -> SessionRegistry {
        self.shared.registry.clone()
    }

    /// The bound addresses, in the order the listeners were added (the real port when
    /// bound to port 0).
    pub fn bound_addrs(&self) -> Vec<SocketAddr> {
        self.listeners.iter().map(|l| l.local).collect()
    }

    /// The bound address of the listener named `name`.
    pub fn local_addr(&self, name: &str) -> Option<SocketAddr> {
        self.listeners
            .iter()
            .find(|l| l.config.name == name)
            .map(|l| l.local)
    }

    /// Starts accepting on every listener in background tasks (on the current Tokio
    /// runtime: call it from async code) and returns the handle that stops them.
    pub fn spawn(self) -> ServerHandle {
        let stop_accept = CancellationToken::new();
        let names: Vec<(String, SocketAddr)> = self
            .listeners
            .iter()
            .map(|l| (l.config.name.clone(), l.local))
            .collect();
        let accept_tasks = self
            .listeners
            .into_iter()
            .map(|l| tokio::spawn(accept_loop(l, self.shared.clone(), stop_accept.clone())))
            .collect();
        ServerHandle::new(
            self.shared,
            stop_accept,
            accept_tasks,
            names,
            self.cancel_grace,
        )
    }

    /// Serves until `shutdown` completes, then shuts down gracefully: stops accepting,
    /// lets live sessions drain for up to `drain_deadline`, then cancels the rest.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()>,
        drain_deadline: Duration,
    ) -> ShutdownReport {
        let handle = self.spawn();
        shutdown.await;
        handle.shutdown(drain_deadline).await
    }
}
