//! Per-message costs of the PostgreSQL relay: statement classification (parse vs cache
//! hits) and DataRow masking (rules that match nothing / match).
//!
//! `cargo bench -p hoop-benches --bench pg_relay`
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::borrow::Cow;
use std::hint::black_box;

use bytes::BytesMut;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use hoop_core::masking::{RuleMasker, Strategy};
use hoop_postgres::classify::{ClassCache, classify};
use hoop_postgres::codec::Frame;
use hoop_postgres::mask::{Column, mask_data_row_into};
use hoop_postgres::messages::DataRow;

/// The masker `pg_gateway --masking nomatch|match` runs: every detector, plus field rules
/// (`ssn`, and `filler`/`abalance` when `matching`).
fn rule_masker(matching: bool) -> RuleMasker {
    let mut b = RuleMasker::builder()
        .all_detectors(Strategy::Redact)
        .field_rule("ssn", Strategy::Redact);
    if matching {
        b = b
            .field_rule("filler", Strategy::Redact)
            .field_rule("abalance", Strategy::Redact);
    }
    b.build().unwrap()
}

fn classification(c: &mut Criterion) {
    let mut g = c.benchmark_group("classify");
    let mut aid = 0u32;
    g.bench_function("parse (pgbench -S text)", |b| {
        b.iter(|| {
            aid = aid.wrapping_add(7919) % 1_000_000;
            classify(black_box(&format!(
                "SELECT abalance FROM pgbench_accounts WHERE aid = {aid};"
            )))
        })
    });
    let cache = ClassCache::new(10_000);
    g.bench_function("cache, new literal each time (shape hit)", |b| {
        b.iter(|| {
            aid = aid.wrapping_add(7919) % 1_000_000;
            cache.classify(black_box(&format!(
                "SELECT abalance FROM pgbench_accounts WHERE aid = {aid};"
            )))
        })
    });
    g.bench_function("cache, same text (exact hit)", |b| {
        b.iter(|| {
            cache.classify(black_box(
                "SELECT abalance FROM pgbench_accounts WHERE aid = $1;",
            ))
        })
    });
    g.finish();
}

fn masking(c: &mut Criterion) {
    // The rows of the benchmark's 100-row script: SELECT aid, bid, abalance, filler.
    let filler = " ".repeat(84);
    let rows: Vec<Frame> = (0..100)
        .map(|i| {
            let aid = (523_401 + i).to_string();
            let bid = (5 + i / 100_000).to_string();
            DataRow::encode([
                Some(Cow::Borrowed(aid.as_bytes())),
                Some(Cow::Borrowed(bid.as_bytes())),
                Some(Cow::Borrowed(&b"0"[..])),
                Some(Cow::Borrowed(filler.as_bytes())),
            ])
        })
        .collect();
    let mut g = c.benchmark_group("mask_data_row (100 pgbench_accounts rows)");
    g.throughput(Throughput::Elements(100));
    for (name, matching) in [
        ("rules match nothing", false),
        ("rules match 2 of 4 values", true),
    ] {
        let masker = rule_masker(matching);
        let cols = vec![
            Column::new(&masker, "aid".into(), 23, 0),
            Column::new(&masker, "bid".into(), 23, 0),
            Column::new(&masker, "abalance".into(), 23, 0),
            Column::new(&masker, "filler".into(), 1042, 0),
        ];
        let mut out = BytesMut::with_capacity(64 * 1024);
        g.bench_function(name, |b| {
            b.iter(|| {
                out.clear();
                let mut n = 0;
                for row in &rows {
                    n += mask_data_row_into(&masker, black_box(&cols), row, &mut out).unwrap();
                }
                assert_eq!(n, if matching { 200 } else { 0 });
                n
            })
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(std::time::Duration::from_millis(500))
        .measurement_time(std::time::Duration::from_secs(2));
    targets = classification, masking
}
criterion_main!(benches);
