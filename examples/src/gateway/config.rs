//! The gateway's TOML configuration: the file format, loading, and checks that name the
//! offending key.
//!
//! Every section is optional; what is missing gets a default that needs no external
//! service (see the crate's `gateway` module). Unknown keys are errors.

use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};

use hoop_core::masking::{MaskingConfig, MaskingConfigError, RuleMasker};
use hoop_core::policy::PolicyConfig;
use serde::Deserialize;

/// A configuration error: the key (a path like `listeners[0].bind`) and what is wrong.
/// Its text never contains a secret value.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("config error: {key}: {message}")]
pub struct ConfigError {
    /// Where: `listeners[0].bind`, `policy.rules[2].decision`, or `file` / `line N`.
    pub key: String,
    /// What is wrong.
    pub message: String,
}

impl ConfigError {
    /// An error at `key`.
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            key: key.into(),
            message: message.into(),
        }
    }
}

/// The whole configuration file.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `[data]`: where generated files live.
    #[serde(default)]
    pub data: DataSection,
    /// `[[listeners]]`; none: one postgres listener on 127.0.0.1:15432.
    #[serde(default)]
    pub listeners: Vec<ListenerSection>,
    /// `[[resources]]`: targets.
    #[serde(default)]
    pub resources: Vec<ResourceSection>,
    /// `[identity]`: how users prove who they are.
    #[serde(default)]
    pub identity: IdentitySection,
    /// `[policy]` with `[[policy.rules]]`; absent: the built-in default policy.
    #[serde(default)]
    pub policy: Option<PolicyConfig>,
    /// `[masking]` with `[[masking.detectors]]` and `[[masking.field_rules]]`
    /// (`hoop_core::masking::MaskingConfig`); absent: nothing is masked. SIGHUP reloads
    /// it for new sessions (running sessions keep the rules they started with).
    #[serde(default)]
    pub masking: Option<MaskingConfig>,
    /// `[recording]`.
    #[serde(default)]
    pub recording: RecordingSection,
    /// `[approvals]`.
    #[serde(default)]
    pub approvals: ApprovalsSection,
    /// `[admin]`: the admin API listener.
    #[serde(default)]
    pub admin: AdminSection,
    /// `[runtime]`: the async runtime the gateway runs on.
    #[serde(default)]
    pub runtime: RuntimeSection,
    /// The file this configuration was read from (SIGHUP re-reads its policy, masking
    /// rules, resources and session settings).
    #[serde(skip)]
    pub source: Option<PathBuf>,
}

/// `[data]`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSection {
    /// Data directory (default `$HOOP_DATA` or `./hoop-data`).
    pub dir: Option<PathBuf>,
}

/// `[runtime]`: how many threads run the gateway.
///
/// ```toml
/// [runtime]
/// threads = 1   # one event loop (tokio current-thread runtime), like pgbouncer
/// ```
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeSection {
    /// Worker threads: `0` (the default) one per CPU, `1` a single event loop (a tokio
    /// current-thread runtime; often the fastest on small machines), `N` a multi-thread
    /// runtime with `N` workers (at most [`MAX_THREADS`]).
    #[serde(default)]
    pub threads: usize,
}

/// The largest accepted `runtime.threads`.
pub const MAX_THREADS: usize = 1024;

impl RuntimeSection {
    /// Builds the tokio runtime this section describes (I/O and time drivers enabled).
    ///
    /// ```
    /// let rt = hoop_examples::gateway::config::RuntimeSection { threads: 1 }.build()?;
    /// assert_eq!(rt.block_on(async { 1 + 1 }), 2);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn build(&self) -> std::io::Result<tokio::runtime::Runtime> {
        let mut builder = match self.threads {
            1 => tokio::runtime::Builder::new_current_thread(),
            n => {
                let mut b = tokio::runtime::Builder::new_multi_thread();
                if n > 1 {
                    b.worker_threads(n);
                }
                b
            }
        };
        builder.enable_all().build()
    }
}

/// `tls` of a listener or of the admin API.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ServerTlsSection {
    /// Certificate chain PEM (leaf first).
    pub cert: Option<PathBuf>,
    /// Private key PEM.
    pub key: Option<PathBuf>,
    /// CA of required client certificates.
    pub client_ca: Option<PathBuf>,
}

/// One `[[listeners]]`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ListenerSection {
    /// Unique name, referenced by resources.
    pub name: String,
    /// `postgres`, `tcp` or `http`. A `postgres` listener serves any number of
    /// resources (chosen by `dbname`), a `tcp` listener exactly one, an `http` listener
    /// one, or several told apart by the request's `Host` (each resource then lists its
    /// `hosts`).
    pub protocol: String,
    /// `host:port` to listen on.
    pub bind: String,
    /// Client-facing TLS; absent: the development certificate.
    #[serde(default)]
    pub tls: Option<ServerTlsSection>,
    /// Connection limit of this listener.
    pub max_connections: Option<usize>,
    /// Idle timeout, seconds.
    pub idle_timeout: Option<u64>,
}

/// `tls` of a resource: how the target is verified.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamTlsSection {
    /// CA bundle PEM; absent: the Mozilla roots.
    pub ca_file: Option<PathBuf>,
    /// SPKI pins, `sha256/BASE64`.
    #[serde(default)]
    pub pins: Vec<String>,
    /// Name checked in the certificate; absent: the host of `target`.
    pub server_name: Option<String>,
}

/// One `[[resources]]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceSection {
    /// Name (clients select a postgres resource with `dbname=<name>`).
    pub name: String,
    /// `postgres`, `tcp`, `http` or `kubernetes` (served by an `http` listener).
    pub protocol: String,
    /// Listener serving it.
    pub listener: String,
    /// Target `host:port`.
    pub target: String,
    /// Verified TLS toward the target (the default, with the Mozilla roots).
    #[serde(default)]
    pub tls: Option<UpstreamTlsSection>,
    /// Explicit, audited plaintext toward the target.
    #[serde(default)]
    pub plaintext: bool,
    /// Database on the target (postgres).
    pub database: Option<String>,
    /// Login role on the target (postgres).
    pub user: Option<String>,
    /// Environment variable holding the target password.
    pub password_env: Option<String>,
    /// File holding the target password.
    pub password_file: Option<PathBuf>,
    /// Read-only target sessions (postgres).
    #[serde(default)]
    pub read_only: bool,
    /// http / kubernetes: the header carrying the injected secret (`password_env` /
    /// `password_file`) instead of `Authorization: Bearer`; with `user` set and no
    /// header, HTTP basic authentication is used.
    pub credential_header: Option<String>,
    /// http / kubernetes: the host names (as in the request's `Host` /
    /// `:authority`, without port; compared case-insensitively) routed to this resource.
    /// Required on every resource of an `http` listener serving more than one; when any
    /// resource of a listener has `hosts`, a request for another host gets `404` before
    /// authentication. Absent on a listener's only resource: every request goes to it.
    ///
    /// ```toml
    /// [[resources]]
    /// name = "grafana"
    /// protocol = "http"
    /// listener = "web"
    /// target = "grafana.internal.example:443"
    /// hosts = ["grafana.example.com"]
    /// ```
    pub hosts: Option<Vec<String>>,
    /// Labels policy rules can match.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// `[identity]`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentitySection {
    /// Token file (`subject:groups:sha256hex` lines); absent: `<data>/tokens`, created
    /// with one demo token.
    pub static_tokens_file: Option<PathBuf>,
    /// `[[identity.oidc]]` issuers.
    #[serde(default)]
    pub oidc: Vec<OidcSection>,
    /// Accept client certificates (of listeners with `tls.client_ca`) as identities.
    #[serde(default)]
    pub client_certificates: bool,
    /// End a session when the credential that opened it expires (an OIDC token's `exp`, a
    /// static token's expiry, a client certificate's `notAfter`); the user is told why
    /// (psql: `FATAL 57P01 ... credential expired`) and the recording says so. Credentials
    /// without an expiry are not affected. Default false: a session lives as long as its
    /// connection. A SIGHUP changes it for the sessions that start after it.
    #[serde(default)]
    pub end_sessions_at_expiry: bool,
}

/// One `[[identity.oidc]]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcSection {
    /// Issuer URL (`iss`).
    pub issuer: String,
    /// Expected audience (`aud`).
    pub audience: String,
    /// JWKS URL; absent: discovered from the issuer.
    pub jwks_url: Option<String>,
    /// Claim holding the groups (default `groups`).
    pub groups_claim: Option<String>,
    /// Claim holding the subject (default `sub`).
    pub subject_claim: Option<String>,
    /// CA bundle (PEM) that verifies the issuer's HTTPS server (discovery document and
    /// key set); absent: the Mozilla roots. There is no way to skip this verification.
    pub ca_file: Option<PathBuf>,
    /// Fewest seconds between two fetches of the key set (default 10, at least 1). A
    /// token signed with a key the gateway does not know yet (the issuer rotated its
    /// keys) makes the gateway fetch the key set again, at most once per this interval.
    pub jwks_min_refresh_seconds: Option<u64>,
    /// Age in seconds after which the key set is fetched again in the background
    /// (default 600).
    pub jwks_refresh_seconds: Option<u64>,
}

/// `[recording]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordingSection {
    /// Directory of JSONL recordings (default `<data>/recordings`).
    pub dir: Option<PathBuf>,
    /// End sessions whose recording fails (default true).
    #[serde(default = "yes")]
    pub fail_closed: bool,
}

impl Default for RecordingSection {
    fn default() -> Self {
        RecordingSection {
            dir: None,
            fail_closed: true,
        }
    }
}

fn yes() -> bool {
    true
}

/// `[approvals]`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalsSection {
    /// How long a held command waits for a verdict (default 300 s).
    pub hold_seconds: Option<u64>,
    /// How long an approval grants the same command (default 900 s).
    pub grant_seconds: Option<u64>,
    /// `https://` URL notified of new reviews.
    pub webhook_url: Option<String>,
    /// CA bundle for the webhook; absent: the Mozilla roots.
    pub webhook_ca_file: Option<PathBuf>,
    /// Only members of these groups may decide (empty: any admin caller).
    #[serde(default)]
    pub reviewer_groups: Vec<String>,
}

/// `[admin]`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminSection {
    /// Set to false to run without the admin API.
    pub enabled: Option<bool>,
    /// `host:port` (default `127.0.0.1:8443`).
    pub bind: Option<String>,
    /// SHA-256 (hex) of one admin token; its caller is `subject`.
    pub token_hash: Option<String>,
    /// Subject of the `token_hash` caller (default `admin`).
    pub subject: Option<String>,
    /// Groups of the `token_hash` caller.
    #[serde(default)]
    pub groups: Vec<String>,
    /// A token file (same format as `identity.static_tokens_file`) of admin callers.
    pub tokens_file: Option<PathBuf>,
    /// TLS of the admin API; absent: the development certificate. With `client_ca`,
    /// callers present a client certificate (its CN is the caller).
    #[serde(default)]
    pub tls: Option<ServerTlsSection>,
}

/// Parses and checks a configuration text. `origin` names the file in errors.
pub fn parse(text: &str) -> Result<Config, ConfigError> {
    let de = toml::Deserializer::parse(text).map_err(|e| syntax_error(text, &e))?;
    let config: Config = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let key = if path.is_empty() || path == "." {
            location(text, inner.span())
        } else {
            path
        };
        ConfigError::new(key, inner.message().to_owned())
    })?;
    config.check()?;
    Ok(config)
}

/// Reads and checks the configuration file at `path`.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::new("file", format!("cannot read {}: {e}", path.display())))?;
    let mut config = parse(&text)?;
    config.source = Some(path.to_path_buf());
    Ok(config)
}

fn syntax_error(text: &str, e: &toml::de::Error) -> ConfigError {
    ConfigError::new(location(text, e.span()), e.message().to_owned())
}

fn location(text: &str, span: Option<std::ops::Range<usize>>) -> String {
    match span {
        Some(r) => {
            let upto = text.get(..r.start).unwrap_or(text);
            format!("line {}", upto.matches('\n').count() + 1)
        }
        None => String::from("file"),
    }
}

/// A `host:port` resolved to its first address.
pub fn resolve(key: &str, value: &str) -> Result<SocketAddr, ConfigError> {
    if let Ok(a) = value.parse::<SocketAddr>() {
        return Ok(a);
    }
    let bad = || ConfigError::new(key, format!("invalid socket address {value:?}"));
    let (host, port) = value.rsplit_once(':').ok_or_else(bad)?;
    if host.is_empty() || port.parse::<u16>().is_err() {
        return Err(bad());
    }
    value
        .to_socket_addrs()
        .map_err(|e| ConfigError::new(key, format!("cannot resolve {value:?}: {e}")))?
        .next()
        .ok_or_else(|| ConfigError::new(key, format!("{value:?} resolves to no address")))
}

/// The host part of `host:port` (brackets of an IPv6 literal removed).
pub fn host_of(target: &str) -> &str {
    let host = target.rsplit_once(':').map_or(target, |(h, _)| h);
    host.trim_start_matches('[').trim_end_matches(']')
}

/// Listener protocols.
const PROTOCOLS: [&str; 3] = ["postgres", "tcp", "http"];
/// Resource protocols (a `kubernetes` resource is served by an `http` listener).
const RESOURCE_PROTOCOLS: [&str; 4] = ["postgres", "tcp", "http", "kubernetes"];

/// Whether a listener of `listener` protocol serves a resource of `resource` protocol.
fn serves(listener: &str, resource: &str) -> bool {
    listener == resource || (listener == "http" && resource == "kubernetes")
}

impl Config {
    /// Checks what serde cannot: addresses, references between sections, required keys
    /// per protocol, exclusive options.
    pub fn check(&self) -> Result<(), ConfigError> {
        for (i, l) in self.listeners.iter().enumerate() {
            let k = |f: &str| format!("listeners[{i}].{f}");
            if l.name.trim().is_empty() {
                return Err(ConfigError::new(k("name"), "must not be empty"));
            }
            if self.listeners.iter().take(i).any(|o| o.name == l.name) {
                return Err(ConfigError::new(
                    k("name"),
                    format!("duplicate listener name {:?}", l.name),
                ));
            }
            if !PROTOCOLS.contains(&l.protocol.as_str()) {
                return Err(ConfigError::new(
                    k("protocol"),
                    format!(
                        "unknown protocol {:?} (expected one of {PROTOCOLS:?})",
                        l.protocol
                    ),
                ));
            }
            if l.bind.parse::<SocketAddr>().is_err() {
                return Err(ConfigError::new(
                    k("bind"),
                    format!("invalid socket address {:?}", l.bind),
                ));
            }
            if l.max_connections == Some(0) {
                return Err(ConfigError::new(k("max_connections"), "must be at least 1"));
            }
            if l.idle_timeout == Some(0) {
                return Err(ConfigError::new(
                    k("idle_timeout"),
                    "must be at least 1 second",
                ));
            }
            if let Some(t) = &l.tls {
                check_server_tls(&k("tls"), t)?;
            }
            let n = self
                .resources
                .iter()
                .filter(|r| r.listener == l.name)
                .count();
            if l.protocol == "tcp" && n != 1 {
                return Err(ConfigError::new(
                    k("name"),
                    format!("a tcp listener serves exactly one resource, {n} name it"),
                ));
            }
            if l.protocol == "http" && n == 0 {
                return Err(ConfigError::new(
                    k("name"),
                    "an http listener serves at least one resource, none names it",
                ));
            }
        }
        for (i, r) in self.resources.iter().enumerate() {
            self.check_resource(i, r)?;
        }
        for l in self.listeners.iter().filter(|l| l.protocol == "http") {
            self.check_http_routes(&l.name)?;
        }
        for (i, o) in self.identity.oidc.iter().enumerate() {
            let k = |f: &str| format!("identity.oidc[{i}].{f}");
            if !o.issuer.starts_with("https://") {
                return Err(ConfigError::new(k("issuer"), "must be an https:// URL"));
            }
            if o.audience.is_empty() {
                return Err(ConfigError::new(k("audience"), "must not be empty"));
            }
            if let Some(u) = &o.jwks_url
                && !u.starts_with("https://")
            {
                return Err(ConfigError::new(k("jwks_url"), "must be an https:// URL"));
            }
            if o.jwks_min_refresh_seconds == Some(0) {
                // Zero would let a flood of tokens with made-up key ids hammer the issuer.
                return Err(ConfigError::new(
                    k("jwks_min_refresh_seconds"),
                    "must be at least 1",
                ));
            }
            if o.jwks_refresh_seconds == Some(0) {
                return Err(ConfigError::new(
                    k("jwks_refresh_seconds"),
                    "must be at least 1",
                ));
            }
            if let Some(ca) = &o.ca_file {
                check_file(&k("ca_file"), ca)?;
            }
        }
        if let Some(p) = &self.policy {
            hoop_core::policy::RulePolicy::from_config(p).map_err(|e| {
                ConfigError::new(
                    format!("policy.rules[{}].{}", e.index.saturating_sub(1), e.key),
                    e.message,
                )
            })?;
        }
        if let Some(m) = &self.masking {
            RuleMasker::from_config(m).map_err(masking_error)?;
        }
        let a = &self.approvals;
        if a.hold_seconds == Some(0) {
            return Err(ConfigError::new(
                "approvals.hold_seconds",
                "must be at least 1",
            ));
        }
        if a.grant_seconds == Some(0) {
            return Err(ConfigError::new(
                "approvals.grant_seconds",
                "must be at least 1",
            ));
        }
        if let Some(u) = &a.webhook_url
            && !u.starts_with("https://")
        {
            return Err(ConfigError::new(
                "approvals.webhook_url",
                "must be an https:// URL",
            ));
        }
        let ad = &self.admin;
        if let Some(b) = &ad.bind
            && b.parse::<SocketAddr>().is_err()
        {
            return Err(ConfigError::new(
                "admin.bind",
                format!("invalid socket address {b:?}"),
            ));
        }
        if let Some(h) = &ad.token_hash
            && (h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            // Never echo the value: it may be a token pasted by mistake.
            return Err(ConfigError::new(
                "admin.token_hash",
                "must be the 64 hex digits of the token's SHA-256 (never the token itself)",
            ));
        }
        if let Some(s) = &ad.subject
            && (s.is_empty() || s.contains(':'))
        {
            return Err(ConfigError::new(
                "admin.subject",
                "must be non-empty without ':'",
            ));
        }
        if let Some(t) = &ad.tls {
            check_server_tls("admin.tls", t)?;
        }
        if self.runtime.threads > MAX_THREADS {
            return Err(ConfigError::new(
                "runtime.threads",
                format!("at most {MAX_THREADS} (0: one per CPU)"),
            ));
        }
        Ok(())
    }

    /// The resources of the `http` listener `listener`: with several, each lists
    /// `hosts`; no host name is given twice on the listener.
    fn check_http_routes(&self, listener: &str) -> Result<(), ConfigError> {
        let n = self
            .resources
            .iter()
            .filter(|r| r.listener == listener)
            .count();
        let mut seen: Vec<String> = Vec::new();
        for (j, r) in self.resources.iter().enumerate() {
            if r.listener != listener {
                continue;
            }
            let key = format!("resources[{j}].hosts");
            match &r.hosts {
                None if n > 1 => {
                    return Err(ConfigError::new(
                        key,
                        format!(
                            "required: listener {listener:?} serves {n} resources, told apart by host name"
                        ),
                    ));
                }
                None => {}
                Some(hosts) => {
                    for h in hosts {
                        let c = h.trim().trim_end_matches('.').to_ascii_lowercase();
                        if seen.contains(&c) {
                            return Err(ConfigError::new(
                                key,
                                format!("host name {h:?} given twice on listener {listener:?}"),
                            ));
                        }
                        seen.push(c);
                    }
                }
            }
        }
        Ok(())
    }

    fn check_resource(&self, i: usize, r: &ResourceSection) -> Result<(), ConfigError> {
        let k = |f: &str| format!("resources[{i}].{f}");
        if r.name.trim().is_empty() {
            return Err(ConfigError::new(k("name"), "must not be empty"));
        }
        if self.resources.iter().take(i).any(|o| o.name == r.name) {
            return Err(ConfigError::new(
                k("name"),
                format!("duplicate resource name {:?}", r.name),
            ));
        }
        if !RESOURCE_PROTOCOLS.contains(&r.protocol.as_str()) {
            return Err(ConfigError::new(
                k("protocol"),
                format!(
                    "unknown protocol {:?} (expected one of {RESOURCE_PROTOCOLS:?})",
                    r.protocol
                ),
            ));
        }
        let listener_names: Vec<&str> = if self.listeners.is_empty() {
            vec![super::DEFAULT_LISTENER]
        } else {
            self.listeners.iter().map(|l| l.name.as_str()).collect()
        };
        match self.listeners.iter().find(|l| l.name == r.listener) {
            Some(l) if !serves(&l.protocol, &r.protocol) => {
                return Err(ConfigError::new(
                    k("listener"),
                    format!(
                        "listener {:?} serves {}, not {}",
                        r.listener, l.protocol, r.protocol
                    ),
                ));
            }
            None if !listener_names.contains(&r.listener.as_str()) => {
                return Err(ConfigError::new(
                    k("listener"),
                    format!("no listener named {:?}", r.listener),
                ));
            }
            _ => {}
        }
        let (host, port) = r.target.rsplit_once(':').unwrap_or(("", ""));
        if host.is_empty() || port.parse::<u16>().is_err() {
            return Err(ConfigError::new(
                k("target"),
                format!("invalid socket address {:?} (expected host:port)", r.target),
            ));
        }
        if r.plaintext && r.tls.is_some() {
            return Err(ConfigError::new(
                k("plaintext"),
                "plaintext = true and a tls section exclude each other",
            ));
        }
        if let Some(t) = &r.tls {
            for (j, p) in t.pins.iter().enumerate() {
                hoop_core::tls::parse_spki_pin(p).map_err(|_| {
                    ConfigError::new(
                        format!("resources[{i}].tls.pins[{j}]"),
                        format!("invalid pin {p:?} (expected sha256/BASE64)"),
                    )
                })?;
            }
            if let Some(ca) = &t.ca_file {
                check_file(&k("tls.ca_file"), ca)?;
            }
        }
        if r.protocol == "postgres" {
            if r.hosts.is_some() {
                return Err(ConfigError::new(
                    k("hosts"),
                    "not used by postgres resources (clients choose them with dbname)",
                ));
            }
            if r.database.as_deref().unwrap_or("").is_empty() {
                return Err(ConfigError::new(
                    k("database"),
                    "required for postgres resources",
                ));
            }
            if r.user.as_deref().unwrap_or("").is_empty() {
                return Err(ConfigError::new(
                    k("user"),
                    "required for postgres resources",
                ));
            }
            match (&r.password_env, &r.password_file) {
                (Some(_), Some(_)) => {
                    return Err(ConfigError::new(
                        k("password_env"),
                        "set password_env or password_file, not both",
                    ));
                }
                (None, None) => {
                    return Err(ConfigError::new(
                        k("password_env"),
                        "postgres resources need password_env or password_file",
                    ));
                }
                _ => {}
            }
        } else {
            let http = r.protocol == "http" || r.protocol == "kubernetes";
            if r.password_env.is_some() && r.password_file.is_some() {
                return Err(ConfigError::new(
                    k("password_env"),
                    "set password_env or password_file, not both",
                ));
            }
            if r.credential_header.is_some()
                && r.password_env.is_none()
                && r.password_file.is_none()
            {
                return Err(ConfigError::new(
                    k("credential_header"),
                    "needs password_env or password_file (the header's value)",
                ));
            }
            if let Some(hosts) = &r.hosts
                && http
            {
                check_hosts(&k("hosts"), hosts)?;
            }
            for (set, key, allowed) in [
                (r.hosts.is_some(), "hosts", http),
                (r.database.is_some(), "database", false),
                (r.user.is_some(), "user", http),
                (r.password_env.is_some(), "password_env", http),
                (r.password_file.is_some(), "password_file", http),
                (r.credential_header.is_some(), "credential_header", http),
                (r.read_only, "read_only", false),
            ] {
                if set && !allowed {
                    return Err(ConfigError::new(
                        k(key),
                        format!("not used by {} resources", r.protocol),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// A masking configuration error, keyed; never shows the HMAC key.
pub fn masking_error(e: MaskingConfigError) -> ConfigError {
    let key = match &e {
        MaskingConfigError::MissingHmacKey | MaskingConfigError::HmacKeyTooShort(_) => {
            "masking.hmac_key"
        }
        _ => "masking.field_rules",
    };
    ConfigError::new(key, e.to_string())
}

/// `hosts` of a resource: at least one, each a bare host name or IP address.
fn check_hosts(key: &str, hosts: &[String]) -> Result<(), ConfigError> {
    if hosts.is_empty() {
        return Err(ConfigError::new(key, "must list at least one host name"));
    }
    for h in hosts {
        let bare = h.trim().trim_end_matches('.');
        let bad = bare.is_empty()
            || bare
                .bytes()
                .any(|b| b.is_ascii_whitespace() || b"/@?#\\".contains(&b) || b.is_ascii_control())
            || bare.matches(':').count() == 1;
        if bad {
            return Err(ConfigError::new(
                key,
                format!(
                    "invalid host name {h:?} (a name or address, without scheme, port or path)"
                ),
            ));
        }
    }
    Ok(())
}

fn check_server_tls(key: &str, t: &ServerTlsSection) -> Result<(), ConfigError> {
    match (&t.cert, &t.key) {
        (Some(c), Some(k)) => {
            check_file(&format!("{key}.cert"), c)?;
            check_file(&format!("{key}.key"), k)?;
        }
        (Some(_), None) => return Err(ConfigError::new(format!("{key}.key"), "cert needs a key")),
        (None, Some(_)) => return Err(ConfigError::new(format!("{key}.cert"), "key needs a cert")),
        (None, None) => {}
    }
    if let Some(ca) = &t.client_ca {
        check_file(&format!("{key}.client_ca"), ca)?;
    }
    Ok(())
}

fn check_file(key: &str, path: &Path) -> Result<(), ConfigError> {
    if path.is_file() {
        Ok(())
    } else {
        Err(ConfigError::new(
            key,
            format!("no such file {}", path.display()),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_key_of_a_bad_bind() {
        let e = parse("[[listeners]]\nname = \"pg\"\nprotocol = \"postgres\"\nbind = \"x\"\n")
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "config error: listeners[0].bind: invalid socket address \"x\""
        );
    }

    #[test]
    fn names_an_unknown_key() {
        let e = parse("[recording]\nfail_closd = true\n").unwrap_err();
        assert_eq!(e.key, "recording.fail_closd");
        assert!(e.message.contains("fail_closd"), "{e}");
    }

    #[test]
    fn names_a_wrong_type() {
        let e = parse("[[listeners]]\nname = \"pg\"\nprotocol = \"postgres\"\nbind = \"127.0.0.1:1\"\nmax_connections = \"many\"\n").unwrap_err();
        assert_eq!(e.key, "listeners[0].max_connections", "{e}");
    }

    #[test]
    fn names_a_syntax_error_line() {
        let e = parse("[data]\ndir = \n").unwrap_err();
        assert_eq!(e.key, "line 2", "{e}");
    }

    #[test]
    fn policy_errors_name_the_rule() {
        let e =
            parse("[[policy.rules]]\nname = \"r\"\nactions = [\"read\"]\ndecision = \"maybe\"\n")
                .unwrap_err();
        assert!(e.key.starts_with("policy.rules[0]"), "{e}");
    }

    #[test]
    fn token_hash_is_never_echoed() {
        let e = parse("[admin]\ntoken_hash = \"hoop_secret-token\"\n").unwrap_err();
        assert!(!e.to_string().contains("secret-token"), "{e}");
    }

    #[test]
    fn resource_needs_a_password_source() {
        let e = parse(
            "[[resources]]\nname = \"db\"\nprotocol = \"postgres\"\nlistener = \"postgres\"\ntarget = \"127.0.0.1:5432\"\ndatabase = \"d\"\nuser = \"u\"\n",
        )
        .unwrap_err();
        assert_eq!(e.key, "resources[0].password_env");
    }

    #[test]
    fn the_annotated_example_is_valid() {
        let c = parse(include_str!("../../gateway/gateway.example.toml")).unwrap();
        assert_eq!(c.resources.len(), 1);
        assert_eq!(c.policy.unwrap().rules.len(), 2);
    }

    #[test]
    fn oidc_issuers_must_be_https() {
        let e =
            parse("[[identity.oidc]]\nissuer = \"http://idp\"\naudience = \"hoop\"\n").unwrap_err();
        assert_eq!(e.key, "identity.oidc[0].issuer", "{e}");
        parse("[[identity.oidc]]\nissuer = \"https://idp\"\naudience = \"hoop\"\ngroups_claim = \"roles\"\n")
            .unwrap();
    }

    #[test]
    fn oidc_key_set_timing_and_trust() {
        let base = "[[identity.oidc]]\nissuer = \"https://idp\"\naudience = \"hoop\"\n";
        parse(&format!(
            "{base}jwks_min_refresh_seconds = 1\njwks_refresh_seconds = 60\n"
        ))
        .unwrap();
        let e = parse(&format!("{base}jwks_min_refresh_seconds = 0\n")).unwrap_err();
        assert_eq!(e.key, "identity.oidc[0].jwks_min_refresh_seconds", "{e}");
        let e = parse(&format!("{base}jwks_refresh_seconds = 0\n")).unwrap_err();
        assert_eq!(e.key, "identity.oidc[0].jwks_refresh_seconds", "{e}");
        let e = parse(&format!("{base}ca_file = \"/nonexistent/idp-ca.pem\"\n")).unwrap_err();
        assert_eq!(e.key, "identity.oidc[0].ca_file", "{e}");
        let e = parse(&format!("{base}insecure = true\n")).unwrap_err();
        assert_eq!(e.key, "identity.oidc[0].insecure", "{e}");
    }

    #[test]
    fn tcp_listeners_serve_exactly_one_resource() {
        let e = parse("[[listeners]]\nname = \"t\"\nprotocol = \"tcp\"\nbind = \"127.0.0.1:0\"\n")
            .unwrap_err();
        assert_eq!(e.key, "listeners[0].name", "{e}");
        let ok = "[[listeners]]\nname = \"t\"\nprotocol = \"tcp\"\nbind = \"127.0.0.1:0\"\n\
                  [[resources]]\nname = \"cache\"\nprotocol = \"tcp\"\nlistener = \"t\"\ntarget = \"127.0.0.1:6380\"\nplaintext = true\n";
        parse(ok).unwrap();
        let e = parse(&ok.replace(
            "plaintext = true",
            "plaintext = true\ntls = { server_name = \"x\" }",
        ))
        .unwrap_err();
        assert_eq!(e.key, "resources[0].plaintext", "{e}");
        let e = parse(&ok.replace(
            "protocol = \"tcp\"\nlistener",
            "protocol = \"postgres\"\nlistener",
        ))
        .unwrap_err();
        assert_eq!(e.key, "resources[0].listener", "{e}");
    }

    #[test]
    fn masking_errors_name_the_key_without_the_secret() {
        let e = parse(
            "[masking]\nhmac_key = \"short-secret\"\n[[masking.detectors]]\ndetector = \"email\"\nstrategy = \"keyed_hash\"\n",
        )
        .unwrap_err();
        assert_eq!(e.key, "masking.hmac_key", "{e}");
        assert!(!e.to_string().contains("short-secret"), "{e}");
        let e = parse("[[masking.detectors]]\ndetector = \"emial\"\n").unwrap_err();
        assert!(e.key.starts_with("masking.detectors"), "{e}");
    }

    const TWO_APIS: &str = "[[listeners]]\nname = \"web\"\nprotocol = \"http\"\nbind = \"127.0.0.1:0\"\n\
        [[resources]]\nname = \"a\"\nprotocol = \"http\"\nlistener = \"web\"\ntarget = \"a.internal:443\"\nhosts = [\"a.example\"]\n\
        [[resources]]\nname = \"k\"\nprotocol = \"kubernetes\"\nlistener = \"web\"\ntarget = \"k.internal:6443\"\nhosts = [\"k.example\", \"kube.example\"]\n";

    #[test]
    fn an_http_listener_serves_several_resources_by_host() {
        let c = parse(TWO_APIS).unwrap();
        assert_eq!(c.resources[1].hosts.as_ref().unwrap().len(), 2);
        let e = parse(&TWO_APIS.replacen("hosts = [\"a.example\"]\n", "", 1)).unwrap_err();
        assert_eq!(e.key, "resources[0].hosts", "{e}");
        assert!(e.message.contains("required"), "{e}");
        let e = parse(&TWO_APIS.replace("\"kube.example\"", "\"A.Example.\"")).unwrap_err();
        assert_eq!(e.key, "resources[1].hosts", "{e}");
        assert!(e.message.contains("twice"), "{e}");
        for bad in [
            "[]",
            "[\"\"]",
            "[\"a.example:443\"]",
            "[\"https://a.example\"]",
        ] {
            let e = parse(&TWO_APIS.replace("[\"a.example\"]", bad)).unwrap_err();
            assert_eq!(e.key, "resources[0].hosts", "{bad}: {e}");
        }
        // A single resource may name its hosts, or not.
        let one = TWO_APIS
            .split("[[resources]]\nname = \"k\"")
            .next()
            .unwrap();
        parse(one).unwrap();
        parse(&one.replace("hosts = [\"a.example\"]\n", "")).unwrap();
        // hosts are for http / kubernetes resources only.
        let e = parse(
            "[[resources]]\nname = \"db\"\nprotocol = \"postgres\"\nlistener = \"postgres\"\ntarget = \"127.0.0.1:5432\"\ndatabase = \"d\"\nuser = \"u\"\npassword_env = \"P\"\nhosts = [\"x\"]\n",
        )
        .unwrap_err();
        assert_eq!(e.key, "resources[0].hosts", "{e}");
        // An http listener without resources is still refused.
        let e =
            parse("[[listeners]]\nname = \"web\"\nprotocol = \"http\"\nbind = \"127.0.0.1:0\"\n")
                .unwrap_err();
        assert_eq!(e.key, "listeners[0].name", "{e}");
    }

    #[test]
    fn runtime_threads() {
        assert_eq!(parse("").unwrap().runtime.threads, 0);
        assert_eq!(
            parse("[runtime]\nthreads = 1\n").unwrap().runtime.threads,
            1
        );
        let e = parse("[runtime]\nthreads = 4096\n").unwrap_err();
        assert_eq!(e.key, "runtime.threads", "{e}");
        let e = parse("[runtime]\nthreads = -1\n").unwrap_err();
        assert_eq!(e.key, "runtime.threads", "{e}");
        let e = parse("[runtime]\nworkers = 2\n").unwrap_err();
        assert_eq!(e.key, "runtime.workers", "{e}");
        for threads in [0, 1, 2] {
            let rt = RuntimeSection { threads }.build().unwrap();
            let flavor = rt.handle().runtime_flavor();
            let want = if threads == 1 {
                tokio::runtime::RuntimeFlavor::CurrentThread
            } else {
                tokio::runtime::RuntimeFlavor::MultiThread
            };
            assert_eq!(flavor, want, "threads = {threads}");
            assert_eq!(rt.block_on(async { 40 + 2 }), 42);
        }
    }

    #[test]
    fn empty_config_is_valid() {
        parse("").unwrap();
    }

    #[test]
    fn end_sessions_at_expiry_is_off_unless_set() {
        assert!(!parse("").unwrap().identity.end_sessions_at_expiry);
        assert!(
            !parse(
                "[identity]
"
            )
            .unwrap()
            .identity
            .end_sessions_at_expiry
        );
        let on = parse(
            "[identity]
end_sessions_at_expiry = true
",
        )
        .unwrap();
        assert!(on.identity.end_sessions_at_expiry);
        let e = parse(
            "[identity]
end_sessions_at_expiry = \"yes\"
",
        )
        .unwrap_err();
        assert_eq!(e.key, "identity.end_sessions_at_expiry", "{e}");
    }
}
