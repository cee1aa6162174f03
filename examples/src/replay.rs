//! Reading recordings back: a readable transcript of a JSONL session recording,
//! hash-chain verification, and timed playback of asciicast v2 terminal recordings.

use std::fmt::Write as _;
use std::io::{BufRead, Write};
use std::path::Path;
use std::time::Duration;

use hoop_core::recording::{VerifyError, verify_file};
use serde_json::Value;

/// What a recording file is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A hoop JSON-lines audit recording (hash-chained).
    Jsonl,
    /// An asciicast v2 terminal recording.
    Asciicast,
}

/// Why a recording could not be shown.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// Reading failed.
    #[error("read error: {0}")]
    Io(#[from] std::io::Error),
    /// A line is not what the format says.
    #[error("line {line}: {detail}")]
    Malformed {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        detail: String,
    },
    /// Not a recording this tool knows.
    #[error("not a hoop JSONL recording nor an asciicast v2 file")]
    Unknown,
}

/// Guesses the kind of a recording from its first line.
pub fn detect(first_line: &str) -> Result<Kind, ReplayError> {
    let v: Value = serde_json::from_str(first_line).map_err(|_| ReplayError::Unknown)?;
    if v.get("version").and_then(Value::as_u64) == Some(2) {
        Ok(Kind::Asciicast)
    } else if v.get("seq").is_some() && v.get("hash").is_some() {
        Ok(Kind::Jsonl)
    } else {
        Err(ReplayError::Unknown)
    }
}

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

/// Shortens long free text for one transcript line.
fn one_line(text: &str) -> String {
    let t: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if t.chars().count() > 200 {
        let mut c: String = t.chars().take(199).collect();
        c.push('…');
        c
    } else {
        t
    }
}

/// Formats a JSONL recording as a readable transcript: who, when, each statement with
/// its decision, result rows, masked values and errors, approvals, the end.
pub fn transcript<R: BufRead>(reader: R) -> Result<String, ReplayError> {
    let mut out = String::new();
    let mut user = String::from("?");
    // What a result's `rows` count: rows, or body bytes for HTTP.
    let mut unit = "row(s)";
    for (i, line) in reader.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let v: Value = serde_json::from_str(&line).map_err(|e| ReplayError::Malformed {
            line: i + 1,
            detail: e.to_string(),
        })?;
        let time = s(&v, "time");
        let time = time.get(11..23).unwrap_or(time);
        match s(&v, "type") {
            "session_start" => {
                let id = v.get("identity").cloned().unwrap_or(Value::Null);
                user = s(&id, "subject").to_owned();
                unit = if s(&v, "protocol") == "http" {
                    "byte(s)"
                } else {
                    "row(s)"
                };
                let groups: Vec<&str> = id
                    .get("groups")
                    .and_then(Value::as_array)
                    .map(|a| a.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                let _ = writeln!(
                    out,
                    "{} session {} by {} [{}] ({}) on {} ({}) from {}",
                    s(&v, "time"),
                    s(&v, "session_id"),
                    user,
                    groups.join(","),
                    s(&id, "method"),
                    s(&v, "resource"),
                    s(&v, "protocol"),
                    s(&v, "client"),
                );
            }
            "command" => {
                let reason = v
                    .get("reason")
                    .and_then(Value::as_str)
                    .map(|r| format!("  ({r})"))
                    .unwrap_or_default();
                let _ = writeln!(
                    out,
                    "{time} {user:<10} {:<6} {:<11} {}{reason}",
                    s(&v, "decision").to_uppercase(),
                    s(&v, "class"),
                    one_line(s(&v, "text")),
                );
            }
            "command_result" => {
                let mut parts = Vec::new();
                if let Some(st) = v.get("status").and_then(Value::as_i64) {
                    parts.push(format!("status {st}"));
                }
                if let Some(b) = v.get("bytes_in").and_then(Value::as_u64) {
                    parts.push(format!("{b} byte(s) in"));
                }
                if let Some(r) = v.get("rows").and_then(Value::as_u64) {
                    parts.push(format!("{r} {unit}"));
                }
                let masked = v.get("masked_fields").and_then(Value::as_u64).unwrap_or(0);
                if masked > 0 {
                    parts.push(format!("{masked} value(s) masked"));
                }
                if let Some(ms) = v.get("duration_ms").and_then(Value::as_u64) {
                    parts.push(format!("{ms} ms"));
                }
                if let Some(e) = v.get("error").and_then(Value::as_str) {
                    parts.push(format!("ERROR {}", one_line(e)));
                }
                let _ = writeln!(out, "{time} {:<10}   -> {}", "", parts.join(", "));
            }
            "approval" => {
                let by = v
                    .get("reviewer")
                    .and_then(Value::as_str)
                    .map(|r| format!(" by {r}"))
                    .unwrap_or_default();
                let reason = v
                    .get("reason")
                    .and_then(Value::as_str)
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default();
                let _ = writeln!(
                    out,
                    "{time} {:<10}   review {} {}{by}{reason}",
                    "",
                    s(&v, "review_id"),
                    s(&v, "state"),
                );
            }
            "error" => {
                let _ = writeln!(
                    out,
                    "{time} {:<10}   ERROR {}",
                    "",
                    one_line(s(&v, "message"))
                );
            }
            "note" => {
                let detail = v.get("detail").map(Value::to_string).unwrap_or_default();
                let _ = writeln!(
                    out,
                    "{time} {:<10}   note {}: {}",
                    "",
                    s(&v, "kind"),
                    one_line(&detail)
                );
            }
            "terminal" => {
                let _ = writeln!(
                    out,
                    "{time} {:<10}   terminal {}: {:?}",
                    "",
                    s(&v, "stream"),
                    s(&v, "data")
                );
            }
            "dropped" => {
                let n = v.get("count").and_then(Value::as_u64).unwrap_or(0);
                let _ = writeln!(
                    out,
                    "{time} {:<10}   ({n} event(s) lost: recording queue full)",
                    ""
                );
            }
            "session_end" | "end" => {
                let _ = writeln!(out, "{} session ended: {}", s(&v, "time"), s(&v, "reason"));
            }
            other => {
                let _ = writeln!(out, "{time} {:<10}   {other}", "");
            }
        }
    }
    Ok(out)
}

/// Checks the hash chain of the recording at `path`. `Ok` is a one-line summary
/// (with warnings for an incomplete recording); `Err` says where it breaks.
pub fn verify(path: &Path) -> Result<String, String> {
    match verify_file(path) {
        Ok(r) => {
            let mut msg = format!(
                "OK: {} entries, hash chain intact, last hash {}",
                r.entries, r.last_hash
            );
            if let Some(reason) = &r.end_reason {
                let _ = write!(msg, ", ended: {reason}");
            }
            for w in &r.warnings {
                let _ = write!(msg, "\nwarning: {w}");
            }
            Ok(msg)
        }
        Err(e @ VerifyError::Io(_)) => Err(format!("{}: {e}", path.display())),
        Err(e) => Err(format!("BROKEN: {}: {e}", path.display())),
    }
}

/// Plays an asciicast v2 recording to `out` with its timing divided by `speed`; pauses
/// longer than `max_idle` are shortened to it. Only output (`o`) events are written.
pub fn play<R: BufRead, W: Write>(
    reader: R,
    out: &mut W,
    speed: f64,
    max_idle: Duration,
) -> Result<(), ReplayError> {
    let speed = if speed.is_finite() && speed > 0.0 {
        speed
    } else {
        1.0
    };
    let mut last = 0.0_f64;
    for (i, line) in reader.lines().enumerate() {
        let line = line?;
        if i == 0 {
            if detect(&line)? != Kind::Asciicast {
                return Err(ReplayError::Unknown);
            }
            continue;
        }
        if line.trim().is_empty() {
            continue;
        }
        let malformed = |detail: &str| ReplayError::Malformed {
            line: i + 1,
            detail: detail.to_owned(),
        };
        let v: Value = serde_json::from_str(&line).map_err(|e| malformed(&e.to_string()))?;
        let (Some(t), Some(kind), Some(data)) = (
            v.get(0).and_then(Value::as_f64),
            v.get(1).and_then(Value::as_str),
            v.get(2).and_then(Value::as_str),
        ) else {
            return Err(malformed("expected [time, code, data]"));
        };
        let wait = ((t - last).max(0.0) / speed).min(max_idle.as_secs_f64());
        last = t;
        if wait > 0.0 {
            std::thread::sleep(Duration::from_secs_f64(wait));
        }
        if kind == "o" {
            out.write_all(data.as_bytes())?;
            out.flush()?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plays_asciicast_output_only() {
        let cast = "{\"version\":2,\"width\":80,\"height\":24}\n[0.001,\"o\",\"hello \"]\n[0.002,\"i\",\"x\"]\n[0.003,\"o\",\"world\"]\n";
        let mut out = Vec::new();
        play(cast.as_bytes(), &mut out, 100.0, Duration::from_millis(10)).unwrap();
        assert_eq!(out, b"hello world");
    }

    #[test]
    fn transcript_shows_commands_and_results() {
        let rec = concat!(
            "{\"seq\":1,\"time\":\"2026-01-02T03:04:05.678Z\",\"prev\":\"0\",\"type\":\"session_start\",\"session_id\":\"s-1\",\"identity\":{\"subject\":\"alice\",\"groups\":[\"dev\"],\"method\":\"static_token\"},\"resource\":\"db\",\"protocol\":\"postgres\",\"client\":\"127.0.0.1:5\",\"hash\":\"x\"}\n",
            "{\"seq\":2,\"time\":\"2026-01-02T03:04:06.000Z\",\"prev\":\"x\",\"type\":\"command\",\"text\":\"select email from users\",\"class\":\"read\",\"decision\":\"allow\",\"hash\":\"y\"}\n",
            "{\"seq\":3,\"time\":\"2026-01-02T03:04:06.010Z\",\"prev\":\"y\",\"type\":\"command_result\",\"duration_ms\":3,\"rows\":2,\"masked_fields\":2,\"hash\":\"z\"}\n",
        );
        let t = transcript(rec.as_bytes()).unwrap();
        assert!(t.contains("by alice [dev]"), "{t}");
        assert!(
            t.contains("ALLOW  read        select email from users"),
            "{t}"
        );
        assert!(t.contains("2 row(s), 2 value(s) masked, 3 ms"), "{t}");
    }

    #[test]
    fn transcript_shows_http_results() {
        let rec = concat!(
            "{\"seq\":1,\"time\":\"2026-01-02T03:04:05.678Z\",\"prev\":\"0\",\"type\":\"session_start\",\"session_id\":\"s-2\",\"identity\":{\"subject\":\"bob\",\"groups\":[],\"method\":\"oidc\"},\"resource\":\"api\",\"protocol\":\"http\",\"client\":\"127.0.0.1:5\",\"hash\":\"x\"}\n",
            "{\"seq\":2,\"time\":\"2026-01-02T03:04:06.000Z\",\"prev\":\"x\",\"type\":\"command\",\"text\":\"POST /orders\",\"class\":\"write\",\"decision\":\"allow\",\"hash\":\"y\"}\n",
            "{\"seq\":3,\"time\":\"2026-01-02T03:04:06.010Z\",\"prev\":\"y\",\"type\":\"command_result\",\"duration_ms\":4,\"rows\":120,\"masked_fields\":1,\"status\":201,\"bytes_in\":37,\"hash\":\"z\"}\n",
        );
        let t = transcript(rec.as_bytes()).unwrap();
        assert!(t.contains("ALLOW  write       POST /orders"), "{t}");
        assert!(
            t.contains("status 201, 37 byte(s) in, 120 byte(s), 1 value(s) masked, 4 ms"),
            "{t}"
        );
    }
}
