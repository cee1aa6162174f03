//! Large values and rows stream through the gateway with bounded memory, against a real
//! PostgreSQL 15 (TLS + SCRAM): a 100 MB value out, a 100 MB COPY row and a 50 MB Bind
//! parameter in, and values too large to inspect masked whole when masking applies.
//!
//! The clients run in other processes (psql, or this test binary re-run as a
//! tokio-postgres client), so the peak resident memory of this process is the gateway's.
//! The tests take turns (one lock) so that they measure one transfer at a time.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::Arc;

use common::{BOB, Gateway, Setup};
use hoop_core::masking::NoMasking;
use hoop_postgres::PostgresOptions;
use hoop_postgres::mask::TOO_LARGE_REDACTION;
use md5::{Digest, Md5};

/// One test at a time: memory figures are per process.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The pattern the large values repeat.
const PATTERN: &str = "0123456789abcdef";
/// 100 MiB of it.
const COPY_REPEAT: usize = 6_553_600;
/// 50 MiB of it.
const BIND_REPEAT: usize = 3_276_800;

/// Most this process's resident memory may grow while a large value passes.
const MAX_GROWTH_KB: u64 = 40 * 1024;

fn status_kb(key: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = s
        .lines()
        .find(|l| l.starts_with(key))
        .unwrap_or_else(|| panic!("{key} in /proc/self/status"));
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// The growth of this process's peak resident memory from now on.
struct PeakWatch {
    base_kb: u64,
    reset: bool,
}

impl PeakWatch {
    fn start() -> PeakWatch {
        // Writing 5 to clear_refs resets the peak (VmHWM) to the current resident size.
        let reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
        let base_kb = if reset {
            status_kb("VmRSS:")
        } else {
            status_kb("VmHWM:")
        };
        PeakWatch { base_kb, reset }
    }

    fn growth_kb(&self, what: &str) -> u64 {
        let hwm = status_kb("VmHWM:");
        let growth = hwm.saturating_sub(self.base_kb);
        eprintln!(
            "memory [{what}]: resident before {} KiB, peak after {hwm} KiB, growth {growth} KiB (peak reset: {})",
            self.base_kb, self.reset
        );
        growth
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

/// Runs psql through the gateway and returns the length and MD5 of its output, read in
/// pieces (this process never holds the value).
fn psql_digest(gw_conn: String, sql: &str) -> (u64, String) {
    let mut child = Command::new("psql")
        .arg(gw_conn)
        .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut h = Md5::new();
    let mut len = 0u64;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = out.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        len += n as u64;
        h.update(&buf[..n]);
    }
    let o = child.wait_with_output().unwrap();
    assert!(
        o.status.success(),
        "psql failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    (len, hex::encode(h.finalize()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_100_mb_value_streams_out_intact_with_bounded_memory() {
    let _turn = SERIAL.lock().await;
    let gw = Gateway::start(Setup {
        masker: Arc::new(NoMasking),
        ..Setup::default()
    })
    .await;
    // 100 MiB of varied text (32 hex digits per row of the series).
    gw.pg.psql(
        "appdb",
        "CREATE TABLE big AS SELECT string_agg(md5(i::text), '' ORDER BY i) AS v \
         FROM generate_series(1, 3276800) i; ALTER TABLE big OWNER TO app;",
    );
    let want = gw.pg.psql(
        "appdb",
        "SELECT (length(v) + 1) || ' ' || md5(v || E'\\n') FROM big",
    );
    let conn = gw.conn_string(BOB);
    let watch = PeakWatch::start();
    let (len, md5) = blocking(move || psql_digest(conn, "SELECT v FROM big")).await;
    let growth = watch.growth_kb("100 MiB DataRow out, no masking");
    assert_eq!(
        format!("{len} {md5}"),
        want.trim(),
        "the value arrives intact"
    );
    assert_eq!(len, 100 * 1024 * 1024 + 1);
    assert!(
        growth < MAX_GROWTH_KB,
        "the gateway's memory grew by {growth} KiB for a 100 MiB value"
    );
    // The session's result was recorded with its row (written in the background, maybe
    // after psql has exited).
    let rec = gw.wait_recorded(&["\"rows\":1"]).await;
    assert!(rec.contains("\"rows\":1"), "{rec}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_over_the_inspection_cap_are_masked_whole_and_the_session_goes_on() {
    let _turn = SERIAL.lock().await;
    let gw = Gateway::start(Setup {
        options: PostgresOptions {
            stream_threshold: 64 * 1024,
            mask_inspect_max: 1 << 20,
            ..PostgresOptions::default()
        },
        ..Setup::default()
    })
    .await;
    let conn = gw.conn_string(BOB);
    let o = blocking(move || {
        Command::new("psql")
            .arg(conn)
            .args(["-X", "-A", "-t", "-F", "|", "-v", "ON_ERROR_STOP=1"])
            // A row over the cap, read column by column.
            .args([
                "-c",
                "SELECT 'alice@example.com ' || repeat('y', 300000) AS small, \
                 repeat('z', 2000000) AS big, 42 AS n, \
                 convert_to(repeat('w', 2000000), 'UTF8') AS bin, \
                 'bob@example.com' AS tail",
            ])
            // A row over the streaming threshold but under the cap: masked as usual.
            .args(["-c", "SELECT 'carol@example.com ' || repeat('q', 200000)"])
            // COPY rows over the cap, text and CSV.
            .args([
                "-c",
                "COPY (SELECT repeat('a', 2000000), 'dave@example.com') TO STDOUT",
            ])
            .args([
                "-c",
                "COPY (SELECT repeat('a', 2000000), 'x,y') TO STDOUT (FORMAT csv)",
            ])
            .args(["-c", "SELECT 'still here'"])
            .output()
            .unwrap()
    })
    .await;
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "psql failed: {err}");
    let out = String::from_utf8(o.stdout).unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 5, "{:?}", &out[..out.len().min(400)]);
    let cols: Vec<&str> = lines[0].split('|').collect();
    assert_eq!(cols.len(), 5);
    assert!(
        !cols[0].contains("alice@example.com"),
        "detectors still apply"
    );
    assert!(cols[0].starts_with("[REDACTED"), "{}", &cols[0][..40]);
    assert!(
        cols[0].ends_with(&"y".repeat(1000)),
        "the rest of the value stays"
    );
    assert_eq!(cols[1], TOO_LARGE_REDACTION, "text over the cap: redacted");
    assert_eq!(cols[2], "42", "small values of other columns pass");
    assert_eq!(cols[3], "", "bytea over the cap: NULL");
    assert!(!cols[4].contains("bob@example.com"));
    assert!(cols[4].starts_with("[REDACTED"));
    assert!(!lines[1].contains("carol@example.com"));
    assert!(lines[1].ends_with(&"q".repeat(1000)));
    assert_eq!(
        lines[2],
        format!("{TOO_LARGE_REDACTION}\t{TOO_LARGE_REDACTION}")
    );
    assert_eq!(
        lines[3],
        format!("{TOO_LARGE_REDACTION},{TOO_LARGE_REDACTION}")
    );
    assert_eq!(lines[4], "still here");
    // The masked values are counted in the recording: 4 in the first row.
    let rec = gw.wait_recorded(&["\"masked_fields\":4"]).await;
    assert!(rec.contains("\"masked_fields\":4"), "{rec}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_100_mb_copy_row_and_a_50_mb_bind_parameter_stream_in() {
    let _turn = SERIAL.lock().await;
    let gw = Gateway::start(Setup::default()).await;
    gw.pg.psql(
        "appdb",
        "CREATE TABLE big_in (id int, v text); ALTER TABLE big_in OWNER TO app;",
    );
    let conn = common::tokio_conn_string(&gw, BOB);
    let ca = gw.ca_path.clone();
    let watch = PeakWatch::start();
    let o = blocking(move || {
        Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "client_process_sending_large_messages",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("HOOP_LARGE_CONN", conn)
            .env("HOOP_LARGE_CA", ca)
            .output()
            .unwrap()
    })
    .await;
    let growth = watch.growth_kb("100 MiB CopyData + 50 MiB Bind in");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "client process failed: {out}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(out.contains("1 passed"), "the client ran: {out}");
    let landed = gw.pg.psql(
        "appdb",
        &format!(
            "SELECT id, length(v), md5(v) = md5(repeat('{PATTERN}', \
             CASE id WHEN 1 THEN {COPY_REPEAT} ELSE {BIND_REPEAT} END)) \
             FROM big_in ORDER BY id"
        ),
    );
    assert_eq!(
        landed.trim(),
        format!(
            "1|{}|t\n2|{}|t",
            PATTERN.len() * COPY_REPEAT,
            PATTERN.len() * BIND_REPEAT
        ),
        "both values land intact"
    );
    assert!(
        growth < MAX_GROWTH_KB,
        "the gateway's memory grew by {growth} KiB for a 100 MiB row"
    );
}

/// The client half of `a_100_mb_copy_row_and_a_50_mb_bind_parameter_stream_in`, run by
/// it in a process of its own: one 100 MiB CopyData message and one Bind with a 50 MiB
/// parameter. Does nothing when run on its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the client process of a_100_mb_copy_row_and_a_50_mb_bind_parameter_stream_in"]
async fn client_process_sending_large_messages() {
    use futures_util::SinkExt;
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;

    let (Ok(conn), Ok(ca)) = (
        std::env::var("HOOP_LARGE_CONN"),
        std::env::var("HOOP_LARGE_CA"),
    ) else {
        return;
    };
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(&ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let (client, connection) =
        tokio_postgres::connect(&conn, tokio_postgres_rustls::MakeRustlsConnect::new(config))
            .await
            .unwrap();
    tokio::spawn(async move {
        let _ = connection.await;
    });

    // One CopyData message holding the whole 100 MiB row.
    let mut row = Vec::with_capacity(PATTERN.len() * COPY_REPEAT + 3);
    row.extend_from_slice(b"1\t");
    for _ in 0..COPY_REPEAT {
        row.extend_from_slice(PATTERN.as_bytes());
    }
    row.push(b'\n');
    let sink = client
        .copy_in::<_, bytes::Bytes>("COPY big_in (id, v) FROM STDIN")
        .await
        .unwrap();
    futures_util::pin_mut!(sink);
    sink.send(bytes::Bytes::from(row)).await.unwrap();
    assert_eq!(sink.finish().await.unwrap(), 1);

    // A Bind with a 50 MiB parameter.
    let v = PATTERN.repeat(BIND_REPEAT);
    let n = client
        .execute("INSERT INTO big_in (id, v) VALUES (2, $1)", &[&v])
        .await
        .unwrap();
    assert_eq!(n, 1);
}
