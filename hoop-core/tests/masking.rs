//! Integration tests of the built-in masker: detectors (true and false positives),
//! strategies, field rules, configuration, allocation behaviour and property tests.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use hoop_core::masking::{
    Detector, Field, FieldKind, Masker, MaskingConfig, MaskingConfigError, NoMasking, RuleMasker,
    Strategy,
};
use proptest::prelude::*;
use proptest::strategy::Strategy as _;
use std::borrow::Cow;

const JWT: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIn0.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c";
const PEM: &str = "-----BEGIN RSA PRIVATE KEY-----\nMIIBOgIBAAJBAKj34GkxFhD90vcNLYLInFEX6Ppy1tPf9Cnzj4p4WGeKLs1Pt8Qu\nKUpRKfFLfRYC9AIKjbJTWit+CqvjWYzvQwECAwEAAQ==\n-----END RSA PRIVATE KEY-----";

fn all(strategy: Strategy) -> RuleMasker {
    RuleMasker::builder()
        .all_detectors(strategy)
        .hmac_key("test key of sufficient length")
        .build()
        .unwrap()
}

fn redact(s: &str) -> String {
    all(Strategy::Redact)
        .mask(&Field::anonymous(), s)
        .into_owned()
}

fn unchanged(s: &str) {
    let m = all(Strategy::Redact);
    let out = m.mask(&Field::anonymous(), s);
    assert!(
        matches!(out, Cow::Borrowed(_)),
        "expected {s:?} unchanged, got {out:?}"
    );
}

#[test]
fn email_true_and_false_positives() {
    assert_eq!(
        redact("contact john.doe+x@mail.example.com, thanks"),
        "contact [REDACTED:EMAIL], thanks"
    );
    assert_eq!(redact("<a@b.io>"), "<[REDACTED:EMAIL]>");
    unchanged("user@localhost and @handle and a@b.c and foo@ bar");
    unchanged("j***@example.com");
}

#[test]
fn card_true_and_false_positives() {
    assert_eq!(redact("card 4111111111111111."), "card [REDACTED:CARD].");
    assert_eq!(redact("4111 1111 1111 1111"), "[REDACTED:CARD]");
    assert_eq!(
        redact("amex 3782-822463-10005 ok"),
        "amex [REDACTED:CARD] ok"
    );
    assert_eq!(redact("5555555555554444"), "[REDACTED:CARD]");
    // Luhn invalid, unknown issuer, too long, inside a word.
    unchanged("order 4111111111111112");
    unchanged("id 9111111111111111");
    unchanged("41111111111111111111111");
    unchanged("x4111111111111111 4111111111111111y");
}

#[test]
fn iban_true_and_false_positives() {
    assert_eq!(
        redact("IBAN DE89370400440532013000"),
        "IBAN [REDACTED:IBAN]"
    );
    assert_eq!(
        redact("pay to GB82 WEST 1234 5698 7654 32 today"),
        "pay to [REDACTED:IBAN] today"
    );
    assert_eq!(redact("NL91ABNA0417164300"), "[REDACTED:IBAN]");
    // Wrong check digits, wrong length for the country.
    unchanged("DE88370400440532013000");
    unchanged("DE8937040044053201300");
}

#[test]
fn ssn_true_and_false_positives() {
    assert_eq!(redact("ssn 123-45-6789"), "ssn [REDACTED:SSN]");
    unchanged("000-12-3456 666-12-3456 900-12-3456 999-12-3456 123-00-4567 123-45-0000");
    // Nine bare digits: only in an SSN-like field or when configured.
    unchanged("123456789");
    let m = all(Strategy::Redact);
    assert_eq!(
        m.mask(&Field::named("customer_ssn_plain"), "123456789"),
        "[REDACTED:SSN]"
    );
    let bare = RuleMasker::builder()
        .detector(Detector::Ssn, Strategy::Redact)
        .ssn_bare_digits(true)
        .build()
        .unwrap();
    assert_eq!(
        bare.mask(&Field::anonymous(), "id 123456789"),
        "id [REDACTED:SSN]"
    );
    assert_eq!(
        bare.mask(&Field::anonymous(), "id 000456789"),
        "id 000456789"
    );
}

#[test]
fn phone_true_and_false_positives() {
    assert_eq!(redact("call (555) 123-4567"), "call [REDACTED:PHONE]");
    assert_eq!(redact("call 555-123-4567."), "call [REDACTED:PHONE].");
    assert_eq!(redact("intl +44 20 7946 0958"), "intl [REDACTED:PHONE]");
    assert_eq!(redact("+4915112345678"), "[REDACTED:PHONE]");
    assert_eq!(redact("+1 (555) 123-4567"), "[REDACTED:PHONE]");
    // Dates, times, versions and plain numbers are not phones.
    unchanged("on 2024-01-15 at 12:30:45, v1.2.3, 5551234567 items, 3.14, 20240115");
}

#[test]
fn ip_true_and_false_positives() {
    assert_eq!(
        redact("from 192.168.1.20:5432"),
        "from [REDACTED:IPV4]:5432"
    );
    assert_eq!(redact("host 10.0.0.1."), "host [REDACTED:IPV4].");
    unchanged("version 1.2.3.4.5 and 1.2.3 and 256.1.1.1 and 3.14");
    assert_eq!(redact("peer 2001:db8::1 ok"), "peer [REDACTED:IPV6] ok");
    assert_eq!(redact("[fe80::1%eth0]"), "[[REDACTED:IPV6]%eth0]");
    assert_eq!(
        redact("2001:0db8:85a3:0000:0000:8a2e:0370:7334"),
        "[REDACTED:IPV6]"
    );
    unchanged("at 12:30:45, std::net::Ipv6Addr, mac 00:1a:2b:3c:4d:5e, a::b");
}

#[test]
fn jwt_true_and_false_positives() {
    assert_eq!(
        redact(&format!("Authorization: Bearer {JWT}")),
        "Authorization: Bearer [REDACTED:JWT]"
    );
    // eyJ but the header has no "alg"; base64 JSON without dots; a plain base64 blob.
    unchanged("eyJ0eXAiOiJKV1QifQ.eyJzdWIiOiIxIn0.c2ln");
    unchanged("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9");
    unchanged("aGVsbG8gd29ybGQgdGhpcyBpcyBiYXNlNjQ=");
}

#[test]
fn cloud_tokens() {
    assert_eq!(redact("key=AKIAIOSFODNN7EXAMPLE"), "key=[REDACTED:AWS_KEY]");
    assert_eq!(redact("ASIAIOSFODNN7EXAMPLE"), "[REDACTED:AWS_KEY]");
    unchanged("AKIAIOSFODNN7EXAMPL AKIAIOSFODNN7EXAMPLEX");
    assert_eq!(
        redact("aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
        "aws_secret_access_key = [REDACTED:AWS_KEY]"
    );
    // A 40-character value next to a name that is not key-like stays.
    unchanged("aws_region = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY");
    let m = all(Strategy::Redact);
    assert_eq!(
        m.mask(
            &Field::named("SecretAccessKey"),
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
        ),
        "[REDACTED:AWS_KEY]"
    );
    assert_eq!(
        redact("token ghp_abcdefghijklmnopqrstuvwxyz0123456789 used"),
        "token [REDACTED:GITHUB_TOKEN] used"
    );
    assert_eq!(
        redact("github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz"),
        "[REDACTED:GITHUB_TOKEN]"
    );
    unchanged("ghp_short and ghx_abcdefghijklmnopqrstuvwxyz0123456789");
    assert_eq!(
        redact("xoxb-123456789012-abcdefghijkl"),
        "[REDACTED:SLACK_TOKEN]"
    );
    assert_eq!(
        redact("hook https://hooks.slack.com/services/T0000/B0000/XXXXXXXXXXXX done"),
        "hook [REDACTED:SLACK_TOKEN] done"
    );
    unchanged("xoxo-hugs and https://hooks.slack.com/other");
}

#[test]
fn pem_private_keys() {
    assert_eq!(
        redact(&format!("key:\n{PEM}\nend")),
        "key:\n[REDACTED:PRIVATE_KEY]\nend"
    );
    unchanged("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----");
    // A truncated key is still masked (fail closed).
    assert_eq!(
        redact("-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n"),
        "[REDACTED:PRIVATE_KEY]\n"
    );
}

#[test]
fn partial_outputs() {
    let m = all(Strategy::Partial);
    let f = Field::anonymous();
    assert_eq!(m.mask(&f, "mail john@example.com"), "mail j***@example.com");
    assert_eq!(m.mask(&f, "4111 1111 1111 1111"), "**** **** **** 1111");
    assert_eq!(m.mask(&f, "4111111111111111"), "************1111");
    assert_eq!(m.mask(&f, "123-45-6789"), "***-**-6789");
    assert_eq!(m.mask(&f, "(555) 123-4567"), "(***) ***-4567");
    assert_eq!(
        m.mask(&f, "DE89370400440532013000"),
        "DE****************3000"
    );
    assert_eq!(m.mask(&f, "ip 10.1.2.3"), "ip 10.*.*.*");
    assert_eq!(m.mask(&f, "ip fe80::1"), "ip fe80:***");
    assert_eq!(m.mask(&f, "AKIAIOSFODNN7EXAMPLE"), "AKIA***");
    assert_eq!(m.mask(&f, JWT), "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.***");
    assert_eq!(m.mask(&f, PEM), "[REDACTED:PRIVATE_KEY]");
}

#[test]
fn keyed_hash_is_deterministic_and_keyed() {
    let k1 = all(Strategy::KeyedHash);
    let k2 = RuleMasker::builder()
        .all_detectors(Strategy::KeyedHash)
        .hmac_key("another key, also long enough")
        .build()
        .unwrap();
    let f = Field::anonymous();
    let a = k1.mask(&f, "john@example.com").into_owned();
    assert!(a.starts_with("EMAIL_"), "{a}");
    assert_eq!(a.len(), "EMAIL_".len() + 12);
    assert!(a["EMAIL_".len()..].bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(a, k1.mask(&f, "john@example.com"));
    assert_ne!(a, k2.mask(&f, "john@example.com"));
    assert_ne!(a, k1.mask(&f, "jane@example.com"));
    let card = k1.mask(&f, "4111111111111111").into_owned();
    assert!(card.starts_with("CARD_"));
    // The pseudonym is not detected again.
    assert_eq!(k1.mask(&f, &card), card);
}

#[test]
fn field_rules_are_case_insensitive_globs() {
    let m = RuleMasker::builder()
        .field_rule("email", Strategy::Redact)
        .field_rule_labeled("*_ssn", Strategy::Redact, "SSN")
        .field_rule("pass*", Strategy::Partial)
        .field_rule("users.token", Strategy::KeyedHash)
        .hmac_key("0123456789abcdef")
        .build()
        .unwrap();
    assert_eq!(m.mask(&Field::named("EMAIL"), "anything"), "[REDACTED]");
    assert_eq!(m.mask(&Field::named("Customer_SSN"), "x"), "[REDACTED:SSN]");
    assert_eq!(m.mask(&Field::named("Password"), "hunter2"), "h***");
    assert_eq!(m.mask(&Field::named("emails"), "a"), "a");
    assert!(m.masks_field(&Field::named("eMail")));
    assert!(!m.masks_field(&Field::named("name")));
    assert!(!m.masks_field(&Field::anonymous()));
    let mut tok = Field::named("TOKEN");
    assert!(!m.masks_field(&tok));
    tok.table = Some("Users");
    let p = m.mask(&tok, "secret-value").into_owned();
    assert!(p.starts_with("pseudo_"), "{p}");
    // Field rules are idempotent too.
    assert_eq!(m.mask(&tok, &p), p);
    assert!(matches!(m.mask(&tok, &p), Cow::Borrowed(_)));
    assert!(matches!(
        m.mask(&Field::named("email"), "[REDACTED]"),
        Cow::Borrowed(_)
    ));
    // Typed fields are masked as a whole by field rules as well.
    let typed = Field {
        name: Some("billing_ssn"),
        table: None,
        kind: FieldKind::Typed,
    };
    assert!(m.masks_field(&typed));
}

#[test]
fn counts_and_noop() {
    let m = all(Strategy::Redact);
    let (out, n) = m.mask_counted(
        &Field::anonymous(),
        "a@example.com 4111111111111111 10.0.0.1 plain",
    );
    assert_eq!(n, 3);
    assert_eq!(
        out,
        "[REDACTED:EMAIL] [REDACTED:CARD] [REDACTED:IPV4] plain"
    );
    let (out, n) = m.mask_counted(&Field::anonymous(), "nothing here");
    assert_eq!(n, 0);
    assert!(matches!(out, Cow::Borrowed(_)));
    assert!(!m.is_noop());
    assert!(RuleMasker::builder().build().unwrap().is_noop());
    assert!(NoMasking.is_noop());
    assert_eq!(NoMasking.mask_counted(&Field::anonymous(), "a@b.com").1, 0);
}

#[test]
fn clean_input_is_borrowed() {
    let m = all(Strategy::Redact);
    let text = "2024-01-15T12:30:45Z INFO request handled in 12ms, status=200 (v1.2.3) — ünïcödé ✓";
    let out = m.mask(&Field::named("message"), text);
    assert!(matches!(out, Cow::Borrowed(_)));
    assert!(matches!(m.mask(&Field::anonymous(), ""), Cow::Borrowed("")));
}

#[test]
fn config_from_json() {
    let cfg: MaskingConfig = serde_json::from_str(
        r#"{
            "detectors": [
                {"detector": "email", "strategy": "keyed_hash"},
                {"detector": "credit_card", "strategy": "partial"},
                {"detector": "ipv4"}
            ],
            "field_rules": [{"pattern": "*password*"}],
            "hmac_key": "a key from the configuration file",
            "ssn_bare_digits": false
        }"#,
    )
    .unwrap();
    let m = RuleMasker::from_config(&cfg).unwrap();
    let out = m.mask(
        &Field::anonymous(),
        "x@example.com 4111111111111111 1.2.3.4 123-45-6789",
    );
    assert!(out.starts_with("EMAIL_"), "{out}");
    assert!(
        out.ends_with(" ************1111 [REDACTED:IPV4] 123-45-6789"),
        "{out}"
    );
    assert_eq!(m.mask(&Field::named("db_Password_hash"), "x"), "[REDACTED]");
    assert!(!format!("{cfg:?}").contains("configuration file"));
    assert!(!format!("{m:?}").contains("configuration file"));
    assert!(
        serde_json::from_str::<MaskingConfig>(r#"{"detectors": [{"detector": "nope"}]}"#).is_err()
    );
    assert!(serde_json::from_str::<MaskingConfig>(r#"{"unknown": 1}"#).is_err());
}

#[test]
fn config_errors_fail_closed() {
    let missing = RuleMasker::builder()
        .detector(Detector::Email, Strategy::KeyedHash)
        .build();
    assert_eq!(missing.unwrap_err(), MaskingConfigError::MissingHmacKey);
    let short = RuleMasker::builder().hmac_key("short").build();
    assert_eq!(short.unwrap_err(), MaskingConfigError::HmacKeyTooShort(5));
    let label = RuleMasker::builder()
        .field_rule_labeled("x", Strategy::Redact, "bad label!")
        .build();
    assert!(matches!(label, Err(MaskingConfigError::InvalidLabel(_))));
    let empty = RuleMasker::builder()
        .field_rule("", Strategy::Redact)
        .build();
    assert_eq!(empty.unwrap_err(), MaskingConfigError::EmptyPattern);
}

#[test]
fn utf8_around_matches() {
    let m = all(Strategy::Partial);
    let out = m.mask(
        &Field::anonymous(),
        "é4111111111111111é — ü john@example.com ü",
    );
    assert_eq!(out, "é************1111é — ü j***@example.com ü");
}

#[test]
fn idempotent_on_glued_values() {
    // Inputs where one replacement changes what its neighbour sees (found by proptest).
    let cases = [
        format!("john@example.com{PEM}"),
        "john@example.com(555) 123-4567".to_owned(),
        "+1 555 123 4567john@example.com".to_owned(),
        "john@example.com(555) 123-4567(555) 123-4567(555) 123-4567(555) 123-4567".to_owned(),
        format!("{JWT}.4111111111111111"),
        "1.2.3.4.5 4111111111111111,555-123-4567".to_owned(),
    ];
    for strategy in [Strategy::Redact, Strategy::Partial, Strategy::KeyedHash] {
        let m = all(strategy);
        for c in &cases {
            let once = m.mask(&Field::anonymous(), c).into_owned();
            assert_ne!(&once, c, "{strategy:?}: nothing masked in {c:?}");
            let twice = m.mask(&Field::anonymous(), &once);
            assert_eq!(once, twice, "{strategy:?}: {c:?}");
        }
    }
    assert_eq!(
        redact("john@example.com(555) 123-4567(555) 123-4567"),
        "[REDACTED:EMAIL][REDACTED:PHONE][REDACTED:PHONE]"
    );
}

// ---- property tests ----

fn luhn_card(body: &[u8]) -> String {
    let mut s: String = std::iter::once('4')
        .chain(body.iter().map(|d| char::from(b'0' + d % 10)))
        .collect();
    for check in 0..10u8 {
        let candidate = format!("{s}{check}");
        if hoop_core::masking::validate::luhn_valid(candidate.as_bytes()) {
            s = candidate;
            break;
        }
    }
    s
}

/// Pieces that stress the detectors when glued together in any order.
fn piece() -> impl proptest::strategy::Strategy<Value = String> {
    prop_oneof![
        "[0-9a-zA-Z@.:+()_=/ -]{0,12}",
        "[0-9 .:-]{0,16}",
        any::<String>(),
        Just("john@example.com".to_owned()),
        Just("4111 1111 1111 1111".to_owned()),
        Just("DE89370400440532013000".to_owned()),
        Just("123-45-6789".to_owned()),
        Just("(555) 123-4567".to_owned()),
        Just("+1 555 123 4567".to_owned()),
        Just("10.0.0.1".to_owned()),
        Just("2001:db8::1".to_owned()),
        Just(JWT.to_owned()),
        Just("AKIAIOSFODNN7EXAMPLE".to_owned()),
        Just("ghp_abcdefghijklmnopqrstuvwxyz0123456789".to_owned()),
        Just("xoxb-123456789012-abcdefghijkl".to_owned()),
        Just(PEM.to_owned()),
        Just("[REDACTED:EMAIL]".to_owned()),
        Just(" ".to_owned()),
        Just("\n".to_owned()),
        Just(", ".to_owned()),
        Just(",".to_owned()),
        Just(";".to_owned()),
        Just("\"".to_owned()),
        Just(".".to_owned()),
        Just("*".to_owned()),
        Just("[".to_owned()),
        Just(" (".to_owned()),
        Just(") ".to_owned()),
        Just(". ".to_owned()),
        Just(": ".to_owned()),
        Just(" @".to_owned()),
        Just(" =".to_owned()),
        Just(" :".to_owned()),
        Just("fe80::1".to_owned()),
        Just("a1@b.co".to_owned()),
        Just("secret_key=".to_owned()),
    ]
}

fn text() -> impl proptest::strategy::Strategy<Value = String> {
    proptest::collection::vec(piece(), 0..8).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn never_panics_on_arbitrary_strings(s in any::<String>(), name in any::<String>()) {
        for strategy in [Strategy::Redact, Strategy::Partial, Strategy::KeyedHash] {
            let m = all(strategy);
            let _ = m.mask(&Field::anonymous(), &s);
            let _ = m.mask(&Field::named(&name), &s);
        }
    }

    #[test]
    fn masking_is_idempotent(s in text()) {
        for strategy in [Strategy::Redact, Strategy::Partial, Strategy::KeyedHash] {
            let m = all(strategy);
            let once = m.mask(&Field::anonymous(), &s).into_owned();
            let twice = m.mask(&Field::anonymous(), &once);
            prop_assert_eq!(&once, &*twice, "strategy {:?} input {:?}", strategy, s);
        }
    }

    #[test]
    fn embedded_card_is_masked(
        pre in "[a-zA-Z0-9 .,;!?-]{0,40}",
        post in "[a-zA-Z0-9 .,;!?-]{0,40}",
        body in proptest::collection::vec(0u8..10, 14),
        spaced in any::<bool>(),
    ) {
        let card = luhn_card(&body);
        prop_assume!(card.len() == 16);
        let shown = if spaced {
            format!("{} {} {} {}", &card[0..4], &card[4..8], &card[8..12], &card[12..16])
        } else {
            card.clone()
        };
        let text = format!("{pre} {shown} {post}");
        let out = all(Strategy::Redact).mask(&Field::anonymous(), &text);
        prop_assert!(!out.contains(&shown), "{:?} -> {:?}", text, out);
        prop_assert!(out.contains("[REDACTED:CARD]"), "{:?} -> {:?}", text, out);
    }

    #[test]
    fn embedded_email_is_masked(
        pre in "[a-zA-Z0-9 .,;!?-]{0,40}",
        post in "[a-zA-Z0-9 .,;!?-]{0,40}",
        local in "[a-z][a-z0-9_]{0,5}(\\.[a-z0-9_]{1,5})?",
        domain in "[a-z][a-z0-9-]{0,10}[a-z0-9]\\.[a-z]{2,6}",
    ) {
        let email = format!("{local}@{domain}");
        let text = format!("{pre} {email} {post}");
        let out = all(Strategy::Redact).mask(&Field::anonymous(), &text);
        prop_assert!(!out.contains(&email), "{:?} -> {:?}", text, out);
        prop_assert!(out.contains("[REDACTED:EMAIL]"), "{:?} -> {:?}", text, out);
    }
}
