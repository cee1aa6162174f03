//! A bounds-checked reader over a message body: every read returns an error instead of
//! panicking when the message is shorter than it claims.

use crate::CodecError;

/// Reads big-endian integers and C strings from a message body.
#[derive(Clone, Debug)]
pub struct Cursor<'a> {
    buf: &'a [u8],
    what: &'static str,
}

impl<'a> Cursor<'a> {
    /// A cursor over `buf`; `what` names the message in errors.
    pub fn new(buf: &'a [u8], what: &'static str) -> Self {
        Cursor { buf, what }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], CodecError> {
        if self.buf.len() < n {
            return Err(CodecError::Truncated(self.what));
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    /// One byte.
    pub fn u8(&mut self) -> Result<u8, CodecError> {
        match self.take(1)? {
            [b] => Ok(*b),
            _ => Err(CodecError::Truncated(self.what)),
        }
    }

    /// A big-endian i16.
    pub fn i16(&mut self) -> Result<i16, CodecError> {
        match self.take(2)? {
            [a, b] => Ok(i16::from_be_bytes([*a, *b])),
            _ => Err(CodecError::Truncated(self.what)),
        }
    }

    /// A big-endian i32.
    pub fn i32(&mut self) -> Result<i32, CodecError> {
        match self.take(4)? {
            [a, b, c, d] => Ok(i32::from_be_bytes([*a, *b, *c, *d])),
            _ => Err(CodecError::Truncated(self.what)),
        }
    }

    /// A count (i16) that must not be negative.
    pub fn count16(&mut self) -> Result<usize, CodecError> {
        let n = self.i16()?;
        usize::try_from(n).map_err(|_| CodecError::Invalid {
            what: self.what,
            detail: format!("negative count {n}"),
        })
    }

    /// `n` raw bytes.
    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], CodecError> {
        self.take(n)
    }

    /// A length-prefixed (i32) value; -1 is NULL (`None`).
    pub fn value(&mut self) -> Result<Option<&'a [u8]>, CodecError> {
        let len = self.i32()?;
        if len == -1 {
            return Ok(None);
        }
        let len = usize::try_from(len).map_err(|_| CodecError::Invalid {
            what: self.what,
            detail: format!("negative value length {len}"),
        })?;
        self.take(len).map(Some)
    }

    /// A NUL-terminated UTF-8 string (without its NUL).
    pub fn cstr(&mut self) -> Result<&'a str, CodecError> {
        let end = memchr::memchr(0, self.buf).ok_or(CodecError::BadString(self.what))?;
        let s = self.take(end)?;
        self.take(1)?;
        std::str::from_utf8(s).map_err(|_| CodecError::BadString(self.what))
    }

    /// Everything left.
    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.buf)
    }

    /// Bytes left.
    pub fn remaining(&self) -> usize {
        self.buf.len()
    }

    /// Fails unless everything was read.
    pub fn finish(&self) -> Result<(), CodecError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(CodecError::Invalid {
                what: self.what,
                detail: format!("{} trailing bytes", self.buf.len()),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_refuses() {
        let mut c = Cursor::new(b"\x00\x01ab\0\xff\xff\xff\xff\0\0\0\x02xy", "t");
        assert_eq!(c.i16().unwrap(), 1);
        assert_eq!(c.cstr().unwrap(), "ab");
        assert_eq!(c.value().unwrap(), None);
        assert_eq!(c.value().unwrap(), Some(&b"xy"[..]));
        assert!(c.finish().is_ok());
        assert!(c.u8().is_err());
        assert!(Cursor::new(b"abc", "t").cstr().is_err());
        assert!(Cursor::new(b"\0\0\0\x09ab", "t").value().is_err());
        assert!(Cursor::new(b"\xff\xff\xff\xfe", "t").value().is_err());
    }
}
