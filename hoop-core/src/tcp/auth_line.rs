//! The `AUTH <token>` line: a bearer credential for TCP clients that cannot present a
//! client certificate.
//!
//! Framing (inside the client's TLS session, before any application byte):
//!
//! ```text
//! client -> gateway   AUTH <token>\n        (or \r\n; at most MAX_AUTH_LINE bytes)
//! gateway -> client   OK\n                  the target is connected; bytes now flow both ways
//!                     ERR <reason>\n        refused; the gateway closes the connection
//! ```
//!
//! The token is one run of visible ASCII characters (no spaces). Bytes the client sent
//! after the line are kept and relayed to the target first.

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Longest accepted `AUTH` line, newline included.
pub const MAX_AUTH_LINE: usize = 8 * 1024;

/// The reply that tells the client the relay has started.
pub const OK_LINE: &[u8] = b"OK\n";

/// Why an `AUTH` line was not accepted. Messages are safe to send to the client.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthLineError {
    /// No newline within [`MAX_AUTH_LINE`] bytes.
    #[error("auth line too long")]
    TooLong,
    /// The line is not `AUTH <token>`.
    #[error("expected 'AUTH <token>'")]
    Malformed,
    /// The client closed the connection before a full line.
    #[error("connection closed before the auth line")]
    Closed,
    /// Socket error.
    #[error("I/O error reading the auth line: {0}")]
    Io(#[from] std::io::Error),
}

/// A parsed `AUTH` line: the token, and the bytes that followed the line.
pub struct AuthLine {
    token: String,
    /// Bytes after the newline, to be relayed before anything else.
    pub rest: Bytes,
}

impl AuthLine {
    /// The bearer token.
    pub fn token(&self) -> &str {
        &self.token
    }
}

impl std::fmt::Debug for AuthLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthLine")
            .field("token", &"<redacted>")
            .field("rest", &self.rest.len())
            .finish()
    }
}

/// Reads one `AUTH <token>` line from `stream`, reading at most [`MAX_AUTH_LINE`] bytes
/// before giving up.
pub async fn read_auth_line<S: AsyncRead + Unpin>(
    stream: &mut S,
) -> Result<AuthLine, AuthLineError> {
    let mut buf = BytesMut::with_capacity(512);
    let mut scanned = 0;
    loop {
        if let Some(i) = buf
            .get(scanned..)
            .and_then(|tail| memchr::memchr(b'\n', tail))
        {
            let end = scanned + i;
            if end + 1 > MAX_AUTH_LINE {
                return Err(AuthLineError::TooLong);
            }
            let line = buf.split_to(end + 1);
            let token = parse(&line)?;
            return Ok(AuthLine {
                token,
                rest: buf.freeze(),
            });
        }
        scanned = buf.len();
        if scanned >= MAX_AUTH_LINE {
            return Err(AuthLineError::TooLong);
        }
        // Never read past the limit (plus a little for what follows the line).
        let room = MAX_AUTH_LINE - scanned;
        buf.reserve(room.min(4096));
        let n = (&mut *stream).take(room as u64).read_buf(&mut buf).await?;
        if n == 0 {
            return Err(AuthLineError::Closed);
        }
    }
}

fn parse(line: &[u8]) -> Result<String, AuthLineError> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let token = line
        .strip_prefix(b"AUTH ")
        .ok_or(AuthLineError::Malformed)?;
    if token.is_empty() || !token.iter().all(|b| b.is_ascii_graphic()) {
        return Err(AuthLineError::Malformed);
    }
    std::str::from_utf8(token)
        .map(str::to_owned)
        .map_err(|_| AuthLineError::Malformed)
}

/// Writes `ERR <reason>\n` (newlines in `reason` become spaces) and flushes.
pub async fn write_err<S: AsyncWrite + Unpin>(stream: &mut S, reason: &str) -> std::io::Result<()> {
    let mut line = Vec::with_capacity(reason.len() + 5);
    line.extend_from_slice(b"ERR ");
    line.extend(
        reason
            .bytes()
            .take(1024)
            .map(|b| if b == b'\n' || b == b'\r' { b' ' } else { b }),
    );
    line.push(b'\n');
    stream.write_all(&line).await?;
    stream.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn read(input: &[u8]) -> Result<AuthLine, AuthLineError> {
        let (mut a, mut b) = tokio::io::duplex(64 * 1024);
        a.write_all(input).await.unwrap();
        drop(a);
        read_auth_line(&mut b).await
    }

    #[tokio::test]
    async fn parses_token_and_keeps_the_rest() {
        let l = read(b"AUTH abc.def\r\nhello").await.unwrap();
        assert_eq!(l.token(), "abc.def");
        assert_eq!(&l.rest[..], b"hello");
        assert!(!format!("{l:?}").contains("abc"));
    }

    #[tokio::test]
    async fn refuses_bad_lines() {
        assert!(matches!(
            read(b"HELLO x\n").await,
            Err(AuthLineError::Malformed)
        ));
        assert!(matches!(
            read(b"AUTH \n").await,
            Err(AuthLineError::Malformed)
        ));
        assert!(matches!(
            read(b"AUTH a b\n").await,
            Err(AuthLineError::Malformed)
        ));
        assert!(matches!(
            read(b"AUTH abc").await,
            Err(AuthLineError::Closed)
        ));
        let long = vec![b'A'; MAX_AUTH_LINE + 10];
        assert!(matches!(read(&long).await, Err(AuthLineError::TooLong)));
        let mut exact = b"AUTH ".to_vec();
        exact.extend(vec![b'x'; MAX_AUTH_LINE - 6]);
        exact.push(b'\n');
        assert_eq!(exact.len(), MAX_AUTH_LINE);
        assert!(read(&exact).await.is_ok());
        let mut over = b"AUTH ".to_vec();
        over.extend(vec![b'x'; MAX_AUTH_LINE - 5]);
        over.push(b'\n');
        assert!(matches!(read(&over).await, Err(AuthLineError::TooLong)));
    }

    #[tokio::test]
    async fn err_line_is_one_line() {
        let mut out = Vec::new();
        write_err(&mut out, "bad\nthing").await.unwrap();
        assert_eq!(out, b"ERR bad thing\n");
    }
}
