//! Framing: splitting a byte stream into whole messages without copying.
//!
//! Both decoders follow the same cancel-safe pattern: the caller reads into a persistent
//! [`BytesMut`] with `read_buf`, then calls the decoder, which first *checks* whether a
//! whole message is buffered (returning `Ok(None)` if not, consuming nothing) and only
//! then *splits* it off as a frozen [`Bytes`]. Lengths are validated before anything is
//! buffered, so a hostile length cannot make the gateway allocate.

mod frame;
mod startup;

pub use frame::{Frame, FrameHeader, decode_frame, peek_header};
pub use startup::{
    CANCEL_REQUEST_CODE, GSSENC_REQUEST_CODE, PROTOCOL_3_0, PROTOCOL_3_2, SSL_REQUEST_CODE,
    StartupFrame, StartupParams, decode_startup,
};

/// Default limit on one message (1 GiB, PostgreSQL's own limit for a field value).
pub const DEFAULT_MAX_MESSAGE: usize = 1 << 30;

/// Limit on a startup-phase packet (PostgreSQL uses 10 000 bytes).
pub const MAX_STARTUP_PACKET: usize = 10_000;
