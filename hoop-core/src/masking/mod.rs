//! The [`Masker`] trait and the built-in rule masker.
//!
//! Masking is synchronous and runs on the hot path: a value that needs no masking is
//! returned borrowed (`Cow::Borrowed`), without allocation.

use std::borrow::Cow;

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
