//! Masker throughput: hoop's `RuleMasker` (prefilter + anchored detectors) against a naive
//! baseline that runs one `regex::Regex` per detector over the text, one after another,
//! with the same validation functions. Two inputs of 1 MB: clean text, and text where
//! one value in twenty is sensitive.
//!
//! Run: `cargo bench -p hoop-benches --bench masker`. After criterion, a summary line per
//! case prints MB/s of both and their ratio.

#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing
)]

use criterion::{BenchmarkId, Criterion, Throughput};
use hoop_core::masking::validate::{
    card_iin_plausible, iban_mod97_valid, jwt_header_valid, luhn_valid, ssn_valid,
};
use hoop_core::masking::{Field, Masker, RuleMasker, Strategy};
use regex::{Captures, Regex};
use std::borrow::Cow;
use std::hint::black_box;
use std::time::{Duration, Instant};

const SIZE: usize = 1 << 20;

/// Deterministic xorshift generator (no external randomness: same input every run).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[self.below(xs.len())]
    }
}

const WORDS: &[&str] = &[
    "the",
    "request",
    "was",
    "handled",
    "by",
    "server",
    "and",
    "returned",
    "a",
    "response",
    "with",
    "status",
    "user",
    "session",
    "opened",
    "closed",
    "database",
    "query",
    "took",
    "connection",
    "pool",
    "timeout",
    "retry",
    "after",
    "backend",
    "cache",
    "miss",
    "hit",
    "Customer",
    "Order",
    "invoice",
    "shipped",
    "to",
    "warehouse",
    "in",
    "Lisbon",
    "Berlin",
    "payment",
    "accepted",
    "declined",
    "for",
    "account",
    "report",
    "generated",
    "on",
    "Monday",
    "I",
    "think",
    "we",
    "should",
    "deploy",
    "this",
    "tomorrow",
    "morning",
    "because",
    "it",
    "fixes",
    "latency",
    "regression",
    "seen",
    "yesterday",
    "evening",
    "during",
    "peak",
    "load",
];
const PUNCT: &[&str] = &[
    " ", " ", " ", " ", " ", ", ", ". ", "; ", ": ", " - ", " (", ") ",
];
const LEVELS: &[&str] = &["INFO", "WARN", "DEBUG", "ERROR"];

fn luhn_complete(prefix: &str, len: usize, rng: &mut Rng) -> String {
    let mut digits: Vec<u8> = prefix.bytes().map(|b| b - b'0').collect();
    while digits.len() < len - 1 {
        digits.push(rng.below(10) as u8);
    }
    for check in 0..10u8 {
        let mut s: String = digits.iter().map(|d| char::from(b'0' + d)).collect();
        s.push(char::from(b'0' + check));
        if luhn_valid(s.as_bytes()) {
            return s;
        }
    }
    unreachable!()
}

const JWT: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIn0.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c";
const PEM: &str = "-----BEGIN PRIVATE KEY-----\nMIIBVQIBADANBgkqhkiG9w0BAQEFAASCAT8wggE7AgEAAkEAq7BFUpkGp3+LQmlQ\nYx2eqzDV+xeG8kx/sQFV18S5JhzGeIJNA72wSeukEPojtqUyX2J0CciPBh7eqclQ\n-----END PRIVATE KEY-----";
const IBANS: &[&str] = &[
    "DE89370400440532013000",
    "GB82 WEST 1234 5698 7654 32",
    "FR1420041010050500013M02606",
    "NL91ABNA0417164300",
];

fn sensitive(rng: &mut Rng) -> String {
    match rng.below(12) {
        0 => format!(
            "{}.{}@example.com",
            rng.pick(WORDS).to_lowercase(),
            rng.below(100)
        ),
        1 => luhn_complete("4", 16, rng),
        2 => {
            let c = luhn_complete("5", 16, rng);
            format!("{} {} {} {}", &c[0..4], &c[4..8], &c[8..12], &c[12..16])
        }
        3 => rng.pick(IBANS).to_owned(),
        4 => format!(
            "{:03}-{:02}-{:04}",
            100 + rng.below(500),
            10 + rng.below(80),
            1000 + rng.below(8000)
        ),
        5 => format!(
            "+1 (555) {:03}-{:04}",
            200 + rng.below(700),
            rng.below(10000)
        ),
        6 => format!(
            "10.{}.{}.{}",
            rng.below(256),
            rng.below(256),
            1 + rng.below(254)
        ),
        7 => format!("2001:db8::{:x}", rng.below(65536)),
        8 => JWT.to_owned(),
        9 => "AKIAIOSFODNN7EXAMPLE".to_owned(),
        10 => "ghp_abcdefghijklmnopqrstuvwxyz0123456789".to_owned(),
        _ => {
            if rng.below(8) == 0 {
                PEM.to_owned()
            } else {
                "xoxb-123456789012-abcdefghijklmnop".to_owned()
            }
        }
    }
}

/// One "value": a word, a small number, or (with probability `1/every`) a sensitive value.
fn text(seed: u64, every: usize) -> String {
    let mut rng = Rng(seed);
    let mut s = String::with_capacity(SIZE + 256);
    while s.len() < SIZE {
        if rng.below(2) == 0 {
            // A log line.
            s.push_str(&format!(
                "2024-01-{:02}T{:02}:{:02}:{:02}Z {} ",
                1 + rng.below(28),
                rng.below(24),
                rng.below(60),
                rng.below(60),
                rng.pick(LEVELS)
            ));
        }
        for _ in 0..20 {
            if every > 0 && rng.below(every) == 0 {
                s.push_str(&sensitive(&mut rng));
            } else if rng.below(10) == 0 {
                s.push_str(&format!("{}", rng.below(1000)));
            } else if rng.below(30) == 0 {
                s.push_str(&format!(
                    "status={} took {}ms",
                    200 + rng.below(300),
                    rng.below(500)
                ));
            } else {
                s.push_str(rng.pick(WORDS));
            }
            s.push_str(rng.pick(PUNCT));
        }
        s.push('\n');
    }
    s
}

/// The naive baseline: one regex per detector, run in sequence, each replacing its
/// validated matches.
type Validate = fn(&Captures<'_>) -> bool;

struct Baseline {
    passes: Vec<(Regex, &'static str, Validate)>,
}

fn ipv4_ok(c: &Captures<'_>) -> bool {
    c[0].split('.')
        .all(|o| o.parse::<u32>().is_ok_and(|v| v <= 255))
}

impl Baseline {
    fn new() -> Self {
        let r = |p: &str| Regex::new(p).unwrap();
        let always: Validate = |_| true;
        Baseline {
            passes: vec![
                (
                    r(r"(?s)-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----"),
                    "PRIVATE_KEY",
                    always,
                ),
                (
                    r(r"eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"),
                    "JWT",
                    |c| jwt_header_valid(c[0].split('.').next().unwrap().as_bytes()),
                ),
                (
                    r(r"(?-u:\b)(?:AKIA|ASIA)[A-Z0-9]{16}(?-u:\b)"),
                    "AWS_KEY",
                    always,
                ),
                (
                    r(r"(?-u:\b)(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{20,})"),
                    "GITHUB_TOKEN",
                    always,
                ),
                (
                    r(
                        r"(?-u:\b)xox[bpars]-[A-Za-z0-9-]{10,}|https?://hooks\.slack\.com/services/[A-Za-z0-9/_-]{10,}",
                    ),
                    "SLACK_TOKEN",
                    always,
                ),
                (
                    r(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"),
                    "EMAIL",
                    always,
                ),
                (
                    r(
                        r"(?-u:\b)[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?(?-u:\b)",
                    ),
                    "IBAN",
                    |c| iban_mod97_valid(c[0].as_bytes()),
                ),
                (
                    r(r"(?-u:\b)(?:[0-9][ -]?){12,18}[0-9](?-u:\b)"),
                    "CARD",
                    |c| luhn_valid(c[0].as_bytes()) && card_iin_plausible(c[0].as_bytes()),
                ),
                (
                    r(r"(?-u:\b)([0-9]{3})-([0-9]{2})-([0-9]{4})(?-u:\b)"),
                    "SSN",
                    |c| ssn_valid(c[1].as_bytes(), c[2].as_bytes(), c[3].as_bytes()),
                ),
                (
                    r(
                        r"\+[0-9][0-9 ().-]{6,20}[0-9]|\([0-9]{3}\) ?[0-9]{3}[-.][0-9]{4}|(?-u:\b)[0-9]{3}[-.][0-9]{3}[-.][0-9]{4}(?-u:\b)",
                    ),
                    "PHONE",
                    always,
                ),
                (
                    r(r"(?-u:\b)(?:[0-9]{1,3}\.){3}[0-9]{1,3}(?-u:\b)"),
                    "IPV4",
                    ipv4_ok,
                ),
                (
                    r(r"[0-9A-Fa-f]*:[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*"),
                    "IPV6",
                    |c| c[0].parse::<std::net::Ipv6Addr>().is_ok(),
                ),
            ],
        }
    }

    fn mask<'t>(&self, text: &'t str) -> (Cow<'t, str>, usize) {
        let mut cur: Cow<'t, str> = Cow::Borrowed(text);
        let mut n = 0usize;
        for (re, label, ok) in &self.passes {
            let replaced = re.replace_all(&cur, |c: &Captures<'_>| {
                if ok(c) {
                    n += 1;
                    format!("[REDACTED:{label}]")
                } else {
                    c[0].to_owned()
                }
            });
            if let Cow::Owned(s) = replaced {
                cur = Cow::Owned(s);
            }
        }
        (cur, n)
    }
}

struct Case {
    name: &'static str,
    text: String,
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "clean",
            text: text(0x9e37_79b9_7f4a_7c15, 0),
        },
        Case {
            name: "1_in_20_sensitive",
            text: text(0x2545_f491_4f6c_dd1d, 20),
        },
    ]
}

fn hoop_masker() -> RuleMasker {
    RuleMasker::builder()
        .all_detectors(Strategy::Redact)
        .build()
        .unwrap()
}

/// Short values as a database adapter sees them: (column, value), about one in ten
/// sensitive (e-mails, phones, a card in a note).
fn field_values() -> Vec<(&'static str, String)> {
    let mut rng = Rng(0x5851_f42d_4c95_7f2d);
    let mut out = Vec::new();
    for row in 0..20_000usize {
        out.push(("id", format!("{}", 100_000 + row)));
        out.push(("name", format!("{} {}", rng.pick(WORDS), rng.pick(WORDS))));
        out.push((
            "email",
            format!(
                "{}{}@example.org",
                rng.pick(WORDS).to_lowercase(),
                rng.below(100)
            ),
        ));
        out.push((
            "city",
            rng.pick(&["Lisbon", "Berlin", "Paris", "Oslo"]).to_owned(),
        ));
        out.push((
            "amount",
            format!("{}.{:02}", rng.below(10_000), rng.below(100)),
        ));
        out.push((
            "created_at",
            format!(
                "2024-0{}-{:02} 12:{:02}:00",
                1 + rng.below(9),
                1 + rng.below(28),
                rng.below(60)
            ),
        ));
        let note = if rng.below(20) == 0 {
            format!("paid with {}", luhn_complete("4", 16, &mut rng))
        } else {
            format!(
                "{} {} {}",
                rng.pick(WORDS),
                rng.pick(WORDS),
                rng.pick(WORDS)
            )
        };
        out.push(("note", note));
        if rng.below(4) == 0 {
            out.push((
                "phone",
                format!("555-{:03}-{:04}", rng.below(1000), rng.below(10_000)),
            ));
        }
    }
    out
}

fn criterion_fields(
    c: &mut Criterion,
    values: &[(&'static str, String)],
    hoop: &RuleMasker,
    base: &Baseline,
) {
    let bytes: usize = values.iter().map(|(_, v)| v.len()).sum();
    let mut g = c.benchmark_group("masker/per_field_values");
    g.throughput(Throughput::Bytes(bytes as u64));
    g.bench_function("hoop", |b| {
        b.iter(|| {
            values
                .iter()
                .map(|(col, v)| hoop.mask(&Field::named(col), black_box(v)).len())
                .sum::<usize>()
        })
    });
    g.bench_function("regex_baseline", |b| {
        b.iter(|| {
            values
                .iter()
                .map(|(_, v)| base.mask(black_box(v)).0.len())
                .sum::<usize>()
        })
    });
    g.finish();
}

fn criterion_benches(c: &mut Criterion, cases: &[Case], hoop: &RuleMasker, base: &Baseline) {
    let field = Field::anonymous();
    for case in cases {
        let mut g = c.benchmark_group(format!("masker/{}", case.name));
        g.throughput(Throughput::Bytes(case.text.len() as u64));
        g.bench_with_input(BenchmarkId::new("hoop", "1MB"), &case.text, |b, t| {
            b.iter(|| black_box(hoop.mask(&field, black_box(t))).len())
        });
        g.bench_with_input(
            BenchmarkId::new("regex_baseline", "1MB"),
            &case.text,
            |b, t| b.iter(|| black_box(base.mask(black_box(t)).0).len()),
        );
        g.finish();
    }
}

/// CPU time of this thread in nanoseconds (Linux `schedstat`), to report throughput that
/// does not depend on how busy the machine is.
fn thread_cpu_ns() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    s.split_whitespace().next()?.parse().ok()
}

/// (wall-clock MB/s, CPU-time MB/s) of `f` over `bytes`, for about two seconds.
fn mb_per_s(bytes: usize, f: &mut dyn FnMut()) -> (f64, Option<f64>) {
    f();
    let mut iters = 0u32;
    let cpu0 = thread_cpu_ns();
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(2) || iters < 3 {
        f();
        iters += 1;
    }
    let secs = start.elapsed().as_secs_f64();
    let total = bytes as f64 * f64::from(iters) / 1e6;
    let cpu = match (cpu0, thread_cpu_ns()) {
        (Some(a), Some(b)) if b > a => Some(total / ((b - a) as f64 / 1e9)),
        _ => None,
    };
    (total / secs, cpu)
}

fn summary(cases: &[Case], hoop: &RuleMasker, base: &Baseline) {
    let field = Field::anonymous();
    println!("\n== masker summary (1 MB inputs, all detectors on, redact) ==");
    for case in cases {
        let (out, hoop_n) = hoop.mask_counted(&field, &case.text);
        let borrowed = matches!(out, Cow::Borrowed(_));
        let (_, base_n) = base.mask(&case.text);
        let t = &case.text;
        let (h, h_cpu) = mb_per_s(t.len(), &mut || {
            black_box(hoop.mask(&field, black_box(t)).len());
        });
        let (b, b_cpu) = mb_per_s(t.len(), &mut || {
            black_box(base.mask(black_box(t)).0.len());
        });
        let cpu = match (h_cpu, b_cpu) {
            (Some(hc), Some(bc)) => {
                format!(
                    "   [cpu time: hoop {hc:>7.1} MB/s, baseline {bc:>6.1} MB/s, ratio {:>5.1}x]",
                    hc / bc
                )
            }
            _ => String::new(),
        };
        println!(
            "{:<18} hoop {:>7.1} MB/s   regex baseline {:>6.1} MB/s   ratio {:>5.1}x   masked: hoop {} / baseline {}{}{}",
            case.name,
            h,
            b,
            h / b,
            hoop_n,
            base_n,
            if borrowed { " (borrowed)" } else { "" },
            cpu
        );
    }
}

fn summary_fields(values: &[(&'static str, String)], hoop: &RuleMasker, base: &Baseline) {
    let bytes: usize = values.iter().map(|(_, v)| v.len()).sum();
    let masked = values
        .iter()
        .filter(|(col, v)| matches!(hoop.mask(&Field::named(col), v), Cow::Owned(_)))
        .count();
    let (h, h_cpu) = mb_per_s(bytes, &mut || {
        let n: usize = values
            .iter()
            .map(|(col, v)| hoop.mask(&Field::named(col), black_box(v)).len())
            .sum();
        black_box(n);
    });
    let (b, _) = mb_per_s(bytes, &mut || {
        let n: usize = values
            .iter()
            .map(|(_, v)| base.mask(black_box(v)).0.len())
            .sum();
        black_box(n);
    });
    let per_value = |mbs: f64| bytes as f64 / values.len() as f64 / mbs * 1e3;
    println!(
        "{:<18} hoop {:>7.1} MB/s ({:.0} ns/value)   regex baseline {:>6.1} MB/s ({:.0} ns/value)   ratio {:>5.1}x   {} values, {} masked{}",
        "per_field_values",
        h,
        per_value(h),
        b,
        per_value(b),
        h / b,
        values.len(),
        masked,
        h_cpu.map_or(String::new(), |c| format!(
            "   [cpu time: hoop {c:>7.1} MB/s]"
        ))
    );
}

fn main() {
    let cases = cases();
    let values = field_values();
    let hoop = hoop_masker();
    let base = Baseline::new();
    // `--profile-hoop <case index> [--email-only]`: only hoop, `MASK_PASSES` (300) passes
    // over one case, for `perf` / `time`.
    let args: Vec<String> = std::env::args().collect();
    if let Some(p) = args.iter().position(|a| a == "--profile-hoop") {
        let idx: usize = args.get(p + 1).and_then(|s| s.parse().ok()).unwrap_or(0);
        let t = &cases[idx].text;
        let hoop = if args.iter().any(|a| a == "--email-only") {
            RuleMasker::builder()
                .detector(hoop_core::masking::Detector::Email, Strategy::Redact)
                .build()
                .unwrap()
        } else {
            hoop
        };
        let mut n = 0usize;
        let passes: usize = std::env::var("MASK_PASSES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(300);
        for _ in 0..passes {
            n += hoop.mask(&Field::anonymous(), black_box(t)).len();
        }
        println!("{n}");
        return;
    }
    // `--adversarial`: throughput on inputs built to hit the detectors' worst cases.
    if args.iter().any(|a| a == "--adversarial") {
        let inputs: [(&str, String); 9] = [
            ("at_signs", "a@".repeat(SIZE / 2)),
            ("eyJ", "eyJ".repeat(SIZE / 3)),
            ("digits_spaced", "1 ".repeat(SIZE / 2)),
            ("digits_run", "7".repeat(SIZE)),
            ("dotted", "1.".repeat(SIZE / 2)),
            ("colons", "a:".repeat(SIZE / 2)),
            ("dashes", "-".repeat(SIZE)),
            (
                "begin_no_end",
                "-----BEGIN PRIVATE KEY-----\n".repeat(SIZE / 28),
            ),
            ("glued_phones", "(555) 123-4567".repeat(SIZE / 14)),
        ];
        for (name, t) in &inputs {
            let (h, cpu) = mb_per_s(t.len(), &mut || {
                black_box(hoop.mask(&Field::anonymous(), black_box(t)).len());
            });
            println!(
                "{name:<14} {h:>8.1} MB/s (cpu {:>8.1} MB/s)",
                cpu.unwrap_or(0.0)
            );
        }
        return;
    }
    if args.iter().any(|a| a == "--profile-fields") {
        let mut n = 0usize;
        for _ in 0..50 {
            for (col, v) in &values {
                n += hoop.mask(&Field::named(col), black_box(v)).len();
            }
        }
        println!("{n}");
        return;
    }
    let summary_only = std::env::args().any(|a| a == "--summary-only");
    if !summary_only {
        let mut c = Criterion::default()
            .measurement_time(Duration::from_secs(3))
            .warm_up_time(Duration::from_secs(1))
            .sample_size(20)
            .configure_from_args();
        criterion_benches(&mut c, &cases, &hoop, &base);
        criterion_fields(&mut c, &values, &hoop, &base);
        c.final_summary();
    }
    summary(&cases, &hoop, &base);
    summary_fields(&values, &hoop, &base);
}
