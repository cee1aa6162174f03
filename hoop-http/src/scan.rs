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
/// `Err` when `data` is not JSON and could not be cleared as a whole.
///
/// A document is first tried as a whole ([`clean_as_text`]): when every key is one the
/// masker treats like no name at all and the detectors find nothing in its tokens, no
/// value can change, and the per-value scan is skipped (a large clean body costs one
/// pass of the detectors, not one masker call per value). Such a body goes out as it
/// came, valid JSON or not: every byte of it was inspected.
pub fn needs_masking(masker: &dyn Masker, data: &[u8]) -> Result<bool, String> {
    let plans = Plans::default();
    if clean_as_text(masker, &plans, data) {
        return Ok(false);
    }
    scan_values(masker, &plans, data)
}

/// The per-value scan: one masker call per string, number and masked scalar.
fn scan_values(masker: &dyn Masker, plans: &Plans, data: &[u8]) -> Result<bool, String> {
    let mut de = serde_json::Deserializer::from_slice(data);
    let r = Scan {
        masker,
        key: None,
        plans,
    }
    .deserialize(&mut de)
    .and_then(|()| de.end());
    match r {
        Ok(()) => Ok(false),
        Err(e) if e.to_string().starts_with(FOUND) => Ok(true),
        Err(e) => Err(format!("invalid JSON body: {e}")),
    }
}

/// Whether nothing in the JSON text `data` can be masked, decided in one pass: every
/// key must be prepared by the masker exactly like an unnamed field (no rule, no
/// name-dependent detector), the text must have no escapes (a value is then its bytes
/// between quotes), and the masker's detectors must find nothing in the text with every
/// byte outside a string that is not part of a number turned into a line break (a
/// barrier for every detector, as the start and end of a value are). `false` means
/// "not decided here": the per-value scan decides. Only for maskers that prepare
/// fields ([`Masker::prepare`]): fields with equal preparations are masked alike.
pub(crate) fn clean_as_text(masker: &dyn Masker, plans: &Plans, data: &[u8]) -> bool {
    let unnamed = masker.prepare(&Field::anonymous());
    if unnamed.bits().is_none() || data.contains(&b'\\') {
        return false;
    }
    // The text has the document's length: strings are copied as they are, their quotes
    // and every byte outside them that is not part of a number become line breaks.
    let mut text = data.to_vec();
    // The content of the last string closed: a key if only blanks separate it from `:`.
    let mut last_string: Option<(usize, usize)> = None;
    // Outside strings only the bytes of JSON may appear, and a number never follows
    // another one with only blanks between them: that is not JSON, and the line break
    // would cut apart what the detectors must see whole (`4111 1111 1111 1111` outside
    // quotes, `[a@b.example]`). The per-value scan refuses such a body instead.
    let mut i = 0usize;
    while let Some(&b) = data.get(i) {
        match OUTSIDE.get(usize::from(b)).copied().unwrap_or(OTHER) {
            NUMBER => {}
            QUOTE => {
                // A string (no escapes): up to the next quote, copied as it is.
                let Some(len) = data
                    .get(i + 1..)
                    .and_then(|r| r.iter().position(|&c| c == b'"'))
                else {
                    return false;
                };
                let end = i + 1 + len;
                for q in [i, end] {
                    if let Some(c) = text.get_mut(q) {
                        *c = b'\n';
                    }
                }
                last_string = Some((i + 1, end));
                i = end + 1;
                continue;
            }
            COLON => {
                // Right after a string, blanks aside: the string is a key.
                let key = last_string.take().filter(|&(_, end)| {
                    data.get(end + 1..i).is_some_and(|gap| {
                        gap.iter()
                            .all(|c| OUTSIDE.get(usize::from(*c)) == Some(&BLANK))
                    })
                });
                let Some(key) = key.and_then(|(s, e)| data.get(s..e)) else {
                    return false;
                };
                if plans.get_bytes(masker, key) != Some(unnamed) {
                    return false;
                }
                if let Some(c) = text.get_mut(i) {
                    *c = b'\n';
                }
            }
            BLANK => {
                let class = |c: Option<&u8>| c.and_then(|c| OUTSIDE.get(usize::from(*c)));
                if class(i.checked_sub(1).and_then(|p| data.get(p))) == Some(&NUMBER) {
                    let next = data
                        .get(i..)
                        .and_then(|r| r.iter().find(|c| class(Some(c)) != Some(&BLANK)));
                    if class(next) == Some(&NUMBER) {
                        return false;
                    }
                }
                if let Some(c) = text.get_mut(i) {
                    *c = b'\n';
                }
            }
            OTHER => return false,
            _ => {
                if let Some(c) = text.get_mut(i) {
                    *c = b'\n';
                }
            }
        }
        i += 1;
    }
    let Ok(text) = String::from_utf8(text) else {
        return false;
    };
    matches!(masker.mask(&Field::anonymous(), &text), Cow::Borrowed(_))
}

// How [`clean_as_text`] treats a byte outside strings: kept (part of a number), turned
// into a line break (the letters of `true`, `false` and `null`, blanks, `,` `:` and
// brackets), the start of a string, or refused (not JSON).
const NUMBER: u8 = 1;
const BLANK: u8 = 2;
const OTHER: u8 = 3;
const QUOTE: u8 = 4;
const COLON: u8 = 5;
const LITERAL: u8 = 6;
const COMMA: u8 = 7;
const OPEN: u8 = 8;
const CLOSE: u8 = 9;

/// The class of each byte outside strings ([`NUMBER`], [`LITERAL`], [`BLANK`],
/// [`QUOTE`], [`COLON`], [`COMMA`], [`OPEN`], [`CLOSE`]; [`OTHER`] for the rest).
// Indexing in a constant: an index out of range would fail the build, not panic.
#[allow(clippy::indexing_slicing)]
static OUTSIDE: [u8; 256] = {
    let mut t = [OTHER; 256];
    let mut c = b'0';
    while c <= b'9' {
        t[c as usize] = NUMBER;
        c += 1;
    }
    t[b'-' as usize] = NUMBER;
    t[b'+' as usize] = NUMBER;
    t[b'.' as usize] = NUMBER;
    t[b'e' as usize] = NUMBER;
    t[b'E' as usize] = NUMBER;
    // The other letters of `true`, `false` and `null`.
    let letters = b"truflasn";
    let mut k = 0;
    while k < letters.len() {
        t[letters[k] as usize] = LITERAL;
        k += 1;
    }
    t[b' ' as usize] = BLANK;
    t[b'\t' as usize] = BLANK;
    t[b'\r' as usize] = BLANK;
    t[b'\n' as usize] = BLANK;
    t[b'"' as usize] = QUOTE;
    t[b':' as usize] = COLON;
    t[b',' as usize] = COMMA;
    t[b'{' as usize] = OPEN;
    t[b'[' as usize] = OPEN;
    t[b'}' as usize] = CLOSE;
    t[b']' as usize] = CLOSE;
    t
};

/// Most keys whose masking decision is remembered during one document.
const MAX_PLANS: usize = 64;

/// The masker's decision per key ([`Masker::prepare`]), made once per key name of a
/// document instead of once per value: a large array of objects repeats a few keys.
#[derive(Default)]
pub(crate) struct Plans {
    keys: std::cell::RefCell<Vec<(String, PreparedField)>>,
}

impl Plans {
    /// [`Plans::get`] for a key given as raw bytes; `None` when they are not UTF-8.
    pub(crate) fn get_bytes(&self, masker: &dyn Masker, key: &[u8]) -> Option<PreparedField> {
        {
            let keys = self.keys.borrow();
            // Keys are short: an inline comparison beats a call to `memcmp` per key.
            let same = |k: &str| k.len() == key.len() && k.bytes().zip(key).all(|(a, &b)| a == b);
            if let Some((_, p)) = keys.iter().find(|(k, _)| same(k)) {
                return Some(*p);
            }
        }
        let key = std::str::from_utf8(key).ok()?;
        Some(self.get(masker, &Field::named(key)))
    }

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
    fn whole_text_shortcut_never_clears_what_a_value_scan_masks() {
        let masker = hoop_core::masking::RuleMasker::builder()
            .all_detectors(hoop_core::masking::Strategy::Redact)
            .field_rule("password", hoop_core::masking::Strategy::Redact)
            .build()
            .unwrap();
        let bodies: &[&[u8]] = &[
            br#"[{"id":1,"name":"item-1","ok":true},{"id":2,"name":"item-2","ok":false}]"#,
            br#"{"email":"a@example.com"}"#,
            br#"{"n":4111111111111111}"#,
            br#"{"n":"4111 1111 1111 1111"}"#,
            br#"{"ip":"10.1.2.3","v6":"2001:db8::1"}"#,
            br#"{"password":"hunter2"}"#,
            br#"{"password":7}"#,
            br#"{"ssn":"123456789"}"#,
            br#"{"aws_secret_access_key":"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"}"#,
            br#"{"phone":"+1 415 555 0100","parts":["555","123","4567"]}"#,
            br#"{"t":"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJlLXNpZ25hdHVyZQ"}"#,
            br#"{"iban":"DE89370400440532013000","x":1e5,"y":-2.5}"#,
            br#"{"k:ey":"v","a":["x","y@z.io"]}"#,
            br#"{"esc":"a@b.com"}"#,
        ];
        for body in bodies {
            let plans = Plans::default();
            let shortcut = clean_as_text(&masker, &plans, body);
            let full = scan_values(&masker, &Plans::default(), body).unwrap();
            assert!(
                !(shortcut && full),
                "cleared as text but a value is masked: {}",
                String::from_utf8_lossy(body)
            );
            assert_eq!(needs_masking(&masker, body).unwrap(), full);
        }
        // The shortcut does clear the plain document (it is what makes large clean
        // bodies cheap), pretty-printed or not.
        for clean in [
            bodies[0],
            b" {\n  \"id\" : 1 ,\n  \"tags\" : [ \"a\" , null , false , -2.5e3 ] ,\"x\":{}\n}\n",
            b"[[],{},[1,[2,[3]]]]",
            b"7",
            b"\"item\"",
        ] {
            let text = String::from_utf8_lossy(clean);
            assert!(clean_as_text(&masker, &Plans::default(), clean), "{text}");
            assert!(!needs_masking(&masker, clean).unwrap(), "{text}");
        }
        // Bytes outside strings that JSON does not have there, and numbers with only
        // blanks between them, are never cleared by the shortcut: a line break there
        // would cut apart a value the detectors must see whole. The per-value scan then
        // refuses the body (the adapter answers 502).
        for invalid in [
            &b"4111 1111 1111 1111"[..],
            b"[4111 1111 1111 1111]",
            b"{\"a\":1} 4111 1111 1111 1111",
            b"{\"ssn\": 123 45 6789}",
            b"[1, 415\t555 0100]",
            b"[a@b.example]",
            b"{\"a\":(415) 555-0100}",
            b"[DE89370400440532013000]",
        ] {
            let text = String::from_utf8_lossy(invalid);
            assert!(
                !clean_as_text(&masker, &Plans::default(), invalid),
                "{text}"
            );
            assert!(needs_masking(&masker, invalid).is_err(), "{text}");
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
