//! The startup phase: untagged packets (a length that counts itself, then a 32-bit code).

use bytes::{Bytes, BytesMut};

use crate::CodecError;
use crate::messages::Cursor;

/// `SSLRequest` code.
pub const SSL_REQUEST_CODE: i32 = 80_877_103;
/// `GSSENCRequest` code.
pub const GSSENC_REQUEST_CODE: i32 = 80_877_104;
/// `CancelRequest` code.
pub const CANCEL_REQUEST_CODE: i32 = 80_877_102;
/// Protocol 3.0.
pub const PROTOCOL_3_0: i32 = 3 << 16;
/// Protocol 3.2 (PostgreSQL 18: variable-length cancel keys).
pub const PROTOCOL_3_2: i32 = (3 << 16) | 2;

/// One startup-phase packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StartupFrame {
    /// The client asks for TLS.
    SslRequest,
    /// The client asks for GSSAPI encryption (the gateway answers `N`).
    GssEncRequest,
    /// A cancel request for the backend `(pid, key)`.
    CancelRequest {
        /// Process id from BackendKeyData.
        pid: i32,
        /// Secret key (4 bytes in 3.0, up to 256 in 3.2).
        key: Bytes,
    },
    /// The startup message proper.
    Startup {
        /// Requested protocol version (`major << 16 | minor`).
        version: i32,
        /// Parameters in the order sent.
        params: StartupParams,
    },
}

/// Startup parameters (`user`, `database`, `options`, `application_name`, ...).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StartupParams {
    pairs: Vec<(String, String)>,
}

impl StartupParams {
    /// Empty parameters.
    pub fn new() -> Self {
        Self::default()
    }

    /// The value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Sets `name` (replacing an existing value).
    pub fn set(&mut self, name: &str, value: &str) {
        match self.pairs.iter_mut().find(|(k, _)| k == name) {
            Some(p) => p.1 = value.to_owned(),
            None => self.pairs.push((name.to_owned(), value.to_owned())),
        }
    }

    /// Removes `name`, returning its value.
    pub fn remove(&mut self, name: &str) -> Option<String> {
        let i = self.pairs.iter().position(|(k, _)| k == name)?;
        Some(self.pairs.remove(i).1)
    }

    /// All parameters in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Encodes a StartupMessage with these parameters.
    pub fn encode(&self, version: i32) -> Bytes {
        let mut body = Vec::with_capacity(64);
        body.extend_from_slice(&version.to_be_bytes());
        for (k, v) in &self.pairs {
            body.extend_from_slice(k.as_bytes());
            body.push(0);
            body.extend_from_slice(v.as_bytes());
            body.push(0);
        }
        body.push(0);
        let mut out = BytesMut::with_capacity(body.len() + 4);
        out.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
        out.extend_from_slice(&body);
        out.freeze()
    }
}

/// Splits one startup-phase packet off `buf`, or `Ok(None)` (consuming nothing) while it
/// is incomplete. Packets over `max` bytes are refused before being buffered.
pub fn decode_startup(buf: &mut BytesMut, max: usize) -> Result<Option<StartupFrame>, CodecError> {
    let Some(&[a, b, c, d]) = buf.get(..4) else {
        return Ok(None);
    };
    let len = i32::from_be_bytes([a, b, c, d]);
    if len < 8 {
        return Err(CodecError::BadLength {
            what: "startup packet",
            len: i64::from(len),
        });
    }
    let len = len as usize;
    if len > max {
        return Err(CodecError::TooLarge { len, max });
    }
    if buf.len() < len {
        return Ok(None);
    }
    let packet = buf.split_to(len).freeze();
    let mut cur = Cursor::new(packet.get(4..).unwrap_or_default(), "startup packet");
    let code = cur.i32()?;
    match code {
        SSL_REQUEST_CODE if len == 8 => Ok(Some(StartupFrame::SslRequest)),
        GSSENC_REQUEST_CODE if len == 8 => Ok(Some(StartupFrame::GssEncRequest)),
        SSL_REQUEST_CODE | GSSENC_REQUEST_CODE => Err(CodecError::BadLength {
            what: "SSL/GSSENC request",
            len: len as i64,
        }),
        CANCEL_REQUEST_CODE => {
            let pid = cur.i32()?;
            let key = cur.rest();
            if key.is_empty() || key.len() > 256 {
                return Err(CodecError::BadLength {
                    what: "cancel request",
                    len: len as i64,
                });
            }
            Ok(Some(StartupFrame::CancelRequest {
                pid,
                key: Bytes::copy_from_slice(key),
            }))
        }
        v if v >> 16 == 3 => {
            let mut params = StartupParams::new();
            loop {
                let k = cur.cstr()?;
                if k.is_empty() {
                    break;
                }
                let v = cur.cstr()?;
                if params.get(k).is_some() {
                    return Err(CodecError::Invalid {
                        what: "startup parameter",
                        detail: format!("{k:?} given twice"),
                    });
                }
                params.pairs.push((k.to_owned(), v.to_owned()));
            }
            Ok(Some(StartupFrame::Startup { version: v, params }))
        }
        other => Err(CodecError::UnknownStartupCode(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(code: i32, rest: &[u8]) -> BytesMut {
        let mut b = BytesMut::new();
        b.extend_from_slice(&((8 + rest.len()) as i32).to_be_bytes());
        b.extend_from_slice(&code.to_be_bytes());
        b.extend_from_slice(rest);
        b
    }

    #[test]
    fn ssl_gss_cancel() {
        assert_eq!(
            decode_startup(&mut packet(SSL_REQUEST_CODE, b""), 100).unwrap(),
            Some(StartupFrame::SslRequest)
        );
        assert_eq!(
            decode_startup(&mut packet(GSSENC_REQUEST_CODE, b""), 100).unwrap(),
            Some(StartupFrame::GssEncRequest)
        );
        let mut c = packet(CANCEL_REQUEST_CODE, &[0, 0, 0, 7, 1, 2, 3, 4]);
        assert_eq!(
            decode_startup(&mut c, 100).unwrap(),
            Some(StartupFrame::CancelRequest {
                pid: 7,
                key: Bytes::from_static(&[1, 2, 3, 4])
            })
        );
    }

    #[test]
    fn startup_round_trip() {
        let mut p = StartupParams::new();
        p.set("user", "alice");
        p.set("database", "app");
        let mut buf = BytesMut::from(&p.encode(PROTOCOL_3_0)[..]);
        match decode_startup(&mut buf, 10_000).unwrap() {
            Some(StartupFrame::Startup { version, params }) => {
                assert_eq!(version, PROTOCOL_3_0);
                assert_eq!(params.get("user"), Some("alice"));
                assert_eq!(params.get("database"), Some("app"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bad_startup_packets() {
        assert!(decode_startup(&mut BytesMut::from(&[0u8, 0, 0, 4][..]), 100).is_err());
        assert!(decode_startup(&mut BytesMut::from(&[0x7fu8, 0, 0, 0][..]), 10_000).is_err());
        assert!(decode_startup(&mut packet(1234, b""), 100).is_err());
        // Missing terminators.
        assert!(decode_startup(&mut packet(PROTOCOL_3_0, b"user"), 100).is_err());
        // Incomplete: nothing consumed.
        let mut b = BytesMut::from(&[0u8, 0, 0, 20, 0][..]);
        assert_eq!(decode_startup(&mut b, 100).unwrap(), None);
        assert_eq!(b.len(), 5);
    }

    proptest::proptest! {
        #[test]
        fn never_panics(data in proptest::collection::vec(proptest::num::u8::ANY, 0..64)) {
            let _ = decode_startup(&mut BytesMut::from(&data[..]), 10_000);
        }
    }
}
