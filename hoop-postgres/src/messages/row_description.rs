//! `RowDescription`: the columns of the rows that follow.

use super::Cursor;
use crate::CodecError;

/// One column of a result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FieldDescription<'a> {
    /// Column name (or alias).
    pub name: &'a str,
    /// OID of the table, or 0.
    pub table_oid: u32,
    /// Attribute number in that table, or 0.
    pub column: i16,
    /// Type OID.
    pub type_oid: u32,
    /// Type size (negative: variable).
    pub type_size: i16,
    /// Type modifier.
    pub type_modifier: i32,
    /// 0 text, 1 binary (always 0 in a Describe answer before Bind).
    pub format: i16,
}

/// The columns of a result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RowDescription<'a> {
    /// Columns in order.
    pub fields: Vec<FieldDescription<'a>>,
}

impl<'a> RowDescription<'a> {
    /// Reads a `T` body.
    pub fn parse(body: &'a [u8]) -> Result<Self, CodecError> {
        let mut c = Cursor::new(body, "RowDescription");
        let n = c.count16()?;
        // Each field takes at least 19 bytes: bound the allocation by what is present.
        let mut fields = Vec::with_capacity(n.min(c.remaining() / 19));
        for _ in 0..n {
            fields.push(FieldDescription {
                name: c.cstr()?,
                table_oid: c.i32()? as u32,
                column: c.i16()?,
                type_oid: c.i32()? as u32,
                type_size: c.i16()?,
                type_modifier: c.i32()?,
                format: c.i16()?,
            });
        }
        c.finish()?;
        Ok(RowDescription { fields })
    }
}
