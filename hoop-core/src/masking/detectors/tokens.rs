//! Credential tokens: JWTs, AWS keys, GitHub and Slack tokens.

use super::Hit;
use crate::masking::detector::Detector;
use crate::masking::prefilter::{
    at, before, before_at, ends_with_at, is_word, run_end, starts_with_at,
};
use crate::masking::validate::jwt_header_valid;

fn is_b64url(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

fn is_b64(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'+' || b == b'/'
}

fn is_upper_alnum(b: u8) -> bool {
    b.is_ascii_uppercase() || b.is_ascii_digit()
}

/// A JWT whose header segment starts with the `eyJ` ending at the `J` at `j`.
pub(crate) fn jwt(bytes: &[u8], j: usize, min_start: usize) -> Option<Hit> {
    let s = j.checked_sub(2)?;
    if s < min_start
        || !starts_with_at(bytes, s, b"eyJ")
        || is_b64url(before_at(bytes, s, min_start))
    {
        return None;
    }
    let h_end = run_end(bytes, s, 4096, is_b64url);
    if at(bytes, h_end) != b'.' || h_end - s < 10 {
        return None;
    }
    let p_end = run_end(bytes, h_end + 1, 1 << 16, is_b64url);
    if p_end == h_end + 1 || at(bytes, p_end) != b'.' {
        return None;
    }
    let end = run_end(bytes, p_end + 1, 4096, is_b64url);
    if at(bytes, end) == b'.' && is_b64url(at(bytes, end + 1)) {
        return None;
    }
    jwt_header_valid(bytes.get(s..h_end)?).then(|| Hit::new(s, end, Detector::Jwt))
}

/// An AWS access key id (`AKIA`/`ASIA` + 16 upper-case alphanumerics) around the `I` at `i`.
pub(crate) fn aws_access_key(bytes: &[u8], i: usize, min_start: usize) -> Option<Hit> {
    let s = i.checked_sub(2)?;
    if s < min_start
        || !(starts_with_at(bytes, s, b"AKIA") || starts_with_at(bytes, s, b"ASIA"))
        || is_word(before_at(bytes, s, min_start))
    {
        return None;
    }
    let end = run_end(bytes, s + 4, 17, is_upper_alnum);
    (end - s == 20 && !is_word(at(bytes, end))).then(|| Hit::new(s, end, Detector::AwsKey))
}

/// Whether a field or key name reads like an AWS secret key (`aws_secret_access_key`,
/// `SecretAccessKey`, `secret_key`, …).
pub(crate) fn secret_key_name(name: &[u8]) -> bool {
    let mut norm = [0u8; 64];
    let mut n = 0usize;
    for &b in name.iter().rev().filter(|b| b.is_ascii_alphanumeric()) {
        match norm.get_mut(n) {
            Some(slot) => *slot = b.to_ascii_lowercase(),
            None => break,
        }
        n += 1;
    }
    let rev = norm.get(..n).unwrap_or(&[]);
    // Reversed "secretaccesskey" / "secretkey".
    rev.starts_with(b"yeksseccaterces") || rev.starts_with(b"yekterces")
}

/// Whether a whole value is shaped like an AWS secret access key (40 base64 characters).
pub(crate) fn is_secret_key_value(v: &[u8]) -> bool {
    v.len() == 40 && v.iter().all(|&b| is_b64(b))
}

/// An AWS secret key value after the `:` or `=` at `p`, when the name before it is
/// key-like (`aws_secret_access_key = …`, `"SecretAccessKey": "…"`).
pub(crate) fn aws_secret_key(bytes: &[u8], p: usize, min_start: usize) -> Option<Hit> {
    // Name end: skip closing quote and spaces before the separator.
    let mut name_end = p;
    for _ in 0..3 {
        if matches!(before(bytes, name_end), b'"' | b'\'' | b' ') {
            name_end -= 1;
        }
    }
    // Cheap checks first: the name ends in "key", the value is 40 base64 characters.
    let k = name_end.checked_sub(3)?;
    if !bytes
        .get(k..name_end)
        .is_some_and(|w| w.eq_ignore_ascii_case(b"key"))
    {
        return None;
    }
    let name_start = name_end.saturating_sub(40);
    if !secret_key_name(bytes.get(name_start..name_end)?) {
        return None;
    }
    let mut s = p + 1;
    for _ in 0..3 {
        if matches!(at(bytes, s), b'"' | b'\'' | b' ') {
            s += 1;
        }
    }
    let end = run_end(bytes, s, 41, is_b64);
    (s >= min_start && end - s == 40 && at(bytes, end) != b'=')
        .then(|| Hit::new(s, end, Detector::AwsKey))
}

/// GitHub tokens around the `_` at `u`: `gh[pousr]_` + 36+ alphanumerics, `github_pat_…`.
pub(crate) fn github(bytes: &[u8], u: usize, min_start: usize) -> Option<Hit> {
    if u >= min_start + 3 {
        let s = u - 3;
        if starts_with_at(bytes, s, b"gh")
            && matches!(at(bytes, s + 2), b'p' | b'o' | b'u' | b's' | b'r')
            && !is_word(before_at(bytes, s, min_start))
        {
            let end = run_end(bytes, u + 1, 256, |b| b.is_ascii_alphanumeric());
            if end - (u + 1) >= 36 && !is_word(at(bytes, end)) {
                return Some(Hit::new(s, end, Detector::GithubToken));
            }
        }
    }
    if u >= min_start + 6 && ends_with_at(bytes, u, b"github") && starts_with_at(bytes, u, b"_pat_")
    {
        let s = u - 6;
        if !is_word(before_at(bytes, s, min_start)) {
            let end = run_end(bytes, u + 5, 256, is_word);
            if end - (u + 5) >= 20 {
                return Some(Hit::new(s, end, Detector::GithubToken));
            }
        }
    }
    None
}

/// Slack tokens around the `-` at `d` (`xoxb-…`, `xoxp-…`, `xoxa-…`, `xoxr-…`, `xoxs-…`).
pub(crate) fn slack_token(bytes: &[u8], d: usize, min_start: usize) -> Option<Hit> {
    let s = d.checked_sub(4)?;
    if s < min_start
        || !starts_with_at(bytes, s, b"xox")
        || !matches!(at(bytes, s + 3), b'b' | b'p' | b'a' | b'r' | b's')
        || is_word(before_at(bytes, s, min_start))
    {
        return None;
    }
    let end = run_end(bytes, d + 1, 256, |b| {
        b.is_ascii_alphanumeric() || b == b'-'
    });
    (end - (d + 1) >= 10 && !is_word(at(bytes, end)))
        .then(|| Hit::new(s, end, Detector::SlackToken))
}

/// Slack incoming-webhook URLs around the `/` at `sl`: `https://hooks.slack.com/services/…`.
pub(crate) fn slack_webhook(bytes: &[u8], sl: usize, min_start: usize) -> Option<Hit> {
    const HOST: &[u8] = b"hooks.slack.com";
    if !ends_with_at(bytes, sl, HOST) || !starts_with_at(bytes, sl, b"/services/") {
        return None;
    }
    let mut s = sl - HOST.len();
    for scheme in [&b"https://"[..], &b"http://"[..]] {
        if ends_with_at(bytes, s, scheme) {
            s -= scheme.len();
            break;
        }
    }
    if s < min_start || is_word(before_at(bytes, s, min_start)) {
        return None;
    }
    let path = sl + b"/services/".len();
    let end = run_end(bytes, path, 512, |b| {
        b.is_ascii_alphanumeric() || matches!(b, b'/' | b'_' | b'-')
    });
    (end - path >= 10).then(|| Hit::new(s, end, Detector::SlackToken))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn first(s: &str, anchor: u8, f: fn(&[u8], usize, usize) -> Option<Hit>) -> Option<&str> {
        s.bytes()
            .enumerate()
            .filter(|(_, b)| *b == anchor)
            .find_map(|(i, _)| f(s.as_bytes(), i, 0))
            .and_then(|h| s.get(h.start..h.end))
    }

    const JWT: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U";

    #[test]
    fn jwts() {
        let text = format!("Bearer {JWT} end");
        assert_eq!(first(&text, b'J', jwt), Some(JWT));
        assert_eq!(first("eyJub3RhIGp3dA.abc.def", b'J', jwt), None);
        assert_eq!(
            first("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9", b'J', jwt),
            None
        );
    }

    #[test]
    fn aws() {
        assert_eq!(
            first("key AKIAIOSFODNN7EXAMPLE,", b'I', aws_access_key),
            Some("AKIAIOSFODNN7EXAMPLE")
        );
        assert_eq!(first("AKIAIOSFODNN7EXAMPL", b'I', aws_access_key), None);
        assert_eq!(first("XAKIAIOSFODNN7EXAMPLE", b'I', aws_access_key), None);
        let s = "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n";
        assert_eq!(
            first(s, b'=', aws_secret_key),
            Some("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
        );
        let j = r#"{"SecretAccessKey": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"}"#;
        assert!(first(j, b':', aws_secret_key).is_some());
        let other = "aws_region = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
        assert_eq!(first(other, b'=', aws_secret_key), None);
    }

    #[test]
    fn github_and_slack() {
        let t = "token ghp_abcdefghijklmnopqrstuvwxyz0123456789 x";
        assert_eq!(
            first(t, b'_', github),
            Some("ghp_abcdefghijklmnopqrstuvwxyz0123456789")
        );
        assert_eq!(first("ghp_short", b'_', github), None);
        let p = "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz";
        assert_eq!(first(p, b'_', github), Some(p));
        assert_eq!(
            first("t=xoxb-1234567890-abcdefghij", b'-', slack_token),
            Some("xoxb-1234567890-abcdefghij")
        );
        assert_eq!(first("xoxb-***", b'-', slack_token), None);
        let w = "url https://hooks.slack.com/services/T000/B000/XXXXXXXXXXXX done";
        assert_eq!(
            first(w, b'/', slack_webhook),
            Some("https://hooks.slack.com/services/T000/B000/XXXXXXXXXXXX")
        );
    }
}
