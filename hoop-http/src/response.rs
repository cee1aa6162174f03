//! Responses the gateway makes itself, and the body wrapper that records a response
//! once it has been sent.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use hoop_core::Event;
use hoop_core::sequence::Authorized;
use http::{Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::{Body as _, Frame, SizeHint};
use tracing::warn;

use crate::error::BoxError;
use crate::upstream::{Body, Pool, Sender};

/// An empty body.
pub(crate) fn empty() -> Body {
    Full::new(Bytes::new())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// A body of `bytes`.
pub(crate) fn full(bytes: Bytes) -> Body {
    Full::new(bytes)
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// A JSON error response: `{"error": kind, "reason": reason[, "review_id": id]}`.
pub(crate) fn error_response(
    status: StatusCode,
    kind: &str,
    reason: &str,
    review_id: Option<&str>,
) -> Response<Body> {
    let mut v = serde_json::json!({ "error": kind, "reason": reason });
    if let (Some(id), Some(map)) = (review_id, v.as_object_mut()) {
        map.insert("review_id".into(), serde_json::Value::String(id.to_owned()));
    }
    let body = Bytes::from(v.to_string());
    let mut resp = Response::new(full(body.clone()));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    h.insert(header::CONTENT_LENGTH, http::HeaderValue::from(body.len()));
    if status == StatusCode::UNAUTHORIZED {
        h.insert(
            header::WWW_AUTHENTICATE,
            http::HeaderValue::from_static("Bearer"),
        );
    }
    resp
}

/// What is recorded when a forwarded response ends.
pub(crate) struct Outcome {
    pub auth: Arc<Authorized>,
    pub started: Instant,
    pub status: u16,
    pub masked: u64,
    /// Values masked by a streaming masker, counted as the body goes.
    pub masked_live: Option<Arc<std::sync::atomic::AtomicU64>>,
    /// Request body bytes sent to the target so far.
    pub bytes_in: Arc<std::sync::atomic::AtomicU64>,
    /// The HTTP/1.1 connection to give back to the pool once the body was read.
    pub give_back: Option<(Arc<Pool>, Sender)>,
}

impl Outcome {
    /// Records the request's `Event::CommandResult`: its status, the bytes each way, the
    /// duration and the masked-value count, in one line (the request itself, with its
    /// decision, is the `Command` recorded before it was forwarded).
    pub(crate) fn record(self, bytes: u64, complete: bool) {
        let masked = self.masked
            + self
                .masked_live
                .as_ref()
                .map_or(0, |m| m.load(std::sync::atomic::Ordering::Relaxed));
        let recorded = self.auth.record(Event::CommandResult {
            duration_ms: u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX),
            rows: Some(bytes),
            masked_fields: masked,
            error: (!complete).then(|| String::from("response body not completed")),
            status: Some(i32::from(self.status)),
            bytes_in: Some(self.bytes_in.load(std::sync::atomic::Ordering::Relaxed)),
        });
        if let Err(e) = recorded {
            warn!(error = %e, "request could not be recorded");
        }
        if complete && let Some((pool, sender)) = self.give_back {
            pool.put(sender);
        }
    }
}

/// A response body that counts its bytes and records the request when it ends (or is
/// dropped before its end).
pub(crate) struct Recorded {
    inner: Body,
    bytes: u64,
    outcome: Option<Outcome>,
}

impl Recorded {
    pub(crate) fn new(inner: Body, outcome: Outcome) -> Self {
        Recorded {
            inner,
            bytes: 0,
            outcome: Some(outcome),
        }
    }

    fn finish(&mut self, complete: bool) {
        if let Some(o) = self.outcome.take() {
            o.record(self.bytes, complete);
        }
    }
}

impl Drop for Recorded {
    fn drop(&mut self) {
        let done = self.inner.is_end_stream();
        self.finish(done);
    }
}

impl hyper::body::Body for Recorded {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let r = Pin::new(&mut self.inner).poll_frame(cx);
        match &r {
            Poll::Ready(Some(Ok(f))) => {
                if let Some(d) = f.data_ref() {
                    self.bytes += d.len() as u64;
                }
                // Trailers end a body, whether or not it says so.
                if f.is_trailers() || self.inner.is_end_stream() {
                    self.finish(true);
                }
            }
            Poll::Ready(None) => self.finish(true),
            Poll::Ready(Some(Err(_))) => self.finish(false),
            Poll::Pending => {}
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
