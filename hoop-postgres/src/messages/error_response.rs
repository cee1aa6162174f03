//! `ErrorResponse` and `NoticeResponse`: typed fields (`S` severity, `C` SQLSTATE,
//! `M` message, `D` detail, `H` hint, ...).

use super::{Cursor, tags};
use crate::CodecError;
use crate::codec::Frame;

/// Severity of an error or notice.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    /// The statement failed; the session goes on.
    Error,
    /// The session ends.
    Fatal,
    /// A notice.
    Notice,
    /// A warning notice.
    Warning,
}

impl Severity {
    fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "ERROR",
            Severity::Fatal => "FATAL",
            Severity::Notice => "NOTICE",
            Severity::Warning => "WARNING",
        }
    }
}

/// The fields of a received ErrorResponse or NoticeResponse, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ErrorFields<'a> {
    /// (field code, value) pairs.
    pub fields: Vec<(u8, &'a str)>,
}

impl<'a> ErrorFields<'a> {
    /// Reads an `E` or `N` body.
    pub fn parse(body: &'a [u8]) -> Result<Self, CodecError> {
        let mut c = Cursor::new(body, "ErrorResponse");
        let mut fields = Vec::with_capacity(8);
        loop {
            let code = c.u8()?;
            if code == 0 {
                break;
            }
            fields.push((code, c.cstr()?));
        }
        c.finish()?;
        Ok(ErrorFields { fields })
    }

    /// The value of field `code`.
    pub fn get(&self, code: u8) -> Option<&'a str> {
        self.fields
            .iter()
            .find(|(c, _)| *c == code)
            .map(|(_, v)| *v)
    }

    /// SQLSTATE.
    pub fn code(&self) -> Option<&'a str> {
        self.get(b'C')
    }

    /// Primary message.
    pub fn message(&self) -> Option<&'a str> {
        self.get(b'M')
    }

    /// Builds a message with tag `tag` (`E` or `N`) from `(code, value)` pairs.
    pub fn encode<'v>(tag: u8, fields: impl IntoIterator<Item = (u8, &'v str)>) -> Frame {
        let mut b = Vec::with_capacity(128);
        for (code, v) in fields {
            b.push(code);
            // A NUL inside a value would end it early: drop such bytes.
            b.extend(v.bytes().filter(|&x| x != 0));
            b.push(0);
        }
        b.push(0);
        Frame::new(tag, &b)
    }
}

/// An error or notice the gateway sends itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ErrorResponse {
    /// Severity.
    pub severity: Severity,
    /// SQLSTATE (e.g. `42501` insufficient privilege, `08P01` protocol violation).
    pub code: String,
    /// Primary message.
    pub message: String,
    /// Detail.
    pub detail: Option<String>,
    /// Hint.
    pub hint: Option<String>,
}

impl ErrorResponse {
    /// An error with a SQLSTATE and message.
    pub fn new(severity: Severity, code: &str, message: impl Into<String>) -> Self {
        ErrorResponse {
            severity,
            code: code.to_owned(),
            message: message.into(),
            detail: None,
            hint: None,
        }
    }

    /// Adds a detail.
    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// Adds a hint.
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Encodes as `E` (errors) or `N` (notices, warnings).
    pub fn encode(&self) -> Frame {
        let tag = match self.severity {
            Severity::Error | Severity::Fatal => tags::ERROR_RESPONSE,
            Severity::Notice | Severity::Warning => tags::NOTICE_RESPONSE,
        };
        let sev = self.severity.as_str();
        let mut fields = vec![
            (b'S', sev),
            (b'V', sev),
            (b'C', self.code.as_str()),
            (b'M', self.message.as_str()),
        ];
        if let Some(d) = &self.detail {
            fields.push((b'D', d.as_str()));
        }
        if let Some(h) = &self.hint {
            fields.push((b'H', h.as_str()));
        }
        ErrorFields::encode(tag, fields)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let f = ErrorResponse::new(Severity::Error, "42501", "denied: no DROP")
            .with_detail("rule x")
            .encode();
        assert_eq!(f.tag(), b'E');
        let p = ErrorFields::parse(f.body()).unwrap();
        assert_eq!(p.code(), Some("42501"));
        assert_eq!(p.message(), Some("denied: no DROP"));
        assert_eq!(p.get(b'D'), Some("rule x"));
        let n = ErrorResponse::new(Severity::Notice, "00000", "held").encode();
        assert_eq!(n.tag(), b'N');
    }
}
