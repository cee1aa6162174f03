//! Cost of masking an HTTP response body: the JSON documents `benches/http.sh` serves
//! (a small one and a 64 KB one, nothing in them to mask) and the same with a value to
//! mask, through the masker the HTTP benchmark configures.
//!
//! `cargo bench -p hoop-benches --bench http_body`
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use hoop_core::masking::{RuleMasker, Strategy};
use hoop_http::body::{BodyKind, mask_body};
use hoop_testkit::bodies::json_items;

fn bodies(c: &mut Criterion) {
    let masker = RuleMasker::builder()
        .all_detectors(Strategy::Redact)
        .field_rule("password", Strategy::Redact)
        .build()
        .unwrap();
    let mut g = c.benchmark_group("mask_body (JSON)");
    let large = json_items(64 << 10);
    let dirty = large.replacen("item-7\"", "mail a@example.com\"", 1);
    for (name, body, masked) in [
        ("small, clean", json_items(100), false),
        ("64 KB, clean", large.clone(), false),
        ("64 KB, one e-mail", dirty, true),
    ] {
        g.throughput(Throughput::Bytes(body.len() as u64));
        g.bench_function(name, |b| {
            b.iter(|| {
                let r = mask_body(&masker, BodyKind::Json, black_box(body.as_bytes())).unwrap();
                assert_eq!(r.is_some(), masked);
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
    targets = bodies
}
criterion_main!(benches);
