//! End-to-end double termination through a real gateway: a TLS client, the gateway
//! (`Server` + `TcpAdapter`) with its own certificate, and a TLS echo server as the target
//! with a certificate from a different CA. Real sockets on 127.0.0.1, real TLS.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

use hoop_testkit::wait::wait_until;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use hoop_core::recording::{RecordError, SessionMeta};
use hoop_core::sequence::UpstreamSecurity;
use hoop_core::server::{ListenerConfig, Server, ServerHandle};
use hoop_core::tcp::{TcpAdapter, TcpAdapterConfig};
use hoop_core::tls::{ServerTls, ServerTlsConfig, UpstreamRoots, UpstreamTls, UpstreamTlsConfig};
use hoop_core::{
    Action, AuthError, AuthMethod, Authenticator, Credential, Decision, Event, Identity, Policy,
    Recorder, Recording, Request, Resource, Services, SessionId,
};
use hoop_testkit::{TestCa, TestCert};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::client::TlsStream;

// ---------------------------------------------------------------------------------------
// Test services: authenticator, policy, recorder.

struct TestAuth;

#[async_trait]
impl Authenticator for TestAuth {
    async fn authenticate(&self, credential: &Credential<'_>) -> Result<Identity, AuthError> {
        match credential {
            Credential::Bearer("alice-token") => {
                Ok(Identity::new("alice", AuthMethod::StaticToken))
            }
            Credential::Bearer("bob-token") => Ok(Identity::new("bob", AuthMethod::StaticToken)),
            Credential::Bearer(_) => Err(AuthError::Invalid(String::from("unknown token"))),
            // The TLS layer verified the chain; the subject is the certificate's CN.
            Credential::ClientCertificate(der) => {
                let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref())
                    .map_err(|_| AuthError::Invalid(String::from("bad certificate")))?;
                let cn = cert
                    .subject()
                    .iter_common_name()
                    .next()
                    .and_then(|cn| cn.as_str().ok())
                    .ok_or_else(|| AuthError::Invalid(String::from("no CN")))?;
                Ok(Identity::new(cn, AuthMethod::ClientCertificate))
            }
        }
    }
}

struct TestPolicy;

#[async_trait]
impl Policy for TestPolicy {
    async fn decide(&self, req: &Request<'_>) -> Decision {
        match req.action {
            Action::Connect if req.identity.subject == "alice" => Decision::Allow,
            _ => Decision::deny("only alice may connect"),
        }
    }
}

type Log = Arc<Mutex<Vec<(SessionId, Event)>>>;

#[derive(Clone, Default)]
struct TestRecorder {
    events: Log,
    opened: Arc<Mutex<Vec<SessionMeta>>>,
}

struct TestRecording {
    id: SessionId,
    events: Log,
}

#[async_trait]
impl Recorder for TestRecorder {
    async fn open(&self, meta: &SessionMeta) -> Result<Box<dyn Recording>, RecordError> {
        self.opened.lock().unwrap().push(meta.clone());
        Ok(Box::new(TestRecording {
            id: meta.session_id,
            events: self.events.clone(),
        }))
    }
}

#[async_trait]
impl Recording for TestRecording {
    fn record(&self, event: Event) -> Result<(), RecordError> {
        self.events.lock().unwrap().push((self.id, event));
        Ok(())
    }
    async fn finish(self: Box<Self>, reason: &str) -> Result<(), RecordError> {
        self.events.lock().unwrap().push((
            self.id,
            Event::End {
                reason: reason.to_owned(),
            },
        ));
        Ok(())
    }
}

impl TestRecorder {
    fn events(&self) -> Vec<Event> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .map(|(_, e)| e.clone())
            .collect()
    }
    fn errors(&self) -> Vec<String> {
        self.events()
            .into_iter()
            .filter_map(|e| match e {
                Event::Error { message } => Some(message),
                _ => None,
            })
            .collect()
    }
    fn end_reasons(&self) -> Vec<String> {
        self.events()
            .into_iter()
            .filter_map(|e| match e {
                Event::End { reason } => Some(reason),
                _ => None,
            })
            .collect()
    }
    fn relay_notes(&self) -> Vec<serde_json::Value> {
        self.events()
            .into_iter()
            .filter_map(|e| match e {
                Event::Note { kind, detail } if kind == "tcp_relay" => Some(detail),
                _ => None,
            })
            .collect()
    }
}

// ---------------------------------------------------------------------------------------
// The target: a TLS echo server that records whom it accepted.

#[derive(Clone, Debug)]
struct Accepted {
    peer: SocketAddr,
    sni: Option<String>,
}

struct Upstream {
    addr: SocketAddr,
    accepted: Arc<Mutex<Vec<Accepted>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn start_upstream(cert: &TestCert, ca: &TestCa) -> Upstream {
    let config = rustls::ServerConfig::builder_with_provider(hoop_core::crypto_provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.cert(), ca.cert_der()], cert.key())
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(Mutex::new(Vec::new()));
    let acc = accepted.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((tcp, peer)) = listener.accept().await else {
                continue;
            };
            let acceptor = acceptor.clone();
            let acc = acc.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                acc.lock().unwrap().push(Accepted {
                    peer,
                    sni: tls.get_ref().1.server_name().map(str::to_owned),
                });
                let mut buf = vec![0u8; 8192];
                loop {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if tls.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    }
                }
                let _ = tls.shutdown().await;
            });
        }
    });
    Upstream {
        addr,
        accepted,
        task,
    }
}

// ---------------------------------------------------------------------------------------
// The gateway.

struct Gateway {
    handle: Option<ServerHandle>,
    addr: SocketAddr,
    recorder: TestRecorder,
    _dir: tempfile::TempDir,
}

impl Gateway {
    fn handle(&self) -> &ServerHandle {
        self.handle.as_ref().unwrap()
    }
}

struct Opts {
    max_connections: usize,
    idle: Duration,
    handshake: Duration,
    /// Instead of verified TLS toward the target.
    upstream: Option<UpstreamSecurity>,
    /// CA whose client certificates the listener asks for.
    client_ca: Option<String>,
}

impl Default for Opts {
    fn default() -> Self {
        Opts {
            max_connections: 16,
            idle: Duration::from_secs(60),
            handshake: Duration::from_secs(10),
            upstream: None,
            client_ca: None,
        }
    }
}

async fn start_gateway(
    gateway_ca: &TestCa,
    upstream_ca: &TestCa,
    upstream_addr: SocketAddr,
    opts: Opts,
) -> Gateway {
    let dir = tempfile::tempdir().unwrap();
    let (cert_path, key_path) = gateway_ca.server().write(dir.path(), "gateway");
    let client_ca_path = opts.client_ca.as_ref().map(|pem| {
        let p = dir.path().join("client-ca.crt");
        std::fs::write(&p, pem).unwrap();
        p
    });
    let server_tls = ServerTls::new(ServerTlsConfig {
        cert_path,
        key_path,
        client_ca_path,
        ..ServerTlsConfig::default()
    })
    .unwrap();
    let upstream_tls = UpstreamTls::new(UpstreamTlsConfig {
        roots: UpstreamRoots::CaPem(upstream_ca.cert_pem().as_bytes().to_vec()),
        ..UpstreamTlsConfig::default()
    })
    .unwrap();
    let recorder = TestRecorder::default();
    let mut services = Services::new(Arc::new(TestAuth));
    services.policy = Arc::new(TestPolicy);
    services.recorder = Arc::new(recorder.clone());
    let adapter = TcpAdapter::new(TcpAdapterConfig::new(
        Resource::new("echo", "tcp"),
        upstream_addr,
        opts.upstream.unwrap_or(UpstreamSecurity::Tls {
            tls: upstream_tls,
            server_name: String::from("localhost"),
        }),
    ));
    let listener = ListenerConfig::new(
        "tcp",
        SocketAddr::from(([127, 0, 0, 1], 0)),
        Arc::new(adapter),
    )
    .tls(server_tls)
    .max_connections(opts.max_connections)
    .idle_timeout(opts.idle)
    .handshake_timeout(opts.handshake);
    let server = Server::builder()
        .services(Arc::new(services))
        .listener(listener)
        .build()
        .await
        .unwrap();
    let addr = server.bound_addrs()[0];
    assert_eq!(server.local_addr("tcp"), Some(addr));
    Gateway {
        handle: Some(server.spawn()),
        addr,
        recorder,
        _dir: dir,
    }
}

// ---------------------------------------------------------------------------------------
// The client.

fn client_config(trusted: &TestCa) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(trusted.cert_der()).unwrap();
    Arc::new(
        rustls::ClientConfig::builder_with_provider(hoop_core::crypto_provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

async fn tls_connect(
    addr: SocketAddr,
    config: &Arc<rustls::ClientConfig>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    tokio_rustls::TlsConnector::from(config.clone())
        .connect(name, tcp)
        .await
}

/// Reads one line (without the newline); an empty string means the peer closed.
async fn read_line<S: tokio::io::AsyncRead + Unpin>(s: &mut S) -> String {
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    while line.len() < 4096 {
        match s.read(&mut b).await {
            Ok(1) if b[0] == b'\n' => break,
            Ok(1) => line.push(b[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&line).into_owned()
}

/// Connects, sends `AUTH token`, returns the stream and the gateway's answer line.
async fn login(
    addr: SocketAddr,
    config: &Arc<rustls::ClientConfig>,
    token: &str,
) -> (TlsStream<TcpStream>, String) {
    let mut tls = tls_connect(addr, config).await.unwrap();
    tls.write_all(format!("AUTH {token}\n").as_bytes())
        .await
        .unwrap();
    tls.flush().await.unwrap();
    let line = read_line(&mut tls).await;
    (tls, line)
}

/// Whether the stream is at its end (EOF or a reset/abrupt close), reading and
/// discarding nothing else.
async fn sees_end<S: tokio::io::AsyncRead + Unpin>(s: &mut S) -> bool {
    let mut b = [0u8; 64];
    matches!(s.read(&mut b).await, Ok(0) | Err(_))
}

async fn echo_once(tls: &mut TlsStream<TcpStream>, msg: &[u8]) {
    tls.write_all(msg).await.unwrap();
    tls.flush().await.unwrap();
    let mut back = vec![0u8; msg.len()];
    tls.read_exact(&mut back).await.unwrap();
    assert_eq!(back, msg);
}

/// Guards a test against hanging.
async fn bounded<F: Future<Output = ()>>(f: F) {
    tokio::time::timeout(Duration::from_secs(300), f)
        .await
        .expect("test did not finish");
}

fn issuer_cn(der: &[u8]) -> String {
    let (_, cert) = x509_parser::parse_x509_certificate(der).unwrap();
    cert.issuer()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .unwrap()
        .to_owned()
}

// ---------------------------------------------------------------------------------------
// (a) Double termination: two TLS sessions, the client sees only the gateway.

#[tokio::test]
async fn echo_through_two_separate_tls_sessions() {
    bounded(async {
        let gateway_ca = TestCa::new("gateway-ca");
        let upstream_ca = TestCa::new("upstream-ca");
        let upstream_cert = upstream_ca.server();
        let upstream = start_upstream(&upstream_cert, &upstream_ca).await;
        let gw = start_gateway(&gateway_ca, &upstream_ca, upstream.addr, Opts::default()).await;
        let cfg = client_config(&gateway_ca);

        let (mut tls, line) = login(gw.addr, &cfg, "alice-token").await;
        assert_eq!(line, "OK");

        // The client's TLS peer is the gateway: its certificate, issued by gateway-ca.
        let peer_der = tls.get_ref().1.peer_certificates().unwrap()[0].to_vec();
        assert_eq!(issuer_cn(&peer_der), "gateway-ca");
        assert_ne!(peer_der, upstream_cert.cert_der);

        echo_once(&mut tls, b"hello through the gateway\n").await;

        // A large transfer both ways at once.
        let payload: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
        let (mut rd, mut wr) = tokio::io::split(tls);
        let p2 = payload.clone();
        let writer = tokio::spawn(async move {
            wr.write_all(&p2).await.unwrap();
            wr.flush().await.unwrap();
            // Half-close: the gateway passes it on to the target, which then closes.
            wr.shutdown().await.unwrap();
            wr
        });
        let mut got = Vec::new();
        rd.read_to_end(&mut got).await.unwrap();
        writer.await.unwrap();
        assert_eq!(got.len(), payload.len());
        assert!(got == payload, "echoed bytes differ");

        // The target saw a separate TLS session, opened by the gateway (not the client),
        // asking for the name the gateway verifies.
        let accepted = upstream.accepted.lock().unwrap().clone();
        assert_eq!(accepted.len(), 1);
        assert_eq!(accepted[0].sni.as_deref(), Some("localhost"));
        assert_ne!(accepted[0].peer.port(), gw.addr.port());

        // The audit trail: opened for alice on echo, byte counts, clean end.
        let total = payload.len() as u64 + 26;
        wait_until("relay recorded", || !gw.recorder.relay_notes().is_empty()).await;
        let note = &gw.recorder.relay_notes()[0];
        assert_eq!(note["bytes_up"], total);
        assert_eq!(note["bytes_down"], total);
        assert_eq!(note["end"], "client closed");
        wait_until("end recorded", || !gw.recorder.end_reasons().is_empty()).await;
        assert_eq!(gw.recorder.end_reasons(), vec!["client closed"]);
        let opened = gw.recorder.opened.lock().unwrap().clone();
        assert_eq!(opened.len(), 1);
        assert_eq!(opened[0].identity.subject, "alice");
        assert_eq!(opened[0].resource, "echo");
        assert_eq!(opened[0].protocol, "tcp");
        let registry = gw.handle().registry();
        wait_until("session ended", || registry.live_count() == 0).await;
        assert_eq!(
            registry.recent()[0].end_reason.as_deref(),
            Some("client closed")
        );
    })
    .await;
}

// ---------------------------------------------------------------------------------------
// (b) Every kind of bad target certificate fails the session and reaches the audit trail.

#[tokio::test]
async fn bad_upstream_certificates_fail_closed_and_are_audited() {
    bounded(async {
        let gateway_ca = TestCa::new("gateway-ca");
        let upstream_ca = TestCa::new("upstream-ca");
        let rogue_ca = TestCa::new("rogue-ca");
        let cfg = client_config(&gateway_ca);
        let cases: Vec<(&str, TestCert, &TestCa)> = vec![
            ("expired", upstream_ca.expired_server(), &upstream_ca),
            (
                "not_yet_valid",
                upstream_ca.not_yet_valid_server(),
                &upstream_ca,
            ),
            (
                "name_mismatch",
                upstream_ca.wrong_host_server(),
                &upstream_ca,
            ),
            ("unknown_issuer", rogue_ca.server(), &rogue_ca),
        ];
        let mut reasons_missing = Vec::new();
        for (reason, cert, issuer) in &cases {
            let upstream = start_upstream(cert, issuer).await;
            let gw = start_gateway(&gateway_ca, &upstream_ca, upstream.addr, Opts::default()).await;
            let (mut tls, line) = login(gw.addr, &cfg, "alice-token").await;
            assert!(
                line.is_empty() || line.starts_with("ERR upstream TLS refused"),
                "{reason}: unexpected answer {line:?}"
            );
            assert!(sees_end(&mut tls).await, "{reason}: connection not closed");
            wait_until("refusal recorded", || !gw.recorder.errors().is_empty()).await;
            let errors = gw.recorder.errors();
            assert!(
                errors.iter().any(|m| m.contains("upstream TLS refused")),
                "{reason}: no refusal in {errors:?}"
            );
            // The target never completed a TLS session with the gateway.
            assert!(upstream.accepted.lock().unwrap().is_empty());
            wait_until("end recorded", || !gw.recorder.end_reasons().is_empty()).await;
            let registry = gw.handle().registry();
            wait_until("session ended", || registry.live_count() == 0).await;
            let ended = registry.recent()[0].end_reason.clone().unwrap();
            assert!(ended.contains("upstream TLS refused"), "{ended}");
            // The typed reason (needs the TLS work item's typed refusals).
            if !errors.iter().any(|m| m.contains(reason)) || !line.contains(reason) {
                reasons_missing.push(format!("{reason}: audit {errors:?}, client {line:?}"));
            }
        }
        assert!(
            reasons_missing.is_empty(),
            "typed refusal reasons missing: {reasons_missing:#?}"
        );
    })
    .await;
}

// ---------------------------------------------------------------------------------------
// (c) Policy deny and failed authentication close the session with ERR.

#[tokio::test]
async fn policy_deny_and_bad_credentials_close_with_err() {
    bounded(async {
        let gateway_ca = TestCa::new("gateway-ca");
        let upstream_ca = TestCa::new("upstream-ca");
        let upstream = start_upstream(&upstream_ca.server(), &upstream_ca).await;
        let gw = start_gateway(&gateway_ca, &upstream_ca, upstream.addr, Opts::default()).await;
        let cfg = client_config(&gateway_ca);

        let (mut tls, line) = login(gw.addr, &cfg, "bob-token").await;
        assert!(line.starts_with("ERR access denied"), "{line:?}");
        assert!(line.contains("only alice may connect"), "{line:?}");
        assert!(sees_end(&mut tls).await);

        let (mut tls, line) = login(gw.addr, &cfg, "mallory-token").await;
        assert!(line.starts_with("ERR authentication failed"), "{line:?}");
        assert!(
            !line.contains("mallory-token"),
            "credential echoed: {line:?}"
        );
        assert!(sees_end(&mut tls).await);

        // Not an AUTH line at all.
        let mut tls = tls_connect(gw.addr, &cfg).await.unwrap();
        tls.write_all(b"HELLO\n").await.unwrap();
        assert!(read_line(&mut tls).await.starts_with("ERR expected"));

        // Nothing reached the target, no recording was opened for a refused session.
        assert!(upstream.accepted.lock().unwrap().is_empty());
        assert!(gw.recorder.opened.lock().unwrap().is_empty());
        let registry = gw.handle().registry();
        wait_until("sessions ended", || registry.recent().len() == 3).await;
        let reasons: Vec<String> = registry
            .recent()
            .into_iter()
            .filter_map(|s| s.end_reason)
            .collect();
        assert!(reasons.iter().any(|r| r.contains("denied")), "{reasons:?}");
        assert!(
            reasons.iter().any(|r| r.contains("authentication failed")),
            "{reasons:?}"
        );
        // The denied session knew its user and resource.
        let bob = registry
            .recent()
            .into_iter()
            .find(|s| s.user.as_deref() == Some("bob"))
            .unwrap();
        assert_eq!(bob.resource.as_deref(), Some("echo"));
    })
    .await;
}

// ---------------------------------------------------------------------------------------
// (d) The registry lists a live session; kill ends it.

#[tokio::test]
async fn registry_lists_and_kills_a_live_session() {
    bounded(async {
        let gateway_ca = TestCa::new("gateway-ca");
        let upstream_ca = TestCa::new("upstream-ca");
        let upstream = start_upstream(&upstream_ca.server(), &upstream_ca).await;
        let gw = start_gateway(&gateway_ca, &upstream_ca, upstream.addr, Opts::default()).await;
        let cfg = client_config(&gateway_ca);

        let (mut tls, line) = login(gw.addr, &cfg, "alice-token").await;
        assert_eq!(line, "OK");
        echo_once(&mut tls, b"ping").await;

        let registry = gw.handle().registry();
        let live = registry.live();
        assert_eq!(live.len(), 1);
        let s = &live[0];
        assert_eq!(s.user.as_deref(), Some("alice"));
        assert_eq!(s.resource.as_deref(), Some("echo"));
        assert_eq!(s.protocol, "tcp");
        assert_eq!(s.peer, tls.get_ref().0.local_addr().unwrap());
        assert_eq!(gw.handle().live_sessions(), 1);

        assert!(registry.kill(s.id));
        assert!(sees_end(&mut tls).await, "client did not see the end");
        wait_until("session gone", || registry.live_count() == 0).await;
        let ended = registry.get(s.id).unwrap();
        assert_eq!(
            ended.end_reason.as_deref(),
            Some("killed by an operator: cancelled")
        );
        assert!(ended.ended_at.is_some());
        wait_until("end recorded", || !gw.recorder.end_reasons().is_empty()).await;
        // The recording says why the gateway ended it, as the registry does.
        assert_eq!(
            gw.recorder.end_reasons(),
            vec!["killed by an operator: cancelled"]
        );
        assert!(!registry.kill(s.id));
    })
    .await;
}

// ---------------------------------------------------------------------------------------
// (e) Graceful shutdown: no new connections, drain, then cancel after the deadline.

/// A new connection is refused or at least not served by this gateway.
async fn not_served(addr: SocketAddr, cfg: &Arc<rustls::ClientConfig>) -> bool {
    match TcpStream::connect(addr).await {
        Err(_) => true,
        Ok(tcp) => {
            let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
            tokio_rustls::TlsConnector::from(cfg.clone())
                .connect(name, tcp)
                .await
                .is_err()
        }
    }
}

#[tokio::test]
async fn graceful_shutdown_cancels_sessions_after_the_deadline() {
    bounded(async {
        let gateway_ca = TestCa::new("gateway-ca");
        let upstream_ca = TestCa::new("upstream-ca");
        let upstream = start_upstream(&upstream_ca.server(), &upstream_ca).await;
        let mut gw = start_gateway(&gateway_ca, &upstream_ca, upstream.addr, Opts::default()).await;
        let cfg = client_config(&gateway_ca);

        let (mut tls, line) = login(gw.addr, &cfg, "alice-token").await;
        assert_eq!(line, "OK");
        echo_once(&mut tls, b"before").await;

        let mut handle = gw.handle.take().unwrap();
        handle.stop_accepting().await;
        assert!(not_served(gw.addr, &cfg).await, "new connection accepted");
        // The live session goes on while it may drain.
        echo_once(&mut tls, b"still alive").await;

        let report = handle.shutdown(Duration::from_millis(300)).await;
        assert_eq!(report.live_at_start, 1);
        assert_eq!(report.drained, 0);
        assert_eq!(report.cancelled, 1);
        assert_eq!(report.aborted, 0);
        assert!(sees_end(&mut tls).await, "client did not see the end");
        assert_eq!(gw.recorder.end_reasons(), vec!["cancelled"]);
    })
    .await;
}

#[tokio::test]
async fn graceful_shutdown_lets_sessions_drain() {
    bounded(async {
        let gateway_ca = TestCa::new("gateway-ca");
        let upstream_ca = TestCa::new("upstream-ca");
        let upstream = start_upstream(&upstream_ca.server(), &upstream_ca).await;
        let mut gw = start_gateway(&gateway_ca, &upstream_ca, upstream.addr, Opts::default()).await;
        let cfg = client_config(&gateway_ca);

        let (mut tls, line) = login(gw.addr, &cfg, "alice-token").await;
        assert_eq!(line, "OK");
        let handle = gw.handle.take().unwrap();
        let shutdown = tokio::spawn(handle.shutdown(Duration::from_secs(60)));
        let addr = gw.addr;
        let cfg2 = cfg.clone();
        // Wait until the listener is closed, then end the session from the client side.
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while !not_served(addr, &cfg2).await {
            assert!(
                std::time::Instant::now() < deadline,
                "the listener was not closed"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(not_served(addr, &cfg2).await);
        echo_once(&mut tls, b"draining").await;
        tls.shutdown().await.unwrap();
        let mut rest = Vec::new();
        let _ = tls.read_to_end(&mut rest).await;
        let report = shutdown.await.unwrap();
        // (A probe that raced the listener's close may have been a short session too.)
        assert!(report.live_at_start >= 1);
        assert_eq!(report.drained, report.live_at_start);
        assert_eq!(report.cancelled, 0);
        assert_eq!(report.aborted, 0);
        assert_eq!(gw.recorder.end_reasons(), vec!["client closed"]);
    })
    .await;
}

// ---------------------------------------------------------------------------------------
// (f) Connection limit: beyond it, a connection is closed at once.

#[tokio::test]
async fn connection_limit_closes_extra_connections() {
    bounded(async {
        let gateway_ca = TestCa::new("gateway-ca");
        let upstream_ca = TestCa::new("upstream-ca");
        let upstream = start_upstream(&upstream_ca.server(), &upstream_ca).await;
        let opts = Opts {
            max_connections: 1,
            ..Opts::default()
        };
        let gw = start_gateway(&gateway_ca, &upstream_ca, upstream.addr, opts).await;
        let cfg = client_config(&gateway_ca);

        let (mut first, line) = login(gw.addr, &cfg, "alice-token").await;
        assert_eq!(line, "OK");

        let second = tls_connect(gw.addr, &cfg).await;
        assert!(second.is_err(), "second connection was served");
        echo_once(&mut first, b"first still works").await;
        assert_eq!(gw.handle().registry().live_count(), 1);

        // Once the first ends, a new one is served.
        drop(first);
        let registry = gw.handle().registry();
        wait_until("first ended", || registry.live_count() == 0).await;
        let mut third = None;
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while std::time::Instant::now() < deadline {
            let (tls, line) = match tls_connect(gw.addr, &cfg).await {
                Ok(mut tls) => {
                    tls.write_all(b"AUTH alice-token\n").await.unwrap();
                    let line = read_line(&mut tls).await;
                    (tls, line)
                }
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            };
            assert_eq!(line, "OK");
            third = Some(tls);
            break;
        }
        echo_once(third.as_mut().expect("third connection served"), b"third").await;
    })
    .await;
}

// ---------------------------------------------------------------------------------------
// (g) Idle timeout.

#[tokio::test]
async fn idle_session_is_ended() {
    bounded(async {
        let gateway_ca = TestCa::new("gateway-ca");
        let upstream_ca = TestCa::new("upstream-ca");
        let upstream = start_upstream(&upstream_ca.server(), &upstream_ca).await;
        // Long enough that the client's exchange right after the login is never taken
        // for silence on a busy machine.
        let opts = Opts {
            idle: Duration::from_secs(2),
            ..Opts::default()
        };
        let gw = start_gateway(&gateway_ca, &upstream_ca, upstream.addr, opts).await;
        let cfg = client_config(&gateway_ca);

        let (mut tls, line) = login(gw.addr, &cfg, "alice-token").await;
        assert_eq!(line, "OK");
        echo_once(&mut tls, b"one").await;
        // Then nothing: the gateway ends the session.
        assert!(sees_end(&mut tls).await);
        wait_until("end recorded", || !gw.recorder.end_reasons().is_empty()).await;
        assert_eq!(gw.recorder.end_reasons(), vec!["idle timeout"]);
        let note = &gw.recorder.relay_notes()[0];
        assert_eq!(note["end"], "idle timeout");
        assert_eq!(note["bytes_up"], 3);
        let registry = gw.handle().registry();
        wait_until("session gone", || registry.live_count() == 0).await;
        assert_eq!(
            registry.recent()[0].end_reason.as_deref(),
            Some("idle timeout")
        );
    })
    .await;
}

// ---------------------------------------------------------------------------------------
// (h) Garbage, plaintext and silent clients are dropped; the server keeps serving.

#[tokio::test]
async fn garbage_and_plaintext_clients_are_dropped() {
    bounded(async {
        let gateway_ca = TestCa::new("gateway-ca");
        let upstream_ca = TestCa::new("upstream-ca");
        let upstream = start_upstream(&upstream_ca.server(), &upstream_ca).await;
        // Long enough for a TLS handshake on a busy machine (the quiet client below must
        // complete one), short enough to wait for twice.
        let opts = Opts {
            handshake: Duration::from_secs(2),
            ..Opts::default()
        };
        let gw = start_gateway(&gateway_ca, &upstream_ca, upstream.addr, opts).await;
        let cfg = client_config(&gateway_ca);

        for garbage in [
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".as_slice(),
            b"AUTH alice-token\n".as_slice(),
            &[0x16, 0x03, 0x01, 0xff, 0xff, 0, 0, 0][..],
            &[0u8; 3000][..],
        ] {
            let mut tcp = TcpStream::connect(gw.addr).await.unwrap();
            tcp.write_all(garbage).await.unwrap();
            let mut answer = Vec::new();
            let _ = tcp.read_to_end(&mut answer).await;
            // At most a TLS alert record, never application data.
            assert!(
                answer.is_empty() || answer[0] == 0x15,
                "unexpected answer {answer:?}"
            );
        }
        // A client that says nothing is dropped after the handshake timeout.
        let mut silent = TcpStream::connect(gw.addr).await.unwrap();
        assert!(sees_end(&mut silent).await);
        // A client that completes TLS but sends no AUTH line is told and dropped too.
        let mut quiet = tls_connect(gw.addr, &cfg).await.unwrap();
        assert_eq!(read_line(&mut quiet).await, "ERR handshake timed out");

        assert!(upstream.accepted.lock().unwrap().is_empty());
        let registry = gw.handle().registry();
        wait_until("dropped sessions ended", || registry.live_count() == 0).await;
        assert!(registry.recent().len() >= 6);

        let (mut tls, line) = login(gw.addr, &cfg, "alice-token").await;
        assert_eq!(line, "OK");
        echo_once(&mut tls, b"still serving").await;
    })
    .await;
}

// ---------------------------------------------------------------------------------------
// Plaintext toward the target only by explicit opt-in, and audited.

/// A plaintext TCP echo server.
async fn start_plain_echo() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    (addr, task)
}

#[tokio::test]
async fn plaintext_upstream_only_by_opt_in_and_recorded() {
    bounded(async {
        let gateway_ca = TestCa::new("gateway-ca");
        let upstream_ca = TestCa::new("upstream-ca");
        let cfg = client_config(&gateway_ca);
        let (target, echo) = start_plain_echo().await;

        // Without the opt-in the gateway insists on TLS: the plaintext target fails.
        let gw = start_gateway(&gateway_ca, &upstream_ca, target, Opts::default()).await;
        let (_tls, line) = login(gw.addr, &cfg, "alice-token").await;
        assert!(line.starts_with("ERR upstream TLS refused"), "{line:?}");
        drop(gw);

        // A target that is not listening: refused and recorded. The port stays bound (but
        // not listening) for the whole check, so nothing else can start listening on it.
        let reserved = tokio::net::TcpSocket::new_v4().unwrap();
        reserved
            .bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .unwrap();
        let closed_port = reserved.local_addr().unwrap();
        let gw = start_gateway(&gateway_ca, &upstream_ca, closed_port, Opts::default()).await;
        let (_tls, line) = login(gw.addr, &cfg, "alice-token").await;
        assert_eq!(line, "ERR upstream unreachable");
        wait_until("error recorded", || !gw.recorder.errors().is_empty()).await;
        drop(gw);
        drop(reserved);

        // With the explicit opt-in: relayed, and the plaintext leg is in the audit trail.
        let opts = Opts {
            upstream: Some(UpstreamSecurity::PlaintextOptIn),
            ..Opts::default()
        };
        let gw = start_gateway(&gateway_ca, &upstream_ca, target, opts).await;
        let (mut tls, line) = login(gw.addr, &cfg, "alice-token").await;
        assert_eq!(line, "OK");
        echo_once(&mut tls, b"in the clear upstream").await;
        let noted = gw
            .recorder
            .events()
            .into_iter()
            .any(|e| matches!(e, Event::Note { kind, .. } if kind == "plaintext_upstream"));
        assert!(noted, "plaintext upstream not recorded");
        echo.abort();
    })
    .await;
}

// ---------------------------------------------------------------------------------------
// Identity from a client certificate (mTLS), no AUTH line.

#[tokio::test]
async fn client_certificate_identity() {
    bounded(async {
        let gateway_ca = TestCa::new("gateway-ca");
        let upstream_ca = TestCa::new("upstream-ca");
        let client_ca = TestCa::new("client-ca");
        let upstream = start_upstream(&upstream_ca.server(), &upstream_ca).await;
        let opts = Opts {
            client_ca: Some(client_ca.cert_pem().to_owned()),
            ..Opts::default()
        };
        let gw = start_gateway(&gateway_ca, &upstream_ca, upstream.addr, opts).await;

        let with_cert = |cn: &str| {
            let cert = client_ca.client(cn);
            let mut roots = rustls::RootCertStore::empty();
            roots.add(gateway_ca.cert_der()).unwrap();
            Arc::new(
                rustls::ClientConfig::builder_with_provider(hoop_core::crypto_provider())
                    .with_safe_default_protocol_versions()
                    .unwrap()
                    .with_root_certificates(roots)
                    .with_client_auth_cert(vec![cert.cert()], cert.key())
                    .unwrap(),
            )
        };
        // alice's certificate: relayed at once, no AUTH line and no OK.
        let mut tls = tls_connect(gw.addr, &with_cert("alice")).await.unwrap();
        echo_once(&mut tls, b"hello with a certificate").await;
        let live = gw.handle().registry().live();
        assert_eq!(live[0].user.as_deref(), Some("alice"));
        let opened = gw.recorder.opened.lock().unwrap().clone();
        assert_eq!(opened[0].identity.method, AuthMethod::ClientCertificate);

        // bob's certificate is valid, but the policy denies him: closed without a word.
        let mut tls = tls_connect(gw.addr, &with_cert("bob")).await.unwrap();
        let _ = tls.write_all(b"hello").await;
        let mut got = Vec::new();
        let _ = tls.read_to_end(&mut got).await;
        assert!(got.is_empty(), "denied client got {got:?}");
        assert_eq!(upstream.accepted.lock().unwrap().len(), 1);
    })
    .await;
}

// ---------------------------------------------------------------------------------------
// Throughput through the gateway against the same target directly (a measurement, not a
// timing assertion). Run: cargo test --release -p hoop-core --test double_termination
// throughput -- --ignored --nocapture

async fn pump(tls: TlsStream<TcpStream>, total: usize) -> (usize, Duration) {
    let chunk = vec![0x5au8; 64 * 1024];
    let started = std::time::Instant::now();
    let (mut rd, mut wr) = tokio::io::split(tls);
    let writer = tokio::spawn(async move {
        let mut sent = 0;
        while sent < total {
            wr.write_all(&chunk).await.unwrap();
            sent += chunk.len();
        }
        wr.shutdown().await.unwrap();
        sent
    });
    let mut buf = vec![0u8; 64 * 1024];
    let mut got = 0;
    loop {
        match rd.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) => panic!("read: {e}"),
        }
    }
    let sent = writer.await.unwrap();
    assert_eq!(sent, got);
    (got, started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement; run explicitly in release"]
async fn throughput() {
    let gateway_ca = TestCa::new("gateway-ca");
    let upstream_ca = TestCa::new("upstream-ca");
    let upstream = start_upstream(&upstream_ca.server(), &upstream_ca).await;
    let gw = start_gateway(&gateway_ca, &upstream_ca, upstream.addr, Opts::default()).await;
    let total = 256 * 1024 * 1024;
    let direct_cfg = client_config(&upstream_ca);
    let mb = |n: usize, d: Duration| n as f64 / 1e6 / d.as_secs_f64();
    for round in 0..2 {
        let direct = tls_connect(upstream.addr, &direct_cfg).await.unwrap();
        let (n, d) = pump(direct, total).await;
        let direct_rate = mb(n, d);
        let (tls, line) = login(gw.addr, &client_config(&gateway_ca), "alice-token").await;
        assert_eq!(line, "OK");
        let (n, g) = pump(tls, total).await;
        let gw_rate = mb(n, g);
        println!(
            "round {round}: echo of {} MB: direct {direct_rate:.0} MB/s, through gateway {gw_rate:.0} MB/s, ratio {:.2}",
            total / 1_000_000,
            gw_rate / direct_rate
        );
    }
}
