//! OIDC end to end through the compiled gateway: a small OpenID provider (hyper + rustls
//! with a testkit certificate, trusted by the gateway through `identity.oidc.ca_file`)
//! serves its discovery document and key set; the test signs JWTs; real psql reaches a
//! real PostgreSQL and real curl reaches nginx through the gateway binary.
//!
//! Run: `cargo build -p hoop-examples --examples && cargo test -p hoop-examples --test oidc`
//! (without the built binary the tests are skipped with a note).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hoop_testkit::jwt::{SigningKey, jwks, now, unsigned};
use hoop_testkit::postgres::{PgOptions, PgServer};
use serde_json::{Value, json};

mod common;
use common::{GatewayProcess, psql};

const AUD: &str = "hoop-gateway";

// ------------------------------------------------------------------ the OpenID provider

/// A small OpenID provider on loopback: `/.well-known/openid-configuration` names
/// `{issuer}/jwks`, which serves whatever key set the test publishes.
struct Idp {
    issuer: String,
    jwks: Arc<Mutex<String>>,
    /// Requests for the key set.
    jwks_hits: Arc<AtomicUsize>,
    /// The CA the gateway must trust to fetch from it.
    ca: PathBuf,
}

impl Idp {
    fn publish(&self, keys: &[&SigningKey]) {
        *self.jwks.lock().unwrap() = jwks(keys).to_string();
    }

    fn jwks_hits(&self) -> usize {
        self.jwks_hits.load(Ordering::SeqCst)
    }
}

/// Starts the provider on `rt` with `keys` published; its certificate comes from a CA of
/// its own, written to `dir`.
fn start_idp(rt: &tokio::runtime::Runtime, dir: &Path, keys: &[&SigningKey]) -> Idp {
    let ca = hoop_testkit::TestCa::new("idp-ca");
    let ca_path = ca.write_cert(dir, "idp-ca.crt");
    let cert = ca.server();
    let config = rustls::ServerConfig::builder_with_provider(hoop_core::crypto_provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.cert()], cert.key())
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let issuer = format!(
        "https://localhost:{}",
        listener.local_addr().unwrap().port()
    );
    let published = Arc::new(Mutex::new(jwks(keys).to_string()));
    let hits = Arc::new(AtomicUsize::new(0));
    let discovery = json!({
        "issuer": issuer,
        "jwks_uri": format!("{issuer}/jwks"),
        "id_token_signing_alg_values_supported": ["ES256"],
    })
    .to_string();
    let (set, h) = (published.clone(), hits.clone());
    rt.spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, set, h, discovery) =
                (acceptor.clone(), set.clone(), h.clone(), discovery.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc =
                    hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let (status, body) = match req.uri().path() {
                            "/.well-known/openid-configuration" => (200, discovery.clone()),
                            "/jwks" => {
                                h.fetch_add(1, Ordering::SeqCst);
                                (200, set.lock().unwrap().clone())
                            }
                            _ => (404, String::new()),
                        };
                        let resp = http::Response::builder()
                            .status(status)
                            .header("content-type", "application/json")
                            .body(http_body_util::Full::new(bytes::Bytes::from(body)))
                            .unwrap();
                        async move { Ok::<_, std::convert::Infallible>(resp) }
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    Idp {
        issuer,
        jwks: published,
        jwks_hits: hits,
        ca: ca_path,
    }
}

// ------------------------------------------------------------------ keys and tokens

/// Claims of a token for `sub` in `roles` (the provider's nested `realm_access.roles`),
/// valid for ten minutes.
fn claims(idp: &Idp, sub: &str, roles: &[&str]) -> Value {
    json!({
        "iss": idp.issuer,
        "aud": AUD,
        "sub": sub,
        "iat": now(),
        "exp": now() + 600,
        "realm_access": { "roles": roles },
    })
}

/// `(name, token, what the refusal says)` for every kind of bad token.
fn bad_tokens(idp: &Idp, key: &SigningKey) -> Vec<(&'static str, String, &'static str)> {
    let good = claims(idp, "mallory", &["dev", "dba"]);
    let mut expired = good.clone();
    expired["exp"] = json!(now() - 3600);
    expired["iat"] = json!(now() - 7200);
    let mut wrong_aud = good.clone();
    wrong_aud["aud"] = json!("some-other-app");
    let mut wrong_iss = good.clone();
    wrong_iss["iss"] = json!("https://evil.example");
    // Another key claiming the provider's key id: the signature does not verify.
    let forger = SigningKey::es256(&key.kid);
    vec![
        ("expired", key.sign(&expired), "credential expired"),
        ("wrong audience", key.sign(&wrong_aud), "wrong audience"),
        (
            "wrong issuer",
            key.sign(&wrong_iss),
            "untrusted issuer: https://evil.example",
        ),
        (
            "another key",
            forger.sign(&good),
            "signature does not verify",
        ),
        ("alg none", unsigned(&good), "algorithm refused: none"),
    ]
}

// ------------------------------------------------------------------ helpers

/// The `[[identity.oidc]]` section for `idp` (discovery, nested groups claim, key set
/// fetched again at most once a second).
fn oidc_section(idp: &Idp) -> String {
    format!(
        "[[identity.oidc]]\nissuer = \"{iss}\"\naudience = \"{AUD}\"\ngroups_claim = \"realm_access.roles\"\n\
         ca_file = \"{ca}\"\njwks_min_refresh_seconds = 1\n",
        iss = idp.issuer,
        ca = idp.ca.display(),
    )
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

/// The `session_start` lines of every recording in `dir` that has ended.
fn session_starts(dir: &Path) -> Vec<Value> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let text = std::fs::read_to_string(e.unwrap().path()).unwrap();
        if !text.contains("session_end") {
            continue;
        }
        if let Some(first) = text.lines().next() {
            out.push(serde_json::from_str(first).unwrap());
        }
    }
    out
}

/// Waits (up to 20 s) for an ended recording whose start names `subject`; returns it.
fn recording_of(dir: &Path, subject: &str) -> Value {
    let start = Instant::now();
    loop {
        let starts = session_starts(dir);
        if let Some(s) = starts.iter().find(|s| {
            s.to_string()
                .contains(&format!("\"subject\":\"{subject}\""))
        }) {
            return s.clone();
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no recording for {subject}: {starts:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

// ------------------------------------------------------------------ PostgreSQL

/// psql with `password=<JWT>` through the binary: a valid token reaches PostgreSQL and
/// the recording names the token's subject and groups; expired, wrong-audience,
/// wrong-issuer, forged and unsigned tokens are each refused with a clear message while
/// the gateway keeps serving; a resource allowed only to a group admits a token with the
/// group and refuses one without; after the provider rotates in a new key, a token signed
/// with it is accepted (the key set is fetched again for the unknown key id).
#[test]
fn oidc_tokens_reach_postgres_through_the_binary() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let key1 = SigningKey::es256("key-1");
    let idp = start_idp(&rt, d, &[&key1]);
    let pg = PgServer::start(PgOptions {
        users: vec![("app".into(), "app-secret".into())],
        databases: vec!["appdb".into()],
        ..PgOptions::default()
    });
    std::fs::write(d.join("pgpass"), "app-secret\n").unwrap();
    std::fs::write(d.join("tokens"), "").unwrap();
    let resource = |name: &str| {
        format!(
            "[[resources]]\nname = \"{name}\"\nprotocol = \"postgres\"\nlistener = \"pg\"\ntarget = \"127.0.0.1:{port}\"\n\
             database = \"appdb\"\nuser = \"app\"\npassword_file = \"{d}/pgpass\"\n\
             tls = {{ ca_file = \"{ca}\", server_name = \"localhost\" }}\n",
            port = pg.port,
            d = d.display(),
            ca = pg.ca_path().display(),
        )
    };
    let cfg_text = format!(
        "[data]\ndir = \"{d}\"\n[[listeners]]\nname = \"pg\"\nprotocol = \"postgres\"\nbind = \"127.0.0.1:0\"\n\
         {appdb}{secretdb}\
         [identity]\nstatic_tokens_file = \"{d}/tokens\"\n{oidc}\
         [[policy.rules]]\nname = \"dba-only\"\nresources = [\"secretdb\"]\ngroups = [\"dba\"]\nactions = [\"connect\", \"read\"]\ndecision = \"allow\"\n\
         [[policy.rules]]\nname = \"not-dba\"\nresources = [\"secretdb\"]\nactions = [\"connect\"]\ndecision = \"deny\"\nreason = \"secretdb is for the dba group\"\n\
         [[policy.rules]]\nname = \"everyone\"\nactions = [\"connect\", \"read\"]\ndecision = \"allow\"\n\
         [admin]\nenabled = false\n",
        d = d.display(),
        appdb = resource("appdb"),
        secretdb = resource("secretdb"),
        oidc = oidc_section(&idp),
    );
    let cfg = d.join("gw.toml");
    std::fs::write(&cfg, cfg_text).unwrap();
    let Some(mut gw) = GatewayProcess::start(&cfg, &d.join("stderr.log")) else {
        return;
    };
    let ca = d.join("dev-ca.crt");
    let port = gw.addr("pg").port();
    let conn = |db: &str, token: &str| {
        // The startup user is not the identity: the token is.
        format!(
            "host=localhost port={port} dbname={db} user=whoever password={token} sslmode=verify-full sslrootcert={}",
            ca.display()
        )
    };

    // A valid token: the query runs on the target as its role.
    let alice = key1.sign(&claims(&idp, "oidc-alice", &["dev"]));
    let out = psql(&conn("appdb", &alice), "SELECT current_user, 40 + 2", true);
    assert!(out.status.success(), "{}\n{}", text(&out.stderr), gw.log());
    assert_eq!(text(&out.stdout).trim(), "app|42");
    let rec = recording_of(&d.join("recordings"), "oidc-alice");
    let id = rec.to_string();
    assert!(
        id.contains(&format!("\"issuer\":\"{}\"", idp.issuer)),
        "{id}"
    );
    assert!(id.contains("\"groups\":[\"dev\"]"), "{id}");
    assert!(
        !id.contains("whoever"),
        "the startup user is not the identity: {id}"
    );

    // Bad tokens: each refused with its reason; the gateway keeps serving.
    for (name, token, why) in bad_tokens(&idp, &key1) {
        let out = psql(&conn("appdb", &token), "SELECT 1", true);
        let err = text(&out.stderr);
        assert!(!out.status.success(), "{name}: accepted");
        assert!(
            err.contains("hoop: authentication failed") && err.contains(why),
            "{name}: {err}"
        );
        assert!(gw.is_running(), "{name}: the gateway died");
    }
    let out = psql(&conn("appdb", &alice), "SELECT 'still serving'", true);
    assert_eq!(
        text(&out.stdout).trim(),
        "still serving",
        "{}",
        text(&out.stderr)
    );

    // Groups from the nested claim reach the policy.
    let dba = key1.sign(&claims(&idp, "oidc-dba", &["dev", "dba"]));
    let out = psql(&conn("secretdb", &dba), "SELECT 'dba in'", true);
    assert_eq!(text(&out.stdout).trim(), "dba in", "{}", text(&out.stderr));
    let out = psql(&conn("secretdb", &alice), "SELECT 'alice in'", true);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("secretdb is for the dba group"),
        "{}",
        text(&out.stderr)
    );
    assert!(!text(&out.stdout).contains("alice in"));

    // Key rotation: a token signed with a key the gateway has not seen yet is accepted
    // once the provider publishes it; the unknown kid makes the gateway fetch again.
    let key2 = SigningKey::es256("key-2");
    let bob = key2.sign(&claims(&idp, "oidc-bob", &["dev"]));
    // Not published yet: unknown key (and a refetch that finds nothing new).
    std::thread::sleep(Duration::from_millis(1100)); // past jwks_min_refresh_seconds
    let out = psql(&conn("appdb", &bob), "SELECT 1", true);
    assert!(
        text(&out.stderr).contains("unknown signing key"),
        "{}",
        text(&out.stderr)
    );
    idp.publish(&[&key1, &key2]);
    let fetched = idp.jwks_hits();
    std::thread::sleep(Duration::from_millis(1100)); // past jwks_min_refresh_seconds
    let out = psql(&conn("appdb", &bob), "SELECT 'rotated'", true);
    assert_eq!(text(&out.stdout).trim(), "rotated", "{}", text(&out.stderr));
    assert_eq!(idp.jwks_hits(), fetched + 1, "one fetch for the new kid");
    // The old key still works, and no fetch is needed for it.
    let out = psql(&conn("appdb", &alice), "SELECT 'old key'", true);
    assert_eq!(text(&out.stdout).trim(), "old key", "{}", text(&out.stderr));
    assert_eq!(idp.jwks_hits(), fetched + 1);
    recording_of(&d.join("recordings"), "oidc-bob");

    let log = gw.log();
    assert!(log.contains("OIDC signing keys fetched"), "{log}");
    assert_eq!(gw.stop(), Some(0));
    // No token (its signature) ever reaches the log.
    let log = std::fs::read_to_string(d.join("stderr.log")).unwrap();
    for t in [&alice, &bob, &dba] {
        let sig = t.rsplit('.').next().unwrap();
        assert!(!log.contains(sig), "a token reached the log");
    }
}

/// A gateway whose `ca_file` is not the provider's CA never fetches keys (fail closed):
/// a well-signed token is refused as "identity provider unavailable".
#[test]
fn an_untrusted_provider_certificate_refuses_every_token() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let key = SigningKey::es256("key-1");
    let mut idp = start_idp(&rt, d, &[&key]);
    idp.ca = hoop_testkit::TestCa::new("not-the-idp-ca").write_cert(d, "other-ca.crt");
    std::fs::write(d.join("tokens"), "").unwrap();
    std::fs::write(d.join("api-token"), "upstream-secret\n").unwrap();
    std::fs::write(d.join("pgpass"), "unused\n").unwrap();
    let cfg_text = format!(
        "[data]\ndir = \"{d}\"\n[[listeners]]\nname = \"api\"\nprotocol = \"http\"\nbind = \"127.0.0.1:0\"\n\
         [[listeners]]\nname = \"pg\"\nprotocol = \"postgres\"\nbind = \"127.0.0.1:0\"\n\
         [[resources]]\nname = \"api\"\nprotocol = \"http\"\nlistener = \"api\"\ntarget = \"127.0.0.1:9\"\nplaintext = true\n\
         [[resources]]\nname = \"appdb\"\nprotocol = \"postgres\"\nlistener = \"pg\"\ntarget = \"127.0.0.1:9\"\n\
         database = \"appdb\"\nuser = \"app\"\npassword_file = \"{d}/pgpass\"\ntls = {{ ca_file = \"{ca}\", server_name = \"localhost\" }}\n\
         [identity]\nstatic_tokens_file = \"{d}/tokens\"\n{oidc}[admin]\nenabled = false\n",
        d = d.display(),
        ca = idp.ca.display(),
        oidc = oidc_section(&idp),
    );
    let cfg = d.join("gw.toml");
    std::fs::write(&cfg, cfg_text).unwrap();
    let Some(gw) = GatewayProcess::start(&cfg, &d.join("stderr.log")) else {
        return;
    };
    let log = gw.wait_log("OIDC signing keys not fetched yet", 1);
    assert!(log.contains(&idp.issuer), "{log}");
    let token = key.sign(&claims(&idp, "oidc-alice", &["dev"]));
    let (code, body) = curl(&d.join("dev-ca.crt"), gw.addr("api").port(), &token, false);
    // The gateway cannot check the token: 503 (not the client's fault), never a pass.
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("identity provider unavailable"), "{body}");
    // psql the same: "cannot connect now" (57P03), not a bad password.
    let conn = format!(
        "host=localhost port={} dbname=appdb user=whoever password={token} sslmode=verify-full sslrootcert={}",
        gw.addr("pg").port(),
        d.join("dev-ca.crt").display()
    );
    let out = psql(&conn, "SELECT 1", true);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("cannot check the credential now")
            && err.contains("identity provider unavailable"),
        "{err}"
    );
    assert_eq!(
        idp.jwks_hits(),
        0,
        "nothing is fetched over an unverified session"
    );
    assert_eq!(gw.stop(), Some(0));
}

// ------------------------------------------------------------------ HTTP

/// `curl https://localhost:PORT/whoami` with a bearer token: (status, body).
fn curl(ca: &Path, port: u16, token: &str, http2: bool) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-sS", "--cacert"])
        .arg(ca)
        .args([
            if http2 { "--http2" } else { "--http1.1" },
            "-w",
            "\n%{http_code}",
            "--resolve",
            &format!("localhost:{port}:127.0.0.1"),
            "-H",
            &format!("Authorization: Bearer {token}"),
        ])
        .arg(format!("https://localhost:{port}/whoami"))
        .output()
        .unwrap();
    assert!(out.status.success(), "curl failed: {}", text(&out.stderr));
    let t = text(&out.stdout);
    let (body, code) = t.rsplit_once('\n').unwrap();
    (code.trim().parse().unwrap(), body.to_owned())
}

/// curl with `Authorization: Bearer <JWT>` through an http resource to nginx: a valid
/// token in the allowed group gets through and nginx sees only the injected credential;
/// bad tokens get 401 and a valid token without the group 403, none of them forwarded.
#[test]
fn oidc_bearer_reaches_nginx_through_the_binary() {
    let nginx = hoop_testkit::nginx::NginxServer::start(hoop_testkit::nginx::NginxOptions {
        extra_server: vec![
            "location = /whoami { default_type text/plain; \
             return 200 \"upstream saw: $http_authorization\\n\"; }"
                .to_owned(),
        ],
        ..Default::default()
    })
    .expect("nginx is required for this test (./scripts/test installs it)");
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let key = SigningKey::es256("key-1");
    let idp = start_idp(&rt, d, &[&key]);
    std::fs::write(d.join("tokens"), "").unwrap();
    std::fs::write(d.join("api-token"), "upstream-secret\n").unwrap();
    let cfg_text = format!(
        "[data]\ndir = \"{d}\"\n[[listeners]]\nname = \"api\"\nprotocol = \"http\"\nbind = \"127.0.0.1:0\"\n\
         [[resources]]\nname = \"api\"\nprotocol = \"http\"\nlistener = \"api\"\ntarget = \"127.0.0.1:{port}\"\n\
         password_file = \"{d}/api-token\"\ntls = {{ ca_file = \"{ca}\", server_name = \"localhost\" }}\n\
         [identity]\nstatic_tokens_file = \"{d}/tokens\"\n{oidc}\
         [[policy.rules]]\nname = \"devs\"\ngroups = [\"dev\"]\nactions = [\"connect\", \"read\"]\ndecision = \"allow\"\n\
         [admin]\nenabled = false\n",
        d = d.display(),
        port = nginx.port,
        ca = nginx.ca_path().display(),
        oidc = oidc_section(&idp),
    );
    let cfg = d.join("gw.toml");
    std::fs::write(&cfg, cfg_text).unwrap();
    let Some(mut gw) = GatewayProcess::start(&cfg, &d.join("stderr.log")) else {
        return;
    };
    let ca = d.join("dev-ca.crt");
    let port = gw.addr("api").port();

    let dev = key.sign(&claims(&idp, "oidc-dev", &["dev"]));
    let sig = dev.rsplit('.').next().unwrap().to_owned();
    for http2 in [false, true] {
        let (code, body) = curl(&ca, port, &dev, http2);
        assert_eq!(code, 200, "http2={http2}: {body}\n{}", gw.log());
        assert_eq!(body.trim(), "upstream saw: Bearer upstream-secret");
        assert!(
            !body.contains(&sig),
            "the client's token reached the upstream"
        );
    }
    for (name, token, _) in bad_tokens(&idp, &key) {
        let (code, body) = curl(&ca, port, &token, false);
        assert_eq!(code, 401, "{name}: {body}");
        assert!(!body.contains("upstream saw"), "{name}: forwarded: {body}");
        assert!(gw.is_running(), "{name}: the gateway died");
    }
    // On one connection, every request is authenticated: an expired token after a good
    // one is refused, and so is another identity's token.
    let mut expired = claims(&idp, "oidc-dev", &["dev"]);
    expired["exp"] = json!(now() - 3600);
    let expired = key.sign(&expired);
    let other = key.sign(&claims(&idp, "oidc-other", &["dev"]));
    let mut c = Command::new("curl");
    c.arg("-sS");
    for (i, token) in [&dev, &expired, &other].into_iter().enumerate() {
        if i > 0 {
            c.arg("--next");
        }
        c.arg("--cacert").arg(&ca).args([
            "--http1.1",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{num_connects}\n",
            "--resolve",
            &format!("localhost:{port}:127.0.0.1"),
            "-H",
            &format!("Authorization: Bearer {token}"),
            &format!("https://localhost:{port}/whoami"),
        ]);
    }
    let out = c.output().unwrap();
    assert_eq!(
        text(&out.stdout).lines().collect::<Vec<_>>(),
        ["200 1", "401 0", "401 0"],
        "one connection: {}",
        text(&out.stderr)
    );

    let outsider = key.sign(&claims(&idp, "oidc-outsider", &["sales"]));
    let (code, body) = curl(&ca, port, &outsider, true);
    assert_eq!(code, 403, "{body}");
    assert!(!body.contains("upstream saw"), "{body}");
    let (code, _) = curl(&ca, port, &dev, true);
    assert_eq!(code, 200, "still serving");
    recording_of(&d.join("recordings"), "oidc-dev");

    assert_eq!(gw.stop(), Some(0));
    let log = std::fs::read_to_string(d.join("stderr.log")).unwrap();
    assert!(!log.contains(&sig), "a token reached the log");
    assert!(
        !log.contains("upstream-secret"),
        "the injected secret reached the log"
    );
}
