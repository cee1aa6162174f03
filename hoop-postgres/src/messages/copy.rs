//! COPY sub-protocol messages.

use super::Cursor;
use crate::CodecError;

/// `CopyInResponse` / `CopyOutResponse` / `CopyBothResponse`: the overall format and the
/// per-column formats.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CopyResponse {
    /// 0 text (rows as text lines), 1 binary.
    pub format: u8,
    /// Per-column format codes.
    pub column_formats: Vec<i16>,
}

impl CopyResponse {
    /// Reads a `G`, `H` or `W` body.
    pub fn parse(body: &[u8]) -> Result<Self, CodecError> {
        let mut c = Cursor::new(body, "CopyResponse");
        let format = c.u8()?;
        let n = c.count16()?;
        let mut column_formats = Vec::with_capacity(n.min(c.remaining() / 2));
        for _ in 0..n {
            column_formats.push(c.i16()?);
        }
        c.finish()?;
        Ok(CopyResponse {
            format,
            column_formats,
        })
    }
}

/// `CopyFail`: the client aborts a COPY FROM STDIN.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CopyFail<'a> {
    /// Reason.
    pub message: &'a str,
}

impl<'a> CopyFail<'a> {
    /// Reads an `f` body.
    pub fn parse(body: &'a [u8]) -> Result<Self, CodecError> {
        let mut c = Cursor::new(body, "CopyFail");
        let message = c.cstr()?;
        c.finish()?;
        Ok(CopyFail { message })
    }
}
