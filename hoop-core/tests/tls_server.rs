//! ServerTls with real sockets and real TLS clients: version floor, required client
//! certificates, ALPN, certificate rotation (manual and watched) without dropping live
//! sessions, and handshakes whose first bytes were read before the upgrade.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hoop_core::tls::{
    ClientTlsInfo, PemSource, ServerTls, ServerTlsConfig, TlsError, TlsRefusal, TlsVersion,
    UpstreamClientCert, UpstreamRoots, UpstreamTls, UpstreamTlsConfig, negotiated_alpn,
    peer_certificates,
};
use hoop_testkit::certs::LeafSpec;
use hoop_testkit::{TestCa, TestCert};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

/// Upper bound for one exchange, so that a broken test fails instead of hanging.
const LIMIT: Duration = Duration::from_secs(60);

struct Endpoint {
    dir: tempfile::TempDir,
    cert_path: PathBuf,
    key_path: PathBuf,
}

impl Endpoint {
    fn new(cert: &TestCert) -> Endpoint {
        let dir = tempfile::tempdir().unwrap();
        let (cert_path, key_path) = cert.write(dir.path(), "server");
        Endpoint {
            dir,
            cert_path,
            key_path,
        }
    }

    fn config(&self) -> ServerTlsConfig {
        ServerTlsConfig {
            cert_path: self.cert_path.clone(),
            key_path: self.key_path.clone(),
            ..Default::default()
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// Listens on a free loopback port; every accepted connection goes through `tls.accept`
/// and, on success, echoes. The result of each handshake is sent on the channel.
async fn serve(tls: ServerTls) -> (SocketAddr, tokio::sync::mpsc::UnboundedReceiver<Accepted>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let tls = tls.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                match tls.accept(tcp).await {
                    Ok(s) => {
                        let info = ClientTlsInfo::of(&s);
                        // The borrowing helpers and the owned summary must agree.
                        let agree = peer_certificates(&s).unwrap_or_default()
                            == info.peer_certificates.as_slice()
                            && negotiated_alpn(&s) == info.alpn.as_deref();
                        let _ = tx.send(if agree {
                            Ok(info)
                        } else {
                            Err(TlsError::Config("helpers disagree".into()))
                        });
                        echo_loop(s).await;
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                    }
                }
            });
        }
    });
    (addr, rx)
}

type Accepted = Result<ClientTlsInfo, TlsError>;

async fn echo_loop<S: AsyncRead + AsyncWrite + Unpin>(mut s: S) {
    let mut buf = [0u8; 1024];
    while let Ok(n) = s.read(&mut buf).await {
        if n == 0 || s.write_all(&buf[..n]).await.is_err() || s.flush().await.is_err() {
            break;
        }
    }
}

async fn echo<S: AsyncRead + AsyncWrite + Unpin>(s: &mut S, msg: &[u8]) {
    s.write_all(msg).await.unwrap();
    s.flush().await.unwrap();
    let mut back = vec![0u8; msg.len()];
    tokio::time::timeout(LIMIT, s.read_exact(&mut back))
        .await
        .expect("echo did not come back")
        .unwrap();
    assert_eq!(back, msg);
}

async fn next(rx: &mut tokio::sync::mpsc::UnboundedReceiver<Accepted>) -> Accepted {
    tokio::time::timeout(LIMIT, rx.recv())
        .await
        .expect("no handshake result")
        .expect("server gone")
}

fn client_for(ca: &TestCa, client_cert: Option<&TestCert>) -> UpstreamTls {
    UpstreamTls::new(UpstreamTlsConfig {
        roots: UpstreamRoots::CaPem(ca.cert_pem().as_bytes().to_vec()),
        client_cert: client_cert.map(|c| UpstreamClientCert {
            chain: PemSource::Pem(c.chain_pem.clone().into_bytes()),
            key: PemSource::Pem(c.key_pem.clone().into_bytes()),
        }),
        ..Default::default()
    })
    .unwrap()
}

async fn connect(
    tls: &UpstreamTls,
    addr: SocketAddr,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, TlsError> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    tokio::time::timeout(LIMIT, tls.connect("localhost", tcp))
        .await
        .expect("handshake did not finish")
}

fn served_leaf(s: &tokio_rustls::client::TlsStream<TcpStream>) -> Vec<u8> {
    s.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

// ---------------------------------------------------------------------------------------
// Protocol versions

fn ext(out: &mut Vec<u8>, kind: u16, body: &[u8]) {
    out.extend(kind.to_be_bytes());
    out.extend((body.len() as u16).to_be_bytes());
    out.extend(body);
}

/// A ClientHello as a TLS 1.1-only client sends it: legacy_version 0x0302, no
/// supported_versions extension. `sigalgs` adds a signature_algorithms extension (which
/// TLS 1.1 clients normally do not send).
fn tls11_client_hello(sigalgs: bool) -> Vec<u8> {
    let mut body = vec![0x03, 0x02];
    body.extend([0x5a; 32]); // random
    body.push(0); // empty session id
    let suites: [u8; 8] = [0xc0, 0x13, 0xc0, 0x14, 0x00, 0x2f, 0x00, 0x35];
    body.extend((suites.len() as u16).to_be_bytes());
    body.extend(suites);
    body.extend([1, 0]); // compression methods: null
    let mut exts = Vec::new();
    let host = b"localhost";
    let mut sni = Vec::new();
    sni.extend(((host.len() + 3) as u16).to_be_bytes());
    sni.push(0); // host_name
    sni.extend((host.len() as u16).to_be_bytes());
    sni.extend(host);
    ext(&mut exts, 0x0000, &sni);
    ext(&mut exts, 0x000a, &[0x00, 0x04, 0x00, 0x1d, 0x00, 0x17]); // x25519, P-256
    ext(&mut exts, 0x000b, &[0x01, 0x00]); // uncompressed points
    ext(&mut exts, 0xff01, &[0x00]); // renegotiation_info
    if sigalgs {
        ext(&mut exts, 0x000d, &[0x00, 0x04, 0x04, 0x03, 0x08, 0x04]);
    }
    body.extend((exts.len() as u16).to_be_bytes());
    body.extend(exts);
    let mut hs = vec![0x01];
    hs.extend(&(body.len() as u32).to_be_bytes()[1..]);
    hs.extend(body);
    let mut rec = vec![0x16, 0x03, 0x01];
    rec.extend((hs.len() as u16).to_be_bytes());
    rec.extend(hs);
    rec
}

/// Sends a TLS 1.1 ClientHello by hand; returns the server's accept() result and the
/// alert record the client read.
async fn tls11_attempt(sigalgs: bool) -> (Result<(), TlsError>, [u8; 7]) {
    let ca = TestCa::new("server-ca");
    let ep = Endpoint::new(&ca.server());
    let tls = ServerTls::new(ep.config()).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = oneshot::channel();
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let _ = tx.send(tls.accept(tcp).await.map(|_| ()));
    });
    let mut client = TcpStream::connect(addr).await.unwrap();
    client
        .write_all(&tls11_client_hello(sigalgs))
        .await
        .unwrap();
    let mut alert = [0u8; 7];
    tokio::time::timeout(LIMIT, client.read_exact(&mut alert))
        .await
        .expect("no reply")
        .expect("server must answer with an alert record");
    let server = tokio::time::timeout(LIMIT, rx).await.unwrap().unwrap();
    (server, alert)
}

#[tokio::test]
async fn tls11_client_is_refused_with_protocol_version() {
    let (server, alert) = tls11_attempt(true).await;
    let err = server.unwrap_err();
    assert!(matches!(err, TlsError::Client { .. }), "{err:?}");
    assert_eq!(err.refusal(), Some(TlsRefusal::ProtocolVersion), "{err}");
    assert_eq!(alert[0], 0x15, "alert record");
    assert_eq!(&alert[3..5], &[0, 2], "alert length");
    assert_eq!(alert[5], 2, "fatal");
    assert_eq!(alert[6], 70, "protocol_version alert");
}

#[tokio::test]
async fn tls11_client_without_sigalgs_is_refused_with_protocol_version() {
    // What a TLS 1.1-only OpenSSL sends: no signature_algorithms either.
    let (server, alert) = tls11_attempt(false).await;
    assert_eq!(
        server.unwrap_err().refusal(),
        Some(TlsRefusal::ProtocolVersion)
    );
    assert_eq!(alert[0], 0x15, "alert record");
    assert_eq!(alert[5], 2, "fatal");
}

#[tokio::test]
async fn tls13_only_server_refuses_tls12_client() {
    let ca = TestCa::new("server-ca");
    let ep = Endpoint::new(&ca.server());
    let tls = ServerTls::new(ServerTlsConfig {
        min_version: TlsVersion::Tls13,
        ..ep.config()
    })
    .unwrap();
    let (addr, mut rx) = serve(tls).await;

    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.cert_der()).unwrap();
    let tls12 = rustls::ClientConfig::builder_with_provider(hoop_core::crypto_provider())
        .with_protocol_versions(&[&rustls::version::TLS12])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = TcpStream::connect(addr).await.unwrap();
    let client = tokio_rustls::TlsConnector::from(Arc::new(tls12))
        .connect("localhost".try_into().unwrap(), tcp)
        .await;
    let client_err = client.expect_err("TLS 1.2 client must be refused");
    let inner = client_err
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>())
        .expect("a TLS error");
    assert_eq!(
        inner,
        &rustls::Error::AlertReceived(rustls::AlertDescription::ProtocolVersion)
    );
    let server = next(&mut rx).await.unwrap_err();
    assert_eq!(
        server.refusal(),
        Some(TlsRefusal::ProtocolVersion),
        "{server}"
    );

    // A TLS 1.3 client gets in.
    let mut s = connect(&client_for(&ca, None), addr).await.unwrap();
    echo(&mut s, b"tls13").await;
    let info = next(&mut rx).await.unwrap();
    assert_eq!(info.version, Some(rustls::ProtocolVersion::TLSv1_3));
}

// ---------------------------------------------------------------------------------------
// Client certificates

struct MtlsSetup {
    ca: TestCa,
    addr: SocketAddr,
    rx: tokio::sync::mpsc::UnboundedReceiver<Accepted>,
    _ep: Endpoint,
}

async fn mtls_server() -> MtlsSetup {
    let ca = TestCa::new("server-ca");
    let ep = Endpoint::new(&ca.server());
    let client_ca_path = ca.write_cert(ep.path(), "clients.pem");
    let tls = ServerTls::new(ServerTlsConfig {
        client_ca_path: Some(client_ca_path),
        ..ep.config()
    })
    .unwrap();
    let (addr, rx) = serve(tls).await;
    MtlsSetup {
        ca,
        addr,
        rx,
        _ep: ep,
    }
}

/// Connects with `cert` and returns the server's verdict. With TLS 1.3 the client may
/// finish its side before the server refuses, so the client result is not asserted here.
async fn mtls_attempt(m: &mut MtlsSetup, cert: Option<&TestCert>) -> Accepted {
    let client = client_for(&m.ca, cert);
    let conn = connect(&client, m.addr).await;
    let verdict = next(&mut m.rx).await;
    if let (Ok(mut s), Err(_)) = (conn, &verdict) {
        // The refusal reaches the client as an alert: nothing is echoed.
        let _ = s.write_all(b"x").await;
        let mut b = [0u8; 1];
        let r = tokio::time::timeout(LIMIT, s.read(&mut b)).await.unwrap();
        assert!(!matches!(r, Ok(1)), "a refused client must not be served");
    }
    verdict
}

#[tokio::test]
async fn required_client_certificate_missing_is_refused() {
    let mut m = mtls_server().await;
    let err = mtls_attempt(&mut m, None).await.unwrap_err();
    assert!(matches!(err, TlsError::Client { .. }));
    assert_eq!(err.refusal(), Some(TlsRefusal::NoCertificate), "{err}");
}

#[tokio::test]
async fn client_certificate_from_testkit_is_accepted_and_exposed() {
    let mut m = mtls_server().await;
    let alice = m.ca.client("alice");
    let client = client_for(&m.ca, Some(&alice));
    let mut s = connect(&client, m.addr).await.unwrap();
    echo(&mut s, b"hello mtls").await;
    let info = next(&mut m.rx).await.unwrap();
    assert_eq!(
        info.leaf().map(|c| c.as_ref()),
        Some(alice.cert_der.as_slice())
    );
    assert_eq!(info.server_name.as_deref(), Some("localhost"));
}

#[tokio::test]
async fn client_certificate_from_unknown_ca_is_refused() {
    let mut m = mtls_server().await;
    let stranger = TestCa::new("stranger").client("mallory");
    let err = mtls_attempt(&mut m, Some(&stranger)).await.unwrap_err();
    assert_eq!(err.refusal(), Some(TlsRefusal::UnknownIssuer), "{err}");
}

#[tokio::test]
async fn expired_client_certificate_is_refused() {
    let mut m = mtls_server().await;
    let expired = m.ca.issue(&LeafSpec {
        common_name: "old-alice".into(),
        names: Vec::new(),
        not_before: time::Duration::days(-10),
        not_after: time::Duration::hours(-1),
        server: false,
    });
    let err = mtls_attempt(&mut m, Some(&expired)).await.unwrap_err();
    assert_eq!(err.refusal(), Some(TlsRefusal::Expired), "{err}");
}

#[tokio::test]
async fn client_ca_is_reloaded() {
    let ca1 = TestCa::new("clients-1");
    let ca2 = TestCa::new("clients-2");
    let ep = Endpoint::new(&ca1.server());
    let client_ca_path = ca1.write_cert(ep.path(), "clients.pem");
    let tls = ServerTls::new(ServerTlsConfig {
        client_ca_path: Some(client_ca_path.clone()),
        ..ep.config()
    })
    .unwrap();
    let (addr, mut rx) = serve(tls.clone()).await;
    let old_client = ca1.client("old");
    let new_client = ca2.client("new");
    // Server certificates are issued by ca1; clients trust ca1 for the server.
    let connect_as = |c: &TestCert| {
        UpstreamTls::new(UpstreamTlsConfig {
            roots: UpstreamRoots::CaPem(ca1.cert_pem().as_bytes().to_vec()),
            client_cert: Some(UpstreamClientCert {
                chain: PemSource::Pem(c.chain_pem.clone().into_bytes()),
                key: PemSource::Pem(c.key_pem.clone().into_bytes()),
            }),
            ..Default::default()
        })
        .unwrap()
    };
    let mut s = connect(&connect_as(&old_client), addr).await.unwrap();
    echo(&mut s, b"old ok").await;
    assert!(next(&mut rx).await.is_ok());

    std::fs::write(&client_ca_path, ca2.cert_pem()).unwrap();
    tls.reload().unwrap();

    let _ = connect(&connect_as(&old_client), addr).await;
    let err = next(&mut rx).await.unwrap_err();
    assert_eq!(err.refusal(), Some(TlsRefusal::UnknownIssuer), "{err}");
    let mut s2 = connect(&connect_as(&new_client), addr).await.unwrap();
    echo(&mut s2, b"new ok").await;
    assert!(next(&mut rx).await.is_ok());
    // The session made under the old CA is still alive.
    echo(&mut s, b"still here").await;
}

// ---------------------------------------------------------------------------------------
// ALPN

#[tokio::test]
async fn alpn_is_negotiated() {
    let ca = TestCa::new("server-ca");
    let ep = Endpoint::new(&ca.server());
    let tls = ServerTls::new(ServerTlsConfig {
        alpn: vec![b"h2".to_vec(), b"http/1.1".to_vec()],
        ..ep.config()
    })
    .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = oneshot::channel();
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let s = tls.accept(tcp).await.unwrap();
        let _ = tx.send(negotiated_alpn(&s).map(<[u8]>::to_vec));
        echo_loop(s).await;
    });
    let client = UpstreamTls::new(UpstreamTlsConfig {
        roots: UpstreamRoots::CaPem(ca.cert_pem().as_bytes().to_vec()),
        alpn: vec![b"http/1.1".to_vec()],
        ..Default::default()
    })
    .unwrap();
    let mut s = connect(&client, addr).await.unwrap();
    assert_eq!(s.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    echo(&mut s, b"alpn").await;
    assert_eq!(rx.await.unwrap().as_deref(), Some(&b"http/1.1"[..]));
}

#[tokio::test]
async fn alpn_mismatch_is_refused_and_no_alpn_is_accepted() {
    let ca = TestCa::new("server-ca");
    let ep = Endpoint::new(&ca.server());
    let tls = ServerTls::new(ServerTlsConfig {
        alpn: vec![b"h2".to_vec()],
        ..ep.config()
    })
    .unwrap();
    let (addr, mut rx) = serve(tls).await;
    let other = UpstreamTls::new(UpstreamTlsConfig {
        roots: UpstreamRoots::CaPem(ca.cert_pem().as_bytes().to_vec()),
        alpn: vec![b"postgresql".to_vec()],
        ..Default::default()
    })
    .unwrap();
    assert!(connect(&other, addr).await.is_err());
    let err = next(&mut rx).await.unwrap_err();
    assert_eq!(err.refusal(), Some(TlsRefusal::Handshake), "{err}");
    // A client that offers no ALPN at all is served, with no protocol agreed.
    let mut s = connect(&client_for(&ca, None), addr).await.unwrap();
    echo(&mut s, b"no alpn").await;
    assert_eq!(next(&mut rx).await.unwrap().alpn, None);
}

// ---------------------------------------------------------------------------------------
// Rotation

fn cert_named(ca: &TestCa, cn: &str) -> TestCert {
    ca.issue(&LeafSpec {
        common_name: cn.into(),
        ..LeafSpec::localhost()
    })
}

#[tokio::test]
async fn reload_rotates_without_dropping_live_sessions() {
    let ca = TestCa::new("server-ca");
    let cert_a = cert_named(&ca, "cert-a");
    let cert_b = cert_named(&ca, "cert-b");
    let ep = Endpoint::new(&cert_a);
    let tls = ServerTls::new(ep.config()).unwrap();
    let (addr, _rx) = serve(tls.clone()).await;
    let client = client_for(&ca, None);

    let mut conn1 = connect(&client, addr).await.unwrap();
    assert_eq!(served_leaf(&conn1), cert_a.cert_der);
    echo(&mut conn1, b"before").await;

    cert_b.write(ep.path(), "server");
    tls.reload().unwrap();
    assert_eq!(
        tls.certificate_chain()[0].as_ref(),
        cert_b.cert_der.as_slice()
    );

    // Same client configuration as connection 1, so it would try to resume that session:
    // after a rotation the server makes a full handshake with cert B instead.
    let mut conn2 = connect(&client, addr).await.unwrap();
    assert_eq!(
        served_leaf(&conn2),
        cert_b.cert_der,
        "new session gets cert B"
    );
    echo(&mut conn2, b"conn2").await;
    // Connection 1 was made with cert A and still works.
    assert_eq!(served_leaf(&conn1), cert_a.cert_der);
    echo(&mut conn1, b"after rotation").await;
}

#[tokio::test]
async fn broken_files_keep_the_old_certificate() {
    let ca = TestCa::new("server-ca");
    let cert_a = cert_named(&ca, "cert-a");
    let ep = Endpoint::new(&cert_a);
    let tls = ServerTls::new(ep.config()).unwrap();
    let (addr, _rx) = serve(tls.clone()).await;
    let client = client_for(&ca, None);

    // Garbage certificate file.
    std::fs::write(&ep.cert_path, "-----BEGIN CERTIFICATE-----\nnot base64!\n").unwrap();
    let err = tls.reload().unwrap_err();
    assert!(matches!(err, TlsError::Config(_)), "{err:?}");
    // A valid certificate with a key that does not belong to it.
    let other = cert_named(&ca, "cert-b");
    std::fs::write(&ep.cert_path, &other.chain_pem).unwrap();
    assert!(tls.reload().is_err(), "key mismatch must be refused");
    // Missing key file.
    std::fs::remove_file(&ep.key_path).unwrap();
    assert!(tls.reload().is_err());

    assert_eq!(
        tls.certificate_chain()[0].as_ref(),
        cert_a.cert_der.as_slice()
    );
    let mut s = connect(&client, addr).await.unwrap();
    assert_eq!(served_leaf(&s), cert_a.cert_der, "still serving cert A");
    echo(&mut s, b"old cert").await;
}

#[tokio::test]
async fn watcher_picks_up_rotated_files() {
    let ca = TestCa::new("server-ca");
    let cert_a = cert_named(&ca, "cert-a");
    let cert_c = cert_named(&ca, "cert-c");
    let ep = Endpoint::new(&cert_a);
    let tls = ServerTls::new(ep.config()).unwrap();
    let watcher = tls.watch(Duration::from_millis(50));
    let (addr, _rx) = serve(tls.clone()).await;
    let client = client_for(&ca, None);
    let mut conn1 = connect(&client, addr).await.unwrap();
    assert_eq!(served_leaf(&conn1), cert_a.cert_der);

    // A half-written rotation (new certificate, old key) is refused and retried later.
    std::fs::write(&ep.cert_path, &cert_c.chain_pem).unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut mid = connect(&client, addr).await.unwrap();
    assert_eq!(
        served_leaf(&mid),
        cert_a.cert_der,
        "mismatched pair not served"
    );
    echo(&mut mid, b"mid").await;
    std::fs::write(&ep.key_path, &cert_c.key_pem).unwrap();

    // Wait (not a timing assertion) for the watcher to notice.
    let deadline = std::time::Instant::now() + LIMIT;
    while tls.certificate_chain()[0].as_ref() != cert_c.cert_der.as_slice() {
        assert!(
            std::time::Instant::now() < deadline,
            "watcher did not reload within {LIMIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut conn2 = connect(&client, addr).await.unwrap();
    assert_eq!(served_leaf(&conn2), cert_c.cert_der);
    echo(&mut conn2, b"rotated").await;
    echo(&mut conn1, b"still alive").await;

    // `serve` keeps a clone of `tls` in its accept loop, so this watcher is stopped by
    // hand; the weak-reference behaviour is checked with a second endpoint below.
    watcher.abort();

    // The watcher holds only a weak reference: it ends once the endpoint is dropped.
    let ep2 = Endpoint::new(&cert_a);
    let tls2 = ServerTls::new(ep2.config()).unwrap();
    let watcher2 = tls2.watch(Duration::from_millis(20));
    drop(tls2);
    tokio::time::timeout(LIMIT, watcher2)
        .await
        .expect("watcher must end when the endpoint is dropped")
        .unwrap();
}

// ---------------------------------------------------------------------------------------
// Bytes read before the upgrade

#[tokio::test]
async fn accept_with_prefix_handshakes() {
    let ca = TestCa::new("server-ca");
    let ep = Endpoint::new(&ca.server());
    let tls = ServerTls::new(ep.config()).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = oneshot::channel();
    tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await.unwrap();
        // Sniff the start of the ClientHello before deciding to upgrade: the record
        // header and the first bytes of the handshake message.
        let mut first = [0u8; 11];
        tcp.read_exact(&mut first).await.unwrap();
        assert_eq!(first[0], 0x16, "a TLS handshake record");
        let s = tls
            .accept_with_prefix(tcp, Bytes::copy_from_slice(&first))
            .await;
        match s {
            Ok(s) => {
                let _ = tx.send(peer_certificates(&s).is_none());
                echo_loop(s).await;
            }
            Err(e) => panic!("accept_with_prefix failed: {e}"),
        }
    });
    let mut s = connect(&client_for(&ca, None), addr).await.unwrap();
    echo(&mut s, b"after prefix").await;
    assert!(rx.await.unwrap(), "no client certificate was asked for");
}

#[tokio::test]
async fn config_errors_are_reported() {
    let ca = TestCa::new("server-ca");
    let ep = Endpoint::new(&ca.server());
    let missing = ServerTls::new(ServerTlsConfig {
        cert_path: ep.path().join("nope.crt"),
        ..ep.config()
    })
    .unwrap_err();
    assert!(missing.to_string().contains("nope.crt"), "{missing}");
    let empty_ca = ep.path().join("empty.pem");
    std::fs::write(&empty_ca, "").unwrap();
    assert!(
        ServerTls::new(ServerTlsConfig {
            client_ca_path: Some(empty_ca),
            ..ep.config()
        })
        .is_err()
    );
}
