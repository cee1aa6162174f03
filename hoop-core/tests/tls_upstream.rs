//! UpstreamTls against real tokio-rustls servers on 127.0.0.1, one per certificate variant
//! of the test kit: every refusal must carry its typed reason.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hoop_core::tls::{
    PemSource, TlsError, TlsRefusal, TlsVersion, UpstreamClientCert, UpstreamRoots, UpstreamTls,
    UpstreamTlsConfig, format_spki_pin, parse_spki_pin, spki_pin,
};
use hoop_testkit::{TestCa, TestCert};
use rustls_pki_types::CertificateDer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// Upper bound for one exchange, so that a broken test fails instead of hanging.
const LIMIT: Duration = Duration::from_secs(60);

/// How the test server is set up.
#[derive(Default)]
struct ServerOpts {
    tls12_only: bool,
    alpn: Vec<Vec<u8>>,
    client_ca: Option<CertificateDer<'static>>,
}

/// What the test server saw of an accepted session.
#[derive(Debug)]
struct Seen {
    client_cert: Option<Vec<u8>>,
}

/// A tokio-rustls echo server on a free loopback port serving `cert` (leaf + CA chain).
/// Handshake outcomes are reported on the returned channel.
async fn tls_server(
    cert: &TestCert,
    opts: ServerOpts,
) -> (SocketAddr, mpsc::UnboundedReceiver<Result<Seen, String>>) {
    let chain = chain_of(cert);
    let versions: &[&rustls::SupportedProtocolVersion] = if opts.tls12_only {
        &[&rustls::version::TLS12]
    } else {
        &[&rustls::version::TLS13, &rustls::version::TLS12]
    };
    let builder = rustls::ServerConfig::builder_with_provider(hoop_core::crypto_provider())
        .with_protocol_versions(versions)
        .unwrap();
    let builder = match opts.client_ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(ca).unwrap();
            builder.with_client_cert_verifier(
                rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    hoop_core::crypto_provider(),
                )
                .build()
                .unwrap(),
            )
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(chain, cert.key()).unwrap();
    config.alpn_protocols = opts.alpn;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                match acceptor.accept(tcp).await {
                    Ok(mut s) => {
                        let client_cert = s
                            .get_ref()
                            .1
                            .peer_certificates()
                            .and_then(|c| c.first())
                            .map(|c| c.to_vec());
                        let _ = tx.send(Ok(Seen { client_cert }));
                        let mut buf = [0u8; 1024];
                        while let Ok(n) = s.read(&mut buf).await {
                            if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                            let _ = s.flush().await;
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e.to_string()));
                    }
                }
            });
        }
    });
    (addr, rx)
}

fn chain_of(cert: &TestCert) -> Vec<CertificateDer<'static>> {
    use rustls_pki_types::pem::PemObject;
    CertificateDer::pem_slice_iter(cert.chain_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap()
}

fn trusting(ca: &TestCa) -> UpstreamTlsConfig {
    UpstreamTlsConfig {
        roots: UpstreamRoots::CaPem(ca.cert_pem().as_bytes().to_vec()),
        ..Default::default()
    }
}

async fn connect(
    tls: &UpstreamTls,
    addr: SocketAddr,
    name: &str,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, TlsError> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    tokio::time::timeout(LIMIT, tls.connect(name, tcp))
        .await
        .expect("handshake did not finish")
}

async fn echo(s: &mut tokio_rustls::client::TlsStream<TcpStream>, msg: &[u8]) {
    s.write_all(msg).await.unwrap();
    s.flush().await.unwrap();
    let mut back = vec![0u8; msg.len()];
    tokio::time::timeout(LIMIT, s.read_exact(&mut back))
        .await
        .expect("echo did not come back")
        .unwrap();
    assert_eq!(back, msg);
}

/// Connects and expects an upstream refusal with `want`.
async fn refused(tls: &UpstreamTls, addr: SocketAddr, name: &str, want: TlsRefusal) {
    match connect(tls, addr, name).await {
        Ok(_) => panic!("connection to {name} should be refused with {want}"),
        Err(e) => {
            assert!(matches!(e, TlsError::Upstream { .. }), "{e:?}");
            assert_eq!(e.refusal(), Some(want), "{e}");
        }
    }
}

#[tokio::test]
async fn good_certificate_by_name_and_by_ip() {
    let ca = TestCa::new("upstream-ca");
    let (addr, _seen) = tls_server(&ca.server(), ServerOpts::default()).await;
    let tls = UpstreamTls::new(trusting(&ca)).unwrap();
    let mut by_name = connect(&tls, addr, "localhost").await.unwrap();
    echo(&mut by_name, b"by name").await;
    let mut by_ip = connect(&tls, addr, "127.0.0.1").await.unwrap();
    echo(&mut by_ip, b"by ip").await;
    assert_eq!(
        by_ip.get_ref().1.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
}

#[tokio::test]
async fn ca_bundle_file_is_trusted() {
    let ca = TestCa::new("upstream-ca-file");
    let dir = tempfile::tempdir().unwrap();
    let ca_file = ca.write_cert(dir.path(), "ca.pem");
    let (addr, _seen) = tls_server(&ca.server(), ServerOpts::default()).await;
    let tls = UpstreamTls::new(UpstreamTlsConfig {
        roots: UpstreamRoots::CaFile(ca_file),
        ..Default::default()
    })
    .unwrap();
    let mut s = connect(&tls, addr, "localhost").await.unwrap();
    echo(&mut s, b"file roots").await;
}

#[tokio::test]
async fn expired_is_refused() {
    let ca = TestCa::new("upstream-ca");
    let (addr, _seen) = tls_server(&ca.expired_server(), ServerOpts::default()).await;
    let tls = UpstreamTls::new(trusting(&ca)).unwrap();
    refused(&tls, addr, "localhost", TlsRefusal::Expired).await;
}

#[tokio::test]
async fn not_yet_valid_is_refused() {
    let ca = TestCa::new("upstream-ca");
    let (addr, _seen) = tls_server(&ca.not_yet_valid_server(), ServerOpts::default()).await;
    let tls = UpstreamTls::new(trusting(&ca)).unwrap();
    refused(&tls, addr, "localhost", TlsRefusal::NotYetValid).await;
}

#[tokio::test]
async fn untrusted_ca_is_refused() {
    let ca = TestCa::new("upstream-ca");
    let other = TestCa::new("someone-else");
    let (addr, _seen) = tls_server(&other.server(), ServerOpts::default()).await;
    let tls = UpstreamTls::new(trusting(&ca)).unwrap();
    refused(&tls, addr, "localhost", TlsRefusal::UnknownIssuer).await;
}

#[tokio::test]
async fn wrong_host_and_wrong_ip_are_refused() {
    let ca = TestCa::new("upstream-ca");
    let (addr, _seen) = tls_server(&ca.wrong_host_server(), ServerOpts::default()).await;
    let tls = UpstreamTls::new(trusting(&ca)).unwrap();
    refused(&tls, addr, "localhost", TlsRefusal::NameMismatch).await;
    // The certificate names 10.255.255.1, not 127.0.0.1: the IP SAN is checked.
    refused(&tls, addr, "127.0.0.1", TlsRefusal::NameMismatch).await;
}

#[tokio::test]
async fn ip_name_checks_ip_san_not_dns() {
    // A certificate for "localhost" only (no IP SAN) does not cover 127.0.0.1.
    let ca = TestCa::new("upstream-ca");
    let cert = ca.issue(&hoop_testkit::certs::LeafSpec {
        names: vec!["localhost".into()],
        ..hoop_testkit::certs::LeafSpec::localhost()
    });
    let (addr, _seen) = tls_server(&cert, ServerOpts::default()).await;
    let tls = UpstreamTls::new(trusting(&ca)).unwrap();
    refused(&tls, addr, "127.0.0.1", TlsRefusal::NameMismatch).await;
    let mut ok = connect(&tls, addr, "localhost").await.unwrap();
    echo(&mut ok, b"dns").await;
}

#[tokio::test]
async fn correct_pins_pass() {
    let ca = TestCa::new("upstream-ca");
    let leaf = ca.server();
    let (addr, _seen) = tls_server(&leaf, ServerOpts::default()).await;
    // Pin of the leaf, given in the sha256/BASE64 form.
    let text = format_spki_pin(&spki_pin(&leaf.cert_der).unwrap());
    let tls = UpstreamTls::new(UpstreamTlsConfig {
        spki_pins: vec![[0u8; 32], parse_spki_pin(&text).unwrap()],
        ..trusting(&ca)
    })
    .unwrap();
    let mut s = connect(&tls, addr, "localhost").await.unwrap();
    echo(&mut s, b"pinned leaf").await;
    // Pin of the CA.
    let tls = UpstreamTls::new(UpstreamTlsConfig {
        spki_pins: vec![spki_pin(ca.cert_der().as_ref()).unwrap()],
        ..trusting(&ca)
    })
    .unwrap();
    let mut s = connect(&tls, addr, "127.0.0.1").await.unwrap();
    echo(&mut s, b"pinned ca").await;
}

#[tokio::test]
async fn wrong_pin_is_refused() {
    let ca = TestCa::new("upstream-ca");
    let (addr, _seen) = tls_server(&ca.server(), ServerOpts::default()).await;
    let elsewhere = ca.server();
    let tls = UpstreamTls::new(UpstreamTlsConfig {
        spki_pins: vec![spki_pin(&elsewhere.cert_der).unwrap()],
        ..trusting(&ca)
    })
    .unwrap();
    refused(&tls, addr, "localhost", TlsRefusal::PinMismatch).await;
}

#[tokio::test]
async fn pin_does_not_rescue_a_bad_chain() {
    // The pin matches the leaf, but the chain is untrusted: verification comes first.
    let ca = TestCa::new("upstream-ca");
    let other = TestCa::new("someone-else");
    let leaf = other.server();
    let (addr, _seen) = tls_server(&leaf, ServerOpts::default()).await;
    let tls = UpstreamTls::new(UpstreamTlsConfig {
        spki_pins: vec![spki_pin(&leaf.cert_der).unwrap()],
        ..trusting(&ca)
    })
    .unwrap();
    refused(&tls, addr, "localhost", TlsRefusal::UnknownIssuer).await;
}

#[tokio::test]
async fn tls13_minimum_against_tls12_only_server() {
    let ca = TestCa::new("upstream-ca");
    let opts = ServerOpts {
        tls12_only: true,
        ..Default::default()
    };
    let (addr, _seen) = tls_server(&ca.server(), opts).await;
    // The default (TLS 1.2 minimum) works with it ...
    let tls = UpstreamTls::new(trusting(&ca)).unwrap();
    let mut s = connect(&tls, addr, "localhost").await.unwrap();
    assert_eq!(
        s.get_ref().1.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_2)
    );
    echo(&mut s, b"tls12").await;
    // ... a TLS 1.3 minimum does not.
    let tls = UpstreamTls::new(UpstreamTlsConfig {
        min_version: TlsVersion::Tls13,
        ..trusting(&ca)
    })
    .unwrap();
    refused(&tls, addr, "localhost", TlsRefusal::ProtocolVersion).await;
}

#[tokio::test]
async fn webpki_roots_refuse_the_test_ca() {
    let ca = TestCa::new("upstream-ca");
    let (addr, _seen) = tls_server(&ca.server(), ServerOpts::default()).await;
    let tls = UpstreamTls::webpki().unwrap();
    refused(&tls, addr, "localhost", TlsRefusal::UnknownIssuer).await;
    let tls = UpstreamTls::new(UpstreamTlsConfig::default()).unwrap();
    refused(&tls, addr, "127.0.0.1", TlsRefusal::UnknownIssuer).await;
}

#[tokio::test]
async fn alpn_is_offered() {
    let ca = TestCa::new("upstream-ca");
    let opts = ServerOpts {
        alpn: vec![b"h2".to_vec(), b"http/1.1".to_vec()],
        ..Default::default()
    };
    let (addr, _seen) = tls_server(&ca.server(), opts).await;
    let tls = UpstreamTls::new(UpstreamTlsConfig {
        alpn: vec![b"http/1.1".to_vec()],
        ..trusting(&ca)
    })
    .unwrap();
    let s = connect(&tls, addr, "localhost").await.unwrap();
    assert_eq!(s.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
}

#[tokio::test]
async fn client_certificate_for_upstream_mtls() {
    let ca = TestCa::new("upstream-ca");
    let opts = ServerOpts {
        client_ca: Some(ca.cert_der()),
        ..Default::default()
    };
    let (addr, mut seen) = tls_server(&ca.server(), opts).await;
    let client = ca.client("hoop-gateway");
    let tls = UpstreamTls::new(UpstreamTlsConfig {
        client_cert: Some(UpstreamClientCert {
            chain: PemSource::Pem(client.chain_pem.clone().into_bytes()),
            key: PemSource::Pem(client.key_pem.clone().into_bytes()),
        }),
        ..trusting(&ca)
    })
    .unwrap();
    let mut s = connect(&tls, addr, "localhost").await.unwrap();
    echo(&mut s, b"mtls").await;
    let got = seen.recv().await.unwrap().unwrap();
    assert_eq!(got.client_cert.as_deref(), Some(client.cert_der.as_slice()));

    // Without the client certificate the target refuses the session.
    let tls = UpstreamTls::new(trusting(&ca)).unwrap();
    if let Ok(mut s) = connect(&tls, addr, "localhost").await {
        // TLS 1.3: the client finishes first; the refusal arrives as an alert.
        let _ = s.write_all(b"x").await;
        let mut b = [0u8; 1];
        let r = tokio::time::timeout(LIMIT, s.read(&mut b)).await.unwrap();
        assert!(
            !matches!(r, Ok(1)),
            "server must not echo without a client cert"
        );
    }
    assert!(seen.recv().await.unwrap().is_err());
}

#[tokio::test]
async fn config_errors() {
    let e = UpstreamTls::new(UpstreamTlsConfig {
        roots: UpstreamRoots::CaPem(b"no pem".to_vec()),
        ..Default::default()
    })
    .unwrap_err();
    assert!(matches!(e, TlsError::Config(_)));
    assert!(
        UpstreamTls::new(UpstreamTlsConfig {
            roots: UpstreamRoots::CaFile("/nonexistent/ca.pem".into()),
            ..Default::default()
        })
        .is_err()
    );
    let ca = TestCa::new("upstream-ca");
    let tls = UpstreamTls::new(trusting(&ca)).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let tcp = TcpStream::connect(listener.local_addr().unwrap())
        .await
        .unwrap();
    let e = tls.connect("not a host name!", tcp).await.unwrap_err();
    assert!(matches!(e, TlsError::Config(_)), "{e:?}");
}
