//! `Bind` (extended query protocol).

use super::Cursor;
use crate::CodecError;

/// Binds parameters to a prepared statement, creating a portal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bind<'a> {
    /// Portal name (`""` is the unnamed portal).
    pub portal: &'a str,
    /// Statement name.
    pub statement: &'a str,
    /// Number of parameter values.
    pub param_count: usize,
    /// Result column format codes: empty = all text, one = for all columns, else per column.
    pub result_formats: Vec<i16>,
}

impl<'a> Bind<'a> {
    /// Reads a `B` body. Parameter values are validated but not kept.
    pub fn parse(body: &'a [u8]) -> Result<Self, CodecError> {
        let mut c = Cursor::new(body, "Bind");
        let portal = c.cstr()?;
        let statement = c.cstr()?;
        let nf = c.count16()?;
        for _ in 0..nf {
            c.i16()?;
        }
        let param_count = c.count16()?;
        for _ in 0..param_count {
            c.value()?;
        }
        let nr = c.count16()?;
        let mut result_formats = Vec::with_capacity(nr.min(c.remaining() / 2));
        for _ in 0..nr {
            result_formats.push(c.i16()?);
        }
        c.finish()?;
        Ok(Bind {
            portal,
            statement,
            param_count,
            result_formats,
        })
    }

    /// The format code of result column `i` (0 text, 1 binary).
    pub fn result_format(&self, i: usize) -> i16 {
        match self.result_formats.as_slice() {
            [] => 0,
            [one] => *one,
            many => many.get(i).copied().unwrap_or(0),
        }
    }
}
