//! An allocation-light pre-scan of a JSON document: does the masker want to change
//! anything? Most responses have nothing to mask; they are answered without building a
//! document tree (strings without escapes are borrowed from the input, and the scan stops
//! at the first value to mask).

use std::borrow::Cow;
use std::fmt;

use hoop_core::{Field, Masker, PreparedField};
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

/// The error used to stop the scan at the first value to mask.
const FOUND: &str = "\u{0}hoop: found a value to mask";

/// `Ok(true)` when `masker` would change a value of the JSON document `data`;
/// `Err` when `data` is not JSON.
pub fn needs_masking(masker: &dyn Masker, data: &[u8]) -> Result<bool, String> {
    let mut de = serde_json::Deserializer::from_slice(data);
    let plans = Plans::default();
    let r = Scan {
        masker,
        key: None,
        plans: &plans,
    }
    .deserialize(&mut de)
    .and_then(|()| de.end());
    match r {
        Ok(()) => Ok(false),
        Err(e) if e.to_string().starts_with(FOUND) => Ok(true),
        Err(e) => Err(format!("invalid JSON body: {e}")),
    }
}

/// Most keys whose masking decision is remembered during one document.
const MAX_PLANS: usize = 64;

/// The masker's decision per key ([`Masker::prepare`]), made once per key name of a
/// document instead of once per value: a large array of objects repeats a few keys.
#[derive(Default)]
pub(crate) struct Plans {
    keys: std::cell::RefCell<Vec<(String, PreparedField)>>,
}

impl Plans {
    /// The prepared decision for `field` (named by a key, or anonymous).
    pub(crate) fn get(&self, masker: &dyn Masker, field: &Field<'_>) -> PreparedField {
        let Some(name) = field.name else {
            return masker.prepare(field);
        };
        let mut keys = self.keys.borrow_mut();
        if let Some((_, p)) = keys.iter().find(|(k, _)| k == name) {
            return *p;
        }
        let p = masker.prepare(field);
        if keys.len() < MAX_PLANS {
            keys.push((name.to_owned(), p));
        }
        p
    }
}

/// The text a detector sees for a JSON number: its digits, as written for integers.
pub(crate) fn number_text(n: &serde_json::Number) -> String {
    n.to_string()
}

struct Scan<'m, 'k, 'p> {
    masker: &'m dyn Masker,
    key: Option<&'k str>,
    plans: &'p Plans,
}

impl Scan<'_, '_, '_> {
    fn field(&self) -> Field<'_> {
        match self.key {
            Some(k) => Field::named(k),
            None => Field::anonymous(),
        }
    }

    fn string<E: de::Error>(&self, s: &str) -> Result<(), E> {
        let field = self.field();
        let plan = self.plans.get(self.masker, &field);
        match self.masker.mask_prepared(&plan, &field, s).0 {
            Cow::Owned(m) if m != s => Err(E::custom(FOUND)),
            _ => Ok(()),
        }
    }

    fn scalar<E: de::Error>(&self) -> Result<(), E> {
        let field = self.field();
        let plan = self.plans.get(self.masker, &field);
        if self.masker.masks_prepared(&plan, &field) {
            Err(E::custom(FOUND))
        } else {
            Ok(())
        }
    }

    /// A number: a rule on its key masks it, and so does a detector that finds a value
    /// in its digits (a card number or phone number sent as a JSON number).
    fn number<E: de::Error>(&self, n: serde_json::Number) -> Result<(), E> {
        self.scalar()?;
        self.string(&number_text(&n))
    }
}

impl<'de> DeserializeSeed<'de> for Scan<'_, '_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Scan<'_, '_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        self.scalar()
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.number(serde_json::Number::from(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        self.number(serde_json::Number::from(v))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        match serde_json::Number::from_f64(v) {
            Some(n) => self.number(n),
            None => self.scalar(),
        }
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<(), E> {
        self.string(s)
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq
            .next_element_seed(Scan {
                masker: self.masker,
                key: self.key,
                plans: self.plans,
            })?
            .is_some()
        {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key_seed(Key)? {
            map.next_value_seed(Scan {
                masker: self.masker,
                key: Some(&key),
                plans: self.plans,
            })?;
        }
        Ok(())
    }
}

/// A map key, borrowed from the input when it has no escapes.
struct Key;

impl<'de> DeserializeSeed<'de> for Key {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Cow<'de, str>, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string key")
    }
    fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Borrowed(s))
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Owned(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct M;
    impl Masker for M {
        fn mask<'v>(&self, field: &Field<'_>, value: &'v str) -> Cow<'v, str> {
            if field.name == Some("ssn") || value.contains('@') {
                Cow::Owned("x".into())
            } else {
                Cow::Borrowed(value)
            }
        }
        fn masks_field(&self, field: &Field<'_>) -> bool {
            field.name == Some("ssn")
        }
    }

    #[test]
    fn finds_values_to_mask() {
        assert!(!needs_masking(&M, br#"{"a":[1,"b",{"c":null}],"d":true}"#).unwrap());
        assert!(needs_masking(&M, br#"{"a":[1,"b",{"c":"x@y"}]}"#).unwrap());
        assert!(needs_masking(&M, br#"{"a":{"ssn":5}}"#).unwrap());
        assert!(needs_masking(&M, br#"[{"s\u0073n":"1"}]"#).unwrap());
        assert!(needs_masking(&M, br#""a\u0040b""#).unwrap());
        // A number is seen by the detectors as its digits.
        struct Digits;
        impl Masker for Digits {
            fn mask<'v>(&self, _: &Field<'_>, value: &'v str) -> Cow<'v, str> {
                if value == "4111111111111111" {
                    Cow::Owned("[CARD]".into())
                } else {
                    Cow::Borrowed(value)
                }
            }
        }
        assert!(needs_masking(&Digits, br#"{"n":4111111111111111}"#).unwrap());
        assert!(!needs_masking(&Digits, br#"{"n":4111111111111112}"#).unwrap());
        assert!(needs_masking(&M, b"{").is_err());
        assert!(needs_masking(&M, b"{} x").is_err());
    }
}
