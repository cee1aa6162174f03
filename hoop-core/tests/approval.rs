//! The in-memory approval gate (hold, verdicts, grants, audit trail, limits) and the
//! webhook notifier against a real HTTPS server on loopback.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use hoop_testkit::wait::wait_until;
use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use hoop_core::approval::{
    ApprovalError, ApprovalGate, GateConfig, InMemoryGate, ReviewState, Submission, Transition,
    TransitionKind, Verdict, WebhookConfig, WebhookNotifier,
};
use hoop_core::http_client::HttpsClient;
use hoop_core::tls::{ServerTls, ServerTlsConfig, UpstreamRoots, UpstreamTls, UpstreamTlsConfig};
use hoop_core::{Action, ActionClass, AuthMethod, Command, Identity, ReviewRequest, SessionId};
use hoop_testkit::certs::TestCa;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;

fn alice() -> Identity {
    Identity::new("alice", AuthMethod::Oidc).with_groups(["dev"])
}

fn bob() -> Identity {
    Identity::new("bob", AuthMethod::Oidc).with_groups(["dba"])
}

fn drop_table(text: &str) -> Action {
    Action::Command(Command {
        class: ActionClass::Destructive,
        verb: "DROP TABLE".into(),
        text: text.into(),
        objects: vec!["t".into()],
    })
}

fn request(who: Identity, resource: &str, text: &str) -> ReviewRequest {
    ReviewRequest {
        requester: who,
        resource: resource.into(),
        action: drop_table(text),
        reason: "destructive statements need a review".into(),
        session_id: SessionId::new(),
    }
}

async fn pending(gate: &InMemoryGate, req: ReviewRequest) -> hoop_core::approval::PendingReview {
    match gate.submit(req).await {
        Submission::Pending(p) => p,
        Submission::Decided(v) => panic!("expected a pending review, got {v:?}"),
    }
}

/// Waits (bounded) until the gate lists a pending review and returns its id.
async fn first_pending_id(gate: &InMemoryGate) -> String {
    let mut id = None;
    wait_until("a pending review appears", || {
        id = gate.list_pending().first().map(|r| r.id.clone());
        id.is_some()
    })
    .await;
    id.unwrap()
}

#[tokio::test]
async fn approve_releases_the_waiting_command() {
    let gate = InMemoryGate::default();
    let g = gate.clone();
    let waiter = tokio::spawn(async move {
        g.review(
            request(alice(), "pg", "drop table t"),
            Duration::from_secs(30),
        )
        .await
    });
    let id = first_pending_id(&gate).await;
    assert!(id.starts_with("r-") && id.len() == 12, "{id}");
    let info = gate.get(&id).unwrap();
    assert_eq!(info.requester, "alice");
    assert_eq!(info.resource, "pg");
    assert_eq!(info.action, "drop table t");
    assert_eq!(info.class, Some(ActionClass::Destructive));
    assert_eq!(info.state, ReviewState::Pending);
    let json = serde_json::to_value(&info).unwrap();
    assert_eq!(json["state"], "pending");
    assert_eq!(json["class"], "destructive");

    let v = gate.approve(&id, &bob(), Some("ticket 42")).unwrap();
    assert!(v.is_approved());
    match waiter.await.unwrap() {
        Verdict::Approved {
            review_id,
            by,
            reason,
            until,
        } => {
            assert_eq!(review_id, id);
            assert_eq!(by, "bob");
            assert_eq!(reason.as_deref(), Some("ticket 42"));
            assert!(until.unwrap() > std::time::SystemTime::now());
        }
        other => panic!("expected approval, got {other:?}"),
    }
    let info = gate.get(&id).unwrap();
    assert_eq!(info.state, ReviewState::Approved);
    assert_eq!(info.decided_by.as_deref(), Some("bob"));
    assert!(gate.list_pending().is_empty());
    // Decided once: a second decision is refused.
    assert!(matches!(
        gate.approve(&id, &bob(), None),
        Err(ApprovalError::AlreadyDecided {
            state: ReviewState::Approved,
            ..
        })
    ));
    assert!(matches!(
        gate.reject(&id, &bob(), "no"),
        Err(ApprovalError::AlreadyDecided { .. })
    ));
}

#[tokio::test]
async fn reject_gives_the_reason() {
    let gate = InMemoryGate::default();
    let p = pending(&gate, request(alice(), "pg", "drop table t")).await;
    let id = p.id.clone();
    gate.reject(&id, &bob(), "not during business hours")
        .unwrap();
    match p.wait(Duration::from_secs(30)).await {
        Verdict::Rejected {
            review_id,
            by,
            reason,
        } => {
            assert_eq!(review_id, id);
            assert_eq!(by, "bob");
            assert_eq!(reason, "not during business hours");
        }
        other => panic!("expected rejection, got {other:?}"),
    }
    assert_eq!(gate.get(&id).unwrap().state, ReviewState::Rejected);
    // No grant: the same command is held again.
    assert!(matches!(
        gate.submit(request(alice(), "pg", "drop table t")).await,
        Submission::Pending(_)
    ));
}

#[tokio::test]
async fn hold_times_out_and_review_expires() {
    let gate = InMemoryGate::default();
    let v = gate
        .review(
            request(alice(), "pg", "drop table t"),
            Duration::from_millis(100),
        )
        .await;
    let Verdict::Expired { review_id } = v else {
        panic!("expected expiry, got {v:?}");
    };
    assert_eq!(gate.get(&review_id).unwrap().state, ReviewState::Expired);
    assert!(gate.list_pending().is_empty());
    let kinds: Vec<_> = gate.history().iter().map(|t| t.kind).collect();
    assert_eq!(kinds, [TransitionKind::Requested, TransitionKind::Expired]);
}

#[tokio::test]
async fn expired_review_stays_approvable_for_a_retry() {
    let gate = InMemoryGate::new(GateConfig {
        expired_approvable_for: Duration::from_secs(60),
        ..GateConfig::default()
    });
    let v = gate
        .review(
            request(alice(), "pg", "drop table t"),
            Duration::from_millis(50),
        )
        .await;
    let id = v.review_id().to_owned();
    assert!(matches!(v, Verdict::Expired { .. }));
    // The reviewer comes late; the grant still lets the retried command through.
    gate.approve(&id, &bob(), None).unwrap();
    match gate.submit(request(alice(), "pg", "drop table t")).await {
        Submission::Decided(Verdict::Approved { review_id, by, .. }) => {
            assert_eq!(review_id, id);
            assert_eq!(by, "bob");
        }
        other => panic!("expected the grant to apply, got {other:?}"),
    }

    // Beyond the window, an expired review cannot be approved.
    let gate = InMemoryGate::new(GateConfig {
        expired_approvable_for: Duration::from_millis(50),
        ..GateConfig::default()
    });
    let v = gate
        .review(
            request(alice(), "pg", "drop table t"),
            Duration::from_millis(10),
        )
        .await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(matches!(
        gate.approve(v.review_id(), &bob(), None),
        Err(ApprovalError::AlreadyDecided {
            state: ReviewState::Expired,
            ..
        })
    ));
}

#[tokio::test]
async fn grant_is_reused_only_for_the_same_requester_resource_and_action() {
    let gate = InMemoryGate::default();
    let p = pending(&gate, request(alice(), "pg", "drop table t")).await;
    gate.approve(&p.id, &bob(), None).unwrap();
    assert!(p.wait(Duration::from_secs(5)).await.is_approved());

    // Same requester, resource and action (whitespace-trimmed): approved at once.
    match gate.submit(request(alice(), "pg", "  drop table t ")).await {
        Submission::Decided(Verdict::Approved {
            review_id,
            by,
            until,
            ..
        }) => {
            assert!(review_id.starts_with("r-"));
            assert_eq!(by, "bob");
            assert!(until.is_some());
        }
        other => panic!("expected the grant to apply, got {other:?}"),
    }
    // Anything else needs its own review.
    let carol = Identity::new("carol", AuthMethod::Oidc);
    for req in [
        request(alice(), "pg", "drop table u"),
        request(carol, "pg", "drop table t"),
        request(alice(), "pg-other", "drop table t"),
    ] {
        assert!(
            matches!(gate.submit(req).await, Submission::Pending(_)),
            "a grant must not cover another action, requester or resource"
        );
    }
    assert!(
        gate.history()
            .iter()
            .any(|t| t.kind == TransitionKind::Granted && t.actor.as_deref() == Some("bob"))
    );
}

#[tokio::test]
async fn grant_expires() {
    // Long enough that the submit right after the approval finds the grant even on a
    // busy machine; the sleep below outlasts it whatever the load.
    let gate = InMemoryGate::new(GateConfig {
        grant_duration: Duration::from_secs(2),
        ..GateConfig::default()
    });
    let p = pending(&gate, request(alice(), "pg", "drop table t")).await;
    gate.approve(&p.id, &bob(), None).unwrap();
    assert!(matches!(
        gate.submit(request(alice(), "pg", "drop table t")).await,
        Submission::Decided(Verdict::Approved { .. })
    ));
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(
        matches!(
            gate.submit(request(alice(), "pg", "drop table t")).await,
            Submission::Pending(_)
        ),
        "an expired grant must not apply"
    );
}

#[tokio::test]
async fn requester_never_decides_their_own_review() {
    let gate = InMemoryGate::default();
    let p = pending(&gate, request(alice(), "pg", "drop table t")).await;
    // Same subject, even proven another way and with other groups.
    let alice_cert = Identity::new("alice", AuthMethod::ClientCertificate).with_groups(["dba"]);
    assert_eq!(
        gate.approve(&p.id, &alice(), None),
        Err(ApprovalError::SelfApproval)
    );
    assert_eq!(
        gate.approve(&p.id, &alice_cert, None),
        Err(ApprovalError::SelfApproval)
    );
    assert_eq!(
        gate.reject(&p.id, &alice(), "oops"),
        Err(ApprovalError::SelfApproval)
    );
    assert_eq!(gate.get(&p.id).unwrap().state, ReviewState::Pending);
    assert!(matches!(
        gate.approve("r-doesnotexist", &bob(), None),
        Err(ApprovalError::UnknownReview(_))
    ));
    // Nothing was granted.
    assert!(
        !gate
            .history()
            .iter()
            .any(|t| t.kind == TransitionKind::Approved)
    );
}

#[tokio::test]
async fn only_configured_reviewer_groups_decide() {
    let gate = InMemoryGate::new(GateConfig {
        reviewer_groups: vec!["dba".into()],
        ..GateConfig::default()
    });
    let p = pending(&gate, request(alice(), "pg", "drop table t")).await;
    let carol = Identity::new("carol", AuthMethod::Oidc).with_groups(["dev"]);
    assert_eq!(
        gate.approve(&p.id, &carol, None),
        Err(ApprovalError::NotReviewer)
    );
    assert!(gate.approve(&p.id, &bob(), None).is_ok());
}

#[tokio::test]
async fn too_many_pending_reviews_fail_closed() {
    let gate = InMemoryGate::new(GateConfig {
        max_pending: 2,
        ..GateConfig::default()
    });
    let _a = pending(&gate, request(alice(), "pg", "drop table a")).await;
    let b = pending(&gate, request(alice(), "pg", "drop table b")).await;
    match gate.submit(request(alice(), "pg", "drop table c")).await {
        Submission::Decided(Verdict::Rejected { reason, by, .. }) => {
            assert_eq!(reason, "too many pending reviews");
            assert_eq!(by, "gateway");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    // A decision frees a slot.
    gate.reject(&b.id, &bob(), "no").unwrap();
    assert!(matches!(
        gate.submit(request(alice(), "pg", "drop table c")).await,
        Submission::Pending(_)
    ));
}

#[tokio::test]
async fn history_and_sink_have_every_transition() {
    let seen: Arc<Mutex<Vec<Transition>>> = Arc::default();
    let s = seen.clone();
    let gate = InMemoryGate::builder(GateConfig::default())
        .sink(move |t| s.lock().unwrap().push(t.clone()))
        .build();
    // requested + approved
    let p = pending(&gate, request(alice(), "pg", "drop table t")).await;
    gate.approve(&p.id, &bob(), Some("ok")).unwrap();
    // granted
    assert!(matches!(
        gate.submit(request(alice(), "pg", "drop table t")).await,
        Submission::Decided(_)
    ));
    // requested + rejected
    let r = pending(&gate, request(alice(), "pg", "drop table u")).await;
    gate.reject(&r.id, &bob(), "no").unwrap();
    // requested + expired
    let e = pending(&gate, request(alice(), "pg", "drop table v")).await;
    assert!(matches!(
        e.wait(Duration::from_millis(20)).await,
        Verdict::Expired { .. }
    ));

    let history = gate.history();
    let kinds: Vec<&str> = history.iter().map(|t| t.kind.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "requested",
            "approved",
            "granted",
            "requested",
            "rejected",
            "requested",
            "expired"
        ]
    );
    assert_eq!(history[1].actor.as_deref(), Some("bob"));
    assert_eq!(history[1].reason.as_deref(), Some("ok"));
    assert_eq!(history[2].review_id, p.id);
    assert_eq!(history[4].reason.as_deref(), Some("no"));
    assert!(history.iter().all(|t| t.requester == "alice"));
    assert_eq!(
        *seen.lock().unwrap(),
        history,
        "the sink saw the same trail"
    );
    let json = serde_json::to_value(&history[1]).unwrap();
    assert_eq!(json["kind"], "approved");
}

// ---------------------------------------------------------------------------------------
// Webhook

struct Hook {
    port: u16,
    bodies: tokio::sync::mpsc::Receiver<(String, serde_json::Value)>,
    hits: Arc<AtomicUsize>,
}

/// A real HTTPS server on 127.0.0.1 with a certificate from `ca`; answers 503 to the first
/// `fail_first` requests, then 204.
async fn https_hook(ca: &TestCa, dir: &std::path::Path, fail_first: usize) -> Hook {
    let (cert_path, key_path) = ca.server().write(dir, "hook");
    let tls = ServerTls::new(ServerTlsConfig {
        cert_path,
        key_path,
        ..ServerTlsConfig::default()
    })
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, bodies) = tokio::sync::mpsc::channel(16);
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (tls, tx, hits) = (tls.clone(), tx.clone(), h.clone());
            tokio::spawn(async move {
                let Ok(stream) = tls.accept(tcp).await else {
                    return;
                };
                let svc =
                    hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let (tx, hits) = (tx.clone(), hits.clone());
                        async move {
                            let path = req.uri().path().to_owned();
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
                            let n = hits.fetch_add(1, Ordering::SeqCst);
                            let _ = tx.send((path, json)).await;
                            let status = if n < fail_first { 503 } else { 204 };
                            Ok::<_, Infallible>(
                                http::Response::builder()
                                    .status(status)
                                    .body(Full::new(Bytes::new()))
                                    .unwrap(),
                            )
                        }
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Hook { port, bodies, hits }
}

fn client_trusting(ca: &TestCa) -> HttpsClient {
    HttpsClient::new(
        UpstreamTls::new(UpstreamTlsConfig {
            roots: UpstreamRoots::CaPem(ca.cert_pem().as_bytes().to_vec()),
            ..UpstreamTlsConfig::default()
        })
        .unwrap(),
    )
    .with_timeout(Duration::from_secs(60))
}

#[tokio::test]
async fn webhook_posts_new_reviews_over_verified_tls() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("hook test CA");
    let mut hook = https_hook(&ca, dir.path(), 1).await;
    let mut config = WebhookConfig::new(format!("https://127.0.0.1:{}/hooks/hoop", hook.port));
    config.approve_url = Some("https://gateway.test/reviews/{id}".into());
    config.retry_delay = Duration::from_millis(20);
    let notifier = Arc::new(WebhookNotifier::new(config, client_trusting(&ca)).unwrap());
    let gate = InMemoryGate::builder(GateConfig::default())
        .notifier_shared(notifier.clone())
        .build();

    let req = request(alice(), "pg-prod", "drop table t");
    let session = req.session_id;
    let p = pending(&gate, req).await;

    // The first POST gets a 503, the retry is delivered: the same body twice.
    for attempt in 0..2 {
        let (path, body) = tokio::time::timeout(Duration::from_secs(30), hook.bodies.recv())
            .await
            .expect("webhook POST")
            .unwrap();
        assert_eq!(path, "/hooks/hoop", "attempt {attempt}");
        assert_eq!(body["id"], p.id.as_str());
        assert_eq!(body["requester"], "alice");
        assert_eq!(body["resource"], "pg-prod");
        assert_eq!(body["action"], "drop table t");
        assert_eq!(body["class"], "destructive");
        assert_eq!(body["reason"], "destructive statements need a review");
        assert_eq!(body["session_id"], session.to_string());
        assert!(body["created_at"].as_str().unwrap().ends_with('Z'));
        assert_eq!(
            body["approve_url"],
            format!("https://gateway.test/reviews/{}", p.id)
        );
    }
    // The notifier counts the delivery once the 204 is back.
    wait_until("the retry is counted as sent", || notifier.sent() >= 1).await;
    assert_eq!(notifier.sent(), 1);
    assert_eq!(notifier.failed(), 0);
    assert_eq!(hook.hits.load(Ordering::SeqCst), 2);

    // A grant does not notify anybody.
    gate.approve(&p.id, &bob(), None).unwrap();
    assert!(matches!(
        gate.submit(request(alice(), "pg-prod", "drop table t"))
            .await,
        Submission::Decided(_)
    ));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(hook.bodies.try_recv().is_err());
}

#[tokio::test]
async fn webhook_refuses_an_untrusted_server() {
    let dir = tempfile::tempdir().unwrap();
    let server_ca = TestCa::new("hook server CA");
    let other_ca = TestCa::new("some other CA");
    let hook = https_hook(&server_ca, dir.path(), 0).await;
    let mut config = WebhookConfig::new(format!("https://127.0.0.1:{}/hooks/hoop", hook.port));
    config.attempts = 2;
    config.retry_delay = Duration::from_millis(10);
    let notifier = Arc::new(WebhookNotifier::new(config, client_trusting(&other_ca)).unwrap());
    let gate = InMemoryGate::builder(GateConfig::default())
        .notifier_shared(notifier.clone())
        .build();
    // Submitting never waits on the webhook.
    let _p = pending(&gate, request(alice(), "pg", "drop table t")).await;
    wait_until("the notification is given up", || notifier.failed() >= 1).await;
    assert_eq!(notifier.failed(), 1, "the notification must be given up");
    assert_eq!(notifier.sent(), 0);
    assert_eq!(
        hook.hits.load(Ordering::SeqCst),
        0,
        "no request reaches a server whose certificate is not trusted"
    );
    assert!(
        WebhookNotifier::new(
            WebhookConfig::new("http://127.0.0.1:1/x"),
            client_trusting(&other_ca)
        )
        .is_err()
    );
}
