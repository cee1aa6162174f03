//! A WebSocket echo through the gateway (HTTP/1.1 upgrade on both sides), recorded; an
//! upgrade the policy denies never reaches the target.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::sync::Arc;

use common::{ALICE, Gateway, Setup, bearer, upstream};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

async fn tls_client(gw: &Gateway) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(gw.gw_ca.cert_der()).unwrap();
    let mut config = rustls::ClientConfig::builder_with_provider(hoop_core::crypto_provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .unwrap()
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
    let mut tls = tls_client(&gw).await;
    let req = format!(
        "GET / HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {ALICE}\r\n\
         Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n"
    );
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    tls.write_all(req.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tls.read(&mut buf).await.unwrap();
    let out = String::from_utf8_lossy(&buf[..n]);
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
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        tls.read_exact(&mut b).await.unwrap();
        head.push(b[0]);
    }
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
    let mut tls = tls_client(&gw).await;
    let req = format!(
        "POST /api/v1/namespaces/prod/pods/x/exec?command=sh HTTP/1.1\r\nHost: localhost\r\n\
         Authorization: Bearer {ALICE}\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n\
         Content-Length: 0\r\n\r\n"
    );
    tls.write_all(req.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tls.read(&mut buf).await.unwrap();
    let out = String::from_utf8_lossy(&buf[..n]);
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
    let end = tokio::time::timeout(std::time::Duration::from_secs(20), async {
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
