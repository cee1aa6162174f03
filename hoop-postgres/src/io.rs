//! Cancel-safe frame reading and coalesced writing.

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::codec::{Frame, decode_frame};
use crate::error::PgError;

/// Reads whole tagged messages into a persistent buffer (`read_buf`, then check, then
/// split): dropping a pending `next()` loses nothing.
#[derive(Debug)]
pub struct FrameReader<R> {
    inner: R,
    buf: BytesMut,
    max: usize,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// A reader with `max` as the message size limit, starting with bytes already read.
    pub fn new(inner: R, max: usize, buffered: BytesMut) -> Self {
        let mut buf = buffered;
        buf.reserve(16 * 1024);
        FrameReader { inner, buf, max }
    }

    /// Whether a whole message is already buffered (so the caller can hold off flushing).
    pub fn has_frame(&self) -> bool {
        matches!(crate::codec::peek_header(&self.buf, self.max), Ok(Some(h)) if self.buf.len() >= h.wire_len)
    }

    /// The next message if it is already buffered whole (no read, no await): callers
    /// drain a burst without going through their `select!` for every message.
    pub fn buffered_frame(&mut self) -> Result<Option<Frame>, PgError> {
        Ok(decode_frame(&mut self.buf, self.max)?)
    }

    /// The next message; `Ok(None)` on a clean end of stream between messages.
    pub async fn next(&mut self) -> Result<Option<Frame>, PgError> {
        loop {
            if let Some(f) = decode_frame(&mut self.buf, self.max)? {
                return Ok(Some(f));
            }
            if self.buf.capacity() - self.buf.len() < 4096 {
                self.buf.reserve(16 * 1024);
            }
            if self.inner.read_buf(&mut self.buf).await? == 0 {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(PgError::Truncated)
                };
            }
        }
    }
}

/// Coalesces outgoing messages and writes them in batches.
#[derive(Debug)]
pub struct FrameWriter<W> {
    inner: W,
    out: BytesMut,
    threshold: usize,
}

impl<W: AsyncWrite + Unpin> FrameWriter<W> {
    /// A writer that flushes by itself once `threshold` bytes are queued.
    pub fn new(inner: W, threshold: usize) -> Self {
        FrameWriter {
            inner,
            out: BytesMut::with_capacity(threshold.min(1 << 20)),
            threshold,
        }
    }

    /// Queues raw bytes (one or more whole messages).
    pub async fn push(&mut self, bytes: &[u8]) -> Result<(), PgError> {
        if self.out.is_empty() && bytes.len() >= self.threshold {
            // Large message: write it straight through without copying.
            self.inner.write_all(bytes).await?;
            return Ok(());
        }
        self.out.extend_from_slice(bytes);
        if self.out.len() >= self.threshold {
            self.flush().await?;
        }
        Ok(())
    }

    /// Writes everything queued.
    pub async fn flush(&mut self) -> Result<(), PgError> {
        if !self.out.is_empty() {
            self.inner.write_all(&self.out).await?;
            self.out.clear();
        }
        self.inner.flush().await?;
        Ok(())
    }

    /// Flushes and shuts the write side down.
    pub async fn shutdown(&mut self) -> Result<(), PgError> {
        self.flush().await?;
        self.inner.shutdown().await?;
        Ok(())
    }
}
