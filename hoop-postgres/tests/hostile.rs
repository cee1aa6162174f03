//! Hostile and malformed input: each bad connection gets a protocol error and is closed,
//! and the gateway goes on serving everyone else.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{BOB, Gateway, Setup, connect};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

fn client_config(gw: &Gateway, alpn: Option<&[u8]>) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(&gw.ca_path).unwrap();
    for c in CertificateDer::pem_slice_iter(&pem) {
        roots.add(c.unwrap()).unwrap();
    }
    let mut c = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    if let Some(a) = alpn {
        c.alpn_protocols = vec![a.to_vec()];
    }
    c
}

fn startup(user: &str, db: &str) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&196608i32.to_be_bytes());
    for (k, v) in [("user", user), ("database", db)] {
        body.extend_from_slice(k.as_bytes());
        body.push(0);
        body.extend_from_slice(v.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut out = ((body.len() + 4) as i32).to_be_bytes().to_vec();
    out.extend_from_slice(&body);
    out
}

fn message(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    out.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// Reads messages until one with `tag` (returning its body) or the end of the stream.
async fn read_until<S: AsyncRead + Unpin>(s: &mut S, tag: u8) -> Option<Vec<u8>> {
    loop {
        let mut head = [0u8; 5];
        s.read_exact(&mut head).await.ok()?;
        let len = i32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
        let mut body = vec![0u8; len - 4];
        s.read_exact(&mut body).await.ok()?;
        if head[0] == tag {
            return Some(body);
        }
    }
}

/// SSLRequest + TLS + startup + token: a logged-in raw session.
async fn logged_in(gw: &Gateway) -> tokio_rustls::client::TlsStream<TcpStream> {
    let mut tcp = TcpStream::connect(gw.addr).await.unwrap();
    tcp.write_all(&[0, 0, 0, 8, 4, 210, 22, 47]).await.unwrap();
    let mut s = [0u8; 1];
    tcp.read_exact(&mut s).await.unwrap();
    assert_eq!(&s, b"S");
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client_config(gw, None)));
    let mut tls = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    tls.write_all(&startup("x", "appdb")).await.unwrap();
    read_until(&mut tls, b'R').await.unwrap();
    let mut pw = BOB.as_bytes().to_vec();
    pw.push(0);
    tls.write_all(&message(b'p', &pw)).await.unwrap();
    read_until(&mut tls, b'Z').await.expect("ready for query");
    tls
}

fn error_code(body: &[u8]) -> String {
    let mut i = 0;
    while i < body.len() && body[i] != 0 {
        let code = body[i];
        let end = i + 1 + body[i + 1..].iter().position(|&b| b == 0).unwrap();
        if code == b'C' {
            return String::from_utf8_lossy(&body[i + 1..end]).into_owned();
        }
        i = end + 1;
    }
    String::new()
}

async fn expect_fatal_then_close<S: AsyncRead + AsyncWrite + Unpin>(s: &mut S, code: &str) {
    let body = tokio::time::timeout(Duration::from_secs(60), read_until(s, b'E'))
        .await
        .expect("an answer, not a hang")
        .expect("an ErrorResponse");
    assert_eq!(error_code(&body), code);
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(60), s.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "connection closed after the error");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_frames_get_an_error_and_others_go_on() {
    let gw = Gateway::start(Setup::default()).await;
    let healthy = connect(&gw, BOB).await;
    for bad in [
        vec![b'Q', 0, 0, 0, 0],                 // length 0
        vec![b'Q', 0xff, 0xff, 0xff, 0xf0],     // negative length
        vec![b'Q', 0x7f, 0xff, 0xff, 0xff],     // 2 GB
        message(b'Q', b"select 1"),             // no terminator
        message(b'P', b"\0select 1\0\xff\xff"), // negative parameter count
        message(b'B', b"\0\0\0\x05"),           // truncated Bind
        message(b'z', b""),                     // unknown message type
    ] {
        let mut s = logged_in(&gw).await;
        s.write_all(&bad).await.unwrap();
        expect_fatal_then_close(&mut s, "08P01").await;
        assert_serves(&healthy, format!("after {bad:?}")).await;
    }
    // A truncated message followed by a close: the session just ends.
    let mut s = logged_in(&gw).await;
    s.write_all(&[b'Q', 0, 0, 0, 20, b's']).await.unwrap();
    s.shutdown().await.unwrap();
    assert_serves(&healthy, "after a truncated message and a close").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_startup_packets_are_refused() {
    let gw = Gateway::start(Setup::default()).await;
    for bad in [
        vec![0u8, 0, 0, 4],                    // too short
        vec![0x7f, 0, 0, 0],                   // far too long
        vec![0, 0, 0, 8, 0, 0x12, 0x34, 0x56], // unknown code
        {
            // SSLRequest with bytes stuffed after it (CVE-2021-23214).
            let mut v = vec![0, 0, 0, 8, 4, 210, 22, 47];
            v.extend_from_slice(&startup("x", "appdb"));
            v
        },
    ] {
        let mut tcp = TcpStream::connect(gw.addr).await.unwrap();
        tcp.write_all(&bad).await.unwrap();
        expect_fatal_then_close(&mut tcp, "08P01").await;
    }
    // The gateway still serves.
    let c = connect(&gw, BOB).await;
    let one: i32 = c.query_one("select 1::int", &[]).await.unwrap().get(0);
    assert_eq!(one, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_tls_needs_alpn_postgresql() {
    let gw = Gateway::start(Setup::default()).await;
    // libpq 17 `sslnegotiation=direct`: TLS first, ALPN "postgresql".
    let connector =
        tokio_rustls::TlsConnector::from(Arc::new(client_config(&gw, Some(b"postgresql"))));
    let tcp = TcpStream::connect(gw.addr).await.unwrap();
    let mut tls = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    tls.write_all(&startup("x", "appdb")).await.unwrap();
    let auth = read_until(&mut tls, b'R').await.unwrap();
    assert_eq!(
        auth,
        vec![0, 0, 0, 3],
        "cleartext password request over TLS"
    );
    let mut pw = BOB.as_bytes().to_vec();
    pw.push(0);
    tls.write_all(&message(b'p', &pw)).await.unwrap();
    assert!(read_until(&mut tls, b'Z').await.is_some());
    // Without ALPN the listener has no way to know the protocol: refused.
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client_config(&gw, None)));
    let tcp = TcpStream::connect(gw.addr).await.unwrap();
    let refused = match connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
    {
        Err(_) => true,
        Ok(mut s) => {
            let _ = s.write_all(&startup("x", "appdb")).await;
            let mut buf = Vec::new();
            let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf)).await;
            !buf.windows(1).any(|w| w == b"R")
        }
    };
    assert!(refused);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_dying_mid_session_gives_fatal_not_hang() {
    let gw = Gateway::start(Setup::default()).await;
    let c = connect(&gw, BOB).await;
    let pid: i32 = c
        .query_one("select pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    gw.pg
        .psql("postgres", &format!("select pg_terminate_backend({pid})"));
    let err = tokio::time::timeout(Duration::from_secs(60), c.query_one("select 1::int", &[]))
        .await
        .expect("no hang")
        .unwrap_err();
    // The target's own FATAL (admin shutdown) or the gateway's reaches the client.
    assert!(err.as_db_error().is_some() || err.is_closed(), "{err:?}");
}

/// Startup with a given protocol version over SSLRequest + TLS; returns every message up
/// to ReadyForQuery as (tag, body).
async fn login_with_version(gw: &Gateway, version: i32) -> Vec<(u8, Vec<u8>)> {
    let mut tcp = TcpStream::connect(gw.addr).await.unwrap();
    tcp.write_all(&[0, 0, 0, 8, 4, 210, 22, 47]).await.unwrap();
    let mut s = [0u8; 1];
    tcp.read_exact(&mut s).await.unwrap();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client_config(gw, None)));
    let mut tls = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let mut pkt = startup("x", "appdb");
    pkt[4..8].copy_from_slice(&version.to_be_bytes());
    tls.write_all(&pkt).await.unwrap();
    let mut seen = Vec::new();
    loop {
        let mut head = [0u8; 5];
        tls.read_exact(&mut head).await.unwrap();
        let len = i32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
        let mut body = vec![0u8; len - 4];
        tls.read_exact(&mut body).await.unwrap();
        if head[0] == b'R' && body == [0, 0, 0, 3] {
            let mut pw = BOB.as_bytes().to_vec();
            pw.push(0);
            tls.write_all(&message(b'p', &pw)).await.unwrap();
        }
        let done = head[0] == b'Z';
        seen.push((head[0], body));
        if done {
            return seen;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_3_0_and_3_2_keys_and_negotiation() {
    let gw = Gateway::start(Setup::default()).await;
    let key_len = |msgs: &[(u8, Vec<u8>)]| {
        msgs.iter()
            .find(|(t, _)| *t == b'K')
            .map(|(_, b)| b.len() - 4)
            .unwrap()
    };
    let v30 = login_with_version(&gw, 196608).await;
    assert_eq!(key_len(&v30), 4);
    assert!(!v30.iter().any(|(t, _)| *t == b'v'));
    let v32 = login_with_version(&gw, 196610).await;
    assert_eq!(key_len(&v32), 32, "3.2 clients get a long cancel key");
    assert!(!v32.iter().any(|(t, _)| *t == b'v'));
    // A newer minor version is negotiated down to 3.2.
    let v33 = login_with_version(&gw, 196611).await;
    let (_, nego) = v33
        .iter()
        .find(|(t, _)| *t == b'v')
        .expect("NegotiateProtocolVersion");
    assert_eq!(&nego[..4], &2i32.to_be_bytes());
    assert_eq!(key_len(&v33), 32);
}

/// A Bind body: names, no parameter formats, `params` as (length field, bytes), no
/// result formats, then `tail`.
fn bind_body(portal: &[u8], params: &[(i32, Vec<u8>)], tail: &[u8]) -> Vec<u8> {
    let mut b = portal.to_vec();
    b.extend_from_slice(b"\0\0\0\0");
    b.extend_from_slice(&(params.len() as i16).to_be_bytes());
    for (len, v) in params {
        b.extend_from_slice(&len.to_be_bytes());
        b.extend_from_slice(v);
    }
    b.extend_from_slice(&0i16.to_be_bytes());
    b.extend_from_slice(tail);
    b
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_streamed_binds_get_an_error_and_others_go_on() {
    let gw = Gateway::start(Setup::default()).await;
    let healthy = connect(&gw, BOB).await;
    // Each over the streaming threshold (1 MiB), so parsed piece by piece; the fault is
    // at the end, once the client has sent everything.
    let big = vec![b'v'; 1_100_000];
    let ok = (big.len() as i32, big.clone());
    for (what, bad) in [
        (
            "negative value length",
            bind_body(b"", &[ok.clone(), (-5, Vec::new())], b""),
        ),
        (
            "value longer than the message",
            bind_body(b"", &[ok.clone(), (0x7fff_0000, b"abc".to_vec())], b""),
        ),
        (
            "trailing bytes",
            bind_body(b"", std::slice::from_ref(&ok), b"xyz"),
        ),
    ] {
        let mut s = logged_in(&gw).await;
        s.write_all(&message(b'B', &bad)).await.unwrap();
        expect_fatal_then_close(&mut s, "08P01").await;
        assert_serves(&healthy, format!("after a Bind with {what}")).await;
    }
    // A name without its terminator is refused at 64 KiB, long before the message ends:
    // the connection ends (the error may be lost to a reset: the client is still
    // sending), nothing hangs, the others go on.
    let s = logged_in(&gw).await;
    let (mut r, mut w) = tokio::io::split(s);
    let writer = tokio::spawn(async move {
        let _ = w.write_all(&message(b'B', &vec![b'n'; 1_100_000])).await;
    });
    let mut rest = Vec::new();
    let ended = tokio::time::timeout(Duration::from_secs(60), r.read_to_end(&mut rest)).await;
    assert!(ended.is_ok(), "the connection ends");
    writer.await.unwrap();
    assert_serves(&healthy, "after an unterminated 1 MB name").await;
    // A long message cut short by a close: the session just ends.
    let mut s = logged_in(&gw).await;
    let mut head = vec![b'd'];
    head.extend_from_slice(&(2_000_000i32).to_be_bytes());
    head.extend_from_slice(&[b'x'; 100]);
    s.write_all(&head).await.unwrap();
    s.shutdown().await.unwrap();
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(60), s.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "the session ends");
    assert_serves(&healthy, "after a cut-short message").await;
}

/// The healthy session still answers: one hostile session never takes others down.
async fn assert_serves(healthy: &tokio_postgres::Client, after: impl std::fmt::Display) {
    let one: i32 = healthy
        .query_one("select 1::int", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(one, 1, "other sessions go on: {after}");
}
