//! The bounded queue between a session and its recording file, and the writer threads
//! that drain it.
//!
//! [`Recording::record`] timestamps the event and appends it to the session's queue under
//! an uncontended lock: no task is woken and no system call is made per event. One writer
//! thread per process serves every open recording: the first event of a quiet period
//! wakes it, it gathers for the batch window, then encodes and writes each session's
//! events with one `write` per session (so each batch reaches the kernel as whole lines).
//! A second thread runs `sync_data` beside the writes, at most every
//! [`WriterConfig::sync_interval`] per file while it has unsynced data, so a slow disk
//! does not stop the draining of the queues.
//!
//! When a queue is full:
//!
//! - fail closed (the default): `record` returns [`RecordError::Unavailable`] and every
//!   later call does too, so the adapter ends the session;
//! - fail open: the event is dropped and counted, and the writer puts a `dropped` entry
//!   with the count in the file before the next event, so the gap is visible.
//!
//! [`Recording::record_async`] instead waits (up to [`WriterConfig::max_stall`]) for the
//! writer to make room. On finish the writer writes the end entry, syncs and only then
//! answers. At each sync the path is checked to still name its file (a removed or replaced
//! file counts as a write error: writes to an unlinked file succeed but are lost). A write
//! error marks the recording failed: fail closed, `record` refuses from then on; fail
//! open, it is logged and later events are counted as lost.

use std::collections::VecDeque;
use std::fs::File;
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError, mpsc};
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use tokio::sync::{Notify, oneshot};
use tracing::{debug, warn};

use super::{Event, RecordError, Recording};

/// Largest batch written at once; the rest of the queue goes in the next write.
const MAX_BATCH: usize = 1 << 20;

/// How a file recorder queues and writes.
#[derive(Clone, Debug)]
pub struct WriterConfig {
    /// Capacity of the per-session queue, in events (default 16384).
    pub queue_capacity: usize,
    /// Whether a full queue or a write error ends the session (default `true`).
    pub fail_closed: bool,
    /// Longest time written data stays without `sync_data` (default 1 s).
    pub sync_interval: Duration,
    /// How long the writer gathers events after the first one of a quiet period before
    /// writing them (default 10 ms): one wake-up and one write per session for many
    /// events under load. Events reach the file within about this time.
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
            batch_window: Duration::from_millis(10),
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

/// The answer to a finish: `Err` with the first write or sync error.
type Ack = oneshot::Sender<Result<(), String>>;

/// What a session queues for the writer.
enum Msg {
    Event {
        time: SystemTime,
        /// Events dropped before this one was queued.
        dropped_before: u64,
        event: Event,
    },
    Finish {
        time: SystemTime,
        reason: String,
        /// `None` when the handle was dropped without `finish`.
        ack: Option<Ack>,
    },
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// State shared by a recording handle and the writer threads.
#[derive(Debug)]
pub(crate) struct Shared {
    fail_closed: bool,
    /// Set after a write error, or after a refused event when failing closed.
    pub(crate) failed: AtomicBool,
    /// Events refused at the queue.
    dropped: AtomicU64,
    /// Events accepted but not written because of a write error.
    pub(crate) lost: AtomicU64,
    /// Human-readable name (the file path) for logs.
    name: String,
}

/// One open recording, as the writer threads see it.
struct Slot {
    shared: Shared,
    capacity: usize,
    batch_window: Duration,
    sync_interval: Duration,
    /// Events not yet taken by the writer.
    queue: Mutex<VecDeque<Msg>>,
    /// On the writer's ready list: set by the producer that put it there, cleared by the
    /// writer before it takes the queue (so no event is left behind unscheduled).
    scheduled: AtomicBool,
    /// Wakes [`Recording::record_async`] callers waiting for room.
    room: Notify,
    /// The file; the writer writes through `&File`, the sync thread syncs it.
    file: Arc<File>,
    /// Path, device and inode of the file, to check at each sync that it is still there.
    #[cfg_attr(not(unix), allow(dead_code))]
    identity: Option<(PathBuf, u64, u64)>,
    /// The first write or sync error, after which nothing more is written.
    broken: Mutex<Option<String>>,
    is_broken: AtomicBool,
    /// The writer's side: only the writer thread locks it.
    state: Mutex<WriterSide>,
}

/// What only the writer thread touches.
struct WriterSide {
    encoder: Box<dyn Encoder>,
    reported_dropped: u64,
    /// Written since the last sync was started; when it was first written.
    unsynced_since: Option<Instant>,
    /// Finished: nothing more is written.
    done: bool,
}

impl Slot {
    fn fail(&self, what: String) {
        warn!(
            recording = %self.shared.name,
            error = %what,
            fail_closed = self.shared.fail_closed,
            "recording write failed; nothing more is written to this recording"
        );
        self.shared.failed.store(true, Ordering::Release);
        let mut b = lock(&self.broken);
        if b.is_none() {
            *b = Some(what);
        }
        self.is_broken.store(true, Ordering::Release);
    }

    fn broken(&self) -> bool {
        self.is_broken.load(Ordering::Acquire)
    }

    fn result(&self) -> Result<(), String> {
        match lock(&self.broken).as_ref() {
            None => Ok(()),
            Some(e) => Err(e.clone()),
        }
    }

    /// `sync_data`, then checks that the path still names this file.
    fn sync(&self) {
        if self.broken() {
            return;
        }
        if let Err(e) = self.file.sync_data() {
            self.fail(format!("sync: {e}"));
            return;
        }
        #[cfg(unix)]
        if let Some((path, dev, ino)) = &self.identity {
            use std::os::unix::fs::MetadataExt;
            let same = match std::fs::metadata(path) {
                Ok(m) => m.dev() == *dev && m.ino() == *ino,
                Err(_) => false,
            };
            if !same {
                self.fail(String::from("recording file was removed or replaced"));
            }
        }
    }

    fn write(&self, buf: &[u8]) {
        if self.broken() {
            return;
        }
        match (&*self.file).write_all(buf) {
            Ok(()) => {
                debug!(recording = %self.shared.name, bytes = buf.len(), "recording batch written")
            }
            Err(e) => self.fail(format!("write: {e}")),
        }
    }
}

/// Work for the sync thread.
enum SyncJob {
    Periodic(Arc<Slot>),
    Final(Arc<Slot>, Option<Ack>),
}

/// The writer threads of the process.
struct Hub {
    ready: Mutex<Ready>,
    wake: Condvar,
    syncs: Mutex<mpsc::Sender<SyncJob>>,
}

struct Ready {
    slots: Vec<Arc<Slot>>,
    /// The writer waits on `wake` (a producer must notify it).
    idle: bool,
}

/// The process's writer threads, started on first use.
fn hub() -> Result<&'static Hub, RecordError> {
    static HUB: OnceLock<Result<&'static Hub, String>> = OnceLock::new();
    match HUB.get_or_init(start_hub) {
        Ok(h) => Ok(h),
        Err(e) => Err(RecordError::Unavailable(e.clone())),
    }
}

fn start_hub() -> Result<&'static Hub, String> {
    let (tx, rx) = mpsc::channel();
    let hub: &'static Hub = Box::leak(Box::new(Hub {
        ready: Mutex::new(Ready {
            slots: Vec::new(),
            idle: false,
        }),
        wake: Condvar::new(),
        syncs: Mutex::new(tx),
    }));
    std::thread::Builder::new()
        .name(String::from("hoop-rec-sync"))
        .spawn(move || sync_thread(rx))
        .map_err(|e| format!("cannot start the recording sync thread: {e}"))?;
    std::thread::Builder::new()
        .name(String::from("hoop-rec-write"))
        .spawn(move || writer_thread(hub))
        .map_err(|e| format!("cannot start the recording writer thread: {e}"))?;
    Ok(hub)
}

impl Hub {
    fn schedule(&self, slot: &Arc<Slot>) {
        if slot.scheduled.swap(true, Ordering::AcqRel) {
            return;
        }
        let mut r = lock(&self.ready);
        r.slots.push(slot.clone());
        if r.idle {
            r.idle = false;
            self.wake.notify_one();
        }
    }

    fn sync(&self, job: SyncJob) {
        if let Err(mpsc::SendError(job)) = lock(&self.syncs).send(job) {
            // The sync thread is gone (cannot happen short of a panic there): sync here.
            run_sync(job);
        }
    }
}

fn sync_thread(rx: mpsc::Receiver<SyncJob>) {
    while let Ok(job) = rx.recv() {
        run_sync(job);
    }
}

fn run_sync(job: SyncJob) {
    match job {
        SyncJob::Periodic(slot) => slot.sync(),
        SyncJob::Final(slot, ack) => {
            slot.sync();
            if let Some(ack) = ack {
                let _ = ack.send(slot.result());
            }
        }
    }
}

fn writer_thread(hub: &'static Hub) {
    let mut buf = Vec::with_capacity(64 * 1024);
    // Files written since their last sync.
    let mut unsynced: Vec<Arc<Slot>> = Vec::new();
    loop {
        let window = {
            let mut r = lock(&hub.ready);
            while r.slots.is_empty() {
                let next = unsynced.iter().filter_map(sync_deadline).min();
                r.idle = true;
                r = match next {
                    None => hub.wake.wait(r).unwrap_or_else(PoisonError::into_inner),
                    Some(at) => {
                        let wait = at.saturating_duration_since(Instant::now());
                        if wait.is_zero() {
                            break;
                        }
                        let (g, t) = hub
                            .wake
                            .wait_timeout(r, wait)
                            .unwrap_or_else(PoisonError::into_inner);
                        if t.timed_out() && g.slots.is_empty() {
                            r = g;
                            break;
                        }
                        g
                    }
                };
            }
            r.idle = false;
            r.slots.iter().map(|s| s.batch_window).min()
        };
        // Gather what arrives within the batch window: one write per session for many
        // events.
        if let Some(w) = window
            && !w.is_zero()
        {
            std::thread::sleep(w);
        }
        let slots = std::mem::take(&mut lock(&hub.ready).slots);
        for slot in slots {
            drain(hub, &slot, &mut buf, &mut unsynced);
        }
        let now = Instant::now();
        unsynced.retain(|slot| {
            let due = sync_deadline(slot).is_none_or(|at| at <= now);
            if due {
                let mut st = lock(&slot.state);
                let was = st.unsynced_since.take().is_some();
                drop(st);
                if was {
                    hub.sync(SyncJob::Periodic(slot.clone()));
                }
            }
            !due
        });
    }
}

/// When `slot`'s unsynced data must be synced (`None`: nothing unsynced).
fn sync_deadline(slot: &Arc<Slot>) -> Option<Instant> {
    lock(&slot.state)
        .unsynced_since
        .map(|t| t + slot.sync_interval)
}

/// Takes `slot`'s queue, encodes and writes it.
fn drain(hub: &Hub, slot: &Arc<Slot>, buf: &mut Vec<u8>, unsynced: &mut Vec<Arc<Slot>>) {
    slot.scheduled.store(false, Ordering::Release);
    let msgs = std::mem::take(&mut *lock(&slot.queue));
    slot.room.notify_waiters();
    if msgs.is_empty() {
        return;
    }
    let mut st = lock(&slot.state);
    if st.done {
        return;
    }
    buf.clear();
    let mut finish = None;
    for msg in msgs {
        match msg {
            Msg::Event {
                time,
                dropped_before,
                event,
            } => {
                mark_dropped(slot, &mut st, time, dropped_before, buf);
                if slot.broken() {
                    slot.shared.lost.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                let mark = buf.len();
                if let Err(e) = st.encoder.event(time, &event, buf) {
                    buf.truncate(mark);
                    warn!(recording = %slot.shared.name, error = %e, "event not encodable, recorded as dropped");
                    let _ = st.encoder.dropped(time, 1, buf);
                }
                if buf.len() >= MAX_BATCH {
                    slot.write(buf);
                    buf.clear();
                }
            }
            Msg::Finish { time, reason, ack } => {
                let total = slot.shared.dropped.load(Ordering::Relaxed);
                mark_dropped(slot, &mut st, time, total, buf);
                if !slot.broken()
                    && let Err(e) = st.encoder.end(time, &reason, buf)
                {
                    warn!(recording = %slot.shared.name, error = %e, "end entry not encodable");
                }
                finish = Some(ack);
                break;
            }
        }
    }
    if !buf.is_empty() {
        slot.write(buf);
        buf.clear();
        if st.unsynced_since.is_none() {
            st.unsynced_since = Some(Instant::now());
            if finish.is_none() {
                unsynced.push(slot.clone());
            }
        }
    }
    if let Some(ack) = finish {
        st.done = true;
        st.unsynced_since = None;
        st.encoder.closed(&slot.shared.name);
        drop(st);
        unsynced.retain(|s| !Arc::ptr_eq(s, slot));
        hub.sync(SyncJob::Final(slot.clone(), ack));
    }
}

fn mark_dropped(
    slot: &Slot,
    st: &mut WriterSide,
    time: SystemTime,
    dropped_so_far: u64,
    buf: &mut Vec<u8>,
) {
    if dropped_so_far > st.reported_dropped {
        let n = dropped_so_far - st.reported_dropped;
        st.reported_dropped = dropped_so_far;
        warn!(recording = %slot.shared.name, dropped = n, "recording queue was full: events dropped");
        if !slot.broken()
            && let Err(e) = st.encoder.dropped(time, n, buf)
        {
            warn!(recording = %slot.shared.name, error = %e, "dropped marker not encodable");
        }
    }
}

/// A [`Recording`] that queues events to the writer thread.
pub(crate) struct QueuedRecording {
    slot: Arc<Slot>,
    hub: &'static Hub,
    wants: fn(&Event) -> bool,
    max_stall: Duration,
    finished: bool,
}

impl QueuedRecording {
    /// Hands `file` (already holding whatever `encoder` wrote at open time) to the writer
    /// threads and returns the recording handle. `path`, when given, is checked to still
    /// name `file` at each sync.
    pub(crate) fn spawn<E: Encoder>(
        file: File,
        encoder: E,
        config: &WriterConfig,
        path: Option<PathBuf>,
        wants: fn(&Event) -> bool,
    ) -> Result<Self, RecordError> {
        let hub = hub()?;
        let name = path
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| String::from("recording"));
        #[cfg(unix)]
        let identity = path.and_then(|path| {
            use std::os::unix::fs::MetadataExt;
            file.metadata().ok().map(|m| (path, m.dev(), m.ino()))
        });
        #[cfg(not(unix))]
        let identity = {
            let _ = path;
            None
        };
        let slot = Arc::new(Slot {
            shared: Shared {
                fail_closed: config.fail_closed,
                failed: AtomicBool::new(false),
                dropped: AtomicU64::new(0),
                lost: AtomicU64::new(0),
                name,
            },
            capacity: config.queue_capacity.max(1),
            batch_window: config.batch_window,
            sync_interval: config.sync_interval.max(Duration::from_millis(1)),
            queue: Mutex::new(VecDeque::new()),
            scheduled: AtomicBool::new(false),
            room: Notify::new(),
            file: Arc::new(file),
            identity,
            broken: Mutex::new(None),
            is_broken: AtomicBool::new(false),
            state: Mutex::new(WriterSide {
                encoder: Box::new(encoder),
                reported_dropped: 0,
                unsynced_since: None,
                done: false,
            }),
        });
        Ok(QueuedRecording {
            slot,
            hub,
            wants,
            max_stall: config.max_stall,
            finished: false,
        })
    }

    /// The state shared with the writer (for tests).
    #[cfg(test)]
    pub(crate) fn shared(&self) -> &Shared {
        &self.slot.shared
    }

    /// The queue message for `event`: `None` when this recording does not keep such
    /// events, an error when it failed earlier and fails closed.
    fn message(&self, event: Event) -> Result<Option<Msg>, RecordError> {
        if !(self.wants)(&event) {
            return Ok(None);
        }
        let shared = &self.slot.shared;
        if shared.fail_closed && shared.failed.load(Ordering::Acquire) {
            return Err(RecordError::Unavailable(format!(
                "{}: recording failed earlier",
                shared.name
            )));
        }
        Ok(Some(Msg::Event {
            time: SystemTime::now(),
            dropped_before: shared.dropped.load(Ordering::Relaxed),
            event,
        }))
    }

    /// Queues `msg` unless the queue is full (then gives it back).
    fn try_push(&self, msg: Msg) -> Result<(), Msg> {
        {
            let mut q = lock(&self.slot.queue);
            if q.len() >= self.slot.capacity {
                return Err(msg);
            }
            q.push_back(msg);
        }
        self.hub.schedule(&self.slot);
        Ok(())
    }

    fn refuse(&self, why: &str) -> Result<(), RecordError> {
        let shared = &self.slot.shared;
        shared.dropped.fetch_add(1, Ordering::Relaxed);
        if shared.fail_closed {
            shared.failed.store(true, Ordering::Release);
            Err(RecordError::Unavailable(format!("{}: {why}", shared.name)))
        } else {
            Ok(())
        }
    }

    /// Queues the end (past the capacity: it is never refused).
    fn push_finish(&self, reason: String, ack: Option<Ack>) {
        lock(&self.slot.queue).push_back(Msg::Finish {
            time: SystemTime::now(),
            reason,
            ack,
        });
        self.hub.schedule(&self.slot);
    }
}

#[async_trait]
impl Recording for QueuedRecording {
    fn record(&self, event: Event) -> Result<(), RecordError> {
        let Some(msg) = self.message(event)? else {
            return Ok(());
        };
        match self.try_push(msg) {
            Ok(()) => Ok(()),
            Err(_) => self.refuse("recording queue full"),
        }
    }

    async fn record_async(&self, event: Event) -> Result<(), RecordError> {
        let Some(mut msg) = self.message(event)? else {
            return Ok(());
        };
        msg = match self.try_push(msg) {
            Ok(()) => return Ok(()),
            Err(m) => m,
        };
        let deadline = tokio::time::Instant::now() + self.max_stall;
        loop {
            // Registered before the check: a drain between the check and the wait still
            // wakes this caller.
            let room = self.slot.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            msg = match self.try_push(msg) {
                Ok(()) => return Ok(()),
                Err(m) => m,
            };
            if tokio::time::timeout_at(deadline, room).await.is_err() {
                return self.refuse("recording queue full for too long");
            }
        }
    }

    async fn finish(mut self: Box<Self>, reason: &str) -> Result<(), RecordError> {
        self.finished = true;
        let (ack, done) = oneshot::channel();
        self.push_finish(reason.to_owned(), Some(ack));
        match done.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(RecordError::Io(std::io::Error::other(e))),
            Err(_) => Err(RecordError::Unavailable(format!(
                "{}: recording writer stopped",
                self.slot.shared.name
            ))),
        }
    }
}

impl Drop for QueuedRecording {
    fn drop(&mut self) {
        if !self.finished {
            // Dropped without `finish` (a session task that was aborted): close the file
            // properly all the same.
            self.push_finish(String::from("recording closed without finish"), None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hoop_testkit::wait::eventually;

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
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap();
        let rec =
            QueuedRecording::spawn(file, Lines, &WriterConfig::default(), None, |_| true).unwrap();
        rec.record(note()).unwrap();
        let refused = eventually(|| rec.record(note()).is_err()).await;
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
        let file = std::fs::File::create(&path).unwrap();
        let config = WriterConfig {
            sync_interval: Duration::from_millis(20),
            ..WriterConfig::default()
        };
        let rec =
            QueuedRecording::spawn(file, Lines, &config, Some(path.clone()), |_| true).unwrap();
        rec.record(note()).unwrap();
        // Let the writer write the first batch.
        let written = eventually(|| std::fs::metadata(&path).unwrap().len() > 0).await;
        assert!(written, "the first batch never reached the file");
        std::fs::remove_file(&path).unwrap();
        let refused = eventually(|| rec.record(note()).is_err()).await;
        assert!(refused, "writing into a removed file must fail closed");
        let err = Box::new(rec).finish("done").await.unwrap_err();
        assert!(err.to_string().contains("removed"), "{err}");
    }

    #[tokio::test]
    async fn write_error_fail_open_keeps_accepting() {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap();
        let config = WriterConfig {
            fail_closed: false,
            ..WriterConfig::default()
        };
        let rec = QueuedRecording::spawn(file, Lines, &config, None, |_| true).unwrap();
        // Every event is accepted, before and after the writer meets the error; the
        // events written after it are counted as lost.
        let failed_and_lost = eventually(|| {
            rec.record(note()).unwrap();
            rec.shared().failed.load(Ordering::Acquire)
                && rec.shared().lost.load(Ordering::Relaxed) > 0
        })
        .await;
        assert!(failed_and_lost, "the write error is never noted");
        rec.record(note()).unwrap();
        assert!(rec.shared().failed.load(Ordering::Acquire));
        assert!(rec.shared().lost.load(Ordering::Relaxed) > 0);
        assert!(Box::new(rec).finish("done").await.is_err());
    }
}
