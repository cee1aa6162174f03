//! An in-process HTTPS upstream (hyper, HTTP/1.1 and HTTP/2 by ALPN) that remembers what
//! it was sent.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use hoop_testkit::{TestCa, TestCert};
use http::{HeaderMap, Request, Response, StatusCode};
use std::convert::Infallible;

use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};

/// One request as the upstream saw it.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    pub uri: String,
    pub version: http::Version,
    pub headers: HeaderMap,
}

pub struct Upstream {
    pub addr: SocketAddr,
    pub ca_path: PathBuf,
    pub ca: TestCa,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    pub dir: tempfile::TempDir,
    /// TLS connections accepted.
    pub conns: Arc<std::sync::atomic::AtomicUsize>,
}

impl Upstream {
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
    pub fn last(&self) -> Seen {
        self.seen()
            .last()
            .cloned()
            .expect("the upstream saw no request")
    }
}

pub const USERS_JSON: &str = r#"{"users":[{"id":1,"email":"alice@example.com","ssn":"123-45-6789","tags":["a","mail:xy@corp.io"]},{"id":2,"contacts":[{"kind":"mail","value":"bob@example.com"}],"ssn":987654321}],"count":2}"#;

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn deflate(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

type B = UnsyncBoxBody<Bytes, Infallible>;

fn resp(status: u16, ct: &str, body: impl Into<Bytes>) -> Response<B> {
    Response::builder()
        .status(status)
        .header("content-type", ct)
        .body(Full::new(body.into()).boxed_unsync())
        .unwrap()
}

/// A chunked stream of watch events; the second event is split across two chunks.
fn watch_stream() -> Response<B> {
    let chunks: Vec<&'static str> = vec![
        "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":\"a\"},\"owner\":\"x@corp.io\"}}\n",
        "{\"type\":\"MODIFIED\",\"object\":{\"ssn\":\"1",
        "23\",\"ok\":true}}\n{\"type\":\"DELETED\",\"object\":{}}\n",
    ];
    let stream = futures_util::stream::iter(chunks).then(|c| async move {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        Ok::<_, Infallible>(Frame::data(Bytes::from_static(c.as_bytes())))
    });
    Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .body(StreamBody::new(stream).boxed_unsync())
        .unwrap()
}

async fn route(mut req: Request<Incoming>, seen: Arc<Mutex<Vec<Seen>>>) -> Response<B> {
    let watch = req.uri().query().is_some_and(|q| q.contains("watch=true"));
    let uri = req.uri().to_string();
    let path = req.uri().path().to_owned();
    seen.lock().unwrap().push(Seen {
        method: req.method().to_string(),
        uri: req
            .uri()
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or(uri),
        version: req.version(),
        headers: req.headers().clone(),
    });
    if watch {
        return watch_stream();
    }
    match path.as_str() {
        "/users" => resp(200, "application/json", USERS_JSON),
        "/gzip" => {
            let mut r = resp(200, "application/json", gzip(USERS_JSON.as_bytes()));
            r.headers_mut()
                .insert("content-encoding", "gzip".parse().unwrap());
            r
        }
        "/deflate" => {
            let mut r = resp(200, "application/json", deflate(USERS_JSON.as_bytes()));
            r.headers_mut()
                .insert("content-encoding", "deflate".parse().unwrap());
            r
        }
        "/brotli" => {
            let mut r = resp(200, "application/json", "not really brotli");
            r.headers_mut()
                .insert("content-encoding", "br".parse().unwrap());
            r
        }
        "/big" => {
            let body = format!(r#"{{"data":"{}","email":"a@b.c"}}"#, "x".repeat(2 << 20));
            resp(200, "application/json", body)
        }
        "/text" => resp(200, "text/plain", "hello\ncontact: bob@example.com\nbye\n"),
        "/bin" => resp(200, "application/octet-stream", "bob@example.com"),
        "/slow" => {
            tokio::time::sleep(std::time::Duration::from_millis(30)).await;
            resp(200, "application/json", r#"{"slow":true}"#)
        }
        "/plain-json" => resp(200, "application/json", r#"{"ok":true,"n":[1,2,3]}"#),
        // No Content-Type at all.
        "/no-type" => Response::builder()
            .status(200)
            .body(Full::new(Bytes::from_static(b"contact: bob@example.com\n")).boxed_unsync())
            .unwrap(),
        "/xml" => resp(
            200,
            "application/xml",
            "<user><mail>bob@example.com</mail></user>",
        ),
        "/proto" => resp(
            200,
            "application/x-protobuf",
            &b"\x0a\x0fbob@example.com"[..],
        ),
        // Declared JSON, is not: a card number outside quotes.
        "/not-json" => resp(200, "application/json", "4111 1111 1111 1111\n"),
        "/upload" => {
            let body = req.body_mut().collect().await.map(|b| b.to_bytes());
            match body {
                Ok(b) => resp(
                    200,
                    "application/json",
                    format!(r#"{{"received":{}}}"#, b.len()),
                ),
                Err(_) => resp(400, "text/plain", "bad body"),
            }
        }
        "/ws" => websocket(req),
        "/echo-trailers" => {
            let collected = req.body_mut().collect().await.unwrap();
            let trailers: serde_json::Map<String, serde_json::Value> = collected
                .trailers()
                .map(|t| {
                    t.iter()
                        .map(|(n, v)| (n.to_string(), v.to_str().unwrap().into()))
                        .collect()
                })
                .unwrap_or_default();
            let body = String::from_utf8(collected.to_bytes().to_vec()).unwrap();
            resp(
                200,
                "application/json",
                serde_json::json!({ "body": body, "trailers": trailers }).to_string(),
            )
        }
        "/trailers" => with_trailers("application/json", &[USERS_JSON]),
        "/trailers-stream" => with_trailers(
            "application/x-ndjson",
            &[
                "{\"email\":\"a@corp.io\",\"n\":1}\n{\"n\":2,",
                "\"ok\":true}\n{\"email\":\"c@corp.io\",\"n\":3}",
            ],
        ),
        "/spdy" => raw_echo_upgrade(req),
        _ => resp(
            200,
            "application/json",
            serde_json::json!({"method": req.method().as_str(), "path": path}).to_string(),
        ),
    }
}

/// A chunked body of `chunks` ending with trailers `x-checksum: abc123` and
/// `grpc-status: 0` (announced by `Trailer`, as an HTTP/1.1 peer needs).
fn with_trailers(ct: &str, chunks: &[&'static str]) -> Response<B> {
    let mut trailers = HeaderMap::new();
    trailers.insert("x-checksum", "abc123".parse().unwrap());
    trailers.insert("grpc-status", "0".parse().unwrap());
    let frames: Vec<Result<Frame<Bytes>, Infallible>> = chunks
        .iter()
        .map(|c| Ok(Frame::data(Bytes::from_static(c.as_bytes()))))
        .chain(std::iter::once(Ok(Frame::trailers(trailers))))
        .collect();
    Response::builder()
        .status(200)
        .header("content-type", ct)
        .header("trailer", "x-checksum, grpc-status")
        .body(StreamBody::new(futures_util::stream::iter(frames)).boxed_unsync())
        .unwrap()
}

fn websocket(mut req: Request<Incoming>) -> Response<B> {
    let Some(key) = req.headers().get("sec-websocket-key").cloned() else {
        return resp(400, "text/plain", "not a websocket request");
    };
    let on = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let Ok(up) = on.await else { return };
        let mut ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
            TokioIo::new(up),
            tokio_tungstenite::tungstenite::protocol::Role::Server,
            None,
        )
        .await;
        while let Some(Ok(msg)) = ws.next().await {
            if msg.is_text() || msg.is_binary() {
                if ws.send(msg).await.is_err() {
                    return;
                }
            } else if msg.is_close() {
                let _ = ws.close(None).await;
                return;
            }
        }
    });
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header("upgrade", "websocket")
        .header("connection", "Upgrade")
        .header("sec-websocket-accept", accept)
        .body(Full::new(Bytes::new()).boxed_unsync())
        .unwrap()
}

/// `Upgrade: SPDY/3.1` answered with 101, then every byte echoed (enough to stand in for
/// a kubelet stream).
fn raw_echo_upgrade(mut req: Request<Incoming>) -> Response<B> {
    let on = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let Ok(up) = on.await else { return };
        let (mut r, mut w) = tokio::io::split(TokioIo::new(up));
        let _ = tokio::io::copy(&mut r, &mut w).await;
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header("upgrade", "SPDY/3.1")
        .header("connection", "Upgrade")
        .body(Full::new(Bytes::new()).boxed_unsync())
        .unwrap()
}

/// Starts the upstream with a localhost certificate from its own CA (`cert` overrides
/// the leaf).
pub async fn start(cert: Option<TestCert>) -> Upstream {
    match cert {
        Some(c) => start_issued(move |_| c).await,
        None => start_issued(TestCa::server).await,
    }
}

/// Starts the upstream with a leaf its own CA issues with `issue` (for the refusal
/// tests: expired, wrong host...).
pub async fn start_issued(issue: impl FnOnce(&TestCa) -> TestCert) -> Upstream {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("upstream-ca");
    let ca_path = ca.write_cert(dir.path(), "upstream-ca.crt");
    let cert = issue(&ca);
    let mut config = rustls::ServerConfig::builder_with_provider(hoop_core::crypto_provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.cert()], cert.key())
        .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let conns = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let c = conns.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            c.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let (acceptor, s) = (acceptor.clone(), s.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc = service_fn(move |req| {
                    let s = s.clone();
                    async move { Ok::<_, std::convert::Infallible>(route(req, s).await) }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection_with_upgrades(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    Upstream {
        addr,
        ca_path,
        ca,
        seen,
        dir,
        conns,
    }
}
