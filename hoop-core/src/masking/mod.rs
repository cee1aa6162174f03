//! The [`Masker`] trait and the built-in rule masker.
//!
//! Masking is synchronous and runs on the hot path: a value that needs no masking is
//! returned borrowed (`Cow::Borrowed`), without allocation.
//!
//! [`RuleMasker`] combines field-name rules (`email`, `*_ssn`, `password`: the whole value
//! is masked) with validating [`Detector`]s that find sensitive values inside any text:
//! e-mail addresses, payment cards (Luhn), IBANs (mod-97), US SSNs, phone numbers, IPv4
//! and IPv6 addresses, JWTs, AWS / GitHub / Slack credentials and PEM private keys. Each
//! rule has a [`Strategy`]: redact (`[REDACTED:EMAIL]`), partial (`j***@example.com`) or a
//! keyed pseudonym (`EMAIL_3f9a0c12d4e5`, HMAC-SHA256). A one-pass prefilter over the
//! bytes stops only at candidate anchors, so clean text is scanned quickly and never
//! copied. Masking is idempotent: masked output is never masked again.
//!
//! The masker is usable on its own, without a gateway — for example in a service that
//! scrubs its log lines:
//!
//! ```
//! use hoop_core::masking::{Detector, Field, Masker, RuleMasker, Strategy};
//!
//! let masker = RuleMasker::builder()
//!     .all_detectors(Strategy::Redact)
//!     .detector(Detector::Email, Strategy::Partial)
//!     .detector(Detector::Ipv4, Strategy::KeyedHash)
//!     .field_rule("password", Strategy::Redact)
//!     .field_rule("*_ssn", Strategy::Partial)
//!     .hmac_key("a key of at least sixteen bytes")
//!     .build()
//!     .expect("valid masking rules");
//!
//! let line = "login ok for jane.doe@example.com from 203.0.113.7, card 4111-1111-1111-1111";
//! let masked = masker.mask(&Field::anonymous(), line);
//! println!("{masked}");
//! assert!(masked.starts_with("login ok for j***@example.com from IPV4_"));
//! assert!(masked.ends_with(", card [REDACTED:CARD]"));
//!
//! // Field rules mask whole values; clean values come back borrowed.
//! assert_eq!(masker.mask(&Field::named("Password"), "hunter2"), "[REDACTED]");
//! let clean = masker.mask(&Field::named("city"), "Lisbon");
//! assert!(matches!(clean, std::borrow::Cow::Borrowed("Lisbon")));
//!
//! // Adapters count masked values for the session recording.
//! let (_, n) = masker.mask_counted(&Field::anonymous(), "a@example.com b@example.org");
//! assert_eq!(n, 2);
//! ```

mod config;
mod detector;
mod detectors;
mod masker;
mod prefilter;
mod rules;
mod scan;
mod strategy;
pub mod validate;

pub use config::{DetectorRule, FieldRuleConfig, MaskingConfig, MaskingConfigError};
pub use detector::{Detector, DetectorSet};
pub use masker::{RuleMasker, RuleMaskerBuilder};
pub use rules::FieldRule;
pub use strategy::Strategy;

use std::borrow::Cow;

use bytes::BytesMut;

/// What is known of the field a value belongs to.
#[derive(Clone, Copy, Debug, Default)]
pub struct Field<'a> {
    /// Column / JSON key / header name, when known.
    pub name: Option<&'a str>,
    /// Table or object the field belongs to, when known.
    pub table: Option<&'a str>,
    /// Broad type of the value.
    pub kind: FieldKind,
}

impl<'a> Field<'a> {
    /// A text field with a name.
    pub fn named(name: &'a str) -> Self {
        Field {
            name: Some(name),
            table: None,
            kind: FieldKind::Text,
        }
    }

    /// A text value with no known name (free text, log output).
    pub fn anonymous() -> Self {
        Field::default()
    }
}

/// Broad type of a field's value, so a masked value can stay valid for its type.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FieldKind {
    /// Text-like: any masked string is valid.
    #[default]
    Text,
    /// A number or other typed scalar: a masked string may not be valid (adapters replace
    /// it with NULL or an equivalent).
    Typed,
    /// Opaque bytes.
    Binary,
}

/// Masks sensitive values before they leave the gateway.
pub trait Masker: Send + Sync {
    /// Returns `value` unchanged (borrowed, no allocation) or a masked copy.
    fn mask<'v>(&self, field: &Field<'_>, value: &'v str) -> Cow<'v, str>;

    /// Like [`mask`](Masker::mask), and also says how many sensitive values were masked in
    /// `value` (0 when it comes back unchanged), so adapters can count masked fields.
    ///
    /// The default counts 1 when `mask` returned an owned (changed) value.
    fn mask_counted<'v>(&self, field: &Field<'_>, value: &'v str) -> (Cow<'v, str>, u32) {
        let out = self.mask(field, value);
        let n = u32::from(matches!(out, Cow::Owned(_)));
        (out, n)
    }

    /// Whether a rule on the field's name alone masks every value of it (so an adapter
    /// can mask a typed column as a whole, e.g. replace it with NULL).
    fn masks_field(&self, field: &Field<'_>) -> bool {
        let _ = field;
        false
    }

    /// `true` when this masker never changes anything (no rules): adapters skip decoding.
    fn is_noop(&self) -> bool {
        false
    }

    /// Decides once what depends on the field alone (its name, table and kind: which
    /// rule applies, which name-dependent detectors run), for adapters that mask many
    /// values of the same field, such as the rows of a result. The answer is handed back
    /// to [`mask_prepared`](Masker::mask_prepared) with every value of that field.
    ///
    /// The default prepares nothing ([`PreparedField::default`]), and the `_prepared`
    /// methods then fall back to [`mask_counted`](Masker::mask_counted) and
    /// [`masks_field`](Masker::masks_field).
    fn prepare(&self, field: &Field<'_>) -> PreparedField {
        let _ = field;
        PreparedField::default()
    }

    /// [`mask_counted`](Masker::mask_counted) for a value of a field prepared by
    /// [`prepare`](Masker::prepare) of this masker: the same result, without deciding
    /// the field again.
    ///
    /// ```
    /// use hoop_core::masking::{Field, Masker, RuleMasker, Strategy};
    ///
    /// let masker = RuleMasker::builder()
    ///     .field_rule("email", Strategy::Redact)
    ///     .build()
    ///     .unwrap();
    /// let column = Field::named("email");
    /// let plan = masker.prepare(&column);
    /// for value in ["a@example.com", "b@example.com"] {
    ///     let (masked, n) = masker.mask_prepared(&plan, &column, value);
    ///     assert_eq!((masked, n), masker.mask_counted(&column, value));
    /// }
    /// ```
    fn mask_prepared<'v>(
        &self,
        prepared: &PreparedField,
        field: &Field<'_>,
        value: &'v str,
    ) -> (Cow<'v, str>, u32) {
        let _ = prepared;
        self.mask_counted(field, value)
    }

    /// [`mask_prepared`](Masker::mask_prepared) that appends a changed value to `out`
    /// instead of returning it: `None` when `value` passes unchanged (nothing is
    /// appended), `Some(n)` when its masked form, holding `n` masked values, was appended.
    /// For adapters that copy masked values into an output buffer anyway: a masker can
    /// write there directly and save an allocation per masked value.
    ///
    /// The default appends what [`mask_prepared`](Masker::mask_prepared) returns.
    ///
    /// ```
    /// use bytes::BytesMut;
    /// use hoop_core::masking::{Field, Masker, RuleMasker, Strategy};
    ///
    /// let masker = RuleMasker::builder()
    ///     .field_rule("email", Strategy::Redact)
    ///     .build()
    ///     .unwrap();
    /// let column = Field::named("email");
    /// let plan = masker.prepare(&column);
    /// let mut out = BytesMut::new();
    /// assert_eq!(masker.mask_prepared_into(&plan, &column, "a@example.com", &mut out), Some(1));
    /// assert_eq!(&out[..], b"[REDACTED]");
    /// ```
    fn mask_prepared_into(
        &self,
        prepared: &PreparedField,
        field: &Field<'_>,
        value: &str,
        out: &mut BytesMut,
    ) -> Option<u32> {
        append_masked(self.mask_prepared(prepared, field, value), out)
    }

    /// [`masks_field`](Masker::masks_field) for a field prepared by
    /// [`prepare`](Masker::prepare) of this masker.
    fn masks_prepared(&self, prepared: &PreparedField, field: &Field<'_>) -> bool {
        let _ = prepared;
        self.masks_field(field)
    }

    /// The text that replaces *every* value of a field prepared by
    /// [`prepare`](Masker::prepare), whatever the value, when there is one (a field rule
    /// that redacts). An adapter that gets `Some` writes it in place of the value without
    /// decoding or inspecting the value, and counts one masked value; `None` (the
    /// default): each value goes through [`mask_prepared_into`](Masker::mask_prepared_into).
    ///
    /// ```
    /// use hoop_core::masking::{Field, Masker, RuleMasker, Strategy};
    ///
    /// let masker = RuleMasker::builder()
    ///     .all_detectors(Strategy::Redact)
    ///     .field_rule("password", Strategy::Redact)
    ///     .build()
    ///     .unwrap();
    /// let password = Field::named("password");
    /// let plan = masker.prepare(&password);
    /// assert_eq!(masker.replacement_prepared(&plan, &password), Some("[REDACTED]"));
    /// // Detectors depend on the value: no fixed replacement.
    /// let note = Field::named("note");
    /// assert_eq!(masker.replacement_prepared(&masker.prepare(&note), &note), None);
    /// ```
    fn replacement_prepared(&self, prepared: &PreparedField, field: &Field<'_>) -> Option<&str> {
        let _ = (prepared, field);
        None
    }
}

/// The [`Masker::mask_prepared_into`] answer for a [`Masker::mask_prepared`] result:
/// a changed value is appended to `out`.
pub(crate) fn append_masked(masked: (Cow<'_, str>, u32), out: &mut BytesMut) -> Option<u32> {
    match masked {
        (Cow::Borrowed(_), _) => None,
        (Cow::Owned(masked), n) => {
            out.extend_from_slice(masked.as_bytes());
            Some(n)
        }
    }
}

/// What a [`Masker`] decided about a field from the field alone ([`Masker::prepare`]).
/// Opaque: only meaningful to the masker that made it. The default means "not prepared".
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PreparedField {
    bits: u64,
}

impl PreparedField {
    /// A prepared field carrying a masker's own encoding (bit 0 is reserved: set here).
    pub fn from_bits(bits: u64) -> Self {
        PreparedField { bits: bits | 1 }
    }

    /// The masker's encoding, or `None` when the field was not prepared.
    pub fn bits(&self) -> Option<u64> {
        (self.bits & 1 == 1).then_some(self.bits)
    }
}

/// A masker that changes nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoMasking;

impl Masker for NoMasking {
    fn mask<'v>(&self, _field: &Field<'_>, value: &'v str) -> Cow<'v, str> {
        Cow::Borrowed(value)
    }

    fn is_noop(&self) -> bool {
        true
    }
}
