//! nginx with TLS (HTTP/1.1 and HTTP/2) as the target. Skipped (with a message) when
//! nginx is not installed.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::net::SocketAddr;

use common::{ALICE, Gateway, Setup, bearer};
use hoop_testkit::nginx::{NginxOptions, NginxServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_upstream_over_http1_and_http2() {
    let Some(nginx) = NginxServer::start(NginxOptions {
        files: vec![
            (
                "data.json".into(),
                br#"{"rows":[{"email":"x@corp.io","ssn":"111-22-3333"}]}"#.to_vec(),
            ),
            ("hello.txt".into(), b"plain hello\n".to_vec()),
        ],
        ..Default::default()
    }) else {
        eprintln!("nginx is not installed: skipped");
        return;
    };
    let addr = SocketAddr::from(([127, 0, 0, 1], nginx.port));
    for alpn in [vec![b"http/1.1".to_vec()], vec![b"h2".to_vec()]] {
        let gw = Gateway::start(
            addr,
            nginx.ca_path().to_path_buf(),
            Setup {
                upstream_alpn: alpn,
                ..Setup::default()
            },
        )
        .await;
        for version in ["--http1.1", "--http2"] {
            let (status, body) = gw
                .curl_async(&[version, "-H", &bearer(ALICE), &gw.url("/data.json")])
                .await;
            assert_eq!(status, 200, "{body}");
            assert_eq!(
                body,
                r#"{"rows":[{"email":"[REDACTED:EMAIL]","ssn":"[REDACTED:SSN]"}]}"#
            );
            let (status, body) = gw
                .curl_async(&[
                    version,
                    "--compressed",
                    "-H",
                    &bearer(ALICE),
                    &gw.url("/hello.txt"),
                ])
                .await;
            assert_eq!((status, body.as_str()), (200, "plain hello\n"));
            let (status, _) = gw
                .curl_async(&[version, "-H", &bearer(ALICE), &gw.url("/missing")])
                .await;
            assert_eq!(status, 404);
        }
    }
}
