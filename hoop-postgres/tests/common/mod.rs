//! A gateway in front of a real PostgreSQL 15 (TLS + SCRAM), for the integration tests.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    dead_code
)]

pub use hoop_testkit::wait::eventually;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hoop_core::approval::{GateConfig, InMemoryGate};
use hoop_core::auth::{StaticToken, StaticTokenAuthenticator, hash_token};
use hoop_core::masking::{RuleMasker, Strategy};
use hoop_core::policy::{ActionMatch, Rule, RulePolicy};
use hoop_core::recording::JsonlRecorder;
use hoop_core::sequence::UpstreamSecurity;
use hoop_core::server::{ListenerConfig, Server, ServerHandle};
use hoop_core::tls::{ServerTls, ServerTlsConfig, UpstreamRoots, UpstreamTls, UpstreamTlsConfig};
use hoop_core::{
    ActionClass, AuthError, Authenticator, Credential, Identity, Masker, Resource, Services,
};
use hoop_postgres::{PostgresAdapter, PostgresOptions, PostgresTarget, Secret};
use hoop_testkit::TestCa;
use hoop_testkit::postgres::{PgOptions, PgServer};

pub const ALICE: &str = "alice-token-0123456789abcdef";
pub const BOB: &str = "bob-token-0123456789abcdef";

/// The built-in rule masker: every detector redacts, and a column named `ssn` is
/// always masked.
pub fn rule_masker() -> Arc<dyn Masker> {
    Arc::new(
        RuleMasker::builder()
            .all_detectors(Strategy::Redact)
            .field_rule_labeled("ssn", Strategy::Redact, "SSN")
            .build()
            .unwrap(),
    )
}

pub struct Gateway {
    pub pg: PgServer,
    pub addr: SocketAddr,
    pub ca_path: PathBuf,
    pub dir: tempfile::TempDir,
    pub gate: InMemoryGate,
    pub handle: Option<ServerHandle>,
    pub adapter: Arc<PostgresAdapter>,
    /// Tokens added after the start ([`Gateway::add_token`]).
    pub late_tokens: Arc<Mutex<Vec<StaticToken>>>,
}

/// The fixed tokens, then the tokens added while the gateway runs (so a test can mint a
/// token that expires shortly after it connects, whatever the start took).
struct Tokens {
    fixed: StaticTokenAuthenticator,
    late: Arc<Mutex<Vec<StaticToken>>>,
}

#[async_trait::async_trait]
impl Authenticator for Tokens {
    async fn authenticate(&self, credential: &Credential<'_>) -> Result<Identity, AuthError> {
        match self.fixed.authenticate(credential).await {
            Err(AuthError::Invalid(_)) | Err(AuthError::NotApplicable) => {
                let late = StaticTokenAuthenticator::new(self.late.lock().unwrap().clone())
                    .map_err(|e| AuthError::Invalid(e.to_string()))?;
                late.authenticate(credential).await
            }
            r => r,
        }
    }
}

pub struct Setup {
    /// Trust the target with this CA file instead of the target's own CA.
    pub upstream_ca: Option<PathBuf>,
    pub masker: Arc<dyn Masker>,
    pub hold: Duration,
    pub read_only: bool,
    /// How the target authenticates the gateway.
    pub pg_auth: hoop_testkit::postgres::PgAuth,
    /// The target's certificate (default: a good one from the target's own CA).
    pub pg_cert: Option<hoop_testkit::TestCert>,
    /// Adapter options.
    pub options: PostgresOptions,
    /// `Services::end_at_credential_expiry`.
    pub end_at_credential_expiry: bool,
    /// The policy (default: [`policy`]).
    pub policy: Option<RulePolicy>,
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            upstream_ca: None,
            masker: rule_masker(),
            // Longer than any test takes to decide a review, even on a busy machine.
            hold: Duration::from_secs(120),
            read_only: false,
            pg_auth: hoop_testkit::postgres::PgAuth::Scram,
            pg_cert: None,
            options: PostgresOptions::default(),
            end_at_credential_expiry: false,
            policy: None,
        }
    }
}

pub fn policy() -> RulePolicy {
    RulePolicy::new(vec![
        Rule::allow("connect").actions(ActionMatch::connect()),
        Rule::review("alice-destructive", "destructive statements need a review")
            .subjects(["alice"])
            .actions(ActionMatch::class(ActionClass::Destructive)),
        Rule::deny("no-destructive", "destructive statements are not allowed")
            .actions(ActionMatch::class(ActionClass::Destructive)),
        Rule::allow("read-write").actions(ActionMatch::classes([
            ActionClass::Read,
            ActionClass::Write,
            ActionClass::Ddl,
        ])),
    ])
}

impl Gateway {
    pub async fn start(setup: Setup) -> Gateway {
        let pg = PgServer::start(PgOptions {
            users: vec![("app".into(), "app-secret".into())],
            databases: vec!["appdb".into()],
            auth: setup.pg_auth,
            server_cert: setup.pg_cert.clone(),
            ..PgOptions::default()
        });
        pg.psql(
            "appdb",
            "CREATE TABLE users (id int primary key, email text, ssn text, age int); \
             INSERT INTO users VALUES (1, 'alice@example.com', '123-45-6789', 30), (2, 'bob@example.com', '987-65-4321', 40); \
             CREATE TABLE t (a int); CREATE TABLE t2 (a int); \
             ALTER TABLE users OWNER TO app; ALTER TABLE t OWNER TO app; ALTER TABLE t2 OWNER TO app; GRANT CREATE ON SCHEMA public TO app;",
        );
        let dir = tempfile::tempdir().unwrap();
        let ca = TestCa::new("gateway-ca");
        let ca_path = ca.write_cert(dir.path(), "gw-ca.crt");
        let (cert, key) = ca.server().write(dir.path(), "gw");
        let tls = ServerTls::new(ServerTlsConfig {
            cert_path: cert,
            key_path: key,
            alpn: vec![b"postgresql".to_vec()],
            ..Default::default()
        })
        .unwrap();
        let upstream = UpstreamTls::new(UpstreamTlsConfig {
            roots: UpstreamRoots::CaFile(
                setup
                    .upstream_ca
                    .clone()
                    .unwrap_or_else(|| pg.ca_path().to_path_buf()),
            ),
            ..Default::default()
        })
        .unwrap();
        let adapter = Arc::new(PostgresAdapter::new(setup.options.clone()).with_target(
            PostgresTarget {
                resource: Resource::new("appdb", "postgres"),
                addr: SocketAddr::from(([127, 0, 0, 1], pg.port)),
                security: UpstreamSecurity::Tls {
                    tls: upstream,
                    server_name: "localhost".into(),
                },
                database: "appdb".into(),
                user: "app".into(),
                password: Secret::Value("app-secret".into()),
                read_only: setup.read_only,
            },
        ));
        let auth = StaticTokenAuthenticator::new([
            StaticToken::new("alice", &hash_token(ALICE))
                .unwrap()
                .with_groups(["dev"]),
            StaticToken::new("bob", &hash_token(BOB)).unwrap(),
        ])
        .unwrap();
        let late_tokens = Arc::new(Mutex::new(Vec::new()));
        let auth = Tokens {
            fixed: auth,
            late: late_tokens.clone(),
        };
        let gate = InMemoryGate::new(GateConfig::default());
        let mut services = Services::new(Arc::new(auth));
        services.end_at_credential_expiry = setup.end_at_credential_expiry;
        services.policy = Arc::new(setup.policy.clone().unwrap_or_else(policy));
        services.masker = setup.masker.clone();
        services.recorder = Arc::new(JsonlRecorder::new(dir.path().join("rec")));
        services.approvals = Arc::new(gate.clone());
        services.approval_hold = setup.hold;
        let server = Server::builder()
            .services(Arc::new(services))
            .listener(
                ListenerConfig::new("pg", "127.0.0.1:0".parse().unwrap(), adapter.clone()).tls(tls),
            )
            .build()
            .await
            .unwrap();
        let addr = server.local_addr("pg").unwrap();
        let handle = server.spawn();
        Gateway {
            pg,
            addr,
            ca_path,
            dir,
            gate,
            handle: Some(handle),
            adapter,
            late_tokens,
        }
    }

    /// Accepts `token` from now on.
    pub fn add_token(&self, token: StaticToken) {
        self.late_tokens.lock().unwrap().push(token);
    }

    pub fn conn_string(&self, token: &str) -> String {
        format!(
            "host=127.0.0.1 port={} user=anyone dbname=appdb password={token} sslmode=verify-full sslrootcert={}",
            self.addr.port(),
            self.ca_path.display()
        )
    }

    /// Runs psql through the gateway (blocking: call from spawn_blocking).
    pub fn psql(&self, token: &str, args: &[&str]) -> Output {
        Command::new("psql")
            .arg(self.conn_string(token))
            .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
            .args(args)
            .output()
            .unwrap()
    }

    /// Runs psql through the gateway with `input` on its standard input (blocking).
    pub fn psql_stdin(&self, token: &str, args: &[&str], input: &[u8]) -> Output {
        use std::io::Write as _;
        let mut child = Command::new("psql")
            .arg(self.conn_string(token))
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(input).unwrap();
        child.wait_with_output().unwrap()
    }

    pub fn recordings(&self) -> Vec<PathBuf> {
        let mut v: Vec<_> = std::fs::read_dir(self.dir.path().join("rec"))
            .map(|d| d.map(|e| e.unwrap().path()).collect())
            .unwrap_or_default();
        v.sort();
        v
    }

    pub fn all_recordings_text(&self) -> String {
        self.recordings()
            .iter()
            .map(|p| std::fs::read_to_string(p).unwrap())
            .collect()
    }

    /// The recordings' text once it contains every one of `needles`: recordings are
    /// written by a background thread, after the client already has its answer. Panics
    /// with what there is after a minute.
    pub async fn wait_recorded(&self, needles: &[&str]) -> String {
        let mut text = String::new();
        let found = eventually(|| {
            text = self.all_recordings_text();
            needles.iter().all(|n| text.contains(n))
        })
        .await;
        assert!(found, "{needles:?} never recorded in:\n{text}");
        text
    }
}

/// A tokio-postgres client through the gateway with verified TLS.
pub async fn connect(gw: &Gateway, token: &str) -> tokio_postgres::Client {
    try_connect(gw, token).await.unwrap()
}

/// A rustls connector for tokio-postgres trusting the gateway's CA (and nothing else).
pub fn tls_connector(gw: &Gateway) -> tokio_postgres_rustls::MakeRustlsConnect {
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(&gw.ca_path).unwrap();
    for c in rustls_pki_types::CertificateDer::pem_slice_iter(&pem) {
        roots.add(c.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    tokio_postgres_rustls::MakeRustlsConnect::new(config)
}

/// tokio-postgres connection string (TLS is verified by the connector's roots).
pub fn tokio_conn_string(gw: &Gateway, token: &str) -> String {
    format!(
        "host=127.0.0.1 port={} user=anyone dbname=appdb password={token} sslmode=require",
        gw.addr.port()
    )
}

pub async fn try_connect(
    gw: &Gateway,
    token: &str,
) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, conn) =
        tokio_postgres::connect(&tokio_conn_string(gw, token), tls_connector(gw)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

use rustls_pki_types::pem::PemObject;
