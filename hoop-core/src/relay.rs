//! A bidirectional byte relay with an idle timeout and cancellation, for adapters that
//! pass bytes through unchanged (the TCP adapter, upgraded HTTP connections, tunnels).
//!
//! Each direction has one persistent buffer allocated when the relay starts; reads and
//! writes reuse it, so the pass-through path does not allocate. An end of stream on one
//! side is passed on as a half-close (the other side's write half is shut down) and the
//! other direction keeps flowing until it ends too.
//!
//! ```no_run
//! # async fn example(client: tokio::net::TcpStream, upstream: tokio::net::TcpStream) {
//! use std::time::Duration;
//! use tokio_util::sync::CancellationToken;
//!
//! let cancel = CancellationToken::new();
//! let stats = hoop_core::relay::relay(client, upstream, Duration::from_secs(300), &cancel).await;
//! println!("{} bytes up, {} down, ended: {}", stats.bytes_up, stats.bytes_down, stats.end);
//! # }
//! ```

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::{Pin, pin};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Size of each direction's buffer.
pub const RELAY_BUFFER: usize = 16 * 1024;

/// One side of a relay.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    /// The user's connection to the gateway.
    Client,
    /// The gateway's connection to the target.
    Upstream,
}

impl Side {
    /// `client` or `upstream`.
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Client => "client",
            Side::Upstream => "upstream",
        }
    }
}

/// Why a relay ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RelayEnd {
    /// Both directions reached their end of stream; the client closed first.
    ClientClosed,
    /// Both directions reached their end of stream; the upstream closed first.
    UpstreamClosed,
    /// No byte moved either way for the idle timeout.
    IdleTimeout,
    /// The cancellation token fired (operator kill or shutdown).
    Cancelled,
    /// Reading from or writing to a side failed.
    Error {
        /// The side whose socket failed.
        side: Side,
        /// What kind of failure.
        kind: io::ErrorKind,
    },
}

impl RelayEnd {
    /// A short, stable description for logs and recordings (`client closed`,
    /// `upstream closed`, `idle timeout`, `cancelled`, `client error`, `upstream error`).
    pub fn as_str(self) -> &'static str {
        match self {
            RelayEnd::ClientClosed => "client closed",
            RelayEnd::UpstreamClosed => "upstream closed",
            RelayEnd::IdleTimeout => "idle timeout",
            RelayEnd::Cancelled => "cancelled",
            RelayEnd::Error {
                side: Side::Client, ..
            } => "client error",
            RelayEnd::Error {
                side: Side::Upstream,
                ..
            } => "upstream error",
        }
    }

    /// Whether the relay ended by a normal end of stream on both directions.
    pub fn is_clean(self) -> bool {
        matches!(self, RelayEnd::ClientClosed | RelayEnd::UpstreamClosed)
    }
}

impl fmt::Display for RelayEnd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RelayEnd::Error { kind, .. } => write!(f, "{} ({kind})", self.as_str()),
            _ => f.write_str(self.as_str()),
        }
    }
}

/// What a relay moved and how it ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RelayStats {
    /// Bytes from the client to the upstream.
    pub bytes_up: u64,
    /// Bytes from the upstream to the client.
    pub bytes_down: u64,
    /// Why it ended.
    pub end: RelayEnd,
}

/// Copies bytes both ways between `client` and `upstream` until both directions have
/// ended, no byte moved for `idle_timeout`, `cancel` fires, or a socket fails.
///
/// An end of stream read from one side shuts down the write half of the other (after
/// everything read before it was written), so half-closed protocols work. On idle
/// timeout, cancellation or error the streams are left as they are: the caller drops or
/// shuts them down (it gets them back by passing `&mut` references).
pub async fn relay<C, U>(
    mut client: C,
    mut upstream: U,
    idle_timeout: Duration,
    cancel: &CancellationToken,
) -> RelayStats
where
    C: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    let mut up = OneWay::new(Side::Client, Side::Upstream);
    let mut down = OneWay::new(Side::Upstream, Side::Client);
    let mut cancelled = pin!(cancel.cancelled());
    let mut idle = pin!(tokio::time::sleep(idle_timeout));
    let mut last_activity = Instant::now();
    let mut first_closed: Option<Side> = None;

    let end = std::future::poll_fn(|cx| {
        if cancelled.as_mut().poll(cx).is_ready() {
            return Poll::Ready(RelayEnd::Cancelled);
        }
        let mut active = false;
        if !up.done {
            match up.poll_copy(
                cx,
                Pin::new(&mut client),
                Pin::new(&mut upstream),
                &mut active,
            ) {
                Poll::Ready(Ok(())) => up.done = true,
                Poll::Ready(Err((side, e))) => {
                    return Poll::Ready(RelayEnd::Error {
                        side,
                        kind: e.kind(),
                    });
                }
                Poll::Pending => {}
            }
        }
        if !down.done {
            match down.poll_copy(
                cx,
                Pin::new(&mut upstream),
                Pin::new(&mut client),
                &mut active,
            ) {
                Poll::Ready(Ok(())) => down.done = true,
                Poll::Ready(Err((side, e))) => {
                    return Poll::Ready(RelayEnd::Error {
                        side,
                        kind: e.kind(),
                    });
                }
                Poll::Pending => {}
            }
        }
        if first_closed.is_none() {
            if up.read_done {
                first_closed = Some(Side::Client);
            } else if down.read_done {
                first_closed = Some(Side::Upstream);
            }
        }
        if up.done && down.done {
            return Poll::Ready(match first_closed {
                Some(Side::Upstream) => RelayEnd::UpstreamClosed,
                _ => RelayEnd::ClientClosed,
            });
        }
        if active {
            // Only remember the time; the timer is moved when it fires (cheaper than
            // resetting it on every read).
            last_activity = Instant::now();
        }
        loop {
            ready!(idle.as_mut().poll(cx));
            let deadline = last_activity + idle_timeout;
            if deadline <= Instant::now() {
                return Poll::Ready(RelayEnd::IdleTimeout);
            }
            idle.as_mut().reset(deadline);
        }
    })
    .await;

    RelayStats {
        bytes_up: up.bytes,
        bytes_down: down.bytes,
        end,
    }
}

/// One direction of a relay with its persistent buffer.
struct OneWay {
    from: Side,
    to: Side,
    buf: Box<[u8]>,
    pos: usize,
    cap: usize,
    read_done: bool,
    need_flush: bool,
    done: bool,
    bytes: u64,
}

type SideError = (Side, io::Error);

impl OneWay {
    fn new(from: Side, to: Side) -> Self {
        OneWay {
            from,
            to,
            buf: vec![0u8; RELAY_BUFFER].into_boxed_slice(),
            pos: 0,
            cap: 0,
            read_done: false,
            need_flush: false,
            done: false,
            bytes: 0,
        }
    }

    /// Moves bytes from `reader` to `writer`. Ready(Ok) once the reader's end of stream
    /// has been passed on as a shutdown of the writer.
    fn poll_copy<R, W>(
        &mut self,
        cx: &mut Context<'_>,
        mut reader: Pin<&mut R>,
        mut writer: Pin<&mut W>,
        active: &mut bool,
    ) -> Poll<Result<(), SideError>>
    where
        R: AsyncRead + ?Sized,
        W: AsyncWrite + ?Sized,
    {
        loop {
            if self.pos == self.cap && !self.read_done {
                let mut rb = ReadBuf::new(&mut self.buf);
                match reader.as_mut().poll_read(cx, &mut rb) {
                    Poll::Ready(Ok(())) => {
                        let n = rb.filled().len();
                        if n == 0 {
                            self.read_done = true;
                        } else {
                            self.pos = 0;
                            self.cap = n;
                            self.bytes += n as u64;
                            *active = true;
                        }
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Err((self.from, e))),
                    Poll::Pending => {
                        // Nothing more to read now: push out what was written.
                        if self.need_flush {
                            match writer.as_mut().poll_flush(cx) {
                                Poll::Ready(Ok(())) => self.need_flush = false,
                                Poll::Ready(Err(e)) => return Poll::Ready(Err((self.to, e))),
                                Poll::Pending => {}
                            }
                        }
                        return Poll::Pending;
                    }
                }
            }
            while self.pos < self.cap {
                let chunk = self.buf.get(self.pos..self.cap).unwrap_or(&[]);
                let n = ready!(writer.as_mut().poll_write(cx, chunk)).map_err(|e| (self.to, e))?;
                if n == 0 {
                    return Poll::Ready(Err((
                        self.to,
                        io::Error::new(io::ErrorKind::WriteZero, "write returned 0 bytes"),
                    )));
                }
                self.pos += n;
                self.need_flush = true;
                *active = true;
            }
            if self.read_done {
                ready!(writer.as_mut().poll_flush(cx)).map_err(|e| (self.to, e))?;
                self.need_flush = false;
                ready!(writer.as_mut().poll_shutdown(cx)).map_err(|e| (self.to, e))?;
                return Poll::Ready(Ok(()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn copies_both_ways_and_half_closes() {
        let (client, gw_client) = tokio::io::duplex(1024);
        let (gw_up, mut upstream) = tokio::io::duplex(1024);
        let cancel = CancellationToken::new();
        let task =
            tokio::spawn(
                async move { relay(gw_client, gw_up, Duration::from_secs(30), &cancel).await },
            );
        // Echo server on the upstream side, in its own task.
        let echo = tokio::spawn(async move {
            let mut buf = [0u8; 100];
            let mut total = 0u64;
            loop {
                let n = upstream.read(&mut buf).await.unwrap();
                if n == 0 {
                    break;
                }
                total += n as u64;
                upstream.write_all(&buf[..n]).await.unwrap();
            }
            upstream.write_all(b"bye").await.unwrap();
            upstream.shutdown().await.unwrap();
            total
        });
        let payload = vec![7u8; 100_000];
        let p2 = payload.clone();
        let (mut cr, mut cw) = tokio::io::split(client);
        let writer = tokio::spawn(async move {
            cw.write_all(&p2).await.unwrap();
            cw.shutdown().await.unwrap();
        });
        let mut got = Vec::new();
        cr.read_to_end(&mut got).await.unwrap();
        writer.await.unwrap();
        assert_eq!(got.len(), payload.len() + 3);
        assert!(got.ends_with(b"bye"));
        assert_eq!(echo.await.unwrap(), 100_000);
        let stats = task.await.unwrap();
        assert_eq!(stats.bytes_up, 100_000);
        assert_eq!(stats.bytes_down, 100_003);
        assert_eq!(stats.end, RelayEnd::ClientClosed);
    }

    #[tokio::test]
    async fn upstream_close_first_is_reported() {
        let (mut client, gw_client) = tokio::io::duplex(1024);
        let (gw_up, mut upstream) = tokio::io::duplex(1024);
        let cancel = CancellationToken::new();
        let task =
            tokio::spawn(
                async move { relay(gw_client, gw_up, Duration::from_secs(30), &cancel).await },
            );
        upstream.write_all(b"hello").await.unwrap();
        upstream.shutdown().await.unwrap();
        let mut got = Vec::new();
        client.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"hello");
        // The client can still send after the upstream closed its half.
        client.write_all(b"late").await.unwrap();
        client.shutdown().await.unwrap();
        let mut late = Vec::new();
        upstream.read_to_end(&mut late).await.unwrap();
        assert_eq!(late, b"late");
        let stats = task.await.unwrap();
        assert_eq!(stats.end, RelayEnd::UpstreamClosed);
        assert_eq!((stats.bytes_up, stats.bytes_down), (4, 5));
    }

    // On the paused test clock: the relay's timer and the activity below use the same
    // virtual time, so a busy machine cannot stretch a 0.4 s gap past the idle timeout.
    #[tokio::test(start_paused = true)]
    async fn idle_timeout_ends_a_quiet_relay_but_not_an_active_one() {
        let (mut client, gw_client) = tokio::io::duplex(1024);
        let (gw_up, mut upstream) = tokio::io::duplex(1024);
        let cancel = CancellationToken::new();
        let task =
            tokio::spawn(
                async move { relay(gw_client, gw_up, Duration::from_secs(2), &cancel).await },
            );
        // Activity every 0.4 s keeps it alive well past 2 s.
        for _ in 0..8 {
            tokio::time::sleep(Duration::from_millis(400)).await;
            client.write_all(b"x").await.unwrap();
            let mut b = [0u8; 1];
            upstream.read_exact(&mut b).await.unwrap();
        }
        assert!(!task.is_finished());
        let stats = task.await.unwrap();
        assert_eq!(stats.end, RelayEnd::IdleTimeout);
        assert_eq!(stats.bytes_up, 8);
    }

    #[tokio::test]
    async fn cancel_ends_the_relay() {
        let (_client, gw_client) = tokio::io::duplex(1024);
        let (gw_up, _upstream) = tokio::io::duplex(1024);
        let cancel = CancellationToken::new();
        let c2 = cancel.clone();
        let task =
            tokio::spawn(
                async move { relay(gw_client, gw_up, Duration::from_secs(30), &c2).await },
            );
        cancel.cancel();
        assert_eq!(task.await.unwrap().end, RelayEnd::Cancelled);
    }

    #[test]
    fn end_texts() {
        assert_eq!(RelayEnd::IdleTimeout.to_string(), "idle timeout");
        let e = RelayEnd::Error {
            side: Side::Upstream,
            kind: io::ErrorKind::ConnectionReset,
        };
        assert!(e.to_string().starts_with("upstream error"));
        assert!(!e.is_clean());
    }
}
