//! The built-in recorders against real files: hash chain verification (edits, removals,
//! reordering, crashes), queue overflow in both failure modes, asciicast output.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use hoop_testkit::wait::wait_until;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use hoop_core::recording::{
    AsciicastRecorder, JsonlRecorder, RecordError, Recorder, SessionMeta, TeeRecorder, VerifyError,
    VerifyWarning, WriterConfig, verify_file,
};
use hoop_core::{ActionClass, AuthMethod, Event, Identity, SessionId};

/// The recording writer thread is shared by every recording of this process. The tests
/// that rely on its batch window (a queue that fills before the writer drains it) run
/// alone: a recording of another test would make the writer drain at that recording's
/// (shorter) window, possibly between two events of the test. Every other test shares.
static WRITER: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

fn meta() -> SessionMeta {
    SessionMeta {
        session_id: SessionId::new(),
        identity: Identity::new("alice", AuthMethod::Oidc).with_groups(["dba"]),
        resource: "pg-prod".into(),
        protocol: "postgres".into(),
        client: "127.0.0.1:50000".parse().unwrap(),
        started_at: SystemTime::now(),
    }
}

fn command(text: &str) -> Event {
    Event::Command {
        text: text.into(),
        class: ActionClass::Read,
        decision: "allow".into(),
        reason: None,
    }
}

/// Records a session of `n` commands and returns the file.
async fn write_session(dir: &Path, n: usize) -> PathBuf {
    let rec = JsonlRecorder::new(dir);
    let m = meta();
    let r = rec.open(&m).await.unwrap();
    for i in 0..n {
        r.record(command(&format!("select {i}"))).unwrap();
    }
    r.record(Event::CommandResult {
        duration_ms: 3,
        rows: Some(1),
        masked_fields: 2,
        error: None,
        status: None,
        bytes_in: None,
    })
    .unwrap();
    r.finish("client closed").await.unwrap();
    rec.path_for(&m.session_id)
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(String::from)
        .collect()
}

fn write_lines(path: &Path, lines: &[String]) {
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

#[tokio::test]
async fn session_verifies_and_has_start_and_end() {
    let _shared = WRITER.read().await;
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("recordings/nested");
    let path = write_session(&sub, 5).await;

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "recording must be private");
    }

    let report = verify_file(&path).unwrap();
    // start + 5 commands + result + end
    assert_eq!(report.entries, 8);
    assert!(report.is_complete(), "{report:?}");
    assert_eq!(report.end_reason.as_deref(), Some("client closed"));
    assert_eq!(report.dropped_events, 0);

    let ls = lines(&path);
    let first: serde_json::Value = serde_json::from_str(&ls[0]).unwrap();
    assert_eq!(first["type"], "session_start");
    assert_eq!(first["seq"], 1);
    assert_eq!(first["prev"], "0".repeat(64));
    assert_eq!(first["identity"]["subject"], "alice");
    assert_eq!(first["resource"], "pg-prod");
    assert_eq!(first["protocol"], "postgres");
    assert_eq!(first["client"], "127.0.0.1:50000");
    assert_eq!(
        report.session_id.as_deref(),
        first["session_id"].as_str(),
        "report names the session"
    );
    let t = first["time"].as_str().unwrap();
    assert_eq!(
        t.len(),
        "2026-01-01T00:00:00.000Z".len(),
        "RFC 3339 ms: {t}"
    );
    assert!(t.ends_with('Z'));

    let second: serde_json::Value = serde_json::from_str(&ls[1]).unwrap();
    assert_eq!(second["type"], "command");
    assert_eq!(second["text"], "select 0");
    assert_eq!(second["class"], "read");
    assert_eq!(second["seq"], 2);

    let last: serde_json::Value = serde_json::from_str(ls.last().unwrap()).unwrap();
    assert_eq!(last["type"], "session_end");
    assert_eq!(last["reason"], "client closed");
    assert_eq!(last["hash"].as_str().unwrap().len(), 64);
}

#[tokio::test]
async fn modified_line_is_found() {
    let _shared = WRITER.read().await;
    let dir = tempfile::tempdir().unwrap();
    let path = write_session(dir.path(), 5).await;
    let mut ls = lines(&path);
    assert!(ls[3].contains("select 2"));
    ls[3] = ls[3].replace("select 2", "select 9");
    write_lines(&path, &ls);
    match verify_file(&path) {
        Err(VerifyError::HashMismatch { line: 4 }) => {}
        other => panic!("expected a hash mismatch on line 4, got {other:?}"),
    }
}

#[tokio::test]
async fn deleted_line_is_found() {
    let _shared = WRITER.read().await;
    let dir = tempfile::tempdir().unwrap();
    let path = write_session(dir.path(), 5).await;
    let mut ls = lines(&path);
    ls.remove(2);
    write_lines(&path, &ls);
    match verify_file(&path) {
        Err(VerifyError::Sequence {
            line: 3,
            expected: 3,
            found: 4,
        }) => {}
        other => panic!("expected a sequence error on line 3, got {other:?}"),
    }
}

#[tokio::test]
async fn swapped_lines_are_found() {
    let _shared = WRITER.read().await;
    let dir = tempfile::tempdir().unwrap();
    let path = write_session(dir.path(), 5).await;
    let mut ls = lines(&path);
    ls.swap(4, 5);
    write_lines(&path, &ls);
    match verify_file(&path) {
        Err(VerifyError::Sequence { line: 5, .. }) => {}
        other => panic!("expected a sequence error on line 5, got {other:?}"),
    }
}

#[tokio::test]
async fn inserted_line_is_found() {
    let _shared = WRITER.read().await;
    let dir = tempfile::tempdir().unwrap();
    let path = write_session(dir.path(), 5).await;
    let mut ls = lines(&path);
    // A copy of a valid line, inserted later: its own hash is fine, its place is not.
    let copy = ls[2].clone();
    ls.insert(4, copy);
    write_lines(&path, &ls);
    match verify_file(&path) {
        Err(VerifyError::Sequence { line: 5, .. }) => {}
        other => panic!("expected a sequence error on line 5, got {other:?}"),
    }
}

#[tokio::test]
async fn truncated_last_line_is_a_warning_and_earlier_lines_verify() {
    let _shared = WRITER.read().await;
    let dir = tempfile::tempdir().unwrap();
    let path = write_session(dir.path(), 5).await;
    let bytes = std::fs::read(&path).unwrap();
    // Crash in the middle of writing the last line: keep half of it, no newline.
    let last_start = bytes[..bytes.len() - 1]
        .iter()
        .rposition(|b| *b == b'\n')
        .unwrap()
        + 1;
    let cut = last_start + (bytes.len() - last_start) / 2;
    std::fs::write(&path, &bytes[..cut]).unwrap();
    let report = verify_file(&path).unwrap();
    assert_eq!(report.entries, 7);
    assert!(!report.is_complete());
    assert!(report.end_reason.is_none());
    assert!(
        report.warnings.contains(&VerifyWarning::Truncated {
            line: 8,
            bytes: cut - last_start
        }),
        "{:?}",
        report.warnings
    );
    assert!(
        report
            .warnings
            .contains(&VerifyWarning::NoEnd { entries: 7 })
    );
}

#[tokio::test]
async fn crash_without_finish_leaves_verifiable_lines() {
    let _shared = WRITER.read().await;
    let dir = tempfile::tempdir().unwrap();
    let rec = JsonlRecorder::new(dir.path());
    let m = meta();
    let r = rec.open(&m).await.unwrap();
    for i in 0..3 {
        r.record(command(&format!("select {i}"))).unwrap();
    }
    let path = rec.path_for(&m.session_id);
    // Wait until the writer has flushed the three commands (what a crash would keep).
    let count = || std::fs::read_to_string(&path).unwrap().lines().count();
    wait_until("the three commands reach the file before finish", || {
        count() >= 4
    })
    .await;
    assert_eq!(
        count(),
        4,
        "flushed lines must reach the file before finish"
    );
    // Read the file as a crash would leave it (the recording is still open).
    let report = verify_file(&path).unwrap();
    assert_eq!(report.entries, 4);
    assert_eq!(report.warnings, vec![VerifyWarning::NoEnd { entries: 4 }]);
    r.finish("done").await.unwrap();
    assert!(verify_file(&path).unwrap().is_complete());
}

#[tokio::test]
async fn fail_closed_open_refuses_unusable_directory() {
    let _shared = WRITER.read().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    let rec = JsonlRecorder::new(file.join("recordings"));
    assert!(rec.open(&meta()).await.is_err(), "fail closed must refuse");

    let open = JsonlRecorder::new(file.join("recordings")).with_writer(WriterConfig {
        fail_closed: false,
        ..WriterConfig::default()
    });
    let r = open.open(&meta()).await.expect("fail open records nothing");
    r.record(command("select 1")).unwrap();
    r.finish("done").await.unwrap();
}

#[tokio::test]
async fn existing_file_is_never_overwritten() {
    let _shared = WRITER.read().await;
    let dir = tempfile::tempdir().unwrap();
    let rec = JsonlRecorder::new(dir.path());
    let m = meta();
    std::fs::write(rec.path_for(&m.session_id), b"precious\n").unwrap();
    assert!(rec.open(&m).await.is_err());
    assert_eq!(
        std::fs::read(rec.path_for(&m.session_id)).unwrap(),
        b"precious\n"
    );
}

// The writer gathers for its batch window before it drains, so a queue of capacity 1
// fills deterministically (this test runs alone: see `WRITER`).
#[tokio::test(flavor = "current_thread")]
async fn full_queue_fail_closed_refuses() {
    let _alone = WRITER.write().await;
    let dir = tempfile::tempdir().unwrap();
    let rec = JsonlRecorder::new(dir.path()).with_writer(WriterConfig {
        queue_capacity: 1,
        // The writer waits this long after the first event before it drains.
        batch_window: Duration::from_millis(500),
        ..WriterConfig::default()
    });
    let m = meta();
    let r = rec.open(&m).await.unwrap();
    r.record(command("select 1")).unwrap();
    let err = r.record(command("select 2")).unwrap_err();
    assert!(matches!(err, RecordError::Unavailable(_)), "{err}");
    // The recording stays refused: the adapter must end the session.
    tokio::task::yield_now().await;
    assert!(r.record(command("select 3")).is_err());
    r.finish("recording refused").await.unwrap();
    let report = verify_file(rec.path_for(&m.session_id)).unwrap();
    assert_eq!(report.dropped_events, 1, "the refused event is visible");
    assert!(report.end_reason.is_some());
}

#[tokio::test(flavor = "current_thread")]
async fn record_async_waits_for_room_instead_of_refusing() {
    let _shared = WRITER.read().await;
    // The same queue of capacity 1 that refuses `record` at once: `record_async` waits
    // for the writer, so a burst is slowed down, not refused, and nothing is lost.
    let dir = tempfile::tempdir().unwrap();
    let rec = JsonlRecorder::new(dir.path()).with_writer(WriterConfig {
        queue_capacity: 1,
        ..WriterConfig::default()
    });
    let m = meta();
    let r = rec.open(&m).await.unwrap();
    for i in 0..200 {
        r.record_async(command(&format!("select {i}")))
            .await
            .unwrap();
    }
    r.finish("client closed").await.unwrap();
    let report = verify_file(rec.path_for(&m.session_id)).unwrap();
    assert!(report.is_complete(), "{report:?}");
    assert_eq!(report.dropped_events, 0);
    assert_eq!(report.entries, 202, "start + 200 commands + end");
}

#[tokio::test(flavor = "current_thread")]
async fn full_queue_fail_open_writes_dropped_marker() {
    let _alone = WRITER.write().await;
    let dir = tempfile::tempdir().unwrap();
    let rec = JsonlRecorder::new(dir.path()).with_writer(WriterConfig {
        queue_capacity: 1,
        fail_closed: false,
        batch_window: Duration::from_millis(500),
        ..WriterConfig::default()
    });
    let m = meta();
    let r = rec.open(&m).await.unwrap();
    for i in 0..50 {
        r.record(command(&format!("select {i}"))).unwrap();
    }
    // Let the writer drain, then record more: the marker comes before this event.
    let path = rec.path_for(&m.session_id);
    wait_until("the writer drains the queue", || {
        std::fs::read_to_string(&path).unwrap().lines().count() >= 2
    })
    .await;
    r.record(command("select after")).unwrap();
    r.finish("client closed").await.unwrap();

    let report = verify_file(&path).unwrap();
    assert!(report.is_complete(), "{report:?}");
    assert_eq!(report.dropped_events, 49);
    let entries: Vec<serde_json::Value> = lines(&path)
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let types: Vec<&str> = entries
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "session_start",
            "command",
            "dropped",
            "command",
            "session_end"
        ]
    );
    assert_eq!(entries[1]["text"], "select 0");
    assert_eq!(entries[2]["count"], 49);
    assert_eq!(entries[3]["text"], "select after");
}

fn terminal(stream: char, data: &str) -> Event {
    Event::Terminal {
        stream,
        data: data.into(),
    }
}

#[tokio::test]
async fn asciicast_and_jsonl_through_a_tee() {
    let _shared = WRITER.read().await;
    let dir = tempfile::tempdir().unwrap();
    let jsonl = JsonlRecorder::new(dir.path());
    let cast = AsciicastRecorder::new(dir.path()).with_env("SHELL", "/bin/bash");
    let tee = TeeRecorder::new().with(jsonl.clone()).with(cast.clone());
    let m = meta();
    let r = tee.open(&m).await.unwrap();
    r.record(terminal('r', "132x43")).unwrap();
    r.record(terminal('o', "alice@db:~$ ")).unwrap();
    r.record(terminal('i', "ls\r")).unwrap();
    r.record(command("ls")).unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    r.record(terminal('o', "hello-from-the-target\r\n\u{1b}[0m"))
        .unwrap();
    r.finish("client closed").await.unwrap();

    let text = std::fs::read_to_string(cast.path_for(&m.session_id)).unwrap();
    let mut it = text.lines();
    let header: serde_json::Value = serde_json::from_str(it.next().unwrap()).unwrap();
    assert_eq!(header["version"], 2);
    assert_eq!(header["width"], 132);
    assert_eq!(header["height"], 43);
    assert_eq!(header["env"]["SHELL"], "/bin/bash");
    assert_eq!(header["env"]["TERM"], "xterm-256color");
    assert!(header["timestamp"].as_u64().unwrap() > 1_600_000_000);
    assert!(header["title"].as_str().unwrap().contains("alice@pg-prod"));
    let events: Vec<(f64, String, String)> = it.map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(events.len(), 4, "{events:?}");
    let codes: Vec<&str> = events.iter().map(|e| e.1.as_str()).collect();
    assert_eq!(codes, ["r", "o", "i", "o"]);
    assert!(events.windows(2).all(|w| w[0].0 <= w[1].0), "{events:?}");
    assert!(events.iter().all(|e| e.0 >= 0.0));
    assert!(events[3].2.contains("hello-from-the-target"));
    assert!(events[3].0 > events[0].0, "later output has a later time");

    // The audit file has everything, terminal events included.
    let report = verify_file(jsonl.path_for(&m.session_id)).unwrap();
    assert!(report.is_complete());
    assert_eq!(report.entries, 1 + 5 + 1);
}

#[tokio::test]
async fn asciicast_default_size_without_resize() {
    let _shared = WRITER.read().await;
    let dir = tempfile::tempdir().unwrap();
    let cast = AsciicastRecorder::new(dir.path());
    let m = meta();
    let r = cast.open(&m).await.unwrap();
    r.record(terminal('o', "x")).unwrap();
    r.finish("done").await.unwrap();
    let text = std::fs::read_to_string(cast.path_for(&m.session_id)).unwrap();
    let header: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(
        (header["width"].as_u64(), header["height"].as_u64()),
        (Some(80), Some(24))
    );
}
