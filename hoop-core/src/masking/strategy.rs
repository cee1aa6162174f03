//! How a sensitive value is replaced: redaction, partial mask or keyed pseudonym.

use super::detector::Detector;
use aws_lc_rs::hmac;
use serde::{Deserialize, Serialize};

/// How a matched value (or a whole field) is replaced.
///
/// | strategy | e-mail `john@example.com` | card `4111 1111 1111 1111` |
/// |---|---|---|
/// | `Redact` | `[REDACTED:EMAIL]` | `[REDACTED:CARD]` |
/// | `Partial` | `j***@example.com` | `**** **** **** 1111` |
/// | `KeyedHash` | `EMAIL_3f9a0c12d4e5` | `CARD_07b1c2d3e4f5` |
///
/// Every output is chosen so that no detector matches it again: masking is idempotent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Replace with `[REDACTED:LABEL]` (`[REDACTED]` for a field rule without a label).
    #[default]
    Redact,
    /// Keep a little for recognisability: the first character of an e-mail's local part
    /// and its domain, the last four digits of cards, phones and SSNs, the country code
    /// and last four characters of an IBAN, the first octet of an IPv4 address, the known
    /// prefix of a token (`ghp_***`), or the first character and `***` for anything else.
    /// Private keys are always redacted.
    Partial,
    /// A stable pseudonym `LABEL_<12 hex>` from HMAC-SHA256 under the configured key: the
    /// same value and key always give the same pseudonym (joins and counts still work),
    /// different keys give unrelated ones.
    KeyedHash,
}

/// The label of field-rule pseudonyms without a label of their own.
pub(crate) const FIELD_PSEUDO_LABEL: &str = "pseudo";

/// Hex characters of a pseudonym (48 bits of the HMAC).
const PSEUDO_HEX: usize = 12;

/// Appends the pseudonym of `value` under `key` (`LABEL_<12 hex>`).
pub(crate) fn write_pseudonym(out: &mut String, label: &str, key: &hmac::Key, value: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let tag = hmac::sign(key, value.as_bytes());
    out.push_str(label);
    out.push('_');
    for &b in tag.as_ref().iter().take(PSEUDO_HEX / 2) {
        for nibble in [b >> 4, b & 0x0f] {
            out.push(char::from(
                HEX.get(usize::from(nibble)).copied().unwrap_or(b'0'),
            ));
        }
    }
}

/// Whether `value` already is a pseudonym with this label (for idempotent field rules).
pub(crate) fn is_pseudonym(label: &str, value: &str) -> bool {
    value
        .strip_prefix(label)
        .and_then(|r| r.strip_prefix('_'))
        .is_some_and(|h| {
            h.len() == PSEUDO_HEX
                && h.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        })
}

/// Appends `[REDACTED:LABEL]` (or `[REDACTED]`).
pub(crate) fn write_redacted(out: &mut String, label: Option<&str>) {
    match label {
        Some(l) => {
            out.push_str("[REDACTED:");
            out.push_str(l);
            out.push(']');
        }
        None => out.push_str("[REDACTED]"),
    }
}

/// Generic partial mask: first character and `***`.
pub(crate) fn write_partial_generic(out: &mut String, value: &str) {
    if let Some(c) = value.chars().next() {
        out.push(c);
    }
    out.push_str("***");
}

/// Replaces every ASCII alphanumeric except the last `keep` with `*`, keeping separators.
fn star_all_but_last(out: &mut String, value: &str, keep: usize) {
    let total = value.bytes().filter(u8::is_ascii_alphanumeric).count();
    let mut seen = 0usize;
    for c in value.chars() {
        if c.is_ascii_alphanumeric() {
            seen += 1;
            out.push(if seen + keep > total { c } else { '*' });
        } else {
            out.push(c);
        }
    }
}

/// Partial mask of a detector match.
pub(crate) fn write_partial(out: &mut String, detector: Detector, value: &str) {
    match detector {
        Detector::Email => match value.split_once('@') {
            Some((local, domain)) => {
                write_partial_generic(out, local);
                out.push('@');
                out.push_str(domain);
            }
            None => write_redacted(out, Some(detector.label())),
        },
        Detector::CreditCard | Detector::Ssn | Detector::Phone => {
            star_all_but_last(out, value, 4);
        }
        Detector::Iban => {
            let (cc, rest) = value.split_at_checked(2).unwrap_or(("", value));
            out.push_str(cc);
            star_all_but_last(out, rest, 4);
        }
        Detector::Ipv4 => {
            out.push_str(value.split('.').next().unwrap_or(""));
            out.push_str(".*.*.*");
        }
        Detector::Ipv6 => {
            let head = value.split(':').next().unwrap_or("");
            out.push_str(head);
            out.push_str(":***");
        }
        Detector::Jwt => {
            out.push_str(value.split('.').next().unwrap_or(""));
            out.push_str(".***");
        }
        Detector::AwsKey | Detector::GithubToken | Detector::SlackToken => {
            let prefix = token_prefix(value);
            match prefix {
                Some(p) => {
                    out.push_str(p);
                    out.push_str("***");
                }
                None => write_partial_generic(out, value),
            }
        }
        Detector::PrivateKey => write_redacted(out, Some(detector.label())),
    }
}

/// The well-known, non-secret prefix of a token.
fn token_prefix(value: &str) -> Option<&str> {
    const PREFIXES: [&str; 13] = [
        "AKIA",
        "ASIA",
        "github_pat_",
        "ghp_",
        "gho_",
        "ghu_",
        "ghs_",
        "ghr_",
        "xoxb-",
        "xoxp-",
        "xoxa-",
        "xoxr-",
        "xoxs-",
    ];
    if let Some(i) = value.find("/services/") {
        return value.get(..i + "/services/".len());
    }
    PREFIXES
        .iter()
        .find(|p| value.starts_with(*p))
        .and_then(|p| value.get(..p.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn partial(d: Detector, v: &str) -> String {
        let mut s = String::new();
        write_partial(&mut s, d, v);
        s
    }

    #[test]
    fn partial_outputs() {
        assert_eq!(
            partial(Detector::Email, "john@example.com"),
            "j***@example.com"
        );
        assert_eq!(
            partial(Detector::CreditCard, "4111 1111 1111 1111"),
            "**** **** **** 1111"
        );
        assert_eq!(
            partial(Detector::CreditCard, "4111111111111111"),
            "************1111"
        );
        assert_eq!(partial(Detector::Ssn, "123-45-6789"), "***-**-6789");
        assert_eq!(partial(Detector::Phone, "(555) 123-4567"), "(***) ***-4567");
        assert_eq!(
            partial(Detector::Iban, "DE89 3704 0044 0532 0130 00"),
            "DE** **** **** **** **30 00"
        );
        assert_eq!(partial(Detector::Ipv4, "10.1.2.3"), "10.*.*.*");
        assert_eq!(partial(Detector::Ipv6, "fe80::1"), "fe80:***");
        assert_eq!(partial(Detector::GithubToken, "ghp_abc"), "ghp_***");
        assert_eq!(partial(Detector::AwsKey, "wJalrXUtnFEMI"), "w***");
        assert_eq!(
            partial(Detector::PrivateKey, "-----BEGIN"),
            "[REDACTED:PRIVATE_KEY]"
        );
        assert_eq!(
            partial(
                Detector::SlackToken,
                "https://hooks.slack.com/services/T0/B0/XX"
            ),
            "https://hooks.slack.com/services/***"
        );
    }

    #[test]
    fn pseudonyms() {
        let k1 = hmac::Key::new(hmac::HMAC_SHA256, b"0123456789abcdef");
        let k2 = hmac::Key::new(hmac::HMAC_SHA256, b"fedcba9876543210");
        let p = |k: &hmac::Key, v: &str| {
            let mut s = String::new();
            write_pseudonym(&mut s, "EMAIL", k, v);
            s
        };
        let a = p(&k1, "john@example.com");
        assert_eq!(a, p(&k1, "john@example.com"));
        assert_ne!(a, p(&k2, "john@example.com"));
        assert_ne!(a, p(&k1, "jane@example.com"));
        assert!(is_pseudonym("EMAIL", &a));
        assert_eq!(a.len(), "EMAIL_".len() + 12);
    }
}
