//! Target -> client: results are masked by their row description, answers are matched to
//! the statements that caused them, and results are recorded.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use hoop_core::sequence::Authorized;
use hoop_core::{Command, Event, Masker};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::expect::Expect;
use crate::codec::Frame;
use crate::error::PgError;
use crate::io::{FrameReader, FrameWriter};
use crate::mask::{Column, CopyFormat, columns, mask_copy_row, mask_data_row, mask_error_fields};
use crate::messages::{CommandComplete, CopyResponse, ErrorFields, RowDescription, tags};

/// Type OID used for a column whose type is not known (no Describe was seen): never
/// treated as text-like, so a masked value becomes NULL rather than corrupting it.
const UNKNOWN_TYPE: u32 = u32::MAX;

/// Why the target side ended.
#[derive(Debug, PartialEq, Eq)]
pub enum BackendEnd {
    /// The target closed the connection.
    TargetClosed,
    /// Told to stop.
    Stopped,
}

/// Result counters of the command in progress.
#[derive(Default)]
struct Progress {
    rows: u64,
    masked: u64,
}

/// The target-to-client half of a session.
pub struct Backend<'a, R, W> {
    /// Records results.
    pub auth: &'a Authorized,
    /// Masks values.
    pub masker: &'a dyn Masker,
    /// Target messages.
    pub reader: FrameReader<R>,
    /// Client writes.
    pub writer: FrameWriter<W>,
    /// Expected answers from the frontend half.
    pub expects: mpsc::Receiver<Expect>,
    /// Notices to pass to the client.
    pub notices: mpsc::Receiver<Frame>,
    /// For the idle timeout.
    pub activity: &'a super::Activity,
    queue: VecDeque<Expect>,
    statements: HashMap<String, Vec<Column>>,
    portals: HashMap<String, Vec<Column>>,
    current: Option<Vec<Column>>,
    copy_out: Option<CopyFormat>,
    progress: Progress,
    masked_total: u64,
    /// Results to record once the current message is handled.
    results: Vec<Event>,
}

impl<'a, R: AsyncRead + Unpin, W: AsyncWrite + Unpin> Backend<'a, R, W> {
    /// A backend half.
    pub fn new(
        auth: &'a Authorized,
        masker: &'a dyn Masker,
        reader: FrameReader<R>,
        writer: FrameWriter<W>,
        expects: mpsc::Receiver<Expect>,
        notices: mpsc::Receiver<Frame>,
        activity: &'a super::Activity,
    ) -> Self {
        Backend {
            auth,
            masker,
            reader,
            writer,
            expects,
            notices,
            activity,
            queue: VecDeque::new(),
            statements: HashMap::new(),
            portals: HashMap::new(),
            current: None,
            copy_out: None,
            progress: Progress::default(),
            masked_total: 0,
            results: Vec::new(),
        }
    }

    /// Values masked in the whole session.
    pub fn masked_total(&self) -> u64 {
        self.masked_total
    }

    /// Access to the client writer (to send a final error).
    pub fn writer(&mut self) -> &mut FrameWriter<W> {
        &mut self.writer
    }

    fn front(&mut self) -> Option<&Expect> {
        while self.queue.is_empty() {
            match self.expects.try_recv() {
                Ok(e) => self.queue.push_back(e),
                Err(_) => return None,
            }
        }
        self.queue.front()
    }

    fn pop(&mut self) -> Option<Expect> {
        self.front();
        self.queue.pop_front()
    }

    fn record_result(
        &mut self,
        cmd: Option<&Arc<Command>>,
        started: Instant,
        error: Option<String>,
    ) -> Result<(), PgError> {
        let p = std::mem::take(&mut self.progress);
        self.masked_total += p.masked;
        if cmd.is_none() && error.is_none() {
            return Ok(());
        }
        // Recorded (awaiting room in the recording queue) right after this message.
        self.results.push(Event::CommandResult {
            duration_ms: started.elapsed().as_millis() as u64,
            rows: Some(p.rows),
            masked_fields: p.masked,
            error,
        });
        Ok(())
    }

    /// Runs until the target closes or `stop` fires.
    pub async fn run(&mut self, stop: &CancellationToken) -> Result<BackendEnd, PgError> {
        loop {
            // A message already buffered arrived with the last read: it is taken without
            // the select below (a burst of rows costs no wake-up bookkeeping per row),
            // and only a read from the socket marks activity (one clock read per burst).
            let frame = match self.reader.buffered_frame()? {
                Some(f) => f,
                None => {
                    self.writer.flush().await?;
                    let frame = tokio::select! {
                        f = self.reader.next() => f?,
                        Some(n) = self.notices.recv() => {
                            self.writer.push(n.as_bytes()).await?;
                            self.writer.flush().await?;
                            continue;
                        }
                        _ = stop.cancelled() => return Ok(BackendEnd::Stopped),
                    };
                    let Some(frame) = frame else {
                        return Ok(BackendEnd::TargetClosed);
                    };
                    self.activity.touch();
                    frame
                }
            };
            let frame = self.handle(frame)?;
            if let Some(f) = frame {
                self.writer.push(f.as_bytes()).await?;
            }
            for event in self.results.drain(..) {
                self.auth.record_async(event).await?;
            }
        }
    }

    /// Processes one target message; returns what to send to the client.
    fn handle(&mut self, frame: Frame) -> Result<Option<Frame>, PgError> {
        match frame.tag() {
            tags::DATA_ROW => {
                self.progress.rows += 1;
                if self.masker.is_noop() {
                    return Ok(Some(frame));
                }
                self.front();
                // Rows of an Execute are described by their portal; rows of a simple
                // query by the RowDescription just before them.
                let cols: &[Column] = match self.queue.front() {
                    Some(Expect::Execute { portal, .. }) => {
                        self.portals.get(portal).map_or(&[], Vec::as_slice)
                    }
                    _ => self.current.as_deref().unwrap_or(&[]),
                };
                let (f, n) = mask_data_row(self.masker, cols, frame)?;
                self.progress.masked += u64::from(n);
                Ok(Some(f))
            }
            tags::ROW_DESCRIPTION => {
                let cols = columns(self.masker, &RowDescription::parse(frame.body())?);
                match self.front() {
                    Some(Expect::DescribeStatement(_)) => {
                        if let Some(Expect::DescribeStatement(name)) = self.pop() {
                            self.statements.insert(name, cols);
                        }
                    }
                    Some(Expect::DescribePortal(_)) => {
                        if let Some(Expect::DescribePortal(name)) = self.pop() {
                            self.portals.insert(name, cols);
                        }
                    }
                    _ => self.current = Some(cols),
                }
                Ok(Some(frame))
            }
            tags::NO_DATA => {
                match self.pop() {
                    Some(Expect::DescribeStatement(name)) => {
                        self.statements.insert(name, Vec::new());
                    }
                    Some(Expect::DescribePortal(name)) => {
                        self.portals.insert(name, Vec::new());
                    }
                    Some(other) => self.queue.push_front(other),
                    None => {}
                }
                Ok(Some(frame))
            }
            tags::PARSE_COMPLETE => {
                if let Some(Expect::Parse { name, .. }) = self.pop() {
                    self.statements.remove(&name);
                }
                Ok(Some(frame))
            }
            tags::BIND_COMPLETE => {
                if let Some(Expect::Bind {
                    portal,
                    statement,
                    formats,
                }) = self.pop()
                {
                    let cols = match self.statements.get(&statement) {
                        Some(desc) => desc
                            .iter()
                            .enumerate()
                            .map(|(i, c)| Column {
                                format: format_at(&formats, i),
                                ..c.clone()
                            })
                            .collect(),
                        None => (0..formats.len().max(1))
                            .map(|i| {
                                Column::new(
                                    self.masker,
                                    String::new(),
                                    UNKNOWN_TYPE,
                                    format_at(&formats, i),
                                )
                            })
                            .collect(),
                    };
                    self.portals.insert(portal, cols);
                }
                Ok(Some(frame))
            }
            tags::CLOSE_COMPLETE => {
                if let Some(Expect::Close { statement, name }) = self.pop() {
                    if statement {
                        self.statements.remove(&name);
                    } else {
                        self.portals.remove(&name);
                    }
                }
                Ok(Some(frame))
            }
            tags::COMMAND_COMPLETE | tags::EMPTY_QUERY | tags::PORTAL_SUSPENDED => {
                if frame.tag() == tags::COMMAND_COMPLETE
                    && let Ok(c) = CommandComplete::parse(frame.body())
                    && let Some(rows) = c.rows()
                {
                    self.progress.rows = rows;
                }
                self.current = None;
                self.copy_out = None;
                match self.front() {
                    Some(Expect::Execute { .. }) => {
                        if let Some(Expect::Execute { cmd, started, .. }) = self.pop() {
                            self.record_result(cmd.as_ref(), started, None)?;
                        }
                    }
                    Some(Expect::Query { cmd, started, .. }) => {
                        let (cmd, started) = (cmd.clone(), *started);
                        self.record_result(cmd.as_ref(), started, None)?;
                    }
                    _ => {}
                }
                Ok(Some(frame))
            }
            tags::ERROR_RESPONSE => self.on_error(frame),
            tags::READY_FOR_QUERY => {
                // Everything up to this answer is complete.
                while let Some(e) = self.pop() {
                    if matches!(e, Expect::Sync | Expect::Query { .. }) {
                        break;
                    }
                }
                self.current = None;
                self.copy_out = None;
                // Outside a transaction block no portal survives: forget their
                // descriptions (bounded memory whatever portal names a client uses).
                if frame.body() == b"I" {
                    self.portals.clear();
                }
                Ok(Some(frame))
            }
            tags::COPY_OUT_RESPONSE | tags::COPY_BOTH_RESPONSE => {
                let r = CopyResponse::parse(frame.body())?;
                let csv = match self.front() {
                    Some(Expect::Query { cmd: Some(c), .. })
                    | Some(Expect::Execute { cmd: Some(c), .. }) => {
                        c.text.to_ascii_lowercase().contains("csv")
                    }
                    _ => false,
                };
                self.copy_out = Some(match (r.format, csv) {
                    (1, _) => CopyFormat::Binary,
                    (_, true) => CopyFormat::Csv,
                    _ => CopyFormat::Text,
                });
                Ok(Some(frame))
            }
            tags::COPY_DATA => match self.copy_out {
                Some(fmt) if !self.masker.is_noop() => {
                    self.progress.rows += 1;
                    let (f, n) = mask_copy_row(self.masker, fmt, frame);
                    self.progress.masked += u64::from(n);
                    Ok(Some(f))
                }
                _ => Ok(Some(frame)),
            },
            tags::COPY_DONE => {
                self.copy_out = None;
                Ok(Some(frame))
            }
            tags::NOTICE_RESPONSE => {
                if self.masker.is_noop() {
                    return Ok(Some(frame));
                }
                let (f, n) = mask_error_fields(self.masker, frame)?;
                self.masked_total += u64::from(n);
                Ok(Some(f))
            }
            // ParameterStatus, NotificationResponse, ParameterDescription, CopyIn,
            // FunctionCallResponse: pass.
            _ => Ok(Some(frame)),
        }
    }

    fn on_error(&mut self, frame: Frame) -> Result<Option<Frame>, PgError> {
        let message = ErrorFields::parse(frame.body())
            .ok()
            .and_then(|f| f.message().map(str::to_owned));
        self.current = None;
        self.copy_out = None;
        // The gateway's own error replaces the target's answer to a denied statement.
        self.front();
        let replacement = match self.queue.front_mut() {
            Some(Expect::Query { replace_error, .. })
            | Some(Expect::Parse { replace_error, .. }) => replace_error.take(),
            _ => None,
        };
        match self.front() {
            Some(Expect::Query { cmd, started, .. }) => {
                let (cmd, started) = (cmd.clone(), *started);
                if replacement.is_none() {
                    self.record_result(cmd.as_ref(), started, message)?;
                }
            }
            Some(e) if e.is_extended() => {
                // The target skips to Sync: so do the expectations.
                let mut first = true;
                while let Some(e) = self.pop() {
                    if matches!(e, Expect::Sync) {
                        self.queue.push_front(e);
                        break;
                    }
                    if first
                        && replacement.is_none()
                        && let Expect::Execute { cmd, started, .. } = &e
                    {
                        let (cmd, started) = (cmd.clone(), *started);
                        self.record_result(cmd.as_ref(), started, message.clone())?;
                    }
                    first = false;
                }
            }
            _ => {}
        }
        if let Some(r) = replacement {
            return Ok(Some(r));
        }
        if self.masker.is_noop() {
            return Ok(Some(frame));
        }
        let (f, n) = mask_error_fields(self.masker, frame)?;
        self.masked_total += u64::from(n);
        Ok(Some(f))
    }
}

fn format_at(formats: &[i16], i: usize) -> i16 {
    match formats {
        [] => 0,
        [one] => *one,
        many => many.get(i).copied().unwrap_or(0),
    }
}
