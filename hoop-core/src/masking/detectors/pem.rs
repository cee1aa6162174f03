//! PEM private keys, anchored at `-` (`-----BEGIN … PRIVATE KEY-----` through `END`).

use super::Hit;
use crate::masking::detector::Detector;
use crate::masking::prefilter::{at, run_end, starts_with_at};

/// Body characters: base64, whitespace and the header characters of encrypted keys
/// (`Proc-Type: 4,ENCRYPTED`, `DEK-Info: AES-128-CBC,…`).
fn is_body(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(b, b'+' | b'/' | b'=' | b':' | b',' | b'-' | b' ')
        || b.is_ascii_whitespace()
}

/// A private key block starting at `d`. A block without its END line (a truncated key) is
/// masked up to the end of its body: fail closed.
pub(crate) fn detect(bytes: &[u8], d: usize, min_start: usize) -> Option<Hit> {
    const BEGIN: &[u8] = b"-----BEGIN ";
    if d < min_start || !starts_with_at(bytes, d, BEGIN) {
        return None;
    }
    let label_start = d + BEGIN.len();
    let label_end = run_end(bytes, label_start, 64, |b| {
        b.is_ascii_uppercase() || b == b' '
    });
    let label = bytes.get(label_start..label_end)?;
    if !label.ends_with(b"PRIVATE KEY") || !starts_with_at(bytes, label_end, b"-----") {
        return None;
    }
    let mut pos = label_end + 5;
    // Body up to the next "-----".
    loop {
        let e = run_end(bytes, pos, usize::MAX, |b| is_body(b) && b != b'-');
        pos = e;
        if at(bytes, pos) == b'-' && !starts_with_at(bytes, pos, b"-----") {
            pos += 1;
            continue;
        }
        break;
    }
    let body_end = pos;
    if starts_with_at(bytes, pos, b"-----END ") {
        let mut end_label = bytes.get(pos + 9..)?.iter();
        let l = end_label
            .by_ref()
            .take(64)
            .take_while(|&&b| b.is_ascii_uppercase() || b == b' ')
            .count();
        let after = pos + 9 + l;
        if bytes.get(pos + 9..after) == Some(label) && starts_with_at(bytes, after, b"-----") {
            return Some(Hit::new(d, after + 5, Detector::PrivateKey));
        }
    }
    // Unterminated: mask the BEGIN line and the body, without trailing whitespace.
    let end = bytes
        .get(..body_end)?
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(body_end, |p| p + 1);
    Some(Hit::new(d, end.max(label_end + 5), Detector::PrivateKey))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_blocks() {
        let key = "-----BEGIN RSA PRIVATE KEY-----\nMIIBOgIBAAJBAKj34GkxFhD90vcNLYLInFEX6Ppy1tPf9Cnzj4p4WGeKLs1Pt8Qu\nKUpRKfFLfRYC9AIKjbJTWit+CqvjWYzvQwECAwEAAQ==\n-----END RSA PRIVATE KEY-----";
        let text = format!("x\n{key}\ny");
        let h = detect(text.as_bytes(), 2, 0).unwrap();
        assert_eq!(text.get(h.start..h.end), Some(key));
        let cert = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----";
        assert_eq!(detect(cert.as_bytes(), 0, 0), None);
        let cut = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADAN\n";
        let h = detect(cut.as_bytes(), 0, 0).unwrap();
        assert_eq!(h.end, cut.len() - 1);
    }
}
