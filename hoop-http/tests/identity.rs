//! Identities: an OIDC JWT (keys fetched from a JWKS served over HTTPS), a client
//! certificate; the user's credential is never forwarded.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::sync::Arc;

use common::{Gateway, Setup, UPSTREAM_TOKEN, bearer, upstream};
use hoop_core::auth::{OidcAuthenticator, OidcConfig};
use hoop_core::tls::{UpstreamRoots, UpstreamTls, UpstreamTlsConfig};
use hoop_testkit::TestCa;
use hoop_testkit::jwt::{SigningKey, jwks, now};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ISSUER: &str = "https://idp.test";
const AUD: &str = "hoop";

/// A tiny HTTPS server answering every request with `body` (the JWKS).
async fn serve_jwks(ca: &TestCa, body: String) -> u16 {
    let cert = ca.server();
    let config = rustls::ServerConfig::builder_with_provider(hoop_core::crypto_provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.cert()], cert.key())
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, body) = (acceptor.clone(), body.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let resp = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = tls.write_all(resp.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    port
}

fn jwt(key: &SigningKey, sub: &str, exp_in: i64) -> String {
    let now = now();
    key.sign(&json!({"iss": ISSUER, "aud": AUD, "sub": sub, "iat": now, "exp": now + exp_in, "groups": ["dev"]}))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_jwt_identity() {
    let idp_ca = TestCa::new("idp-ca");
    let signer = SigningKey::es256("k1");
    let port = serve_jwks(&idp_ca, jwks(&[&signer]).to_string()).await;
    let oidc = OidcAuthenticator::new(
        OidcConfig::new(
            ISSUER,
            AUD,
            UpstreamTls::new(UpstreamTlsConfig {
                roots: UpstreamRoots::CaPem(idp_ca.cert_pem().as_bytes().to_vec()),
                ..Default::default()
            })
            .unwrap(),
        )
        .with_jwks_url(format!("https://localhost:{port}/jwks")),
    )
    .unwrap();
    let up = upstream::start(None).await;
    let gw = Gateway::start(
        up.addr,
        up.ca_path.clone(),
        Setup {
            extra_auth: Some(Arc::new(oidc)),
            ..Setup::default()
        },
    )
    .await;
    let token = jwt(&signer, "dave@example.org", 600);
    for version in ["--http1.1", "--http2"] {
        let (status, body) = gw
            .curl_async(&[version, "-H", &bearer(&token), &gw.url("/me")])
            .await;
        assert_eq!(status, 200, "{body}");
        let seen = up.last();
        assert_eq!(
            seen.headers["authorization"],
            format!("Bearer {UPSTREAM_TOKEN}").as_str()
        );
        assert!(!format!("{:?}", seen.headers).contains(&token));
    }
    let rec = gw.wait_recorded("dave@example.org").await;
    assert!(
        rec.contains(r#""subject":"dave@example.org""#) && rec.contains(r#""method":"oidc""#),
        "{rec}"
    );
    // Expired, and signed by another key: 401, nothing forwarded.
    let n = up.seen().len();
    let expired = jwt(&signer, "dave@example.org", -3600);
    let (status, body) = gw
        .curl_async(&["-H", &bearer(&expired), &gw.url("/me")])
        .await;
    assert_eq!(status, 401, "{body}");
    let forged = jwt(&SigningKey::es256("k1"), "dave@example.org", 600);
    let (status, _) = gw
        .curl_async(&["-H", &bearer(&forged), &gw.url("/me")])
        .await;
    assert_eq!(status, 401);
    assert_eq!(up.seen().len(), n);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificate_identity() {
    let up = upstream::start(None).await;
    let client_ca = TestCa::new("client-ca");
    let client_ca_path = client_ca.write_cert(up.dir.path(), "client-ca.crt");
    let (cert, key) = client_ca.client("erin").write(up.dir.path(), "erin");
    let gw = Gateway::start(
        up.addr,
        up.ca_path.clone(),
        Setup {
            client_ca: Some(client_ca_path),
            ..Setup::default()
        },
    )
    .await;
    let (cert, key) = (cert.display().to_string(), key.display().to_string());
    for version in ["--http1.1", "--http2"] {
        let (status, body) = gw
            .curl_async(&[
                version,
                "--cert",
                &cert,
                "--key",
                &key,
                // A bearer header next to a certificate is ignored and never forwarded.
                "-H",
                "Authorization: Bearer not-a-real-token",
                &gw.url("/cert"),
            ])
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            up.last().headers["authorization"],
            format!("Bearer {UPSTREAM_TOKEN}").as_str()
        );
    }
    let rec = gw.wait_recorded(r#""subject":"erin""#).await;
    assert!(rec.contains(r#""method":"client_certificate""#), "{rec}");
}
