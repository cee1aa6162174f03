//! The bounded queue between a session and its recording file, and the background task
//! that drains it.
//!
//! [`Recording::record`] only timestamps the event and `try_send`s it; it never waits.
//! When the queue is full:
//!
//! - fail closed (the default): `record` returns [`RecordError::Unavailable`] and every
//!   later call does too, so the adapter ends the session;
//! - fail open: the event is dropped and counted, and the writer puts a `dropped` entry
//!   with the count in the file before the next event, so the gap is visible.
//!
//! The writer drains what is queued into one buffer, writes and flushes it (so each batch
//! reaches the kernel as whole lines), calls `sync_data` at most every
//! [`WriterConfig::sync_interval`] while there is unsynced data, and on finish writes the
//! end entry, flushes, syncs and only then answers. At each sync the writer also checks
//! that the path still names its file (a removed or replaced file counts as a write
//! error: writes to an unlinked file succeed but are lost). A write error marks the recording
//! failed: fail closed, `record` refuses from then on; fail open, it is logged and later
//! events are counted as lost.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, warn};

use super::{Event, RecordError, Recording};

/// Largest batch written at once; the rest of the queue goes in the next batch.
const MAX_BATCH: usize = 1 << 20;

/// How a file recorder queues and writes.
#[derive(Clone, Debug)]
pub struct WriterConfig {
    /// Capacity of the per-session queue, in events (default 4096).
    pub queue_capacity: usize,
    /// Whether a full queue or a write error ends the session (default `true`).
    pub fail_closed: bool,
    /// Longest time written data stays without `sync_data` (default 1 s).
    pub sync_interval: Duration,
    /// How long the writer gathers events after the first one of a batch before writing
    /// them together (default 2 ms): fewer, larger writes under load.
    pub batch_window: Duration,
    /// How long [`Recording::record_async`] waits for room in a full queue before it
    /// fails (closed) or drops (open) the event (default 10 s).
    pub max_stall: Duration,
}

impl Default for WriterConfig {
    fn default() -> Self {
        WriterConfig {
            queue_capacity: 16 * 1024,
            fail_closed: true,
            sync_interval: Duration::from_secs(1),
            batch_window: Duration::from_millis(2),
            max_stall: Duration::from_secs(10),
        }
    }
}

/// Turns events into the bytes of one file format. Implemented by the JSONL and asciicast
/// recorders.
pub(crate) trait Encoder: Send + 'static {
    /// Appends the encoding of `event` to `out` (possibly nothing).
    fn event(&mut self, time: SystemTime, event: &Event, out: &mut Vec<u8>) -> Result<(), String>;
    /// Appends a marker saying that `count` events were dropped here.
    fn dropped(&mut self, time: SystemTime, count: u64, out: &mut Vec<u8>) -> Result<(), String>;
    /// Appends the end of the recording.
    fn end(&mut self, time: SystemTime, reason: &str, out: &mut Vec<u8>) -> Result<(), String>;
    /// Called once everything is written (e.g. to log the final chain hash).
    fn closed(&mut self, _path: &str) {}
}

/// Messages to the writer.
pub(crate) enum Msg {
    Event {
        time: SystemTime,
        /// Events dropped before this one was queued.
        dropped_before: u64,
        event: Event,
    },
    Finish {
        time: SystemTime,
        reason: String,
        ack: oneshot::Sender<Result<(), String>>,
    },
}

/// State shared by the recording handle and its writer.
#[derive(Debug)]
pub(crate) struct Shared {
    fail_closed: bool,
    /// Set after a write error, or after a refused event when failing closed.
    failed: AtomicBool,
    /// Events refused at the queue.
    dropped: AtomicU64,
    /// Events accepted but not written because of a write error.
    lost: AtomicU64,
    /// Human-readable name (the file path) for logs.
    name: String,
}

/// A [`Recording`] that queues events to a background writer.
pub(crate) struct QueuedRecording {
    tx: mpsc::Sender<Msg>,
    shared: Arc<Shared>,
    wants: fn(&Event) -> bool,
    max_stall: Duration,
}

impl QueuedRecording {
    /// Starts the writer task for `file` (already holding whatever `encoder` wrote at
    /// open time) and returns the recording handle. `path`, when given, is checked to
    /// still name `file` at each sync. Must run inside a Tokio runtime.
    pub(crate) fn spawn<E: Encoder>(
        file: tokio::fs::File,
        encoder: E,
        config: &WriterConfig,
        path: Option<PathBuf>,
        wants: fn(&Event) -> bool,
    ) -> Self {
        let name = path
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| String::from("recording"));
        let (tx, rx) = mpsc::channel(config.queue_capacity.max(1));
        let shared = Arc::new(Shared {
            fail_closed: config.fail_closed,
            failed: AtomicBool::new(false),
            dropped: AtomicU64::new(0),
            lost: AtomicU64::new(0),
            name,
        });
        let task = Writer {
            file,
            encoder,
            rx,
            shared: shared.clone(),
            sync_interval: config.sync_interval.max(Duration::from_millis(1)),
            batch_window: config.batch_window,
            syncing: None,
            reported_dropped: 0,
            broken: None,
            path,
            identity: None,
        };
        tokio::spawn(task.run());
        QueuedRecording {
            tx,
            shared,
            wants,
            max_stall: config.max_stall,
        }
    }

    /// The queue message for `event`: `None` when this recording does not keep such
    /// events, an error when it failed earlier and fails closed.
    fn message(&self, event: Event) -> Result<Option<Msg>, RecordError> {
        if !(self.wants)(&event) {
            return Ok(None);
        }
        if self.shared.fail_closed && self.shared.failed.load(Ordering::Acquire) {
            return Err(RecordError::Unavailable(format!(
                "{}: recording failed earlier",
                self.shared.name
            )));
        }
        Ok(Some(Msg::Event {
            time: SystemTime::now(),
            dropped_before: self.shared.dropped.load(Ordering::Relaxed),
            event,
        }))
    }

    fn refuse(&self, why: &str) -> Result<(), RecordError> {
        self.shared.dropped.fetch_add(1, Ordering::Relaxed);
        if self.shared.fail_closed {
            self.shared.failed.store(true, Ordering::Release);
            Err(RecordError::Unavailable(format!(
                "{}: {why}",
                self.shared.name
            )))
        } else {
            Ok(())
        }
    }
}

#[async_trait]
impl Recording for QueuedRecording {
    fn record(&self, event: Event) -> Result<(), RecordError> {
        let Some(msg) = self.message(event)? else {
            return Ok(());
        };
        match self.tx.try_send(msg) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(_)) => self.refuse("recording queue full"),
            Err(mpsc::error::TrySendError::Closed(_)) => self.refuse("recording writer stopped"),
        }
    }

    async fn record_async(&self, event: Event) -> Result<(), RecordError> {
        let Some(msg) = self.message(event)? else {
            return Ok(());
        };
        match tokio::time::timeout(self.max_stall, self.tx.send(msg)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => self.refuse("recording writer stopped"),
            Err(_) => self.refuse("recording queue full for too long"),
        }
    }

    async fn finish(self: Box<Self>, reason: &str) -> Result<(), RecordError> {
        let (ack, done) = oneshot::channel();
        let msg = Msg::Finish {
            time: SystemTime::now(),
            reason: reason.to_owned(),
            ack,
        };
        let stopped =
            || RecordError::Unavailable(format!("{}: recording writer stopped", self.shared.name));
        self.tx.send(msg).await.map_err(|_| stopped())?;
        match done.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(RecordError::Io(std::io::Error::other(e))),
            Err(_) => Err(stopped()),
        }
    }
}

struct Writer<E> {
    file: tokio::fs::File,
    encoder: E,
    rx: mpsc::Receiver<Msg>,
    shared: Arc<Shared>,
    sync_interval: Duration,
    batch_window: Duration,
    /// A `sync_data` running beside the writes (on a clone of the file handle).
    syncing: Option<tokio::task::JoinHandle<Result<(), String>>>,
    reported_dropped: u64,
    /// The first write error, after which nothing more is written.
    broken: Option<String>,
    /// The file's path, to check it is still there.
    #[cfg_attr(not(unix), allow(dead_code))]
    path: Option<PathBuf>,
    /// Path, device and inode of the file being written.
    #[cfg_attr(not(unix), allow(dead_code))]
    identity: Option<(PathBuf, u64, u64)>,
}

impl<E: Encoder> Writer<E> {
    async fn run(mut self) {
        #[cfg(unix)]
        if let Some(path) = self.path.take() {
            use std::os::unix::fs::MetadataExt;
            if let Ok(m) = self.file.metadata().await {
                self.identity = Some((path, m.dev(), m.ino()));
            }
        }
        let mut buf = Vec::with_capacity(16 * 1024);
        let mut dirty = false;
        let mut tick = tokio::time::interval(self.sync_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let msg = tokio::select! {
                m = self.rx.recv() => m,
                _ = tick.tick(), if dirty => {
                    dirty = false;
                    self.start_sync().await;
                    continue;
                }
            };
            // Gather what arrives within the batch window: one write for many events.
            if !self.batch_window.is_zero() && msg.is_some() {
                tokio::time::sleep(self.batch_window).await;
            }
            let mut finish = match msg {
                Some(m) => self.encode(m, &mut buf),
                None => {
                    // Every handle was dropped without `finish`: close the file properly.
                    let (ack, _) = oneshot::channel();
                    self.encode(
                        Msg::Finish {
                            time: SystemTime::now(),
                            reason: String::from("recording closed without finish"),
                            ack,
                        },
                        &mut buf,
                    )
                }
            };
            while finish.is_none() && buf.len() < MAX_BATCH {
                match self.rx.try_recv() {
                    Ok(m) => finish = self.encode(m, &mut buf),
                    Err(_) => break,
                }
            }
            if !buf.is_empty() {
                self.write(&buf).await;
                buf.clear();
                dirty = true;
            }
            if let Some(ack) = finish {
                self.finish_sync().await;
                self.sync().await;
                self.encoder.closed(&self.shared.name);
                let result = match &self.broken {
                    None => Ok(()),
                    Some(e) => Err(e.clone()),
                };
                let _ = ack.send(result);
                return;
            }
        }
    }

    /// Encodes one message into `buf`; returns the acknowledgement of a finish.
    fn encode(
        &mut self,
        msg: Msg,
        buf: &mut Vec<u8>,
    ) -> Option<oneshot::Sender<Result<(), String>>> {
        match msg {
            Msg::Event {
                time,
                dropped_before,
                event,
            } => {
                self.mark_dropped(time, dropped_before, buf);
                if self.broken.is_some() {
                    self.shared.lost.fetch_add(1, Ordering::Relaxed);
                    return None;
                }
                let mark = buf.len();
                if let Err(e) = self.encoder.event(time, &event, buf) {
                    buf.truncate(mark);
                    warn!(recording = %self.shared.name, error = %e, "event not encodable, recorded as dropped");
                    let _ = self.encoder.dropped(time, 1, buf);
                }
                None
            }
            Msg::Finish { time, reason, ack } => {
                let total = self.shared.dropped.load(Ordering::Relaxed);
                self.mark_dropped(time, total, buf);
                if self.broken.is_none() {
                    if let Err(e) = self.encoder.end(time, &reason, buf) {
                        warn!(recording = %self.shared.name, error = %e, "end entry not encodable");
                    }
                }
                Some(ack)
            }
        }
    }

    fn mark_dropped(&mut self, time: SystemTime, dropped_so_far: u64, buf: &mut Vec<u8>) {
        if dropped_so_far > self.reported_dropped {
            let n = dropped_so_far - self.reported_dropped;
            self.reported_dropped = dropped_so_far;
            warn!(recording = %self.shared.name, dropped = n, "recording queue was full: events dropped");
            if self.broken.is_none() {
                if let Err(e) = self.encoder.dropped(time, n, buf) {
                    warn!(recording = %self.shared.name, error = %e, "dropped marker not encodable");
                }
            }
        }
    }

    /// Starts `sync_data` on a clone of the file handle beside the writes, so a slow
    /// disk does not stop the draining of the queue; the previous one is collected first
    /// (at most one runs at a time).
    async fn start_sync(&mut self) {
        self.finish_sync().await;
        if self.broken.is_some() {
            return;
        }
        match self.file.try_clone().await {
            Ok(clone) => {
                self.syncing = Some(tokio::spawn(async move {
                    clone.sync_data().await.map_err(|e| format!("sync: {e}"))
                }));
            }
            // No handle to spare: sync inline.
            Err(_) => self.sync().await,
        }
        self.check_identity().await;
    }

    /// Waits for a background sync, if any, and records its failure.
    async fn finish_sync(&mut self) {
        if let Some(h) = self.syncing.take() {
            match h.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => self.fail(e),
                Err(_) => self.fail(String::from("sync task failed")),
            }
        }
    }

    /// `sync_data`, then checks that the path still names this file (not removed or
    /// replaced: writes to an unlinked file succeed but are lost).
    async fn sync(&mut self) {
        if self.broken.is_some() {
            return;
        }
        if let Err(e) = self.file.sync_data().await {
            self.fail(format!("sync: {e}"));
            return;
        }
        self.check_identity().await;
    }

    /// Checks that the path still names this file.
    async fn check_identity(&mut self) {
        if self.broken.is_some() {
            return;
        }
        #[cfg(unix)]
        if let Some((path, dev, ino)) = &self.identity {
            use std::os::unix::fs::MetadataExt;
            let same = match tokio::fs::metadata(path).await {
                Ok(m) => m.dev() == *dev && m.ino() == *ino,
                Err(_) => false,
            };
            if !same {
                self.fail(String::from("recording file was removed or replaced"));
            }
        }
    }

    async fn write(&mut self, buf: &[u8]) {
        if self.broken.is_some() {
            return;
        }
        let res = async {
            self.file.write_all(buf).await?;
            self.file.flush().await
        }
        .await;
        match res {
            Ok(()) => {
                debug!(recording = %self.shared.name, bytes = buf.len(), "recording batch written")
            }
            Err(e) => self.fail(format!("write: {e}")),
        }
    }

    fn fail(&mut self, what: String) {
        warn!(
            recording = %self.shared.name,
            error = %what,
            fail_closed = self.shared.fail_closed,
            "recording write failed; nothing more is written to this recording"
        );
        self.shared.failed.store(true, Ordering::Release);
        if self.broken.is_none() {
            self.broken = Some(what);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Lines;

    impl Encoder for Lines {
        fn event(&mut self, _: SystemTime, e: &Event, out: &mut Vec<u8>) -> Result<(), String> {
            out.extend_from_slice(format!("{e:?}\n").as_bytes());
            Ok(())
        }
        fn dropped(&mut self, _: SystemTime, n: u64, out: &mut Vec<u8>) -> Result<(), String> {
            out.extend_from_slice(format!("dropped {n}\n").as_bytes());
            Ok(())
        }
        fn end(&mut self, _: SystemTime, r: &str, out: &mut Vec<u8>) -> Result<(), String> {
            out.extend_from_slice(format!("end {r}\n").as_bytes());
            Ok(())
        }
    }

    fn note() -> Event {
        Event::Error {
            message: "x".into(),
        }
    }

    #[tokio::test]
    async fn write_error_fails_closed() {
        // /dev/full refuses every write with ENOSPC, even for root.
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .await
            .unwrap();
        let rec = QueuedRecording::spawn(file, Lines, &WriterConfig::default(), None, |_| true);
        rec.record(note()).unwrap();
        let mut refused = false;
        for _ in 0..500 {
            tokio::time::sleep(Duration::from_millis(10)).await;
            if rec.record(note()).is_err() {
                refused = true;
                break;
            }
        }
        assert!(
            refused,
            "a fail-closed recording must refuse after a write error"
        );
        let err = Box::new(rec).finish("done").await.unwrap_err();
        assert!(err.to_string().contains("write"), "{err}");
    }

    #[tokio::test]
    async fn removed_file_fails_closed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.log");
        let file = tokio::fs::File::create(&path).await.unwrap();
        let config = WriterConfig {
            sync_interval: Duration::from_millis(20),
            ..WriterConfig::default()
        };
        let rec = QueuedRecording::spawn(file, Lines, &config, Some(path.clone()), |_| true);
        rec.record(note()).unwrap();
        // Let the writer record its file's identity and write the first batch.
        for _ in 0..500 {
            if std::fs::metadata(&path).unwrap().len() > 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        std::fs::remove_file(&path).unwrap();
        let mut refused = false;
        for _ in 0..500 {
            tokio::time::sleep(Duration::from_millis(10)).await;
            if rec.record(note()).is_err() {
                refused = true;
                break;
            }
        }
        assert!(refused, "writing into a removed file must fail closed");
        let err = Box::new(rec).finish("done").await.unwrap_err();
        assert!(err.to_string().contains("removed"), "{err}");
    }

    #[tokio::test]
    async fn write_error_fail_open_keeps_accepting() {
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .await
            .unwrap();
        let config = WriterConfig {
            fail_closed: false,
            ..WriterConfig::default()
        };
        let rec = QueuedRecording::spawn(file, Lines, &config, None, |_| true);
        for _ in 0..50 {
            rec.record(note()).unwrap();
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        assert!(rec.shared.failed.load(Ordering::Acquire));
        assert!(rec.shared.lost.load(Ordering::Relaxed) > 0);
        assert!(Box::new(rec).finish("done").await.is_err());
    }
}
