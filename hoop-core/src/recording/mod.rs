//! The [`Recorder`] trait: per-session recordings and the audit trail.
//!
//! Writing never blocks the relay: [`Recording::record`] enqueues and returns. When a
//! recording fails and the recorder is configured to fail closed, `record` returns an
//! error and the adapter ends the session.
//!
//! Built-in recorders:
//!
//! - [`JsonlRecorder`]: one JSON-lines audit file per session with a SHA-256 hash chain
//!   over its lines; [`verify_file`] checks a recording and says where it was changed;
//! - [`AsciicastRecorder`]: an asciicast v2 file of a terminal session, for replay with
//!   any asciinema player;
//! - [`TeeRecorder`]: fans a session out to several recorders (audit + replay).
//!
//! Both file recorders write through a bounded queue to a background task
//! ([`WriterConfig`]), so [`Recording::record`] never blocks the relay.

use std::net::SocketAddr;
use std::time::SystemTime;

use async_trait::async_trait;

use crate::{ActionClass, Identity, SessionId};

pub mod asciicast;
pub mod chain;
pub mod jsonl;
pub mod tee;
pub mod writer;

pub use asciicast::AsciicastRecorder;
pub use chain::{VerifyError, VerifyReport, VerifyWarning, verify, verify_file};
pub use jsonl::JsonlRecorder;
pub use tee::TeeRecorder;
pub use writer::WriterConfig;

/// What is known about a session when its recording opens.
#[derive(Clone, Debug, serde::Serialize)]
pub struct SessionMeta {
    /// The session.
    pub session_id: SessionId,
    /// Who (already authenticated).
    pub identity: Identity,
    /// Resource name.
    pub resource: String,
    /// Protocol (`postgres`, `ssh`, ...).
    pub protocol: String,
    /// The client's address.
    pub client: SocketAddr,
    /// When the session started.
    #[serde(with = "time_serde")]
    pub started_at: SystemTime,
}

/// One event of a session.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Event {
    /// A command the user sent, with the policy's decision.
    Command {
        /// Statement / request line / exec line.
        text: String,
        /// Its class.
        class: ActionClass,
        /// `allow`, `deny` or `review`.
        decision: String,
        /// The reason of a deny or review.
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// How a command ended.
    CommandResult {
        /// Milliseconds from forwarding to completion.
        duration_ms: u64,
        /// Rows / records / bytes returned, where the protocol says.
        #[serde(skip_serializing_if = "Option::is_none")]
        rows: Option<u64>,
        /// Values masked in the result.
        masked_fields: u64,
        /// Error message from the target, if it failed.
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<String>,
        /// The protocol's numeric result, where it has one (the HTTP status code).
        #[serde(skip_serializing_if = "Option::is_none")]
        status: Option<i32>,
        /// Bytes the client sent with the command (an HTTP request body), where the
        /// protocol says.
        #[serde(skip_serializing_if = "Option::is_none")]
        bytes_in: Option<u64>,
    },
    /// A review moved (requested, approved, rejected, expired, granted).
    Approval {
        /// Review id.
        review_id: String,
        /// `requested`, `approved`, `rejected`, `expired`, `granted`.
        state: String,
        /// Reviewer subject, for a verdict.
        #[serde(skip_serializing_if = "Option::is_none")]
        reviewer: Option<String>,
        /// Reason given.
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// Terminal output (`o`) or input (`i`) of an interactive session, or a resize (`r`,
    /// data `COLSxROWS`).
    Terminal {
        /// `o`, `i` or `r`.
        stream: char,
        /// UTF-8 text (lossy for invalid sequences).
        data: String,
    },
    /// A protocol-specific event (e.g. an HTTP upgrade, a cancel request).
    Note {
        /// Short kind.
        kind: String,
        /// Details.
        detail: serde_json::Value,
    },
    /// An error in the session (upstream TLS refusal, protocol error).
    Error {
        /// What went wrong (never contains a secret).
        message: String,
    },
    /// The session ended.
    End {
        /// Why (`client closed`, `killed by admin`, `upstream closed`, an error).
        reason: String,
    },
}

/// Why recording failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    /// Writing to the storage failed.
    #[error("recording I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The recording queue was full or closed and the recorder fails closed.
    #[error("recording unavailable: {0}")]
    Unavailable(String),
}

/// Opens recordings for sessions.
#[async_trait]
pub trait Recorder: Send + Sync {
    /// Opens the recording of a session; its first entry says who, what, from where.
    /// An error here refuses the session when the recorder fails closed.
    async fn open(&self, meta: &SessionMeta) -> Result<Box<dyn Recording>, RecordError>;
}

/// The recording of one session.
#[async_trait]
pub trait Recording: Send + Sync {
    /// Appends an event. Never blocks; an error means the session must end (fail closed).
    fn record(&self, event: Event) -> Result<(), RecordError>;

    /// Appends an event, waiting (asynchronously, bounded) for room when the queue is
    /// full instead of refusing at once: a session slows down to its recorder's pace
    /// during a short storage stall rather than being ended. Adapters call it where they
    /// can await (deciding a command, between messages). The default calls
    /// [`Recording::record`].
    async fn record_async(&self, event: Event) -> Result<(), RecordError> {
        self.record(event)
    }

    /// Records the end and waits until everything is written.
    async fn finish(self: Box<Self>, reason: &str) -> Result<(), RecordError>;
}

/// A recorder that keeps nothing (for embedding where another audit path exists).
#[derive(Debug, Default, Clone, Copy)]
pub struct NoRecording;

/// The recording of [`NoRecording`], also used by fail-open recorders that could not
/// open their storage.
pub(crate) struct Discard;

#[async_trait]
impl Recording for Discard {
    fn record(&self, _event: Event) -> Result<(), RecordError> {
        Ok(())
    }
    async fn finish(self: Box<Self>, _reason: &str) -> Result<(), RecordError> {
        Ok(())
    }
}

#[async_trait]
impl Recorder for NoRecording {
    async fn open(&self, _meta: &SessionMeta) -> Result<Box<dyn Recording>, RecordError> {
        Ok(Box::new(Discard))
    }
}

/// RFC 3339 serialisation of `SystemTime` for recordings.
pub mod time_serde {
    use std::time::SystemTime;

    /// Formats `t` as RFC 3339 with milliseconds, UTC.
    pub fn format(t: SystemTime) -> String {
        let dt = time::OffsetDateTime::from(t);
        dt.format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_else(|_| String::from("1970-01-01T00:00:00Z"))
    }

    /// Formats `t` as RFC 3339 with exactly three fractional digits (milliseconds), UTC,
    /// e.g. `2026-01-02T03:04:05.678Z`.
    pub fn format_ms(t: SystemTime) -> String {
        const FMT: &[time::format_description::BorrowedFormatItem<'static>] = time::macros::format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
        );
        time::OffsetDateTime::from(t)
            .format(FMT)
            .unwrap_or_else(|_| String::from("1970-01-01T00:00:00.000Z"))
    }

    /// Serde `serialize_with` helper.
    pub fn serialize<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format(*t))
    }
}
