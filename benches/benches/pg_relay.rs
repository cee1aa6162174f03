//! Per-message costs of the PostgreSQL relay: statement classification (parse vs cache
//! hits) and DataRow masking (rules that match nothing / match).
//!
//! `cargo bench -p hoop-benches --bench pg_relay`
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::borrow::Cow;
use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use hoop_core::masking::NoMasking;
use hoop_core::{Field, Masker};
use hoop_postgres::classify::{ClassCache, classify};
use hoop_postgres::mask::{Column, mask_data_row};
use hoop_postgres::messages::DataRow;

/// Field rules on `filler`/`abalance` (when `matching`) plus an `@` check on every value.
struct BenchMasker {
    matching: bool,
}

impl Masker for BenchMasker {
    fn mask<'v>(&self, field: &Field<'_>, value: &'v str) -> Cow<'v, str> {
        if self.matching && matches!(field.name, Some("filler" | "abalance")) {
            return Cow::Owned("[REDACTED]".into());
        }
        if field.name == Some("ssn") || value.contains('@') {
            return Cow::Owned("[REDACTED:EMAIL]".into());
        }
        Cow::Borrowed(value)
    }
    fn masks_field(&self, field: &Field<'_>) -> bool {
        self.matching && matches!(field.name, Some("filler" | "abalance"))
    }
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
    let cols = vec![
        Column::new(&NoMasking, "aid".into(), 23, 0),
        Column::new(&NoMasking, "bid".into(), 23, 0),
        Column::new(&NoMasking, "abalance".into(), 23, 0),
        Column::new(&NoMasking, "filler".into(), 1042, 0),
    ];
    let filler = " ".repeat(84);
    let row = DataRow::encode([
        Some(Cow::Borrowed(&b"123456"[..])),
        Some(Cow::Borrowed(&b"2"[..])),
        Some(Cow::Borrowed(&b"0"[..])),
        Some(Cow::Borrowed(filler.as_bytes())),
    ]);
    let mut g = c.benchmark_group("mask_data_row (pgbench_accounts row)");
    for (name, matching) in [
        ("rules match nothing", false),
        ("rules match 2 of 4 values", true),
    ] {
        let masker = BenchMasker { matching };
        g.bench_function(name, |b| {
            b.iter(|| mask_data_row(&masker, black_box(&cols), row.clone()).unwrap())
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
