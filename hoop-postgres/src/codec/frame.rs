//! Tagged messages: a one-byte tag, a four-byte big-endian length that counts itself, and
//! the body.

use bytes::{Bytes, BytesMut};

use crate::CodecError;

/// Largest single reservation made for a message still arriving.
const RESERVE_STEP: usize = 256 * 1024;

/// A whole tagged message, kept as the original bytes (tag, length and body).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    bytes: Bytes,
}

/// The header of a tagged message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    /// Message tag (`Q`, `P`, `D`, ...).
    pub tag: u8,
    /// Total size on the wire: 1 (tag) + the length field.
    pub wire_len: usize,
}

/// Reads the header at the front of `buf` without consuming it. `Ok(None)` when fewer than
/// five bytes are buffered.
///
/// Fails when the length field is below 4 or the message would exceed `max` bytes.
pub fn peek_header(buf: &[u8], max: usize) -> Result<Option<FrameHeader>, CodecError> {
    let Some(head) = buf.get(..5) else {
        return Ok(None);
    };
    let (tag, len) = match head {
        [tag, a, b, c, d] => (*tag, i32::from_be_bytes([*a, *b, *c, *d])),
        _ => return Ok(None),
    };
    if len < 4 {
        return Err(CodecError::BadLength {
            what: "message",
            len: i64::from(len),
        });
    }
    let wire_len = len as usize + 1;
    if wire_len > max {
        return Err(CodecError::TooLarge { len: wire_len, max });
    }
    Ok(Some(FrameHeader { tag, wire_len }))
}

/// Splits one whole message off the front of `buf`, or returns `Ok(None)` (consuming
/// nothing) when it is not complete yet. Reserves room for the rest of a message whose
/// header has arrived, so the next `read_buf` can take it in one go.
///
/// ```
/// use bytes::BytesMut;
/// use hoop_postgres::codec::decode_frame;
///
/// let mut buf = BytesMut::from(&b"Q\0\0\0\x0dselect 1\0Z"[..]);
/// let f = decode_frame(&mut buf, 1 << 20).unwrap().unwrap();
/// assert_eq!(f.tag(), b'Q');
/// assert_eq!(f.body(), b"select 1\0");
/// assert_eq!(&buf[..], b"Z"); // the rest stays buffered
/// ```
pub fn decode_frame(buf: &mut BytesMut, max: usize) -> Result<Option<Frame>, CodecError> {
    let Some(h) = peek_header(buf, max)? else {
        return Ok(None);
    };
    if buf.len() < h.wire_len {
        // Room for the rest, but at most RESERVE_STEP at a time: a 5-byte header that
        // claims a huge message must not make the gateway allocate it before the bytes
        // actually arrive.
        buf.reserve((h.wire_len - buf.len()).min(RESERVE_STEP));
        return Ok(None);
    }
    Ok(Some(Frame {
        bytes: buf.split_to(h.wire_len).freeze(),
    }))
}

impl Frame {
    /// Wraps bytes already known to be one whole message (tag + length + body).
    pub fn from_wire(bytes: Bytes) -> Result<Self, CodecError> {
        let h = peek_header(&bytes, usize::MAX)?.ok_or(CodecError::Truncated("message"))?;
        if h.wire_len != bytes.len() {
            return Err(CodecError::BadLength {
                what: "message",
                len: bytes.len() as i64,
            });
        }
        Ok(Frame { bytes })
    }

    /// Builds a message from a tag and a body.
    pub fn new(tag: u8, body: &[u8]) -> Self {
        let mut b = BytesMut::with_capacity(5 + body.len());
        b.extend_from_slice(&[tag]);
        b.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
        b.extend_from_slice(body);
        Frame { bytes: b.freeze() }
    }

    /// The tag.
    pub fn tag(&self) -> u8 {
        self.bytes.first().copied().unwrap_or(0)
    }

    /// The body (after tag and length).
    pub fn body(&self) -> &[u8] {
        self.bytes.get(5..).unwrap_or_default()
    }

    /// The body as shared bytes (zero-copy).
    pub fn body_bytes(&self) -> Bytes {
        if self.bytes.len() >= 5 {
            self.bytes.slice(5..)
        } else {
            Bytes::new()
        }
    }

    /// The whole message as it came off the wire.
    pub fn as_bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// The whole message, to forward unchanged.
    pub fn into_bytes(self) -> Bytes {
        self.bytes
    }

    /// Size on the wire.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Always false: a frame has at least its header.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_then_whole() {
        let mut buf = BytesMut::from(&b"Q\0\0\0\x0dsel"[..]);
        assert_eq!(decode_frame(&mut buf, 100).unwrap(), None);
        assert_eq!(buf.len(), 8, "nothing consumed");
        buf.extend_from_slice(b"ect 1\0");
        let f = decode_frame(&mut buf, 100).unwrap().unwrap();
        assert_eq!(f.body(), b"select 1\0");
        assert!(buf.is_empty());
    }

    #[test]
    fn hostile_lengths() {
        for len in [0i32, 3, -1, i32::MIN] {
            let mut buf = BytesMut::new();
            buf.extend_from_slice(b"Q");
            buf.extend_from_slice(&len.to_be_bytes());
            assert!(matches!(
                decode_frame(&mut buf, 1 << 30),
                Err(CodecError::BadLength { .. })
            ));
        }
        let mut buf = BytesMut::new();
        buf.extend_from_slice(b"D");
        buf.extend_from_slice(&0x7fff_ffffi32.to_be_bytes());
        assert!(matches!(
            decode_frame(&mut buf, 1 << 30),
            Err(CodecError::TooLarge { .. })
        ));
        assert!(
            buf.capacity() < 1 << 20,
            "no allocation for a hostile length"
        );
    }

    #[test]
    fn empty_body_message() {
        let mut buf = BytesMut::from(&b"S\0\0\0\x04"[..]);
        let f = decode_frame(&mut buf, 100).unwrap().unwrap();
        assert_eq!(f.tag(), b'S');
        assert!(f.body().is_empty());
        assert_eq!(Frame::new(b'S', b""), f);
    }

    proptest::proptest! {
        #[test]
        fn never_panics(data in proptest::collection::vec(proptest::num::u8::ANY, 0..64)) {
            let mut buf = BytesMut::from(&data[..]);
            while let Ok(Some(_)) = decode_frame(&mut buf, 1 << 16) {}
        }

        #[test]
        fn round_trip(tag in proptest::num::u8::ANY, body in proptest::collection::vec(proptest::num::u8::ANY, 0..256)) {
            let f = Frame::new(tag, &body);
            let mut buf = BytesMut::from(&f.as_bytes()[..]);
            let g = decode_frame(&mut buf, 1 << 16).unwrap().unwrap();
            proptest::prop_assert_eq!(g.tag(), tag);
            proptest::prop_assert_eq!(g.body(), &body[..]);
        }
    }
}
