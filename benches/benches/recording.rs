//! What recording a statement costs: a JSONL recording (hash chain, batched writer
//! thread) fed the two events a PostgreSQL statement produces (the command with its
//! decision, then its result), measured from `record` to the line being on disk
//! (`finish` waits for the writer and the sync).
//!
//! ```text
//! cargo bench -p hoop-benches --bench recording
//! ```

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::{Duration, Instant, SystemTime};

use criterion::{Criterion, criterion_group, criterion_main};
use hoop_core::recording::{JsonlRecorder, SessionMeta};
use hoop_core::{ActionClass, AuthMethod, Event, Identity, Recorder, SessionId};

fn meta() -> SessionMeta {
    SessionMeta {
        session_id: SessionId::new(),
        identity: Identity::new("bench", AuthMethod::StaticToken),
        resource: String::from("bench-db"),
        protocol: String::from("postgres"),
        client: std::net::SocketAddr::from(([127, 0, 0, 1], 5000)),
        started_at: SystemTime::now(),
    }
}

fn statement(i: u64) -> [Event; 2] {
    [
        Event::Command {
            text: format!("SELECT abalance FROM pgbench_accounts WHERE aid = {i};"),
            class: ActionClass::Read,
            decision: String::from("allow"),
            reason: None,
        },
        Event::CommandResult {
            duration_ms: 0,
            rows: Some(1),
            masked_fields: 0,
            error: None,
            status: None,
            bytes_in: None,
        },
    ]
}

fn recording(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = std::env::temp_dir().join(format!("hoop-bench-rec-{}", std::process::id()));
    let recorder = JsonlRecorder::new(&dir);
    let mut g = c.benchmark_group("recording");
    g.throughput(criterion::Throughput::Elements(2));
    g.bench_function("one statement (command + result), to disk", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let rec = recorder.open(&meta()).await.expect("open");
                let start = Instant::now();
                for i in 0..iters {
                    for e in statement(black_box(i)) {
                        rec.record_async(e).await.expect("record");
                    }
                }
                rec.finish("done").await.expect("finish");
                start.elapsed()
            })
        })
    });
    g.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    targets = recording
}
criterion_main!(benches);
