//! A gateway with the HTTP adapter in front of an in-process hyper upstream over TLS, for
//! the integration tests.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    dead_code
)]

pub mod upstream;

pub use hoop_testkit::wait::eventually;
use std::borrow::Cow;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use hoop_core::approval::{GateConfig, InMemoryGate};
use hoop_core::auth::{AuthenticatorChain, StaticToken, StaticTokenAuthenticator, hash_token};
use hoop_core::policy::{ActionMatch, Rule, RulePolicy};
use hoop_core::recording::JsonlRecorder;
use hoop_core::sequence::UpstreamSecurity;
use hoop_core::server::{ListenerConfig, Server, ServerHandle};
use hoop_core::tls::{ServerTls, ServerTlsConfig, UpstreamRoots, UpstreamTls, UpstreamTlsConfig};
use hoop_core::{
    Action, ActionClass, Authenticator, Decision, Field, Masker, Policy, Request, Resource,
    Services,
};
use hoop_http::{HttpAdapter, HttpOptions, HttpTarget, Secret, UpstreamCredential};
use hoop_testkit::TestCa;

pub const ALICE: &str = "alice-token-0123456789abcdef";
pub const BOB: &str = "bob-token-0123456789abcdef";
pub const UPSTREAM_TOKEN: &str = "upstream-secret-token-42";

/// Masks any string containing an '@' and every value under a key named `ssn`.
pub struct TestMasker;

impl Masker for TestMasker {
    fn mask<'v>(&self, field: &Field<'_>, value: &'v str) -> Cow<'v, str> {
        if field.name == Some("ssn") {
            return Cow::Owned("[REDACTED:SSN]".into());
        }
        if value.contains('@') {
            Cow::Owned("[REDACTED:EMAIL]".into())
        } else {
            Cow::Borrowed(value)
        }
    }
    fn masks_field(&self, field: &Field<'_>) -> bool {
        field.name == Some("ssn")
    }
}

/// Denies anything under `/admin` (by the normalised path in the command text), then
/// the rules: alice's destructive requests reviewed, others' denied, admin-class denied,
/// read/write allowed.
pub struct TestPolicy(RulePolicy);

#[async_trait]
impl Policy for TestPolicy {
    async fn decide(&self, request: &Request<'_>) -> Decision {
        if let Action::Command(c) = request.action {
            let path = c.text.split_whitespace().nth(1).unwrap_or("");
            if path == "/admin" || path.starts_with("/admin/") || path.starts_with("/admin?") {
                return Decision::deny("admin is off limits");
            }
        }
        self.0.decide(request).await
    }
}

pub fn policy() -> TestPolicy {
    TestPolicy(RulePolicy::new(vec![
        Rule::allow("connect").actions(ActionMatch::connect()),
        Rule::review("alice-destructive", "destructive requests need a review")
            .subjects(["alice"])
            .actions(ActionMatch::class(ActionClass::Destructive)),
        Rule::deny("no-destructive", "destructive requests are not allowed")
            .actions(ActionMatch::class(ActionClass::Destructive)),
        Rule::allow("read-write").actions(ActionMatch::classes([
            ActionClass::Read,
            ActionClass::Write,
        ])),
    ]))
}

pub struct Setup {
    pub protocol: &'static str,
    pub hold: Duration,
    pub max_body: usize,
    pub passthrough: bool,
    /// ALPN the gateway offers the upstream.
    pub upstream_alpn: Vec<Vec<u8>>,
    /// Trust this CA file for the upstream instead of the upstream's own CA.
    pub upstream_ca: Option<PathBuf>,
    /// Verify the upstream as this name (default `localhost`).
    pub upstream_name: String,
    /// Extra authenticator tried before the static tokens.
    pub extra_auth: Option<Arc<dyn Authenticator>>,
    /// Require client certificates issued by this CA file.
    pub client_ca: Option<PathBuf>,
    pub credential: Option<UpstreamCredential>,
    pub options: HttpOptions,
    pub masker: Arc<dyn Masker>,
    /// Listener idle timeout.
    pub idle: Option<Duration>,
    /// `Services::end_at_credential_expiry`.
    pub end_at_credential_expiry: bool,
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            protocol: "http",
            // Longer than any test takes to decide a review, even on a busy machine.
            hold: Duration::from_secs(120),
            max_body: 1 << 20,
            passthrough: false,
            upstream_alpn: vec![b"http/1.1".to_vec()],
            upstream_ca: None,
            upstream_name: "localhost".into(),
            extra_auth: None,
            client_ca: None,
            credential: Some(UpstreamCredential::Bearer(Secret::Value(
                UPSTREAM_TOKEN.into(),
            ))),
            options: HttpOptions::default(),
            masker: Arc::new(TestMasker),
            idle: None,
            end_at_credential_expiry: false,
        }
    }
}

struct ChainShared(Arc<dyn Authenticator>);

#[async_trait]
impl Authenticator for ChainShared {
    async fn authenticate(
        &self,
        c: &hoop_core::Credential<'_>,
    ) -> Result<hoop_core::Identity, hoop_core::AuthError> {
        self.0.authenticate(c).await
    }
}

pub struct Gateway {
    pub addr: SocketAddr,
    pub ca_path: PathBuf,
    pub gw_ca: TestCa,
    pub dir: tempfile::TempDir,
    pub gate: InMemoryGate,
    pub handle: Option<ServerHandle>,
}

impl Gateway {
    /// A gateway in front of `upstream_addr` (whose certificates come from `upstream_ca`).
    pub async fn start(upstream_addr: SocketAddr, upstream_ca: PathBuf, setup: Setup) -> Gateway {
        let target = target(upstream_addr, upstream_ca, "api", &setup);
        let adapter = HttpAdapter::new(target, setup.options.clone());
        Self::start_adapter(adapter, setup).await
    }

    /// A gateway routing by `Host`: each `(host, resource name, upstream address, its CA)`.
    pub async fn start_hosts(
        routes: Vec<(&str, &str, SocketAddr, PathBuf)>,
        setup: Setup,
    ) -> Gateway {
        let routes: Vec<(Vec<String>, HttpTarget)> = routes
            .into_iter()
            .map(|(host, name, addr, ca)| (vec![host.to_owned()], target(addr, ca, name, &setup)))
            .collect();
        let adapter = HttpAdapter::by_host(routes, setup.options.clone()).unwrap();
        Self::start_adapter(adapter, setup).await
    }

    async fn start_adapter(adapter: HttpAdapter, setup: Setup) -> Gateway {
        let dir = tempfile::tempdir().unwrap();
        let ca = TestCa::new("gateway-ca");
        let ca_path = ca.write_cert(dir.path(), "gw-ca.crt");
        let (cert, key) = ca.server().write(dir.path(), "gw");
        let tls = ServerTls::new(ServerTlsConfig {
            cert_path: cert,
            key_path: key,
            client_ca_path: setup.client_ca.clone(),
            alpn: vec![b"h2".to_vec(), b"http/1.1".to_vec()],
            ..Default::default()
        })
        .unwrap();
        let adapter = Arc::new(adapter);
        let tokens = StaticTokenAuthenticator::new([
            StaticToken::new("alice", &hash_token(ALICE))
                .unwrap()
                .with_groups(["dev"]),
            StaticToken::new("bob", &hash_token(BOB)).unwrap(),
        ])
        .unwrap();
        let mut chain = AuthenticatorChain::new();
        if let Some(a) = setup.extra_auth.clone() {
            chain = chain.push(ChainShared(a));
        }
        chain = chain.push(tokens);
        chain = chain.push(hoop_core::auth::ClientCertAuthenticator::new(
            hoop_core::auth::CertSubjectSource::CommonName,
        ));
        let gate = InMemoryGate::new(GateConfig::default());
        let mut services = Services::new(Arc::new(chain));
        services.policy = Arc::new(policy());
        services.masker = setup.masker.clone();
        services.recorder = Arc::new(JsonlRecorder::new(dir.path().join("rec")));
        services.approvals = Arc::new(gate.clone());
        services.approval_hold = setup.hold;
        services.end_at_credential_expiry = setup.end_at_credential_expiry;
        let mut listener =
            ListenerConfig::new("http", "127.0.0.1:0".parse().unwrap(), adapter).tls(tls);
        if let Some(idle) = setup.idle {
            listener = listener.idle_timeout(idle);
        }
        let server = Server::builder()
            .services(Arc::new(services))
            .listener(listener)
            .build()
            .await
            .unwrap();
        let addr = server.local_addr("http").unwrap();
        let handle = server.spawn();
        Gateway {
            addr,
            ca_path,
            gw_ca: ca,
            dir,
            gate,
            handle: Some(handle),
        }
    }

    /// `--next` plus the options curl resets with it (resolve, CA, output format).
    pub fn next(&self) -> Vec<String> {
        vec![
            "--next".into(),
            "-sS".into(),
            "--resolve".into(),
            format!("localhost:{}:127.0.0.1", self.addr.port()),
            "--cacert".into(),
            self.ca_path.display().to_string(),
            "-w".into(),
            "\n%{http_code}".into(),
        ]
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.addr.port())
    }

    /// Runs curl against the gateway (blocking). Returns (status, body).
    pub fn curl(&self, args: &[&str]) -> (u16, String) {
        let args: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
        CurlCtx {
            port: self.addr.port(),
            ca: self.ca_path.clone(),
        }
        .run(&args)
    }

    /// curl in a blocking task.
    pub async fn curl_async(&self, args: &[&str]) -> (u16, String) {
        let this = CurlCtx {
            port: self.addr.port(),
            ca: self.ca_path.clone(),
        };
        let args: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
        tokio::task::spawn_blocking(move || this.run(&args))
            .await
            .unwrap()
    }

    pub fn recordings_text(&self) -> String {
        let mut v: Vec<_> = std::fs::read_dir(self.dir.path().join("rec"))
            .map(|d| d.map(|e| e.unwrap().path()).collect())
            .unwrap_or_default();
        v.sort();
        v.iter()
            .map(|p| std::fs::read_to_string(p).unwrap())
            .collect()
    }

    /// Recordings text once it contains `needle` (recordings are written in the
    /// background), or what there is after a minute.
    pub async fn wait_recorded(&self, needle: &str) -> String {
        self.wait_recorded_all(&[needle]).await
    }

    /// Recordings text once it contains every one of `needles` (events of one session,
    /// or of several, reach the files in the background, not all at once), or what
    /// there is after a minute.
    pub async fn wait_recorded_all(&self, needles: &[&str]) -> String {
        let mut t = String::new();
        eventually(|| {
            t = self.recordings_text();
            needles.iter().all(|n| t.contains(n))
        })
        .await;
        t
    }
}

struct CurlCtx {
    port: u16,
    ca: PathBuf,
}

impl CurlCtx {
    fn run(&self, args: &[String]) -> (u16, String) {
        let out = Command::new("curl")
            .args(["-sS", "--resolve"])
            .arg(format!("localhost:{}:127.0.0.1", self.port))
            .arg("--cacert")
            .arg(&self.ca)
            .args(["-w", "\n%{http_code}"])
            .args(args)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
        let code = code.trim().parse().unwrap_or_else(|_| {
            panic!(
                "curl failed: {text} {}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
        (code, body.to_owned())
    }
}

pub fn bearer(token: &str) -> String {
    format!("Authorization: Bearer {token}")
}

/// A TLS connection to the gateway (trusting its CA) offering `alpn`.
pub async fn tls_to(
    gw: &Gateway,
    alpn: &[&[u8]],
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(gw.gw_ca.cert_der()).unwrap();
    let mut config = rustls::ClientConfig::builder_with_provider(hoop_core::crypto_provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let tcp = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .unwrap()
}

type ClientBody = http_body_util::Full<bytes::Bytes>;

/// A hyper client connection to the gateway, HTTP/2 or HTTP/1.1 (chosen by ALPN).
pub enum HyperClient {
    H1(hyper::client::conn::http1::SendRequest<ClientBody>),
    H2(hyper::client::conn::http2::SendRequest<ClientBody>),
}

impl HyperClient {
    pub async fn connect(gw: &Gateway, h2: bool) -> HyperClient {
        use hyper_util::rt::{TokioExecutor, TokioIo};
        if h2 {
            let tls = tls_to(gw, &[b"h2"]).await;
            assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
            let (s, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
                .handshake(TokioIo::new(tls))
                .await
                .unwrap();
            tokio::spawn(conn);
            HyperClient::H2(s)
        } else {
            let tls = tls_to(gw, &[b"http/1.1"]).await;
            let (s, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
                .await
                .unwrap();
            tokio::spawn(conn.with_upgrades());
            HyperClient::H1(s)
        }
    }

    /// Sends `req` (its URI is made absolute for HTTP/2).
    pub async fn send(
        &mut self,
        gw: &Gateway,
        mut req: http::Request<ClientBody>,
    ) -> http::Response<hyper::body::Incoming> {
        match self {
            HyperClient::H1(s) => {
                if !req.headers().contains_key("host") {
                    req.headers_mut()
                        .insert("host", "localhost".parse().unwrap());
                }
                s.ready().await.unwrap();
                s.send_request(req).await.unwrap()
            }
            HyperClient::H2(s) => {
                // A Host header names the authority (the TLS name stays localhost).
                let host = match req.headers_mut().remove("host") {
                    Some(h) => h.to_str().unwrap().to_owned(),
                    None => format!("localhost:{}", gw.addr.port()),
                };
                let uri = format!("https://{host}{}", req.uri().path_and_query().unwrap());
                *req.uri_mut() = uri.parse().unwrap();
                *req.version_mut() = http::Version::HTTP_2;
                s.ready().await.unwrap();
                s.send_request(req).await.unwrap()
            }
        }
    }
}

/// `GET path` with `token`.
pub fn get(path: &str, token: &str) -> http::Request<ClientBody> {
    http::Request::get(path)
        .header("authorization", format!("Bearer {token}"))
        .body(ClientBody::default())
        .unwrap()
}

/// The target the harness puts behind the gateway.
fn target(
    upstream_addr: SocketAddr,
    upstream_ca: PathBuf,
    name: &str,
    setup: &Setup,
) -> HttpTarget {
    let upstream_tls = UpstreamTls::new(UpstreamTlsConfig {
        roots: UpstreamRoots::CaFile(setup.upstream_ca.clone().unwrap_or(upstream_ca)),
        alpn: setup.upstream_alpn.clone(),
        ..Default::default()
    })
    .unwrap();
    let mut target = HttpTarget::new(
        Resource::new(name, setup.protocol),
        upstream_addr,
        UpstreamSecurity::Tls {
            tls: upstream_tls,
            server_name: setup.upstream_name.clone(),
        },
    )
    .authority(format!("localhost:{}", upstream_addr.port()))
    .strip_cookies(["gw_session"])
    .max_body(setup.max_body)
    .passthrough_over_limit(setup.passthrough);
    target.credential = setup.credential.clone();
    target
}
