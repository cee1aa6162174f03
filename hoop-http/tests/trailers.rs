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
    let rec = gw.wait_recorded(r#""path":"/trailers-stream""#).await;
    assert!(rec.contains(r#""path":"/trailers""#), "{rec}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trailers_of_masked_bodies_over_http2_upstream() {
    check(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trailers_of_masked_bodies_over_http1_upstream() {
    check(false).await;
}
