//! Request-path normalisation: the path the policy decides on is the path forwarded.
//!
//! Rules (fail closed: anything ambiguous is refused, never guessed):
//!
//! - the path must start with `/` (origin form); `*` and empty paths are refused;
//! - `;` path parameters are stripped from every segment (`/api;x=y/` → `/api/`);
//! - percent-escapes of unreserved characters (`A-Z a-z 0-9 - . _ ~`) are decoded, other
//!   escapes are kept (with upper-case hex); invalid escapes are refused;
//! - encoded slashes and backslashes (`%2f`, `%5c`) and encoded NUL (`%00`) are refused:
//!   targets disagree on what they mean;
//! - a raw backslash is refused for the same reason;
//! - empty segments (`//`) and `.` segments are removed, `..` removes the segment before
//!   it and never goes above the root;
//! - a trailing slash is kept.
//!
//! ```
//! use hoop_http::normalize_path;
//! assert_eq!(normalize_path("/api/../admin").unwrap(), "/admin");
//! assert_eq!(normalize_path("/%2e%2e/admin").unwrap(), "/admin");
//! assert_eq!(normalize_path("//admin").unwrap(), "/admin");
//! assert_eq!(normalize_path("/api;x=y/../admin").unwrap(), "/admin");
//! assert!(normalize_path("/%2fadmin").is_err());
//! ```

use std::borrow::Cow;

/// Why a path was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PathError {
    /// Not an origin-form path (`*`, empty, or not starting with `/`).
    #[error("the request target is not an absolute path")]
    NotAbsolute,
    /// An encoded `/` or `\` inside a segment.
    #[error("encoded slashes are not allowed in the path")]
    EncodedSlash,
    /// An encoded NUL byte.
    #[error("encoded NUL in the path")]
    EncodedNul,
    /// A raw backslash.
    #[error("backslashes are not allowed in the path")]
    Backslash,
    /// A `%` not followed by two hex digits.
    #[error("invalid percent-encoding in the path")]
    BadEscape,
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn upper_hex(nibble: u8) -> char {
    char::from_digit(u32::from(nibble), 16)
        .unwrap_or('0')
        .to_ascii_uppercase()
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Decodes the escapes of unreserved characters in one segment; refuses dangerous ones.
fn decode_segment(seg: &str) -> Result<Cow<'_, str>, PathError> {
    if !seg.contains('%') {
        return Ok(Cow::Borrowed(seg));
    }
    let bytes = seg.as_bytes();
    let mut out = String::with_capacity(seg.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b != b'%' {
            out.push(char::from(b));
            i += 1;
            continue;
        }
        let (Some(h), Some(l)) = (
            bytes.get(i + 1).copied().and_then(hex),
            bytes.get(i + 2).copied().and_then(hex),
        ) else {
            return Err(PathError::BadEscape);
        };
        let v = h * 16 + l;
        match v {
            b'/' | b'\\' => return Err(PathError::EncodedSlash),
            0 => return Err(PathError::EncodedNul),
            v if is_unreserved(v) => out.push(char::from(v)),
            v => {
                out.push('%');
                out.push(upper_hex(v >> 4));
                out.push(upper_hex(v & 15));
            }
        }
        i += 3;
    }
    Ok(Cow::Owned(out))
}

/// Normalises an origin-form request path (without its query). Returns the path borrowed
/// when it was already normal (no allocation on the common path).
pub fn normalize_path(path: &str) -> Result<Cow<'_, str>, PathError> {
    if !path.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    if path.contains('\\') {
        return Err(PathError::Backslash);
    }
    if is_normal(path) {
        return Ok(Cow::Borrowed(path));
    }
    let mut segments: Vec<Cow<'_, str>> = Vec::new();
    let mut trailing = false;
    for raw in path.split('/').skip(1) {
        let seg = raw.split(';').next().unwrap_or("");
        let seg = decode_segment(seg)?;
        trailing = false;
        match seg.as_ref() {
            "" | "." => trailing = true,
            ".." => {
                segments.pop();
                trailing = true;
            }
            _ => segments.push(seg),
        }
    }
    let mut out = String::with_capacity(path.len());
    for s in &segments {
        out.push('/');
        out.push_str(s);
    }
    if out.is_empty() || trailing {
        out.push('/');
    }
    Ok(Cow::Owned(out))
}

/// True when the path has nothing to normalise: no `%`, `;`, `//`, `.` or `..` segment.
fn is_normal(path: &str) -> bool {
    let b = path.as_bytes();
    if b.iter().any(|&c| c == b'%' || c == b';') {
        return false;
    }
    let last = path.split('/').count().saturating_sub(2);
    path.split('/')
        .skip(1)
        .enumerate()
        .all(|(i, s)| s != "." && s != ".." && (!s.is_empty() || i == last))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(p: &str) -> Result<String, PathError> {
        normalize_path(p).map(|c| c.into_owned())
    }

    #[test]
    fn bypass_attempts_resolve_to_admin() {
        for p in [
            "/api/../admin",
            "/%2e%2e/admin",
            "/%2E%2E/admin",
            "//admin",
            "/./admin",
            "/api;x=y/../admin",
            "/api/..;/admin",
            "/../../admin",
            "/a/b/%2e%2e/%2e%2e/admin",
            "/%61dmin",
        ] {
            assert_eq!(n(p).unwrap(), "/admin", "{p}");
        }
    }

    #[test]
    fn refusals() {
        assert_eq!(n("/%2fadmin"), Err(PathError::EncodedSlash));
        assert_eq!(n("/api%2F..%2Fadmin"), Err(PathError::EncodedSlash));
        assert_eq!(n("/a%5cb"), Err(PathError::EncodedSlash));
        assert_eq!(n("/a\\b"), Err(PathError::Backslash));
        assert_eq!(n("/a%00"), Err(PathError::EncodedNul));
        assert_eq!(n("/a%zz"), Err(PathError::BadEscape));
        assert_eq!(n("/a%2"), Err(PathError::BadEscape));
        assert_eq!(n("*"), Err(PathError::NotAbsolute));
        assert_eq!(n(""), Err(PathError::NotAbsolute));
    }

    #[test]
    fn normal_paths_are_borrowed() {
        for p in ["/", "/api/v1/pods", "/api/", "/a-b_c~d.e"] {
            assert!(
                matches!(normalize_path(p).unwrap(), Cow::Borrowed(_)),
                "{p}"
            );
            assert_eq!(n(p).unwrap(), p);
        }
    }

    #[test]
    fn keeps_trailing_slash_and_other_escapes() {
        assert_eq!(n("/api//").unwrap(), "/api/");
        assert_eq!(n("/api/.").unwrap(), "/api/");
        assert_eq!(n("/..").unwrap(), "/");
        assert_eq!(n("/a%20b").unwrap(), "/a%20b");
        assert_eq!(n("/a%3fb").unwrap(), "/a%3Fb");
        assert_eq!(n("/a;x").unwrap(), "/a");
    }
}
