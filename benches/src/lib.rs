//! Benchmarks for hoop live in `benches/benches` (criterion) and `benches/*.sh` (end-to-end).
