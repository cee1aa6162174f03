//! The gateway end to end: a real PostgreSQL 15 behind it, real psql and curl in front.
//!
//! Run: `cargo test -p hoop-examples --test gateway` (the binary test also needs
//! `cargo build -p hoop-examples --examples` first; it is skipped with a note otherwise).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use hoop_core::auth::hash_token;
use hoop_examples::gateway::{Gateway, config};
use hoop_examples::replay;
use hoop_testkit::postgres::{PgOptions, PgServer};

mod common;
use common::{GatewayProcess, example_binary, psql};

const ALICE: &str = "alice-token-0123456789abcdef";
const OPS: &str = "ops-admin-token-0123456789abcdef";
/// An admin token whose caller is alice herself (for the self-approval check).
const ALICE_ADMIN: &str = "alice-admin-token-0123456789abcdef";

struct Env {
    _pg: PgServer,
    pg_port: u16,
    dir: tempfile::TempDir,
    gw: Option<Gateway>,
    /// Bodies the approval webhook received.
    hooks: tokio::sync::mpsc::UnboundedReceiver<String>,
}

impl Env {
    fn gw(&self) -> &Gateway {
        self.gw.as_ref().unwrap()
    }

    fn ca(&self) -> PathBuf {
        self.dir.path().join("data/dev-ca.crt")
    }

    fn conn(&self, token: &str) -> String {
        let addr = self.gw().listener_addr("pg").unwrap();
        format!(
            "host=127.0.0.1 port={} dbname=appdb user=alice password={token} sslmode=verify-full sslrootcert={}",
            addr.port(),
            self.ca().display()
        )
    }

    fn admin_url(&self, path: &str) -> String {
        format!("https://{}{path}", self.gw().admin_addr().unwrap())
    }
}

/// A fresh data directory whose static token file lets alice in with [`ALICE`].
fn data_dir_with_alice() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("tokens"),
        format!("alice:dev:{}\n", hash_token(ALICE)),
    )
    .unwrap();
    dir
}

fn write_config(dir: &Path, pg: &PgServer, hook: std::net::SocketAddr, hook_ca: &Path) -> PathBuf {
    std::fs::write(dir.join("pgpass"), "app-secret\n").unwrap();
    std::fs::write(
        dir.join("tokens"),
        format!("alice:dev:{}\n", hash_token(ALICE)),
    )
    .unwrap();
    std::fs::write(
        dir.join("admin-tokens"),
        format!(
            "ops:admins:{}\nalice::{}\n",
            hash_token(OPS),
            hash_token(ALICE_ADMIN)
        ),
    )
    .unwrap();
    let text = format!(
        r#"
[data]
dir = "{d}/data"

[[listeners]]
name = "pg"
protocol = "postgres"
bind = "127.0.0.1:0"

[[resources]]
name = "appdb"
protocol = "postgres"
listener = "pg"
target = "127.0.0.1:{port}"
database = "appdb"
user = "app"
password_file = "{d}/pgpass"
tls = {{ ca_file = "{ca}", server_name = "localhost" }}

[[resources]]
name = "badtls"
protocol = "postgres"
listener = "pg"
target = "127.0.0.1:{port}"
database = "appdb"
user = "app"
password_file = "{d}/pgpass"
tls = {{ ca_file = "{d}/other-ca.crt", server_name = "localhost" }}

[identity]
static_tokens_file = "{d}/tokens"

[[policy.rules]]
name = "connect"
actions = ["connect", "read", "write"]
decision = "allow"

[[policy.rules]]
name = "destructive"
actions = ["ddl", "destructive"]
decision = "review"
reason = "needs a second pair of eyes"

[masking]
[[masking.detectors]]
detector = "email"
strategy = "partial"
[[masking.field_rules]]
pattern = "card"
label = "CARD"

[recording]
fail_closed = true

[approvals]
hold_seconds = 300
webhook_url = "https://localhost:{hook_port}/hook"
webhook_ca_file = "{hook_ca}"

[admin]
bind = "127.0.0.1:0"
tokens_file = "{d}/admin-tokens"
"#,
        d = dir.display(),
        port = pg.port,
        ca = pg.ca_path().display(),
        hook_port = hook.port(),
        hook_ca = hook_ca.display(),
    );
    hoop_testkit::TestCa::new("not-the-postgres-ca").write_cert(dir, "other-ca.crt");
    let path = dir.join("gateway.toml");
    std::fs::write(&path, text).unwrap();
    path
}

async fn setup() -> Env {
    let pg = tokio::task::spawn_blocking(|| {
        let pg = PgServer::start(PgOptions {
            users: vec![("app".into(), "app-secret".into())],
            databases: vec!["appdb".into()],
            ..PgOptions::default()
        });
        pg.psql(
            "appdb",
            "CREATE TABLE customers (id int primary key, email text, card text); \
             INSERT INTO customers VALUES (1, 'alice@example.com', '4111 1111 1111 1111'), (2, 'bob@example.com', '5500 0000 0000 0004'); \
             CREATE TABLE t (a int); CREATE TABLE t2 (a int); \
             ALTER TABLE customers OWNER TO app; ALTER TABLE t OWNER TO app; ALTER TABLE t2 OWNER TO app;",
        );
        pg
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (hook, hook_ca, hooks) = webhook_server(dir.path()).await;
    let path = write_config(dir.path(), &pg, hook, &hook_ca);
    let config = config::load(&path).unwrap();
    let gw = Gateway::start(config).await.unwrap();
    Env {
        pg_port: pg.port,
        _pg: pg,
        dir,
        gw: Some(gw),
        hooks,
    }
}

/// An HTTPS server standing in for a chat webhook: every POST body goes to the channel.
async fn webhook_server(
    dir: &Path,
) -> (
    std::net::SocketAddr,
    PathBuf,
    tokio::sync::mpsc::UnboundedReceiver<String>,
) {
    use http_body_util::BodyExt;
    let ca = hoop_testkit::TestCa::new("webhook-ca");
    let ca_path = ca.write_cert(dir, "webhook-ca.crt");
    let (cert_path, key_path) = ca.server().write(dir, "webhook");
    let tls = hoop_core::tls::ServerTls::new(hoop_core::tls::ServerTlsConfig {
        cert_path,
        key_path,
        ..Default::default()
    })
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let tls = tls.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                let Ok(stream) = tls.accept(tcp).await else {
                    return;
                };
                let svc =
                    hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let tx = tx.clone();
                        async move {
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            let _ = tx.send(String::from_utf8_lossy(&body).into_owned());
                            Ok::<_, std::convert::Infallible>(http::Response::new(
                                http_body_util::Full::new(bytes::Bytes::from_static(b"ok")),
                            ))
                        }
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (addr, ca_path, rx)
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

/// `curl` against the admin API: (status, body).
fn curl(ca: &Path, token: &str, method: &str, url: &str, body: Option<&str>) -> (u16, String) {
    let mut c = Command::new("curl");
    c.args(["-sS", "--cacert"])
        .arg(ca)
        .args(["-X", method, "-w", "\n%{http_code}"])
        .args(["-H", &format!("Authorization: Bearer {token}")]);
    if let Some(b) = body {
        c.args(["-H", "Content-Type: application/json", "-d", b]);
        if b.len() > 1024 {
            // Wait for the server's go-ahead, so a refusal is read, not a broken pipe.
            c.args(["-H", "Expect: 100-continue"]);
        }
    }
    let out = c.arg(url).output().unwrap();
    assert!(
        out.status.success(),
        "curl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let (body, code) = text.rsplit_once('\n').unwrap();
    (code.trim().parse().unwrap(), body.to_owned())
}

async fn admin(
    env: &Env,
    token: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> (u16, String) {
    let ca = env.ca();
    let url = env.admin_url(path);
    let token = token.to_owned();
    let method = method.to_owned();
    let body = body.map(str::to_owned);
    blocking(move || curl(&ca, &token, &method, &url, body.as_deref())).await
}

/// Waits until exactly one review is pending and returns its id.
async fn pending_review(env: &Env) -> String {
    let start = Instant::now();
    loop {
        let (code, body) = admin(env, OPS, "GET", "/v1/reviews", None).await;
        assert_eq!(code, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        if let Some(r) = v["reviews"].as_array().and_then(|a| a.first()) {
            return r["id"].as_str().unwrap().to_owned();
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no review appeared"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|r| r.trim().parse().ok()))
        .unwrap_or_else(|| panic!("metric {name} missing in\n{text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_flow_with_psql_and_curl() {
    let mut env = setup().await;
    let conn = env.conn(ALICE);

    // A read goes through.
    let c = conn.clone();
    let out = blocking(move || psql(&c, "SELECT email FROM customers ORDER BY id", true)).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows = String::from_utf8_lossy(&out.stdout);
    assert!(
        rows.contains("a***@example.com"),
        "masked partially: {rows}"
    );
    assert!(!rows.contains("alice@example.com"), "{rows}");
    let c = conn.clone();
    let out = blocking(move || psql(&c, "SELECT id, card FROM customers ORDER BY id", true)).await;
    let rows = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && rows.contains("[REDACTED:CARD]"),
        "{rows}"
    );
    assert!(!rows.contains("4111"), "{rows}");

    // Unauthenticated admin calls are refused; health needs nothing.
    let (code, _) = admin(&env, "wrong-token", "GET", "/v1/reviews", None).await;
    assert_eq!(code, 401);
    let (code, body) = admin(&env, "", "GET", "/healthz", None).await;
    assert_eq!((code, body.trim()), (200, "ok"));

    // A DROP is held; alice cannot approve it herself; ops approves it; it runs.
    let c = conn.clone();
    let held = tokio::task::spawn_blocking(move || psql(&c, "DROP TABLE t", true));
    let id = pending_review(&env).await;
    let hook = tokio::time::timeout(Duration::from_secs(60), env.hooks.recv())
        .await
        .expect("the webhook is called")
        .unwrap();
    assert!(
        hook.contains(&id) && hook.contains("DROP TABLE t"),
        "{hook}"
    );
    let (code, body) = admin(
        &env,
        ALICE_ADMIN,
        "POST",
        &format!("/v1/reviews/{id}/approve"),
        Some(r#"{"reason":"mine"}"#),
    )
    .await;
    assert_eq!(code, 403, "self-approval must be refused: {body}");
    let (code, body) = admin(
        &env,
        OPS,
        "POST",
        &format!("/v1/reviews/{id}/approve"),
        Some(r#"{"reason":"ticket 42"}"#),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"by\": \"ops\""), "{body}");
    let out = held.await.unwrap();
    assert!(
        out.status.success(),
        "approved DROP failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let gone = env._pg.psql(
        "appdb",
        "SELECT count(*) FROM pg_tables WHERE tablename = 't'",
    );
    assert_eq!(gone.trim(), "0");

    // A DROP rejected: the client gets an error and the session goes on.
    let c = conn.clone();
    let held = tokio::task::spawn_blocking(move || {
        let mut cmd = Command::new("psql");
        cmd.arg(&c).args([
            "-X",
            "-A",
            "-t",
            "-c",
            "DROP TABLE t2",
            "-c",
            "SELECT 'still here'",
        ]);
        cmd.output().unwrap()
    });
    let id = pending_review(&env).await;
    let (code, body) = admin(
        &env,
        OPS,
        "POST",
        &format!("/v1/reviews/{id}/reject"),
        Some(r#"{"reason":"not today"}"#),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    let out = held.await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("not today"), "{stderr}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("still here"));
    let kept = env._pg.psql(
        "appdb",
        "SELECT count(*) FROM pg_tables WHERE tablename = 't2'",
    );
    assert_eq!(kept.trim(), "1");

    // A session ended from the admin API (once the earlier sessions have left the list).
    let start = Instant::now();
    loop {
        let (_, body) = admin(&env, OPS, "GET", "/v1/sessions", None).await;
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        if v["live"].as_array().is_some_and(Vec::is_empty) {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "{body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let c = conn.clone();
    let long = tokio::task::spawn_blocking(move || psql(&c, "SELECT pg_sleep(60)", true));
    let start = Instant::now();
    let sid = loop {
        let (_, body) = admin(&env, OPS, "GET", "/v1/sessions", None).await;
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        if let Some(s) = v["live"].as_array().and_then(|a| a.first()) {
            if s["resource"] == "appdb" {
                break s["id"].as_str().unwrap().to_owned();
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "session never live: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let (code, body) = admin(&env, OPS, "DELETE", &format!("/v1/sessions/{sid}"), None).await;
    assert_eq!(code, 200, "{body}");
    let out = long.await.unwrap();
    assert!(!out.status.success(), "a killed session cannot succeed");
    let (code, _) = admin(&env, OPS, "DELETE", &format!("/v1/sessions/{sid}"), None).await;
    assert_eq!(code, 404, "a session is killed once");

    // A target whose certificate does not verify: refused, and counted by reason.
    let bad = conn.replace("dbname=appdb", "dbname=badtls");
    let out = blocking(move || psql(&bad, "SELECT 1", true)).await;
    assert!(!out.status.success());

    // Metrics count what happened.
    let (code, m) = admin(&env, OPS, "GET", "/metrics", None).await;
    assert_eq!(code, 200);
    assert!(
        metric(&m, "hoop_connections_total{listener=\"pg\"}") >= 4,
        "{m}"
    );
    assert_eq!(
        metric(
            &m,
            "hoop_policy_decisions_total{action=\"command\",decision=\"review\"}"
        ),
        2,
        "{m}"
    );
    assert_eq!(
        metric(&m, "hoop_approvals_total{state=\"approved\"}"),
        1,
        "{m}"
    );
    assert_eq!(
        metric(&m, "hoop_approvals_total{state=\"rejected\"}"),
        1,
        "{m}"
    );
    assert!(
        metric(&m, "hoop_command_duration_seconds_count") >= 2,
        "{m}"
    );
    assert!(m.contains("hoop_sessions_live "), "{m}");
    assert!(metric(&m, "hoop_masked_values_total") >= 4, "{m}");
    assert!(
        m.contains("hoop_upstream_tls_refusals_total{reason=\""),
        "{m}"
    );

    // A new policy takes effect without a restart: DROP is now denied outright.
    let strict = config::parse(
        "[[policy.rules]]\nname = \"all\"\nactions = [\"connect\", \"read\"]\ndecision = \"allow\"\n",
    )
    .unwrap();
    env.gw().reloader().reload_policy(&strict).unwrap();
    let c = conn.clone();
    let out = blocking(move || psql(&c, "DROP TABLE t2", true)).await;
    assert!(!out.status.success());
    let (_, pending) = admin(&env, OPS, "GET", "/v1/reviews", None).await;
    assert!(
        pending.contains("\"reviews\": []"),
        "denied, not held: {pending}"
    );

    // Recordings: served by the admin API, verified, and an edited copy fails.
    let gw = env.gw.take().unwrap();
    let report = gw.shutdown(Duration::from_secs(10)).await;
    assert_eq!(report.aborted, 0);
    let recs: Vec<PathBuf> = std::fs::read_dir(env.dir.path().join("data/recordings"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(recs.len() >= 4, "{recs:?}");
    let mut with_drop = None;
    for r in &recs {
        let ok = replay::verify(r).unwrap_or_else(|e| panic!("{e}"));
        assert!(ok.starts_with("OK: "), "{ok}");
        let text = std::fs::read_to_string(r).unwrap();
        if text.contains("DROP TABLE t\"") {
            with_drop = Some((r.clone(), text));
        }
    }
    let (path, text) = with_drop.expect("the approved DROP is recorded");
    let transcript = replay::transcript(text.as_bytes()).unwrap();
    assert!(
        transcript.contains("REVIEW destructive DROP TABLE t"),
        "{transcript}"
    );
    assert!(transcript.contains("approved by ops"), "{transcript}");
    let edited = env.dir.path().join("edited.jsonl");
    std::fs::write(
        &edited,
        text.replacen("DROP TABLE t\"", "DROP TABLE x\"", 1),
    )
    .unwrap();
    let broken = replay::verify(&edited).unwrap_err();
    assert!(
        broken.contains("BROKEN") && broken.contains("line "),
        "{broken}"
    );
    let replay_bin = example_binary("replay");
    if replay_bin.is_file() {
        let ok = Command::new(&replay_bin)
            .arg("--verify")
            .arg(&path)
            .output()
            .unwrap();
        assert_eq!(ok.status.code(), Some(0));
        assert!(String::from_utf8_lossy(&ok.stdout).starts_with("OK: "));
        let bad = Command::new(&replay_bin)
            .arg("--verify")
            .arg(&edited)
            .output()
            .unwrap();
        assert_eq!(bad.status.code(), Some(1));
        assert!(String::from_utf8_lossy(&bad.stdout).contains("line "));
        let shown = Command::new(&replay_bin).arg(&path).output().unwrap();
        assert!(String::from_utf8_lossy(&shown.stdout).contains("DROP TABLE t"));
    } else {
        eprintln!(
            "note: {} not built; replay binary check skipped",
            replay_bin.display()
        );
    }
    let _ = env.pg_port;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recording_is_served_by_the_admin_api() {
    let env = setup().await;
    let c = env.conn(ALICE);
    let out = blocking(move || psql(&c, "SELECT 42", true)).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // psql may exit before the gateway has moved the session to the recent list.
    let start = Instant::now();
    let id = loop {
        let (_, body) = admin(&env, OPS, "GET", "/v1/sessions", None).await;
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        if let Some(id) = v["recent"][0]["id"].as_str() {
            break id.to_owned();
        }
        assert!(start.elapsed() < Duration::from_secs(60), "{body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // The recording is complete once the session's end is written; poll briefly.
    let start = Instant::now();
    loop {
        let (code, rec) = admin(
            &env,
            OPS,
            "GET",
            &format!("/v1/sessions/{id}/recording"),
            None,
        )
        .await;
        if code == 200 && rec.contains("session_end") {
            assert!(rec.contains("SELECT 42"), "{rec}");
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "{code} {rec}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (code, _) = admin(&env, OPS, "GET", "/v1/sessions/not-an-id/recording", None).await;
    assert_eq!(code, 400);
}

/// `POST /v1/reload` on the admin API does what SIGHUP does and says what happened: a
/// changed masking rule applies to the next session; a file that does not load answers
/// 422 with the key at fault, and the rules in force stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_from_the_admin_api() {
    let env = setup().await;
    let email = |env: &Env| {
        let c = env.conn(ALICE);
        blocking(move || {
            let out = psql(&c, "SELECT email FROM customers WHERE id = 1", true);
            String::from_utf8_lossy(&out.stdout).trim().to_owned()
        })
    };
    assert_eq!(email(&env).await, "a***@example.com");

    let path = env.dir.path().join("gateway.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    // The file as given, then `POST /v1/reload`: the status and the report.
    let reload = |contents: String| {
        std::fs::write(&path, contents).unwrap();
        let env = &env;
        async move {
            let (code, body) = admin(env, OPS, "POST", "/v1/reload", None).await;
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            (code, v, body)
        }
    };
    let (code, v, body) =
        reload(text.replace("strategy = \"partial\"", "strategy = \"redact\"")).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(v["complete"], true, "{body}");
    assert_eq!(v["configuration"]["reloaded"], true, "{body}");
    assert_eq!(
        v["configuration"]["detail"]["waits_for_restart"],
        serde_json::json!([]),
        "{body}"
    );
    assert_eq!(v["tokens"]["detail"]["count"], 1, "{body}");
    assert_eq!(email(&env).await, "[REDACTED:EMAIL]");

    // A policy rule that does not parse: 422, the key at fault, nothing changed.
    let (code, v, body) = reload(format!(
        "{text}\n[[policy.rules]]\nname = \"x\"\ndecision = \"maybe\"\n"
    ))
    .await;
    assert_eq!(code, 422, "{body}");
    assert_eq!(v["complete"], false, "{body}");
    assert_eq!(v["configuration"]["reloaded"], false, "{body}");
    let error = v["configuration"]["error"].as_str().unwrap();
    assert!(error.contains("policy.rules"), "{error}");
    assert_eq!(email(&env).await, "[REDACTED:EMAIL]");

    // Not without an admin credential.
    let (code, _) = admin(&env, "not-a-token", "POST", "/v1/reload", None).await;
    assert_eq!(code, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn defaults_make_pki_tokens_and_answer_no_resource() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "[data]\ndir = \"{}\"\n[[listeners]]\nname = \"pg\"\nprotocol = \"postgres\"\nbind = \"127.0.0.1:0\"\n[admin]\nbind = \"127.0.0.1:0\"\n",
        dir.path().display()
    );
    let gw = Gateway::start(config::parse(&text).unwrap()).await.unwrap();
    let info = gw.info().clone();
    let demo = info
        .demo_token
        .clone()
        .expect("demo token printed at creation");
    let admin_token = info
        .admin_token
        .clone()
        .expect("admin token printed at creation");
    let stored = std::fs::read_to_string(dir.path().join("tokens")).unwrap();
    assert!(!stored.contains(&demo), "only the hash is stored");
    assert!(stored.contains(&hash_token(&demo)));
    let ca = dir.path().join("dev-ca.crt");
    assert!(ca.is_file());
    assert!(gw.banner().contains(&demo));

    let conn = format!(
        "host=localhost port={} dbname=anything user=demo password={demo} sslmode=verify-full sslrootcert={}",
        gw.listener_addr("pg").unwrap().port(),
        ca.display()
    );
    let out = blocking(move || psql(&conn, "SELECT 1", true)).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no resource named \"anything\""),
        "{stderr}"
    );

    // Token rotation without restart: the new token works, the removed one does not.
    let port = gw.listener_addr("pg").unwrap().port();
    let fresh = "fresh-token-0123456789abcdef";
    std::fs::write(
        dir.path().join("tokens"),
        format!("erin::{}\n", hash_token(fresh)),
    )
    .unwrap();
    assert_eq!(gw.reloader().reload_tokens().unwrap(), 1);
    let ca4 = ca.clone();
    let (with_new, with_old) = blocking(move || {
        let c = |t: &str| {
            format!(
                "host=localhost port={port} dbname=anything user=x password={t} sslmode=verify-full sslrootcert={}",
                ca4.display()
            )
        };
        (psql(&c(fresh), "SELECT 1", true), psql(&c(&demo), "SELECT 1", true))
    })
    .await;
    assert!(String::from_utf8_lossy(&with_new.stderr).contains("no resource named"));
    let old_err = String::from_utf8_lossy(&with_old.stderr);
    assert!(!old_err.contains("no resource named"), "{old_err}");

    let url = format!("https://{}/v1/sessions", gw.admin_addr().unwrap());
    let ca2 = ca.clone();
    let (code, body) = blocking(move || curl(&ca2, &admin_token, "GET", &url, None)).await;
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"user\": \"demo\""), "{body}");
    // Bad requests get clear answers, never a crash.
    let base = format!("https://{}", gw.admin_addr().unwrap());
    let (ca3, tok) = (ca.clone(), info.admin_token.clone().unwrap());
    let codes = blocking(move || {
        let big = format!("{{\"reason\":\"{}\"}}", "x".repeat(100_000));
        [
            curl(
                &ca3,
                &tok,
                "POST",
                &format!("{base}/v1/reviews/r-x/approve"),
                Some(&big),
            )
            .0,
            curl(
                &ca3,
                &tok,
                "POST",
                &format!("{base}/v1/reviews/r-x/approve"),
                Some("not json"),
            )
            .0,
            curl(
                &ca3,
                &tok,
                "POST",
                &format!("{base}/v1/reviews/r-x/reject"),
                None,
            )
            .0,
            curl(&ca3, &tok, "GET", &format!("{base}/v1/nothing"), None).0,
            curl(
                &ca3,
                &tok,
                "DELETE",
                &format!("{base}/v1/sessions/0000000000000000-1"),
                None,
            )
            .0,
        ]
    })
    .await;
    assert_eq!(codes, [413, 400, 404, 404, 404]);
    assert!(gw.reloader().reload_certificates().is_empty());
    gw.shutdown(Duration::from_secs(5)).await;

    // A second start reuses the files and shows no token again.
    let gw = Gateway::start(config::parse(&text).unwrap()).await.unwrap();
    assert!(gw.info().demo_token.is_none() && gw.info().admin_token.is_none());
    gw.shutdown(Duration::from_secs(5)).await;
}

#[test]
fn broken_config_exits_2_with_its_message() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[[listeners]]\nname = \"pg\"\nprotocol = \"postgres\"\nbind = \"x\"\n",
    )
    .unwrap();
    let want = "config error: listeners[0].bind: invalid socket address \"x\"";
    assert_eq!(config::load(&bad).unwrap_err().to_string(), want);

    let bin = example_binary("gateway");
    if !bin.is_file() {
        eprintln!(
            "note: {} not built (cargo build -p hoop-examples --examples); binary check skipped",
            bin.display()
        );
        return;
    }
    let out = Command::new(&bin)
        .arg("--config")
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(String::from_utf8_lossy(&out.stderr).trim(), want);

    // A secret-looking value is never echoed.
    std::fs::write(&bad, "[admin]\ntoken_hash = \"hoop_supersecret\"\n").unwrap();
    let out = Command::new(&bin)
        .arg("--config")
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("config error: admin.token_hash:"),
        "{stderr}"
    );
    assert!(!stderr.contains("supersecret"), "{stderr}");
}

/// The compiled binary: starts from a config file, answers on its admin API, reloads on
/// SIGHUP and drains on SIGTERM with exit code 0.
#[test]
fn binary_reloads_on_sighup_and_drains_on_sigterm() {
    use std::io::{BufRead, BufReader};
    let bin = example_binary("gateway");
    if !bin.is_file() {
        eprintln!("note: {} not built; skipped", bin.display());
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("gw.toml");
    std::fs::write(
        &cfg,
        format!(
            "[data]\ndir = \"{}\"\n[[listeners]]\nname = \"pg\"\nprotocol = \"postgres\"\nbind = \"127.0.0.1:0\"\n[admin]\nbind = \"127.0.0.1:0\"\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let log = dir.path().join("stderr.log");
    let mut child = Command::new(&bin)
        .arg("--config")
        .arg(&cfg)
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let pid = child.id().to_string();
    let mut admin = None;
    let mut tokens = Vec::new();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(a) = line.trim().strip_prefix("admin API: https://") {
            admin = Some(a.to_owned());
        }
        if line.contains("token (shown once") {
            tokens.push(line.rsplit(' ').next().unwrap().to_owned());
        }
        if line.starts_with("Try:") {
            break;
        }
    }
    let admin = admin.expect("the banner names the admin API");
    let ca = dir.path().join("dev-ca.crt");
    let (code, body) = curl(&ca, "", "GET", &format!("https://{admin}/readyz"), None);
    assert_eq!((code, body.trim()), (200, "ready"));

    let wait_log = |what: &str| {
        let start = Instant::now();
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if text.contains(what) {
                return text;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "no {what:?} in\n{text}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    assert!(
        Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .unwrap()
            .success()
    );
    wait_log("certificates reloaded");
    wait_log("policy reloaded");
    wait_log("static tokens reloaded");
    wait_log("masking reloaded: off");
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    let text = wait_log("stopped:");
    assert!(text.contains("SIGTERM received"), "{text}");
    assert_eq!(tokens.len(), 2, "demo and admin tokens are shown once");
    for t in &tokens {
        assert!(t.starts_with("hoop_"));
        assert!(!text.contains(t.as_str()), "a token reached the log");
    }
}

/// With `admin.tls.client_ca`, callers are identified by their client certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api_with_client_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let admins = hoop_testkit::TestCa::new("admins");
    let ca_path = admins.write_cert(dir.path(), "admins-ca.crt");
    let (cert, key) = admins.client("carol").write(dir.path(), "carol");
    let text = format!(
        "[data]\ndir = \"{d}\"\n[[listeners]]\nname = \"pg\"\nprotocol = \"postgres\"\nbind = \"127.0.0.1:0\"\n[admin]\nbind = \"127.0.0.1:0\"\ntls = {{ client_ca = \"{ca}\" }}\n",
        d = dir.path().display(),
        ca = ca_path.display()
    );
    let gw = Gateway::start(config::parse(&text).unwrap()).await.unwrap();
    assert!(
        gw.info().admin_token.is_none(),
        "no token is made when certificates are used"
    );
    let url = format!(
        "https://{}/v1/reviews/r-unknown/approve",
        gw.admin_addr().unwrap()
    );
    let server_ca = dir.path().join("dev-ca.crt");
    let out = blocking(move || {
        let with = Command::new("curl")
            .args(["-sS", "-X", "POST", "-w", "\n%{http_code}", "--cacert"])
            .arg(&server_ca)
            .arg("--cert")
            .arg(&cert)
            .arg("--key")
            .arg(&key)
            .arg(&url)
            .output()
            .unwrap();
        let without = Command::new("curl")
            .args(["-sS", "-X", "POST", "--cacert"])
            .arg(&server_ca)
            .arg(&url)
            .output()
            .unwrap();
        (with, without)
    })
    .await;
    let body = String::from_utf8_lossy(&out.0.stdout);
    // Authenticated as carol: the review is unknown (404), not a 401.
    assert!(body.ends_with("404"), "{body}");
    assert!(
        !out.1.status.success(),
        "no client certificate: the handshake fails"
    );
    gw.shutdown(Duration::from_secs(5)).await;
}

/// A `tcp` listener from the config: TLS from the client, `AUTH <token>`, then bytes
/// relayed to the target (here a plaintext echo server, explicitly opted in).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_listener_relays_after_auth_line() {
    use rustls_pki_types::pem::PemObject;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let echo = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let echo_addr = echo.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = echo.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    let dir = data_dir_with_alice();
    let text = format!(
        "[data]\ndir = \"{d}\"\n[[listeners]]\nname = \"echo\"\nprotocol = \"tcp\"\nbind = \"127.0.0.1:0\"\n\
         [[resources]]\nname = \"echo\"\nprotocol = \"tcp\"\nlistener = \"echo\"\ntarget = \"{echo_addr}\"\nplaintext = true\n\
         [identity]\nstatic_tokens_file = \"{d}/tokens\"\n[admin]\nenabled = false\n",
        d = dir.path().display()
    );
    let gw = Gateway::start(config::parse(&text).unwrap()).await.unwrap();
    assert!(gw.info().warnings.iter().any(|w| w.contains("PLAINTEXT")));
    assert!(gw.admin_addr().is_none());

    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pki_types::CertificateDer::pem_file_iter(dir.path().join("dev-ca.crt")).unwrap()
    {
        roots.add(c.unwrap()).unwrap();
    }
    let client = rustls::ClientConfig::builder_with_provider(hoop_core::crypto_provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(client));
    let tcp = tokio::net::TcpStream::connect(gw.listener_addr("echo").unwrap())
        .await
        .unwrap();
    let mut tls = connector
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .unwrap();
    tls.write_all(format!("AUTH {ALICE}\nhello through hoop").as_bytes())
        .await
        .unwrap();
    let mut buf = vec![0u8; 64];
    let mut got = Vec::new();
    while !got.ends_with(b"hello through hoop") {
        let n = tls.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed early: {:?}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    assert_eq!(got, b"OK\nhello through hoop");
    drop(tls);
    assert_eq!(gw.metrics().connections("echo"), 1);
    gw.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_listener_masks_an_nginx_upstream() {
    let nginx = hoop_testkit::nginx::NginxServer::start(hoop_testkit::nginx::NginxOptions {
        files: vec![(
            "users.json".into(),
            br#"{"users":[{"name":"Ann","email":"ann@example.com"}]}"#.to_vec(),
        )],
        ..Default::default()
    })
    .expect("nginx is required for this test (./scripts/test installs it)");
    let dir = data_dir_with_alice();
    std::fs::write(dir.path().join("api-token"), "upstream-secret\n").unwrap();
    let text = format!(
        "[data]\ndir = \"{d}\"\n[[listeners]]\nname = \"api\"\nprotocol = \"http\"\nbind = \"127.0.0.1:0\"\n\
         [[resources]]\nname = \"api\"\nprotocol = \"http\"\nlistener = \"api\"\ntarget = \"127.0.0.1:{port}\"\n\
         password_file = \"{d}/api-token\"\n\
         [resources.tls]\nca_file = \"{ca}\"\nserver_name = \"localhost\"\n\
         [identity]\nstatic_tokens_file = \"{d}/tokens\"\n[admin]\nenabled = false\n\
         [[masking.detectors]]\ndetector = \"email\"\nstrategy = \"redact\"\n",
        d = dir.path().display(),
        port = nginx.port,
        ca = nginx.ca_path().display(),
    );
    let gw = Gateway::start(config::parse(&text).unwrap()).await.unwrap();
    let addr = gw.listener_addr("api").unwrap();
    let ca = dir.path().join("dev-ca.crt");
    let url = format!("https://localhost:{}/users.json", addr.port());
    let resolve = format!("localhost:{}:127.0.0.1", addr.port());
    let out = blocking(move || {
        Command::new("curl")
            .args(["-sS", "--http2", "--cacert"])
            .arg(&ca)
            .args([
                "--resolve",
                &resolve,
                "-H",
                &format!("Authorization: Bearer {ALICE}"),
            ])
            .arg(&url)
            .output()
            .unwrap()
    })
    .await;
    let body = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(body.contains("[REDACTED:EMAIL]"), "{body}");
    assert!(!body.contains("ann@example.com"), "{body}");
    gw.shutdown(Duration::from_secs(5)).await;
}

/// `curl` to the gateway at `port` for the URL host `host` (resolved to 127.0.0.1),
/// optionally with another `Host` header: (status, body).
fn curl_host(
    ca: &Path,
    host: &str,
    port: u16,
    host_header: Option<&str>,
    token: Option<&str>,
    http2: bool,
) -> (u16, String) {
    let mut c = Command::new("curl");
    c.args(["-sS", "--cacert"]).arg(ca).args([
        if http2 { "--http2" } else { "--http1.1" },
        "-w",
        "\n%{http_code}",
    ]);
    if host != "127.0.0.1" {
        c.args(["--resolve", &format!("{host}:{port}:127.0.0.1")]);
    }
    if let Some(h) = host_header {
        c.args(["-H", &format!("Host: {h}")]);
    }
    if let Some(t) = token {
        c.args(["-H", &format!("Authorization: Bearer {t}")]);
    }
    let out = c
        .arg(format!("https://{host}:{port}/whoami"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "curl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap();
    (code.trim().parse().unwrap(), body.to_owned())
}

/// Two http resources behind one listener of the compiled gateway, told apart by Host:
/// each host reaches its own resource (nginx echoes the credential that resource
/// injects), an unknown host gets 404 before authentication; a SIGHUP that changes one
/// resource's credential applies to the next connection.
#[test]
fn http_listener_routes_two_resources_by_host() {
    let nginx = hoop_testkit::nginx::NginxServer::start(hoop_testkit::nginx::NginxOptions {
        extra_server: vec![
            "location = /whoami { default_type text/plain; \
             return 200 \"key=$http_x_upstream_key auth=$http_authorization\\n\"; }"
                .to_owned(),
        ],
        ..Default::default()
    })
    .expect("nginx is required for this test (./scripts/test installs it)");
    let dir = data_dir_with_alice();
    let d = dir.path();
    std::fs::write(d.join("key-a"), "secret-of-a\n").unwrap();
    std::fs::write(d.join("key-b"), "secret-of-b\n").unwrap();
    // The development certificate covers localhost and 127.0.0.1: one host name each.
    let text = format!(
        "[data]\ndir = \"{d}\"\n[[listeners]]\nname = \"web\"\nprotocol = \"http\"\nbind = \"127.0.0.1:0\"\n\
         [[resources]]\nname = \"api-a\"\nprotocol = \"http\"\nlistener = \"web\"\ntarget = \"127.0.0.1:{port}\"\n\
         hosts = [\"LocalHost\"]\npassword_file = \"{d}/key-a\"\ncredential_header = \"X-Upstream-Key\"\n\
         tls = {{ ca_file = \"{ca}\", server_name = \"localhost\" }}\n\
         [[resources]]\nname = \"api-b\"\nprotocol = \"http\"\nlistener = \"web\"\ntarget = \"127.0.0.1:{port}\"\n\
         hosts = [\"127.0.0.1\"]\npassword_file = \"{d}/key-b\"\n\
         tls = {{ ca_file = \"{ca}\", server_name = \"localhost\" }}\n\
         [identity]\nstatic_tokens_file = \"{d}/tokens\"\n[admin]\nenabled = false\n",
        d = d.display(),
        port = nginx.port,
        ca = nginx.ca_path().display(),
    );
    let cfg = d.join("gw.toml");
    std::fs::write(&cfg, &text).unwrap();
    let Some(gw) = GatewayProcess::start(&cfg, &d.join("stderr.log")) else {
        return;
    };
    let port = gw.addr("web").port();
    let ca = d.join("dev-ca.crt");

    // What nginx echoes for a host: the credential its resource injected.
    let echoed = |host: &str, want: &str| {
        for http2 in [false, true] {
            let (code, body) = curl_host(&ca, host, port, None, Some(ALICE), http2);
            assert_eq!(code, 200, "{body}");
            assert_eq!(body.trim(), want, "{host} http2={http2}");
        }
    };
    echoed("localhost", "key=secret-of-a auth=");
    echoed("127.0.0.1", "key= auth=Bearer secret-of-b");
    // Another host: 404 whether or not the caller is authenticated.
    for token in [None, Some(ALICE)] {
        let (code, body) = curl_host(&ca, "localhost", port, Some("other.example"), token, false);
        assert_eq!(code, 404, "{body}");
        assert!(!body.contains("secret-of"), "{body}");
    }
    // A known host without a token is refused by authentication, not routed.
    let (code, body) = curl_host(&ca, "localhost", port, None, None, false);
    assert_eq!(code, 401, "{body}");
    assert!(!body.contains("secret-of"), "{body}");

    // SIGHUP with api-b's credential changed (another secret, in a named header): the
    // next connection gets it, api-a is unchanged.
    std::fs::write(d.join("key-c"), "secret-of-c\n").unwrap();
    let text = text.replace(
        &format!("password_file = \"{d}/key-b\"\n", d = d.display()),
        &format!(
            "password_file = \"{d}/key-c\"\ncredential_header = \"X-Upstream-Key\"\n",
            d = d.display()
        ),
    );
    assert!(text.contains("key-c"));
    std::fs::write(&cfg, text).unwrap();
    let (_, line) = gw.reload("resources reloaded", 1);
    assert!(
        line.contains("listener=web resources=api-a, api-b"),
        "{line}"
    );
    echoed("127.0.0.1", "key=secret-of-c auth=");
    echoed("localhost", "key=secret-of-a auth=");

    assert_eq!(gw.stop(), Some(0));
    let log = std::fs::read_to_string(d.join("stderr.log")).unwrap();
    assert!(
        !log.contains("secret-of"),
        "an injected secret reached the log"
    );
}

/// An http listener with several resources, one without `hosts`: one config error line
/// naming the key, exit code 2 (with and without --check).
#[test]
fn several_http_resources_without_hosts_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("gw.toml");
    std::fs::write(
        &cfg,
        "[[listeners]]\nname = \"web\"\nprotocol = \"http\"\nbind = \"127.0.0.1:0\"\n\
         [[resources]]\nname = \"a\"\nprotocol = \"http\"\nlistener = \"web\"\ntarget = \"127.0.0.1:1\"\nplaintext = true\nhosts = [\"a.example\"]\n\
         [[resources]]\nname = \"b\"\nprotocol = \"kubernetes\"\nlistener = \"web\"\ntarget = \"127.0.0.1:2\"\nplaintext = true\n",
    )
    .unwrap();
    let err = config::load(&cfg).unwrap_err();
    assert_eq!(err.key, "resources[1].hosts", "{err}");
    let bin = example_binary("gateway");
    if !bin.is_file() {
        eprintln!("note: {} not built; binary check skipped", bin.display());
        return;
    }
    for check in [true, false] {
        let mut c = Command::new(&bin);
        c.arg("--config").arg(&cfg);
        if check {
            c.arg("--check");
        }
        let out = c.output().unwrap();
        assert_eq!(out.status.code(), Some(2), "check={check}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
        assert!(
            stderr.starts_with("config error: resources[1].hosts: "),
            "{stderr}"
        );
        assert!(out.stdout.is_empty(), "check={check}");
    }
}

/// `[runtime] threads = 1`: the compiled gateway runs on one event loop and serves psql.
/// With `--log-format json` every log line is one JSON object, and a session's lines carry
/// its user and resource (never the token or the target's password).
#[test]
fn single_thread_runtime_serves_psql() {
    let pg = PgServer::start(PgOptions {
        users: vec![("app".into(), "app-secret".into())],
        databases: vec!["appdb".into()],
        ..PgOptions::default()
    });
    let dir = data_dir_with_alice();
    let d = dir.path();
    std::fs::write(d.join("pgpass"), "app-secret\n").unwrap();
    let text = format!(
        "[runtime]\nthreads = 1\n[data]\ndir = \"{d}\"\n\
         [[listeners]]\nname = \"pg\"\nprotocol = \"postgres\"\nbind = \"127.0.0.1:0\"\n\
         [[resources]]\nname = \"appdb\"\nprotocol = \"postgres\"\nlistener = \"pg\"\ntarget = \"127.0.0.1:{port}\"\n\
         database = \"appdb\"\nuser = \"app\"\npassword_file = \"{d}/pgpass\"\n\
         tls = {{ ca_file = \"{ca}\", server_name = \"localhost\" }}\n\
         [identity]\nstatic_tokens_file = \"{d}/tokens\"\n[admin]\nenabled = false\n\
         [[policy.rules]]\nname = \"read\"\nactions = [\"connect\", \"read\"]\ndecision = \"allow\"\n",
        d = d.display(),
        port = pg.port,
        ca = pg.ca_path().display(),
    );
    let cfg = d.join("gw.toml");
    std::fs::write(&cfg, text).unwrap();
    let log = d.join("stderr.log");
    let Some(gw) = GatewayProcess::start_with(&cfg, &log, &["--log-format", "json"]) else {
        return;
    };
    let conn = format!(
        "host=127.0.0.1 port={} dbname=appdb user=alice password={ALICE} sslmode=verify-full sslrootcert={}",
        gw.addr("pg").port(),
        d.join("dev-ca.crt").display()
    );
    let out = psql(&conn, "SELECT 40 + 2, current_user", true);
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "42|app");
    assert_eq!(gw.stop(), Some(0));

    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let established = lines
        .iter()
        .find(|l| l["fields"]["message"] == "session established")
        .unwrap_or_else(|| panic!("no session line in\n{text}"));
    assert_eq!(established["level"], "INFO", "{established}");
    assert_eq!(established["span"]["user"], "alice", "{established}");
    assert_eq!(established["span"]["resource"], "appdb", "{established}");
    assert_eq!(established["span"]["listener"], "pg", "{established}");
    assert!(
        !text.contains(ALICE) && !text.contains("app-secret"),
        "{text}"
    );
}

/// SIGHUP reloads the masking rules of the compiled gateway: a session already running
/// keeps the rules it started with, a new session gets the new ones; a broken masking
/// section is logged as an error and the rules in force stay (never "no masking").
#[test]
fn sighup_reloads_masking_rules_for_new_sessions() {
    let pg = PgServer::start(PgOptions {
        users: vec![("app".into(), "app-secret".into())],
        databases: vec!["appdb".into()],
        ..PgOptions::default()
    });
    pg.psql(
        "appdb",
        "CREATE TABLE customers (id int, email text, card text); \
         INSERT INTO customers VALUES (1, 'alice@example.com', 'card-0001'); \
         ALTER TABLE customers OWNER TO app;",
    );
    let dir = data_dir_with_alice();
    let d = dir.path();
    std::fs::write(d.join("pgpass"), "app-secret\n").unwrap();
    let base = format!(
        "[data]\ndir = \"{d}\"\n\
         [[listeners]]\nname = \"pg\"\nprotocol = \"postgres\"\nbind = \"127.0.0.1:0\"\n\
         [[resources]]\nname = \"appdb\"\nprotocol = \"postgres\"\nlistener = \"pg\"\ntarget = \"127.0.0.1:{port}\"\n\
         database = \"appdb\"\nuser = \"app\"\npassword_file = \"{d}/pgpass\"\n\
         tls = {{ ca_file = \"{ca}\", server_name = \"localhost\" }}\n\
         [identity]\nstatic_tokens_file = \"{d}/tokens\"\n[admin]\nenabled = false\n",
        d = d.display(),
        port = pg.port,
        ca = pg.ca_path().display(),
    );
    let partial = "[[masking.detectors]]\ndetector = \"email\"\nstrategy = \"partial\"\n";
    let redact = "[[masking.detectors]]\ndetector = \"email\"\nstrategy = \"redact\"\n\
                  [[masking.field_rules]]\npattern = \"card\"\nlabel = \"CARD\"\n";
    let cfg = d.join("gw.toml");
    std::fs::write(&cfg, format!("{base}{partial}")).unwrap();
    let log = d.join("stderr.log");
    let Some(gw) = GatewayProcess::start(&cfg, &log) else {
        return;
    };
    let conn = format!(
        "host=localhost port={} dbname=appdb user=alice password={ALICE} sslmode=verify-full sslrootcert={}",
        gw.addr("pg").port(),
        d.join("dev-ca.crt").display()
    );
    let query = "SELECT email, card FROM customers";
    let out = psql(&conn, query, true);
    let rows = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(
        rows.trim(),
        "a***@example.com|card-0001",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // New rules in the file. One session runs a query, sends SIGHUP from inside psql,
    // waits for the reload in the log, and runs the query again: it keeps its rules.
    std::fs::write(&cfg, format!("{base}{redact}")).unwrap();
    let script = format!(
        "{query};\n\\! kill -HUP {pid}\n\
         \\! for i in $(seq 400); do grep -q 'masking reloaded' {log} && break; sleep 0.05; done\n{query};\n",
        pid = gw.pid(),
        log = log.display(),
    );
    let out = Command::new("psql")
        .arg(&conn)
        .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write as _;
            c.stdin.take().unwrap().write_all(script.as_bytes())?;
            c.wait_with_output()
        })
        .unwrap();
    let rows = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        rows.trim().lines().collect::<Vec<_>>(),
        ["a***@example.com|card-0001", "a***@example.com|card-0001"],
        "a running session keeps the rules it started with"
    );
    let text = gw.wait_log("masking reloaded", 1);
    assert!(text.contains("1 detector(s), 1 field rule(s)"), "{text}");
    // A new session gets the new rules.
    let out = psql(&conn, query, true);
    let rows = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(rows.trim(), "[REDACTED:EMAIL]|[REDACTED:CARD]");

    // A broken masking section: an error in the log, the rules in force stay.
    std::fs::write(
        &cfg,
        format!("{base}[[masking.detectors]]\ndetector = \"emial\"\n"),
    )
    .unwrap();
    let (text, line) = gw.reload("configuration not reloaded", 1);
    assert!(
        line.contains("ERROR") && line.contains("masking.detectors"),
        "{line}"
    );
    assert_eq!(text.matches("masking reloaded").count(), 1, "{text}");
    let out = psql(&conn, query, true);
    let rows = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(rows.trim(), "[REDACTED:EMAIL]|[REDACTED:CARD]");
    assert_eq!(gw.stop(), Some(0));
}

/// SIGHUP reloads the resources behind a listener: a database added to the file is
/// reachable by the next connection and one removed is refused; a psql session opened
/// before keeps its target, and its Ctrl-C (a CancelRequest on a new connection, which
/// the new adapter serves) still reaches its backend. A listener's own settings wait for
/// a restart, and a resource that does not build leaves everything as it was.
#[test]
fn sighup_reloads_resources_and_keeps_running_sessions() {
    let pg = PgServer::start(PgOptions {
        users: vec![("app".into(), "app-secret".into())],
        databases: vec!["appdb".into(), "otherdb".into()],
        ..PgOptions::default()
    });
    pg.psql(
        "otherdb",
        "CREATE TABLE marker (v text); INSERT INTO marker VALUES ('other'); \
         ALTER TABLE marker OWNER TO app;",
    );
    let dir = data_dir_with_alice();
    let d = dir.path();
    std::fs::write(d.join("pgpass"), "app-secret\n").unwrap();
    let base = |bind: &str| {
        format!(
            "[data]\ndir = \"{d}\"\n\
             [[listeners]]\nname = \"pg\"\nprotocol = \"postgres\"\nbind = \"{bind}\"\n\
             [identity]\nstatic_tokens_file = \"{d}/tokens\"\n[admin]\nenabled = false\n",
            d = d.display(),
        )
    };
    let resource = |name: &str, ca: &Path| {
        format!(
            "[[resources]]\nname = \"{name}\"\nprotocol = \"postgres\"\nlistener = \"pg\"\n\
             target = \"127.0.0.1:{port}\"\ndatabase = \"{name}\"\nuser = \"app\"\n\
             password_file = \"{d}/pgpass\"\n\
             tls = {{ ca_file = \"{ca}\", server_name = \"localhost\" }}\n",
            d = d.display(),
            port = pg.port,
            ca = ca.display(),
        )
    };
    let cfg = d.join("gw.toml");
    let write_cfg = |bind: &str, resources: &str| {
        std::fs::write(&cfg, format!("{}{resources}", base(bind))).unwrap();
    };
    write_cfg("127.0.0.1:0", &resource("appdb", pg.ca_path()));
    let log = d.join("stderr.log");
    let Some(gw) = GatewayProcess::start(&cfg, &log) else {
        return;
    };
    let conn = |db: &str| {
        format!(
            "host=localhost port={} dbname={db} user=alice password={ALICE} sslmode=verify-full sslrootcert={}",
            gw.addr("pg").port(),
            d.join("dev-ca.crt").display()
        )
    };
    let out = psql(&conn("otherdb"), "SELECT v FROM marker", true);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no resource named \"otherdb\""),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A session on appdb, busy when the reload comes.
    let sleeper = Command::new("psql")
        .arg(conn("appdb"))
        .args(["-X", "-A", "-t", "-c", "SELECT pg_sleep(60)"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let sleeping = || {
        pg.psql(
            "appdb",
            "SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(60)'",
        )
        .trim()
            == "1"
    };
    let start = Instant::now();
    while !sleeping() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "pg_sleep never started"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // appdb is replaced by otherdb in the file.
    write_cfg("127.0.0.1:0", &resource("otherdb", pg.ca_path()));
    let (text, line) = gw.reload("resources reloaded", 1);
    assert!(line.contains("listener=pg resources=otherdb"), "{line}");
    assert!(
        !text.contains("restarts"),
        "nothing waits for a restart: {text}"
    );
    let out = psql(&conn("otherdb"), "SELECT v FROM marker", true);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "other",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = psql(&conn("appdb"), "SELECT 1", true);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no resource named \"appdb\""),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The session started before still runs on appdb; psql's Ctrl-C cancels its query.
    assert!(sleeping());
    let killed = Command::new("kill")
        .args(["-INT", &sleeper.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let out = sleeper.wait_with_output().unwrap();
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("canceling statement due to user request"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A new bind address waits for a restart; the resources are still reloaded.
    write_cfg("127.0.0.1:1", &resource("otherdb", pg.ca_path()));
    let (text, _) = gw.reload("resources reloaded", 2);
    assert!(
        text.contains("listener \"pg\": a new bind address, TLS or limit takes effect when the gateway restarts"),
        "{text}"
    );

    // A resource that does not build (its CA file is missing): nothing changes.
    write_cfg(
        "127.0.0.1:0",
        &(resource("otherdb", pg.ca_path()) + &resource("appdb", &d.join("missing-ca.crt"))),
    );
    let (text, line) = gw.reload("configuration not reloaded", 1);
    assert!(
        line.contains("ERROR") && line.contains("resources[1]"),
        "{line}"
    );
    assert_eq!(text.matches("resources reloaded").count(), 2, "{text}");
    let out = psql(&conn("otherdb"), "SELECT v FROM marker", true);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "other");
    let out = psql(&conn("appdb"), "SELECT 1", true);
    assert!(!out.status.success());
    assert_eq!(gw.stop(), Some(0));
}

/// `[identity] end_sessions_at_expiry = true` (turned on by a reload): a psql session
/// opened with a token that expires a few seconds later is ended by the gateway, and psql
/// says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_end_when_their_token_expires() {
    let pg = tokio::task::spawn_blocking(|| {
        PgServer::start(PgOptions {
            users: vec![("app".into(), "app-secret".into())],
            databases: vec!["appdb".into()],
            ..PgOptions::default()
        })
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (hook, hook_ca, _hooks) = webhook_server(dir.path()).await;
    let path = write_config(dir.path(), &pg, hook, &hook_ca);
    let config = config::load(&path).unwrap();
    assert!(!config.identity.end_sessions_at_expiry);
    let gw = Gateway::start(config).await.unwrap();
    // Turned on by a reload, for the sessions that start after it.
    let text = std::fs::read_to_string(&path).unwrap().replace(
        "[identity]\n",
        "[identity]\nend_sessions_at_expiry = true\n",
    );
    std::fs::write(&path, text).unwrap();
    let config = config::load(&path).unwrap();
    assert!(config.identity.end_sessions_at_expiry);
    assert_eq!(
        gw.reloader().reload_config(&config).unwrap(),
        Vec::<String>::new()
    );
    let port = gw.listener_addr("pg").unwrap().port();
    let ca = dir.path().join("data/dev-ca.crt");

    let mut shown = String::new();
    for attempt in 0..4u32 {
        // A token minted now, expiring a few seconds later (longer when the machine is
        // so slow that psql did not get in before it expired).
        let token = format!("carol-token-{attempt}-0123456789abcdef");
        let at = std::time::SystemTime::now() + Duration::from_secs(4) * 2u32.pow(attempt);
        let line = hoop_core::auth::StaticToken::new("carol", &hash_token(&token))
            .unwrap()
            .with_expiry(at)
            .to_line();
        std::fs::write(
            dir.path().join("tokens"),
            format!("alice:dev:{}\n{line}\n", hash_token(ALICE)),
        )
        .unwrap();
        assert_eq!(gw.reloader().reload_tokens().unwrap(), 2);
        let conn = format!(
            "host=127.0.0.1 port={port} dbname=appdb user=carol password={token} sslmode=verify-full sslrootcert={}",
            ca.display()
        );
        let out = blocking(move || psql(&conn, "SELECT pg_sleep(30)", true)).await;
        shown = String::from_utf8_lossy(&out.stderr).into_owned();
        if !shown.contains("authentication failed") {
            assert!(!out.status.success(), "pg_sleep(30) completed: {shown}");
            break;
        }
    }
    assert!(
        shown.contains("hoop: session terminated by the gateway: credential expired"),
        "{shown}"
    );
    // Alice's token has no expiry: her sessions are not affected.
    let conn = format!(
        "host=127.0.0.1 port={port} dbname=appdb user=alice password={ALICE} sslmode=verify-full sslrootcert={}",
        ca.display()
    );
    let out = blocking(move || psql(&conn, "SELECT pg_sleep(1); SELECT 41 + 1", true)).await;
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("42"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
