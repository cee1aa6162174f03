//! `FunctionCall` (frontend): a server function called by its OID (libpq's `PQfn`, used
//! by the large-object functions).

use super::Cursor;
use crate::CodecError;

/// What the gateway keeps of a `FunctionCall`: the function and how many arguments it
/// was given. The arguments themselves may be data (the bytes `lowrite` writes) and are
/// never kept or recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FunctionCall {
    /// The function's OID.
    pub oid: u32,
    /// Number of arguments.
    pub args: usize,
}

impl FunctionCall {
    /// Reads an `F` body: the OID, the argument format codes, the arguments (each a
    /// length, -1 for NULL, then its bytes) and the result's format code. The whole body
    /// is checked.
    ///
    /// ```
    /// use hoop_postgres::messages::FunctionCall;
    ///
    /// // lo_open(16393, 0x20000): two int4 arguments in binary.
    /// let mut body = 952u32.to_be_bytes().to_vec();
    /// body.extend_from_slice(&[0, 1, 0, 1, 0, 2]);
    /// for v in [16393i32, 0x20000] {
    ///     body.extend_from_slice(&4i32.to_be_bytes());
    ///     body.extend_from_slice(&v.to_be_bytes());
    /// }
    /// body.extend_from_slice(&[0, 1]);
    /// assert_eq!(FunctionCall::parse(&body).unwrap(), FunctionCall { oid: 952, args: 2 });
    /// assert!(FunctionCall::parse(&body[..body.len() - 3]).is_err());
    /// ```
    pub fn parse(body: &[u8]) -> Result<Self, CodecError> {
        let mut c = Cursor::new(body, "FunctionCall");
        let oid = u32::from_be_bytes(c.i32()?.to_be_bytes());
        for _ in 0..c.count16()? {
            c.i16()?;
        }
        let args = c.count16()?;
        for _ in 0..args {
            c.value()?;
        }
        c.i16()?;
        c.finish()?;
        Ok(FunctionCall { oid, args })
    }

    /// How it is recorded: `FunctionCall oid=952 (2 arguments)`.
    pub fn describe(&self) -> String {
        format!(
            "FunctionCall oid={} ({} argument{})",
            self.oid,
            self.args,
            if self.args == 1 { "" } else { "s" }
        )
    }
}
