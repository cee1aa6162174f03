//! The kinds of sensitive value the built-in scanner recognises.

use serde::{Deserialize, Serialize};

/// A built-in detector of sensitive values in free text.
///
/// Every detector validates what it finds (Luhn for cards, mod-97 for IBANs, octet ranges
/// for IPv4, a JSON header with `"alg"` for JWTs, ...) so that ordinary numbers, dates and
/// version strings are left alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Detector {
    /// E-mail addresses (`local@domain.tld`).
    Email,
    /// Payment card numbers: 13-19 digits, optional space/dash groups, Luhn valid.
    CreditCard,
    /// IBANs: country code, check digits and BBAN, mod-97 valid, per-country length.
    Iban,
    /// US social security numbers `AAA-GG-SSSS` (bare 9 digits only when configured or in a
    /// field named like `ssn`).
    Ssn,
    /// Phone numbers: E.164 (`+` and 8-15 digits) and common national formats.
    Phone,
    /// IPv4 addresses.
    Ipv4,
    /// IPv6 addresses.
    Ipv6,
    /// JSON Web Tokens (three base64url segments, header with `"alg"`).
    Jwt,
    /// AWS access key ids (`AKIA…`/`ASIA…`) and secret keys next to a key-like name.
    AwsKey,
    /// GitHub tokens (`ghp_`, `gho_`, `ghu_`, `ghs_`, `ghr_`, `github_pat_`).
    GithubToken,
    /// Slack tokens (`xoxb-`, `xoxp-`, …) and incoming-webhook URLs.
    SlackToken,
    /// PEM private keys (`-----BEGIN … PRIVATE KEY-----` through `END`).
    PrivateKey,
}

impl Detector {
    /// Every detector, in a fixed order.
    pub const ALL: [Detector; 12] = [
        Detector::Email,
        Detector::CreditCard,
        Detector::Iban,
        Detector::Ssn,
        Detector::Phone,
        Detector::Ipv4,
        Detector::Ipv6,
        Detector::Jwt,
        Detector::AwsKey,
        Detector::GithubToken,
        Detector::SlackToken,
        Detector::PrivateKey,
    ];

    /// The label used in redactions (`[REDACTED:EMAIL]`) and pseudonyms (`EMAIL_3f9a…`).
    pub fn label(self) -> &'static str {
        match self {
            Detector::Email => "EMAIL",
            Detector::CreditCard => "CARD",
            Detector::Iban => "IBAN",
            Detector::Ssn => "SSN",
            Detector::Phone => "PHONE",
            Detector::Ipv4 => "IPV4",
            Detector::Ipv6 => "IPV6",
            Detector::Jwt => "JWT",
            Detector::AwsKey => "AWS_KEY",
            Detector::GithubToken => "GITHUB_TOKEN",
            Detector::SlackToken => "SLACK_TOKEN",
            Detector::PrivateKey => "PRIVATE_KEY",
        }
    }

    pub(crate) fn bit(self) -> u16 {
        1u16 << (self as u16)
    }
}

/// A set of detectors (a bit set; `Copy`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DetectorSet(u16);

impl DetectorSet {
    /// No detector.
    pub const fn empty() -> Self {
        DetectorSet(0)
    }

    /// Every detector.
    pub fn all() -> Self {
        Detector::ALL.iter().fold(Self::empty(), |s, d| s.with(*d))
    }

    /// This set plus `d`.
    pub fn with(self, d: Detector) -> Self {
        DetectorSet(self.0 | d.bit())
    }

    /// Whether `d` is in the set.
    pub fn contains(self, d: Detector) -> bool {
        self.0 & d.bit() != 0
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}
