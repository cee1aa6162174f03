//! `Authentication*` messages (backend).

use super::{Cursor, put_cstr, tags};
use crate::CodecError;
use crate::codec::Frame;

/// An authentication request or result from the server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Authentication<'a> {
    /// Authentication succeeded.
    Ok,
    /// Send the password in clear.
    CleartextPassword,
    /// Send `md5(md5(password + user) + salt)`.
    Md5Password {
        /// The salt.
        salt: [u8; 4],
    },
    /// Start SASL with one of these mechanisms.
    Sasl {
        /// Offered mechanisms.
        mechanisms: Vec<&'a str>,
    },
    /// SASL challenge.
    SaslContinue {
        /// Server data.
        data: &'a [u8],
    },
    /// SASL outcome (server signature).
    SaslFinal {
        /// Server data.
        data: &'a [u8],
    },
    /// Any other method (Kerberos, GSS, SSPI): not supported toward targets.
    Other(i32),
}

impl<'a> Authentication<'a> {
    /// Reads an `R` body.
    pub fn parse(body: &'a [u8]) -> Result<Self, CodecError> {
        let mut c = Cursor::new(body, "Authentication");
        let code = c.i32()?;
        let a = match code {
            0 => Authentication::Ok,
            3 => Authentication::CleartextPassword,
            5 => {
                let s = c.bytes(4)?;
                let mut salt = [0u8; 4];
                salt.copy_from_slice(s);
                Authentication::Md5Password { salt }
            }
            10 => {
                let mut mechanisms = Vec::new();
                loop {
                    let m = c.cstr()?;
                    if m.is_empty() {
                        break;
                    }
                    mechanisms.push(m);
                }
                Authentication::Sasl { mechanisms }
            }
            11 => Authentication::SaslContinue { data: c.rest() },
            12 => Authentication::SaslFinal { data: c.rest() },
            other => return Ok(Authentication::Other(other)),
        };
        c.finish()?;
        Ok(a)
    }

    /// Builds an `R` message.
    pub fn encode(&self) -> Frame {
        let mut b = Vec::with_capacity(16);
        match self {
            Authentication::Ok => b.extend_from_slice(&0i32.to_be_bytes()),
            Authentication::CleartextPassword => b.extend_from_slice(&3i32.to_be_bytes()),
            Authentication::Md5Password { salt } => {
                b.extend_from_slice(&5i32.to_be_bytes());
                b.extend_from_slice(salt);
            }
            Authentication::Sasl { mechanisms } => {
                b.extend_from_slice(&10i32.to_be_bytes());
                for m in mechanisms {
                    put_cstr(&mut b, m);
                }
                b.push(0);
            }
            Authentication::SaslContinue { data } => {
                b.extend_from_slice(&11i32.to_be_bytes());
                b.extend_from_slice(data);
            }
            Authentication::SaslFinal { data } => {
                b.extend_from_slice(&12i32.to_be_bytes());
                b.extend_from_slice(data);
            }
            Authentication::Other(code) => b.extend_from_slice(&code.to_be_bytes()),
        }
        Frame::new(tags::AUTHENTICATION, &b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        for a in [
            Authentication::Ok,
            Authentication::CleartextPassword,
            Authentication::Md5Password { salt: [1, 2, 3, 4] },
            Authentication::Sasl {
                mechanisms: vec!["SCRAM-SHA-256-PLUS", "SCRAM-SHA-256"],
            },
            Authentication::SaslContinue { data: b"r=abc" },
            Authentication::SaslFinal { data: b"v=xyz" },
        ] {
            let f = a.encode();
            assert_eq!(Authentication::parse(f.body()).unwrap(), a);
        }
        assert!(Authentication::parse(b"\0\0\0\x05\x01").is_err());
    }
}
