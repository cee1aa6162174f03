//! Line-by-line masking of streamed responses (Kubernetes watches, NDJSON, server-sent
//! events), which cannot be buffered whole: each complete line is masked as it arrives,
//! a line longer than the limit ends the stream with an error (fail closed). The target's
//! trailers follow the last line.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use hoop_core::Masker;
use http::HeaderMap;
use http::header;
use hyper::body::{Frame, Incoming, SizeHint};

use crate::body::{mask_json, mask_text};
use crate::error::BoxError;

/// True when a response is a stream of lines to mask one by one: a Kubernetes watch
/// (`watch` is the request's verb), `application/json;stream=watch`,
/// `application/x-ndjson`, `application/jsonl` or `text/event-stream`.
pub fn is_line_stream(headers: &HeaderMap, watch: bool) -> Option<bool> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())?
        .to_ascii_lowercase();
    let mime = ct.split(';').next().unwrap_or("").trim();
    let json = mime == "application/json" || mime.ends_with("+json");
    if (json && (watch || ct.contains("stream=watch")))
        || mime == "application/x-ndjson"
        || mime == "application/jsonl"
    {
        return Some(true);
    }
    (mime == "text/event-stream").then_some(false)
}

/// A body masking each line of `inner` (as JSON when `json`, else with the detectors).
pub struct LineMasked {
    inner: Incoming,
    masker: Arc<dyn Masker>,
    json: bool,
    limit: usize,
    pending: BytesMut,
    masked: Arc<AtomicU64>,
    /// The target's trailers, sent once the last line went out.
    trailers: Option<HeaderMap>,
    done: bool,
}

impl LineMasked {
    /// Wraps `inner`; the number of values masked is added to `masked` as it goes.
    pub fn new(
        inner: Incoming,
        masker: Arc<dyn Masker>,
        json: bool,
        limit: usize,
        masked: Arc<AtomicU64>,
    ) -> Self {
        LineMasked {
            inner,
            masker,
            json,
            limit,
            pending: BytesMut::new(),
            masked,
            trailers: None,
            done: false,
        }
    }

    fn mask_line(&self, line: &[u8], out: &mut BytesMut) -> Result<(), BoxError> {
        let (body, nl) = match line.strip_suffix(b"\n") {
            Some(b) => (b, &b"\n"[..]),
            None => (line, &b""[..]),
        };
        let trimmed = body.strip_suffix(b"\r").unwrap_or(body);
        let r = if self.json && !trimmed.iter().all(u8::is_ascii_whitespace) {
            mask_json(self.masker.as_ref(), trimmed)
        } else {
            mask_text(self.masker.as_ref(), trimmed)
        };
        match r.map_err(BoxError::from)? {
            Some((m, n)) => {
                self.masked.fetch_add(n, Ordering::Relaxed);
                out.extend_from_slice(&m);
                out.extend_from_slice(body.get(trimmed.len()..).unwrap_or_default());
                out.extend_from_slice(nl);
            }
            None => out.extend_from_slice(line),
        }
        Ok(())
    }

    /// Masks the complete lines in `pending`; with `all`, the rest too.
    fn drain(&mut self, all: bool) -> Result<Bytes, BoxError> {
        let mut out = BytesMut::new();
        while let Some(pos) = memchr_newline(&self.pending) {
            let line = self.pending.split_to(pos + 1);
            self.mask_line(&line, &mut out)?;
        }
        if all && !self.pending.is_empty() {
            let line = self.pending.split();
            self.mask_line(&line, &mut out)?;
        }
        if self.pending.len() > self.limit {
            return Err(BoxError::from(format!(
                "a streamed line is larger than the masking limit of {} bytes",
                self.limit
            )));
        }
        Ok(out.freeze())
    }
}

fn memchr_newline(b: &[u8]) -> Option<usize> {
    b.iter().position(|&c| c == b'\n')
}

impl hyper::body::Body for LineMasked {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        loop {
            if let Some(t) = self.trailers.take() {
                self.done = true;
                return Poll::Ready(Some(Ok(Frame::trailers(t))));
            }
            if self.done {
                return Poll::Ready(None);
            }
            match Pin::new(&mut self.inner).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Err(e))) => {
                    self.done = true;
                    return Poll::Ready(Some(Err(e.into())));
                }
                Poll::Ready(Some(Ok(frame))) => {
                    let data = match frame.into_data() {
                        Ok(data) => data,
                        Err(frame) => {
                            // Trailers end the body: the last (unterminated) line goes
                            // first, then the trailers, as received.
                            let Ok(t) = frame.into_trailers() else {
                                continue;
                            };
                            self.trailers = Some(t);
                            match self.drain(true) {
                                Ok(out) if out.is_empty() => continue,
                                Ok(out) => return Poll::Ready(Some(Ok(Frame::data(out)))),
                                Err(e) => {
                                    self.trailers = None;
                                    self.done = true;
                                    return Poll::Ready(Some(Err(e)));
                                }
                            }
                        }
                    };
                    self.pending.extend_from_slice(&data);
                    match self.drain(false) {
                        Ok(out) if out.is_empty() => continue,
                        Ok(out) => return Poll::Ready(Some(Ok(Frame::data(out)))),
                        Err(e) => {
                            self.done = true;
                            return Poll::Ready(Some(Err(e)));
                        }
                    }
                }
                Poll::Ready(None) => {
                    self.done = true;
                    return match self.drain(true) {
                        Ok(out) if out.is_empty() => Poll::Ready(None),
                        Ok(out) => Poll::Ready(Some(Ok(Frame::data(out)))),
                        Err(e) => Poll::Ready(Some(Err(e))),
                    };
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done && self.trailers.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_stream_kinds() {
        let mut h = HeaderMap::new();
        h.insert("content-type", "application/json".parse().unwrap());
        assert_eq!(is_line_stream(&h, false), None);
        assert_eq!(is_line_stream(&h, true), Some(true));
        h.insert(
            "content-type",
            "application/json;stream=watch".parse().unwrap(),
        );
        assert_eq!(is_line_stream(&h, false), Some(true));
        h.insert("content-type", "text/event-stream".parse().unwrap());
        assert_eq!(is_line_stream(&h, false), Some(false));
        h.insert("content-type", "text/plain".parse().unwrap());
        assert_eq!(is_line_stream(&h, false), None);
    }
}
