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
mod setup;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use hoop_core::approval::InMemoryGate;
use hoop_core::server::{ServerHandle, SessionRegistry, ShutdownReport};
use hoop_core::tls::ServerTls;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

pub use config::{Config, ConfigError};
use metrics::Metrics;

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
    tls: Vec<(String, ServerTls)>,
    info: GatewayInfo,
    gate: InMemoryGate,
    metrics: Arc<Metrics>,
    policy: Arc<reload::SwappablePolicy>,
    services: Arc<reload::SessionServices>,
    tokens: Arc<reload::SwappableTokens>,
    tokens_file: Option<PathBuf>,
    source: Option<PathBuf>,
    listeners: Vec<ServedListener>,
}

/// What [`Gateway::adapters_of`] builds: each staying listener with its new adapter and
/// the names of its resources; what only a restart changes; warnings.
type Rebuilt<'g> = (
    Vec<(&'g ServedListener, Arc<dyn hoop_core::Adapter>, Vec<String>)>,
    Vec<String>,
    Vec<String>,
);

/// A listener as started, with the adapter a reload replaces.
struct ServedListener {
    /// Its section as the gateway started with it (bind address, protocol and TLS
    /// change only with a restart).
    section: config::ListenerSection,
    adapter: Arc<reload::SwappableAdapter>,
    /// The cancel keys of a postgres listener, shared by its successive adapters.
    cancels: Option<hoop_postgres::cancel::CancelRegistry>,
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

    /// Re-reads every TLS certificate (listeners and admin API). A failed reload keeps
    /// the current certificate; the names of the endpoints that failed are returned.
    pub fn reload_certificates(&self) -> Vec<String> {
        let mut failed = Vec::new();
        for (name, tls) in &self.tls {
            match tls.reload() {
                Ok(()) => info!(endpoint = %name, "TLS certificate reloaded"),
                Err(e) => {
                    warn!(endpoint = %name, error = %e, "TLS certificate reload failed; keeping the current one");
                    failed.push(name.clone());
                }
            }
        }
        failed
    }

    /// Replaces the policy with the `[policy]` of `config` (the built-in default when it
    /// has none). Other sections need a restart to take effect, except masking
    /// ([`reload_masking`](Self::reload_masking)).
    pub fn reload_policy(&self, config: &Config) -> Result<(), ConfigError> {
        let (policy, text) = policy_of(config)?;
        self.policy.replace(policy);
        info!(policy = %text, "policy reloaded");
        Ok(())
    }

    /// Replaces the masking rules with the `[masking]` of `config` (none when it has no
    /// such section) for the sessions that start from now on; sessions already running
    /// keep the rules they started with. A section that does not build is an error and
    /// the current rules stay in force.
    pub fn reload_masking(&self, config: &Config) -> Result<(), ConfigError> {
        let (masker, text) = setup::masker_of(config, &self.metrics)?;
        self.install_masker(masker, &text, config.masking.is_some());
        Ok(())
    }

    fn install_masker(&self, masker: Arc<dyn hoop_core::Masker>, text: &str, on: bool) {
        self.services.replace_masker(masker);
        if on {
            info!(masking = %text, "masking reloaded");
        } else {
            warn!("masking reloaded: off (the configuration has no [masking] section)");
        }
    }

    /// Replaces the policy, the masking rules, the resources behind each listener and
    /// the session settings (`identity.end_sessions_at_expiry`,
    /// `approvals.hold_seconds`) with those of `config`, all or nothing: when any part
    /// does not build, nothing changes and the error is returned.
    ///
    /// New connections are served with the new resources; sessions already running keep
    /// their target, their masking rules and their settings to their end, and a
    /// PostgreSQL cancel for them is still routed. A listener's own settings (bind
    /// address, protocol, TLS, limits) and listeners added or removed take effect at the
    /// next restart: each such difference is returned, and logged.
    pub fn reload_config(&self, config: &Config) -> Result<Vec<String>, GatewayError> {
        config.check()?;
        let (policy, policy_text) = policy_of(config)?;
        let (masker, masking_text) = setup::masker_of(config, &self.metrics)?;
        let (adapters, later, warnings) = self.adapters_of(config)?;
        self.policy.replace(policy);
        info!(policy = %policy_text, "policy reloaded");
        self.install_masker(masker, &masking_text, config.masking.is_some());
        self.services.update(|s| setup::session_settings(config, s));
        for (served, adapter, resources) in adapters {
            served.adapter.replace(adapter);
            info!(listener = %served.section.name, resources = %resources.join(", "), "resources reloaded");
        }
        for w in warnings.iter().chain(&later) {
            warn!("{w}");
        }
        Ok(later)
    }

    /// New adapters for the listeners that stay (with the names of their resources),
    /// what only a restart changes, and warnings about the new resources (plaintext
    /// targets, missing secrets).
    fn adapters_of(&self, config: &Config) -> Result<Rebuilt<'_>, GatewayError> {
        let listeners = setup::listeners_of(config);
        let mut scratch = GatewayInfo::default();
        let (mut built, mut later) = (Vec::new(), Vec::new());
        for served in &self.listeners {
            let name = &served.section.name;
            let Some((i, l)) = listeners.iter().enumerate().find(|(_, l)| &l.name == name) else {
                later.push(format!(
                    "listener {name:?} is no longer configured: it serves its resources as they were until the gateway restarts"
                ));
                continue;
            };
            if l.protocol != served.section.protocol {
                later.push(format!(
                    "listener {name:?} changes protocol ({} to {}): it serves its resources as they were until the gateway restarts",
                    served.section.protocol, l.protocol
                ));
                continue;
            }
            if l != &served.section {
                later.push(format!(
                    "listener {name:?}: a new bind address, TLS or limit takes effect when the gateway restarts"
                ));
            }
            let a = setup::adapter_of(config, i, l, &mut scratch, served.cancels.as_ref())?;
            let resources = setup::resources_of(config, name)
                .into_iter()
                .map(|(_, r)| r.name.clone())
                .collect();
            built.push((served, a.adapter, resources));
        }
        for l in &listeners {
            if !self.listeners.iter().any(|s| s.section.name == l.name) {
                later.push(format!(
                    "listener {:?} is new: it starts when the gateway restarts",
                    l.name
                ));
            }
        }
        Ok((built, later, scratch.warnings))
    }

    /// Re-reads the static token file (`identity.static_tokens_file`): added tokens work
    /// and removed ones stop working for new sessions. A bad file keeps the current table.
    pub fn reload_tokens(&self) -> Result<usize, String> {
        let Some(path) = &self.tokens_file else {
            return Ok(self.tokens.len());
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let t = hoop_core::auth::StaticTokenAuthenticator::parse(&text)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let n = t.len();
        self.tokens.replace(t);
        info!(tokens = n, file = %path.display(), "static tokens reloaded");
        Ok(n)
    }

    /// SIGHUP: reloads the certificates, the static tokens and, when the gateway was
    /// started from a file, the policy, masking rules, resources and session settings of
    /// that file ([`reload_config`](Self::reload_config)). A file that does not load (a
    /// broken policy, masking or resource section among others) changes none of them,
    /// and the error is logged.
    pub fn reload(&self) {
        let failed = self.reload_certificates();
        if failed.is_empty() {
            info!("certificates reloaded");
        }
        if let Err(e) = self.reload_tokens() {
            warn!("static tokens not reloaded: {e}");
        }
        if let Some(path) = &self.source {
            let result = config::load(path)
                .map_err(GatewayError::from)
                .and_then(|c| self.reload_config(&c));
            if let Err(e) = result {
                error!(
                    file = %path.display(),
                    "configuration not reloaded, the current policy, masking rules and resources stay in force: {e}"
                );
            }
        }
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

/// The policy of `config` (the built-in default when it has none) and a description.
fn policy_of(config: &Config) -> Result<(Arc<dyn hoop_core::Policy>, String), ConfigError> {
    Ok(match &config.policy {
        Some(p) => {
            let rp = hoop_core::policy::RulePolicy::from_config(p).map_err(|e| {
                ConfigError::new(
                    format!("policy.rules[{}].{}", e.index.saturating_sub(1), e.key),
                    e.message,
                )
            })?;
            let n = rp.rules().len();
            (Arc::new(rp), format!("{n} rule(s)"))
        }
        None => (
            Arc::new(setup::default_policy()),
            String::from("built-in default"),
        ),
    })
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
