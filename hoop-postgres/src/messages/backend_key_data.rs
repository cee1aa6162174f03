//! `BackendKeyData`: the key a client needs to cancel its queries.

use bytes::Bytes;

use super::{Cursor, tags};
use crate::CodecError;
use crate::codec::Frame;

/// Process id and secret key of a backend (the key is 4 bytes in protocol 3.0, up to 256
/// in 3.2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackendKeyData {
    /// Process id.
    pub pid: i32,
    /// Secret key.
    pub key: Bytes,
}

impl BackendKeyData {
    /// Reads a `K` body.
    pub fn parse(body: &[u8]) -> Result<Self, CodecError> {
        let mut c = Cursor::new(body, "BackendKeyData");
        let pid = c.i32()?;
        let key = c.rest();
        if key.len() < 4 || key.len() > 256 {
            return Err(CodecError::Invalid {
                what: "BackendKeyData",
                detail: format!("key of {} bytes", key.len()),
            });
        }
        Ok(BackendKeyData {
            pid,
            key: Bytes::copy_from_slice(key),
        })
    }

    /// Builds a `K` message.
    pub fn encode(&self) -> Frame {
        let mut b = Vec::with_capacity(4 + self.key.len());
        b.extend_from_slice(&self.pid.to_be_bytes());
        b.extend_from_slice(&self.key);
        Frame::new(tags::BACKEND_KEY_DATA, &b)
    }
}
