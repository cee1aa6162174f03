//! curl over HTTPS (HTTP/1.1 and HTTP/2) through the gateway to a hyper upstream over
//! verified TLS: identity, credential injection, header hygiene, path normalisation,
//! request smuggling.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::sync::Arc;

use common::{ALICE, BOB, Gateway, Setup, UPSTREAM_TOKEN, bearer, upstream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_http1_and_http2_with_credential_injection() {
    let up = upstream::start(None).await;
    let gw = Gateway::start(up.addr, up.ca_path.clone(), Setup::default()).await;
    for version in ["--http1.1", "--http2"] {
        let (status, body) = gw
            .curl_async(&[
                version,
                "-H",
                &bearer(ALICE),
                "-H",
                "Cookie: theme=dark; gw_session=s3cr3t",
                "-H",
                "X-Forwarded-For: 6.6.6.6",
                "-H",
                "Proxy-Authorization: Basic Zm9vOmJhcg==",
                &gw.url("/hello?x=1"),
            ])
            .await;
        assert_eq!(status, 200, "{version}: {body}");
        assert!(body.contains(r#""path":"/hello""#), "{body}");
        let seen = up.last();
        assert_eq!(seen.uri, "/hello?x=1");
        // The upstream sees the injected credential, never the client's token.
        assert_eq!(
            seen.headers["authorization"],
            format!("Bearer {UPSTREAM_TOKEN}").as_str()
        );
        let all = format!("{:?}", seen.headers);
        assert!(!all.contains(ALICE), "client token leaked: {all}");
        assert!(!all.contains("s3cr3t"), "stripped cookie leaked: {all}");
        assert!(seen.headers.get("proxy-authorization").is_none());
        assert_eq!(seen.headers["cookie"], "theme=dark");
        assert_eq!(seen.headers["x-forwarded-for"], "127.0.0.1");
        assert_eq!(seen.headers["x-forwarded-proto"], "https");
        assert_eq!(
            seen.headers["host"],
            format!("localhost:{}", up.addr.port()).as_str()
        );
    }
    let rec = gw
        .wait_recorded_all(&[
            "GET /hello?x=1",
            "\"type\":\"command_result\"",
            "\"status\":200",
            "\"subject\":\"alice\"",
        ])
        .await;
    assert!(rec.contains("GET /hello?x=1"), "{rec}");
    // One result line per request: status, bytes each way, duration, masked values.
    let result = rec
        .lines()
        .find(|l| l.contains("\"type\":\"command_result\""))
        .unwrap_or_default();
    for member in [
        "\"status\":200",
        "\"rows\":",
        "\"bytes_in\":0",
        "\"masked_fields\":0",
        "\"duration_ms\":",
    ] {
        assert!(result.contains(member), "{member} missing from {result}");
    }
    assert!(rec.contains("\"subject\":\"alice\""), "{rec}");
    assert!(
        !rec.contains(UPSTREAM_TOKEN) && !rec.contains(ALICE),
        "{rec}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_upstream_by_alpn() {
    let up = upstream::start(None).await;
    let gw = Gateway::start(
        up.addr,
        up.ca_path.clone(),
        Setup {
            upstream_alpn: vec![b"h2".to_vec(), b"http/1.1".to_vec()],
            ..Setup::default()
        },
    )
    .await;
    for version in ["--http1.1", "--http2"] {
        let (status, body) = gw
            .curl_async(&[version, "-H", &bearer(BOB), &gw.url("/a/b")])
            .await;
        assert_eq!(status, 200, "{body}");
        let seen = up.last();
        assert_eq!(seen.version, http::Version::HTTP_2);
        assert_eq!(seen.uri, "/a/b");
        assert_eq!(
            seen.headers["authorization"],
            format!("Bearer {UPSTREAM_TOKEN}").as_str()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_is_required_and_checked() {
    let up = upstream::start(None).await;
    let gw = Gateway::start(up.addr, up.ca_path.clone(), Setup::default()).await;
    let (status, body) = gw.curl_async(&[&gw.url("/x")]).await;
    assert_eq!(status, 401, "{body}");
    let (status, _) = gw
        .curl_async(&[
            "-H",
            "Authorization: Bearer wrong-token-000000000000",
            &gw.url("/x"),
        ])
        .await;
    assert_eq!(status, 401);
    // Two requests on one connection, the second with another identity: refused.
    let (alice, bob) = (bearer(ALICE), bearer(BOB));
    let (one, two) = (gw.url("/one"), gw.url("/two"));
    let mut args: Vec<&str> = vec!["-H", &alice, &one];
    let next = gw.next();
    args.extend(next.iter().map(String::as_str));
    args.extend(["-H", &bob, &two]);
    let (status, out) = gw.curl_async(&args).await;
    assert_eq!(status, 401, "{out}");
    assert!(out.contains("/one"), "{out}");
    assert!(out.contains("another identity on this connection"), "{out}");
    assert!(
        up.seen().iter().all(|s| s.uri != "/two"),
        "second identity forwarded"
    );
    // The same identity on many requests of one connection: fine.
    let mut args: Vec<&str> = vec!["-H", &alice, &one];
    args.extend(next.iter().map(String::as_str));
    args.extend(["-H", &alice, &two]);
    let (status, out) = gw.curl_async(&args).await;
    assert_eq!(status, 200, "{out}");
    assert!(out.contains("/one") && out.contains("/two"), "{out}");
    // A request without a token on an authenticated connection: refused.
    let mut args: Vec<&str> = vec!["-H", &alice, &one];
    args.extend(next.iter().map(String::as_str));
    args.push(&two);
    let (status, _) = gw.curl_async(&args).await;
    assert_eq!(status, 401);
    assert!(
        up.seen().iter().all(|s| s.uri != "/x"),
        "unauthenticated request forwarded"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_normalisation_cannot_dodge_a_rule() {
    let up = upstream::start(None).await;
    let gw = Gateway::start(up.addr, up.ca_path.clone(), Setup::default()).await;
    let (status, body) = gw
        .curl_async(&["-H", &bearer(ALICE), &gw.url("/admin")])
        .await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains(r#""error":"forbidden""#) && body.contains("admin is off limits"));
    for p in [
        "/api/../admin",
        "/%2e%2e/admin",
        "/%2E%2E/admin",
        "//admin",
        "/./admin",
        "/api;x=y/../admin",
        "/api/..;/admin",
        "/%61dmin",
        "/../../admin/x",
    ] {
        let (status, body) = gw
            .curl_async(&["--path-as-is", "-H", &bearer(ALICE), &gw.url(p)])
            .await;
        assert_eq!(status, 403, "{p} was not denied: {body}");
    }
    for p in ["/%2fadmin", "/api%2f..%2fadmin", "/a%5cadmin", "/a%zz"] {
        let (status, body) = gw
            .curl_async(&["--path-as-is", "-H", &bearer(ALICE), &gw.url(p)])
            .await;
        assert_eq!(status, 400, "{p}: {body}");
    }
    assert!(
        up.seen().iter().all(|s| !s.uri.contains("admin")),
        "an admin path reached the upstream: {:?}",
        up.seen()
    );
    // What is forwarded is the normalised path.
    let (status, _) = gw
        .curl_async(&[
            "--path-as-is",
            "-H",
            &bearer(ALICE),
            &gw.url("/api/./v1//x/../y;p=1?q=%2f"),
        ])
        .await;
    assert_eq!(status, 200);
    assert_eq!(up.last().uri, "/api/v1/y?q=%2f");
}

async fn raw_exchange(gw: &Gateway, request: &str) -> String {
    let mut tls = common::tls_to(gw, &[b"http/1.1"]).await;
    tls.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        tls.read_to_end(&mut out),
    )
    .await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_smuggling_is_refused() {
    let up = upstream::start(None).await;
    let gw = Gateway::start(up.addr, up.ca_path.clone(), Setup::default()).await;
    // Content-Length and Transfer-Encoding together: hyper applies RFC 9112 §6.3 (the
    // chunked coding wins, Content-Length is dropped, the connection is closed after the
    // response), so the request smuggled behind is never read and the upstream gets a
    // request framed by the gateway.
    let cl_te = format!(
        "POST /upload HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {ALICE}\r\n\
         Content-Length: 40\r\nTransfer-Encoding: chunked\r\n\r\n\
         0\r\n\r\nGET /admin HTTP/1.1\r\nHost: localhost\r\n\r\n"
    );
    let out = raw_exchange(&gw, &cl_te).await;
    assert_eq!(out.matches("HTTP/1.1 ").count(), 1, "{out}");
    assert!(out.contains(r#"{"received":0}"#), "{out}");
    let seen = up.last();
    assert!(
        seen.headers.get("content-length").is_none_or(|v| v == "0"),
        "{seen:?}"
    );
    // Two different Content-Lengths.
    let cl_cl = format!(
        "POST /upload HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {ALICE}\r\n\
         Content-Length: 4\r\nContent-Length: 10\r\nConnection: close\r\n\r\nabcd"
    );
    let out = raw_exchange(&gw, &cl_cl).await;
    assert!(out.starts_with("HTTP/1.1 400"), "{out}");
    // An obfuscated Transfer-Encoding.
    let te = format!(
        "POST /upload HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {ALICE}\r\n\
         Transfer-Encoding: xchunked\r\nConnection: close\r\n\r\nabcd"
    );
    let out = raw_exchange(&gw, &te).await;
    assert!(!out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(
        up.seen().iter().filter(|s| s.uri == "/upload").count() == 1
            && up.seen().iter().all(|s| s.uri != "/admin"),
        "a smuggled request reached the upstream: {:?}",
        up.seen()
    );
    // A well-framed chunked upload goes through, and its body arrives.
    let ok = format!(
        "POST /upload HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {ALICE}\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n4\r\nabcd\r\n0\r\n\r\n"
    );
    let out = raw_exchange(&gw, &ok).await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    assert!(out.contains(r#"{"received":4}"#), "{out}");
    let seen = up.last();
    assert!(seen.headers.get("connection").is_none());
    let rec = gw.wait_recorded("\"bytes_in\":4").await;
    assert!(rec.contains("\"bytes_in\":4"), "{rec}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_by_hop_headers_named_in_connection_are_removed() {
    let up = upstream::start(None).await;
    let gw = Gateway::start(up.addr, up.ca_path.clone(), Setup::default()).await;
    let req = format!(
        "GET /h HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {ALICE}\r\n\
         Connection: close, X-Internal\r\nX-Internal: 1\r\nKeep-Alive: timeout=5\r\n\
         TE: deflate\r\nProxy-Connection: keep-alive\r\nX-Kept: yes\r\n\r\n"
    );
    let out = raw_exchange(&gw, &req).await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    let seen = up.last();
    for h in ["x-internal", "keep-alive", "te", "proxy-connection"] {
        assert!(seen.headers.get(h).is_none(), "{h} forwarded");
    }
    assert_eq!(seen.headers["x-kept"], "yes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multiplexed_http2_client_over_bounded_http1_upstream_connections() {
    let up = upstream::start(None).await;
    let gw = Gateway::start(
        up.addr,
        up.ca_path.clone(),
        Setup {
            options: hoop_http::HttpOptions {
                max_upstream_conns: 2,
                ..Default::default()
            },
            ..Setup::default()
        },
    )
    .await;
    let alice = bearer(ALICE);
    let urls: Vec<String> = (0..12).map(|i| gw.url(&format!("/slow?i={i}"))).collect();
    let mut args: Vec<&str> = vec!["--http2", "--parallel", "-H", &alice];
    args.extend(urls.iter().map(String::as_str));
    let (status, out) = gw.curl_async(&args).await;
    assert_eq!(status, 200, "{out}");
    assert_eq!(out.matches(r#"{"slow":true}"#).count(), 12, "{out}");
    let conns = up.conns.load(std::sync::atomic::Ordering::SeqCst);
    assert!((1..=2).contains(&conns), "{conns} upstream connections");
    // One client connection (one session) multiplexed the twelve requests.
    let rec = gw.wait_recorded("session_end").await;
    assert_eq!(
        rec.matches("\"type\":\"session_start\"").count(),
        1,
        "{rec}"
    );
    assert_eq!(rec.matches("\"status\":200").count(), 12, "{rec}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_request_heads_are_refused() {
    let up = upstream::start(None).await;
    let gw = Gateway::start(up.addr, up.ca_path.clone(), Setup::default()).await;
    let big = format!("X-Big: {}", "a".repeat(100 << 10));
    for version in ["--http1.1", "--http2"] {
        let out = std::process::Command::new("curl")
            .args([
                "-sS",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                version,
                "--resolve",
            ])
            .arg(format!("localhost:{}:127.0.0.1", gw.addr.port()))
            .arg("--cacert")
            .arg(&gw.ca_path)
            .args(["-H", &bearer(ALICE), "-H", &big, &gw.url("/big-head")])
            .output()
            .unwrap();
        let code = String::from_utf8_lossy(&out.stdout).into_owned();
        assert_ne!(code, "200", "{version}");
    }
    assert!(up.seen().iter().all(|s| s.uri != "/big-head"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_client_connections_are_closed() {
    let up = upstream::start(None).await;
    let gw = Gateway::start(
        up.addr,
        up.ca_path.clone(),
        Setup {
            // Long enough that the request right after the handshake is never taken for
            // silence on a busy machine.
            idle: Some(std::time::Duration::from_secs(2)),
            ..Setup::default()
        },
    )
    .await;
    // HTTP/2: one request, then silence; the gateway sends GOAWAY and closes.
    let mut roots = rustls::RootCertStore::empty();
    roots.add(gw.gw_ca.cert_der()).unwrap();
    let mut config = rustls::ClientConfig::builder_with_provider(hoop_core::crypto_provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .unwrap();
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tls),
    )
    .await
    .unwrap();
    let conn = tokio::spawn(conn);
    let req = http::Request::builder()
        .uri(gw.url("/h2-idle"))
        .header("authorization", format!("Bearer {ALICE}"))
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    drop(resp);
    let ended = tokio::time::timeout(std::time::Duration::from_secs(60), conn).await;
    assert!(ended.is_ok(), "the idle HTTP/2 connection was not closed");
    // HTTP/1.1 keep-alive: one request, then silence; the gateway closes.
    let req = format!(
        "GET /h1-idle HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {ALICE}\r\n\r\n"
    );
    let out = raw_exchange(&gw, &req).await;
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    let mut rec = String::new();
    common::eventually(|| {
        rec = gw.recordings_text();
        rec.matches("\"type\":\"session_end\"").count() >= 2
    })
    .await;
    assert_eq!(rec.matches("\"type\":\"session_end\"").count(), 2, "{rec}");
    assert!(rec.contains("\"reason\":\"idle timeout\""), "{rec}");
}
