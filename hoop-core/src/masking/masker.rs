//! [`RuleMasker`]: field-name rules plus detectors, built by [`RuleMaskerBuilder`] or from a
//! [`MaskingConfig`].

use super::config::{MaskingConfig, MaskingConfigError};
use super::detector::{Detector, DetectorSet};
use super::detectors::tokens;
use super::prefilter::AnchorTable;
use super::rules::{FieldRule, ssn_like_name};
use super::scan::{Scan, ScanConfig};
use super::strategy::{
    FIELD_PSEUDO_LABEL, Strategy, is_pseudonym, write_partial, write_partial_generic,
    write_pseudonym, write_redacted,
};
use super::{Field, Masker, PreparedField};
use aws_lc_rs::hmac;
use bytes::BytesMut;
use std::borrow::Cow;

/// Extra passes over masked output (see [`RuleMasker::mask_counted`]).
const MAX_RESCANS: usize = 8;

/// The built-in masker: field-name rules first, then the detectors over the value.
///
/// * A field rule (first match wins) replaces the whole value; [`Masker::masks_field`]
///   says so up front, so an adapter can mask a typed column as a whole.
/// * Otherwise the enabled detectors scan the value: a prefilter finds candidate anchors,
///   the exact detector validates around each, and matches are replaced left to right.
///   A value without matches comes back borrowed, without allocation.
/// * Masking is idempotent: outputs are never detected again, a match counts as a
///   boundary for its neighbours, and when a replacement touches a neighbour that it could
///   change (`x@y.com(555) 123-4567`) the output is scanned again (at most 8 times).
/// * [`Masker::mask_counted`] also returns the number of replacements.
///
/// ```
/// use hoop_core::masking::{Detector, Field, Masker, RuleMasker, Strategy};
/// let m = RuleMasker::builder()
///     .detector(Detector::Email, Strategy::Partial)
///     .detector(Detector::CreditCard, Strategy::Redact)
///     .field_rule("*_ssn", Strategy::Redact)
///     .build()
///     .unwrap();
/// let out = m.mask(&Field::anonymous(), "paid with 4111 1111 1111 1111, mail jane@corp.com");
/// assert_eq!(out, "paid with [REDACTED:CARD], mail j***@corp.com");
/// ```
pub struct RuleMasker {
    field_rules: Vec<FieldRule>,
    /// Per field rule that redacts: its fixed replacement (`[REDACTED]`,
    /// `[REDACTED:LABEL]`), written without formatting or allocation.
    redactions: Vec<Option<Box<str>>>,
    strategies: [Option<Strategy>; Detector::ALL.len()],
    scan: ScanConfig,
    ssn_bare: bool,
    key: Option<hmac::Key>,
}

impl std::fmt::Debug for RuleMasker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuleMasker")
            .field("field_rules", &self.field_rules)
            .field("detectors", &self.scan.set)
            .field("ssn_bare", &self.ssn_bare)
            .field("hmac_key", &self.key.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// Builder of a [`RuleMasker`].
#[derive(Default)]
pub struct RuleMaskerBuilder {
    field_rules: Vec<FieldRule>,
    strategies: [Option<Strategy>; Detector::ALL.len()],
    ssn_bare: bool,
    key: Option<Vec<u8>>,
}

impl std::fmt::Debug for RuleMaskerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuleMaskerBuilder")
            .field("field_rules", &self.field_rules)
            .field("strategies", &self.strategies)
            .finish_non_exhaustive()
    }
}

fn valid_label(l: &str) -> bool {
    (1..=32).contains(&l.len()) && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

impl RuleMaskerBuilder {
    /// Turns a detector on with a strategy (replacing an earlier strategy for it).
    pub fn detector(mut self, d: Detector, strategy: Strategy) -> Self {
        if let Some(slot) = self.strategies.get_mut(d as usize) {
            *slot = Some(strategy);
        }
        self
    }

    /// Turns every detector on with one strategy.
    pub fn all_detectors(mut self, strategy: Strategy) -> Self {
        for d in Detector::ALL {
            self = self.detector(d, strategy);
        }
        self
    }

    /// Adds a field-name rule (case-insensitive glob); rules are tried in order.
    pub fn field_rule(mut self, pattern: &str, strategy: Strategy) -> Self {
        self.field_rules.push(FieldRule::new(pattern, strategy));
        self
    }

    /// Adds a field-name rule with a label (`[REDACTED:LABEL]`, `LABEL_<hex>`).
    pub fn field_rule_labeled(mut self, pattern: &str, strategy: Strategy, label: &str) -> Self {
        self.field_rules
            .push(FieldRule::new(pattern, strategy).with_label(label));
        self
    }

    /// The key of the keyed-hash strategy (at least 16 bytes).
    pub fn hmac_key(mut self, key: impl AsRef<[u8]>) -> Self {
        self.key = Some(key.as_ref().to_vec());
        self
    }

    /// Treat nine bare digits as an SSN in every field.
    pub fn ssn_bare_digits(mut self, on: bool) -> Self {
        self.ssn_bare = on;
        self
    }

    /// Checks the rules and builds the masker.
    pub fn build(self) -> Result<RuleMasker, MaskingConfigError> {
        let uses_hash = self.strategies.contains(&Some(Strategy::KeyedHash))
            || self
                .field_rules
                .iter()
                .any(|r| r.strategy() == Strategy::KeyedHash);
        for r in &self.field_rules {
            if r.pattern().is_empty() {
                return Err(MaskingConfigError::EmptyPattern);
            }
            if let Some(l) = r.label() {
                if !valid_label(l) {
                    return Err(MaskingConfigError::InvalidLabel(l.to_owned()));
                }
            }
        }
        let key = match self.key {
            Some(k) if k.len() < 16 => return Err(MaskingConfigError::HmacKeyTooShort(k.len())),
            Some(k) => Some(hmac::Key::new(hmac::HMAC_SHA256, &k)),
            None if uses_hash => return Err(MaskingConfigError::MissingHmacKey),
            None => None,
        };
        let set = Detector::ALL
            .iter()
            .zip(self.strategies.iter())
            .filter(|(_, s)| s.is_some())
            .fold(DetectorSet::empty(), |set, (d, _)| set.with(*d));
        let redactions = self
            .field_rules
            .iter()
            .map(|r| {
                (r.strategy() == Strategy::Redact).then(|| {
                    let mut out = String::new();
                    write_redacted(&mut out, r.label());
                    out.into_boxed_str()
                })
            })
            .collect();
        Ok(RuleMasker {
            field_rules: self.field_rules,
            redactions,
            strategies: self.strategies,
            scan: ScanConfig {
                set,
                anchors: AnchorTable::new(set),
            },
            ssn_bare: self.ssn_bare,
            key,
        })
    }
}

impl RuleMasker {
    /// A builder with no rules.
    pub fn builder() -> RuleMaskerBuilder {
        RuleMaskerBuilder::default()
    }

    /// A masker from a deserialised configuration.
    pub fn from_config(cfg: &MaskingConfig) -> Result<RuleMasker, MaskingConfigError> {
        let mut b = RuleMasker::builder().ssn_bare_digits(cfg.ssn_bare_digits);
        for d in &cfg.detectors {
            b = b.detector(d.detector, d.strategy);
        }
        for r in &cfg.field_rules {
            b = match &r.label {
                Some(l) => b.field_rule_labeled(&r.pattern, r.strategy, l),
                None => b.field_rule(&r.pattern, r.strategy),
            };
        }
        if let Some(k) = &cfg.hmac_key {
            b = b.hmac_key(k.as_bytes());
        }
        b.build()
    }

    /// The detectors that are on.
    pub fn detectors(&self) -> DetectorSet {
        self.scan.set
    }

    fn strategy(&self, d: Detector) -> Strategy {
        self.strategies
            .get(d as usize)
            .copied()
            .flatten()
            .unwrap_or_default()
    }

    /// Appends the masked form of a detector match.
    fn write_detected(&self, out: &mut String, d: Detector, value: &str) {
        match (self.strategy(d), &self.key) {
            (Strategy::Partial, _) => write_partial(out, d, value),
            (Strategy::KeyedHash, Some(key)) => write_pseudonym(out, d.label(), key, value),
            // Redact, and keyed hash without a key (refused by `build`): fail closed.
            _ => write_redacted(out, Some(d.label())),
        }
    }

    /// Masks a whole value by a field rule; borrowed when it already is masked.
    fn mask_by_rule<'v>(&self, rule: &FieldRule, value: &'v str) -> Cow<'v, str> {
        let mut out = String::new();
        match (rule.strategy(), &self.key) {
            (Strategy::Partial, _) => write_partial_generic(&mut out, value),
            (Strategy::KeyedHash, Some(key)) => {
                let label = rule.label().unwrap_or(FIELD_PSEUDO_LABEL);
                if is_pseudonym(label, value) {
                    return Cow::Borrowed(value);
                }
                write_pseudonym(&mut out, label, key, value);
            }
            _ => write_redacted(&mut out, rule.label()),
        }
        if out == value {
            Cow::Borrowed(value)
        } else {
            Cow::Owned(out)
        }
    }

    /// One pass of the detectors over `value`: the output, the number of replacements,
    /// and whether a replacement touches a non-blank byte on either side.
    fn scan_once<'v>(&self, value: &'v str, ssn_bare: bool) -> (Cow<'v, str>, u32, bool) {
        if short_plain_number(value.as_bytes()) {
            return (Cow::Borrowed(value), 0, false);
        }
        let mut out: Option<String> = None;
        let mut copied = 0usize;
        let mut count = 0u32;
        let mut touching = false;
        let bytes = value.as_bytes();
        for hit in Scan::new(value, &self.scan, ssn_bare) {
            let (Some(before), Some(matched)) =
                (value.get(copied..hit.start), value.get(hit.start..hit.end))
            else {
                continue;
            };
            let o = out.get_or_insert_with(|| String::with_capacity(value.len() + 16));
            o.push_str(before);
            let from = o.len();
            self.write_detected(o, hit.detector, matched);
            if !touching {
                let written = o.get(from..).unwrap_or("").as_bytes();
                let first = written.first().copied().unwrap_or(0);
                let last = written.last().copied().unwrap_or(0);
                touching = touches(bytes, hit.start, hit.end, first, last);
            }
            copied = hit.end;
            count += 1;
        }
        match out {
            None => (Cow::Borrowed(value), 0, false),
            Some(mut o) => {
                o.push_str(value.get(copied..).unwrap_or(""));
                (Cow::Owned(o), count, touching)
            }
        }
    }

    fn field_rule(&self, field: &Field<'_>) -> Option<&FieldRule> {
        self.field_rules.iter().find(|r| r.matches(field))
    }

    /// The fixed replacement of the field rule of `plan`, when that rule redacts.
    fn redaction(&self, plan: Plan) -> Option<&str> {
        plan.rule.and_then(|i| self.redactions.get(i)?.as_deref())
    }

    /// What depends on the field alone.
    fn plan(&self, field: &Field<'_>) -> Plan {
        let rule = self.field_rules.iter().position(|r| r.matches(field));
        let set = self.scan.set;
        let name = field.name.unwrap_or("");
        Plan {
            rule,
            secret_name: set.contains(Detector::AwsKey) && tokens::secret_key_name(name.as_bytes()),
            ssn_bare: self.ssn_bare || (set.contains(Detector::Ssn) && ssn_like_name(name)),
        }
    }

    fn mask_planned<'v>(&self, plan: Plan, value: &'v str) -> (Cow<'v, str>, u32) {
        if let Some(rule) = plan.rule.and_then(|i| self.field_rules.get(i)) {
            let out = self.mask_by_rule(rule, value);
            let n = u32::from(matches!(out, Cow::Owned(_)));
            return (out, n);
        }
        if self.scan.set.is_empty() {
            return (Cow::Borrowed(value), 0);
        }
        // A secret key in a field named like one: the whole value.
        if plan.secret_name && tokens::is_secret_key_value(value.as_bytes()) {
            let mut out = String::new();
            self.write_detected(&mut out, Detector::AwsKey, value);
            return (Cow::Owned(out), 1);
        }
        let ssn_bare = plan.ssn_bare;
        let (first, mut count, mut touching) = self.scan_once(value, ssn_bare);
        let Cow::Owned(mut out) = first else {
            return (first, 0);
        };
        // A replacement changes what its neighbours see ("x.com(555) 123-4567": the
        // phone number only has a boundary once the address is masked), so output with a
        // replacement that touches a non-blank neighbour is scanned again until nothing
        // changes: masking is idempotent. Blanks are a barrier for every detector.
        for _ in 0..MAX_RESCANS {
            if !touching {
                break;
            }
            match self.scan_once(&out, ssn_bare) {
                (Cow::Borrowed(_), _, _) => break,
                (Cow::Owned(next), n, t) => {
                    out = next;
                    count += n;
                    touching = t;
                }
            }
        }
        (Cow::Owned(out), count)
    }
}

/// What [`RuleMasker`] decides from a field alone (the rule that applies, and the
/// name-dependent detector switches), encoded into a [`PreparedField`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Plan {
    rule: Option<usize>,
    secret_name: bool,
    ssn_bare: bool,
}

impl Plan {
    const HAS_RULE: u64 = 1 << 1;
    const SECRET_NAME: u64 = 1 << 2;
    const SSN_BARE: u64 = 1 << 3;

    fn encode(self) -> PreparedField {
        let mut bits = 0u64;
        if let Some(i) = self.rule {
            bits |= Self::HAS_RULE | ((i as u64) << 32);
        }
        if self.secret_name {
            bits |= Self::SECRET_NAME;
        }
        if self.ssn_bare {
            bits |= Self::SSN_BARE;
        }
        PreparedField::from_bits(bits)
    }

    /// `None` for an unprepared field or one that names a rule this masker lacks.
    fn decode(p: &PreparedField, rules: usize) -> Option<Plan> {
        let bits = p.bits()?;
        let rule = if bits & Self::HAS_RULE != 0 {
            let i = usize::try_from(bits >> 32).ok()?;
            if i >= rules {
                return None;
            }
            Some(i)
        } else {
            None
        };
        Some(Plan {
            rule,
            secret_name: bits & Self::SECRET_NAME != 0,
            ssn_bare: bits & Self::SSN_BARE != 0,
        })
    }
}

impl Masker for RuleMasker {
    fn mask<'v>(&self, field: &Field<'_>, value: &'v str) -> Cow<'v, str> {
        self.mask_counted(field, value).0
    }

    fn mask_counted<'v>(&self, field: &Field<'_>, value: &'v str) -> (Cow<'v, str>, u32) {
        self.mask_planned(self.plan(field), value)
    }

    fn prepare(&self, field: &Field<'_>) -> PreparedField {
        self.plan(field).encode()
    }

    fn mask_prepared<'v>(
        &self,
        prepared: &PreparedField,
        field: &Field<'_>,
        value: &'v str,
    ) -> (Cow<'v, str>, u32) {
        match Plan::decode(prepared, self.field_rules.len()) {
            Some(plan) => self.mask_planned(plan, value),
            None => self.mask_counted(field, value),
        }
    }

    fn mask_prepared_into(
        &self,
        prepared: &PreparedField,
        field: &Field<'_>,
        value: &str,
        out: &mut BytesMut,
    ) -> Option<u32> {
        let plan =
            Plan::decode(prepared, self.field_rules.len()).unwrap_or_else(|| self.plan(field));
        // A redacting field rule: its fixed replacement, no allocation.
        if let Some(r) = self.redaction(plan) {
            if value == r {
                return None;
            }
            out.extend_from_slice(r.as_bytes());
            return Some(1);
        }
        super::append_masked(self.mask_planned(plan, value), out)
    }

    fn replacement_prepared(&self, prepared: &PreparedField, field: &Field<'_>) -> Option<&str> {
        self.redaction(
            Plan::decode(prepared, self.field_rules.len()).unwrap_or_else(|| self.plan(field)),
        )
    }

    fn masks_prepared(&self, prepared: &PreparedField, field: &Field<'_>) -> bool {
        match Plan::decode(prepared, self.field_rules.len()) {
            Some(plan) => plan.rule.is_some(),
            None => self.masks_field(field),
        }
    }

    fn masks_field(&self, field: &Field<'_>) -> bool {
        self.field_rule(field).is_some()
    }

    fn is_noop(&self) -> bool {
        self.field_rules.is_empty() && self.scan.set.is_empty()
    }
}

/// A value no detector can match, recognised without a scan: at most eight digits, with
/// an optional leading `-` (an `int2`/`int4` column, a small count or id). Its only anchor
/// is its first digit, and the digit detectors reject a run shorter than nine digits that
/// is not after `+`, `(` or letters and not followed by a separator (see the scan's fast
/// reject); the `scan_agrees_on_short_numbers` test checks the two agree.
#[inline]
fn short_plain_number(bytes: &[u8]) -> bool {
    let digits = match bytes {
        [b'-', rest @ ..] => rest,
        _ => bytes,
    };
    !digits.is_empty() && digits.len() <= 8 && digits.iter().all(u8::is_ascii_digit)
}

/// Whether replacing `start..end` (by output starting with byte `first` and ending with
/// `last`) can change what a detector sees next to it, so the output must be scanned
/// again:
///
/// * a neighbour that some detector parses or looks back across (letters, digits,
///   `. - : / = + % _ @ ( )`), unless a blank follows it on the right or precedes it on
///   the left: blanks and other punctuation are barriers, and the scan already treats a
///   match as a boundary for the match right after it;
/// * output that starts (ends) with a digit next to a number across one or two
///   separators (digit groups and phone numbers are parsed across `' '`, `-`, `.`, `(`,
///   `)`): the number's groups change.
fn touches(bytes: &[u8], start: usize, end: usize, first: u8, last: u8) -> bool {
    use super::prefilter::{at, before, run_end, run_start};
    let barrier = |b: u8| {
        b == 0
            || b.is_ascii_whitespace()
            || matches!(
                b,
                b',' | b';'
                    | b'!'
                    | b'?'
                    | b'"'
                    | b'\''
                    | b'<'
                    | b'>'
                    | b'['
                    | b']'
                    | b'{'
                    | b'}'
                    | b'|'
                    | b'`'
                    | b'&'
                    | b'#'
                    | b'~'
                    | b'*'
            )
    };
    let blank = |b: u8| b == 0 || b.is_ascii_whitespace();
    let left_b = before(bytes, start);
    let right_b = at(bytes, end);
    let left_open = !(barrier(left_b) || blank(before(bytes, start.saturating_sub(1))));
    let right_open = !(barrier(right_b) || blank(at(bytes, end + 1)));
    if left_open || right_open {
        return true;
    }
    let sep = |b: u8| matches!(b, b' ' | b'-' | b'.' | b'(' | b')');
    let left = run_start(bytes, start, 2, sep);
    let right = run_end(bytes, end, 2, sep);
    (first.is_ascii_digit() && left > 0 && left < start && at(bytes, left - 1).is_ascii_digit())
        || (last.is_ascii_digit() && right > end && at(bytes, right).is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writing into a buffer gives what `mask_prepared` returns, for rules of every
    /// strategy, detectors, and unchanged values.
    #[test]
    fn mask_into_agrees_with_mask_prepared() {
        let m = RuleMasker::builder()
            .all_detectors(Strategy::Redact)
            .field_rule("secret", Strategy::Redact)
            .field_rule_labeled("pin", Strategy::Redact, "PIN")
            .field_rule("hint", Strategy::Partial)
            .field_rule("user", Strategy::KeyedHash)
            .hmac_key("0123456789abcdef0123")
            .build()
            .unwrap();
        for name in ["secret", "pin", "hint", "user", "note"] {
            let f = Field::named(name);
            let p = m.prepare(&f);
            for v in [
                "",
                "x",
                "[REDACTED]",
                "[REDACTED:PIN]",
                "mail a@b.co now",
                "hello",
            ] {
                let mut out = BytesMut::from(&b"prefix"[..]);
                let got = m.mask_prepared_into(&p, &f, v, &mut out);
                let (want, n) = m.mask_prepared(&p, &f, v);
                match want {
                    Cow::Borrowed(_) => {
                        assert_eq!(got, None, "{name} {v:?}");
                        assert_eq!(&out[..], b"prefix");
                    }
                    Cow::Owned(w) => {
                        assert_eq!(got, Some(n), "{name} {v:?}");
                        assert_eq!(&out[6..], w.as_bytes(), "{name} {v:?}");
                    }
                }
                // Unprepared: the same answer.
                let mut again = BytesMut::from(&b"prefix"[..]);
                let unprepared = m.mask_prepared_into(&PreparedField::default(), &f, v, &mut again);
                assert_eq!((unprepared, &again[..]), (got, &out[..]), "{name} {v:?}");
                // A fixed replacement is what every value that changes becomes.
                if let Some(r) = m.replacement_prepared(&p, &f) {
                    assert!(got.is_none() || &out[6..] == r.as_bytes(), "{name} {v:?}");
                    assert_eq!(
                        Some(r),
                        m.replacement_prepared(&PreparedField::default(), &f)
                    );
                }
            }
        }
        // Only the redacting field rules have one.
        let fixed: Vec<&str> = ["secret", "pin", "hint", "user", "note"]
            .into_iter()
            .filter(|n| {
                let f = Field::named(n);
                m.replacement_prepared(&m.prepare(&f), &f).is_some()
            })
            .collect();
        assert_eq!(fixed, ["secret", "pin"]);
    }

    /// The shortcut in `scan_once` skips exactly values the scan would leave alone.
    #[test]
    fn scan_agrees_on_short_numbers() {
        let m = RuleMasker::builder()
            .all_detectors(Strategy::Redact)
            .ssn_bare_digits(true)
            .build()
            .unwrap();
        let mut values: Vec<String> = Vec::new();
        for len in 1..=8 {
            for d in 0..=9u8 {
                let v: String = (0..len).map(|i| char::from(b'0' + (d + i) % 10)).collect();
                values.push(format!("-{v}"));
                values.push(v);
            }
        }
        values.extend(["0", "-0", "99999999", "-12345678", "4111", "2147483647"].map(String::from));
        for v in &values {
            let shortcut = short_plain_number(v.as_bytes());
            assert_eq!(shortcut, v.trim_start_matches('-').len() <= 8, "{v}");
            for ssn_bare in [false, true] {
                let hits = Scan::new(v, &m.scan, ssn_bare).count();
                if shortcut {
                    assert_eq!(hits, 0, "{v} (ssn_bare {ssn_bare})");
                }
            }
        }
        // Not short numbers: a separator, a sign, nine digits.
        for v in ["", "-", "+1234", "12 34", "123456789", "1.5", "1e5", "12a"] {
            assert!(!short_plain_number(v.as_bytes()), "{v}");
        }
        // A nine-digit run is still scanned (a bare SSN when the option is on).
        assert_eq!(m.mask(&Field::anonymous(), "536901234"), "[REDACTED:SSN]");
    }
}
