//! The target's certificate is verified: expired, wrong host and untrusted certificates
//! are refused with their reason (502 to the client, recorded); the client session goes
//! on.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::{ALICE, Gateway, Setup, bearer, upstream};
use hoop_testkit::TestCa;

async fn refused(up: &upstream::Upstream, setup: Setup, reason: &str) {
    let gw = Gateway::start(up.addr, up.ca_path.clone(), setup).await;
    for version in ["--http1.1", "--http2"] {
        let (status, body) = gw
            .curl_async(&[version, "-H", &bearer(ALICE), &gw.url("/users")])
            .await;
        assert_eq!(status, 502, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["error"], "bad_gateway");
        assert!(
            v["reason"]
                .as_str()
                .unwrap()
                .contains(&format!("upstream TLS refused ({reason})")),
            "{body}"
        );
    }
    assert!(
        up.seen().is_empty(),
        "a request reached an unverified upstream"
    );
    let rec = gw
        .wait_recorded(&format!("upstream TLS refused ({reason})"))
        .await;
    assert!(
        rec.contains(&format!(
            r#""type":"error","message":"upstream TLS refused ({reason})"#
        )),
        "{rec}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_upstream_certificate() {
    let up = upstream::start_issued(TestCa::expired_server).await;
    refused(&up, Setup::default(), "expired").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_host_upstream_certificate() {
    let up = upstream::start_issued(TestCa::wrong_host_server).await;
    refused(&up, Setup::default(), "name_mismatch").await;
    // The same certificate checked for another name than the one asked for also fails.
    let up = upstream::start(None).await;
    refused(
        &up,
        Setup {
            upstream_name: "api.example.com".into(),
            ..Setup::default()
        },
        "name_mismatch",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untrusted_upstream_certificate() {
    let up = upstream::start(None).await;
    let other = TestCa::new("someone-else");
    let path = other.write_cert(up.dir.path(), "other-ca.crt");
    refused(
        &up,
        Setup {
            upstream_ca: Some(path),
            ..Setup::default()
        },
        "unknown_issuer",
    )
    .await;
}
