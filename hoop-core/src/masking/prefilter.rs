//! The prefilter: one pass over the bytes with a 256-entry class table that stops only at
//! candidate anchors (`@`, digits, `:`, `=`, `-`, `_`, `/`, `J`, `I`). Everything else is
//! skipped without further work, so text without sensitive values is scanned at memory
//! speed and never copied.

use super::detector::{Detector, DetectorSet};

/// Byte classes: a non-zero entry marks an anchor byte for the enabled detectors.
#[derive(Clone)]
pub(crate) struct AnchorTable {
    table: [u8; 256],
}

impl std::fmt::Debug for AnchorTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.table.iter().filter(|&&b| b != 0).count();
        write!(f, "AnchorTable({n} anchors)")
    }
}

impl AnchorTable {
    /// The table for a set of detectors.
    pub(crate) fn new(set: DetectorSet) -> Self {
        let mut table = [0u8; 256];
        let mut mark = |bytes: &[u8]| {
            for &b in bytes {
                if let Some(slot) = table.get_mut(usize::from(b)) {
                    *slot = 1;
                }
            }
        };
        if set.contains(Detector::Email) {
            mark(b"@");
        }
        if [
            Detector::CreditCard,
            Detector::Iban,
            Detector::Ssn,
            Detector::Phone,
            Detector::Ipv4,
        ]
        .iter()
        .any(|d| set.contains(*d))
        {
            mark(b"0123456789");
        }
        if set.contains(Detector::Ipv6) {
            mark(b":");
        }
        if set.contains(Detector::Jwt) {
            mark(b"J");
        }
        if set.contains(Detector::AwsKey) {
            mark(b"I:=");
        }
        if set.contains(Detector::GithubToken) {
            mark(b"_");
        }
        if set.contains(Detector::SlackToken) {
            mark(b"-/");
        }
        if set.contains(Detector::PrivateKey) {
            mark(b"-");
        }
        AnchorTable { table }
    }

    #[inline(always)]
    fn is_anchor(&self, b: u8) -> bool {
        // `usize::from(u8)` is always < 256: the bounds check is optimised away.
        self.table.get(usize::from(b)).is_some_and(|&c| c != 0)
    }

    /// Position of the first anchor at or after `from`.
    #[inline]
    pub(crate) fn next(&self, bytes: &[u8], from: usize) -> Option<usize> {
        let rest = bytes.get(from..)?;
        // Eight bytes at a time: OR the classes of a block together (no branch per byte),
        // and only look at single bytes inside a block that holds an anchor.
        let mut chunks = rest.chunks_exact(8);
        let mut base = from;
        for chunk in chunks.by_ref() {
            let any = chunk
                .iter()
                .fold(0u8, |acc, &b| acc | self.table.get(usize::from(b)).copied().unwrap_or(0));
            if any != 0 {
                return chunk
                    .iter()
                    .position(|&b| self.is_anchor(b))
                    .map(|p| base + p);
            }
            base += 8;
        }
        chunks
            .remainder()
            .iter()
            .position(|&b| self.is_anchor(b))
            .map(|p| base + p)
    }
}

/// The byte at `i`, or 0 past either end.
#[inline(always)]
pub(crate) fn at(bytes: &[u8], i: usize) -> u8 {
    bytes.get(i).copied().unwrap_or(0)
}

/// The byte before `i`, or 0 at the start.
#[inline(always)]
pub(crate) fn before(bytes: &[u8], i: usize) -> u8 {
    i.checked_sub(1).map_or(0, |p| at(bytes, p))
}

/// Letters, digits and `_`: a match must not continue into one of these.
#[inline(always)]
pub(crate) fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// `bytes[from..]` starts with `lit`.
#[inline]
pub(crate) fn starts_with_at(bytes: &[u8], from: usize, lit: &[u8]) -> bool {
    bytes.get(from..).is_some_and(|s| s.starts_with(lit))
}

/// `bytes[..end]` ends with `lit`.
#[inline]
pub(crate) fn ends_with_at(bytes: &[u8], end: usize, lit: &[u8]) -> bool {
    bytes.get(..end).is_some_and(|s| s.ends_with(lit))
}

/// End of the run of bytes satisfying `f` starting at `from`, at most `max` long.
#[inline]
pub(crate) fn run_end(bytes: &[u8], from: usize, max: usize, f: impl Fn(u8) -> bool) -> usize {
    let n = bytes
        .get(from..)
        .map_or(0, |s| s.iter().take(max).take_while(|&&b| f(b)).count());
    from + n
}

/// Start of the run of bytes satisfying `f` ending at `end`, at most `max` long.
#[inline]
pub(crate) fn run_start(bytes: &[u8], end: usize, max: usize, f: impl Fn(u8) -> bool) -> usize {
    let n = bytes
        .get(..end)
        .map_or(0, |s| s.iter().rev().take(max).take_while(|&&b| f(b)).count());
    end - n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_anchors_in_and_after_blocks() {
        let t = AnchorTable::new(DetectorSet::all());
        assert_eq!(t.next(b"hello world, this is text", 0), None);
        assert_eq!(t.next(b"hello world @ x", 0), Some(12));
        assert_eq!(t.next(b"abc1", 0), Some(3));
        assert_eq!(t.next(b"abc1", 4), None);
        assert_eq!(t.next(b"abc1", 9), None);
        let only_email = AnchorTable::new(DetectorSet::empty().with(Detector::Email));
        assert_eq!(only_email.next(b"123 - : x@y", 0), Some(9));
    }

    #[test]
    fn runs() {
        assert_eq!(run_end(b"abc123", 0, 10, |b| b.is_ascii_alphabetic()), 3);
        assert_eq!(run_start(b"abc123", 6, 10, |b| b.is_ascii_digit()), 3);
        assert_eq!(run_start(b"abc123", 6, 2, |b| b.is_ascii_digit()), 4);
        assert_eq!(run_end(b"abc", 7, 10, |_| true), 7);
    }
}
