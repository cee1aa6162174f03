//! `ParameterStatus`: a server setting reported to the client.

use super::{Cursor, put_cstr, tags};
use crate::CodecError;
use crate::codec::Frame;

/// A run-time parameter's name and value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParameterStatus<'a> {
    /// Name.
    pub name: &'a str,
    /// Value.
    pub value: &'a str,
}

impl<'a> ParameterStatus<'a> {
    /// Reads an `S` (backend) body.
    pub fn parse(body: &'a [u8]) -> Result<Self, CodecError> {
        let mut c = Cursor::new(body, "ParameterStatus");
        let name = c.cstr()?;
        let value = c.cstr()?;
        c.finish()?;
        Ok(ParameterStatus { name, value })
    }

    /// Builds an `S` (backend) message.
    pub fn encode(&self) -> Frame {
        let mut b = Vec::with_capacity(self.name.len() + self.value.len() + 2);
        put_cstr(&mut b, self.name);
        put_cstr(&mut b, self.value);
        Frame::new(tags::PARAMETER_STATUS, &b)
    }
}
