//! Serde configuration of the rule masker (read from TOML or JSON by a gateway).

use super::detector::Detector;
use super::strategy::Strategy;
use serde::{Deserialize, Serialize};

/// Configuration of a [`RuleMasker`](super::RuleMasker).
///
/// ```
/// use hoop_core::masking::{MaskingConfig, RuleMasker, Masker, Field};
/// let cfg: MaskingConfig = serde_json::from_str(r#"{
///     "detectors": [
///         {"detector": "email", "strategy": "partial"},
///         {"detector": "credit_card"}
///     ],
///     "field_rules": [{"pattern": "*_ssn", "strategy": "redact", "label": "SSN"}]
/// }"#).unwrap();
/// let masker = RuleMasker::from_config(&cfg).unwrap();
/// assert_eq!(masker.mask(&Field::anonymous(), "to john@example.com"), "to j***@example.com");
/// assert_eq!(masker.mask(&Field::named("customer_ssn"), "anything"), "[REDACTED:SSN]");
/// ```
///
/// The same in TOML:
///
/// ```toml
/// hmac_key = "a secret of at least sixteen bytes"
/// ssn_bare_digits = false
///
/// [[detectors]]
/// detector = "email"
/// strategy = "keyed_hash"
///
/// [[field_rules]]
/// pattern = "password"
/// ```
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaskingConfig {
    /// Detectors run over every value, each with its strategy.
    #[serde(default)]
    pub detectors: Vec<DetectorRule>,
    /// Field-name rules; the first matching rule masks the whole value.
    #[serde(default)]
    pub field_rules: Vec<FieldRuleConfig>,
    /// Key of the keyed-hash strategy (its UTF-8 bytes; at least 16). Required when any
    /// rule uses [`Strategy::KeyedHash`].
    #[serde(default)]
    pub hmac_key: Option<String>,
    /// Treat nine bare digits as an SSN everywhere (they always are in fields named like
    /// `ssn`).
    #[serde(default)]
    pub ssn_bare_digits: bool,
}

impl std::fmt::Debug for MaskingConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MaskingConfig")
            .field("detectors", &self.detectors)
            .field("field_rules", &self.field_rules)
            .field("hmac_key", &self.hmac_key.as_ref().map(|_| "<redacted>"))
            .field("ssn_bare_digits", &self.ssn_bare_digits)
            .finish()
    }
}

/// One detector and its strategy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetectorRule {
    /// The detector.
    pub detector: Detector,
    /// Its strategy (default: redact).
    #[serde(default)]
    pub strategy: Strategy,
}

/// A field-name rule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldRuleConfig {
    /// Case-insensitive glob on the field name (`email`, `*_ssn`, `users.password`).
    pub pattern: String,
    /// Strategy for the whole value (default: redact).
    #[serde(default)]
    pub strategy: Strategy,
    /// Label in redactions and pseudonyms (letters, digits, `_`; at most 32).
    #[serde(default)]
    pub label: Option<String>,
}

/// Why a masking configuration was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MaskingConfigError {
    /// A rule uses the keyed-hash strategy but no HMAC key was given.
    #[error("a masking rule uses keyed_hash but no hmac_key is configured")]
    MissingHmacKey,
    /// The HMAC key is too short.
    #[error("hmac_key is {0} bytes; at least 16 are required")]
    HmacKeyTooShort(usize),
    /// A field rule has an empty pattern.
    #[error("a field rule has an empty pattern")]
    EmptyPattern,
    /// A label is empty, too long, or has characters other than letters, digits and `_`.
    #[error("invalid masking label {0:?}: use 1-32 letters, digits or '_'")]
    InvalidLabel(String),
}
