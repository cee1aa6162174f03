//! The scan loop: prefilter to an anchor, run the detectors for that anchor, repeat.

use super::detector::{Detector, DetectorSet};
use super::detectors::{Hit, email, ipv6, numeric, pem, tokens};
use super::prefilter::{AnchorTable, BLOCK, SHORT, at, before, run_end};

/// What the scan looks for.
#[derive(Clone, Debug)]
pub(crate) struct ScanConfig {
    pub set: DetectorSet,
    pub anchors: AnchorTable,
}

/// Finds validated matches left to right, without overlaps.
pub(crate) struct Scan<'t, 'c> {
    text: &'t str,
    cfg: &'c ScanConfig,
    ssn_bare: bool,
    /// Next byte to look at.
    pos: usize,
    /// End of the last match: no match may start before it.
    min_start: usize,
    /// End of the last rejected IPv6 candidate: colons before it need no new look.
    v6_rejected: usize,
    /// The anchor mask of the block at `mask_base` (`usize::MAX`: none cached).
    mask: u128,
    mask_base: usize,
    /// Look at `pos` whatever the prefilter says (a digit right after a match).
    forced: bool,
    /// Anchor masks of a short value, all computed up front.
    short: Option<[u128; 3]>,
}

impl<'t, 'c> Scan<'t, 'c> {
    /// The first anchor at or after `self.pos`, reusing the cached block mask.
    #[inline(always)]
    fn next_anchor(&mut self) -> Option<usize> {
        let bytes = self.text.as_bytes();
        let pos = self.pos;
        if std::mem::take(&mut self.forced) {
            return Some(pos);
        }
        if let Some(masks) = &self.short {
            // Short value: the masks of all its bytes are precomputed.
            let mut k = pos / BLOCK;
            let mut off = pos % BLOCK;
            while let Some(&m) = masks.get(k) {
                let m = m & (u128::MAX << (8 * off));
                if m != 0 {
                    let i = k * BLOCK + (m.trailing_zeros() / 8) as usize;
                    return (i < bytes.len()).then_some(i);
                }
                k += 1;
                off = 0;
            }
            return None;
        }
        let mut base = pos;
        if let Some(off) = pos.checked_sub(self.mask_base).filter(|&o| o < BLOCK) {
            let m = self.mask & (u128::MAX << (8 * off));
            if m != 0 {
                return Some(self.mask_base + (m.trailing_zeros() / 8) as usize);
            }
            base = self.mask_base + BLOCK;
        }
        while base < bytes.len() {
            // Inside the value a block reads its neighbours in place; at its edges they
            // are copied into a padded window.
            let m = match self.cfg.anchors.block(bytes, base) {
                Some(m) => m,
                None => self.cfg.anchors.padded_block(bytes, base),
            };
            if m != 0 {
                self.mask = m;
                self.mask_base = base;
                return Some(base + (m.trailing_zeros() / 8) as usize);
            }
            base += BLOCK;
        }
        None
    }

    pub(crate) fn new(text: &'t str, cfg: &'c ScanConfig, ssn_bare: bool) -> Self {
        Scan {
            text,
            cfg,
            ssn_bare,
            pos: 0,
            min_start: 0,
            v6_rejected: 0,
            mask: 0,
            mask_base: usize::MAX,
            forced: false,
            short: if text.len() <= SHORT {
                cfg.anchors.short_masks(text.as_bytes())
            } else {
                None
            },
        }
    }

    /// Runs the detectors for the anchor byte `b` at `i`; returns a match or where to
    /// continue scanning.
    fn at_anchor(&mut self, i: usize, b: u8) -> Result<Hit, usize> {
        let bytes = self.text.as_bytes();
        let set = self.cfg.set;
        let min = self.min_start;
        let found = match b {
            b'0'..=b'9' => {
                // Fast reject, inline: a short number not followed by a separator and a
                // digit, and not after `+`, `(` or letters (IBAN).
                let p = before(bytes, i);
                let iban = p.is_ascii_uppercase() && before(bytes, i - 1).is_ascii_uppercase();
                if !(iban || p == b'+' || p == b'(') {
                    let run = run_end(bytes, i, 32, |b| b.is_ascii_digit());
                    let nb = at(bytes, run);
                    if run - i < 9
                        && !(matches!(nb, b' ' | b'-' | b'.')
                            && at(bytes, run + 1).is_ascii_digit())
                    {
                        return Err(run);
                    }
                }
                let o = numeric::NumericOpts {
                    set,
                    ssn_bare: self.ssn_bare,
                };
                return numeric::detect(bytes, i, o, min);
            }
            b'@' => email::detect(bytes, i, min),
            b':' => {
                let (p, n) = (before(bytes, i), at(bytes, i + 1));
                let hexcolon = |b: u8| b.is_ascii_hexdigit() || b == b':';
                let mut v6 = None;
                if set.contains(Detector::Ipv6)
                    && (hexcolon(p) || hexcolon(n))
                    && i >= self.v6_rejected
                {
                    match ipv6::detect(self.text, i, min) {
                        Ok(hit) => v6 = Some(hit),
                        Err(end) => self.v6_rejected = end,
                    }
                }
                v6.or_else(|| {
                    (set.contains(Detector::AwsKey) && keyish_end(p))
                        .then(|| tokens::aws_secret_key(bytes, i, min))
                        .flatten()
                })
            }
            b'=' => tokens::aws_secret_key(bytes, i, min),
            b'I' => tokens::aws_access_key(bytes, i, min),
            b'J' => tokens::jwt(bytes, i, min),
            b'_' => tokens::github(bytes, i, min),
            b'/' => tokens::slack_webhook(bytes, i, min),
            // `-` after `-`: a PEM block starts one byte back; else the `-` of `xoxb-`.
            b'-' if before(bytes, i) == b'-' => pem::detect(bytes, i - 1, min),
            b'-' => tokens::slack_token(bytes, i, min),
            _ => None,
        };
        found.ok_or(i + 1)
    }
}

impl Iterator for Scan<'_, '_> {
    type Item = Hit;

    fn next(&mut self) -> Option<Hit> {
        let bytes = self.text.as_bytes();
        loop {
            let i = self.next_anchor()?;
            let b = at(bytes, i);
            match self.at_anchor(i, b) {
                Ok(hit) if hit.start >= self.min_start && hit.end > hit.start => {
                    self.pos = hit.end;
                    self.min_start = hit.end;
                    // A digit right after a match is not an anchor for the prefilter when
                    // the match ends in a letter, but the match will be replaced: look at
                    // it as if it followed a boundary.
                    self.forced = at(bytes, hit.end).is_ascii_digit();
                    return Some(hit);
                }
                Ok(_) => self.pos = i + 1,
                Err(next) => self.pos = next.max(i + 1),
            }
        }
    }
}

/// The byte before a `:` that may end a key name (`key:`, `"key":`, `key :`).
#[inline(always)]
fn keyish_end(p: u8) -> bool {
    matches!(p, b'y' | b'Y' | b'"' | b'\'' | b' ')
}
