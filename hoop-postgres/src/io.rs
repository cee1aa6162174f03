//! Cancel-safe frame reading and coalesced writing.
//!
//! Small messages are read whole ([`FrameReader::next`]). With a streaming threshold set
//! ([`FrameReader::set_stream_threshold`]), [`FrameReader::next_incoming`] announces a
//! message longer than the threshold by its header alone, before its body is buffered;
//! the caller then either takes it whole ([`FrameReader::whole`], still capped by the
//! message limit) or starts its body ([`FrameReader::start_body`]) and pulls it in
//! bounded pieces ([`FrameReader::body_chunk`], [`FrameReader::body_exact`]), so memory
//! stays at the piece size whatever the message size.

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::CodecError;
use crate::codec::{Frame, FrameHeader, decode_frame, peek_header};
use crate::error::PgError;

/// Size of a tagged message's header: the tag and the four-byte length.
pub const HEADER_LEN: usize = 5;

/// Largest single reservation made while waiting for body bytes.
const BODY_RESERVE_STEP: usize = 256 * 1024;

/// A message as [`FrameReader::next_incoming`] yields it.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming {
    /// A whole message, at most the streaming threshold long.
    Whole(Frame),
    /// The header of a longer message: nothing of it is consumed yet. The caller must
    /// next call [`FrameReader::whole`] or [`FrameReader::start_body`].
    Large(FrameHeader),
}

/// Where the reader stands within a long message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Large {
    /// Between messages.
    Idle,
    /// A long message was announced; its header is still buffered.
    Announced(FrameHeader),
    /// Inside the body of a long message, with this many body bytes still to read.
    Body(usize),
}

/// Reads whole tagged messages into a persistent buffer (`read_buf`, then check, then
/// split): dropping a pending `next()` loses nothing.
#[derive(Debug)]
pub struct FrameReader<R> {
    inner: R,
    buf: BytesMut,
    max: usize,
    stream_at: usize,
    large: Large,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// A reader with `max` as the message size limit, starting with bytes already read.
    /// Every message is read whole until [`set_stream_threshold`](Self::set_stream_threshold)
    /// is called.
    pub fn new(inner: R, max: usize, buffered: BytesMut) -> Self {
        let mut buf = buffered;
        buf.reserve(16 * 1024);
        FrameReader {
            inner,
            buf,
            max,
            stream_at: usize::MAX,
            large: Large::Idle,
        }
    }

    /// Messages longer than `bytes` on the wire are announced as [`Incoming::Large`] by
    /// [`next_incoming`](Self::next_incoming) instead of being buffered whole.
    pub fn set_stream_threshold(&mut self, bytes: usize) {
        self.stream_at = bytes.max(HEADER_LEN);
    }

    /// Reads more bytes from the socket; `Ok(false)` at the end of the stream.
    async fn fill(&mut self) -> Result<bool, PgError> {
        if self.buf.capacity() - self.buf.len() < 4096 {
            self.buf.reserve(16 * 1024);
        }
        Ok(self.inner.read_buf(&mut self.buf).await? != 0)
    }

    fn in_message() -> PgError {
        PgError::Codec(CodecError::Invalid {
            what: "message stream",
            detail: "a long message is still being read".into(),
        })
    }

    /// The next message if it is already buffered whole and not longer than the
    /// streaming threshold (no read, no await): callers drain a burst without going
    /// through their `select!` for every message. `Ok(None)` otherwise, including when
    /// a long message comes next (then [`next_incoming`](Self::next_incoming) announces it).
    pub fn buffered_frame(&mut self) -> Result<Option<Frame>, PgError> {
        if self.large != Large::Idle {
            return Ok(None);
        }
        match peek_header(&self.buf, self.max)? {
            Some(h) if h.wire_len <= self.stream_at && self.buf.len() >= h.wire_len => {
                Ok(decode_frame(&mut self.buf, self.max)?)
            }
            _ => Ok(None),
        }
    }

    /// The next message, as its wire bytes still in the read buffer, if it is buffered
    /// whole and not longer than the streaming threshold (no read, no copy, no reference
    /// count): a caller that copies or rewrites it into its output handles it in place,
    /// then calls [`consume`](Self::consume) with its length. `Ok(None)` otherwise.
    pub fn peek_buffered(&self) -> Result<Option<&[u8]>, PgError> {
        if self.large != Large::Idle {
            return Ok(None);
        }
        match peek_header(&self.buf, self.max)? {
            Some(h) if h.wire_len <= self.stream_at => Ok(self.buf.get(..h.wire_len)),
            _ => Ok(None),
        }
    }

    /// Drops the first `n` buffered bytes: the message [`peek_buffered`](Self::peek_buffered)
    /// returned, once handled.
    pub fn consume(&mut self, n: usize) {
        self.buf.advance(n.min(self.buf.len()));
    }

    /// The next message; `Ok(None)` on a clean end of stream between messages.
    pub async fn next(&mut self) -> Result<Option<Frame>, PgError> {
        if self.large != Large::Idle {
            return Err(Self::in_message());
        }
        loop {
            if let Some(f) = decode_frame(&mut self.buf, self.max)? {
                return Ok(Some(f));
            }
            if !self.fill().await? {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(PgError::Truncated)
                };
            }
        }
    }

    /// The next message, or only the header of one longer than the streaming threshold;
    /// `Ok(None)` on a clean end of stream between messages. Cancel-safe.
    pub async fn next_incoming(&mut self) -> Result<Option<Incoming>, PgError> {
        if self.large != Large::Idle {
            return Err(Self::in_message());
        }
        loop {
            if let Some(h) = peek_header(&self.buf, self.max)?
                && h.wire_len > self.stream_at
            {
                self.large = Large::Announced(h);
                return Ok(Some(Incoming::Large(h)));
            }
            if let Some(f) = decode_frame(&mut self.buf, self.max)? {
                return Ok(Some(Incoming::Whole(f)));
            }
            if !self.fill().await? {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(PgError::Truncated)
                };
            }
        }
    }

    /// The announced long message, read whole (up to the message limit). Cancel-safe.
    pub async fn whole(&mut self) -> Result<Frame, PgError> {
        if !matches!(self.large, Large::Announced(_)) {
            return Err(Self::in_message());
        }
        loop {
            if let Some(f) = decode_frame(&mut self.buf, self.max)? {
                self.large = Large::Idle;
                return Ok(f);
            }
            if !self.fill().await? {
                return Err(PgError::Truncated);
            }
        }
    }

    /// Consumes the announced message's header: its body is then read with the `body_*`
    /// methods. Returns the header.
    pub fn start_body(&mut self) -> Result<FrameHeader, PgError> {
        let Large::Announced(h) = self.large else {
            return Err(Self::in_message());
        };
        if self.buf.len() < HEADER_LEN {
            return Err(Self::in_message());
        }
        self.buf.advance(HEADER_LEN);
        let left = h.wire_len.saturating_sub(HEADER_LEN);
        self.large = if left == 0 {
            Large::Idle
        } else {
            Large::Body(left)
        };
        Ok(h)
    }

    /// Body bytes of the current long message not read yet (0 between messages).
    pub fn body_left(&self) -> usize {
        match self.large {
            Large::Body(n) => n,
            _ => 0,
        }
    }

    /// Waits until at least `want` body bytes (or all that is left) are buffered and
    /// returns how many are. Consumes nothing: cancel-safe.
    pub async fn body_fill(&mut self, want: usize) -> Result<usize, PgError> {
        let left = self.body_left();
        let want = want.min(left);
        while self.buf.len() < want {
            let missing = want - self.buf.len();
            if self.buf.capacity() - self.buf.len() < missing {
                self.buf.reserve(missing.min(BODY_RESERVE_STEP));
            }
            if !self.fill().await? {
                return Err(PgError::Truncated);
            }
        }
        Ok(self.buf.len().min(left))
    }

    /// The body bytes already buffered (never past the end of the message).
    pub fn body_buffered(&self) -> &[u8] {
        let n = self.buf.len().min(self.body_left());
        self.buf.get(..n).unwrap_or_default()
    }

    /// Takes up to `n` buffered body bytes (fewer when fewer are buffered).
    pub fn body_take(&mut self, n: usize) -> Bytes {
        let left = self.body_left();
        if left == 0 {
            return Bytes::new();
        }
        let n = n.min(left).min(self.buf.len());
        let out = self.buf.split_to(n).freeze();
        let rest = left - n;
        self.large = if rest == 0 {
            Large::Idle
        } else {
            Large::Body(rest)
        };
        out
    }

    /// The next piece of the body, at most `max` bytes: what is buffered, or what one
    /// read brings. Empty once the body is read. Cancel-safe.
    pub async fn body_chunk(&mut self, max: usize) -> Result<Bytes, PgError> {
        if self.body_left() == 0 {
            return Ok(Bytes::new());
        }
        self.body_fill(1).await?;
        Ok(self.body_take(max.max(1)))
    }

    /// Exactly the next `n` body bytes (buffered whole: keep `n` bounded). Fails when the
    /// body has fewer. Cancel-safe.
    pub async fn body_exact(&mut self, n: usize) -> Result<Bytes, PgError> {
        if n > self.body_left() {
            return Err(PgError::Codec(CodecError::Truncated("message body")));
        }
        self.body_fill(n).await?;
        Ok(self.body_take(n))
    }

    /// Reads and drops the next `n` body bytes, piece by piece.
    pub async fn body_skip(&mut self, mut n: usize, piece: usize) -> Result<(), PgError> {
        if n > self.body_left() {
            return Err(PgError::Codec(CodecError::Truncated("message body")));
        }
        while n > 0 {
            let c = self.body_chunk(piece.min(n)).await?;
            n -= c.len();
        }
        Ok(())
    }
}

/// The five header bytes of a message (tag and length) from its header.
pub fn encode_header(h: &FrameHeader) -> [u8; HEADER_LEN] {
    let len = u32::try_from(h.wire_len.saturating_sub(1)).unwrap_or(u32::MAX);
    let [a, b, c, d] = len.to_be_bytes();
    [h.tag, a, b, c, d]
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

    /// The queued output, to build a message in place (a rewritten row) instead of in a
    /// buffer of its own; call [`flush_if_full`](Self::flush_if_full) afterwards.
    pub fn queue_mut(&mut self) -> &mut BytesMut {
        &mut self.out
    }

    /// Writes what is queued once it reaches the threshold.
    pub async fn flush_if_full(&mut self) -> Result<(), PgError> {
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

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use tokio::io::ReadBuf;

    use super::*;

    /// Delivers its bytes in the given pieces, one piece (at most) per read.
    struct Pieces(VecDeque<Vec<u8>>);

    impl AsyncRead for Pieces {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<std::io::Result<()>> {
            if let Some(p) = self.0.front_mut() {
                let n = p.len().min(buf.remaining());
                buf.put_slice(&p[..n]);
                p.drain(..n);
                if p.is_empty() {
                    self.0.pop_front();
                }
            }
            Poll::Ready(Ok(()))
        }
    }

    fn run<T>(f: impl std::future::Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    /// A small Query, a 45-byte DataRow (over a threshold of 20), a small Sync.
    fn sequence() -> (Frame, Frame, Frame, Vec<u8>) {
        let a = Frame::new(b'Q', b"select 1\0");
        let body: Vec<u8> = (0u8..40).collect();
        let l = Frame::new(b'D', &body);
        let b = Frame::new(b'S', b"");
        let mut wire = Vec::new();
        for f in [&a, &l, &b] {
            wire.extend_from_slice(f.as_bytes());
        }
        (a, l, b, wire)
    }

    fn split_at_each(wire: &[u8]) -> Vec<VecDeque<Vec<u8>>> {
        let mut out: Vec<VecDeque<Vec<u8>>> = (0..=wire.len())
            .map(|k| {
                [wire[..k].to_vec(), wire[k..].to_vec()]
                    .into_iter()
                    .filter(|p| !p.is_empty())
                    .collect()
            })
            .collect();
        out.push(wire.iter().map(|b| vec![*b]).collect());
        out
    }

    #[test]
    fn streams_a_long_message_between_small_ones_at_every_split() {
        let (a, l, b, wire) = sequence();
        for pieces in split_at_each(&wire) {
            let mut r = FrameReader::new(Pieces(pieces), 1 << 20, BytesMut::new());
            r.set_stream_threshold(20);
            run(async {
                assert_eq!(
                    r.next_incoming().await.unwrap(),
                    Some(Incoming::Whole(a.clone()))
                );
                let Some(Incoming::Large(h)) = r.next_incoming().await.unwrap() else {
                    panic!("the long message is announced");
                };
                assert!(r.buffered_frame().unwrap().is_none());
                assert!(r.next_incoming().await.is_err(), "one message at a time");
                assert_eq!(encode_header(&h), l.as_bytes()[..5]);
                assert_eq!(r.start_body().unwrap(), h);
                let mut got = Vec::new();
                loop {
                    let c = r.body_chunk(7).await.unwrap();
                    if c.is_empty() {
                        break;
                    }
                    assert!(c.len() <= 7);
                    got.extend_from_slice(&c);
                }
                assert_eq!(got, l.body());
                assert_eq!(r.body_left(), 0);
                assert_eq!(
                    r.next_incoming().await.unwrap(),
                    Some(Incoming::Whole(b.clone()))
                );
                assert_eq!(r.next_incoming().await.unwrap(), None);
            });
        }
    }

    #[test]
    fn an_announced_message_can_be_taken_whole_or_in_exact_pieces() {
        let (a, l, b, wire) = sequence();
        for pieces in split_at_each(&wire) {
            let mut r = FrameReader::new(Pieces(pieces.clone()), 1 << 20, BytesMut::new());
            r.set_stream_threshold(20);
            run(async {
                assert_eq!(r.next().await.unwrap(), Some(a.clone()));
                assert!(matches!(
                    r.next_incoming().await.unwrap(),
                    Some(Incoming::Large(_))
                ));
                assert_eq!(r.whole().await.unwrap(), l);
                assert_eq!(r.next().await.unwrap(), Some(b.clone()));
            });
            let mut r = FrameReader::new(Pieces(pieces), 1 << 20, BytesMut::new());
            r.set_stream_threshold(20);
            run(async {
                r.next_incoming().await.unwrap();
                r.next_incoming().await.unwrap();
                r.start_body().unwrap();
                assert_eq!(r.body_exact(3).await.unwrap(), l.body()[..3]);
                assert!(r.body_exact(38).await.is_err(), "past the end of the body");
                let n = r.body_fill(10).await.unwrap();
                assert!(n >= 10);
                assert_eq!(r.body_buffered()[..10], l.body()[3..13]);
                r.body_skip(30, 4).await.unwrap();
                assert_eq!(r.body_exact(7).await.unwrap(), l.body()[33..]);
                assert_eq!(r.body_buffered(), b"", "never past the end of the body");
                assert_eq!(r.next().await.unwrap(), Some(b.clone()));
            });
        }
    }

    #[test]
    fn truncated_input_is_an_error() {
        let (_, _, _, wire) = sequence();
        // Cut inside the long message's header, and at every point of its body.
        for cut in 15..wire.len() - 5 {
            let mut r = FrameReader::new(
                Pieces(VecDeque::from([wire[..cut].to_vec()])),
                1 << 20,
                BytesMut::new(),
            );
            r.set_stream_threshold(20);
            run(async {
                r.next_incoming().await.unwrap();
                match r.next_incoming().await {
                    Err(PgError::Truncated) => assert!(cut < 15 + 5),
                    Ok(Some(Incoming::Large(_))) => {
                        r.start_body().unwrap();
                        let mut err = None;
                        for _ in 0..100 {
                            match r.body_chunk(64).await {
                                Ok(c) => assert!(!c.is_empty(), "ends before the body"),
                                Err(e) => {
                                    err = Some(e);
                                    break;
                                }
                            }
                        }
                        assert!(matches!(err, Some(PgError::Truncated)), "cut at {cut}");
                    }
                    other => panic!("cut at {cut}: {other:?}"),
                }
            });
            let mut r = FrameReader::new(
                Pieces(VecDeque::from([wire[..cut].to_vec()])),
                1 << 20,
                BytesMut::new(),
            );
            r.set_stream_threshold(20);
            run(async {
                r.next_incoming().await.unwrap();
                if let Ok(Some(Incoming::Large(_))) = r.next_incoming().await {
                    assert!(matches!(r.whole().await, Err(PgError::Truncated)));
                }
            });
        }
    }

    #[test]
    fn a_long_header_is_checked_against_the_limit_before_anything_is_buffered() {
        let mut wire = vec![b'D'];
        wire.extend_from_slice(&0x7fff_0000i32.to_be_bytes());
        let mut r = FrameReader::new(Pieces(VecDeque::from([wire])), 1 << 20, BytesMut::new());
        r.set_stream_threshold(20);
        run(async {
            assert!(matches!(
                r.next_incoming().await,
                Err(PgError::Codec(CodecError::TooLarge { .. }))
            ));
        });
        // Under the limit, a long message is announced from its header alone.
        let mut wire = vec![b'D'];
        wire.extend_from_slice(&(1i32 << 29).to_be_bytes());
        let mut r = FrameReader::new(Pieces(VecDeque::from([wire])), 1 << 30, BytesMut::new());
        r.set_stream_threshold(20);
        run(async {
            let Some(Incoming::Large(h)) = r.next_incoming().await.unwrap() else {
                panic!("announced");
            };
            assert_eq!(h.wire_len, (1 << 29) + 1);
            r.start_body().unwrap();
            assert!(matches!(r.body_chunk(64).await, Err(PgError::Truncated)));
            assert!(r.buf.capacity() < 1 << 20, "nothing reserved for the claim");
        });
    }

    #[test]
    fn without_a_threshold_every_message_is_whole() {
        let (a, l, b, wire) = sequence();
        let mut r = FrameReader::new(Pieces(VecDeque::from([wire])), 1 << 20, BytesMut::new());
        run(async {
            for f in [a, l, b] {
                assert_eq!(r.next_incoming().await.unwrap(), Some(Incoming::Whole(f)));
            }
        });
    }
}
