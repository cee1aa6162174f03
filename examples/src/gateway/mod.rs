//! The full gateway, built from the public API of `hoop-core` and `hoop-postgres`:
//! listeners from a TOML [`config::Config`], an admin API ([`admin`]), Prometheus metrics
//! ([`metrics`]), and defaults that need no external service ([`devpki`]).
//!
//! `examples/gateway/main.rs` is a thin `main` around [`run`]; tests start a
//! [`Gateway`] in-process.

pub mod admin;
pub mod config;
pub mod devpki;
pub mod metrics;
pub mod reload;
pub mod reloader;
mod setup;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use hoop_core::approval::InMemoryGate;
use hoop_core::server::{ServerHandle, SessionRegistry, ShutdownReport};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

pub use config::{Config, ConfigError};
use metrics::Metrics;
pub use reloader::{ReloadReport, Reloader};

/// Name of the listener made when the configuration has none.
pub const DEFAULT_LISTENER: &str = "postgres";
/// Bind address of that listener.
pub const DEFAULT_POSTGRES_BIND: &str = "127.0.0.1:15432";
/// Default bind address of the admin API.
pub const DEFAULT_ADMIN_BIND: &str = "127.0.0.1:8443";
/// How long sessions get to finish at shutdown before they are cancelled.
pub const DRAIN_DEADLINE: Duration = Duration::from_secs(30);

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The configuration is wrong (exit code 2).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Something else (files, binding a port, certificates).
    #[error("{0}")]
    Start(String),
}

impl GatewayError {
    /// The process exit code for this error: 2 for configuration errors, 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            GatewayError::Config(_) => 2,
            GatewayError::Start(_) => 1,
        }
    }
}

/// A running gateway.
pub struct Gateway {
    handle: ServerHandle,
    admin_stop: CancellationToken,
    admin_state: Option<Arc<admin::AdminState>>,
    admin_task: Option<tokio::task::JoinHandle<()>>,
    info: GatewayInfo,
    gate: InMemoryGate,
    metrics: Arc<Metrics>,
    reloader: Arc<Reloader>,
}

/// What a started gateway tells its operator.
#[derive(Clone, Debug, Default)]
pub struct GatewayInfo {
    /// The data directory.
    pub data_dir: PathBuf,
    /// The development CA (when a listener or the admin API uses the development
    /// certificate), and whether it was created now.
    pub dev_ca: Option<(PathBuf, bool)>,
    /// The development gateway certificate and key, when used.
    pub dev_cert: Option<(PathBuf, PathBuf)>,
    /// Listeners: name, protocol, bound address, resource names.
    pub listeners: Vec<(String, String, SocketAddr, Vec<String>)>,
    /// Host names an http listener routes by (`hosts = [...]` of its resources): listener
    /// name and host, in configuration order.
    pub http_hosts: Vec<(String, String)>,
    /// The admin API address.
    pub admin: Option<SocketAddr>,
    /// The demo user's token, only when the token file was created now.
    pub demo_token: Option<String>,
    /// The admin token, only when the admin token file was created now.
    pub admin_token: Option<String>,
    /// The static token file.
    pub tokens_file: Option<PathBuf>,
    /// The admin token file (when tokens come from a file).
    pub admin_tokens_file: Option<PathBuf>,
    /// Where recordings go.
    pub recordings: PathBuf,
    /// A description of the policy in force.
    pub policy: String,
    /// A description of the masking in force.
    pub masking: String,
    /// Warnings worth showing at start (plaintext targets, missing secrets).
    pub warnings: Vec<String>,
}

impl Gateway {
    /// Builds everything `config` describes, binds the listeners and starts serving.
    pub async fn start(config: Config) -> Result<Gateway, GatewayError> {
        setup::start(config).await
    }

    /// What the operator should know (addresses, files, one-time tokens).
    pub fn info(&self) -> &GatewayInfo {
        &self.info
    }

    /// The bound address of listener `name`.
    pub fn listener_addr(&self, name: &str) -> Option<SocketAddr> {
        self.handle.local_addr(name)
    }

    /// The admin API address.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.info.admin
    }

    /// The session registry.
    pub fn registry(&self) -> SessionRegistry {
        self.handle.registry()
    }

    /// The approval gate.
    pub fn gate(&self) -> &InMemoryGate {
        &self.gate
    }

    /// The metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// What a reload replaces: each part can be reloaded alone
    /// ([`Reloader::reload_certificates`], [`Reloader::reload_tokens`],
    /// [`Reloader::reload_config`], ...).
    pub fn reloader(&self) -> &Reloader {
        &self.reloader
    }

    /// What SIGHUP (and the admin API's `POST /v1/reload`) does; see
    /// [`Reloader::reload`].
    pub fn reload(&self) -> ReloadReport {
        self.reloader.reload()
    }

    /// Stops accepting, lets sessions drain until `deadline`, then cancels the rest and
    /// stops the admin API.
    pub async fn shutdown(self, deadline: Duration) -> ShutdownReport {
        if let Some(s) = &self.admin_state {
            s.draining.store(true, Ordering::Relaxed);
        }
        let report = self.handle.shutdown(deadline).await;
        self.admin_stop.cancel();
        if let Some(t) = self.admin_task {
            let _ = t.await;
        }
        report
    }

    /// A human-readable summary with what to try.
    pub fn banner(&self) -> String {
        setup::banner(&self.info)
    }
}

/// Runs a gateway until `shutdown` completes or SIGTERM / SIGINT arrives, then drains
/// gracefully ([`DRAIN_DEADLINE`]). SIGHUP reloads certificates, tokens, policy, masking
/// rules and resources ([`Gateway::reload`]). Prints the banner.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> Result<ShutdownReport, GatewayError> {
    let gw = Gateway::start(config).await?;
    // Before the banner: whoever waits for the banner may signal at once, and a signal
    // that came before its handler would take the default action (SIGTERM and SIGHUP
    // end the process on the spot).
    let signals = StopSignals::install();
    {
        // Not println!: a closed stdout must not take the gateway down.
        use std::io::Write as _;
        let mut out = std::io::stdout().lock();
        if let Err(e) = writeln!(out, "{}", gw.banner()).and_then(|()| out.flush()) {
            warn!("cannot print the banner: {e}");
        }
    }
    wait_for_stop(&gw, signals, shutdown).await;
    info!(
        "shutting down: draining sessions for up to {}s",
        DRAIN_DEADLINE.as_secs()
    );
    let report = gw.shutdown(DRAIN_DEADLINE).await;
    info!(?report, "gateway stopped");
    Ok(report)
}

/// The signals that stop or reload the gateway, listened to from installation on.
#[cfg(unix)]
struct StopSignals(
    Option<(
        tokio::signal::unix::Signal,
        tokio::signal::unix::Signal,
        tokio::signal::unix::Signal,
    )>,
);

#[cfg(unix)]
impl StopSignals {
    /// SIGTERM, SIGINT and SIGHUP; `None` inside when they cannot be installed.
    fn install() -> StopSignals {
        use tokio::signal::unix::{SignalKind, signal};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
            signal(SignalKind::hangup()),
        ) {
            (Ok(term), Ok(int), Ok(hup)) => StopSignals(Some((term, int, hup))),
            _ => StopSignals(None),
        }
    }
}

#[cfg(unix)]
async fn wait_for_stop(gw: &Gateway, signals: StopSignals, shutdown: impl Future<Output = ()>) {
    tokio::pin!(shutdown);
    let Some((mut term, mut int, mut hup)) = signals.0 else {
        warn!("cannot install signal handlers; stopping only on request");
        shutdown.await;
        return;
    };
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            _ = term.recv() => { info!("SIGTERM received"); return }
            _ = int.recv() => { info!("SIGINT received"); return }
            _ = hup.recv() => {
                info!("SIGHUP received: reloading certificates, tokens, policy, masking and resources");
                gw.reload();
            }
        }
    }
}

/// Nothing to install: Ctrl-C is listened to while waiting.
#[cfg(not(unix))]
struct StopSignals;

#[cfg(not(unix))]
impl StopSignals {
    fn install() -> StopSignals {
        StopSignals
    }
}

#[cfg(not(unix))]
async fn wait_for_stop(_gw: &Gateway, _signals: StopSignals, shutdown: impl Future<Output = ()>) {
    tokio::select! {
        _ = shutdown => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
