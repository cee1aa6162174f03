//! hoop-postgres against a real PostgreSQL 15 (TLS + SCRAM) with real clients: psql,
//! pgbench and tokio-postgres.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::time::{Duration, SystemTime};

use common::{ALICE, BOB, Gateway, Setup, connect, try_connect};
use hoop_core::Identity;
use hoop_core::auth::{StaticToken, hash_token};
use hoop_core::identity::AuthMethod;

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}
fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_query_is_masked_and_recorded() {
    let gw = std::sync::Arc::new(Gateway::start(Setup::default()).await);
    let g = gw.clone();
    let out = blocking(move || {
        g.psql(
            BOB,
            &["-c", "select id, email, ssn, age from users order by id"],
        )
    })
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert_eq!(
        text.trim(),
        "1|[REDACTED:EMAIL]|[REDACTED:SSN]|30\n2|[REDACTED:EMAIL]|[REDACTED:SSN]|40"
    );
    // The session went through verified TLS to the target with the injected login.
    let g = gw.clone();
    let out = blocking(move || {
        g.psql(BOB, &["-c", "select current_user, ssl from pg_stat_ssl join pg_stat_activity using (pid) where pid = pg_backend_pid()"])
    })
    .await;
    assert_eq!(stdout(&out).trim(), "app|t");
    // Recorded, verifiable, without the token or the target password. psql may exit
    // before the gateway has written the end of its session: wait for both ends.
    let ended = common::eventually(|| {
        let recs = gw.recordings();
        recs.len() >= 2
            && recs.iter().all(|r| {
                hoop_core::recording::verify_file(r).is_ok_and(|report| report.is_complete())
            })
    })
    .await;
    assert!(ended, "sessions not recorded: {}", gw.all_recordings_text());
    let recs = gw.recordings();
    assert_eq!(recs.len(), 2, "one recording per session");
    for r in &recs {
        let report = hoop_core::recording::verify_file(r).unwrap();
        assert!(report.is_complete(), "{report:?}");
    }
    let all = gw.all_recordings_text();
    assert!(all.contains("select id, email, ssn, age from users order by id"));
    assert!(all.contains("\"subject\":\"bob\""));
    assert!(!all.contains(BOB), "token in a recording");
    assert!(
        !all.contains("app-secret"),
        "target password in a recording"
    );
    assert!(
        !all.contains("alice@example.com"),
        "unmasked value in a recording"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_token_and_unknown_resource_are_refused() {
    let gw = Gateway::start(Setup::default()).await;
    let err = try_connect(&gw, "not-a-token").await.err().unwrap();
    let db = err.as_db_error().expect("a database error");
    assert_eq!(db.code().code(), "28P01");
    // Plaintext clients are refused.
    let port = gw.addr.port();
    let out = blocking(move || {
        std::process::Command::new("psql")
            .arg(format!(
                "host=127.0.0.1 port={port} user=x dbname=appdb password={BOB} sslmode=disable"
            ))
            .args(["-c", "select 1"])
            .output()
            .unwrap()
    })
    .await;
    assert!(!out.status.success());
    assert!(stderr(&out).contains("requires TLS"), "{}", stderr(&out));
    // Unknown resource.
    let conn = gw.conn_string(BOB).replace("dbname=appdb", "dbname=other");
    let out = blocking(move || {
        std::process::Command::new("psql")
            .arg(conn)
            .args(["-c", "select 1"])
            .output()
            .unwrap()
    })
    .await;
    assert!(
        stderr(&out).contains("no resource named"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extended_protocol_binary_masking_and_deny_keeps_session() {
    let gw = Gateway::start(Setup::default()).await;
    let c = connect(&gw, BOB).await;
    // Extended protocol, binary results (tokio-postgres asks for binary).
    let rows = c
        .query(
            "select id, email, ssn, age from users where id = $1",
            &[&1i32],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    let email: &str = rows[0].get(1);
    assert_eq!(email, "[REDACTED:EMAIL]");
    let ssn: &str = rows[0].get(2);
    assert_eq!(ssn, "[REDACTED:SSN]");
    let age: i32 = rows[0].get(3);
    assert_eq!(age, 30);
    // A destructive statement is denied for bob, with 42501, and the session goes on.
    let err = c.execute("drop table t", &[]).await.unwrap_err();
    assert_eq!(err.as_db_error().unwrap().code().code(), "42501");
    assert!(
        err.as_db_error().unwrap().message().contains("not allowed"),
        "{err:?}"
    );
    let err = c.batch_execute("select 1; drop table t").await.unwrap_err();
    assert_eq!(err.as_db_error().unwrap().code().code(), "42501");
    let err = c.batch_execute("/* x */ DrOp TaBlE t").await.unwrap_err();
    assert_eq!(err.as_db_error().unwrap().code().code(), "42501");
    let n: i64 = c
        .query_one("select count(*) from t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0, "table t still exists and the session works");
    // Pipelining: several queries in flight at once, answers in order.
    let (a, b, d) = tokio::join!(
        c.query_one("select 1::int", &[]),
        c.query_one("select 2::int", &[]),
        c.query_one("select 3::int", &[])
    );
    let v: Vec<i32> = [a, b, d].into_iter().map(|r| r.unwrap().get(0)).collect();
    assert_eq!(v, vec![1, 2, 3]);
    // Pipelined results of different shapes: each result's rows are masked by its own
    // columns (rows masked by the previous result's columns would let the email through).
    let (x, y) = tokio::join!(
        c.query_one("select email, age from users where id = 1", &[]),
        c.query_one("select age, email from users where id = 1", &[])
    );
    let (x, y) = (x.unwrap(), y.unwrap());
    assert_eq!(x.get::<_, &str>(0), "[REDACTED:EMAIL]");
    assert_eq!(x.get::<_, i32>(1), 30);
    assert_eq!(y.get::<_, i32>(0), 30);
    assert_eq!(y.get::<_, &str>(1), "[REDACTED:EMAIL]");
    // A denied statement inside a transaction aborts it, as an error would.
    c.batch_execute("begin; insert into t values (1)")
        .await
        .unwrap();
    assert!(c.batch_execute("truncate t").await.is_err());
    let err = c
        .batch_execute("insert into t values (2)")
        .await
        .unwrap_err();
    assert_eq!(err.as_db_error().unwrap().code().code(), "25P02");
    c.batch_execute("rollback").await.unwrap();
    let n: i64 = c
        .query_one("select count(*) from t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reparse_under_same_name_is_decided_again() {
    let gw = Gateway::start(Setup::default()).await;
    let c = connect(&gw, BOB).await;
    // A harmless statement prepared, then a destructive one under a new prepare: each
    // Parse is decided on its own.
    let harmless = c.prepare("select 1").await.unwrap();
    assert!(c.prepare("drop table t").await.is_err());
    c.query(&harmless, &[]).await.unwrap();
    let n: i64 = c
        .query_one("select count(*) from t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn review_holds_then_approval_runs_it_and_grant_lets_retry_pass() {
    let gw = std::sync::Arc::new(Gateway::start(Setup::default()).await);
    let c = connect(&gw, ALICE).await;
    let gate = gw.gate.clone();
    let approver = tokio::spawn(async move {
        let mut pending = None;
        let appeared = common::eventually(|| {
            pending = gate.list_pending().first().cloned();
            pending.is_some()
        })
        .await;
        assert!(appeared, "no review appeared");
        let r = pending.unwrap();
        let reviewer = Identity::new("carol", AuthMethod::StaticToken);
        gate.approve(&r.id, &reviewer, Some("ok")).unwrap();
        r.id
    });
    c.batch_execute("drop table t2").await.unwrap();
    let id = approver.await.unwrap();
    assert!(id.starts_with("r-") || !id.is_empty());
    let exists: bool = c
        .query_one(
            "select exists(select 1 from pg_tables where tablename = 't2')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(!exists, "the approved DROP ran");
    // The approval left a grant: the identical statement passes again without a review
    // (it reaches the target, which answers that the table is gone).
    let err = c.batch_execute("drop table t2").await.unwrap_err();
    assert_eq!(err.as_db_error().unwrap().code().code(), "42P01", "{err:?}");
    assert!(gw.gate.list_pending().is_empty());
    // Self-approval is refused.
    let gate = gw.gate.clone();
    let c2 = connect(&gw, ALICE).await;
    let held = tokio::spawn(async move { c2.batch_execute("truncate t").await });
    let mut pending = None;
    common::eventually(|| {
        pending = gate.list_pending().first().map(|r| r.id.clone());
        pending.is_some()
    })
    .await;
    let id = pending.expect("the TRUNCATE is held");
    let alice = Identity::new("alice", AuthMethod::StaticToken);
    assert!(gate.approve(&id, &alice, None).is_err());
    gate.reject(
        &id,
        &Identity::new("carol", AuthMethod::StaticToken),
        "not now",
    )
    .unwrap();
    let err = held.await.unwrap().unwrap_err();
    assert_eq!(err.as_db_error().unwrap().code().code(), "42501");
    assert!(
        err.as_db_error().unwrap().message().contains("not now"),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_request_reaches_the_right_backend() {
    let gw = std::sync::Arc::new(Gateway::start(Setup::default()).await);
    let c = connect(&gw, BOB).await;
    let token = c.cancel_token();
    let tls = common::tls_connector(&gw);
    // Cancel once the target runs the query (a cancel that arrives before it is a no-op).
    let g = gw.clone();
    let canceller = tokio::spawn(async move {
        let running = blocking(move || {
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            while std::time::Instant::now() < deadline {
                let n = g.pg.psql(
                    "appdb",
                    "select count(*) from pg_stat_activity where state = 'active' \
                     and query like '%pg_sleep(30)%' and pid <> pg_backend_pid()",
                );
                if n.trim() == "1" {
                    return true;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            false
        })
        .await;
        assert!(running, "the query never ran on the target");
        token.cancel_query(tls).await
    });
    let err = c.batch_execute("select pg_sleep(30)").await.unwrap_err();
    assert_eq!(err.as_db_error().unwrap().code().code(), "57014", "{err}");
    canceller.await.unwrap().unwrap();
    // The session is still usable.
    let one: i32 = c.query_one("select 1::int", &[]).await.unwrap().get(0);
    assert_eq!(one, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_both_ways_and_copy_out_masking() {
    let gw = std::sync::Arc::new(Gateway::start(Setup::default()).await);
    let g = gw.clone();
    let out = blocking(move || {
        g.psql_stdin(
            BOB,
            &[
                "-X",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                "copy users (id, email, ssn, age) from stdin",
            ],
            b"3\tcarol@example.com\t111-22-3333\t50\n4\tdave@example.com\t\\N\t60\n",
        )
    })
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        gw.pg.psql("appdb", "select count(*) from users").trim(),
        "4"
    );
    let g = gw.clone();
    let out = blocking(move || {
        g.psql(
            BOB,
            &[
                "-c",
                "copy (select id, email from users where id >= 3 order by id) to stdout",
            ],
        )
    })
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "3\t[REDACTED:EMAIL]\n4\t[REDACTED:EMAIL]\n");
    let g = gw.clone();
    let out = blocking(move || {
        g.psql(
            BOB,
            &[
                "-c",
                "copy (select id, email from users where id = 3) to stdout with (format csv)",
            ],
        )
    })
    .await;
    assert_eq!(stdout(&out), "3,[REDACTED:EMAIL]\n");
    // COPY ... PROGRAM is admin: refused by the policy (no rule allows admin).
    let g = gw.clone();
    let out = blocking(move || g.psql(BOB, &["-c", "copy users to program 'cat'"])).await;
    assert!(!out.status.success());
    assert!(stderr(&out).contains("refused"), "{}", stderr(&out));
}

/// Binary COPY TO STDOUT cannot be masked: with masking rules it is refused before it
/// runs, whichever way the statement spells it, and the session goes on; one the check
/// cannot recognise (the format named by a Unicode-escaped identifier) ends the session
/// before any row is sent. No e-mail address reaches psql either way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_copy_out_is_refused_under_masking() {
    let gw = std::sync::Arc::new(Gateway::start(Setup::default()).await);
    for copy in [
        "copy users to stdout (format binary)",
        "COPY (select email from users) TO STDOUT WITH (FORMAT 'binary')",
        "copy users to stdout with binary",
        "copy binary users to stdout",
    ] {
        let g = gw.clone();
        let script = format!("{copy};\nselect 41 + 1;\n");
        let out = blocking(move || g.psql_stdin(BOB, &["-X", "-A", "-t"], script.as_bytes())).await;
        let err = stderr(&out);
        assert!(
            err.contains("binary COPY output cannot be masked"),
            "{copy}: {err}"
        );
        assert_eq!(stdout(&out).trim(), "42", "{copy}: the session goes on");
        assert!(!out.stdout.windows(7).any(|w| w == b"example"), "{copy}");
    }
    let text = gw.wait_recorded(&["binary_copy_refused"]).await;
    assert!(
        text.contains("copy users to stdout (format binary)"),
        "{text}"
    );

    // Not recognised by the statement check (nor classified: a policy that allows
    // `unknown` lets it through): the target starts a binary COPY, and the gateway ends
    // the session instead of sending its rows.
    let mut rules = common::policy().rules().to_vec();
    rules.push(hoop_core::policy::Rule::allow("unknown").actions(
        hoop_core::policy::ActionMatch::class(hoop_core::ActionClass::Unknown),
    ));
    let g = std::sync::Arc::new(
        Gateway::start(Setup {
            policy: Some(hoop_core::policy::RulePolicy::new(rules)),
            ..Setup::default()
        })
        .await,
    );
    let copy = r#"copy users to stdout (format U&"\0062inary")"#;
    let out = blocking(move || g.psql(BOB, &["-X", "-A", "-t", "-c", copy])).await;
    let err = stderr(&out);
    assert!(!out.status.success());
    assert!(!out.stdout.windows(7).any(|w| w == b"example"), "{err}");
    assert!(err.contains("binary COPY output cannot be masked"), "{err}");
    // Without masking rules binary COPY is allowed (there is nothing to mask).
    let plain = Gateway::start(Setup {
        masker: std::sync::Arc::new(hoop_core::masking::NoMasking),
        ..Setup::default()
    })
    .await;
    let out = blocking(move || {
        plain.psql(
            BOB,
            &[
                "-X",
                "-A",
                "-t",
                "-c",
                "copy users to stdout (format binary)",
            ],
        )
    })
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(out.stdout.starts_with(b"PGCOPY\n"), "{:?}", &out.stdout);
}

/// A jsonb value as the binary protocol carries it: the version byte, then the text.
struct RawJsonb(Vec<u8>);

impl<'a> tokio_postgres::types::FromSql<'a> for RawJsonb {
    fn from_sql(
        _: &tokio_postgres::types::Type,
        raw: &'a [u8],
    ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(RawJsonb(raw.to_vec()))
    }
    fn accepts(ty: &tokio_postgres::types::Type) -> bool {
        *ty == tokio_postgres::types::Type::JSONB
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn masked_json_columns_stay_json() {
    let gw = Gateway::start(Setup::default()).await;
    let c = connect(&gw, BOB).await;
    // Text format (simple query): a whole-value rule and a detector on a number.
    let row = first_row_text(
        &c,
        r#"select '{"n":"123-45-6789"}'::json as ssn, '[4111111111111111]'::json as note"#,
    )
    .await;
    for text in row.iter().map(|v| v.as_deref().unwrap()) {
        let v: serde_json::Value =
            serde_json::from_str(text).unwrap_or_else(|e| panic!("{text:?} is not JSON: {e}"));
        assert!(v.to_string().contains("REDACTED"), "{text}");
        assert!(!text.contains("6789") && !text.contains("4111"), "{text}");
    }
    // Binary jsonb (extended protocol): the version byte, then a JSON document.
    let row = c
        .query_one(r#"select '{"n":"x"}'::jsonb as ssn"#, &[])
        .await
        .unwrap();
    let RawJsonb(raw) = row.get(0);
    assert_eq!(raw.first(), Some(&1), "{raw:?}");
    let v: serde_json::Value = serde_json::from_slice(&raw[1..]).unwrap();
    assert_eq!(v, serde_json::json!("[REDACTED:SSN]"));
}

/// The values of the first row a simple query (text format) returns.
async fn first_row_text(c: &tokio_postgres::Client, q: &str) -> Vec<Option<String>> {
    let rows = c.simple_query(q).await.unwrap();
    rows.iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => {
                Some((0..r.len()).map(|i| r.get(i).map(str::to_owned)).collect())
            }
            _ => None,
        })
        .unwrap()
}

/// Any value's raw binary form, to tell NULL from a value whatever the type.
struct RawAny;

impl<'a> tokio_postgres::types::FromSql<'a> for RawAny {
    fn from_sql(
        _: &tokio_postgres::types::Type,
        _: &'a [u8],
    ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(RawAny)
    }
    fn accepts(_: &tokio_postgres::types::Type) -> bool {
        true
    }
}

/// A field rule masks a column by the name its result carries; the same column under
/// another name (an alias, an expression, a CTE, RETURNING) is refused instead of going
/// out unmasked, while plain references and filters work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_column_masked_by_name_cannot_be_renamed() {
    let gw = Gateway::start(Setup::default()).await;
    let c = connect(&gw, BOB).await;
    for q in [
        "select ssn as x from users",
        "select upper(ssn) from users",
        "select id, ssn || '' as s from users",
        "with t as (select ssn as s from users) select * from t",
        "select id from users union select length(ssn) from users",
        "update users set age = age returning ssn as s",
    ] {
        let err = c.simple_query(q).await.unwrap_err();
        let db = err.as_db_error().unwrap_or_else(|| panic!("{q}: {err}"));
        assert_eq!(db.code().code(), "42501", "{q}");
        assert!(
            db.message().contains("masked by name"),
            "{q}: {}",
            db.message()
        );
        // The same through the extended protocol.
        assert!(c.query(q, &[]).await.is_err(), "{q}");
    }
    // Plain references are masked by the rule; filters and other columns are fine.
    let row = first_row_text(
        &c,
        "select u.ssn, ssn as ssn, email from users u where ssn is not null order by id",
    )
    .await;
    assert_eq!(row[0].as_deref(), Some("[REDACTED:SSN]"));
    assert_eq!(row[1].as_deref(), Some("[REDACTED:SSN]"));
    let n = first_row_text(&c, "select count(*) from users where ssn like '1%'").await;
    assert_eq!(n[0].as_deref(), Some("1"));
    let text = gw.wait_recorded(&["masked_column_renamed"]).await;
    assert!(text.contains("\"column\":\"ssn\""), "{text}");
}

/// The detectors see binary integers and numerics as their text: a card number stored
/// as `bigint` or `numeric` is masked (NULL, as in the text format) whichever format
/// the client asks for, and other numbers pass unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_numbers_pass_the_detectors() {
    let gw = Gateway::start(Setup::default()).await;
    let c = connect(&gw, BOB).await;
    let q = "select 4111111111111111::bigint as a, 4111111111111111::numeric as b, \
             4111111111111111.00::numeric as c, 1234::bigint as d, 42::int4 as e, \
             12.50::numeric as f";
    // Binary (tokio-postgres' extended protocol).
    let row = c.query_one(q, &[]).await.unwrap();
    assert_eq!(row.get::<_, Option<i64>>("a"), None);
    assert!(row.get::<_, Option<RawAny>>("b").is_none());
    assert!(row.get::<_, Option<RawAny>>("c").is_none());
    assert_eq!(row.get::<_, Option<i64>>("d"), Some(1234));
    assert_eq!(row.get::<_, Option<i32>>("e"), Some(42));
    assert!(row.get::<_, Option<RawAny>>("f").is_some());
    // Text (simple query): the same columns, the same outcome.
    let got = first_row_text(&c, q).await;
    let got: Vec<Option<&str>> = got.iter().map(Option::as_deref).collect();
    assert_eq!(
        got,
        [None, None, None, Some("1234"), Some("42"), Some("12.50")]
    );
}

/// Values that hold text without being text: arrays, addresses, composites. In the
/// binary format the detectors see what the text format shows (the elements, the
/// address, the strings of a record), so the same values are masked (NULL) in both
/// formats, and the others pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_containers_pass_the_detectors() {
    let gw = Gateway::start(Setup::default()).await;
    let c = connect(&gw, BOB).await;
    let masked = [
        "array['x', 'alice@example.com']::text[]",
        "array[1, 4111111111111111]::int8[]",
        "array[array['10.1.2.3'::inet]]",
        "'10.1.2.3'::inet",
        "'2001:db8::1'::inet",
        "row('alice@example.com', 1)",
        "array[4111111111111111.00]::numeric[]",
        "row(1, 4111111111111111::int8)",
    ];
    let clean = [
        "array['x', 'y']::text[]",
        "array[1, 2, null]::int8[]",
        "row('x', 1)",
        "row(1, 2::int8)",
        "'2026-11-23'::date",
        "true",
        "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid",
    ];
    for (values, want_null) in [(&masked[..], true), (&clean[..], false)] {
        for v in values {
            let q = format!("select {v} as v");
            // Binary (extended protocol).
            let row = c.query_one(&q, &[]).await.unwrap();
            let binary = row.get::<_, Option<RawAny>>(0).is_none();
            // Text (simple query).
            let text = first_row_text(&c, &q)
                .await
                .first()
                .is_some_and(Option::is_none);
            assert_eq!((binary, text), (want_null, want_null), "{v}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_detail_values_are_masked() {
    let gw = Gateway::start(Setup::default()).await;
    let c = connect(&gw, BOB).await;
    c.batch_execute("create table uniq (email text unique)")
        .await
        .unwrap();
    c.batch_execute("insert into uniq values ('eve@example.com')")
        .await
        .unwrap();
    let err = c
        .batch_execute("insert into uniq values ('eve@example.com')")
        .await
        .unwrap_err();
    let db = err.as_db_error().unwrap();
    assert_eq!(db.code().code(), "23505");
    let detail = db.detail().unwrap_or_default();
    assert!(!detail.contains("eve@example.com"), "{detail}");
    assert!(detail.contains("[REDACTED:EMAIL]"), "{detail}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_target_certificates_fail_closed_with_their_reason() {
    let ca = hoop_testkit::TestCa::new("target-ca");
    let dir = tempfile::tempdir().unwrap();
    let ca_file = ca.write_cert(dir.path(), "target-ca.crt");
    let untrusted = hoop_testkit::TestCa::new("not-the-target-ca");
    for (cert, trusted, reason) in [
        (ca.expired_server(), ca_file.clone(), "expired"),
        (ca.wrong_host_server(), ca_file.clone(), "name_mismatch"),
        (untrusted.server(), ca_file.clone(), "unknown_issuer"),
    ] {
        let gw = Gateway::start(Setup {
            upstream_ca: Some(trusted),
            pg_cert: Some(cert),
            ..Setup::default()
        })
        .await;
        let err = try_connect(&gw, BOB).await.err().unwrap();
        let db = err.as_db_error().expect("a protocol-native error");
        assert_eq!(db.code().code(), "08001");
        assert!(db.message().contains(reason), "{reason}: {}", db.message());
        let all = gw
            .wait_recorded(&[&format!("upstream TLS refused ({reason})")])
            .await;
        assert!(
            all.contains(&format!("upstream TLS refused ({reason})")),
            "{reason} not in the audit trail: {all}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn portal_suspension_with_row_limits() {
    let gw = Gateway::start(Setup::default()).await;
    let mut c = connect(&gw, BOB).await;
    let tx = c.transaction().await.unwrap();
    let stmt = tx
        .prepare("select email from users order by id")
        .await
        .unwrap();
    let portal = tx.bind(&stmt, &[]).await.unwrap();
    let first = tx.query_portal(&portal, 1).await.unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].get::<_, &str>(0), "[REDACTED:EMAIL]");
    let rest = tx.query_portal(&portal, 10).await.unwrap();
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].get::<_, &str>(0), "[REDACTED:EMAIL]");
    tx.commit().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_target_refuses_to_lift_it() {
    let gw = Gateway::start(Setup {
        read_only: true,
        ..Setup::default()
    })
    .await;
    let c = connect(&gw, BOB).await;
    let err = c
        .batch_execute("insert into t values (1)")
        .await
        .unwrap_err();
    assert_eq!(err.as_db_error().unwrap().code().code(), "25006", "{err}");
    for sql in [
        "set default_transaction_read_only = off",
        "begin read write",
        "set session characteristics as transaction read write",
    ] {
        let err = c.batch_execute(sql).await.unwrap_err();
        assert_eq!(
            err.as_db_error().unwrap().code().code(),
            "42501",
            "{sql}: {err}"
        );
    }
    let n: i64 = c
        .query_one("select count(*) from t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pgbench_runs_through_the_gateway() {
    let gw = std::sync::Arc::new(Gateway::start(Setup::default()).await);
    // Initialise directly on the target (pgbench -i drops tables: destructive).
    let direct = gw
        .pg
        .conn_string("postgres", &gw.pg.superuser_password, "appdb");
    let g = gw.clone();
    let out = blocking(move || {
        let init = std::process::Command::new("pgbench")
            .args(["-i", "-s", "1", "-q"])
            .arg(&direct)
            .output()
            .unwrap();
        assert!(
            init.status.success(),
            "{}",
            String::from_utf8_lossy(&init.stderr)
        );
        g.pg.psql(
            "appdb",
            "GRANT SELECT ON ALL TABLES IN SCHEMA public TO app",
        );
        let conn = g.conn_string(BOB);
        std::process::Command::new("pgbench")
            .args(["-S", "-t", "200", "-c", "2", "-M", "extended"])
            .arg(&conn)
            .output()
            .unwrap()
    })
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("number of transactions actually processed: 400/400"),
        "{}",
        stdout(&out)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_field_and_million_rows_stream_through() {
    use futures_util::TryStreamExt;
    let gw = Gateway::start(Setup::default()).await;
    let c = connect(&gw, BOB).await;
    // A 100 MB value under masking rules: longer than the inspection cap (16 MiB by
    // default), so it cannot be inspected with bounded memory and is redacted whole
    // (tests/large.rs has it intact without masking).
    let row = c
        .query_one("select repeat('x', 100 * 1024 * 1024), 7", &[])
        .await
        .unwrap();
    let big: &str = row.get(0);
    assert_eq!(big, hoop_postgres::mask::TOO_LARGE_REDACTION);
    assert_eq!(row.get::<_, i32>(1), 7);
    // A million rows, consumed as a stream.
    let stream = c
        .query_raw(
            "select g, 'row ' || g from generate_series(1, 1000000) g",
            std::iter::empty::<i32>(),
        )
        .await
        .unwrap();
    futures_util::pin_mut!(stream);
    let mut n = 0u64;
    let mut last = 0i32;
    while let Some(r) = stream.try_next().await.unwrap() {
        last = r.get(0);
        n += 1;
    }
    assert_eq!(n, 1_000_000);
    assert_eq!(last, 1_000_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_pass_through() {
    let gw = Gateway::start(Setup::default()).await;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let listener = {
        let tls = common::tls_connector(&gw);
        let conn_str = common::tokio_conn_string(&gw, BOB);
        let (client, conn) = tokio_postgres::connect(&conn_str, tls).await.unwrap();
        tokio::spawn(async move {
            let mut conn = std::pin::pin!(conn);
            while let Some(m) = std::future::poll_fn(|cx| conn.as_mut().poll_message(cx)).await {
                if let Ok(tokio_postgres::AsyncMessage::Notification(n)) = m {
                    let _ = tx.send(n.payload().to_owned());
                }
            }
        });
        client
    };
    listener.batch_execute("listen hoop_channel").await.unwrap();
    let other = connect(&gw, BOB).await;
    // A payload is free text (often a row a trigger sent): the detectors mask it.
    for (sent, received) in [
        ("hello", "hello"),
        (
            r#"{"email":"alice@example.com"}"#,
            r#"{"email":"[REDACTED:EMAIL]"}"#,
        ),
    ] {
        other
            .execute("select pg_notify('hoop_channel', $1)", &[&sent])
            .await
            .unwrap();
        let payload = tokio::time::timeout(Duration::from_secs(60), rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(payload, received);
    }
}

/// psql's `\lo_import` writes a large object with FunctionCall messages (libpq's
/// `PQfn`): a call by function OID whose effect cannot be classified, so it is class
/// `unknown`. Without a rule for it the call is denied with 42501, psql rolls back, and
/// the session goes on; with a rule allowing `unknown` the import works and the object
/// reads back intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn function_calls_are_class_unknown() {
    use hoop_core::ActionClass;
    use hoop_core::policy::{ActionMatch, Rule, RulePolicy};

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("blob.txt");
    std::fs::write(&file, "large object through the gateway").unwrap();
    let script = format!(
        "\\lo_import {}\nselect convert_from(lo_get(:LASTOID), 'UTF8');\nselect 41 + 1;\n",
        file.display()
    );
    let run = |gw: std::sync::Arc<Gateway>, script: String| {
        blocking(move || gw.psql_stdin(BOB, &["-X", "-A", "-t"], script.as_bytes()))
    };

    // The default test policy has no rule for `unknown`: denied, and the session goes on.
    let gw = std::sync::Arc::new(Gateway::start(Setup::default()).await);
    let out = run(gw.clone(), script.clone()).await;
    let err = stderr(&out);
    assert!(
        err.contains("hoop: statement refused: no rule matched"),
        "the policy's reason reaches psql: {err}"
    );
    assert!(!stdout(&out).contains("large object"), "{}", stdout(&out));
    assert!(stdout(&out).trim_end().ends_with("42"), "{}", stdout(&out));
    // Recorded with the function's OID and argument count, never the arguments.
    let text = gw.wait_recorded(&["FunctionCall oid="]).await;
    let line = text
        .lines()
        .find(|l| l.contains("FunctionCall oid="))
        .unwrap();
    assert!(line.contains("argument"), "{line}");
    assert!(line.contains("\"class\":\"unknown\""), "{line}");
    assert!(line.contains("\"decision\":\"deny\""), "{line}");

    // A policy that allows `unknown`: the import runs and reads back.
    let mut rules = common::policy().rules().to_vec();
    rules.push(Rule::allow("function-calls").actions(ActionMatch::class(ActionClass::Unknown)));
    let gw = std::sync::Arc::new(
        Gateway::start(Setup {
            policy: Some(RulePolicy::new(rules)),
            ..Setup::default()
        })
        .await,
    );
    let out = run(gw.clone(), script).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let lines: Vec<String> = stdout(&out).lines().map(str::to_owned).collect();
    assert!(
        lines.first().is_some_and(|l| l.starts_with("lo_import ")),
        "{lines:?}"
    );
    assert_eq!(
        lines.get(1..),
        Some(
            &[
                "large object through the gateway".to_owned(),
                "42".to_owned()
            ][..]
        )
    );
    // lowrite's argument is the file's content: it is not in the recording.
    let text = gw
        .wait_recorded(&["FunctionCall oid=", "select 41 + 1"])
        .await;
    assert!(!text.contains("large object through"), "{text}");
    assert!(text.contains("\"decision\":\"allow\""), "{text}");
    // A function's result passes the detectors: \lo_export reads the object with
    // loread, whose result, holding an e-mail address, comes back NULL.
    let secret = dir.path().join("secret.txt");
    std::fs::write(&secret, "mail alice@example.com").unwrap();
    let exported = dir.path().join("exported.txt");
    let script = format!(
        "\\lo_import {}\n\\lo_export :LASTOID {}\nselect 41 + 1;\n",
        secret.display(),
        exported.display()
    );
    let out = run(gw.clone(), script).await;
    assert!(stdout(&out).contains("42"), "{}", stderr(&out));
    let got = std::fs::read_to_string(&exported).unwrap_or_default();
    assert!(!got.contains("alice@example.com"), "exported: {got:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn md5_and_cleartext_targets_get_injected_credentials() {
    use hoop_testkit::postgres::PgAuth;
    for auth in [PgAuth::Md5, PgAuth::Cleartext] {
        let gw = Gateway::start(Setup {
            pg_auth: auth,
            ..Setup::default()
        })
        .await;
        let c = connect(&gw, BOB).await;
        let who: String = c
            .query_one("select current_user::text", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(who, "app", "{auth:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_pipelined_behind_a_held_statement_runs_first() {
    let gw = std::sync::Arc::new(Gateway::start(Setup::default()).await);
    let alice = std::sync::Arc::new(connect(&gw, ALICE).await);
    let observer = connect(&gw, BOB).await;
    // Pipelined: a held TRUNCATE, then an INSERT that alone would be allowed, then a DROP.
    let a = alice.clone();
    let pipelined = tokio::spawn(async move {
        tokio::join!(
            a.execute("truncate t", &[]),
            a.execute("insert into t values (1)", &[]),
            a.execute("drop table t2", &[]),
        )
    });
    let mut first = None;
    common::eventually(|| {
        first = gw.gate.list_pending().first().cloned();
        first.is_some()
    })
    .await;
    let first = first.expect("the TRUNCATE is held");
    assert!(
        first.action.to_lowercase().contains("truncate"),
        "{first:?}"
    );
    // While it is held, the INSERT behind it has not run.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let n: i64 = observer
        .query_one("select count(*) from t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        n, 0,
        "the pipelined INSERT must wait for the held statement"
    );
    assert_eq!(
        gw.gate.list_pending().len(),
        1,
        "the DROP is not even decided yet"
    );
    let carol = Identity::new("carol", AuthMethod::StaticToken);
    gw.gate.reject(&first.id, &carol, "no").unwrap();
    // Then the INSERT runs, and the DROP is held in its turn.
    let mut second = None;
    common::eventually(|| {
        second = gw
            .gate
            .list_pending()
            .into_iter()
            .find(|r| r.id != first.id);
        second.is_some()
    })
    .await;
    let second = second.expect("the DROP is held");
    assert!(second.action.to_lowercase().contains("drop"), "{second:?}");
    gw.gate.reject(&second.id, &carol, "no").unwrap();
    let (r1, r2, r3) = pipelined.await.unwrap();
    assert_eq!(
        r1.unwrap_err().as_db_error().unwrap().code().code(),
        "42501"
    );
    assert_eq!(r2.unwrap(), 1);
    assert_eq!(
        r3.unwrap_err().as_db_error().unwrap().code().code(),
        "42501"
    );
    let exists: bool = observer
        .query_one(
            "select exists(select 1 from pg_tables where tablename = 't2')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(exists);
}

// ---------------------------------------------------------------------------------------
// A session does not outlive its credential (`Services::end_at_credential_expiry`).

/// Connects as carol with a fresh token that expires `window` after it is minted. When the
/// connect took so long (a loaded machine) that less than a second is left, tries again
/// with a longer window. Returns the client, the token and its expiry.
async fn connect_expiring(
    gw: &Gateway,
    window: Duration,
) -> (tokio_postgres::Client, String, SystemTime) {
    for attempt in 0..4u32 {
        let token = format!("carol-token-{attempt}-0123456789abcdef");
        let expires = SystemTime::now() + window * 2u32.pow(attempt);
        gw.add_token(
            StaticToken::new("carol", &hash_token(&token))
                .unwrap()
                .with_expiry(expires),
        );
        if let Ok(c) = try_connect(gw, &token).await {
            if SystemTime::now() + Duration::from_secs(1) < expires {
                return (c, token, expires);
            }
        }
    }
    panic!("could not connect before the token expired");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_ends_when_its_credential_expires() {
    let gw = Gateway::start(Setup {
        end_at_credential_expiry: true,
        ..Setup::default()
    })
    .await;
    // Bob's token has no expiry: his session is not affected.
    let bob = connect(&gw, BOB).await;
    let (carol, _, expires) = connect_expiring(&gw, Duration::from_secs(3)).await;
    // Carol's session works until her token expires...
    let one: i32 = carol.query_one("select 1", &[]).await.unwrap().get(0);
    assert_eq!(one, 1);
    // ...and a long statement running across the expiry is cut by the gateway.
    let err = tokio::time::timeout(
        Duration::from_secs(120),
        carol.query("select pg_sleep(30)", &[]),
    )
    .await
    .expect("the query was never answered")
    .expect_err("the session outlived the credential: pg_sleep(30) completed");
    let db = err.as_db_error().unwrap_or_else(|| panic!("{err:?}"));
    assert_eq!(db.code().code(), "57P01", "{db:?}");
    assert_eq!(
        db.message(),
        "hoop: session terminated by the gateway: credential expired"
    );
    assert!(
        SystemTime::now() >= expires,
        "ended before the credential expired"
    );
    for _ in 0..200 {
        if carol.is_closed() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(carol.is_closed(), "the connection stayed open");

    // Other sessions go on, and new ones open.
    let two: i32 = bob.query_one("select 2", &[]).await.unwrap().get(0);
    assert_eq!(two, 2);
    let fresh = connect(&gw, ALICE).await;
    let three: i32 = fresh.query_one("select 3", &[]).await.unwrap().get(0);
    assert_eq!(three, 3);

    // The registry and the recording say why it ended.
    let registry = gw.handle.as_ref().unwrap().registry();
    let mut reason = None;
    for _ in 0..200 {
        reason = registry
            .recent()
            .into_iter()
            .find(|s| s.user.as_deref() == Some("carol"))
            .and_then(|s| s.end_reason);
        if reason.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        reason.as_deref(),
        Some("credential expired: ended by the gateway")
    );
    let mut text = String::new();
    for _ in 0..200 {
        text = gw.all_recordings_text();
        if text.contains("credential expired: ended by the gateway") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        text.contains(r#""reason":"credential expired: ended by the gateway""#),
        "{text}"
    );

    // psql shows the user why.
    let mut shown = String::new();
    for attempt in 0..4u32 {
        let token = format!("carol-psql-token-{attempt}-0123456789abcdef");
        let window = Duration::from_secs(3) * 2u32.pow(attempt);
        gw.add_token(
            StaticToken::new("carol", &hash_token(&token))
                .unwrap()
                .with_expiry(SystemTime::now() + window),
        );
        let conn = gw.conn_string(&token);
        let out = blocking(move || {
            std::process::Command::new("psql")
                .arg(conn)
                .args(["-X", "-c", "select pg_sleep(30)"])
                .output()
                .unwrap()
        })
        .await;
        shown = stderr(&out);
        if !shown.contains("authentication failed") {
            assert!(!out.status.success(), "pg_sleep(30) completed: {shown}");
            break;
        }
    }
    assert!(
        shown.contains("FATAL:  hoop: session terminated by the gateway: credential expired"),
        "{shown}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_option_a_session_outlives_its_credential() {
    let gw = Gateway::start(Setup::default()).await;
    let (carol, token, expires) = connect_expiring(&gw, Duration::from_secs(2)).await;
    while SystemTime::now() < expires + Duration::from_millis(500) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The token is expired: a new session is refused...
    let err = try_connect(&gw, &token).await.err().unwrap();
    assert_eq!(err.as_db_error().unwrap().code().code(), "28P01");
    // ...but the session it opened goes on.
    let one: i32 = carol.query_one("select 1", &[]).await.unwrap().get(0);
    assert_eq!(one, 1);
    let slept = carol.query("select pg_sleep(1)", &[]).await;
    assert!(slept.is_ok(), "{slept:?}");
    assert!(!carol.is_closed());
}
