//! Turns a [`Config`] into running services: authenticators, policy, recorder, approval
//! gate, adapters, listeners and the admin API.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use hoop_core::approval::{GateConfig, InMemoryGate, WebhookConfig, WebhookNotifier};
use hoop_core::auth::{
    AuthenticatorChain, CertSubjectSource, ClientCertAuthenticator, JwksCache, JwksOptions,
    OidcAuthenticator, OidcConfig, StaticToken, StaticTokenAuthenticator, generate_token,
};
use hoop_core::http_client::HttpsClient;
use hoop_core::masking::{Masker, NoMasking, RuleMasker};
use hoop_core::policy::{ActionMatch, Rule, RulePolicy};
use hoop_core::recording::{JsonlRecorder, WriterConfig};
use hoop_core::sequence::UpstreamSecurity;
use hoop_core::server::{ListenerConfig, Server};
use hoop_core::tcp::{TcpAdapter, TcpAdapterConfig};
use hoop_core::tls::{
    ServerTls, ServerTlsConfig, UpstreamRoots, UpstreamTls, UpstreamTlsConfig, parse_spki_pin,
};
use hoop_core::{ActionClass, Adapter, Policy, Resource, Services};
use hoop_http::{HttpAdapter, HttpOptions, HttpTarget, UpstreamCredential};
use hoop_postgres::cancel::CancelRegistry;
use hoop_postgres::{PostgresAdapter, PostgresOptions, PostgresTarget, Secret};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::config::{
    Config, ConfigError, ListenerSection, ResourceSection, ServerTlsSection, resolve,
};
use super::devpki::{self, DevPki};
use super::metrics::{CountingAdapter, CountingMasker, CountingPolicy, Metrics, ObservingRecorder};
use super::reload::{
    SessionServices, SnapshotAdapter, SwappableAdapter, SwappablePolicy, SwappableTokens,
};
use super::reloader::{Reloader, ServedListener};
use super::{
    DEFAULT_ADMIN_BIND, DEFAULT_LISTENER, DEFAULT_POSTGRES_BIND, Gateway, GatewayError,
    GatewayInfo, admin,
};

fn start_err(what: impl std::fmt::Display) -> GatewayError {
    GatewayError::Start(what.to_string())
}

/// The data directory: `[data] dir`, else `$HOOP_DATA`, else `./hoop-data`.
pub(crate) fn data_dir(config: &Config) -> PathBuf {
    config
        .data
        .dir
        .clone()
        .or_else(|| std::env::var_os("HOOP_DATA").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("hoop-data"))
}

/// Lazily made development PKI.
struct Pki {
    dir: PathBuf,
    made: Option<DevPki>,
}

impl Pki {
    fn get(&mut self) -> Result<DevPki, GatewayError> {
        if let Some(p) = &self.made {
            return Ok(p.clone());
        }
        let p = devpki::ensure(&self.dir).map_err(start_err)?;
        if p.created {
            info!(ca = %p.ca_cert.display(), "development CA and gateway certificate created");
        }
        self.made = Some(p.clone());
        Ok(p)
    }

    /// A TLS endpoint from `section`, or from the development certificate.
    fn server_tls(
        &mut self,
        key: &str,
        section: Option<&ServerTlsSection>,
        alpn: Vec<Vec<u8>>,
    ) -> Result<ServerTls, GatewayError> {
        let (cert_path, key_path) = match section.and_then(|s| s.cert.clone().zip(s.key.clone())) {
            Some(pair) => pair,
            None => {
                let p = self.get()?;
                (p.cert, p.key)
            }
        };
        ServerTls::new(ServerTlsConfig {
            cert_path,
            key_path,
            client_ca_path: section.and_then(|s| s.client_ca.clone()),
            alpn,
            ..Default::default()
        })
        .map_err(|e| ConfigError::new(format!("{key}.tls"), e.to_string()).into())
    }
}

/// The policy used when the configuration has no `[policy]`.
pub(crate) fn default_policy() -> RulePolicy {
    RulePolicy::new(vec![
        Rule::allow("connect").actions(ActionMatch::connect()),
        Rule::allow("read-write").actions(ActionMatch::classes([
            ActionClass::Read,
            ActionClass::Write,
        ])),
        Rule::review(
            "schema-and-destructive",
            "schema changes and destructive statements need an approval",
        )
        .actions(ActionMatch::classes([
            ActionClass::Ddl,
            ActionClass::Destructive,
        ])),
    ])
}

const DEFAULT_POLICY_TEXT: &str = "built-in default: connect, read and write allowed; ddl and destructive held for approval; admin and unknown denied";

fn read_tokens(path: &Path) -> Result<String, GatewayError> {
    std::fs::read_to_string(path)
        .map_err(|e| start_err(format!("cannot read token file {}: {e}", path.display())))
}

/// Creates `path` with one new token for `subject` (in `groups`) unless it exists.
/// Returns the token when it was created.
fn ensure_token_file(
    path: &Path,
    subject: &str,
    groups: &[&str],
) -> Result<Option<String>, GatewayError> {
    if path.exists() {
        return Ok(None);
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(start_err)?;
    }
    let (token, hash) = generate_token().map_err(start_err)?;
    let entry = StaticToken::new(subject, &hash)
        .map_err(start_err)?
        .with_groups(groups.iter().copied());
    let text = format!(
        "# hoop static tokens: subject:groups:sha256(token)[:expires]. Only hashes are stored.\n{}\n",
        entry.to_line()
    );
    devpki::write_private(path, &text)
        .map_err(|e| start_err(format!("cannot write {}: {e}", path.display())))?;
    Ok(Some(token))
}

pub(crate) async fn start(config: Config) -> Result<Gateway, GatewayError> {
    config.check()?;
    hoop_core::install_crypto_provider();
    let data = data_dir(&config);
    std::fs::create_dir_all(&data).map_err(|e| {
        start_err(format!(
            "cannot create data directory {}: {e}",
            data.display()
        ))
    })?;
    let mut pki = Pki {
        dir: data.clone(),
        made: None,
    };
    let mut info = GatewayInfo {
        data_dir: data.clone(),
        ..Default::default()
    };
    let metrics = Metrics::new();

    // Identity: OIDC issuers, then static tokens, then client certificates.
    let mut chain = AuthenticatorChain::new();
    for (i, o) in config.identity.oidc.iter().enumerate() {
        let key = format!("identity.oidc[{i}]");
        let tls = upstream_tls(&format!("{key}.ca_file"), o.ca_file.as_deref(), &[])?;
        let mut c = OidcConfig::new(&o.issuer, &o.audience, tls);
        if let Some(u) = &o.jwks_url {
            c = c.with_jwks_url(u);
        }
        if let Some(g) = &o.groups_claim {
            c = c.with_groups_claim(g);
        }
        if let Some(s) = &o.subject_claim {
            c = c.with_subject_claim(s);
        }
        let mut jwks = JwksOptions::default();
        if let Some(s) = o.jwks_min_refresh_seconds {
            jwks.min_refresh_interval = Duration::from_secs(s);
        }
        if let Some(s) = o.jwks_refresh_seconds {
            jwks.refresh_interval = Duration::from_secs(s);
        }
        c = c.with_jwks_options(jwks);
        let a = OidcAuthenticator::new(c).map_err(|e| ConfigError::new(key, e.to_string()))?;
        warm_up(o.issuer.clone(), a.jwks().clone());
        chain = chain.push(a);
    }
    let tokens_file = match &config.identity.static_tokens_file {
        Some(p) => p.clone(),
        None => {
            let p = data.join("tokens");
            info.demo_token = ensure_token_file(&p, "demo", &["dev"])?;
            p
        }
    };
    let tokens = StaticTokenAuthenticator::parse(&read_tokens(&tokens_file)?).map_err(|e| {
        ConfigError::new(
            "identity.static_tokens_file",
            format!("{}: {e}", tokens_file.display()),
        )
    })?;
    info.tokens_file = Some(tokens_file.clone());
    let tokens = Arc::new(SwappableTokens::new(tokens));
    chain = chain.push(SharedAuth(tokens.clone()));
    if config.identity.client_certificates {
        chain = chain.push(ClientCertAuthenticator::new(CertSubjectSource::CommonName));
    }

    // Policy, masking, recording, approvals: each observed by a metrics decorator.
    let (policy, policy_text): (Arc<dyn Policy>, String) = match &config.policy {
        Some(p) => {
            let rp = RulePolicy::from_config(p).map_err(|e| {
                ConfigError::new(
                    format!("policy.rules[{}].{}", e.index.saturating_sub(1), e.key),
                    e.message,
                )
            })?;
            let n = rp.rules().len();
            (
                Arc::new(rp),
                format!("{n} rule(s) from the configuration; anything else denied"),
            )
        }
        None => (Arc::new(default_policy()), DEFAULT_POLICY_TEXT.to_owned()),
    };
    info.policy = policy_text;
    let recordings = config
        .recording
        .dir
        .clone()
        .unwrap_or_else(|| data.join("recordings"));
    std::fs::create_dir_all(&recordings).map_err(|e| {
        start_err(format!(
            "cannot create recording directory {}: {e}",
            recordings.display()
        ))
    })?;
    info.recordings = recordings.clone();
    let recorder = JsonlRecorder::new(&recordings).with_writer(WriterConfig {
        fail_closed: config.recording.fail_closed,
        ..WriterConfig::default()
    });
    let ap = &config.approvals;
    let gate_config = GateConfig {
        grant_duration: Duration::from_secs(ap.grant_seconds.unwrap_or(900)),
        reviewer_groups: ap.reviewer_groups.clone(),
        ..GateConfig::default()
    };
    let mut gate_builder = InMemoryGate::builder(gate_config);
    if let Some(url) = &ap.webhook_url {
        let tls = upstream_tls(
            "approvals.webhook_ca_file",
            ap.webhook_ca_file.as_deref(),
            &[],
        )?;
        let n = WebhookNotifier::new(WebhookConfig::new(url), HttpsClient::new(tls))
            .map_err(|e| ConfigError::new("approvals.webhook_url", e.to_string()))?;
        gate_builder = gate_builder.notifier(n);
    }
    let gate = gate_builder.build();

    let mut services = Services::new(Arc::new(chain));
    let swappable = Arc::new(SwappablePolicy::new(policy));
    services.policy = Arc::new(CountingPolicy::new(swappable.clone(), metrics.clone()));
    let (masker, masking_text) = masker_of(&config, &metrics)?;
    info.masking = masking_text;
    services.masker = masker;
    services.recorder = Arc::new(ObservingRecorder::new(Arc::new(recorder), metrics.clone()));
    services.approvals = Arc::new(gate.clone());
    session_settings(&config, &mut services);

    // Listeners and their adapters.
    let listeners = listeners_of(&config);
    let services = Arc::new(services);
    let session_services = Arc::new(SessionServices::new(services.clone()));
    let mut builder = Server::builder().services(services);
    let mut tls_endpoints = Vec::new();
    let mut listed = Vec::new();
    let mut served = Vec::new();
    for (i, l) in listeners.iter().enumerate() {
        let key = format!("listeners[{i}]");
        let resources = resources_of(&config, &l.name);
        let built = adapter_of(&config, i, l, &mut info, None)?;
        let adapter = Arc::new(SwappableAdapter::new(built.adapter));
        served.push(ServedListener {
            section: l.clone(),
            adapter: adapter.clone(),
            cancels: built.cancels,
        });
        let alpn = match l.protocol.as_str() {
            "postgres" => vec![b"postgresql".to_vec()],
            "http" => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
            _ => Vec::new(),
        };
        if l.tls.as_ref().is_none_or(|t| t.cert.is_none()) {
            let p = pki.get()?;
            info.dev_ca = Some((p.ca_cert.clone(), p.created));
            info.dev_cert = Some((p.cert.clone(), p.key.clone()));
        }
        let tls = pki.server_tls(&key, l.tls.as_ref(), alpn)?;
        tls_endpoints.push((format!("listener {}", l.name), tls.clone()));
        let bind = l.bind.parse().map_err(|_| {
            ConfigError::new(
                format!("{key}.bind"),
                format!("invalid socket address {:?}", l.bind),
            )
        })?;
        let mut lc = ListenerConfig::new(
            l.name.clone(),
            bind,
            Arc::new(CountingAdapter::new(
                Arc::new(SnapshotAdapter::new(adapter, session_services.clone())),
                &l.name,
                metrics.clone(),
            )),
        )
        .tls(tls);
        if let Some(m) = l.max_connections {
            lc = lc.max_connections(m);
        }
        if let Some(t) = l.idle_timeout {
            lc = lc.idle_timeout(Duration::from_secs(t));
        }
        builder = builder.listener(lc);
        if l.protocol == "http" {
            for (_, r) in &resources {
                for h in r.hosts.iter().flatten() {
                    info.http_hosts.push((l.name.clone(), h.clone()));
                }
            }
        }
        listed.push((
            l.name.clone(),
            l.protocol.clone(),
            resources
                .iter()
                .map(|(_, r)| r.name.clone())
                .collect::<Vec<_>>(),
        ));
    }
    let server = builder.build().await.map_err(start_err)?;
    for (name, protocol, res) in listed {
        if let Some(addr) = server.local_addr(&name) {
            info.listeners.push((name, protocol, addr, res));
        }
    }
    let registry = server.registry();

    // The admin API.
    let admin_stop = CancellationToken::new();
    let mut admin_state = None;
    let mut admin_task = None;
    let mut admin_listener = None;
    if config.admin.enabled != Some(false) {
        let ad = &config.admin;
        let bind = ad.bind.as_deref().unwrap_or(DEFAULT_ADMIN_BIND);
        let bind: std::net::SocketAddr = bind.parse().map_err(|_| {
            ConfigError::new("admin.bind", format!("invalid socket address {bind:?}"))
        })?;
        let mut text = String::new();
        if let Some(p) = &ad.tokens_file {
            text.push_str(&read_tokens(p)?);
            text.push('\n');
            info.admin_tokens_file = Some(p.clone());
        }
        if let Some(h) = &ad.token_hash {
            let t = StaticToken::new(ad.subject.as_deref().unwrap_or("admin"), h)
                .map_err(|e| ConfigError::new("admin.token_hash", e.to_string()))?
                .with_groups(ad.groups.iter().cloned());
            let _ = writeln!(text, "{}", t.to_line());
        }
        let client_ca = ad.tls.as_ref().and_then(|t| t.client_ca.as_ref()).is_some();
        if ad.tokens_file.is_none() && ad.token_hash.is_none() && !client_ca {
            let p = data.join("admin-tokens");
            info.admin_token = ensure_token_file(&p, "admin", &["admins"])?;
            text.push_str(&read_tokens(&p)?);
            info.admin_tokens_file = Some(p);
        }
        let tokens = StaticTokenAuthenticator::parse(&text)
            .map_err(|e| ConfigError::new("admin.tokens_file", e.to_string()))?;
        let mut auth = admin::AdminAuth::tokens(tokens);
        if client_ca {
            auth = auth.with_client_certificates();
        }
        if ad.tls.as_ref().is_none_or(|t| t.cert.is_none()) {
            let p = pki.get()?;
            info.dev_ca = Some((p.ca_cert.clone(), p.created));
            info.dev_cert = Some((p.cert.clone(), p.key.clone()));
        }
        let tls = pki.server_tls("admin", ad.tls.as_ref(), vec![b"http/1.1".to_vec()])?;
        tls_endpoints.push(("admin API".to_owned(), tls.clone()));
        let listener = tokio::net::TcpListener::bind(bind)
            .await
            .map_err(|e| start_err(format!("admin API: bind {bind}: {e}")))?;
        info.admin = listener.local_addr().ok();
        admin_listener = Some((listener, tls, auth));
    }

    // What a reload replaces: known once every TLS endpoint is.
    let reloader = Arc::new(Reloader {
        tls: tls_endpoints,
        metrics: metrics.clone(),
        policy: swappable,
        services: session_services,
        tokens,
        tokens_file: Some(tokens_file),
        source: config.source.clone(),
        listeners: served,
    });
    if let Some((listener, tls, auth)) = admin_listener {
        let state = Arc::new(admin::AdminState {
            gate: gate.clone(),
            registry: registry.clone(),
            metrics: metrics.clone(),
            recordings: recordings.clone(),
            auth,
            draining: AtomicBool::new(false),
            reloader: reloader.clone(),
        });
        admin_task = Some(tokio::spawn(admin::serve(
            listener,
            tls,
            state.clone(),
            admin_stop.clone(),
        )));
        admin_state = Some(state);
    }

    let handle = server.spawn();
    for w in &info.warnings {
        warn!("{w}");
    }
    info!(listeners = info.listeners.len(), admin = ?info.admin, "gateway started");
    Ok(Gateway {
        handle,
        admin_stop,
        admin_state,
        admin_task,
        info,
        gate,
        metrics,
        reloader,
    })
}

/// The listeners of `config`: its `[[listeners]]`, or one postgres listener on
/// [`DEFAULT_POSTGRES_BIND`] when it has none.
pub(crate) fn listeners_of(config: &Config) -> Vec<ListenerSection> {
    if config.listeners.is_empty() {
        vec![ListenerSection {
            name: DEFAULT_LISTENER.to_owned(),
            protocol: "postgres".to_owned(),
            bind: DEFAULT_POSTGRES_BIND.to_owned(),
            tls: None,
            max_connections: None,
            idle_timeout: None,
        }]
    } else {
        config.listeners.clone()
    }
}

/// The settings of `config` that each session takes when it starts (a reload changes
/// them for the sessions that start after it): how long a statement is held for review,
/// and whether a session ends when its credential expires.
pub(crate) fn session_settings(config: &Config, services: &mut Services) {
    services.approval_hold = Duration::from_secs(config.approvals.hold_seconds.unwrap_or(300));
    services.end_at_credential_expiry = config.identity.end_sessions_at_expiry;
}

/// The resources of `config` that listener `name` serves, with their indexes.
pub(crate) fn resources_of<'c>(
    config: &'c Config,
    name: &str,
) -> Vec<(usize, &'c ResourceSection)> {
    config
        .resources
        .iter()
        .enumerate()
        .filter(|(_, r)| r.listener == name)
        .collect()
}

/// A listener's adapter and, for postgres, the cancel keys it issues.
pub(crate) struct BuiltAdapter {
    pub adapter: Arc<dyn Adapter>,
    pub cancels: Option<CancelRegistry>,
}

/// Builds the adapter of listener `l` (number `i` of [`listeners_of`]) for the resources
/// of `config` that name it. `cancels`: the cancel keys of the postgres adapter this one
/// replaces (a reload), so that sessions started before still get their cancels routed.
pub(crate) fn adapter_of(
    config: &Config,
    i: usize,
    l: &ListenerSection,
    info: &mut GatewayInfo,
    cancels: Option<&CancelRegistry>,
) -> Result<BuiltAdapter, GatewayError> {
    let key = format!("listeners[{i}]");
    let resources = resources_of(config, &l.name);
    let adapter: Arc<dyn Adapter> = match l.protocol.as_str() {
        "postgres" => {
            let mut a = PostgresAdapter::new(PostgresOptions::default());
            if let Some(c) = cancels {
                a = a.with_cancel_registry(c.clone());
            }
            for (j, r) in &resources {
                a = a.with_target(postgres_target(*j, r, info)?);
            }
            let cancels = a.cancel_registry().clone();
            return Ok(BuiltAdapter {
                adapter: Arc::new(a),
                cancels: Some(cancels),
            });
        }
        "http" => {
            let Some((j, r)) = resources.first() else {
                return Err(ConfigError::new(
                    format!("{key}.name"),
                    "an http listener needs one resource",
                )
                .into());
            };
            if resources.len() == 1 && r.hosts.is_none() {
                Arc::new(HttpAdapter::new(
                    http_target(*j, r, info)?,
                    HttpOptions::default(),
                ))
            } else {
                // Several resources behind one listener: the request's Host chooses.
                let mut routes = Vec::with_capacity(resources.len());
                for (j, r) in &resources {
                    let Some(hosts) = r.hosts.clone() else {
                        return Err(ConfigError::new(
                            format!("resources[{j}].hosts"),
                            format!(
                                "required: listener {:?} serves {} resources, told apart by host name",
                                l.name,
                                resources.len()
                            ),
                        )
                        .into());
                    };
                    routes.push((hosts, http_target(*j, r, info)?));
                }
                Arc::new(
                    HttpAdapter::by_host(routes, HttpOptions::default()).map_err(|e| {
                        ConfigError::new(format!("{key}.name"), http_config_message(e))
                    })?,
                )
            }
        }
        _ => {
            let Some((j, r)) = resources.first() else {
                return Err(ConfigError::new(
                    format!("{key}.name"),
                    "a tcp listener needs one resource",
                )
                .into());
            };
            let (addr, security) = upstream_of(*j, r, info)?;
            Arc::new(TcpAdapter::new(TcpAdapterConfig::new(
                resource_of(r),
                addr,
                security,
            )))
        }
    };
    Ok(BuiltAdapter {
        adapter,
        cancels: None,
    })
}

/// Fetches an issuer's key set in the background at start, so the first login does not
/// wait for it and a wrong `ca_file` or URL shows up in the log at once. A failure is
/// not fatal: the key set is fetched again on the next token (logins fail closed until
/// it can be).
fn warm_up(issuer: String, jwks: JwksCache) {
    tokio::spawn(async move {
        match jwks.refresh().await {
            Ok(keys) => info!(%issuer, keys, "OIDC signing keys fetched"),
            Err(e) => {
                warn!(%issuer, error = %e, "OIDC signing keys not fetched yet; logins with this issuer fail until they are")
            }
        }
    });
}

/// The masker of `config` (observed by the metrics) and a description of it. A masking
/// section that does not build is an error, never "no masking".
pub(crate) fn masker_of(
    config: &Config,
    metrics: &Arc<Metrics>,
) -> Result<(Arc<dyn Masker>, String), ConfigError> {
    let (masker, text): (Arc<dyn Masker>, String) = match &config.masking {
        Some(m) => (
            Arc::new(RuleMasker::from_config(m).map_err(super::config::masking_error)?),
            format!(
                "{} detector(s), {} field rule(s)",
                m.detectors.len(),
                m.field_rules.len()
            ),
        ),
        None => (
            Arc::new(NoMasking),
            String::from("off (no [masking] section)"),
        ),
    };
    Ok((Arc::new(CountingMasker::new(masker, metrics.clone())), text))
}

/// An `Arc`'d authenticator as a chain member.
struct SharedAuth<A>(Arc<A>);

#[async_trait::async_trait]
impl<A: hoop_core::Authenticator + 'static> hoop_core::Authenticator for SharedAuth<A> {
    async fn authenticate(
        &self,
        credential: &hoop_core::Credential<'_>,
    ) -> Result<hoop_core::Identity, hoop_core::AuthError> {
        self.0.authenticate(credential).await
    }
}

fn resource_of(r: &ResourceSection) -> Resource {
    let mut res = Resource::new(r.name.clone(), r.protocol.clone());
    for (k, v) in &r.labels {
        res = res.with_label(k.clone(), v.clone());
    }
    res
}

fn upstream_tls(
    key: &str,
    ca_file: Option<&Path>,
    pins: &[String],
) -> Result<UpstreamTls, GatewayError> {
    let roots = match ca_file {
        Some(p) => UpstreamRoots::CaFile(p.to_path_buf()),
        None => UpstreamRoots::WebPki,
    };
    let mut spki_pins = Vec::with_capacity(pins.len());
    for p in pins {
        spki_pins.push(parse_spki_pin(p).map_err(|e| ConfigError::new(key, e.to_string()))?);
    }
    UpstreamTls::new(UpstreamTlsConfig {
        roots,
        spki_pins,
        ..Default::default()
    })
    .map_err(|e| ConfigError::new(key, e.to_string()).into())
}

fn upstream_of(
    i: usize,
    r: &ResourceSection,
    info: &mut GatewayInfo,
) -> Result<(std::net::SocketAddr, UpstreamSecurity), GatewayError> {
    let key = |f: &str| format!("resources[{i}].{f}");
    let addr = resolve(&key("target"), &r.target)?;
    let security = if r.plaintext {
        info.warnings.push(format!(
            "resource {:?}: PLAINTEXT connection to {} (explicit opt-in; every session is audited)",
            r.name, r.target
        ));
        UpstreamSecurity::PlaintextOptIn
    } else {
        let t = r.tls.clone().unwrap_or_default();
        let tls = upstream_tls(&key("tls"), t.ca_file.as_deref(), &t.pins)?;
        let server_name = t
            .server_name
            .unwrap_or_else(|| super::config::host_of(&r.target).to_owned());
        UpstreamSecurity::Tls { tls, server_name }
    };
    Ok((addr, security))
}

/// The text of an adapter construction error, as a configuration message.
fn http_config_message(e: hoop_http::HttpError) -> String {
    match e {
        hoop_http::HttpError::Config(m) => m,
        other => other.to_string(),
    }
}

/// An http / kubernetes target: the secret (if any) is injected as a bearer token, as
/// basic authentication with `user`, or in `credential_header`.
fn http_target(
    i: usize,
    r: &ResourceSection,
    info: &mut GatewayInfo,
) -> Result<HttpTarget, GatewayError> {
    let (addr, security) = upstream_of(i, r, info)?;
    let secret = match (&r.password_env, &r.password_file) {
        (Some(v), _) => Some(Secret::Env(v.clone())),
        (None, Some(p)) => Some(Secret::File(p.clone())),
        (None, None) => None,
    };
    // The Host the target expects: the name alone on the default port.
    let authority = match r.target.strip_suffix(":443") {
        Some(host) => host.to_owned(),
        None => r.target.clone(),
    };
    let mut target = HttpTarget::new(resource_of(r), addr, security).authority(authority);
    if let Some(secret) = secret {
        let credential = match (&r.credential_header, &r.user) {
            (Some(name), _) => UpstreamCredential::Header {
                name: name.clone(),
                value: secret,
            },
            (None, Some(user)) => UpstreamCredential::Basic {
                user: user.clone(),
                password: secret,
            },
            (None, None) => UpstreamCredential::Bearer(secret),
        };
        target = target.credential(credential);
    }
    Ok(target)
}

fn postgres_target(
    i: usize,
    r: &ResourceSection,
    info: &mut GatewayInfo,
) -> Result<PostgresTarget, GatewayError> {
    let (addr, security) = upstream_of(i, r, info)?;
    let password = match (&r.password_env, &r.password_file) {
        (Some(v), _) => {
            if std::env::var_os(v).is_none() {
                info.warnings.push(format!(
                    "resource {:?}: environment variable {v} is not set (logins will fail until it is)",
                    r.name
                ));
            }
            Secret::Env(v.clone())
        }
        (None, Some(p)) => {
            if !p.is_file() {
                info.warnings.push(format!(
                    "resource {:?}: password file {} does not exist",
                    r.name,
                    p.display()
                ));
            }
            Secret::File(p.clone())
        }
        (None, None) => {
            return Err(ConfigError::new(
                format!("resources[{i}].password_env"),
                "postgres resources need password_env or password_file",
            )
            .into());
        }
    };
    Ok(PostgresTarget {
        resource: resource_of(r),
        addr,
        security,
        database: r.database.clone().unwrap_or_default(),
        user: r.user.clone().unwrap_or_default(),
        password,
        read_only: r.read_only,
    })
}

/// The startup summary with what to try.
pub(crate) fn banner(info: &GatewayInfo) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "hoop gateway ready");
    let _ = writeln!(o, "  data directory: {}", info.data_dir.display());
    if let Some((ca, created)) = &info.dev_ca {
        let _ = writeln!(
            o,
            "  development CA: {} ({}) - clients verify the gateway with it",
            ca.display(),
            if *created { "created now" } else { "existing" }
        );
    }
    if let Some((cert, key)) = &info.dev_cert {
        let _ = writeln!(
            o,
            "  development gateway certificate: {} (key {}; for localhost, 127.0.0.1, ::1)",
            cert.display(),
            key.display()
        );
    }
    for (name, protocol, addr, res) in &info.listeners {
        let res = if res.is_empty() {
            String::from("no resources configured")
        } else {
            format!("resources: {}", res.join(", "))
        };
        let _ = writeln!(o, "  listener {name} ({protocol}) on {addr}: {res}");
    }
    if let Some(a) = info.admin {
        let _ = writeln!(o, "  admin API: https://{a}");
    }
    let _ = writeln!(o, "  recordings: {}", info.recordings.display());
    let _ = writeln!(o, "  policy: {}", info.policy);
    let _ = writeln!(o, "  masking: {}", info.masking);
    if let Some(t) = &info.tokens_file {
        let _ = writeln!(o, "  user tokens (hashes only): {}", t.display());
    }
    if let Some(t) = &info.demo_token {
        let _ = writeln!(
            o,
            "  demo user token (shown once, only its hash is stored): {t}"
        );
    }
    if let Some(t) = &info.admin_token {
        let _ = writeln!(
            o,
            "  admin token (shown once, only its hash is stored): {t}"
        );
    }
    for w in &info.warnings {
        let _ = writeln!(o, "  WARNING: {w}");
    }
    let ca = info.dev_ca.as_ref().map_or_else(
        || String::from("<your CA file>"),
        |(p, _)| p.display().to_string(),
    );
    let _ = writeln!(o, "\nTry:");
    for (name, protocol, addr, res) in &info.listeners {
        if protocol == "http" {
            let hosts: Vec<&str> = info
                .http_hosts
                .iter()
                .filter(|(l, _)| l == name)
                .map(|(_, h)| h.as_str())
                .collect();
            if hosts.is_empty() {
                let _ = writeln!(
                    o,
                    "  curl --cacert {ca} -H \"Authorization: Bearer <demo token>\" https://{}:{}/",
                    addr.ip(),
                    addr.port()
                );
            }
            // Routed by host name: curl reaches each name at the listener's address.
            for h in hosts {
                let _ = writeln!(
                    o,
                    "  curl --cacert {ca} --resolve {h}:{port}:{ip} -H \"Authorization: Bearer <demo token>\" https://{h}:{port}/",
                    ip = addr.ip(),
                    port = addr.port()
                );
            }
        }
        if protocol == "postgres" {
            let db = res.first().map_or("<resource>", String::as_str);
            let _ = writeln!(
                o,
                "  psql \"host={} port={} dbname={db} user=demo password=<demo token> sslmode=verify-full sslrootcert={ca}\"",
                addr.ip(),
                addr.port()
            );
            if res.is_empty() {
                let _ = writeln!(
                    o,
                    "    (no resources yet: every dbname answers \"no resource\"; add [[resources]] to a --config file)"
                );
            }
        }
    }
    if let Some(a) = info.admin {
        let _ = writeln!(
            o,
            "  curl --cacert {ca} -H \"Authorization: Bearer <admin token>\" https://{a}/v1/sessions"
        );
        let _ = writeln!(
            o,
            "  curl --cacert {ca} -H \"Authorization: Bearer <admin token>\" https://{a}/v1/reviews"
        );
        let _ = writeln!(
            o,
            "  curl --cacert {ca} -H \"Authorization: Bearer <admin token>\" -X POST -d '{{\"reason\":\"ok\"}}' https://{a}/v1/reviews/<id>/approve"
        );
        let _ = writeln!(
            o,
            "  curl --cacert {ca} -H \"Authorization: Bearer <admin token>\" https://{a}/metrics"
        );
    }
    o
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;

    #[test]
    fn banner_shows_host_routed_listeners_by_name() {
        let addr: SocketAddr = "127.0.0.1:8443".parse().unwrap();
        let pg: SocketAddr = "127.0.0.1:15432".parse().unwrap();
        let info = GatewayInfo {
            listeners: vec![
                (
                    "web".into(),
                    "http".into(),
                    addr,
                    vec!["a".into(), "b".into()],
                ),
                ("pg".into(), "postgres".into(), pg, vec!["appdb".into()]),
            ],
            http_hosts: vec![
                ("web".into(), "a.example".into()),
                ("web".into(), "b.example".into()),
            ],
            ..Default::default()
        };
        let b = banner(&info);
        for h in ["a.example", "b.example"] {
            assert!(
                b.contains(&format!("--resolve {h}:8443:127.0.0.1"))
                    && b.contains(&format!("https://{h}:8443/")),
                "{b}"
            );
        }
        assert!(!b.contains("https://127.0.0.1:8443/"), "{b}");
        assert!(b.contains("host=127.0.0.1 port=15432 dbname=appdb"), "{b}");
    }
}
