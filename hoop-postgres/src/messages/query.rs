//! `Query` (simple query protocol).

use super::{Cursor, put_cstr, tags};
use crate::CodecError;
use crate::codec::Frame;

/// A simple query: one string that may hold several statements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Query<'a> {
    /// The SQL text.
    pub sql: &'a str,
}

impl<'a> Query<'a> {
    /// Reads a `Q` body.
    pub fn parse(body: &'a [u8]) -> Result<Self, CodecError> {
        let mut c = Cursor::new(body, "Query");
        let sql = c.cstr()?;
        c.finish()?;
        Ok(Query { sql })
    }

    /// Builds a `Q` message.
    pub fn encode(sql: &str) -> Frame {
        let mut b = Vec::with_capacity(sql.len() + 1);
        put_cstr(&mut b, sql);
        Frame::new(tags::QUERY, &b)
    }
}
