//! [`JsonlRecorder`]: one hash-chained JSON-lines audit file per session.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use async_trait::async_trait;
use tokio::io::AsyncWriteExt;
use tracing::{info, warn};

use super::chain::ChainWriter;
use super::writer::{Encoder, QueuedRecording, WriterConfig};
use super::{Discard, Event, RecordError, Recorder, Recording, SessionMeta};

/// Writes `{dir}/{session_id}.jsonl` for every session: a `session_start` line with the
/// [`SessionMeta`], one line per [`Event`] (its `type` and fields as serialised), `dropped`
/// lines where the queue overflowed (fail open), and a `session_end` line with the reason.
/// Lines are hash-chained; see [`chain`](super::chain) for the format and
/// [`verify_file`](super::verify_file) to check a file.
///
/// The directory is created (mode 0700) if missing; files are created with mode 0600 and
/// never overwritten.
///
/// ```no_run
/// use hoop_core::recording::{JsonlRecorder, WriterConfig};
///
/// let recorder = JsonlRecorder::new("/var/lib/hoop/recordings").with_writer(WriterConfig {
///     queue_capacity: 8192,
///     ..WriterConfig::default()
/// });
/// ```
#[derive(Clone, Debug)]
pub struct JsonlRecorder {
    dir: PathBuf,
    writer: WriterConfig,
}

impl JsonlRecorder {
    /// A recorder writing into `dir`, failing closed, with the default queue.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        JsonlRecorder {
            dir: dir.into(),
            writer: WriterConfig::default(),
        }
    }

    /// Sets the queue and failure behaviour.
    pub fn with_writer(mut self, writer: WriterConfig) -> Self {
        self.writer = writer;
        self
    }

    /// The directory recordings go to.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file of session `session_id`.
    pub fn path_for(&self, session_id: &crate::SessionId) -> PathBuf {
        self.dir.join(format!("{session_id}.jsonl"))
    }

    async fn open_inner(&self, meta: &SessionMeta) -> Result<Box<dyn Recording>, RecordError> {
        let path = self.path_for(&meta.session_id);
        let file = create_private(&self.dir, &path).await?;
        let mut encoder = JsonlEncoder {
            chain: ChainWriter::new(),
        };
        let mut first = Vec::with_capacity(1024);
        encoder
            .chain
            .append(meta.started_at, &Body::SessionStart(meta), &mut first)
            .map_err(RecordError::Unavailable)?;
        let mut file = file;
        file.write_all(&first).await?;
        file.flush().await?;
        Ok(Box::new(QueuedRecording::spawn(
            file.into_std().await,
            encoder,
            &self.writer,
            Some(path),
            |_| true,
        )?))
    }
}

/// Creates `dir` (0700) if needed and a new file `path` with mode 0600.
pub(crate) async fn create_private(
    dir: &Path,
    path: &Path,
) -> Result<tokio::fs::File, RecordError> {
    let mut db = tokio::fs::DirBuilder::new();
    db.recursive(true);
    #[cfg(unix)]
    db.mode(0o700);
    db.create(dir).await?;
    let mut oo = tokio::fs::OpenOptions::new();
    oo.write(true).create_new(true);
    #[cfg(unix)]
    oo.mode(0o600);
    Ok(oo.open(path).await?)
}

/// Opens `meta`'s recording with `open`; on failure, refuses (fail closed) or logs and
/// records nothing (fail open).
pub(crate) async fn open_or_discard<F>(
    fail_closed: bool,
    what: &str,
    open: F,
) -> Result<Box<dyn Recording>, RecordError>
where
    F: std::future::Future<Output = Result<Box<dyn Recording>, RecordError>>,
{
    match open.await {
        Ok(r) => Ok(r),
        Err(e) if fail_closed => Err(e),
        Err(e) => {
            warn!(error = %e, recorder = what, "recording could not be opened; session continues unrecorded (fail open)");
            Ok(Box::new(Discard))
        }
    }
}

#[async_trait]
impl Recorder for JsonlRecorder {
    async fn open(&self, meta: &SessionMeta) -> Result<Box<dyn Recording>, RecordError> {
        open_or_discard(self.writer.fail_closed, "jsonl", self.open_inner(meta)).await
    }
}

/// Entries that are not [`Event`]s.
#[derive(serde::Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Body<'a> {
    SessionStart(&'a SessionMeta),
    Dropped { count: u64 },
    SessionEnd { reason: &'a str },
}

struct JsonlEncoder {
    chain: ChainWriter,
}

impl Encoder for JsonlEncoder {
    fn event(&mut self, time: SystemTime, event: &Event, out: &mut Vec<u8>) -> Result<(), String> {
        self.chain.append(time, event, out)
    }

    fn dropped(&mut self, time: SystemTime, count: u64, out: &mut Vec<u8>) -> Result<(), String> {
        self.chain.append(time, &Body::Dropped { count }, out)
    }

    fn end(&mut self, time: SystemTime, reason: &str, out: &mut Vec<u8>) -> Result<(), String> {
        self.chain.append(time, &Body::SessionEnd { reason }, out)
    }

    fn closed(&mut self, path: &str) {
        info!(
            recording = path,
            entries = self.chain.entries(),
            last_hash = self.chain.last_hash(),
            "recording closed"
        );
    }
}
