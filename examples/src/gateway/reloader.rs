//! What a reload does: certificates, static tokens and, when the gateway was started
//! from a file, its policy, masking rules, resources and session settings. Shared by the
//! SIGHUP handler ([`super::Gateway::reload`]) and the admin API (`POST /v1/reload`).

use std::path::PathBuf;
use std::sync::Arc;

use hoop_core::tls::ServerTls;
use tracing::{error, info, warn};

use super::config::{self, Config, ConfigError};
use super::metrics::Metrics;
use super::{GatewayError, GatewayInfo, reload, setup};

/// What [`Reloader::adapters_of`] builds: each staying listener with its new adapter and
/// the names of its resources; what only a restart changes; warnings.
type Rebuilt<'g> = (
    Vec<(&'g ServedListener, Arc<dyn hoop_core::Adapter>, Vec<String>)>,
    Vec<String>,
    Vec<String>,
);

/// A listener as started, with the adapter a reload replaces.
pub(crate) struct ServedListener {
    /// Its section as the gateway started with it (bind address, protocol and TLS
    /// change only with a restart).
    pub(crate) section: config::ListenerSection,
    pub(crate) adapter: Arc<reload::SwappableAdapter>,
    /// The cancel keys of a postgres listener, shared by its successive adapters.
    pub(crate) cancels: Option<hoop_postgres::cancel::CancelRegistry>,
}

/// The parts of a running gateway a reload replaces, and how to rebuild them.
pub struct Reloader {
    pub(crate) tls: Vec<(String, ServerTls)>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) policy: Arc<reload::SwappablePolicy>,
    pub(crate) services: Arc<reload::SessionServices>,
    pub(crate) tokens: Arc<reload::SwappableTokens>,
    pub(crate) tokens_file: Option<PathBuf>,
    pub(crate) source: Option<PathBuf>,
    pub(crate) listeners: Vec<ServedListener>,
}

/// What a [`Reloader::reload`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReloadReport {
    /// The endpoints whose certificate did not load (they keep the current one).
    pub certificates_failed: Vec<String>,
    /// The number of static tokens in force, or why the file did not load (the current
    /// table stays).
    pub tokens: Result<usize, String>,
    /// `None` when the gateway was not started from a file. Else what waits for a
    /// restart, or why the file did not load (nothing of it changed).
    pub configuration: Option<Result<Vec<String>, String>>,
}

impl ReloadReport {
    /// Whether everything reloaded.
    pub fn is_complete(&self) -> bool {
        self.certificates_failed.is_empty()
            && self.tokens.is_ok()
            && !matches!(self.configuration, Some(Err(_)))
    }

    /// The report as JSON (the admin API's answer).
    pub fn to_json(&self) -> serde_json::Value {
        let result = |r: Result<serde_json::Value, &String>| match r {
            Ok(v) => serde_json::json!({ "reloaded": true, "detail": v }),
            Err(e) => serde_json::json!({ "reloaded": false, "error": e }),
        };
        serde_json::json!({
            "complete": self.is_complete(),
            "certificates": { "failed": self.certificates_failed },
            "tokens": result(self.tokens.as_ref().map(|n| serde_json::json!({ "count": n }))),
            "configuration": match &self.configuration {
                None => serde_json::json!({ "reloaded": false, "error": "not started from a file" }),
                Some(r) => result(r.as_ref().map(|later| serde_json::json!({ "waits_for_restart": later }))),
            },
        })
    }
}

impl Reloader {
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
    /// has none), and nothing else ([`reload_config`](Self::reload_config) replaces
    /// everything a reload covers).
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
    pub fn reload(&self) -> ReloadReport {
        let certificates_failed = self.reload_certificates();
        if certificates_failed.is_empty() {
            info!("certificates reloaded");
        }
        let tokens = self.reload_tokens();
        if let Err(e) = &tokens {
            warn!("static tokens not reloaded: {e}");
        }
        let configuration = self.source.as_ref().map(|path| {
            let result = config::load(path)
                .map_err(GatewayError::from)
                .and_then(|c| self.reload_config(&c));
            result.map_err(|e| {
                error!(
                    file = %path.display(),
                    "configuration not reloaded, the current policy, masking rules and resources stay in force: {e}"
                );
                e.to_string()
            })
        });
        ReloadReport {
            certificates_failed,
            tokens,
            configuration,
        }
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
