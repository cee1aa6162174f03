//! Digit-anchored detectors: payment cards, IBANs, SSNs, phone numbers and IPv4.

use super::Hit;
use super::groups::{Groups, MAX_GROUPS, View};
use crate::masking::detector::{Detector, DetectorSet};
use crate::masking::prefilter::{at, before_at, is_word, run_end};
use crate::masking::validate::{
    card_iin_plausible, iban_length, iban_mod97_valid, luhn_valid, ssn_valid,
};

/// Options of the numeric detectors.
#[derive(Clone, Copy, Debug)]
pub(crate) struct NumericOpts {
    pub set: DetectorSet,
    /// Treat 9 bare digits as an SSN.
    pub ssn_bare: bool,
}

/// Tries every numeric detector at `i`, the first digit of a digit run, and at every
/// later group of the same run of digit groups. Returns a match, or where to continue
/// scanning (after the last group: every start inside it has been tried).
pub(crate) fn detect(
    bytes: &[u8],
    i: usize,
    o: NumericOpts,
    min_start: usize,
) -> Result<Hit, usize> {
    let prev = before_at(bytes, i, min_start);
    if o.set.contains(Detector::Iban) && i >= min_start + 2 && prev.is_ascii_uppercase() {
        if let Some(end) = iban(bytes, i - 2, min_start) {
            return Ok(Hit::new(i - 2, end, Detector::Iban));
        }
    }
    // Not inside a word, nor part of a dotted run such as a version or a decimal
    // number ("1.2.3", "3.14").
    let dotted = matches!(prev, b'.' | b',') && before_at(bytes, i - 1, min_start).is_ascii_digit();
    let first_ok = !(is_word(prev) || dotted);
    if first_ok && o.set.contains(Detector::Phone) && i > min_start {
        let phone = match prev {
            b'+' if !is_word(before_at(bytes, i - 1, min_start)) => e164(bytes, i),
            b'(' if !is_word(before_at(bytes, i - 1, min_start)) => paren_phone(bytes, i),
            _ => None,
        };
        if let Some(end) = phone {
            return Ok(Hit::new(i - 1, end, Detector::Phone));
        }
    }
    // Fast reject: a short number not followed by a separator and another digit.
    let run = run_end(bytes, i, usize::MAX, |b| b.is_ascii_digit());
    let nb = at(bytes, run);
    if run - i < 9 && !(matches!(nb, b' ' | b'-' | b'.') && at(bytes, run + 1).is_ascii_digit()) {
        return Err(run.max(i + 1));
    }
    let mut all = Groups::EMPTY;
    all.fill(bytes, i);
    let skip = all
        .end
        .get(all.n.saturating_sub(1))
        .copied()
        .unwrap_or(0)
        .max(i + 1);
    // Dates and times ("2024-01-15"): under nine digits and no dot (IPv4) is nothing.
    let digits: usize = (0..all.n).map(|k| View::new(&all, 0).len(k)).sum();
    let dotted_groups = all.sep.iter().take(all.n).any(|&s| s == b'.');
    if digits < 9 && !dotted_groups {
        return Err(skip);
    }
    for k in 0..all.n {
        if (k == 0 && !first_ok) || (k > 0 && all.sep.get(k) == Some(&b'.')) {
            continue;
        }
        let g = View::new(&all, k);
        // A lone group shorter than an SSN cannot be anything.
        if g.n == 1 && g.len(0) < 9 {
            continue;
        }
        let start = g.start();
        let found = [
            (
                Detector::Ipv4,
                ipv4 as fn(&[u8], &View<'_>, bool) -> Option<usize>,
            ),
            (Detector::Ssn, ssn),
            (Detector::Phone, national_phone),
            (Detector::CreditCard, card),
        ]
        .into_iter()
        .filter(|(d, _)| o.set.contains(*d))
        .find_map(|(d, f)| f(bytes, &g, o.ssn_bare).map(|end| Hit::new(start, end, d)));
        if let Some(hit) = found {
            return Ok(hit);
        }
    }
    Err(skip)
}

fn ends_clean(bytes: &[u8], end: usize) -> bool {
    !is_word(at(bytes, end))
}

fn ipv4(bytes: &[u8], g: &View<'_>, _: bool) -> Option<usize> {
    if g.n < 4 || (1..4).any(|k| g.sep(k) != b'.') || g.sep(4) == b'.' {
        return None;
    }
    for k in 0..4 {
        let d = g.digits(bytes, k);
        if d.is_empty() || d.len() > 3 {
            return None;
        }
        let v = d
            .iter()
            .fold(0u32, |acc, &b| acc * 10 + u32::from(b.wrapping_sub(b'0')));
        if v > 255 {
            return None;
        }
    }
    let end = g.end(3);
    ends_clean(bytes, end).then_some(end)
}

fn ssn(bytes: &[u8], g: &View<'_>, bare: bool) -> Option<usize> {
    if g.shape(&[3, 2, 4]) && g.sep(1) == b'-' && g.sep(2) == b'-' && g.sep(3) != b'-' {
        let end = g.end(2);
        if ends_clean(bytes, end)
            && ssn_valid(g.digits(bytes, 0), g.digits(bytes, 1), g.digits(bytes, 2))
        {
            return Some(end);
        }
        return None;
    }
    if bare && g.len(0) == 9 && g.sep(1) != b'-' && g.sep(1) != b'.' {
        let d = g.digits(bytes, 0);
        let end = g.end(0);
        if ends_clean(bytes, end)
            && ssn_valid(
                d.get(0..3).unwrap_or(&[]),
                d.get(3..5).unwrap_or(&[]),
                d.get(5..9).unwrap_or(&[]),
            )
        {
            return Some(end);
        }
    }
    None
}

/// `555-123-4567`, `555.123.4567`, `1-555-123-4567`.
fn national_phone(bytes: &[u8], g: &View<'_>, _: bool) -> Option<usize> {
    let consistent = |from: usize, to: usize| {
        let s = g.sep(from);
        matches!(s, b'-' | b'.') && (from..=to).all(|k| g.sep(k) == s) && g.sep(to + 1) != s
    };
    if g.shape(&[3, 3, 4]) && consistent(1, 2) {
        let end = g.end(2);
        return ends_clean(bytes, end).then_some(end);
    }
    if g.shape(&[1, 3, 3, 4]) && g.digits(bytes, 0) == b"1" && consistent(1, 3) {
        let end = g.end(3);
        return ends_clean(bytes, end).then_some(end);
    }
    None
}

/// `(555) 123-4567`, `(555)123-4567`; `i` is the first digit after `(`.
fn paren_phone(bytes: &[u8], i: usize) -> Option<usize> {
    let area_end = run_end(bytes, i, 4, |b| b.is_ascii_digit());
    if area_end - i != 3 || at(bytes, area_end) != b')' {
        return None;
    }
    let mut p = area_end + 1;
    if at(bytes, p) == b' ' {
        p += 1;
    }
    let all = Groups::parse(bytes, p);
    let g = View::new(&all, 0);
    if g.shape(&[3, 4]) && matches!(g.sep(1), b'-' | b'.' | b' ') && g.sep(2) != g.sep(1) {
        let end = g.end(1);
        return ends_clean(bytes, end).then_some(end);
    }
    None
}

/// `+` followed by 8-15 digits with optional single separators (`' '`, `-`, `.`, `(`, `)`);
/// `i` is the first digit after `+`. The longest prefix ending at a digit group with 8-15
/// digits wins.
fn e164(bytes: &[u8], i: usize) -> Option<usize> {
    let mut pos = i;
    let mut digits = 0usize;
    let mut best = None;
    loop {
        let end = run_end(bytes, pos, 16, |b| b.is_ascii_digit());
        if end == pos {
            break;
        }
        digits += end - pos;
        if digits > 15 {
            break;
        }
        // Not cut inside a dotted or dashed number ("… 10.0.0.1", "… 2024-01-15").
        let cut = matches!(at(bytes, end), b'.' | b'-') && at(bytes, end + 1).is_ascii_digit();
        if digits >= 8 && ends_clean(bytes, end) && !cut {
            best = Some(end);
        }
        // Up to two separators between groups: "+1 (555) 123-4567".
        let seps = run_end(bytes, end, 3, |b| {
            matches!(b, b' ' | b'-' | b'.' | b'(' | b')')
        });
        if seps == end || seps - end > 2 || !at(bytes, seps).is_ascii_digit() {
            break;
        }
        // A complete-looking number does not run on across a plain space into the next
        // one ("+1 (555) 123-4567 2024").
        if digits >= 10 && bytes.get(end..seps) == Some(b" ") {
            break;
        }
        pos = seps;
    }
    best
}

/// 13-19 digits in one group, or in groups of 3-6 digits with one consistent `' '` or `-`
/// separator; Luhn valid with a known issuer prefix.
fn card(bytes: &[u8], g: &View<'_>, _: bool) -> Option<usize> {
    let start = g.start();
    if g.n == 1 || !matches!(g.sep(1), b' ' | b'-') || g.len(0) > 6 {
        let len = g.len(0);
        let end = g.end(0);
        let d = g.digits(bytes, 0);
        return ((13..=19).contains(&len)
            && ends_clean(bytes, end)
            && luhn_valid(d)
            && card_iin_plausible(d))
        .then_some(end);
    }
    let sep = g.sep(1);
    let mut total = 0usize;
    let mut candidates = [0usize; MAX_GROUPS];
    for k in 0..g.n {
        let l = g.len(k);
        if !(3..=6).contains(&l) || (k > 0 && g.sep(k) != sep) {
            break;
        }
        total += l;
        if let Some(c) = candidates.get_mut(k) {
            *c = total;
        }
    }
    for k in (1..g.n).rev() {
        let total = candidates.get(k).copied().unwrap_or(0);
        if !(13..=19).contains(&total) {
            continue;
        }
        let end = g.end(k);
        let span = bytes.get(start..end).unwrap_or(&[]);
        if ends_clean(bytes, end) && luhn_valid(span) && card_iin_plausible(span) {
            return Some(end);
        }
    }
    None
}

/// An IBAN starting at `s` (the country code), compact or in groups of four separated by
/// single spaces. Returns the end.
fn iban(bytes: &[u8], s: usize, min_start: usize) -> Option<usize> {
    if is_word(before_at(bytes, s, min_start)) {
        return None;
    }
    let country = [at(bytes, s), at(bytes, s + 1)];
    if !country.iter().all(u8::is_ascii_uppercase)
        || !at(bytes, s + 2).is_ascii_digit()
        || !at(bytes, s + 3).is_ascii_digit()
    {
        return None;
    }
    let want = iban_length(country);
    let max = want.unwrap_or(34);
    // The spaced form only for known countries: its length bounds the match.
    let spaced = want.is_some() && at(bytes, s + 4) == b' ';
    let mut count = 0usize;
    let mut pos = s;
    let mut end = s;
    let mut best = None;
    while count < max {
        let b = at(bytes, pos);
        if b.is_ascii_uppercase() || b.is_ascii_digit() {
            count += 1;
            pos += 1;
            end = pos;
            if want.is_none() && count >= 15 && !is_word(at(bytes, pos)) {
                best = Some(end);
            }
        } else if spaced && b == b' ' && count % 4 == 0 && count > 0 {
            let n = at(bytes, pos + 1);
            if !(n.is_ascii_uppercase() || n.is_ascii_digit()) {
                break;
            }
            pos += 1;
        } else {
            break;
        }
    }
    let end = match want {
        Some(len) if count == len && !is_word(at(bytes, end)) => end,
        Some(_) => return None,
        None => best?,
    };
    let span = bytes.get(s..end)?;
    iban_mod97_valid(span).then_some(end)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn find(s: &str) -> Option<(usize, usize, Detector)> {
        let o = NumericOpts {
            set: DetectorSet::all(),
            ssn_bare: false,
        };
        let b = s.as_bytes();
        (0..b.len())
            .filter(|&i| b[i].is_ascii_digit() && (i == 0 || !b[i - 1].is_ascii_digit()))
            .find_map(|i| detect(b, i, o, 0).ok())
            .map(|h| (h.start, h.end, h.detector))
    }

    #[test]
    fn cards() {
        assert_eq!(
            find("4111111111111111"),
            Some((0, 16, Detector::CreditCard))
        );
        assert_eq!(
            find("x 4111 1111 1111 1111 2024"),
            Some((2, 21, Detector::CreditCard))
        );
        assert_eq!(find("4111-1111-1111-1111").map(|h| h.1), Some(19));
        assert_eq!(find("4111111111111112"), None);
        assert_eq!(find("41111111111111111111111"), None);
        assert_eq!(find("4111111111111111abc"), None);
    }

    #[test]
    fn ibans() {
        assert_eq!(
            find("DE89370400440532013000"),
            Some((0, 22, Detector::Iban))
        );
        assert_eq!(
            find("iban: DE89 3704 0044 0532 0130 00."),
            Some((6, 33, Detector::Iban))
        );
        assert_eq!(find("DE88370400440532013000"), None);
        assert_eq!(find("XDE89370400440532013000"), None);
    }

    #[test]
    fn phones_and_ips() {
        assert_eq!(
            find("call 555-123-4567 now"),
            Some((5, 17, Detector::Phone))
        );
        assert_eq!(find("(555) 123-4567"), Some((0, 14, Detector::Phone)));
        assert_eq!(find("+1 (555) 123-4567"), Some((0, 17, Detector::Phone)));
        assert_eq!(find("+4915112345678"), Some((0, 14, Detector::Phone)));
        assert_eq!(
            find("+1 (555) 787-8056 10.1.2.3"),
            Some((0, 17, Detector::Phone))
        );
        assert_eq!(find("+33 6 12 34 56 78"), Some((0, 17, Detector::Phone)));
        assert_eq!(find("2024-01-15"), None);
        assert_eq!(find("10.0.0.1"), Some((0, 8, Detector::Ipv4)));
        assert_eq!(find("1.2.3.4.5"), None);
        assert_eq!(find("256.1.1.1"), None);
        assert_eq!(find("3.14"), None);
    }

    #[test]
    fn ssns() {
        assert_eq!(find("123-45-6789"), Some((0, 11, Detector::Ssn)));
        assert_eq!(find("000-12-3456"), None);
        assert_eq!(find("666-12-3456"), None);
        assert_eq!(find("912-12-3456"), None);
        assert_eq!(find("123456789"), None);
        assert_eq!(find("id 7 123-45-6789"), Some((5, 16, Detector::Ssn)));
    }
}
