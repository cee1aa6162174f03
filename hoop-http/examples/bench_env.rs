//! The three HTTPS endpoints the `benches/http.sh` benchmark compares, on loopback:
//! a hyper upstream (direct), hoop in front of it (TLS on both legs, token identity, a
//! rule policy, a bearer credential injected from a file, JSON masking with every detector
//! of `RuleMasker` and JSON-lines recording), and nginx as a TLS reverse proxy
//! in front of it (when nginx is installed), once without an access log and once with one.
//!
//! Prints `direct=URL`, `hoop=URL`, `nginx=URL`, `nginx_log=URL`, `token=TOKEN`, then
//! `READY`, and runs
//! until its standard input closes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::convert::Infallible;
use std::io::Read;
use std::sync::Arc;

use bytes::Bytes;
use hoop_core::auth::{StaticToken, StaticTokenAuthenticator, hash_token};
use hoop_core::masking::{RuleMasker, Strategy};
use hoop_core::policy::{ActionMatch, Rule, RulePolicy};
use hoop_core::recording::JsonlRecorder;
use hoop_core::sequence::UpstreamSecurity;
use hoop_core::server::{ListenerConfig, Server};
use hoop_core::tls::{ServerTls, ServerTlsConfig, UpstreamRoots, UpstreamTls, UpstreamTlsConfig};
use hoop_core::{ActionClass, Resource, Services};
use hoop_http::{HttpAdapter, HttpOptions, HttpTarget, Secret, UpstreamCredential};
use hoop_testkit::TestCa;
use hoop_testkit::nginx::{NginxOptions, NginxServer};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};

const TOKEN: &str = "bench-token-0123456789abcdef";

fn json_of(size: usize) -> Bytes {
    Bytes::from(hoop_testkit::bodies::json_items(size))
}

/// The allocator of the gateway binary (`examples/gateway`): glibc's cost about 5% more
/// CPU per small request here.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let up_ca = TestCa::new("bench-upstream-ca");
    let up_ca_path = up_ca.write_cert(dir.path(), "up-ca.crt");
    let cert = up_ca.server();
    let mut config = rustls::ServerConfig::builder_with_provider(hoop_core::crypto_provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.cert()], cert.key())
        .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up_addr = listener.local_addr().unwrap();
    let small = json_of(100);
    let large = json_of(64 << 10);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let _ = tcp.set_nodelay(true);
            let (acceptor, small, large) = (acceptor.clone(), small.clone(), large.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let body = if req.uri().path() == "/64k" {
                        large.clone()
                    } else {
                        small.clone()
                    };
                    async move {
                        Ok::<_, Infallible>(
                            http::Response::builder()
                                .header("content-type", "application/json")
                                .body(Full::new(body))
                                .unwrap(),
                        )
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });

    // hoop
    let gw_ca = TestCa::new("bench-gateway-ca");
    let gw_ca_path = gw_ca.write_cert(dir.path(), "gw-ca.crt");
    let (gw_cert, gw_key) = gw_ca.server().write(dir.path(), "gw");
    let tls = ServerTls::new(ServerTlsConfig {
        cert_path: gw_cert,
        key_path: gw_key,
        alpn: vec![b"h2".to_vec(), b"http/1.1".to_vec()],
        ..Default::default()
    })
    .unwrap();
    let upstream_tls = UpstreamTls::new(UpstreamTlsConfig {
        roots: UpstreamRoots::CaFile(up_ca_path.clone()),
        alpn: vec![b"http/1.1".to_vec()],
        ..Default::default()
    })
    .unwrap();
    let target = HttpTarget::new(
        Resource::new("bench", "http"),
        up_addr,
        UpstreamSecurity::Tls {
            tls: upstream_tls,
            server_name: "localhost".into(),
        },
    )
    // The target's credential, kept in a file as the gateway binary keeps it.
    .credential(UpstreamCredential::Bearer(Secret::File({
        let p = dir.path().join("upstream-token");
        std::fs::write(&p, "upstream-secret\n").unwrap();
        p
    })));
    let adapter = Arc::new(HttpAdapter::new(target, HttpOptions::default()));
    let auth =
        StaticTokenAuthenticator::new([StaticToken::new("bench", &hash_token(TOKEN)).unwrap()])
            .unwrap();
    let mut services = Services::new(Arc::new(auth));
    services.policy = Arc::new(RulePolicy::new(vec![
        Rule::allow("connect").actions(ActionMatch::connect()),
        Rule::allow("read").actions(ActionMatch::class(ActionClass::Read)),
    ]));
    // HOOP_BENCH_MASK=0 / HOOP_BENCH_RECORD=0 switch masking / recording off (to see
    // what each costs).
    if std::env::var("HOOP_BENCH_MASK").as_deref() != Ok("0") {
        // Every detector plus a field rule: each string of the JSON is inspected.
        services.masker = Arc::new(
            RuleMasker::builder()
                .all_detectors(Strategy::Redact)
                .field_rule("password", Strategy::Redact)
                .build()
                .unwrap(),
        );
    }
    if std::env::var("HOOP_BENCH_RECORD").as_deref() != Ok("0") {
        services.recorder = Arc::new(JsonlRecorder::new(dir.path().join("rec")));
    }
    // hoop runs on its own runtime: by default one event loop on its own thread (a
    // current-thread runtime, as nginx runs one worker process here);
    // HOOP_BENCH_THREADS=N gives it a multi-thread runtime with N workers instead.
    let threads: usize = std::env::var("HOOP_BENCH_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = if threads <= 1 {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
        } else {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(threads)
                .enable_all()
                .build()
                .unwrap()
        };
        rt.block_on(async move {
            let server = Server::builder()
                .services(Arc::new(services))
                .listener(
                    ListenerConfig::new("http", "127.0.0.1:0".parse().unwrap(), adapter).tls(tls),
                )
                .build()
                .await
                .unwrap();
            addr_tx.send(server.local_addr("http").unwrap()).unwrap();
            let _handle = server.spawn();
            std::future::pending::<()>().await;
        });
    });
    let gw_addr = addr_rx.recv().unwrap();

    let nginx = NginxServer::start(NginxOptions {
        proxy_to: Some((up_addr, up_ca_path.clone())),
        ..Default::default()
    });
    // The same nginx with an access log, as nginx ships (hoop records every request).
    let nginx_log = NginxServer::start(NginxOptions {
        proxy_to: Some((up_addr, up_ca_path.clone())),
        extra_server: vec![format!(
            "access_log {} combined;",
            dir.path().join("nginx-access.log").display()
        )],
        ..Default::default()
    });

    println!("direct=https://127.0.0.1:{}", up_addr.port());
    println!("direct_ca={}", up_ca_path.display());
    println!("hoop=https://127.0.0.1:{}", gw_addr.port());
    println!("hoop_ca={}", gw_ca_path.display());
    if let Some(n) = &nginx {
        println!("nginx=https://127.0.0.1:{}", n.port);
        println!("nginx_ca={}", n.ca_path().display());
    }
    if let Some(n) = &nginx_log {
        println!("nginx_log=https://127.0.0.1:{}", n.port);
    }
    println!("token={TOKEN}");
    println!("READY");
    tokio::task::spawn_blocking(|| {
        let mut sink = Vec::new();
        let _ = std::io::stdin().read_to_end(&mut sink);
    })
    .await
    .unwrap();
    drop(nginx);
    drop(nginx_log);
}
