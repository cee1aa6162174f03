//! Validation of candidate values: checksums and structural rules.
//!
//! All functions take ASCII bytes and never panic.

use base64::Engine as _;

/// Luhn checksum over the digits of `s` (non-digits are skipped). `false` when fewer than
/// two digits.
pub fn luhn_valid(s: &[u8]) -> bool {
    let mut sum = 0u32;
    let mut n = 0usize;
    for &b in s.iter().rev() {
        if !b.is_ascii_digit() {
            continue;
        }
        let mut d = u32::from(b - b'0');
        if n % 2 == 1 {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
        n += 1;
    }
    n >= 2 && sum % 10 == 0
}

/// Whether a card number (digits only or with separators) starts with a known issuer prefix
/// and has a plausible length for it: Visa 4, Mastercard 51-55 / 2221-2720, Amex 34/37,
/// Diners 30/36/38, Discover/UnionPay 6, JCB 35.
pub fn card_iin_plausible(digits: &[u8]) -> bool {
    let mut it = digits.iter().copied().filter(u8::is_ascii_digit);
    let (Some(a), Some(b)) = (it.next(), it.next()) else {
        return false;
    };
    match a {
        // Diners 30/36/38, Amex 34/37, JCB 35.
        b'3' => matches!(b, b'0' | b'4'..=b'8'),
        b'2' | b'4'..=b'6' => true,
        _ => false,
    }
}

/// Length of a valid IBAN for a country, for the common countries.
pub fn iban_length(country: [u8; 2]) -> Option<usize> {
    let len = match &country {
        b"AD" | b"CZ" | b"ES" | b"MD" | b"PK" | b"RO" | b"SA" | b"SE" | b"SK" | b"TN" | b"VG" => 24,
        b"AE" | b"GI" | b"IL" => 23,
        b"AL" | b"AZ" | b"CY" | b"DO" | b"GT" | b"HU" | b"LB" | b"PL" => 28,
        b"AT" | b"BA" | b"EE" | b"KZ" | b"LT" | b"LU" | b"XK" => 20,
        b"JO" | b"KW" | b"MU" => 30,
        b"BE" => 16,
        b"BG" | b"BH" | b"CR" | b"DE" | b"GB" | b"GE" | b"IE" | b"ME" | b"RS" => 22,
        b"BR" | b"PS" | b"QA" | b"UA" => 29,
        b"CH" | b"HR" | b"LI" | b"LV" => 21,
        b"DK" | b"FI" | b"FO" | b"GL" | b"NL" => 18,
        b"FR" | b"GR" | b"IT" | b"MC" | b"SM" | b"MR" => 27,
        b"IS" | b"TR" => 26,
        b"MT" => 31,
        b"MK" | b"SI" => 19,
        b"NO" => 15,
        b"PT" => 25,
        _ => return None,
    };
    Some(len)
}

/// ISO 13616 mod-97 check over an IBAN's alphanumeric characters (separators skipped).
/// The first four characters are moved to the end, letters count as 10..35, and the number
/// must be 1 modulo 97.
pub fn iban_mod97_valid(s: &[u8]) -> bool {
    let chars = || s.iter().copied().filter(u8::is_ascii_alphanumeric);
    let n = chars().count();
    if !(15..=34).contains(&n) {
        return false;
    }
    let mut rem = 0u32;
    for b in chars().skip(4).chain(chars().take(4)) {
        rem = match b {
            b'0'..=b'9' => (rem * 10 + u32::from(b - b'0')) % 97,
            b'A'..=b'Z' => (rem * 100 + u32::from(b - b'A') + 10) % 97,
            b'a'..=b'z' => (rem * 100 + u32::from(b - b'a') + 10) % 97,
            _ => return false,
        };
    }
    rem == 1
}

/// US SSN structural validity for area (3 digits), group (2) and serial (4): area not 000,
/// 666 or 900-999; group not 00; serial not 0000.
pub fn ssn_valid(area: &[u8], group: &[u8], serial: &[u8]) -> bool {
    fn num(d: &[u8]) -> Option<u32> {
        d.iter().try_fold(0u32, |acc, &b| {
            b.is_ascii_digit().then(|| acc * 10 + u32::from(b - b'0'))
        })
    }
    if area.len() != 3 || group.len() != 2 || serial.len() != 4 {
        return false;
    }
    match (num(area), num(group), num(serial)) {
        (Some(a), Some(g), Some(s)) => a != 0 && a != 666 && a < 900 && g != 0 && s != 0,
        _ => false,
    }
}

/// Whether a base64url segment decodes to a JSON object with an `"alg"` member (a JWT or
/// JWS header).
pub fn jwt_header_valid(segment: &[u8]) -> bool {
    if segment.len() > 4096 {
        return false;
    }
    let Ok(raw) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(segment) else {
        return false;
    };
    match serde_json::from_slice::<serde_json::Value>(&raw) {
        Ok(serde_json::Value::Object(map)) => map.get("alg").is_some_and(|v| v.is_string()),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn luhn() {
        assert!(luhn_valid(b"4111111111111111"));
        assert!(luhn_valid(b"4111 1111 1111 1111"));
        assert!(luhn_valid(b"378282246310005"));
        assert!(!luhn_valid(b"4111111111111112"));
        assert!(!luhn_valid(b"0"));
    }

    #[test]
    fn iin() {
        assert!(card_iin_plausible(b"4111111111111111"));
        assert!(card_iin_plausible(b"378282246310005"));
        assert!(!card_iin_plausible(b"9111111111111111"));
        assert!(!card_iin_plausible(b"3111111111111111"));
    }

    #[test]
    fn iban() {
        assert!(iban_mod97_valid(b"DE89370400440532013000"));
        assert!(iban_mod97_valid(b"GB82 WEST 1234 5698 7654 32"));
        assert!(!iban_mod97_valid(b"DE88370400440532013000"));
        assert_eq!(iban_length(*b"DE"), Some(22));
        assert_eq!(iban_length(*b"ZZ"), None);
    }

    #[test]
    fn ssn() {
        assert!(ssn_valid(b"123", b"45", b"6789"));
        assert!(!ssn_valid(b"000", b"45", b"6789"));
        assert!(!ssn_valid(b"666", b"45", b"6789"));
        assert!(!ssn_valid(b"901", b"45", b"6789"));
        assert!(!ssn_valid(b"123", b"00", b"6789"));
        assert!(!ssn_valid(b"123", b"45", b"0000"));
    }

    #[test]
    fn jwt_header() {
        // {"alg":"HS256","typ":"JWT"}
        assert!(jwt_header_valid(b"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9"));
        // {"typ":"JWT"}
        assert!(!jwt_header_valid(b"eyJ0eXAiOiJKV1QifQ"));
        assert!(!jwt_header_valid(b"eyJ!!"));
    }
}
