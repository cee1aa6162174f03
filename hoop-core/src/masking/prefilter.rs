//! The prefilter: one pass over the bytes, sixteen at a time, that stops only at candidate
//! anchors. Each byte is classified together with its neighbours, with branch-free
//! comparisons the compiler turns into SIMD code:
//!
//! | anchor | for |
//! |---|---|
//! | a digit starting a run (not after a lower-case letter) of 4+ digits, or of 1-3 digits followed by a separator and a digit, or after `+`, `(` or two upper-case letters | cards, IBANs, SSNs, phones, IPv4 |
//! | `@` | e-mail |
//! | `:` not followed by a space | IPv6 |
//! | `:` or `=` after `y`, `Y`, a quote or a space | AWS secret keys (`secret_key = …`) |
//! | `I` after `K` or `S` | AWS access key ids (`AKIA`, `ASIA`) |
//! | `J` after `y` | JWTs (`eyJ`) |
//! | `_` | GitHub tokens (`ghp_`, `github_pat_`) |
//! | `-` two bytes after `x` | Slack tokens (`xoxb-`) |
//! | `/` after `m` | Slack webhooks (`hooks.slack.com/services/`) |
//! | `-` after `-` | PEM private keys (`-----BEGIN`) |
//!
//! Everything else is skipped without further work, so text without sensitive values is
//! scanned quickly and never copied.

use super::detector::{Detector, DetectorSet};

/// Bytes classified per step.
pub(crate) const BLOCK: usize = 16;

/// Values up to this length are classified at once from a padded copy.
pub(crate) const SHORT: usize = 3 * BLOCK;

type Lanes = [u8; BLOCK];

/// Which anchors are on, as per-lane byte masks (0x00 or 0xFF) so classification is
/// branch-free and needs no broadcast in the loop.
#[derive(Clone, Copy)]
pub(crate) struct AnchorTable {
    digit: Lanes,
    at: Lanes,
    colon6: Lanes,
    aws: Lanes,
    jwt: Lanes,
    underscore: Lanes,
    slack: Lanes,
    pem: Lanes,
    /// Every anchor is on (the common configuration gets a specialised loop).
    all: bool,
}

impl std::fmt::Debug for AnchorTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AnchorTable")
    }
}

fn on(b: bool) -> Lanes {
    [if b { 0xFF } else { 0 }; BLOCK]
}

#[inline(always)]
fn is(x: bool) -> u8 {
    u8::from(x).wrapping_neg()
}

impl AnchorTable {
    /// The anchors for a set of detectors.
    pub(crate) fn new(set: DetectorSet) -> Self {
        let numeric = [
            Detector::CreditCard,
            Detector::Iban,
            Detector::Ssn,
            Detector::Phone,
            Detector::Ipv4,
        ]
        .iter()
        .any(|d| set.contains(*d));
        let aws = set.contains(Detector::AwsKey);
        AnchorTable {
            digit: on(numeric),
            at: on(set.contains(Detector::Email)),
            colon6: on(set.contains(Detector::Ipv6)),
            aws: on(aws),
            jwt: on(set.contains(Detector::Jwt)),
            underscore: on(set.contains(Detector::GithubToken)),
            slack: on(set.contains(Detector::SlackToken)),
            pem: on(set.contains(Detector::PrivateKey)),
            all: set == DetectorSet::all(),
        }
    }

    /// Non-zero when `c` is an anchor, given its neighbours `x = [pp, p, c, n1, n2, n3, n4]`
    /// and the lane masks of the enabled detectors `on = [digit, at, colon6, aws, jwt,
    /// underscore, slack, pem]`. Branch-free.
    #[inline(always)]
    fn class<const ALL: bool>(x: [u8; 7], on: [u8; 8]) -> u8 {
        let [pp, p, c, n1, n2, n3, n4] = x;
        let on = if ALL { [0xFF; 8] } else { on };
        let [
            digit_on,
            at_on,
            colon6_on,
            aws_on,
            jwt_on,
            underscore_on,
            slack_on,
            pem_on,
        ] = on;
        let d = |v: u8| is(v.wrapping_sub(b'0') < 10);
        let upper = |v: u8| is(v.wrapping_sub(b'A') < 26);
        // A separator inside a number: ' ', '-' or '.' ('-' + 1 and '.' + 1 are 0x2E and
        // 0x2F, equal once the low bit is dropped).
        let sep = |s: u8| is(s == b' ') | is(s.wrapping_add(1) & 0xFE == 0x2E);
        // A digit starting a run (not after a digit or a lower-case letter) that can start
        // a sensitive number: four or more digits, or a short run followed by a separator
        // and a digit, or after `+`, `(` or two upper-case letters (an IBAN). "took 268ms",
        // "12:30:45" and "status=200" are not anchors.
        // Runs of 4+ digits, or 1-3 digits then a separator and a digit:
        // d1 d2 d3 | s1 d2 | d1 s2 d3 | d1 d2 s3 d4.
        let (d1, d2, d3) = (d(n1), d(n2), d(n3));
        let shape = (d2 & (sep(n1) | (d1 & (d3 | (sep(n3) & d(n4)))))) | (d1 & sep(n2) & d3);
        let special = is(p == b'+') | is(p == b'(') | (upper(p) & upper(pp));
        let digit = d(c) & !d(p) & !is(p.wrapping_sub(b'a') < 26) & (shape | special);
        let colon = is(c == b':');
        // `y`/`Y`, a quote or a space before `:`/`=`: the end of a key name.
        let keyish = is((p | 0x20) == b'y') | is(p == b'"') | is(p == b'\'') | is(p == b' ');
        (digit_on & digit)
            | (at_on & is(c == b'@'))
            // IPv6: a colon not followed by a space ("handled: ok" is prose).
            | (colon6_on & colon & !is(n1 == b' '))
            | (aws_on & (colon | is(c == b'=')) & keyish)
            | (aws_on & is(c == b'I') & (is(p == b'K') | is(p == b'S')))
            | (jwt_on & is(c == b'J') & is(p == b'y'))
            | (underscore_on & is(c == b'_'))
            | (slack_on & ((is(c == b'-') & is(pp == b'x')) | (is(c == b'/') & is(p == b'm'))))
            | (pem_on & is(c == b'-') & is(p == b'-'))
    }

    /// The anchor mask of the sixteen bytes at `base` (byte `j` of the result is non-zero
    /// when `base + j` is an anchor), or `None` when the block and its neighbours
    /// (`base - 2 .. base + 20`) are not all inside `bytes`: the caller then classifies a
    /// padded window with [`padded_block`](Self::padded_block).
    #[inline(always)]
    pub(crate) fn block(&self, bytes: &[u8], base: usize) -> Option<u128> {
        if self.all {
            self.block_for::<true>(bytes, base)
        } else {
            self.block_for::<false>(bytes, base)
        }
    }

    #[inline(always)]
    fn block_for<const ALL: bool>(&self, bytes: &[u8], base: usize) -> Option<u128> {
        let w = bytes.get(base.checked_sub(2)?..base + BLOCK + 4)?;
        let lanes = |k: usize| -> Option<&Lanes> { w.get(k..)?.first_chunk() };
        let (pp, p, c) = (lanes(0)?, lanes(1)?, lanes(2)?);

        let (n1, n2, n3, n4) = (lanes(3)?, lanes(4)?, lanes(5)?, lanes(6)?);
        let mut cls = [0u8; BLOCK];
        for (j, o) in cls.iter_mut().enumerate() {
            let l = |a: &Lanes| a.get(j).copied().unwrap_or(0);
            *o = Self::class::<ALL>(
                [l(pp), l(p), l(c), l(n1), l(n2), l(n3), l(n4)],
                [
                    l(&self.digit),
                    l(&self.at),
                    l(&self.colon6),
                    l(&self.aws),
                    l(&self.jwt),
                    l(&self.underscore),
                    l(&self.slack),
                    l(&self.pem),
                ],
            );
        }
        Some(u128::from_le_bytes(cls))
    }

    /// Anchor masks of a short value (at most [`SHORT`] bytes), computed on a zero-padded
    /// copy so that the whole value takes three SIMD blocks instead of a byte loop; byte
    /// `j` of mask `k` is non-zero when `16 * k + j` is an anchor. Same classification as
    /// [`is_anchor_at`](Self::is_anchor_at) (bytes outside the value count as 0).
    pub(crate) fn short_masks(&self, bytes: &[u8]) -> Option<[u128; 3]> {
        let mut buf = [0u8; SHORT + 2 + BLOCK];
        buf.get_mut(2..2 + bytes.len())?.copy_from_slice(bytes);
        let mut out = [0u128; 3];
        for (k, m) in out.iter_mut().enumerate().take(bytes.len().div_ceil(BLOCK)) {
            *m = self.block(&buf, 2 + k * BLOCK)?;
        }
        Some(out)
    }

    /// The anchor mask of the (up to) sixteen bytes at `base`, for any `base`: the block
    /// and its neighbours are copied into a zero-padded window, so the edges of a value
    /// (where [`block`](Self::block) answers `None`) cost one block instead of a byte
    /// loop. Same classification as [`is_anchor_at`](Self::is_anchor_at): bytes outside
    /// the value count as 0, and lanes at or past the end are never anchors.
    #[inline]
    pub(crate) fn padded_block(&self, bytes: &[u8], base: usize) -> u128 {
        let mut buf = [0u8; BLOCK + 6];
        // buf[j] holds bytes[base - 2 + j]; up to two leading lanes stay 0 near the start.
        let from = base.saturating_sub(2);
        let lead = 2 - (base - from);
        let src = bytes.get(from..).unwrap_or(&[]);
        let n = src.len().min(BLOCK + 6 - lead);
        if let (Some(dst), Some(src)) = (buf.get_mut(lead..lead + n), src.get(..n)) {
            dst.copy_from_slice(src);
        }
        let m = self.block(&buf, 2).unwrap_or(0);
        match bytes.len().saturating_sub(base) {
            valid if valid >= BLOCK => m,
            valid => m & ((1u128 << (8 * valid)) - 1),
        }
    }

    /// Whether the single byte at `i` is an anchor: the reference the block forms are
    /// tested against.
    #[cfg(test)]
    pub(crate) fn is_anchor_at(&self, bytes: &[u8], i: usize) -> bool {
        let b = |k: Option<usize>| k.map_or(0, |k| at(bytes, k));
        let f = |a: &Lanes| a.first().copied().unwrap_or(0);
        Self::class::<false>(
            [
                b(i.checked_sub(2)),
                b(i.checked_sub(1)),
                b(Some(i)),
                b(Some(i + 1)),
                b(Some(i + 2)),
                b(Some(i + 3)),
                b(Some(i + 4)),
            ],
            [
                f(&self.digit),
                f(&self.at),
                f(&self.colon6),
                f(&self.aws),
                f(&self.jwt),
                f(&self.underscore),
                f(&self.slack),
                f(&self.pem),
            ],
        ) != 0
    }

    /// Position of the first anchor at or after `from` (simple form, for tests).
    #[cfg(test)]
    pub(crate) fn next(&self, bytes: &[u8], from: usize) -> Option<usize> {
        let mut base = from;
        while base < 2 && base < bytes.len() {
            if self.is_anchor_at(bytes, base) {
                return Some(base);
            }
            base += 1;
        }
        while let Some(m) = self.block(bytes, base) {
            if m != 0 {
                return Some(base + (m.trailing_zeros() / 8) as usize);
            }
            base += BLOCK;
        }
        (base..bytes.len()).find(|&i| self.is_anchor_at(bytes, i))
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

/// The byte before `i` as a later detection sees it: a previous match that ends at
/// `min_start` will be replaced, so it counts as a boundary (a blank).
#[inline(always)]
pub(crate) fn before_at(bytes: &[u8], i: usize, min_start: usize) -> u8 {
    if i == min_start && i > 0 {
        b' '
    } else {
        before(bytes, i)
    }
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
    let n = bytes.get(..end).map_or(0, |s| {
        s.iter().rev().take(max).take_while(|&&b| f(b)).count()
    });
    end - n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_anchors_in_and_after_blocks() {
        let t = AnchorTable::new(DetectorSet::all());
        assert_eq!(t.next(b"hello world, this is text - yes", 0), None);
        assert_eq!(t.next(b"hello world @ x", 0), Some(12));
        assert_eq!(t.next(b"hello world, this is @", 0), Some(21));
        assert_eq!(t.next(b"abc1 2-3", 0), Some(5));
        // The padded short form agrees with the byte-wise classification.
        for v in [
            &b"x 4111 1111 @ a:b 12:30 AKIA eyJ --x"[..],
            b"1",
            b"",
            b"ghp_ xoxb- m/",
        ] {
            let m = t.short_masks(v).unwrap();
            for i in 0..SHORT {
                let byte = ((m[i / 16] >> (8 * (i % 16))) & 0xff) != 0;
                assert_eq!(byte, i < v.len() && t.is_anchor_at(v, i), "{i} in {v:?}");
            }
        }
        let s = b"took 268ms at 12:30 with 1 2 and status=200, ok";
        assert_eq!(t.next(s, 0), Some(16));
        assert_eq!(t.next(s, 17), Some(25));
        assert_eq!(t.next(b"some long text before an IBAN DE89", 0), Some(32));
        assert_eq!(t.next(b"some long text before a card 4111", 0), Some(29));
        assert_eq!(t.next(b"abc1", 4), None);
        assert_eq!(t.next(b"abc1", 9), None);
        assert_eq!(t.next(b"0123456789012345678 AKIA", 1), Some(22));
        assert_eq!(t.next(b"a very long line of text -----BEGIN", 0), Some(26));
        let only_email = AnchorTable::new(DetectorSet::empty().with(Detector::Email));
        assert_eq!(only_email.next(b"123 - : x@y", 0), Some(9));
    }

    #[test]
    fn padded_blocks_agree_with_single_bytes() {
        let t = AnchorTable::new(DetectorSet::all());
        let text = b"x 4111 1111 @ a:b 12:30 AKIA eyJ --x ghp_ xoxb- m/ 123456789 +1 (55";
        for len in 0..=text.len() {
            let v = &text[..len];
            for base in 0..len + 3 {
                let m = t.padded_block(v, base);
                for j in 0..BLOCK {
                    let byte = ((m >> (8 * j)) & 0xff) != 0;
                    let i = base + j;
                    assert_eq!(byte, i < len && t.is_anchor_at(v, i), "{i} in {len}");
                }
                if let Some(b) = t.block(v, base) {
                    assert_eq!(b, m, "{base} in {len}");
                }
            }
        }
    }

    #[test]
    fn runs() {
        assert_eq!(run_end(b"abc123", 0, 10, |b| b.is_ascii_alphabetic()), 3);
        assert_eq!(run_start(b"abc123", 6, 10, |b| b.is_ascii_digit()), 3);
        assert_eq!(run_start(b"abc123", 6, 2, |b| b.is_ascii_digit()), 4);
        assert_eq!(run_end(b"abc", 7, 10, |_| true), 7);
    }
}
