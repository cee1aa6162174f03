//! `CommandComplete`: a statement finished, with its tag (`SELECT 3`, `INSERT 0 1`).

use super::{Cursor, put_cstr, tags};
use crate::CodecError;
use crate::codec::Frame;

/// A completed command's tag.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CommandComplete<'a> {
    /// The tag text.
    pub tag: &'a str,
}

impl<'a> CommandComplete<'a> {
    /// Reads a `C` (backend) body.
    pub fn parse(body: &'a [u8]) -> Result<Self, CodecError> {
        let mut c = Cursor::new(body, "CommandComplete");
        let tag = c.cstr()?;
        c.finish()?;
        Ok(CommandComplete { tag })
    }

    /// The row count at the end of the tag, where there is one.
    pub fn rows(&self) -> Option<u64> {
        let last = self.tag.rsplit(' ').next()?;
        if self.tag.contains(' ') {
            last.parse().ok()
        } else {
            None
        }
    }

    /// Builds a `C` message.
    pub fn encode(tag: &str) -> Frame {
        let mut b = Vec::with_capacity(tag.len() + 1);
        put_cstr(&mut b, tag);
        Frame::new(tags::COMMAND_COMPLETE, &b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows() {
        let c = |t| CommandComplete { tag: t };
        assert_eq!(c("SELECT 3").rows(), Some(3));
        assert_eq!(c("INSERT 0 7").rows(), Some(7));
        assert_eq!(c("CREATE TABLE").rows(), None);
        assert_eq!(c("BEGIN").rows(), None);
    }
}
