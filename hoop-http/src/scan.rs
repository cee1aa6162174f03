//! An allocation-light pre-scan of a JSON document: does the masker want to change
//! anything? Most responses have nothing to mask; they are answered without building a
//! document tree (strings without escapes are borrowed from the input, and the scan stops
//! at the first value to mask).

use std::borrow::Cow;
use std::fmt;

use hoop_core::{Field, Masker};
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

/// The error used to stop the scan at the first value to mask.
const FOUND: &str = "\u{0}hoop: found a value to mask";

/// `Ok(true)` when `masker` would change a value of the JSON document `data`;
/// `Err` when `data` is not JSON.
pub fn needs_masking(masker: &dyn Masker, data: &[u8]) -> Result<bool, String> {
    let mut de = serde_json::Deserializer::from_slice(data);
    let r = Scan { masker, key: None }
        .deserialize(&mut de)
        .and_then(|()| de.end());
    match r {
        Ok(()) => Ok(false),
        Err(e) if e.to_string().starts_with(FOUND) => Ok(true),
        Err(e) => Err(format!("invalid JSON body: {e}")),
    }
}

struct Scan<'m, 'k> {
    masker: &'m dyn Masker,
    key: Option<&'k str>,
}

impl Scan<'_, '_> {
    fn field(&self) -> Field<'_> {
        match self.key {
            Some(k) => Field::named(k),
            None => Field::anonymous(),
        }
    }

    fn string<E: de::Error>(&self, s: &str) -> Result<(), E> {
        match self.masker.mask(&self.field(), s) {
            Cow::Owned(m) if m != s => Err(E::custom(FOUND)),
            _ => Ok(()),
        }
    }

    fn scalar<E: de::Error>(&self) -> Result<(), E> {
        if self.masker.masks_field(&self.field()) {
            Err(E::custom(FOUND))
        } else {
            Ok(())
        }
    }
}

impl<'de> DeserializeSeed<'de> for Scan<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Scan<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        self.scalar()
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        self.scalar()
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        self.scalar()
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        self.scalar()
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
        assert!(needs_masking(&M, b"{").is_err());
        assert!(needs_masking(&M, b"{} x").is_err());
    }
}
