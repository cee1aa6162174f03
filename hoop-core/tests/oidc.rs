//! OIDC JWT verification against a real HTTPS JWKS server on loopback.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hoop_core::auth::{
    AuthenticatorChain, JwksOptions, JwsAlgorithm, OidcAuthenticator, OidcConfig, StaticToken,
    StaticTokenAuthenticator, generate_token,
};
use hoop_core::tls::{UpstreamRoots, UpstreamTls, UpstreamTlsConfig};
use hoop_core::{AuthError, AuthMethod, Authenticator, Credential};
use hoop_testkit::jwt::{SigningKey, jwks, now};
use hoop_testkit::{TestCa, TestCert};
use jsonwebtoken::{EncodingKey, Header};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const AUD: &str = "hoop";

// ---------------------------------------------------------------- a tiny HTTPS IdP

#[derive(Default)]
struct IdpState {
    jwks: String,
    discovery: Option<String>,
    /// Status for every response (200 unless a test breaks the IdP).
    status: u16,
}

struct Idp {
    port: u16,
    state: Arc<Mutex<IdpState>>,
    hits: Arc<AtomicUsize>,
}

impl Idp {
    fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.port)
    }
    fn set_jwks(&self, jwks: &Value) {
        self.state.lock().unwrap().jwks = jwks.to_string();
    }
    fn set_raw_jwks(&self, body: &str) {
        self.state.lock().unwrap().jwks = body.to_owned();
    }
    fn set_status(&self, status: u16) {
        self.state.lock().unwrap().status = status;
    }
    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

async fn start_idp(cert: &TestCert, jwks: &Value) -> Idp {
    let config = rustls::ServerConfig::builder_with_provider(hoop_core::crypto_provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.cert()], cert.key())
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let state = Arc::new(Mutex::new(IdpState {
        jwks: jwks.to_string(),
        discovery: None,
        status: 200,
    }));
    let hits = Arc::new(AtomicUsize::new(0));
    let (st, h) = (state.clone(), hits.clone());
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, st, h) = (acceptor.clone(), st.clone(), h.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 16384 {
                    match tls.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                h.fetch_add(1, Ordering::SeqCst);
                let head = String::from_utf8_lossy(&buf);
                let path = head.split_whitespace().nth(1).unwrap_or("/").to_owned();
                let (status, body) = {
                    let s = st.lock().unwrap();
                    match path.as_str() {
                        "/jwks" => (s.status, s.jwks.clone()),
                        "/.well-known/openid-configuration" => match &s.discovery {
                            Some(d) => (s.status, d.clone()),
                            None => (404, String::new()),
                        },
                        _ => (404, String::new()),
                    }
                };
                let resp = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = tls.write_all(resp.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    Idp { port, state, hits }
}

// ---------------------------------------------------------------- keys

fn b64(b: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(b)
}

fn claims(iss: &str) -> Value {
    json!({
        "iss": iss,
        "aud": AUD,
        "sub": "user-123",
        "email": "alice@example.com",
        "groups": ["dba", "dev"],
        "realm_access": {"roles": ["ops"]},
        "iat": now(),
        "exp": now() + 600,
    })
}

// ---------------------------------------------------------------- set-up

struct Fixture {
    ca: TestCa,
    idp: Idp,
    es: SigningKey,
    rs: SigningKey,
    ed: SigningKey,
}

const ISS: &str = "https://idp.example.test/realms/ops";

async fn fixture() -> Fixture {
    let ca = TestCa::new("idp test CA");
    let es = SigningKey::es256("es-1");
    let rs = SigningKey::rs256("rs-1");
    let ed = SigningKey::eddsa("ed-1");
    let idp = start_idp(&ca.server(), &jwks(&[&es, &rs, &ed])).await;
    Fixture {
        ca,
        idp,
        es,
        rs,
        ed,
    }
}

fn trusting(ca: &TestCa) -> UpstreamTls {
    UpstreamTls::new(UpstreamTlsConfig {
        roots: UpstreamRoots::CaPem(ca.cert_pem().as_bytes().to_vec()),
        ..Default::default()
    })
    .unwrap()
}

fn config(f: &Fixture) -> OidcConfig {
    OidcConfig::new(ISS, AUD, trusting(&f.ca)).with_jwks_url(f.idp.url("/jwks"))
}

fn auth(f: &Fixture) -> OidcAuthenticator {
    OidcAuthenticator::new(config(f)).unwrap()
}

async fn check(a: &OidcAuthenticator, token: &str) -> Result<hoop_core::Identity, AuthError> {
    a.authenticate(&Credential::Bearer(token)).await
}

// ---------------------------------------------------------------- tests

#[tokio::test]
async fn good_es256_token_gives_identity() {
    let f = fixture().await;
    let a = auth(&f);
    let c = claims(ISS);
    let id = check(&a, &f.es.sign(&c)).await.unwrap();
    assert_eq!(id.subject, "user-123");
    assert_eq!(id.groups, vec!["dba", "dev"]);
    assert_eq!(id.method, AuthMethod::Oidc);
    assert_eq!(id.issuer.as_deref(), Some(ISS));
    let exp = UNIX_EPOCH + Duration::from_secs(c["exp"].as_u64().unwrap());
    assert_eq!(id.expires_at, Some(exp));
    assert_eq!(f.idp.hits(), 1);
    assert_eq!(a.jwks().key_count(), 3);
}

#[tokio::test]
async fn good_rs256_and_eddsa_tokens() {
    let f = fixture().await;
    let a = auth(&f);
    for key in [&f.rs, &f.ed] {
        let id = check(&a, &key.sign(&claims(ISS))).await.unwrap();
        assert_eq!(id.subject, "user-123", "{:?}", key.alg);
    }
    // The key set was fetched once for both.
    assert_eq!(f.idp.hits(), 1);
}

#[tokio::test]
async fn configurable_subject_and_nested_groups_claims() {
    let f = fixture().await;
    let a = OidcAuthenticator::new(
        config(&f)
            .with_subject_claim("email")
            .with_groups_claim("realm_access.roles"),
    )
    .unwrap();
    let id = check(&a, &f.es.sign(&claims(ISS))).await.unwrap();
    assert_eq!(id.subject, "alice@example.com");
    assert_eq!(id.groups, vec!["ops"]);

    // A single string is one group; a missing subject claim is refused.
    let a = OidcAuthenticator::new(config(&f).with_subject_claim("preferred_username")).unwrap();
    let mut c = claims(ISS);
    c["groups"] = json!("solo");
    assert!(matches!(
        check(&a, &f.es.sign(&c)).await,
        Err(AuthError::Invalid(_))
    ));
    c["preferred_username"] = json!("alice");
    let id = check(&a, &f.es.sign(&c)).await.unwrap();
    assert_eq!(
        (id.subject.as_str(), id.groups),
        ("alice", vec!["solo".to_owned()])
    );
}

#[tokio::test]
async fn time_claims() {
    let f = fixture().await;
    let a = auth(&f);
    let mut c = claims(ISS);
    c["exp"] = json!(now() - 3600);
    assert_eq!(check(&a, &f.es.sign(&c)).await, Err(AuthError::Expired));
    // Within the 30 s leeway.
    c["exp"] = json!(now() - 5);
    assert!(check(&a, &f.es.sign(&c)).await.is_ok());

    let mut c = claims(ISS);
    c["nbf"] = json!(now() + 3600);
    assert_eq!(check(&a, &f.es.sign(&c)).await, Err(AuthError::NotYetValid));
    c["nbf"] = json!(now() + 5);
    assert!(check(&a, &f.es.sign(&c)).await.is_ok());

    let mut c = claims(ISS);
    c.as_object_mut().unwrap().remove("exp");
    assert!(matches!(
        check(&a, &f.es.sign(&c)).await,
        Err(AuthError::Invalid(_))
    ));
    c["exp"] = json!("tomorrow");
    assert!(matches!(
        check(&a, &f.es.sign(&c)).await,
        Err(AuthError::Invalid(_))
    ));
}

#[tokio::test]
async fn audience_and_issuer() {
    let f = fixture().await;
    let a = auth(&f);
    let mut c = claims(ISS);
    c["aud"] = json!("another-service");
    assert_eq!(
        check(&a, &f.es.sign(&c)).await,
        Err(AuthError::WrongAudience)
    );
    c["aud"] = json!(["another-service", AUD]);
    assert!(check(&a, &f.es.sign(&c)).await.is_ok());
    c.as_object_mut().unwrap().remove("aud");
    assert_eq!(
        check(&a, &f.es.sign(&c)).await,
        Err(AuthError::WrongAudience)
    );

    let c = claims("https://evil.example.test/realms/ops");
    assert!(matches!(
        check(&a, &f.es.sign(&c)).await,
        Err(AuthError::UntrustedIssuer(i)) if i.contains("evil")
    ));
    // Exact comparison: a trailing slash is another issuer.
    let c = claims(&format!("{ISS}/"));
    assert!(matches!(
        check(&a, &f.es.sign(&c)).await,
        Err(AuthError::UntrustedIssuer(_))
    ));
}

#[tokio::test]
async fn unknown_kid_refreshes_once_and_picks_up_rotation() {
    let f = fixture().await;
    let a = OidcAuthenticator::new(config(&f).with_jwks_options(JwksOptions {
        min_refresh_interval: Duration::ZERO,
        ..Default::default()
    }))
    .unwrap();
    assert!(check(&a, &f.es.sign(&claims(ISS))).await.is_ok());
    assert_eq!(f.idp.hits(), 1);

    let new_key = SigningKey::es256("es-2");
    let token = new_key.sign(&claims(ISS));
    assert_eq!(check(&a, &token).await, Err(AuthError::UnknownKey));
    assert_eq!(f.idp.hits(), 2, "one refresh for the unknown kid");

    // The IdP rotates: the refresh triggered by the kid finds it.
    f.idp.set_jwks(&jwks(&[&f.es, &new_key]));
    let id = check(&a, &token).await.unwrap();
    assert_eq!(id.subject, "user-123");
    assert_eq!(f.idp.hits(), 3);

    // Concurrent misses share one fetch.
    let third = SigningKey::es256("es-3");
    f.idp.set_jwks(&jwks(&[&new_key, &third]));
    let token = third.sign(&claims(ISS));
    let a = Arc::new(a);
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let (a, t) = (a.clone(), token.clone());
            tokio::spawn(async move { check(&a, &t).await })
        })
        .collect();
    for t in tasks {
        assert!(t.await.unwrap().is_ok());
    }
    assert_eq!(f.idp.hits(), 4);
    assert_eq!(a.jwks().fetch_count(), 4);
}

#[tokio::test]
async fn bogus_kids_are_rate_limited() {
    let f = fixture().await;
    let a = Arc::new(
        OidcAuthenticator::new(config(&f).with_jwks_options(JwksOptions {
            min_refresh_interval: Duration::from_secs(3600),
            ..Default::default()
        }))
        .unwrap(),
    );
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let key = SigningKey::es256(&format!("bogus-{i}"));
            let token = key.sign(&claims(ISS));
            let a = a.clone();
            tokio::spawn(async move { check(&a, &token).await })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap(), Err(AuthError::UnknownKey));
    }
    // The first fetch is shared; no refresh follows within the interval.
    assert_eq!(f.idp.hits(), 1);
    // Known keys keep working.
    assert!(check(&a, &f.ed.sign(&claims(ISS))).await.is_ok());
    assert_eq!(f.idp.hits(), 1);
}

#[tokio::test]
async fn alg_none_and_hmac_are_refused_before_key_lookup() {
    let f = fixture().await;
    let a = auth(&f);
    let payload = b64(claims(ISS).to_string().as_bytes());
    let none = format!("eyJhbGciOiJub25lIn0.{payload}.");
    assert!(matches!(
        check(&a, &none).await,
        Err(AuthError::AlgorithmRefused(_))
    ));
    let none_kid = format!(
        "{}.{payload}.",
        b64(br#"{"alg":"none","kid":"es-1","typ":"JWT"}"#)
    );
    assert!(matches!(
        check(&a, &none_kid).await,
        Err(AuthError::AlgorithmRefused(_))
    ));

    for alg in [
        jsonwebtoken::Algorithm::HS256,
        jsonwebtoken::Algorithm::HS384,
        jsonwebtoken::Algorithm::HS512,
    ] {
        let mut header = Header::new(alg);
        header.kid = Some("es-1".into());
        let token = jsonwebtoken::encode(
            &header,
            &claims(ISS),
            &EncodingKey::from_secret(f.es.jwk.to_string().as_bytes()),
        )
        .unwrap();
        assert!(
            matches!(check(&a, &token).await, Err(AuthError::AlgorithmRefused(_))),
            "{alg:?}"
        );
    }
    assert_eq!(f.idp.hits(), 0, "refused before any key lookup");
}

#[tokio::test]
async fn alg_must_fit_the_key_and_the_allow_list() {
    let f = fixture().await;
    let a = auth(&f);
    // An ES256 signature under a header claiming RS256 with the EC key's kid.
    let good = f.es.sign(&claims(ISS));
    let mut parts = good.split('.');
    let (_, payload, sig) = (parts.next(), parts.next().unwrap(), parts.next().unwrap());
    let forged = format!(
        "{}.{payload}.{sig}",
        b64(br#"{"alg":"RS256","kid":"es-1"}"#)
    );
    assert!(matches!(
        check(&a, &forged).await,
        Err(AuthError::AlgorithmRefused(_))
    ));

    // Only ES256 allowed: RS256 tokens are refused even with a valid signature.
    let a = OidcAuthenticator::new(config(&f).with_algorithms([JwsAlgorithm::ES256])).unwrap();
    assert!(matches!(
        check(&a, &f.rs.sign(&claims(ISS))).await,
        Err(AuthError::AlgorithmRefused(_))
    ));
    assert!(check(&a, &f.es.sign(&claims(ISS))).await.is_ok());
}

#[tokio::test]
async fn tampered_tokens_are_invalid() {
    let f = fixture().await;
    let a = auth(&f);
    let good = f.es.sign(&claims(ISS));
    let parts: Vec<&str> = good.split('.').collect();
    let mut c = claims(ISS);
    c["sub"] = json!("admin");
    c["groups"] = json!(["admins"]);
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        b64(c.to_string().as_bytes()),
        parts[2]
    );
    assert!(matches!(
        check(&a, &tampered).await,
        Err(AuthError::Invalid(_))
    ));
    // Signature of another key with the same kid.
    let other = SigningKey::es256("es-1");
    assert!(matches!(
        check(&a, &other.sign(&claims(ISS))).await,
        Err(AuthError::Invalid(_))
    ));
    // Garbage in every part.
    for t in [
        "a.b.c",
        "..",
        "eyJhbGciOiJFUzI1NiJ9.!!.x",
        &format!("{}.{}.", parts[0], parts[1]),
    ] {
        assert!(
            matches!(check(&a, t).await, Err(AuthError::Invalid(_))),
            "{t}"
        );
    }
    // The genuine token still passes.
    assert!(check(&a, &good).await.is_ok());
}

#[tokio::test]
async fn unreachable_jwks_is_unavailable() {
    let f = fixture().await;
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let a = OidcAuthenticator::new(
        OidcConfig::new(ISS, AUD, trusting(&f.ca))
            .with_jwks_url(format!("https://127.0.0.1:{port}/jwks")),
    )
    .unwrap();
    assert!(matches!(
        check(&a, &f.es.sign(&claims(ISS))).await,
        Err(AuthError::Unavailable(_))
    ));
}

#[tokio::test]
async fn untrusted_jwks_server_is_unavailable() {
    let f = fixture().await;
    let other_ca = TestCa::new("unrelated CA");
    let a = OidcAuthenticator::new(
        OidcConfig::new(ISS, AUD, trusting(&other_ca)).with_jwks_url(f.idp.url("/jwks")),
    )
    .unwrap();
    assert!(matches!(
        check(&a, &f.es.sign(&claims(ISS))).await,
        Err(AuthError::Unavailable(_))
    ));
    // The server never saw a request: the handshake failed first.
    assert_eq!(f.idp.hits(), 0);
}

#[tokio::test]
async fn hostile_or_failing_jwks_is_unavailable_without_panic() {
    let f = fixture().await;
    for body in [
        "not json",
        "{\"keys\": 5}",
        "{\"keys\": [{\"kty\": \"RSA\", \"n\": 1}]}",
        "{\"keys\": [{\"kty\":\"oct\",\"k\":\"c2VjcmV0\"}]}",
        "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]",
    ] {
        f.idp.set_raw_jwks(body);
        let a = auth(&f);
        assert!(
            matches!(
                check(&a, &f.es.sign(&claims(ISS))).await,
                Err(AuthError::Unavailable(_))
            ),
            "{body}"
        );
    }
    f.idp.set_jwks(&jwks(&[&f.es]));
    f.idp.set_status(500);
    let a = auth(&f);
    assert!(matches!(
        check(&a, &f.es.sign(&claims(ISS))).await,
        Err(AuthError::Unavailable(_))
    ));
}

#[tokio::test]
async fn failed_refresh_keeps_old_keys() {
    let f = fixture().await;
    let a = OidcAuthenticator::new(config(&f).with_jwks_options(JwksOptions {
        refresh_interval: Duration::ZERO, // always stale: refresh on every use
        min_refresh_interval: Duration::ZERO,
        ..Default::default()
    }))
    .unwrap();
    assert!(check(&a, &f.es.sign(&claims(ISS))).await.is_ok());
    f.idp.set_status(503);
    for _ in 0..3 {
        assert!(check(&a, &f.es.sign(&claims(ISS))).await.is_ok());
    }
    // An unknown kid triggers a refresh that fails: still an unknown key, keys kept.
    let other = SigningKey::es256("es-9");
    assert_eq!(
        check(&a, &other.sign(&claims(ISS))).await,
        Err(AuthError::UnknownKey)
    );
    assert_eq!(a.jwks().key_count(), 3);
    assert!(f.idp.hits() >= 2);
}

#[tokio::test]
async fn discovery_finds_the_jwks() {
    let f = fixture().await;
    let issuer = f.idp.url("");
    f.idp.state.lock().unwrap().discovery =
        Some(json!({"issuer": issuer, "jwks_uri": f.idp.url("/jwks")}).to_string());
    let a = OidcAuthenticator::new(OidcConfig::new(issuer.clone(), AUD, trusting(&f.ca))).unwrap();
    let id = check(&a, &f.ed.sign(&claims(&issuer))).await.unwrap();
    assert_eq!(id.issuer.as_deref(), Some(issuer.as_str()));
    assert_eq!(f.idp.hits(), 2, "discovery document, then key set");

    // A discovery document naming another issuer is not followed.
    f.idp.state.lock().unwrap().discovery = Some(
        json!({"issuer": "https://evil.example.test", "jwks_uri": f.idp.url("/jwks")}).to_string(),
    );
    let a = OidcAuthenticator::new(OidcConfig::new(issuer.clone(), AUD, trusting(&f.ca))).unwrap();
    assert!(matches!(
        check(&a, &f.ed.sign(&claims(&issuer))).await,
        Err(AuthError::Unavailable(m)) if m.contains("evil")
    ));
}

#[tokio::test]
async fn chain_routes_jwts_and_static_tokens() {
    let f = fixture().await;
    let (token, hash) = generate_token().unwrap();
    let chain = AuthenticatorChain::new().push(auth(&f)).push(
        StaticTokenAuthenticator::new([StaticToken::new("ci-bot", &hash)
            .unwrap()
            .with_groups(["deploy"])])
        .unwrap(),
    );
    let id = chain
        .authenticate(&Credential::Bearer(&token))
        .await
        .unwrap();
    assert_eq!(
        (id.subject.as_str(), id.method),
        ("ci-bot", AuthMethod::StaticToken)
    );
    let id = chain
        .authenticate(&Credential::Bearer(&f.es.sign(&claims(ISS))))
        .await
        .unwrap();
    assert_eq!(
        (id.subject.as_str(), id.method),
        ("user-123", AuthMethod::Oidc)
    );
    assert!(matches!(
        chain.authenticate(&Credential::Bearer("hoop_nope")).await,
        Err(AuthError::Invalid(_))
    ));
    // The OIDC authenticator alone: not a JWT, or a certificate, is not its business.
    let a = auth(&f);
    assert_eq!(check(&a, &token).await, Err(AuthError::NotApplicable));
    let cert = f.ca.client("alice").cert();
    assert_eq!(
        a.authenticate(&Credential::ClientCertificate(&cert)).await,
        Err(AuthError::NotApplicable)
    );
}

#[test]
fn configuration_is_checked() {
    let ca = TestCa::new("c");
    let tls = trusting(&ca);
    let bad = [
        OidcConfig::new("", AUD, tls.clone()).with_jwks_url("https://x/jwks"),
        OidcConfig::new(ISS, "", tls.clone()).with_jwks_url("https://x/jwks"),
        OidcConfig::new(ISS, AUD, tls.clone()).with_jwks_url("http://x/jwks"),
        OidcConfig::new("http://idp", AUD, tls.clone()),
        OidcConfig::new(ISS, AUD, tls.clone())
            .with_jwks_url("https://x/jwks")
            .with_algorithms([]),
    ];
    for c in bad {
        assert!(OidcAuthenticator::new(c.clone()).is_err(), "{c:?}");
    }
}
