//! The hash chain of JSON-lines recordings, and its verifier.
//!
//! # Line format
//!
//! Every line of a recording is one JSON object, written in this member order:
//!
//! ```text
//! {"seq":3,"time":"2026-01-02T03:04:05.678Z","prev":"<64 hex>","type":"command",...,"hash":"<64 hex>"}
//! ```
//!
//! - `seq` numbers the lines from 1 (line *n* of the file has `seq` *n*);
//! - `prev` is the previous line's `hash`, 64 zeros on the first line;
//! - the line's *content* is its exact bytes with the final `,"hash":"…"` member removed
//!   (so it is itself a JSON object ending in `}`), and
//!   `hash = hex(SHA-256(prev ‖ content))`, where `prev` is the 64 ASCII hex digits.
//!
//! Hashing exact bytes (not a re-serialisation) means no canonical JSON form is needed:
//! any changed byte changes the line's hash, and because the next line's `prev` must equal
//! it, recomputing one line's `hash` still breaks the link to the next line. Each line
//! costs one SHA-256 over its content.
//!
//! [`verify`] reports the first broken line with its number: [`VerifyError::HashMismatch`]
//! for an edited line, [`VerifyError::Sequence`] for a removed, inserted or reordered line,
//! [`VerifyError::PrevMismatch`] for a line whose predecessor changed. A last line without
//! its newline (a crash in the middle of a write) and a missing `session_end` (a crash, or
//! lines cut from the end) are [`VerifyWarning`]s, not errors.
//!
//! A hash chain alone cannot detect that the *last* lines were removed together with the
//! end entry: compare [`VerifyReport::last_hash`] with the value the gateway logs when the
//! recording is finished (a `tracing` info line "recording closed" carries it) to anchor
//! the chain outside the file.

use std::io::{BufRead, Read as _};
use std::path::Path;
use std::time::SystemTime;

use aws_lc_rs::digest;

use super::time_serde;

/// The `prev` of the first line.
pub const ZERO_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Lines longer than this are refused by [`verify`] (16 MiB).
pub const MAX_LINE: usize = 16 << 20;

/// `,"hash":"` + 64 hex + `"}`.
const HASH_SUFFIX_LEN: usize = 9 + 64 + 2;

/// Builds chained lines (used by the JSONL writer).
#[derive(Debug)]
pub(crate) struct ChainWriter {
    seq: u64,
    prev: String,
    scratch: Vec<u8>,
    clock: Clock,
}

/// RFC 3339 timestamps with milliseconds, the date and time of the last second kept so
/// that lines written within the same second cost no calendar arithmetic.
#[derive(Debug, Default)]
struct Clock {
    second: Option<u64>,
    /// `YYYY-MM-DDTHH:MM:SS` of `second`.
    prefix: String,
}

impl Clock {
    fn write(&mut self, t: SystemTime, out: &mut Vec<u8>) {
        let Ok(since) = t.duration_since(SystemTime::UNIX_EPOCH) else {
            // Before 1970: the general formatter.
            out.extend_from_slice(time_serde::format_ms(t).as_bytes());
            return;
        };
        let secs = since.as_secs();
        if self.second != Some(secs) {
            let whole = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(secs);
            let full = time_serde::format_ms(whole);
            // `YYYY-MM-DDTHH:MM:SS.000Z`: keep what precedes the fraction.
            match full.split_once('.') {
                Some((prefix, _)) => {
                    self.prefix.clear();
                    self.prefix.push_str(prefix);
                    self.second = Some(secs);
                }
                None => {
                    out.extend_from_slice(time_serde::format_ms(t).as_bytes());
                    return;
                }
            }
        }
        out.extend_from_slice(self.prefix.as_bytes());
        let ms = since.subsec_millis();
        let digits = [
            b'.',
            b'0' + (ms / 100 % 10) as u8,
            b'0' + (ms / 10 % 10) as u8,
            b'0' + (ms % 10) as u8,
            b'Z',
        ];
        out.extend_from_slice(&digits);
    }
}

/// Appends the decimal digits of `n`.
fn push_decimal(out: &mut Vec<u8>, n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    let mut n = n;
    loop {
        i -= 1;
        if let Some(d) = digits.get_mut(i) {
            *d = b'0' + (n % 10) as u8;
        }
        n /= 10;
        if n == 0 || i == 0 {
            break;
        }
    }
    out.extend_from_slice(digits.get(i..).unwrap_or(&[]));
}

impl ChainWriter {
    pub(crate) fn new() -> Self {
        ChainWriter {
            seq: 0,
            prev: String::from(ZERO_HASH),
            scratch: Vec::with_capacity(1024),
            clock: Clock::default(),
        }
    }

    /// The hash of the last line written (the `prev` of the next one).
    pub(crate) fn last_hash(&self) -> &str {
        &self.prev
    }

    /// Lines written so far.
    pub(crate) fn entries(&self) -> u64 {
        self.seq
    }

    /// Appends one chained line (with its newline) for `body`, an object with a `type`
    /// member, to `out`. On error nothing is appended and the chain does not advance.
    pub(crate) fn append<B: serde::Serialize + ?Sized>(
        &mut self,
        time: SystemTime,
        body: &B,
        out: &mut Vec<u8>,
    ) -> Result<(), String> {
        let seq = self.seq + 1;
        // `{"seq":N,"time":"…","prev":"…",<members of body>}`: the body's object is
        // serialised once and spliced after the chain members (the time is RFC 3339 and
        // `prev` hex, so neither needs escaping).
        self.scratch.clear();
        self.scratch.extend_from_slice(b"{\"seq\":");
        push_decimal(&mut self.scratch, seq);
        self.scratch.extend_from_slice(b",\"time\":\"");
        self.clock.write(time, &mut self.scratch);
        self.scratch.extend_from_slice(b"\",\"prev\":\"");
        self.scratch.extend_from_slice(self.prev.as_bytes());
        self.scratch.push(b'"');
        let body_at = self.scratch.len();
        serde_json::to_writer(&mut self.scratch, body).map_err(|e| e.to_string())?;
        match self.scratch.get(body_at..) {
            Some(b"{}") => {
                self.scratch.truncate(body_at);
                self.scratch.push(b'}');
            }
            Some([b'{', ..]) => {
                if let Some(open) = self.scratch.get_mut(body_at) {
                    *open = b',';
                }
            }
            _ => return Err(String::from("entry is not a JSON object")),
        }
        // The serialiser always ends an object with `}`; the content hashed is the whole
        // object, then the hash member is spliced in before that brace.
        if self.scratch.last() != Some(&b'}') {
            return Err(String::from("entry is not a JSON object"));
        }
        let hash = content_hash(self.prev.as_bytes(), &self.scratch);
        self.scratch.pop();
        self.scratch.extend_from_slice(b",\"hash\":\"");
        self.scratch.extend_from_slice(hash.as_bytes());
        self.scratch.extend_from_slice(b"\"}");
        self.prev = hash;
        out.extend_from_slice(&self.scratch);
        out.push(b'\n');
        self.seq = seq;
        Ok(())
    }
}

fn push_hex(out: &mut String, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for &b in bytes {
        for nibble in [b >> 4, b & 0x0f] {
            let d = DIGITS.get(usize::from(nibble)).copied().unwrap_or(b'0');
            out.push(char::from(d));
        }
    }
}

fn hex_of(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    push_hex(&mut s, bytes);
    s
}

/// `hex(SHA-256(prev ‖ content))`.
fn content_hash(prev: &[u8], content: &[u8]) -> String {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(prev);
    ctx.update(content);
    hex_of(ctx.finish().as_ref())
}

/// What [`verify`] found in a recording whose chain is intact.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct VerifyReport {
    /// Complete, verified lines (including `session_start` and `session_end`).
    pub entries: u64,
    /// The session id from the `session_start` line.
    pub session_id: Option<String>,
    /// The reason of the `session_end` line; `None` when the recording has no end.
    pub end_reason: Option<String>,
    /// Events the recorder dropped, summed over the `dropped` lines.
    pub dropped_events: u64,
    /// The `hash` of the last verified line (the gateway logs this value when it closes a
    /// recording; compare them to detect lines cut from the end).
    pub last_hash: String,
    /// Things that are not proof of tampering but leave the recording incomplete.
    pub warnings: Vec<VerifyWarning>,
}

impl VerifyReport {
    /// Whether the recording is intact and ended with a `session_end` line.
    pub fn is_complete(&self) -> bool {
        self.warnings.is_empty() && self.end_reason.is_some()
    }
}

/// An incomplete but untampered recording (what a crash leaves).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "warning", rename_all = "snake_case")]
pub enum VerifyWarning {
    /// The last line has no newline: a write was cut short (a crash). It is not counted.
    Truncated {
        /// Its line number (1-based).
        line: u64,
        /// Bytes present on it.
        bytes: usize,
    },
    /// No `session_end` line: the gateway stopped before closing the recording, or
    /// lines were removed from the end.
    NoEnd {
        /// Verified lines.
        entries: u64,
    },
}

impl std::fmt::Display for VerifyWarning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            VerifyWarning::Truncated { line, bytes } => write!(
                f,
                "line {line}: truncated ({bytes} bytes without end of line; crash while writing?)"
            ),
            VerifyWarning::NoEnd { entries } => {
                write!(f, "no session_end after {entries} entries (crash or cut)")
            }
        }
    }
}

/// Proof that a recording was changed, or that it cannot be read. Line numbers are
/// 1-based and name the first line that does not verify.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// Reading failed.
    #[error("read error: {0}")]
    Io(#[from] std::io::Error),
    /// The recording has no line at all.
    #[error("empty recording")]
    Empty,
    /// The line is not a chained JSON entry (not JSON, hash member missing, too long).
    #[error("line {line}: malformed entry: {detail}")]
    Malformed {
        /// Line number.
        line: u64,
        /// What is wrong.
        detail: String,
    },
    /// The line's content does not match its own `hash`: it was edited.
    #[error("line {line}: hash mismatch (entry edited)")]
    HashMismatch {
        /// Line number.
        line: u64,
    },
    /// The line's `seq` is not its position: a line was removed, inserted or reordered
    /// just before it.
    #[error(
        "line {line}: sequence number {found}, expected {expected} (entry removed, inserted or reordered)"
    )]
    Sequence {
        /// Line number.
        line: u64,
        /// The `seq` the line should have.
        expected: u64,
        /// The `seq` it has.
        found: u64,
    },
    /// The line's `prev` is not the `hash` of the line before it: that line was changed.
    #[error("line {line}: prev mismatch (the line before it was changed or replaced)")]
    PrevMismatch {
        /// Line number.
        line: u64,
    },
    /// The structure is wrong: the first line is not `session_start`, a second
    /// `session_start`, or lines after `session_end`.
    #[error("line {line}: {detail}")]
    Structure {
        /// Line number.
        line: u64,
        /// What is wrong.
        detail: String,
    },
}

#[derive(serde::Deserialize)]
struct Head {
    seq: u64,
    prev: String,
    hash: String,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    count: Option<u64>,
    #[serde(default)]
    session_id: Option<String>,
}

/// Verifies a recording file; see [`verify`].
pub fn verify_file(path: impl AsRef<Path>) -> Result<VerifyReport, VerifyError> {
    let f = std::fs::File::open(path)?;
    verify(std::io::BufReader::new(f))
}

/// Verifies the hash chain of a JSON-lines recording read from `reader`.
///
/// Returns the first line that does not verify as an error; an intact recording gives a
/// [`VerifyReport`], with warnings when it is incomplete (truncated last line, no end).
///
/// ```no_run
/// let report = hoop_core::recording::verify_file("/var/lib/hoop/recordings/abc-1.jsonl")?;
/// for w in &report.warnings {
///     eprintln!("warning: {w}");
/// }
/// println!("{} entries, last hash {}", report.entries, report.last_hash);
/// # Ok::<(), hoop_core::recording::VerifyError>(())
/// ```
pub fn verify<R: BufRead>(mut reader: R) -> Result<VerifyReport, VerifyError> {
    let mut report = VerifyReport {
        last_hash: String::from(ZERO_HASH),
        ..VerifyReport::default()
    };
    let mut buf = Vec::with_capacity(4096);
    let mut line_no: u64 = 0;
    let mut ended = false;
    loop {
        buf.clear();
        let n = (&mut reader)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut buf)?;
        if n == 0 {
            break;
        }
        line_no += 1;
        if buf.last() != Some(&b'\n') {
            if buf.len() > MAX_LINE {
                return Err(VerifyError::Malformed {
                    line: line_no,
                    detail: format!("line longer than {MAX_LINE} bytes"),
                });
            }
            // Only the last line can lack its newline: a write cut short.
            report.warnings.push(VerifyWarning::Truncated {
                line: line_no,
                bytes: buf.len(),
            });
            break;
        }
        buf.pop();
        if ended {
            return Err(VerifyError::Structure {
                line: line_no,
                detail: String::from("entry after session_end"),
            });
        }
        let head = check_line(line_no, &buf, &report.last_hash)?;
        match head.kind.as_str() {
            "session_start" if line_no == 1 => report.session_id = head.session_id,
            "session_start" => {
                return Err(VerifyError::Structure {
                    line: line_no,
                    detail: String::from("second session_start"),
                });
            }
            _ if line_no == 1 => {
                return Err(VerifyError::Structure {
                    line: line_no,
                    detail: String::from("first entry is not session_start"),
                });
            }
            "session_end" => {
                ended = true;
                report.end_reason = Some(head.reason.unwrap_or_default());
            }
            "dropped" => {
                report.dropped_events = report
                    .dropped_events
                    .saturating_add(head.count.unwrap_or(0));
            }
            _ => {}
        }
        report.entries = line_no;
        report.last_hash = head.hash;
    }
    if line_no == 0 {
        return Err(VerifyError::Empty);
    }
    if !ended {
        report.warnings.push(VerifyWarning::NoEnd {
            entries: report.entries,
        });
    }
    Ok(report)
}

/// Checks one complete line (without its newline) against the previous line's hash.
fn check_line(line_no: u64, line: &[u8], prev_line_hash: &str) -> Result<Head, VerifyError> {
    let malformed = |detail: &str| VerifyError::Malformed {
        line: line_no,
        detail: detail.to_owned(),
    };
    let head: Head = serde_json::from_slice(line).map_err(|e| malformed(&e.to_string()))?;
    // The hash member must be the last one, exactly as written.
    let split = line
        .len()
        .checked_sub(HASH_SUFFIX_LEN)
        .ok_or_else(|| malformed("too short"))?;
    let (content, suffix) = line.split_at(split);
    let mut expected_suffix = Vec::with_capacity(HASH_SUFFIX_LEN);
    expected_suffix.extend_from_slice(b",\"hash\":\"");
    expected_suffix.extend_from_slice(head.hash.as_bytes());
    expected_suffix.extend_from_slice(b"\"}");
    if suffix != expected_suffix.as_slice() {
        return Err(malformed("hash member is not the last member"));
    }
    if head.prev.len() != 64 {
        return Err(malformed("prev is not a SHA-256 hex digest"));
    }
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(head.prev.as_bytes());
    ctx.update(content);
    ctx.update(b"}");
    if hex_of(ctx.finish().as_ref()) != head.hash {
        return Err(VerifyError::HashMismatch { line: line_no });
    }
    if head.seq != line_no {
        return Err(VerifyError::Sequence {
            line: line_no,
            expected: line_no,
            found: head.seq,
        });
    }
    if head.prev != prev_line_hash {
        return Err(VerifyError::PrevMismatch { line: line_no });
    }
    Ok(head)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cached_clock_matches_the_general_formatter() {
        let mut clock = Clock::default();
        let base = SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(1_795_000_000_123);
        // Same second (cached prefix), next seconds, a minute and a day boundary.
        for ms in [
            0u64, 1, 9, 10, 99, 100, 876, 999, 1000, 1001, 59_877, 86_399_999, 86_400_000,
        ] {
            let t = base + std::time::Duration::from_millis(ms);
            let mut out = Vec::new();
            clock.write(t, &mut out);
            assert_eq!(
                String::from_utf8(out).unwrap(),
                time_serde::format_ms(t),
                "{ms}"
            );
        }
    }

    #[test]
    fn decimals() {
        for n in [0u64, 7, 10, 12345, u64::MAX] {
            let mut out = Vec::new();
            push_decimal(&mut out, n);
            assert_eq!(out, n.to_string().into_bytes());
        }
    }

    #[derive(serde::Serialize)]
    #[serde(tag = "type", rename_all = "snake_case")]
    enum B {
        SessionStart { session_id: String },
        Note { n: u32 },
        SessionEnd { reason: String },
    }

    fn sample() -> Vec<u8> {
        let mut w = ChainWriter::new();
        let mut out = Vec::new();
        let t = SystemTime::UNIX_EPOCH;
        w.append(
            t,
            &B::SessionStart {
                session_id: "s".into(),
            },
            &mut out,
        )
        .unwrap();
        for n in 0..3 {
            w.append(t, &B::Note { n }, &mut out).unwrap();
        }
        w.append(
            t,
            &B::SessionEnd {
                reason: "bye".into(),
            },
            &mut out,
        )
        .unwrap();
        assert_eq!(w.entries(), 5);
        out
    }

    #[test]
    fn chain_round_trip() {
        let out = sample();
        let r = verify(out.as_slice()).unwrap();
        assert_eq!(r.entries, 5);
        assert_eq!(r.session_id.as_deref(), Some("s"));
        assert_eq!(r.end_reason.as_deref(), Some("bye"));
        assert!(r.is_complete());
        let first = out.split(|b| *b == b'\n').next().unwrap();
        let text = std::str::from_utf8(first).unwrap();
        assert!(
            text.starts_with("{\"seq\":1,\"time\":\"1970-01-01T00:00:00.000Z\",\"prev\":\"0000")
        );
    }

    #[test]
    fn recomputed_hash_breaks_next_prev() {
        let out = sample();
        let mut lines: Vec<String> = String::from_utf8(out)
            .unwrap()
            .lines()
            .map(String::from)
            .collect();
        // Edit line 3 and recompute its own hash: line 4's prev no longer matches.
        let edited = lines[2].replace("\"n\":1", "\"n\":7");
        let split = edited.len() - HASH_SUFFIX_LEN;
        let content = format!("{}}}", &edited[..split]);
        let prev: Head = serde_json::from_str(&edited).unwrap();
        let hash = content_hash(prev.prev.as_bytes(), content.as_bytes());
        lines[2] = format!("{},\"hash\":\"{hash}\"}}", &edited[..split]);
        let text = lines.join("\n") + "\n";
        match verify(text.as_bytes()) {
            Err(VerifyError::PrevMismatch { line: 4 }) => {}
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn garbage_is_malformed_not_panic() {
        for input in [
            &b"\n"[..],
            b"{}\n",
            b"not json\n",
            b"{\"seq\":1}\n",
            b"\xff\xfe\n",
        ] {
            assert!(matches!(
                verify(input),
                Err(VerifyError::Malformed { line: 1, .. })
            ));
        }
        assert!(matches!(verify(&b""[..]), Err(VerifyError::Empty)));
    }
}
