//! `PasswordMessage` and the SASL messages that share its tag.

use super::{Cursor, put_cstr, tags};
use crate::CodecError;
use crate::codec::Frame;

/// A cleartext (or md5) password.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PasswordMessage<'a> {
    /// The password; never log it.
    pub password: &'a str,
}

impl<'a> PasswordMessage<'a> {
    /// Reads a `p` body as a password.
    pub fn parse(body: &'a [u8]) -> Result<Self, CodecError> {
        let mut c = Cursor::new(body, "PasswordMessage");
        let password = c.cstr()?;
        c.finish()?;
        Ok(PasswordMessage { password })
    }

    /// Builds a `p` message with a password.
    pub fn encode(password: &str) -> Frame {
        let mut b = Vec::with_capacity(password.len() + 1);
        put_cstr(&mut b, password);
        Frame::new(tags::PASSWORD, &b)
    }
}

impl std::fmt::Display for PasswordMessage<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PasswordMessage(<redacted>)")
    }
}

/// The first SASL message: the chosen mechanism and its first data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SaslInitialResponse<'a> {
    /// Mechanism name (`SCRAM-SHA-256`, `SCRAM-SHA-256-PLUS`).
    pub mechanism: &'a str,
    /// Initial data (`None` when the length is -1).
    pub data: Option<&'a [u8]>,
}

impl<'a> SaslInitialResponse<'a> {
    /// Reads a `p` body as a SASLInitialResponse.
    pub fn parse(body: &'a [u8]) -> Result<Self, CodecError> {
        let mut c = Cursor::new(body, "SASLInitialResponse");
        let mechanism = c.cstr()?;
        let data = c.value()?;
        c.finish()?;
        Ok(SaslInitialResponse { mechanism, data })
    }

    /// Builds a SASLInitialResponse.
    pub fn encode(mechanism: &str, data: &[u8]) -> Frame {
        let mut b = Vec::with_capacity(mechanism.len() + 5 + data.len());
        put_cstr(&mut b, mechanism);
        b.extend_from_slice(&(data.len() as i32).to_be_bytes());
        b.extend_from_slice(data);
        Frame::new(tags::PASSWORD, &b)
    }

    /// Builds a SASLResponse (the body is the raw data).
    pub fn encode_response(data: &[u8]) -> Frame {
        Frame::new(tags::PASSWORD, data)
    }
}
