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
use crate::CodecError;
use crate::codec::{Frame, FrameHeader};
use crate::error::PgError;
use crate::io::{FrameReader, FrameWriter, HEADER_LEN, Incoming, encode_header};
use crate::mask::{
    Column, CopyFormat, CopyRowCounter, columns, mask_copy_row, mask_data_row_into,
    mask_data_row_wire, mask_error_fields, mask_value, redact_whole,
};
use crate::messages::{CommandComplete, CopyResponse, ErrorFields, RowDescription, tags};

/// The columns describing a DataRow: rows of an Execute are described by their portal,
/// rows of a simple query by the RowDescription just before them.
fn row_columns(
    queue: &VecDeque<Expect>,
    portals: &HashMap<String, Cols>,
    current: Option<&Cols>,
) -> Cols {
    let cols = match queue.front() {
        Some(Expect::Execute { portal, .. }) => portals.get(portal),
        _ => current,
    };
    cols.cloned().unwrap_or_else(|| Arc::from([]))
}

/// The columns of a result, shared between the statement, its portals and the rows.
type Cols = Arc<[Column]>;

/// Type OID used for a column whose type is not known (no Describe was seen): never
/// treated as text-like, so a masked value becomes NULL rather than corrupting it.
const UNKNOWN_TYPE: u32 = u32::MAX;

/// Largest piece of a streamed message read and written at a time.
const PIECE: usize = 64 * 1024;

/// What became of a message longer than the streaming threshold.
enum LargeOutcome {
    /// Read whole: handle it like any other message.
    Whole(Frame),
    /// Rewritten with bounded memory (masked column by column): send this instead.
    Rewritten(Frame),
    /// Forwarded piece by piece.
    Streamed,
    /// `stop` fired in the middle of it.
    Stopped,
}

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
    statements: HashMap<String, Cols>,
    portals: HashMap<String, Cols>,
    current: Option<Cols>,
    /// The last RowDescription's body and its columns: a statement run again describes
    /// its result with the same bytes, and its columns are not decided again.
    last_description: Option<(Vec<u8>, Cols)>,
    /// The columns of the DataRows arriving now, looked up at the first row of a result
    /// and kept until the next message of another kind or the next expectation (which
    /// may describe rows anew).
    row_cols: Option<Cols>,
    /// Columns of unknown type for a Bind of a statement never described, per result
    /// format (text, binary).
    unknown: [Option<Cols>; 2],
    copy_out: Option<CopyFormat>,
    progress: Progress,
    masked_total: u64,
    /// Results to record once the current message is handled.
    results: Vec<Event>,
    /// Largest value the masking inspects.
    inspect_max: usize,
    /// Part of a message was sent to the client and the rest was not.
    mid_message: bool,
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
            last_description: None,
            row_cols: None,
            unknown: [None, None],
            copy_out: None,
            progress: Progress::default(),
            masked_total: 0,
            results: Vec::new(),
            inspect_max: crate::PostgresOptions::default().mask_inspect_max,
            mid_message: false,
        }
    }

    /// Sets the largest value (and whole row) the masking inspects; a longer value is
    /// masked whole (see [`crate::mask::redact_whole`]).
    pub fn with_inspect_max(mut self, bytes: usize) -> Self {
        self.inspect_max = bytes;
        self
    }

    /// Whether a message was cut short: the client got its beginning, not its end (so
    /// nothing more may be sent).
    pub fn mid_message(&self) -> bool {
        self.mid_message
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
                Ok(e) => {
                    self.row_cols = None;
                    self.queue.push_back(e);
                }
                Err(_) => return None,
            }
        }
        self.queue.front()
    }

    fn pop(&mut self) -> Option<Expect> {
        self.front();
        self.row_cols = None;
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
            status: None,
            bytes_in: None,
        });
        Ok(())
    }

    /// Runs until the target closes or `stop` fires.
    pub async fn run(&mut self, stop: &CancellationToken) -> Result<BackendEnd, PgError> {
        loop {
            // A DataRow already buffered whole is copied, or masked, into the client's
            // output straight from the read buffer: no frame of its own.
            if self.row_in_place()? {
                self.writer.flush_if_full().await?;
                continue;
            }
            // A message already buffered arrived with the last read: it is taken without
            // the select below (a burst of rows costs no wake-up bookkeeping per row),
            // and only a read from the socket marks activity (one clock read per burst).
            let frame = if let Some(f) = self.reader.buffered_frame()? {
                f
            } else {
                self.writer.flush().await?;
                let incoming = tokio::select! {
                    f = self.reader.next_incoming() => f?,
                    Some(n) = self.notices.recv() => {
                        self.writer.push(n.as_bytes()).await?;
                        self.writer.flush().await?;
                        continue;
                    }
                    _ = stop.cancelled() => return Ok(BackendEnd::Stopped),
                };
                let Some(incoming) = incoming else {
                    return Ok(BackendEnd::TargetClosed);
                };
                self.activity.touch();
                match incoming {
                    Incoming::Whole(f) => f,
                    Incoming::Large(h) => match self.large(h, stop).await? {
                        LargeOutcome::Whole(f) => f,
                        LargeOutcome::Rewritten(f) => {
                            self.writer.push(f.as_bytes()).await?;
                            continue;
                        }
                        LargeOutcome::Streamed => continue,
                        LargeOutcome::Stopped => return Ok(BackendEnd::Stopped),
                    },
                }
            };
            match self.handle(frame)? {
                Some(f) => self.writer.push(f.as_bytes()).await?,
                // Handled in place (a rewritten row queued in the output buffer).
                None => self.writer.flush_if_full().await?,
            }
            for event in self.results.drain(..) {
                self.auth.record_async(event).await?;
            }
        }
    }

    /// A message longer than the streaming threshold: forwarded piece by piece when no
    /// masking applies, rewritten column by column when it does and it is too long to
    /// inspect whole, otherwise read whole (messages the backend parses).
    async fn large(
        &mut self,
        h: FrameHeader,
        stop: &CancellationToken,
    ) -> Result<LargeOutcome, PgError> {
        let body_len = h.wire_len.saturating_sub(HEADER_LEN);
        let noop = self.masker.is_noop();
        match h.tag {
            tags::DATA_ROW if noop => {
                self.progress.rows += 1;
                self.pass(h, stop).await
            }
            tags::DATA_ROW if body_len > self.inspect_max => {
                let cols = self.row_columns();
                let rewritten = tokio::select! {
                    r = self.masked_row(&cols) => r?,
                    _ = stop.cancelled() => return Ok(LargeOutcome::Stopped),
                };
                self.progress.rows += 1;
                Ok(LargeOutcome::Rewritten(rewritten))
            }
            tags::COPY_DATA => match self.copy_out {
                Some(fmt) if !noop && fmt != CopyFormat::Binary => {
                    if body_len <= self.inspect_max {
                        return self.read_whole(stop).await;
                    }
                    let rewritten = tokio::select! {
                        r = self.redacted_copy_row(fmt) => r?,
                        _ = stop.cancelled() => return Ok(LargeOutcome::Stopped),
                    };
                    self.progress.rows += 1;
                    Ok(LargeOutcome::Rewritten(rewritten))
                }
                _ => self.pass(h, stop).await,
            },
            // A function result too long to inspect: NULL (its body is skipped unread).
            tags::FUNCTION_CALL_RESPONSE if !noop && body_len > self.inspect_max => {
                self.reader.start_body()?;
                while self.reader.body_left() > 0 {
                    let piece = tokio::select! {
                        p = self.reader.body_chunk(PIECE) => p?,
                        _ = stop.cancelled() => return Ok(LargeOutcome::Stopped),
                    };
                    drop(piece);
                    self.activity.touch();
                }
                self.masked_total += 1;
                Ok(LargeOutcome::Rewritten(crate::mask::null_function_result()))
            }
            // Parsed by `handle`: read whole (up to the message limit).
            tags::FUNCTION_CALL_RESPONSE
            | tags::NOTIFICATION
            | tags::DATA_ROW
            | tags::ROW_DESCRIPTION
            | tags::NO_DATA
            | tags::PARSE_COMPLETE
            | tags::BIND_COMPLETE
            | tags::CLOSE_COMPLETE
            | tags::COMMAND_COMPLETE
            | tags::EMPTY_QUERY
            | tags::PORTAL_SUSPENDED
            | tags::ERROR_RESPONSE
            | tags::READY_FOR_QUERY
            | tags::COPY_OUT_RESPONSE
            | tags::COPY_BOTH_RESPONSE
            | tags::COPY_DONE
            | tags::NOTICE_RESPONSE => self.read_whole(stop).await,
            // Passed unchanged by `handle`.
            _ => self.pass(h, stop).await,
        }
    }

    async fn read_whole(&mut self, stop: &CancellationToken) -> Result<LargeOutcome, PgError> {
        tokio::select! {
            f = self.reader.whole() => Ok(LargeOutcome::Whole(f?)),
            _ = stop.cancelled() => Ok(LargeOutcome::Stopped),
        }
    }

    /// Forwards the announced message piece by piece.
    async fn pass(
        &mut self,
        h: FrameHeader,
        stop: &CancellationToken,
    ) -> Result<LargeOutcome, PgError> {
        self.reader.start_body()?;
        self.mid_message = true;
        self.writer.push(&encode_header(&h)).await?;
        while self.reader.body_left() > 0 {
            let piece = tokio::select! {
                c = self.reader.body_chunk(PIECE) => c?,
                _ = stop.cancelled() => return Ok(LargeOutcome::Stopped),
            };
            self.activity.touch();
            self.writer.push(&piece).await?;
        }
        self.mid_message = false;
        Ok(LargeOutcome::Streamed)
    }

    /// The columns describing the DataRows arriving now.
    fn row_columns(&mut self) -> Cols {
        self.front();
        self.row_cols
            .get_or_insert_with(|| row_columns(&self.queue, &self.portals, self.current.as_ref()))
            .clone()
    }

    /// The columns of a RowDescription, decided once per distinct description.
    fn described(&mut self, body: &[u8]) -> Result<Cols, PgError> {
        if let Some((last, cols)) = &self.last_description
            && last.as_slice() == body
        {
            return Ok(cols.clone());
        }
        let cols: Cols = columns(self.masker, &RowDescription::parse(body)?).into();
        self.last_description = Some((body.to_vec(), cols.clone()));
        Ok(cols)
    }

    /// The columns of a portal bound from `statement` with result `formats`.
    fn bound(&mut self, statement: &str, formats: &[i16]) -> Cols {
        let Some(desc) = self.statements.get(statement) else {
            // Never described: as many columns of unknown type as formats were given.
            if formats.len() <= 1 {
                let format = format_at(formats, 0);
                let slot = usize::from(format == 1);
                if let Some(Some(cols)) = self.unknown.get(slot) {
                    return cols.clone();
                }
                let cols: Cols = Arc::from([Column::new(
                    self.masker,
                    String::new(),
                    UNKNOWN_TYPE,
                    format,
                )]);
                if let Some(s) = self.unknown.get_mut(slot) {
                    *s = Some(cols.clone());
                }
                return cols;
            }
            return (0..formats.len())
                .map(|i| {
                    Column::new(
                        self.masker,
                        String::new(),
                        UNKNOWN_TYPE,
                        format_at(formats, i),
                    )
                })
                .collect();
        };
        if desc
            .iter()
            .enumerate()
            .all(|(i, c)| c.format == format_at(formats, i))
        {
            return desc.clone();
        }
        desc.iter()
            .enumerate()
            .map(|(i, c)| Column {
                format: format_at(formats, i),
                ..c.clone()
            })
            .collect()
    }

    /// Reads the announced DataRow column by column and masks it: values up to the
    /// inspection cap as usual, longer ones whole (fail closed). Nothing is sent until
    /// the row is complete, so it goes out with its correct length.
    async fn masked_row(&mut self, cols: &[Column]) -> Result<Frame, PgError> {
        let bad = |detail: String| {
            PgError::Codec(CodecError::Invalid {
                what: "DataRow",
                detail,
            })
        };
        self.reader.start_body()?;
        let raw_count = self.reader.body_exact(2).await?;
        let count = match raw_count.as_ref() {
            [a, b] => i16::from_be_bytes([*a, *b]),
            _ => return Err(PgError::Codec(CodecError::Truncated("DataRow"))),
        };
        let count = usize::try_from(count).map_err(|_| bad(format!("negative count {count}")))?;
        let budget = self.inspect_max.saturating_mul(4);
        let mut out = bytes::BytesMut::with_capacity(PIECE);
        out.extend_from_slice(&[tags::DATA_ROW, 0, 0, 0, 0]);
        out.extend_from_slice(&raw_count);
        let mut masked = 0u64;
        for i in 0..count {
            let len = self.reader.body_exact(4).await?;
            let len = match len.as_ref() {
                [a, b, c, d] => i32::from_be_bytes([*a, *b, *c, *d]),
                _ => return Err(PgError::Codec(CodecError::Truncated("DataRow"))),
            };
            if len == -1 {
                out.extend_from_slice(&(-1i32).to_be_bytes());
                continue;
            }
            let len =
                usize::try_from(len).map_err(|_| bad(format!("negative value length {len}")))?;
            if len > self.reader.body_left() {
                return Err(PgError::Codec(CodecError::Truncated("DataRow")));
            }
            self.activity.touch();
            let col = cols.get(i);
            let new = if len <= self.inspect_max && out.len() + len <= budget {
                let v = self.reader.body_exact(len).await?;
                match mask_value(self.masker, col, &v) {
                    None => {
                        push_value(&mut out, Some(&v))?;
                        continue;
                    }
                    Some(new) => new,
                }
            } else {
                self.reader.body_skip(len, PIECE).await?;
                redact_whole(col)
            };
            masked += 1;
            push_value(&mut out, new.as_deref())?;
        }
        if self.reader.body_left() != 0 {
            return Err(bad("trailing bytes after the last value".into()));
        }
        let len = u32::try_from(out.len() - 1).map_err(|_| bad("masked row too long".into()))?;
        if let Some(field) = out.get_mut(1..5) {
            field.copy_from_slice(&len.to_be_bytes());
        }
        self.progress.masked += masked;
        Ok(Frame::from_wire(out.freeze())?)
    }

    /// Reads the announced COPY TO STDOUT row piece by piece and replaces it by a row of
    /// as many redacted fields (too long to inspect: fail closed).
    async fn redacted_copy_row(&mut self, fmt: CopyFormat) -> Result<Frame, PgError> {
        self.reader.start_body()?;
        let mut counter = CopyRowCounter::new(fmt);
        while self.reader.body_left() > 0 {
            let piece = self.reader.body_chunk(PIECE).await?;
            self.activity.touch();
            counter.feed(&piece);
            if counter.fields() > crate::mask::MAX_COPY_FIELDS {
                break;
            }
        }
        let body = counter.redacted_row()?;
        self.progress.masked += counter.fields() as u64;
        Ok(Frame::new(tags::COPY_DATA, &body))
    }

    /// Handles the next message in place if it is a DataRow buffered whole: copied to
    /// the client's output, or rewritten there. Returns whether it did.
    fn row_in_place(&mut self) -> Result<bool, PgError> {
        let noop = self.masker.is_noop();
        if !noop {
            // The description of rows may wait in the expectation channel (a no-op
            // while the queue holds one, as it does through a result).
            self.front();
        }
        let Some(wire) = self.reader.peek_buffered()? else {
            return Ok(false);
        };
        if wire.first() != Some(&tags::DATA_ROW) {
            return Ok(false);
        }
        let len = wire.len();
        self.progress.rows += 1;
        let out = self.writer.queue_mut();
        if noop {
            out.extend_from_slice(wire);
        } else {
            let cols = self.row_cols.get_or_insert_with(|| {
                row_columns(&self.queue, &self.portals, self.current.as_ref())
            });
            match mask_data_row_wire(self.masker, cols, wire, out)? {
                0 => out.extend_from_slice(wire),
                n => self.progress.masked += u64::from(n),
            }
        }
        self.reader.consume(len);
        Ok(true)
    }

    /// Processes one target message; returns what to send to the client.
    fn handle(&mut self, frame: Frame) -> Result<Option<Frame>, PgError> {
        if frame.tag() != tags::DATA_ROW {
            // Any other message may end the result or change what describes rows.
            self.row_cols = None;
        }
        match frame.tag() {
            tags::DATA_ROW => {
                self.progress.rows += 1;
                if self.masker.is_noop() {
                    return Ok(Some(frame));
                }
                self.front();
                let cols = self.row_cols.get_or_insert_with(|| {
                    row_columns(&self.queue, &self.portals, self.current.as_ref())
                });
                // A rewritten row is built straight into the client's output buffer.
                let n = mask_data_row_into(self.masker, cols, &frame, self.writer.queue_mut())?;
                if n == 0 {
                    return Ok(Some(frame));
                }
                self.progress.masked += u64::from(n);
                Ok(None)
            }
            tags::ROW_DESCRIPTION => {
                let cols = self.described(frame.body())?;
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
                        self.statements.insert(name, Arc::from([]));
                    }
                    Some(Expect::DescribePortal(name)) => {
                        self.portals.insert(name, Arc::from([]));
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
                    let cols = self.bound(&statement, &formats);
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
                // Binary COPY rows cannot be masked. The frontend refuses such a
                // statement before it runs; one it could not recognise ends here, before
                // any row reaches the client.
                if r.format == 1 && !self.masker.is_noop() {
                    return Err(PgError::Unmaskable("binary COPY"));
                }
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
            tags::NOTIFICATION if !self.masker.is_noop() => {
                let (f, n) = crate::mask::mask_notification(self.masker, frame)?;
                self.masked_total += u64::from(n);
                Ok(Some(f))
            }
            tags::FUNCTION_CALL_RESPONSE if !self.masker.is_noop() => {
                let (f, n) = crate::mask::mask_function_result(self.masker, frame)?;
                self.masked_total += u64::from(n);
                Ok(Some(f))
            }
            // ParameterStatus, ParameterDescription, CopyIn: pass.
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

/// Appends one DataRow value (length and bytes; `None` is NULL).
fn push_value(out: &mut bytes::BytesMut, v: Option<&[u8]>) -> Result<(), PgError> {
    match v {
        None => out.extend_from_slice(&(-1i32).to_be_bytes()),
        Some(v) => {
            let len = i32::try_from(v.len()).map_err(|_| {
                PgError::Codec(CodecError::Invalid {
                    what: "DataRow",
                    detail: "value too long".into(),
                })
            })?;
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(v);
        }
    }
    Ok(())
}

fn format_at(formats: &[i16], i: usize) -> i16 {
    match formats {
        [] => 0,
        [one] => *one,
        many => many.get(i).copied().unwrap_or(0),
    }
}
