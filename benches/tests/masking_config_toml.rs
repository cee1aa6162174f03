//! The masking configuration as a gateway reads it: TOML (hoop-core itself has no TOML
//! dependency, so this lives next to the masker bench).

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use hoop_core::masking::{Detector, Field, Masker, MaskingConfig, RuleMasker, Strategy};

#[test]
fn masking_config_from_toml() {
    let cfg: MaskingConfig = toml::from_str(
        r#"
        hmac_key = "a secret of at least sixteen bytes"
        ssn_bare_digits = true

        [[detectors]]
        detector = "email"
        strategy = "keyed_hash"

        [[detectors]]
        detector = "credit_card"
        strategy = "partial"

        [[detectors]]
        detector = "ssn"

        [[field_rules]]
        pattern = "*password*"

        [[field_rules]]
        pattern = "users.token"
        strategy = "keyed_hash"
        label = "TOKEN"
        "#,
    )
    .unwrap();
    assert_eq!(cfg.detectors.len(), 3);
    assert_eq!(cfg.detectors[1].detector, Detector::CreditCard);
    assert_eq!(cfg.detectors[1].strategy, Strategy::Partial);
    let m = RuleMasker::from_config(&cfg).unwrap();
    let out = m.mask(
        &Field::anonymous(),
        "a@example.com 4111111111111111 123456789",
    );
    assert!(out.starts_with("EMAIL_"), "{out}");
    assert!(out.ends_with(" ************1111 [REDACTED:SSN]"), "{out}");
    let mut f = Field::named("token");
    f.table = Some("users");
    assert!(m.mask(&f, "t0k3n").starts_with("TOKEN_"));
    assert_eq!(m.mask(&Field::named("DB_PASSWORD"), "x"), "[REDACTED]");
    // Unknown keys and detectors are refused.
    assert!(toml::from_str::<MaskingConfig>("colour = 1").is_err());
    assert!(toml::from_str::<MaskingConfig>("[[detectors]]\ndetector = \"nope\"").is_err());
}
