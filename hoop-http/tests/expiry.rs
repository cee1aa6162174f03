//! With `Services::end_at_credential_expiry`, an HTTP connection (and a WebSocket upgraded
//! on it) ends when the token that carries it expires; a newer token of the same user on
//! the same connection carries it on.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use common::{ALICE, Gateway, HyperClient, Setup, get, tls_to, upstream};
use futures_util::{SinkExt, StreamExt};
use hoop_core::auth::{StaticToken, StaticTokenAuthenticator, hash_token};
use hoop_core::{AuthError, Authenticator, Credential, Identity};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// Tokens minted while the gateway runs (unknown ones go on down the chain).
#[derive(Clone, Default)]
struct Late(Arc<Mutex<Vec<StaticToken>>>);

impl Late {
    /// A new token for alice (group `dev`, as `ALICE`) expiring `window` from now.
    fn mint(&self, name: &str, window: Duration) -> (String, SystemTime) {
        let token = format!("{name}-0123456789abcdef");
        let at = SystemTime::now() + window;
        self.0.lock().unwrap().push(
            StaticToken::new("alice", &hash_token(&token))
                .unwrap()
                .with_groups(["dev"])
                .with_expiry(at),
        );
        (token, at)
    }
}

#[async_trait]
impl Authenticator for Late {
    async fn authenticate(&self, c: &Credential<'_>) -> Result<Identity, AuthError> {
        let tokens = StaticTokenAuthenticator::new(self.0.lock().unwrap().clone()).unwrap();
        match tokens.authenticate(c).await {
            Err(AuthError::Invalid(_)) => Err(AuthError::NotApplicable),
            r => r,
        }
    }
}

async fn gateway(late: &Late) -> (upstream::Upstream, Gateway) {
    let up = upstream::start(None).await;
    let gw = Gateway::start(
        up.addr,
        up.ca_path.clone(),
        Setup {
            extra_auth: Some(Arc::new(late.clone())),
            end_at_credential_expiry: true,
            ..Setup::default()
        },
    )
    .await;
    (up, gw)
}

/// A keep-alive HTTP/1.1 connection whose first request used a token that expires soon:
/// returns it once that request succeeded with at least a second left.
async fn connection_with_expiring_token(
    gw: &Gateway,
    late: &Late,
    name: &str,
) -> (
    hyper::client::conn::http1::SendRequest<http_body_util::Full<bytes::Bytes>>,
    SystemTime,
) {
    for attempt in 0..4u32 {
        let (token, at) = late.mint(
            &format!("{name}-{attempt}"),
            Duration::from_secs(3) * 2u32.pow(attempt),
        );
        let HyperClient::H1(mut s) = HyperClient::connect(gw, false).await else {
            unreachable!()
        };
        let mut req = get("/users", &token);
        req.headers_mut()
            .insert("host", "localhost".parse().unwrap());
        let resp = s.send_request(req).await.unwrap();
        if resp.status() == 200 && SystemTime::now() + Duration::from_secs(1) < at {
            return (s, at);
        }
    }
    panic!("no request got through before the token expired");
}

fn get_h1(token: &str) -> http::Request<http_body_util::Full<bytes::Bytes>> {
    let mut req = get("/users", token);
    req.headers_mut()
        .insert("host", "localhost".parse().unwrap());
    req
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_ends_when_its_token_expires() {
    let late = Late::default();
    let (_up, gw) = gateway(&late).await;
    let (mut s, at) = connection_with_expiring_token(&gw, &late, "short").await;
    while SystemTime::now() < at + Duration::from_millis(500) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The gateway closed the connection at the expiry: nothing more goes over it.
    let mut closed = false;
    for _ in 0..200 {
        if s.is_closed() {
            closed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(closed, "the connection outlived its token");
    let sent = tokio::time::timeout(Duration::from_secs(30), async {
        match s.ready().await {
            Ok(()) => s.send_request(get_h1(ALICE)).await.map(|r| r.status()),
            Err(e) => Err(e),
        }
    })
    .await
    .expect("no answer");
    assert!(sent.is_err(), "{sent:?}");
    let rec = gw.wait_recorded("credential expired: cancelled").await;
    assert!(
        rec.contains(r#""reason":"credential expired: cancelled""#),
        "{rec}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newer_token_on_the_same_connection_carries_it_on() {
    let late = Late::default();
    let (_up, gw) = gateway(&late).await;
    let (mut s, at) = connection_with_expiring_token(&gw, &late, "renewed").await;
    // Before the first token expires, a request with alice's token without an expiry.
    s.ready().await.unwrap();
    let resp = s.send_request(get_h1(ALICE)).await.unwrap();
    assert_eq!(resp.status(), 200);
    while SystemTime::now() < at + Duration::from_millis(800) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!s.is_closed(), "ended at the first token's expiry");
    s.ready().await.unwrap();
    let resp = s.send_request(get_h1(ALICE)).await.unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_ends_when_its_token_expires() {
    let late = Late::default();
    let (_up, gw) = gateway(&late).await;
    let mut opened = None;
    for attempt in 0..4u32 {
        let (token, at) = late.mint(
            &format!("ws-{attempt}"),
            Duration::from_secs(3) * 2u32.pow(attempt),
        );
        let mut req = format!("wss://localhost:{}/ws", gw.addr.port())
            .into_client_request()
            .unwrap();
        req.headers_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
        let tls = tls_to(&gw, &[b"http/1.1"]).await;
        if let Ok((mut ws, _)) = tokio_tungstenite::client_async(req, tls).await {
            ws.send(Message::text("ping")).await.unwrap();
            let back = ws.next().await.unwrap().unwrap();
            if back == Message::text("ping") && SystemTime::now() + Duration::from_secs(1) < at {
                opened = Some(ws);
                break;
            }
        }
    }
    let mut ws = opened.expect("no WebSocket opened before its token expired");
    let end = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            match ws.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert!(end.is_ok(), "the WebSocket outlived its token");
    let rec = gw.wait_recorded(r#""reason":"credential expired"#).await;
    assert!(rec.contains(r#""reason":"credential expired: "#), "{rec}");
}
