//! `Describe` and `Close`: both name a statement or a portal.

use super::Cursor;
use crate::CodecError;

/// What a Describe or Close is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target<'a> {
    /// A prepared statement.
    Statement(&'a str),
    /// A portal.
    Portal(&'a str),
}

fn target<'a>(body: &'a [u8], what: &'static str) -> Result<Target<'a>, CodecError> {
    let mut c = Cursor::new(body, what);
    let kind = c.u8()?;
    let name = c.cstr()?;
    c.finish()?;
    match kind {
        b'S' => Ok(Target::Statement(name)),
        b'P' => Ok(Target::Portal(name)),
        other => Err(CodecError::Invalid {
            what,
            detail: format!("kind byte {other:#04x}"),
        }),
    }
}

/// Asks for the description of a statement or portal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Describe<'a> {
    /// The statement or portal.
    pub target: Target<'a>,
}

impl<'a> Describe<'a> {
    /// Reads a `D` (frontend) body.
    pub fn parse(body: &'a [u8]) -> Result<Self, CodecError> {
        Ok(Describe {
            target: target(body, "Describe")?,
        })
    }
}

/// Closes a statement or portal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Close<'a> {
    /// The statement or portal.
    pub target: Target<'a>,
}

impl<'a> Close<'a> {
    /// Reads a `C` (frontend) body.
    pub fn parse(body: &'a [u8]) -> Result<Self, CodecError> {
        Ok(Close {
            target: target(body, "Close")?,
        })
    }
}
