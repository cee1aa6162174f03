//! `Parse` (extended query protocol).

use super::Cursor;
use crate::CodecError;

/// Prepares a statement under a name (`""` is the unnamed statement).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Parse<'a> {
    /// Statement name.
    pub name: &'a str,
    /// The SQL text (one statement).
    pub query: &'a str,
    /// Declared parameter type OIDs (0 = unspecified).
    pub param_types: Vec<u32>,
}

impl<'a> Parse<'a> {
    /// Reads a `P` body.
    #[allow(clippy::self_named_constructors)] // `parse` is every message's reader.
    pub fn parse(body: &'a [u8]) -> Result<Self, CodecError> {
        let mut c = Cursor::new(body, "Parse");
        let name = c.cstr()?;
        let query = c.cstr()?;
        let n = c.count16()?;
        let mut param_types = Vec::with_capacity(n.min(c.remaining() / 4));
        for _ in 0..n {
            param_types.push(c.i32()? as u32);
        }
        c.finish()?;
        Ok(Parse {
            name,
            query,
            param_types,
        })
    }
}
