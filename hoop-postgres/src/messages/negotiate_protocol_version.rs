//! `NegotiateProtocolVersion`: the server supports an older minor version or not all
//! requested `_pq_.` options.

use super::{Cursor, put_cstr, tags};
use crate::CodecError;
use crate::codec::Frame;

/// The newest minor version the server supports and the options it did not recognise.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NegotiateProtocolVersion<'a> {
    /// Newest supported minor version.
    pub newest_minor: i32,
    /// Unrecognised protocol options.
    pub unrecognized: Vec<&'a str>,
}

impl<'a> NegotiateProtocolVersion<'a> {
    /// Reads a `v` body.
    pub fn parse(body: &'a [u8]) -> Result<Self, CodecError> {
        let mut c = Cursor::new(body, "NegotiateProtocolVersion");
        let newest_minor = c.i32()?;
        let n = c.i32()?;
        let n = usize::try_from(n).map_err(|_| CodecError::Invalid {
            what: "NegotiateProtocolVersion",
            detail: format!("negative option count {n}"),
        })?;
        let mut unrecognized = Vec::with_capacity(n.min(c.remaining()));
        for _ in 0..n {
            unrecognized.push(c.cstr()?);
        }
        c.finish()?;
        Ok(NegotiateProtocolVersion {
            newest_minor,
            unrecognized,
        })
    }

    /// Builds a `v` message.
    pub fn encode(&self) -> Frame {
        let mut b = Vec::with_capacity(16);
        b.extend_from_slice(&self.newest_minor.to_be_bytes());
        b.extend_from_slice(&(self.unrecognized.len() as i32).to_be_bytes());
        for o in &self.unrecognized {
            put_cstr(&mut b, o);
        }
        Frame::new(tags::NEGOTIATE_PROTOCOL_VERSION, &b)
    }
}
