//! Kubernetes-style paths through the gateway: verbs and classes, deny, review (held,
//! approved while held; expired, then approved and retried).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::time::Duration;

use common::{ALICE, BOB, Gateway, Setup, bearer, upstream};
use hoop_core::{AuthMethod, Identity};

fn kube() -> Setup {
    Setup {
        protocol: "kubernetes",
        ..Setup::default()
    }
}

async fn approve_when_pending(gw: &Gateway) -> String {
    let mut pending = None;
    common::eventually(|| {
        pending = gw.gate.list_pending().first().cloned();
        pending.is_some()
    })
    .await;
    let r = pending.expect("no review became pending");
    let reviewer = Identity::new("carol", AuthMethod::StaticToken);
    gw.gate.approve(&r.id, &reviewer, Some("ok")).unwrap();
    r.id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_pass_destructive_denied_for_bob() {
    let up = upstream::start(None).await;
    let gw = Gateway::start(up.addr, up.ca_path.clone(), kube()).await;
    let (status, body) = gw
        .curl_async(&["-H", &bearer(BOB), &gw.url("/api/v1/namespaces/prod/pods")])
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = gw
        .curl_async(&[
            "-X",
            "DELETE",
            "-H",
            &bearer(BOB),
            &gw.url("/api/v1/namespaces/prod/pods/x"),
        ])
        .await;
    assert_eq!(status, 403, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"], "forbidden");
    assert!(
        v["reason"]
            .as_str()
            .unwrap()
            .contains("destructive requests are not allowed"),
        "{body}"
    );
    // Exec is admin (no rule allows it); reading secrets is admin too.
    for (m, p) in [
        ("POST", "/api/v1/namespaces/prod/pods/x/exec?command=sh"),
        ("GET", "/api/v1/namespaces/prod/secrets/db"),
        ("DELETE", "/apis/apps/v1/namespaces/prod/deployments"),
    ] {
        let (status, body) = gw
            .curl_async(&["-X", m, "-H", &bearer(BOB), &gw.url(p)])
            .await;
        assert_eq!(status, 403, "{m} {p}: {body}");
    }
    // A dot-dot walk from an allowed read to a delete is still a delete.
    let (status, _) = gw
        .curl_async(&[
            "--path-as-is",
            "-X",
            "DELETE",
            "-H",
            &bearer(BOB),
            &gw.url("/api/v1/namespaces/prod/pods/y/log/../../x"),
        ])
        .await;
    assert_eq!(status, 403);
    assert!(
        up.seen()
            .iter()
            .all(|s| s.method != "DELETE" && s.method != "POST")
    );
    // The requests are recorded in order, but written in the background: wait for all.
    let rec = gw
        .wait_recorded_all(&[
            r#""text":"DELETE /api/v1/namespaces/prod/pods/x","class":"destructive","decision":"deny""#,
            r#""class":"admin""#,
        ])
        .await;
    assert!(rec.contains(r#""text":"DELETE /api/v1/namespaces/prod/pods/x","class":"destructive","decision":"deny""#), "{rec}");
    assert!(rec.contains(r#""class":"admin""#), "{rec}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn review_approved_while_held() {
    let up = upstream::start(None).await;
    let gw = Gateway::start(up.addr, up.ca_path.clone(), kube()).await;
    let url = gw.url("/api/v1/namespaces/prod/pods/x");
    let alice = bearer(ALICE);
    let args = ["-X", "DELETE", "-H", &alice, &url];
    let curl = gw.curl_async(&args);
    let (res, id) = tokio::join!(curl, approve_when_pending(&gw));
    assert_eq!(res.0, 200, "{}", res.1);
    assert!(id.starts_with("r-"));
    let seen = up.last();
    assert_eq!(
        (seen.method.as_str(), seen.uri.as_str()),
        ("DELETE", "/api/v1/namespaces/prod/pods/x")
    );
    let rec = gw.wait_recorded("\"state\":\"approved\"").await;
    assert!(rec.contains(&id), "{rec}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn review_expires_then_a_grant_lets_the_retry_pass() {
    let up = upstream::start(None).await;
    let gw = Gateway::start(
        up.addr,
        up.ca_path.clone(),
        Setup {
            hold: Duration::from_millis(300),
            ..kube()
        },
    )
    .await;
    let url = gw.url("/api/v1/namespaces/prod/pods/x");
    let (status, body) = gw
        .curl_async(&["-X", "DELETE", "-H", &bearer(ALICE), &url])
        .await;
    assert_eq!(status, 403, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let id = v["review_id"].as_str().expect("review id").to_owned();
    assert!(v["reason"].as_str().unwrap().contains("expired"), "{body}");
    assert!(up.seen().iter().all(|s| s.method != "DELETE"));
    gw.gate
        .approve(&id, &Identity::new("carol", AuthMethod::StaticToken), None)
        .unwrap();
    let (status, body) = gw
        .curl_async(&["-X", "DELETE", "-H", &bearer(ALICE), &url])
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(up.last().method, "DELETE");
    // The grant covers exactly that request, not another object.
    let (status, _) = gw
        .curl_async(&[
            "-X",
            "DELETE",
            "-H",
            &bearer(ALICE),
            &gw.url("/api/v1/namespaces/prod/pods/z"),
        ])
        .await;
    assert_eq!(status, 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_streams_are_masked_line_by_line() {
    let up = upstream::start(None).await;
    let gw = Gateway::start(up.addr, up.ca_path.clone(), kube()).await;
    for version in ["--http1.1", "--http2"] {
        let (status, body) = gw
            .curl_async(&[
                version,
                "-N",
                "-H",
                &bearer(BOB),
                &gw.url("/api/v1/namespaces/prod/pods?watch=true"),
            ])
            .await;
        assert_eq!(status, 200, "{body}");
        let lines: Vec<serde_json::Value> = body
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 3, "{body}");
        assert_eq!(lines[0]["object"]["owner"], "[REDACTED:EMAIL]");
        assert_eq!(lines[1]["object"]["ssn"], "[REDACTED:SSN]");
        assert_eq!(lines[1]["object"]["ok"], true);
        assert_eq!(lines[2]["type"], "DELETED");
    }
    let rec = gw.wait_recorded(r#""masked_fields":2"#).await;
    assert!(
        rec.contains(r#""text":"GET /api/v1/namespaces/prod/pods?watch=true","class":"read""#),
        "{rec}"
    );
    assert!(rec.contains(r#""masked_fields":2"#), "{rec}");
}
