//! `Execute` (extended query protocol).

use super::Cursor;
use crate::CodecError;

/// Runs a portal, returning at most `max_rows` rows (0 = all).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Execute<'a> {
    /// Portal name.
    pub portal: &'a str,
    /// Row limit (0 = no limit); a limited portal may be suspended.
    pub max_rows: i32,
}

impl<'a> Execute<'a> {
    /// Reads an `E` (frontend) body.
    pub fn parse(body: &'a [u8]) -> Result<Self, CodecError> {
        let mut c = Cursor::new(body, "Execute");
        let portal = c.cstr()?;
        let max_rows = c.i32()?;
        c.finish()?;
        Ok(Execute { portal, max_rows })
    }
}
