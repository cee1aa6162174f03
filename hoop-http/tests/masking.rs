//! Response masking through the gateway: JSON (nested arrays and objects), gzip and
//! deflate, text, opaque bodies, the size limit.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::{ALICE, Gateway, Setup, bearer, upstream};
use serde_json::Value;

/// A gateway in front of `up` with `masker` instead of the test masker.
async fn with_masker(up: &upstream::Upstream, masker: hoop_core::masking::RuleMasker) -> Gateway {
    Gateway::start(
        up.addr,
        up.ca_path.clone(),
        Setup {
            masker: std::sync::Arc::new(masker),
            ..Setup::default()
        },
    )
    .await
}

fn check_users(body: &str) {
    let v: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    assert_eq!(v["users"][0]["email"], "[REDACTED:EMAIL]");
    assert_eq!(v["users"][0]["ssn"], "[REDACTED:SSN]");
    assert_eq!(v["users"][0]["tags"][0], "a");
    assert_eq!(v["users"][0]["tags"][1], "[REDACTED:EMAIL]");
    assert_eq!(v["users"][1]["contacts"][0]["value"], "[REDACTED:EMAIL]");
    assert_eq!(v["users"][1]["contacts"][0]["kind"], "mail");
    assert_eq!(v["users"][1]["ssn"], "[REDACTED:SSN]");
    assert_eq!(v["count"], 2);
    assert!(
        !body.contains("example.com") && !body.contains("6789"),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_masked_in_nested_arrays_over_http1_and_http2() {
    let up = upstream::start(None).await;
    let gw = Gateway::start(up.addr, up.ca_path.clone(), Setup::default()).await;
    for version in ["--http1.1", "--http2"] {
        let (status, body) = gw
            .curl_async(&[version, "-H", &bearer(ALICE), &gw.url("/users")])
            .await;
        assert_eq!(status, 200, "{body}");
        check_users(&body);
    }
    // Content-Length is right: curl checks it; ask for the headers too.
    let (status, head) = gw
        .curl_async(&[
            "-H",
            &bearer(ALICE),
            "-D",
            "-",
            "-o",
            "/dev/null",
            &gw.url("/users"),
        ])
        .await;
    assert_eq!(status, 200);
    let len: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap())
        })
        .expect("content-length");
    let (_, body) = gw
        .curl_async(&["-H", &bearer(ALICE), &gw.url("/users")])
        .await;
    assert_eq!(len, body.len());
    // Nothing to mask: the body is untouched.
    let (_, body) = gw
        .curl_async(&["-H", &bearer(ALICE), &gw.url("/plain-json")])
        .await;
    assert_eq!(body, r#"{"ok":true,"n":[1,2,3]}"#);
    let rec = gw.wait_recorded("\"masked_fields\":5").await;
    assert!(rec.contains("\"masked_fields\":5"), "{rec}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_and_deflate_are_decoded_before_masking() {
    let up = upstream::start(None).await;
    let gw = Gateway::start(up.addr, up.ca_path.clone(), Setup::default()).await;
    // curl --compressed asks for gzip/deflate/br/zstd; the gateway only lets through the
    // codings it can decode.
    let (status, body) = gw
        .curl_async(&["--compressed", "-H", &bearer(ALICE), &gw.url("/gzip")])
        .await;
    assert_eq!(status, 200, "{body}");
    check_users(&body);
    let ae = up.last().headers["accept-encoding"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        !ae.contains("br") && !ae.contains("zstd") && ae.contains("gzip"),
        "{ae}"
    );
    // Without --compressed curl would show raw gzip if the gateway kept the coding; the
    // masked body is sent as identity.
    let (status, body) = gw
        .curl_async(&["-H", &bearer(ALICE), &gw.url("/gzip")])
        .await;
    assert_eq!(status, 200);
    check_users(&body);
    let (status, body) = gw
        .curl_async(&["-H", &bearer(ALICE), &gw.url("/deflate")])
        .await;
    assert_eq!(status, 200);
    check_users(&body);
    // A coding the gateway cannot inspect fails closed.
    let (status, body) = gw
        .curl_async(&["-H", &bearer(ALICE), &gw.url("/brotli")])
        .await;
    assert_eq!(status, 502, "{body}");
    assert!(body.contains("content coding"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_masked_opaque_untouched() {
    let up = upstream::start(None).await;
    let gw = Gateway::start(up.addr, up.ca_path.clone(), Setup::default()).await;
    let (status, body) = gw
        .curl_async(&["-H", &bearer(ALICE), &gw.url("/text")])
        .await;
    assert_eq!(status, 200);
    assert_eq!(body, "hello\n[REDACTED:EMAIL]\nbye\n");
    let (_, body) = gw
        .curl_async(&["-H", &bearer(ALICE), &gw.url("/bin")])
        .await;
    assert_eq!(body, "bob@example.com");
    // Unlabelled and textual application types are text; a structured binary encoding
    // the masking cannot read is refused.
    let (status, body) = gw
        .curl_async(&["-H", &bearer(ALICE), &gw.url("/no-type")])
        .await;
    assert_eq!((status, body.as_str()), (200, "[REDACTED:EMAIL]\n"));
    let (status, body) = gw
        .curl_async(&["-H", &bearer(ALICE), &gw.url("/xml")])
        .await;
    assert_eq!(status, 200);
    assert!(
        !body.contains("bob@") && body.contains("[REDACTED:EMAIL]"),
        "{body}"
    );
    let (status, body) = gw
        .curl_async(&["-H", &bearer(ALICE), &gw.url("/proto")])
        .await;
    assert_eq!(status, 502, "{body}");
    assert!(!body.contains("bob@"), "{body}");
}

/// A body declared JSON that is not JSON fails closed with the detectors of the rule
/// masker: the card number it carries outside quotes never reaches the client, while a
/// JSON body with nothing to mask goes out as it came.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_json_body_that_is_not_json_fails_closed() {
    use hoop_core::masking::{RuleMasker, Strategy};
    let up = upstream::start(None).await;
    let masker = RuleMasker::builder()
        .all_detectors(Strategy::Redact)
        .build()
        .unwrap();
    let gw = with_masker(&up, masker).await;
    let (status, body) = gw
        .curl_async(&["-H", &bearer(ALICE), &gw.url("/not-json")])
        .await;
    assert_eq!(status, 502, "{body}");
    assert!(!body.contains("4111"), "{body}");
    let (status, body) = gw
        .curl_async(&["-H", &bearer(ALICE), &gw.url("/plain-json")])
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, r#"{"ok":true,"n":[1,2,3]}"#);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_over_the_limit_fails_closed_or_passes_through_when_configured() {
    let up = upstream::start(None).await;
    let gw = Gateway::start(up.addr, up.ca_path.clone(), Setup::default()).await;
    for version in ["--http1.1", "--http2"] {
        let (status, body) = gw
            .curl_async(&[version, "-H", &bearer(ALICE), &gw.url("/big")])
            .await;
        assert_eq!(status, 502, "{}", &body[..body.len().min(200)]);
        assert!(body.contains("masking limit"), "{body}");
    }
    let rec = gw.wait_recorded("masking limit").await;
    assert!(rec.contains("masking limit"), "{rec}");
    // The session goes on after a refused body.
    let (status, _) = gw
        .curl_async(&["-H", &bearer(ALICE), &gw.url("/users")])
        .await;
    assert_eq!(status, 200);

    let gw = Gateway::start(
        up.addr,
        up.ca_path.clone(),
        Setup {
            passthrough: true,
            ..Setup::default()
        },
    )
    .await;
    let (status, body) = gw
        .curl_async(&["-H", &bearer(ALICE), &gw.url("/big")])
        .await;
    assert_eq!(status, 200);
    assert!(body.len() > 2 << 20 && body.ends_with(r#""email":"a@b.c"}"#));
    let rec = gw.wait_recorded("mask_passthrough").await;
    assert!(rec.contains("mask_passthrough"), "{rec}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rule_masker_from_hoop_core() {
    use hoop_core::masking::{Detector, RuleMasker, Strategy};
    let masker = RuleMasker::builder()
        .detector(Detector::Email, Strategy::Redact)
        .field_rule("ssn", Strategy::Redact)
        .build()
        .unwrap();
    let up = upstream::start(None).await;
    let gw = with_masker(&up, masker).await;
    for path in ["/users", "/gzip"] {
        let (status, body) = gw
            .curl_async(&["--compressed", "-H", &bearer(ALICE), &gw.url(path)])
            .await;
        assert_eq!(status, 200, "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert!(
            !body.contains("example.com") && !body.contains("6789"),
            "{body}"
        );
        assert_eq!(v["users"][0]["tags"][1], "mail:[REDACTED:EMAIL]", "{body}");
        assert_eq!(v["users"][0]["tags"][0], "a");
        assert_eq!(v["count"], 2);
    }
    let (_, body) = gw
        .curl_async(&["-H", &bearer(ALICE), &gw.url("/text")])
        .await;
    assert_eq!(body, "hello\ncontact: [REDACTED:EMAIL]\nbye\n");
}
