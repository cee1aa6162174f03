//! IPv6 addresses, anchored at `:` with hex digits around; validated with
//! [`std::net::Ipv6Addr`].

use super::Hit;
use crate::masking::detector::Detector;
use crate::masking::prefilter::{at, before_at, is_word, run_end, run_start};
use std::net::Ipv6Addr;

fn is_v6(b: u8) -> bool {
    b.is_ascii_hexdigit() || b == b':' || b == b'.'
}

/// An address around the `:` at `c`, starting no earlier than `min_start`; or the end of
/// the rejected candidate (every colon before it gives the same candidate).
pub(crate) fn detect(text: &str, c: usize, min_start: usize) -> Result<Hit, usize> {
    let bytes = text.as_bytes();
    let start = run_start(bytes, c, 45, is_v6).max(min_start);
    let mut end = run_end(bytes, c, 46, is_v6);
    while end > c && at(bytes, end - 1) == b'.' {
        end -= 1;
    }
    let reject = Err(end.max(c + 1));
    if is_word(before_at(bytes, start, min_start)) || is_word(at(bytes, end)) {
        return reject;
    }
    let Some(cand) = bytes.get(start..end) else {
        return reject;
    };
    // Without "::" an address has seven colons (six before an embedded IPv4 address).
    let colons = cand.iter().filter(|&&b| b == b':').count();
    let compressed = cand.windows(2).any(|w| w == b"::");
    if !(compressed && colons >= 2 || colons >= 6) || !cand.iter().any(u8::is_ascii_digit) {
        return reject;
    }
    match text.get(start..end).map(str::parse::<Ipv6Addr>) {
        Some(Ok(_)) => Ok(Hit::new(start, end, Detector::Ipv6)),
        _ => reject,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn find(s: &str) -> Option<&str> {
        s.bytes()
            .enumerate()
            .filter(|(_, b)| *b == b':')
            .find_map(|(i, _)| detect(s, i, 0).ok())
            .and_then(|h| s.get(h.start..h.end))
    }

    #[test]
    fn v6() {
        assert_eq!(find("from 2001:db8::1 ok"), Some("2001:db8::1"));
        assert_eq!(find("[fe80::1]:22"), Some("fe80::1"));
        assert_eq!(find("lo ::1."), Some("::1"));
        assert_eq!(find("at 12:30:45"), None);
        assert_eq!(find("std::net::Ipv6Addr"), None);
        assert_eq!(find("mac 00:1a:2b:3c:4d:5e"), None);
        assert_eq!(find("[REDACTED:IPV6]"), None);
    }
}
