//! E-mail addresses, anchored at `@`.

use super::Hit;
use crate::masking::detector::Detector;
use crate::masking::prefilter::{at, run_end, run_start};

/// Characters of a local part. `*` is deliberately excluded so that a partial mask
/// (`j***@example.com`) is never matched again.
fn is_local(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'%' | b'+' | b'-')
}

fn is_label(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-'
}

/// An address around the `@` at `a`; the local part does not reach before `min_start`.
pub(crate) fn detect(bytes: &[u8], a: usize, min_start: usize) -> Option<Hit> {
    let mut start = run_start(bytes, a, 64, is_local).max(min_start);
    while at(bytes, start) == b'.' && start < a {
        start += 1;
    }
    if start >= a || at(bytes, a - 1) == b'.' {
        return None;
    }
    // Domain: at least two labels, the last alphabetic with 2+ letters.
    let mut pos = a + 1;
    let mut labels = 0usize;
    let mut end = None;
    while pos - a <= 253 {
        let label_end = run_end(bytes, pos, 63, is_label);
        if label_end == pos || at(bytes, pos) == b'-' || at(bytes, label_end - 1) == b'-' {
            break;
        }
        labels += 1;
        // The top-level domain: an alphabetic label, or the alphabetic start of a label
        // cut by '-' ("example.com-----BEGIN ..."): the address ends there.
        let alpha_end = run_end(bytes, pos, 63, |b| b.is_ascii_alphabetic());
        if labels >= 2
            && alpha_end - pos >= 2
            && (alpha_end == label_end || at(bytes, alpha_end) == b'-')
        {
            end = Some(alpha_end);
            if alpha_end < label_end {
                break;
            }
        }
        if at(bytes, label_end) == b'.' && is_label(at(bytes, label_end + 1)) {
            pos = label_end + 1;
        } else {
            break;
        }
    }
    let end = end?;
    if at(bytes, end).is_ascii_alphanumeric() || at(bytes, end) == b'@' {
        return None;
    }
    Some(Hit::new(start, end, Detector::Email))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn find(s: &str) -> Option<&str> {
        let a = s.find('@')?;
        detect(s.as_bytes(), a, 0).and_then(|h| s.get(h.start..h.end))
    }

    #[test]
    fn emails() {
        assert_eq!(
            find("mail john.doe@example.com."),
            Some("john.doe@example.com")
        );
        assert_eq!(find("<a+b@mail.co.uk>"), Some("a+b@mail.co.uk"));
        assert_eq!(find("j***@example.com"), None);
        assert_eq!(find("user@localhost"), None);
        assert_eq!(find("@example.com"), None);
        assert_eq!(find("a@b.c"), None);
        assert_eq!(find("x@1.2.3.4"), None);
        assert_eq!(find("x@example.com-----BEGIN"), Some("x@example.com"));
    }
}
