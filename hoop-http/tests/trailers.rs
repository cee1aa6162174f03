//! Response trailers reach the client when the body is masked (buffered or streamed line
//! by line): a hyper upstream sends them over HTTP/2 or HTTP/1.1 (chunked), a hyper
//! client reads them over HTTP/2 or HTTP/1.1 (with `TE: trailers`).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::{ALICE, Gateway, HyperClient, Setup, get, upstream};
use http_body_util::BodyExt;

async fn check(upstream_h2: bool) {
    let up = upstream::start(None).await;
    let alpn = if upstream_h2 {
        vec![b"h2".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    let gw = Gateway::start(
        up.addr,
        up.ca_path.clone(),
        Setup {
            upstream_alpn: alpn,
            ..Setup::default()
        },
    )
    .await;
    for client_h2 in [true, false] {
        let mut client = HyperClient::connect(&gw, client_h2).await;
        for path in ["/trailers", "/trailers-stream"] {
            let mut req = get(path, ALICE);
            req.headers_mut().insert("te", "trailers".parse().unwrap());
            let resp = client.send(&gw, req).await;
            assert_eq!(resp.status(), 200, "{path}");
            let collected = resp.into_body().collect().await.unwrap();
            let trailers = collected.trailers().cloned();
            let body = String::from_utf8(collected.to_bytes().to_vec()).unwrap();
            let what = format!("{path} upstream h2 {upstream_h2} client h2 {client_h2}");
            // Masked...
            assert!(!body.contains('@'), "{what}: {body}");
            assert!(body.contains("[REDACTED:"), "{what}: {body}");
            // ... and the trailers kept.
            let trailers = trailers.unwrap_or_else(|| panic!("{what}: no trailers"));
            assert_eq!(trailers["x-checksum"], "abc123", "{what}");
            assert_eq!(trailers["grpc-status"], "0", "{what}");
        }
        // The streamed body kept its lines, the last one (without a newline) included.
        let resp = client.send(&gw, get("/trailers-stream", ALICE)).await;
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(
            String::from_utf8_lossy(&body),
            "{\"email\":\"[REDACTED:EMAIL]\",\"n\":1}\n{\"n\":2,\"ok\":true}\n\
             {\"email\":\"[REDACTED:EMAIL]\",\"n\":3}"
        );
    }
    let seen = up.seen();
    let want = if upstream_h2 {
        http::Version::HTTP_2
    } else {
        http::Version::HTTP_11
    };
    assert!(seen.iter().all(|s| s.version == want), "{seen:?}");
    // Recordings are written in the background: wait for the six requests.
    let mut rec = String::new();
    common::eventually(|| {
        rec = gw.recordings_text();
        rec.matches(r#""type":"command_result""#).count() >= 6
    })
    .await;
    assert!(rec.contains(r#" /trailers""#), "{rec}");
    // Every response went out whole (and its HTTP/1.1 target connection back to the pool).
    assert!(!rec.contains("response body not completed"), "{rec}");
    assert_eq!(rec.matches(r#""status":200"#).count(), 6, "{rec}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trailers_of_masked_bodies_over_http2_upstream() {
    check(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trailers_of_masked_bodies_over_http1_upstream() {
    check(false).await;
}

/// Request trailers reach the target, except fields the gateway controls (a trailer
/// cannot stand in for the client's or the injected credential).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_trailers_cannot_carry_credentials() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    for upstream_h2 in [true, false] {
        let up = upstream::start(None).await;
        let alpn = if upstream_h2 {
            b"h2".to_vec()
        } else {
            b"http/1.1".to_vec()
        };
        let gw = Gateway::start(
            up.addr,
            up.ca_path.clone(),
            Setup {
                upstream_alpn: vec![alpn],
                ..Setup::default()
            },
        )
        .await;
        let mut tls = common::tls_to(&gw, &[b"http/1.1"]).await;
        let req = format!(
            "POST /echo-trailers HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {ALICE}\r\n\
             Transfer-Encoding: chunked\r\nTrailer: authorization, x-checksum, cookie\r\n\
             Connection: close\r\n\r\n5\r\nhello\r\n0\r\nauthorization: Bearer forged\r\n\
             cookie: gw_session=x\r\nx-checksum: abc\r\n\r\n"
        );
        tls.write_all(req.as_bytes()).await.unwrap();
        let mut out = Vec::new();
        let _ = tls.read_to_end(&mut out).await;
        let out = String::from_utf8_lossy(&out);
        assert!(out.starts_with("HTTP/1.1 200"), "{out}");
        let body = &out[out.find("\r\n\r\n").unwrap() + 4..];
        assert!(body.contains(r#""body":"hello""#), "{body}");
        assert!(
            body.contains(r#""x-checksum":"abc""#),
            "h2 {upstream_h2}: {body}"
        );
        assert!(!body.contains("forged"), "{body}");
        assert!(!body.contains("gw_session"), "{body}");
    }
}
