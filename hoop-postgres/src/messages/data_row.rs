//! `DataRow`: one row of a result, decoded lazily.

use std::borrow::Cow;

use super::{Cursor, tags};
use crate::CodecError;
use crate::codec::Frame;

/// A row, borrowing the message body. Values are read on demand by [`DataRow::values`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DataRow<'a> {
    count: usize,
    values: &'a [u8],
}

impl<'a> DataRow<'a> {
    /// Reads the column count of a `D` (backend) body; values are checked as they are read.
    pub fn parse(body: &'a [u8]) -> Result<Self, CodecError> {
        let mut c = Cursor::new(body, "DataRow");
        let count = c.count16()?;
        Ok(DataRow {
            count,
            values: c.rest(),
        })
    }

    /// Number of columns.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether the row has no columns.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The values in order (`None` is SQL NULL). An error item ends the iteration.
    pub fn values(&self) -> impl Iterator<Item = Result<Option<&'a [u8]>, CodecError>> + 'a {
        let mut c = Cursor::new(self.values, "DataRow");
        let mut left = self.count;
        let mut failed = false;
        std::iter::from_fn(move || {
            if failed {
                return None;
            }
            if left == 0 {
                return match c.finish() {
                    Ok(()) => None,
                    Err(e) => {
                        failed = true;
                        Some(Err(e))
                    }
                };
            }
            left -= 1;
            let v = c.value();
            failed = v.is_err();
            Some(v)
        })
    }

    /// Builds a `D` message from values.
    pub fn encode<'v>(values: impl IntoIterator<Item = Option<Cow<'v, [u8]>>>) -> Frame {
        let mut body = vec![0u8, 0u8];
        let mut n: u16 = 0;
        for v in values {
            n = n.saturating_add(1);
            match v {
                None => body.extend_from_slice(&(-1i32).to_be_bytes()),
                Some(v) => {
                    body.extend_from_slice(&(v.len() as i32).to_be_bytes());
                    body.extend_from_slice(&v);
                }
            }
        }
        if let Some(head) = body.get_mut(..2) {
            head.copy_from_slice(&n.to_be_bytes());
        }
        Frame::new(tags::DATA_ROW, &body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lazy_values() {
        let f = DataRow::encode([
            Some(Cow::Borrowed(&b"a"[..])),
            None,
            Some(Cow::Borrowed(&b""[..])),
        ]);
        let r = DataRow::parse(f.body()).unwrap();
        assert_eq!(r.len(), 3);
        let v: Vec<_> = r.values().collect::<Result<_, _>>().unwrap();
        assert_eq!(v, vec![Some(&b"a"[..]), None, Some(&b""[..])]);
    }

    #[test]
    fn truncated_and_trailing() {
        // Claims 2 columns, has 1.
        let body = b"\0\x02\0\0\0\x01a";
        let r = DataRow::parse(body).unwrap();
        let v: Vec<_> = r.values().collect();
        assert!(v.last().unwrap().is_err());
        // Claims 1 column, has trailing bytes.
        let body = b"\0\x01\0\0\0\x01ab";
        let v: Vec<_> = DataRow::parse(body).unwrap().values().collect();
        assert!(v.last().unwrap().is_err());
    }
}
