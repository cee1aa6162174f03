//! What the masking detectors are shown of a binary-format value that is not text: the
//! text the same value has in the text format (integers, `numeric`, `inet`), the texts
//! of an array's elements, or, for a type of unknown layout (a composite, an enum, an
//! extension type), its bytes read as text, where embedded strings appear whole. A card
//! number stored as `bigint`, an address in a `text[]` or an IP in an `inet` column is
//! then found whichever format the client asked for.

use std::fmt::Write;

const INT2_OID: u32 = 21;
const INT4_OID: u32 = 23;
const INT8_OID: u32 = 20;
const NUMERIC_OID: u32 = 1700;

/// `numeric`'s sign word: positive, negative, NaN, +Infinity, -Infinity.
const NUMERIC_POS: u16 = 0x0000;
const NUMERIC_NEG: u16 = 0x4000;
const NUMERIC_NAN: u16 = 0xC000;
const NUMERIC_PINF: u16 = 0xD000;
const NUMERIC_NINF: u16 = 0xF000;

/// Largest display scale PostgreSQL gives a `numeric` (`NUMERIC_MAX_DISPLAY_SCALE`).
const MAX_DSCALE: usize = 16383;

/// Whether values of type `oid` in the binary format have a decimal text form here.
pub fn has_decimal_text(oid: u32) -> bool {
    matches!(oid, INT2_OID | INT4_OID | INT8_OID | NUMERIC_OID)
}

const INET_OID: u32 = 869;
const CIDR_OID: u32 = 650;

/// Deepest array nesting (arrays of arrays are one array in PostgreSQL; this bounds a
/// hostile element type chain).
const MAX_DEPTH: usize = 4;

/// Types whose binary values hold no text a detector could match, as in the text format
/// (`bool`, floats, dates and times, `uuid`, `bytea`, OID types, `money`, `macaddr`).
fn holds_no_text(oid: u32) -> bool {
    matches!(
        oid,
        16 | 17
            | 26
            | 700
            | 701
            | 790
            | 829
            | 774
            | 1082
            | 1083
            | 1114
            | 1184
            | 1186
            | 1266
            | 2950
            | 24
            | 2202
            | 2203
            | 2204
            | 2205
            | 2206
            | 3734
            | 3769
            | 4089
            | 4096
    )
}

/// The element type of the well-known array types (`text[]`, `int8[]`, `inet[]`...).
fn array_element(oid: u32) -> Option<u32> {
    Some(match oid {
        1009 => 25,
        1015 => 1043,
        1014 => 1042,
        1003 => 19,
        1002 => 18,
        199 => 114,
        3807 => 3802,
        143 => 142,
        1005 => INT2_OID,
        1007 => INT4_OID,
        1016 => INT8_OID,
        1231 => NUMERIC_OID,
        1041 => INET_OID,
        651 => CIDR_OID,
        _ => return None,
    })
}

/// How a binary value that is not text-like is shown to the detectors: each text of
/// [`binary_texts`].
pub enum Shown {
    /// Nothing a detector could match (a `bool`, a date, a `uuid`...).
    Nothing,
    /// These texts; the value is masked when a detector matches in any.
    Texts,
    /// The value cannot be read as its type says: it is masked whole (fail closed).
    Unreadable,
}

/// Calls `each` with every text the detectors should see in the binary value `value` of
/// type `oid` (not text-like), as [`Shown`] describes; `each` returns `true` to stop (a
/// match). `text_like` tells which element types are text.
///
/// ```
/// use hoop_postgres::binary_text::{Shown, binary_texts};
///
/// let mut seen = Vec::new();
/// let shown = binary_texts(20, &4111111111111111i64.to_be_bytes(), &|_| false, &mut |t| {
///     seen.push(t.to_owned());
///     false
/// });
/// assert!(matches!(shown, Shown::Texts));
/// assert_eq!(seen, ["4111111111111111"]);
/// ```
pub fn binary_texts(
    oid: u32,
    value: &[u8],
    text_like: &dyn Fn(u32) -> bool,
    each: &mut dyn FnMut(&str) -> bool,
) -> Shown {
    let mut stop = false;
    let ok = texts(
        oid,
        value,
        text_like,
        &mut |t| {
            stop = stop || each(t);
            stop
        },
        0,
    );
    match ok {
        Some(true) => Shown::Texts,
        Some(false) => Shown::Nothing,
        None => Shown::Unreadable,
    }
}

/// `Some(true)` when texts were shown, `Some(false)` when the type holds none, `None`
/// when the value is not a valid encoding.
fn texts(
    oid: u32,
    value: &[u8],
    text_like: &dyn Fn(u32) -> bool,
    each: &mut dyn FnMut(&str) -> bool,
    depth: usize,
) -> Option<bool> {
    if text_like(oid) {
        let body = if oid == 3802 { value.get(1..)? } else { value };
        each(std::str::from_utf8(body).ok()?);
        return Some(true);
    }
    if has_decimal_text(oid) {
        let mut small = SmallText::default();
        if decimal_text(oid, value, &mut small) {
            each(small.as_str());
        } else {
            let mut long = String::new();
            if !decimal_text(oid, value, &mut long) {
                return None;
            }
            each(&long);
        }
        return Some(true);
    }
    if matches!(oid, INET_OID | CIDR_OID) {
        let mut t = SmallText::default();
        inet_text(value, &mut t)?;
        each(t.as_str());
        return Some(true);
    }
    if holds_no_text(oid) {
        return Some(false);
    }
    if let Some(element) = array_element(oid) {
        if depth >= MAX_DEPTH {
            return None;
        }
        let mut any = false;
        for e in array_elements(value, element)?.into_iter().flatten() {
            any |= texts(element, e, text_like, each, depth + 1)?;
        }
        return Some(any);
    }
    // A type of unknown layout: its bytes as text. Strings inside a composite, an enum
    // label or an extension type's text appear whole between the binary framing.
    each(&String::from_utf8_lossy(value));
    // A record (anonymous or composite) also shows each field as its own type does (a
    // number's digits). A value that only looks like a record keeps the view above.
    if depth < MAX_DEPTH
        && let Some(fields) = record_fields(value)
    {
        let mut shown = Vec::new();
        let decoded = fields.iter().all(|(oid, v)| {
            v.is_none_or(|v| {
                texts(
                    *oid,
                    v,
                    text_like,
                    &mut |t| {
                        shown.push(t.to_owned());
                        false
                    },
                    depth + 1,
                )
                .is_some()
            })
        });
        if decoded {
            for t in &shown {
                if each(t) {
                    break;
                }
            }
        }
    }
    Some(true)
}

/// A field of a binary record: its type and its value (`None`: NULL).
type Field<'v> = (u32, Option<&'v [u8]>);

/// The fields of a binary record: a count, then for each field its type OID, its length
/// (-1 for NULL) and its bytes. `None` unless the bytes are exactly that.
fn record_fields(v: &[u8]) -> Option<Vec<Field<'_>>> {
    let int = |at: usize| i32_at(v, at);
    let n = usize::try_from(int(0)?).ok()?;
    // Each field takes at least 8 bytes.
    if n > v.len() / 8 {
        return None;
    }
    let mut at = 4;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let oid = u32::from_be_bytes(int(at)?.to_be_bytes());
        let len = int(at + 4)?;
        at += 8;
        if len == -1 {
            out.push((oid, None));
            continue;
        }
        let len = usize::try_from(len).ok()?;
        out.push((oid, Some(v.get(at..at + len)?)));
        at += len;
    }
    (at == v.len()).then_some(out)
}

/// The elements of a binary array whose element type must be `element`: `None` for a
/// malformed array or one of another element type.
fn array_elements(v: &[u8], element: u32) -> Option<Vec<Option<&[u8]>>> {
    let int = |at: usize| i32_at(v, at);
    let ndim = usize::try_from(int(0)?).ok()?;
    if ndim > 6 || u32::from_be_bytes(int(8)?.to_be_bytes()) != element {
        return None;
    }
    let mut count = 1usize;
    for d in 0..ndim {
        count = count.checked_mul(usize::try_from(int(12 + 8 * d)?).ok()?)?;
    }
    if ndim == 0 {
        count = 0;
    }
    let mut at = 12 + 8 * ndim;
    // Each element takes at least its 4-byte length: a count the bytes cannot hold is
    // refused before anything is allocated for it.
    if count > v.len().saturating_sub(at) / 4 {
        return None;
    }
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        let len = int(at)?;
        at += 4;
        if len == -1 {
            out.push(None);
            continue;
        }
        let len = usize::try_from(len).ok()?;
        out.push(Some(v.get(at..at + len)?));
        at += len;
    }
    (at == v.len()).then_some(out)
}

/// The text of a binary `inet`/`cidr`: family (2 for IPv4, 3 for IPv6), prefix bits,
/// is-cidr flag, address length, address bytes. Written as the address alone (what the
/// detectors look for).
fn inet_text(v: &[u8], out: &mut impl Write) -> Option<()> {
    match v {
        [2, _, _, 4, a, b, c, d] => write!(out, "{}", std::net::Ipv4Addr::new(*a, *b, *c, *d)).ok(),
        [3, _, _, 16, rest @ ..] => {
            let bytes: [u8; 16] = rest.try_into().ok()?;
            write!(out, "{}", std::net::Ipv6Addr::from(bytes)).ok()
        }
        _ => None,
    }
}

/// Writes to `out` the text form of the binary value `value` of type `oid` (`int2`,
/// `int4`, `int8`, `numeric`). `false` for another type, a value that is not a valid
/// encoding of it, or a writer that refused the text ([`SmallText`] when it is too
/// long); `out` then holds a partial text to discard.
///
/// ```
/// use hoop_postgres::binary_text::decimal_text;
///
/// let mut s = String::new();
/// assert!(decimal_text(20, &4111111111111111i64.to_be_bytes(), &mut s));
/// assert_eq!(s, "4111111111111111");
/// // numeric 123.45: 2 digits (base 10000) 123 and 4500, weight 0, scale 2.
/// let mut s = String::new();
/// let bin = [0, 2, 0, 0, 0, 0, 0, 2, 0, 123, 0x11, 0x94];
/// assert!(decimal_text(1700, &bin, &mut s));
/// assert_eq!(s, "123.45");
/// ```
pub fn decimal_text(oid: u32, value: &[u8], out: &mut impl Write) -> bool {
    match (oid, value) {
        (INT2_OID, [a, b]) => write!(out, "{}", i16::from_be_bytes([*a, *b])).is_ok(),
        (INT4_OID, &[a, b, c, d]) => write!(out, "{}", i32::from_be_bytes([a, b, c, d])).is_ok(),
        (INT8_OID, v) => match <[u8; 8]>::try_from(v) {
            Ok(b) => write!(out, "{}", i64::from_be_bytes(b)).is_ok(),
            Err(_) => false,
        },
        (NUMERIC_OID, v) => numeric_text(v, out).is_some(),
        _ => false,
    }
}

/// A text of up to 40 bytes on the stack: any integer, and the numerics that fit, without
/// an allocation. Writing more fails.
#[derive(Debug)]
pub struct SmallText {
    buf: [u8; 40],
    len: usize,
}

impl Default for SmallText {
    fn default() -> Self {
        SmallText {
            buf: [0; 40],
            len: 0,
        }
    }
}

impl SmallText {
    /// The text written so far.
    pub fn as_str(&self) -> &str {
        self.buf
            .get(..self.len)
            .and_then(|b| std::str::from_utf8(b).ok())
            .unwrap_or_default()
    }
}

impl Write for SmallText {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = self.len + s.len();
        let dst = self.buf.get_mut(self.len..end).ok_or(std::fmt::Error)?;
        dst.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// A big-endian i32 at `at`.
fn i32_at(v: &[u8], at: usize) -> Option<i32> {
    let b: [u8; 4] = v.get(at..at + 4)?.try_into().ok()?;
    Some(i32::from_be_bytes(b))
}

/// A big-endian i16 at `at`.
fn i16_at(v: &[u8], at: usize) -> Option<i16> {
    let b = v.get(at..at + 2)?;
    Some(i16::from_be_bytes([*b.first()?, *b.get(1)?]))
}

/// The text of a binary `numeric`: `ndigits`, `weight`, `sign`, `dscale`, then `ndigits`
/// base-10000 digits, the first one weighted 10000^`weight`.
fn numeric_text(v: &[u8], out: &mut impl Write) -> Option<()> {
    let ndigits = usize::try_from(i16_at(v, 0)?).ok()?;
    let weight = i16_at(v, 2)?;
    let sign = u16::from_be_bytes(i16_at(v, 4)?.to_be_bytes());
    let dscale = usize::try_from(i16_at(v, 6)?).ok()?;
    if v.len() != 8 + 2 * ndigits || dscale > MAX_DSCALE {
        return None;
    }
    let mut digits = Vec::with_capacity(ndigits);
    for k in 0..ndigits {
        let d = i16_at(v, 8 + 2 * k)?;
        if !(0..10000).contains(&d) {
            return None;
        }
        digits.push(d);
    }
    match sign {
        NUMERIC_NAN => out.write_str("NaN").ok()?,
        NUMERIC_PINF => out.write_str("Infinity").ok()?,
        NUMERIC_NINF => out.write_str("-Infinity").ok()?,
        NUMERIC_POS | NUMERIC_NEG => {
            if sign == NUMERIC_NEG {
                out.write_char('-').ok()?;
            }
            // Digit `k` stands for 10000^(weight - k); missing ones are zeros.
            let digit = |k: i32| -> i16 {
                usize::try_from(k)
                    .ok()
                    .and_then(|k| digits.get(k).copied())
                    .unwrap_or(0)
            };
            let weight = i32::from(weight);
            if weight < 0 {
                out.write_char('0').ok()?;
            } else {
                write!(out, "{}", digit(0)).ok()?;
                for k in 1..=weight {
                    write!(out, "{:04}", digit(k)).ok()?;
                }
            }
            if dscale > 0 {
                out.write_char('.').ok()?;
                let mut left = dscale;
                let mut k = weight + 1;
                while left > 0 {
                    // The group's four decimal digits, as many as the scale has left.
                    let d = digit(k);
                    for p in [1000, 100, 10, 1].iter().take(left.min(4)) {
                        out.write_char(char::from(b'0' + ((d / p) % 10) as u8))
                            .ok()?;
                    }
                    left = left.saturating_sub(4);
                    k += 1;
                }
            }
        }
        _ => return None,
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(oid: u32, v: &[u8]) -> Option<String> {
        let mut s = String::new();
        decimal_text(oid, v, &mut s).then_some(s)
    }

    /// A binary numeric from its parts.
    fn numeric(weight: i16, sign: u16, dscale: i16, digits: &[i16]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&i16::try_from(digits.len()).unwrap().to_be_bytes());
        v.extend_from_slice(&weight.to_be_bytes());
        v.extend_from_slice(&sign.to_be_bytes());
        v.extend_from_slice(&dscale.to_be_bytes());
        for d in digits {
            v.extend_from_slice(&d.to_be_bytes());
        }
        v
    }

    #[test]
    fn integers() {
        assert_eq!(text(21, &(-42i16).to_be_bytes()).as_deref(), Some("-42"));
        assert_eq!(
            text(23, &123456789i32.to_be_bytes()).as_deref(),
            Some("123456789")
        );
        assert_eq!(
            text(20, &i64::MIN.to_be_bytes()).as_deref(),
            Some("-9223372036854775808")
        );
        // Wrong lengths and other types: no text.
        assert_eq!(text(23, &[0, 1]), None);
        assert_eq!(text(20, &[0; 9]), None);
        assert_eq!(text(25, b"abc"), None);
        assert_eq!(text(701, &1.5f64.to_be_bytes()), None);
    }

    #[test]
    fn numerics_as_postgres_writes_them() {
        // 4111111111111111 = 4111 1111 1111 1111 (base 10000), weight 3.
        let card = numeric(3, NUMERIC_POS, 0, &[4111, 1111, 1111, 1111]);
        assert_eq!(text(1700, &card).as_deref(), Some("4111111111111111"));
        assert_eq!(
            text(1700, &numeric(0, NUMERIC_NEG, 2, &[123, 4500])).as_deref(),
            Some("-123.45")
        );
        // 0.0012 (weight -1: the first digit is 10000^-1), scale 4.
        assert_eq!(
            text(1700, &numeric(-1, NUMERIC_POS, 4, &[12])).as_deref(),
            Some("0.0012")
        );
        // Trailing zero groups are not sent: 10000 has one digit of weight 1.
        assert_eq!(
            text(1700, &numeric(1, NUMERIC_POS, 0, &[1])).as_deref(),
            Some("10000")
        );
        assert_eq!(
            text(1700, &numeric(0, NUMERIC_POS, 3, &[])).as_deref(),
            Some("0.000")
        );
        assert_eq!(
            text(1700, &numeric(0, NUMERIC_NAN, 0, &[])).as_deref(),
            Some("NaN")
        );
        assert_eq!(
            text(1700, &numeric(0, NUMERIC_NINF, 0, &[])).as_deref(),
            Some("-Infinity")
        );
    }

    #[test]
    fn small_text_holds_any_integer_and_refuses_more() {
        let mut t = SmallText::default();
        assert!(decimal_text(20, &i64::MIN.to_be_bytes(), &mut t));
        assert_eq!(t.as_str(), "-9223372036854775808");
        let mut t = SmallText::default();
        let long = numeric(12, NUMERIC_POS, 0, &[9999; 13]);
        assert!(!decimal_text(1700, &long, &mut t));
        assert_eq!(text(1700, &long).map(|s| s.len()), Some(52));
    }

    #[test]
    fn malformed_numerics_have_no_text() {
        let good = numeric(0, NUMERIC_POS, 0, &[7]);
        assert!(text(1700, &good).is_some());
        assert_eq!(text(1700, &good[..good.len() - 1]), None);
        assert_eq!(text(1700, &numeric(0, NUMERIC_POS, 0, &[10000])), None);
        assert_eq!(text(1700, &numeric(0, NUMERIC_POS, 0, &[-1])), None);
        assert_eq!(text(1700, &numeric(0, 0x1234, 0, &[7])), None);
        assert_eq!(text(1700, &numeric(0, NUMERIC_POS, -1, &[7])), None);
        let mut negative_count = good.clone();
        negative_count[0] = 0xFF;
        assert_eq!(text(1700, &negative_count), None);
        assert_eq!(text(1700, &[]), None);
    }
}
