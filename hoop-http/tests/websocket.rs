//! A WebSocket echo through the gateway (HTTP/1.1 upgrade on both sides), recorded; an
//! upgrade the policy denies never reaches the target.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::{ALICE, Gateway, HyperClient, Setup, bearer, get, upstream};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

async fn tls_client(gw: &Gateway) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    common::tls_to(gw, &[b"http/1.1"]).await
}

/// Sends `req` on a new connection and returns what the first read brings back.
async fn first_response(gw: &Gateway, req: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tls = tls_client(gw).await;
    tls.write_all(req.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tls.read(&mut buf).await.unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// Reads a response head (up to the blank line), byte by byte so nothing after it is
/// consumed.
async fn read_head(tls: &mut tokio_rustls::client::TlsStream<tokio::net::TcpStream>) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        tls.read_exact(&mut b).await.unwrap();
        head.push(b[0]);
    }
    head
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_echo_through_the_gateway() {
    let up = upstream::start(None).await;
    let gw = Gateway::start(up.addr, up.ca_path.clone(), Setup::default()).await;
    let mut req = format!("wss://localhost:{}/ws", gw.addr.port())
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("authorization", bearer(ALICE)[15..].parse().unwrap());
    let tls = tls_client(&gw).await;
    let (mut ws, resp) = tokio_tungstenite::client_async(req, tls).await.unwrap();
    assert_eq!(resp.status(), 101);
    for i in 0..20 {
        let text = format!("hello {i}");
        ws.send(Message::text(text.clone())).await.unwrap();
        let back = ws.next().await.unwrap().unwrap();
        assert_eq!(back, Message::text(text));
    }
    ws.send(Message::binary(vec![0u8, 1, 2, 255]))
        .await
        .unwrap();
    assert_eq!(
        ws.next().await.unwrap().unwrap(),
        Message::binary(vec![0u8, 1, 2, 255])
    );
    ws.close(None).await.unwrap();
    while let Some(Ok(_)) = ws.next().await {}
    drop(ws);
    let seen = up.last();
    assert_eq!(seen.uri, "/ws");
    assert_eq!(seen.headers["upgrade"], "websocket");
    assert!(seen.headers.get("sec-websocket-key").is_some());
    assert!(!format!("{:?}", seen.headers).contains(ALICE));
    let rec = gw.wait_recorded("session_end").await;
    assert!(
        rec.contains(r#""kind":"upgrade_open","detail":{"protocol":"websocket"}"#),
        "{rec}"
    );
    assert!(rec.contains(r#""kind":"upgrade_close""#), "{rec}");
    assert!(rec.contains("\"type\":\"session_end\""), "{rec}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denied_upgrade_is_not_forwarded() {
    let up = upstream::start(None).await;
    let gw = Gateway::start(up.addr, up.ca_path.clone(), Setup::default()).await;
    let mut req = format!("wss://localhost:{}/admin/ws", gw.addr.port())
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("authorization", bearer(ALICE)[15..].parse().unwrap());
    let tls = tls_client(&gw).await;
    let err = tokio_tungstenite::client_async(req, tls).await.unwrap_err();
    match err {
        tokio_tungstenite::tungstenite::Error::Http(resp) => assert_eq!(resp.status(), 403),
        other => panic!("unexpected {other:?}"),
    }
    assert!(up.seen().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_upgrade_is_refused() {
    let up = upstream::start(None).await;
    let gw = Gateway::start(up.addr, up.ca_path.clone(), Setup::default()).await;
    let req = format!(
        "GET / HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {ALICE}\r\n\
         Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n"
    );
    let out = first_response(&gw, &req).await;
    assert!(out.starts_with("HTTP/1.1 400"), "{out}");
    assert!(up.seen().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spdy_upgrade_relays_bytes_and_kube_exec_is_admin() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let up = upstream::start(None).await;
    let gw = Gateway::start(up.addr, up.ca_path.clone(), Setup::default()).await;
    let mut tls = tls_client(&gw).await;
    let req = format!(
        "POST /spdy HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {ALICE}\r\n\
         Connection: Upgrade\r\nUpgrade: SPDY/3.1\r\nContent-Length: 0\r\n\r\n"
    );
    tls.write_all(req.as_bytes()).await.unwrap();
    let head = read_head(&mut tls).await;
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: spdy/3.1"), "{head}");
    let payload: Vec<u8> = (0..=255u8).cycle().take(100_000).collect();
    let (mut r, mut w) = tokio::io::split(tls);
    let writer = tokio::spawn(async move {
        w.write_all(&payload).await.unwrap();
        w
    });
    let mut back = vec![0u8; 100_000];
    r.read_exact(&mut back).await.unwrap();
    assert!(back.iter().zip((0..=255u8).cycle()).all(|(a, b)| *a == b));
    drop(writer.await.unwrap());
    drop(r);
    let rec = gw.wait_recorded("upgrade_close").await;
    assert!(rec.contains(r#""protocol":"SPDY/3.1""#), "{rec}");

    // On a Kubernetes resource, exec is class admin: refused before any upgrade.
    let gw = Gateway::start(
        up.addr,
        up.ca_path.clone(),
        Setup {
            protocol: "kubernetes",
            ..Setup::default()
        },
    )
    .await;
    let req = format!(
        "POST /api/v1/namespaces/prod/pods/x/exec?command=sh HTTP/1.1\r\nHost: localhost\r\n\
         Authorization: Bearer {ALICE}\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n\
         Content-Length: 0\r\n\r\n"
    );
    let out = first_response(&gw, &req).await;
    assert!(out.starts_with("HTTP/1.1 403"), "{out}");
    assert!(up.seen().iter().all(|s| !s.uri.contains("exec")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_session_ends_an_upgraded_connection() {
    let up = upstream::start(None).await;
    let gw = Gateway::start(up.addr, up.ca_path.clone(), Setup::default()).await;
    let mut req = format!("wss://localhost:{}/ws", gw.addr.port())
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("authorization", bearer(ALICE)[15..].parse().unwrap());
    let tls = tls_client(&gw).await;
    let (mut ws, _) = tokio_tungstenite::client_async(req, tls).await.unwrap();
    ws.send(Message::text("ping")).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("ping"));
    let registry = gw.handle.as_ref().unwrap().registry();
    let live = registry.live();
    assert_eq!(live.len(), 1);
    assert_eq!(live[0].user.as_deref(), Some("alice"));
    assert!(registry.kill(live[0].id));
    // The relay stops: the stream ends (or errors) instead of echoing.
    let end = tokio::time::timeout(std::time::Duration::from_secs(60), async {
        loop {
            match ws.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert!(end.is_ok(), "the upgraded connection outlived the kill");
    let rec = gw.wait_recorded("session_end").await;
    assert!(rec.contains(r#""end":"cancelled""#), "{rec}");
}

/// The target offers `h2` and `http/1.1` and the gateway offers both too: ordinary
/// requests go over HTTP/2, the upgrade over a connection that offered only `http/1.1`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_to_a_target_offering_h2_and_http1() {
    let up = upstream::start(None).await;
    let setup = Setup {
        upstream_alpn: vec![b"h2".to_vec(), b"http/1.1".to_vec()],
        ..Setup::default()
    };
    let gw = Gateway::start(up.addr, up.ca_path.clone(), setup).await;
    let (status, _) = gw
        .curl_async(&["--http1.1", "-H", &bearer(ALICE), &gw.url("/users")])
        .await;
    assert_eq!(status, 200);
    assert_eq!(up.last().version, http::Version::HTTP_2);
    let mut req = format!("wss://localhost:{}/ws", gw.addr.port())
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("authorization", bearer(ALICE)[15..].parse().unwrap());
    let tls = tls_client(&gw).await;
    let (mut ws, resp) = tokio_tungstenite::client_async(req, tls).await.unwrap();
    assert_eq!(resp.status(), 101);
    for i in 0..5 {
        ws.send(Message::text(format!("m{i}"))).await.unwrap();
        assert_eq!(
            ws.next().await.unwrap().unwrap(),
            Message::text(format!("m{i}"))
        );
    }
    ws.close(None).await.unwrap();
    while let Some(Ok(_)) = ws.next().await {}
    let seen = up.last();
    assert_eq!(seen.uri, "/ws");
    assert_eq!(seen.version, http::Version::HTTP_11);
    // SPDY (kubectl exec / port-forward) the same way.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tls = tls_client(&gw).await;
    let req = format!(
        "POST /spdy HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {ALICE}\r\n\
         Connection: Upgrade\r\nUpgrade: SPDY/3.1\r\nContent-Length: 0\r\n\r\n"
    );
    tls.write_all(req.as_bytes()).await.unwrap();
    let head = read_head(&mut tls).await;
    assert!(head.starts_with(b"HTTP/1.1 101"), "{head:?}");
    tls.write_all(b"spdy-bytes").await.unwrap();
    let mut back = [0u8; 10];
    tls.read_exact(&mut back).await.unwrap();
    assert_eq!(&back, b"spdy-bytes");
    drop(tls);
    let rec = gw.wait_recorded(r#""protocol":"SPDY/3.1""#).await;
    assert!(
        rec.contains(r#""kind":"upgrade_open","detail":{"protocol":"websocket"}"#),
        "{rec}"
    );
}

/// A WebSocket over HTTP/2 (RFC 8441 extended CONNECT) is decided like the HTTP/1.1
/// upgrade, relayed to the target as an HTTP/1.1 upgrade and recorded; the HTTP/2
/// connection goes on serving requests beside it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_over_http2_extended_connect() {
    use hyper_util::rt::TokioIo;
    use tokio_tungstenite::tungstenite::protocol::Role;
    let up = upstream::start(None).await;
    let setup = Setup {
        upstream_alpn: vec![b"h2".to_vec(), b"http/1.1".to_vec()],
        ..Setup::default()
    };
    let gw = Gateway::start(up.addr, up.ca_path.clone(), setup).await;
    let mut client = HyperClient::connect(&gw, true).await;
    // A first request: authenticates, and the server's SETTINGS (enabling the extended
    // CONNECT) have arrived once it is answered.
    assert_eq!(client.send(&gw, get("/users", ALICE)).await.status(), 200);
    let connect = |path: &str| {
        let mut req = http::Request::connect(path)
            .header("authorization", format!("Bearer {ALICE}"))
            .header("sec-websocket-version", "13")
            .body(http_body_util::Full::default())
            .unwrap();
        req.extensions_mut()
            .insert(hyper::ext::Protocol::from_static("websocket"));
        req
    };
    // Denied by the policy like its HTTP/1.1 form: the target never sees it.
    let resp = client.send(&gw, connect("/admin/ws")).await;
    assert_eq!(resp.status(), 403);
    assert!(up.seen().iter().all(|s| !s.uri.contains("admin")));
    let resp = client.send(&gw, connect("/ws")).await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().get("sec-websocket-accept").is_none());
    let upgraded = hyper::upgrade::on(resp).await.unwrap();
    let mut ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
        TokioIo::new(upgraded),
        Role::Client,
        None,
    )
    .await;
    for i in 0..10 {
        let text = format!("over h2 {i}");
        ws.send(Message::text(text.clone())).await.unwrap();
        assert_eq!(ws.next().await.unwrap().unwrap(), Message::text(text));
    }
    // Beside the tunnel, the connection still serves requests (over the pooled HTTP/2
    // target connection).
    assert_eq!(client.send(&gw, get("/users", ALICE)).await.status(), 200);
    ws.close(None).await.unwrap();
    while let Some(Ok(_)) = ws.next().await {}
    let seen = up.seen();
    let ws_seen = seen.iter().find(|s| s.uri == "/ws").unwrap();
    assert_eq!(ws_seen.method, "GET");
    assert_eq!(ws_seen.version, http::Version::HTTP_11);
    assert_eq!(ws_seen.headers["upgrade"], "websocket");
    assert!(ws_seen.headers.get("sec-websocket-key").is_some());
    assert!(!format!("{:?}", ws_seen.headers).contains(ALICE));
    let users: Vec<_> = seen.iter().filter(|s| s.uri == "/users").collect();
    assert_eq!(users.len(), 2);
    assert!(users.iter().all(|s| s.version == http::Version::HTTP_2));
    // One pooled HTTP/2 connection plus the upgrade's own.
    assert_eq!(up.conns.load(std::sync::atomic::Ordering::SeqCst), 2);
    let rec = gw.wait_recorded("upgrade_close").await;
    assert!(
        rec.contains(r#""kind":"upgrade_open","detail":{"client":"h2","protocol":"websocket"}"#),
        "{rec}"
    );
    assert!(rec.contains(r#""text":"GET /ws""#), "{rec}");
}

/// Other CONNECT requests (tunnels past the policy) are refused without reaching the
/// target, over HTTP/1.1 and HTTP/2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_tunnels_are_refused() {
    let up = upstream::start(None).await;
    let gw = Gateway::start(up.addr, up.ca_path.clone(), Setup::default()).await;
    let req = format!(
        "CONNECT localhost:22 HTTP/1.1\r\nHost: localhost:22\r\nAuthorization: Bearer {ALICE}\r\n\r\n"
    );
    let out = first_response(&gw, &req).await;
    assert!(out.starts_with("HTTP/1.1 405"), "{out}");
    let mut client = HyperClient::connect(&gw, true).await;
    assert_eq!(client.send(&gw, get("/users", ALICE)).await.status(), 200);
    let mut req = http::Request::connect("/ws")
        .header("authorization", format!("Bearer {ALICE}"))
        .body(http_body_util::Full::default())
        .unwrap();
    req.extensions_mut()
        .insert(hyper::ext::Protocol::from_static("connect-udp"));
    assert_eq!(client.send(&gw, req).await.status(), 405);
    assert!(up.seen().iter().all(|s| s.uri == "/users"));
}
