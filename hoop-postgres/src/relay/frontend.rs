//! Client -> target: every statement is classified and decided before it is forwarded.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use hoop_core::sequence::{Authorized, Checked};
use hoop_core::{ActionClass, Command};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use super::expect::{Expect, FAILING_STATEMENT};
use crate::CodecError;
use crate::classify::{ClassCache, Classified};
use crate::codec::{Frame, FrameHeader};
use crate::error::PgError;
use crate::io::{FrameReader, FrameWriter, Incoming, encode_header};
use crate::messages::{
    Bind, Close, Describe, ErrorResponse, Execute, FunctionCall, Parse, Query, Severity, Target,
    tags,
};

/// Most named statements / portals a session may hold (bounded memory).
const MAX_NAMED: usize = 10_000;

/// Largest piece of a streamed message read and written at a time.
const PIECE: usize = 64 * 1024;

/// Longest statement or portal name accepted in a streamed Bind.
const MAX_NAME: usize = 64 * 1024;

fn bad_bind(detail: &str) -> PgError {
    PgError::Codec(CodecError::Invalid {
        what: "Bind",
        detail: detail.into(),
    })
}

/// Why the client side ended.
#[derive(Debug, PartialEq, Eq)]
pub enum FrontendEnd {
    /// The client sent Terminate.
    Terminated,
    /// The client closed the connection.
    Closed,
    /// Told to stop (the other half ended, or the session was cancelled).
    Stopped,
}

/// The client-to-target half of a session.
pub struct Frontend<'a, R, W> {
    /// Proof of authorization; decides and records commands.
    pub auth: &'a Authorized,
    /// Client messages.
    pub reader: FrameReader<R>,
    /// Target writes.
    pub writer: FrameWriter<W>,
    /// Expected answers, to the backend half.
    pub expects: mpsc::Sender<Expect>,
    /// Notices for the client, to the backend half (which owns the client writer).
    pub notices: mpsc::Sender<Frame>,
    /// Classification cache.
    pub cache: &'a ClassCache,
    /// The target is read-only: attempts to lift it are refused.
    pub read_only: bool,
    /// The masker: with rules in force, output that cannot be masked (binary COPY, a
    /// column masked by name but selected under another name) is refused.
    pub masker: &'a dyn hoop_core::Masker,
    /// Set on every message, for the idle timeout.
    pub activity: &'a super::Activity,
    /// Statement name -> its command.
    pub statements: HashMap<String, Arc<Command>>,
    /// Portal name -> its statement's command.
    pub portals: HashMap<String, Arc<Command>>,
}

fn denial(reason: &str) -> Frame {
    ErrorResponse::new(
        Severity::Error,
        "42501",
        format!("hoop: statement refused: {reason}"),
    )
    .encode()
}

/// Whether a statement would lift the read-only protection of a target.
fn lifts_read_only(cmd: &Command) -> bool {
    let t = cmd.text.to_ascii_lowercase();
    t.contains("read write")
        || t.contains("read_only")
        || t.contains("read only")
        || t.contains("session_authorization")
        || t.contains("set role")
        || t.contains("set_config")
}

impl<R: AsyncRead + Unpin, W: AsyncWrite + Unpin> Frontend<'_, R, W> {
    async fn expect(&self, e: Expect) -> Result<(), PgError> {
        self.expects
            .send(e)
            .await
            .map_err(|_| PgError::Refused("session ended".into()))
    }

    /// A statement refused by the gateway itself (not the policy): recorded as a note of
    /// `kind`, logged, and answered with 42501 and `reason`.
    fn refused(
        &self,
        kind: &str,
        detail: serde_json::Value,
        reason: &str,
    ) -> Result<Option<Frame>, PgError> {
        self.auth.record(hoop_core::Event::Note {
            kind: kind.into(),
            detail,
        })?;
        info!(kind, "statement refused: {reason}");
        Ok(Some(denial(reason)))
    }

    /// Decides a command: `Ok(None)` to forward it, `Ok(Some(frame))` with the
    /// ErrorResponse to give instead. A review holds here: nothing the client sent after
    /// the statement is read before the verdict.
    async fn decide(
        &mut self,
        c: &Classified,
        stop: &CancellationToken,
    ) -> Result<Option<Frame>, PgError> {
        let cmd = &c.command;
        // What the masking could not cover (known from the classification: no parse
        // here). A column a field rule masks, selected under another name:
        let masker = self.masker;
        if let Some(column) = c
            .renamed
            .iter()
            .find(|n| masker.masks_field(&hoop_core::Field::named(n)))
        {
            return self.refused(
                "masked_column_renamed",
                serde_json::json!({ "text": cmd.text, "column": column }),
                &format!(
                    "column {column:?} is masked by name: select it as itself, without an alias or an expression around it"
                ),
            );
        }
        // Rows in a binary COPY:
        if c.binary_copy_out && !masker.is_noop() {
            return self.refused(
                "binary_copy_refused",
                serde_json::json!({ "text": cmd.text }),
                "binary COPY output cannot be masked: use COPY ... TO STDOUT in the text or CSV format",
            );
        }
        if self.read_only && lifts_read_only(cmd) {
            return self.refused(
                "read_only_violation",
                serde_json::json!({ "text": cmd.text }),
                "the resource is read-only",
            );
        }
        match self.auth.check(Command::clone(cmd)).await? {
            Checked::Allowed => Ok(None),
            Checked::Denied { reason } => {
                info!(class = %cmd.class, %reason, "statement denied");
                Ok(Some(denial(&reason)))
            }
            Checked::Pending(pending) => {
                // Let everything before the held statement run and reach the client.
                self.writer.flush().await?;
                let notice = ErrorResponse::new(
                    Severity::Notice,
                    "00000",
                    format!(
                        "hoop: statement held for review {}: waiting for approval",
                        pending.id
                    ),
                )
                .with_hint("a reviewer approves or rejects it; once approved, retrying the same statement passes")
                .encode();
                let _ = self.notices.send(notice).await;
                info!(review = %pending.id, class = %cmd.class, "statement held for review");
                let verdict = self.auth.await_review_until(pending, stop).await?;
                if stop.is_cancelled() {
                    return Err(PgError::Refused("session ended during review".into()));
                }
                Ok(verdict.map(|reason| denial(&reason)))
            }
        }
    }

    /// Runs until the client ends or `stop` fires.
    pub async fn run(mut self, stop: &CancellationToken) -> Result<FrontendEnd, PgError> {
        loop {
            // A message already buffered arrived with the last read: it is taken without
            // the select below, and only a read from the socket marks activity (one
            // clock read per burst, not per message).
            let frame = if let Some(f) = self.reader.buffered_frame()? {
                f
            } else {
                self.writer.flush().await?;
                let incoming = tokio::select! {
                    f = self.reader.next_incoming() => f?,
                    _ = stop.cancelled() => return Ok(FrontendEnd::Stopped),
                };
                let Some(incoming) = incoming else {
                    return Ok(FrontendEnd::Closed);
                };
                self.activity.touch();
                match incoming {
                    Incoming::Whole(f) => f,
                    // COPY FROM STDIN data and Bind parameters stream through; everything
                    // else (Query and Parse are classified) is read whole, up to the limit.
                    Incoming::Large(h) => {
                        let done = tokio::select! {
                            r = self.large(h) => r?,
                            _ = stop.cancelled() => return Ok(FrontendEnd::Stopped),
                        };
                        match done {
                            Some(f) => f,
                            None => continue,
                        }
                    }
                }
            };
            match frame.tag() {
                tags::QUERY => {
                    let q = Query::parse(frame.body())?;
                    let c = self.cache.classify_full(q.sql);
                    self.query_like(frame, c, stop).await?;
                }
                tags::PARSE => {
                    let p = Parse::parse(frame.body())?;
                    let c = self.cache.classify_full(p.query);
                    let name = p.name.to_owned();
                    let decided = self.decide(&c, stop).await?;
                    let cmd = c.command;
                    match decided {
                        None => {
                            if !name.is_empty() && self.statements.len() >= MAX_NAMED {
                                self.expect(Expect::Parse {
                                    name: String::new(),
                                    replace_error: Some(denial(
                                        "too many prepared statements in this session",
                                    )),
                                })
                                .await?;
                                self.push_failing_parse().await?;
                                continue;
                            }
                            self.statements.insert(name.clone(), cmd);
                            self.expect(Expect::Parse {
                                name,
                                replace_error: None,
                            })
                            .await?;
                            self.writer.push(frame.as_bytes()).await?;
                        }
                        Some(err) => {
                            // The name no longer refers to what the client may believe
                            // it does: forget it (a harmless earlier statement under
                            // the same name cannot be executed in its place).
                            self.statements.remove(&name);
                            self.expect(Expect::Parse {
                                name,
                                replace_error: Some(err),
                            })
                            .await?;
                            self.push_failing_parse().await?;
                        }
                    }
                }
                tags::BIND => {
                    let b = Bind::parse(frame.body())?;
                    self.on_bind(b.portal, b.statement, b.result_formats)
                        .await?;
                    self.writer.push(frame.as_bytes()).await?;
                }
                tags::DESCRIBE => {
                    let d = Describe::parse(frame.body())?;
                    let e = match d.target {
                        Target::Statement(n) => Expect::DescribeStatement(n.to_owned()),
                        Target::Portal(n) => Expect::DescribePortal(n.to_owned()),
                    };
                    self.expect(e).await?;
                    self.writer.push(frame.as_bytes()).await?;
                }
                tags::EXECUTE => {
                    let e = Execute::parse(frame.body())?;
                    let cmd = self.portals.get(e.portal).cloned();
                    self.expect(Expect::Execute {
                        portal: e.portal.to_owned(),
                        cmd,
                        started: Instant::now(),
                    })
                    .await?;
                    self.writer.push(frame.as_bytes()).await?;
                }
                tags::CLOSE => {
                    let c = Close::parse(frame.body())?;
                    let (statement, name) = match c.target {
                        Target::Statement(n) => {
                            self.statements.remove(n);
                            (true, n.to_owned())
                        }
                        Target::Portal(n) => {
                            self.portals.remove(n);
                            (false, n.to_owned())
                        }
                    };
                    self.expect(Expect::Close { statement, name }).await?;
                    self.writer.push(frame.as_bytes()).await?;
                }
                tags::SYNC => {
                    self.expect(Expect::Sync).await?;
                    self.writer.push(frame.as_bytes()).await?;
                }
                tags::FUNCTION_CALL => {
                    // A direct function call by OID: its effect cannot be classified.
                    // A malformed one is decided the same way (the target refuses it).
                    let text = match FunctionCall::parse(frame.body()) {
                        Ok(call) => call.describe(),
                        Err(e) => format!("FunctionCall (malformed: {e})"),
                    };
                    let cmd = Arc::new(Command {
                        class: ActionClass::Unknown,
                        verb: "FUNCTION CALL".into(),
                        text,
                        objects: Vec::new(),
                    });
                    self.query_like(frame, Classified::command_only(cmd), stop)
                        .await?;
                }
                tags::FLUSH | tags::COPY_DATA | tags::COPY_DONE | tags::COPY_FAIL => {
                    self.writer.push(frame.as_bytes()).await?;
                }
                tags::TERMINATE => {
                    self.writer.push(frame.as_bytes()).await?;
                    self.writer.flush().await?;
                    return Ok(FrontendEnd::Terminated);
                }
                other => {
                    debug!(tag = other, "unexpected client message");
                    return Err(PgError::Codec(crate::CodecError::Invalid {
                        what: "client message",
                        detail: format!("unexpected message type {:?}", char::from(other)),
                    }));
                }
            }
        }
    }

    /// Bookkeeping of a Bind: the portal's statement, and the answer to expect.
    async fn on_bind(
        &mut self,
        portal: &str,
        statement: &str,
        formats: Vec<i16>,
    ) -> Result<(), PgError> {
        let cmd = self.statements.get(statement).cloned();
        if let Some(cmd) = cmd {
            // Portals end with their transaction, which this half does not see: when
            // the map is full, start over (bounded memory; only the recording of very
            // old portals loses its statement text).
            if self.portals.len() >= MAX_NAMED {
                self.portals.clear();
            }
            self.portals.insert(portal.to_owned(), cmd);
        } else {
            self.portals.remove(portal);
        }
        self.expect(Expect::Bind {
            portal: portal.to_owned(),
            statement: statement.to_owned(),
            formats,
        })
        .await
    }

    /// A message longer than the streaming threshold: CopyData and Bind are forwarded
    /// piece by piece (`Ok(None)`), anything else is read whole and returned.
    async fn large(&mut self, h: FrameHeader) -> Result<Option<Frame>, PgError> {
        match h.tag {
            tags::COPY_DATA => {
                self.reader.start_body()?;
                self.writer.push(&encode_header(&h)).await?;
                self.pass_body(usize::MAX).await?;
                Ok(None)
            }
            tags::BIND => {
                self.stream_bind(h).await?;
                Ok(None)
            }
            _ => Ok(Some(self.reader.whole().await?)),
        }
    }

    /// Forwards up to `n` more body bytes (all that is left at most), piece by piece.
    async fn pass_body(&mut self, n: usize) -> Result<(), PgError> {
        let mut n = n.min(self.reader.body_left());
        while n > 0 {
            let piece = self.reader.body_chunk(PIECE.min(n)).await?;
            n -= piece.len();
            self.activity.touch();
            self.writer.push(&piece).await?;
        }
        Ok(())
    }

    /// Exactly `n` (small) body bytes, forwarded.
    async fn pass_exact(&mut self, n: usize) -> Result<bytes::Bytes, PgError> {
        let b = self.reader.body_exact(n).await?;
        self.writer.push(&b).await?;
        Ok(b)
    }

    async fn pass_i16(&mut self) -> Result<i16, PgError> {
        match self.pass_exact(2).await?.as_ref() {
            [a, b] => Ok(i16::from_be_bytes([*a, *b])),
            _ => Err(PgError::Codec(CodecError::Truncated("Bind"))),
        }
    }

    async fn pass_count(&mut self) -> Result<usize, PgError> {
        let n = self.pass_i16().await?;
        usize::try_from(n).map_err(|_| bad_bind("negative count"))
    }

    /// A NUL-terminated name, forwarded (without its NUL).
    async fn pass_cstr(&mut self) -> Result<String, PgError> {
        loop {
            let avail = self.reader.body_buffered();
            if let Some(end) = memchr::memchr(0, avail) {
                let b = self.reader.body_take(end + 1);
                self.writer.push(&b).await?;
                let name = b.get(..end).unwrap_or_default();
                return std::str::from_utf8(name)
                    .map(str::to_owned)
                    .map_err(|_| PgError::Codec(CodecError::BadString("Bind")));
            }
            let have = avail.len();
            if have >= MAX_NAME || have >= self.reader.body_left() {
                return Err(PgError::Codec(CodecError::BadString("Bind")));
            }
            self.reader.body_fill(have + 1).await?;
        }
    }

    /// Forwards a long Bind piece by piece: the names and format codes are read (with
    /// bounds checks) as they pass, parameter values stream through, and the result
    /// formats at the end complete the bookkeeping. The target answers only once it has
    /// the whole message, so the expectation is queued in time.
    async fn stream_bind(&mut self, h: FrameHeader) -> Result<(), PgError> {
        self.reader.start_body()?;
        self.writer.push(&encode_header(&h)).await?;
        let portal = self.pass_cstr().await?;
        let statement = self.pass_cstr().await?;
        let nf = self.pass_count().await?;
        self.pass_exact(nf * 2).await?;
        let np = self.pass_count().await?;
        for _ in 0..np {
            let len = match self.pass_exact(4).await?.as_ref() {
                [a, b, c, d] => i32::from_be_bytes([*a, *b, *c, *d]),
                _ => return Err(PgError::Codec(CodecError::Truncated("Bind"))),
            };
            if len == -1 {
                continue;
            }
            let len = usize::try_from(len).map_err(|_| bad_bind("negative value length"))?;
            if len > self.reader.body_left() {
                return Err(PgError::Codec(CodecError::Truncated("Bind")));
            }
            self.pass_body(len).await?;
        }
        let nr = self.pass_count().await?;
        let raw = self.pass_exact(nr * 2).await?;
        let formats = raw
            .chunks_exact(2)
            .map(|c| match c {
                [a, b] => i16::from_be_bytes([*a, *b]),
                _ => 0,
            })
            .collect();
        if self.reader.body_left() != 0 {
            return Err(bad_bind("trailing bytes"));
        }
        self.on_bind(&portal, &statement, formats).await
    }

    /// A message answered up to ReadyForQuery (Query, FunctionCall): forwarded when
    /// allowed, else replaced by a statement that fails so the target's transaction state
    /// is what an error would leave, and the gateway's error replaces the target's.
    async fn query_like(
        &mut self,
        frame: Frame,
        c: Classified,
        stop: &CancellationToken,
    ) -> Result<(), PgError> {
        let started = Instant::now();
        let decided = self.decide(&c, stop).await?;
        let cmd = c.command;
        match decided {
            None => {
                self.expect(Expect::Query {
                    cmd: Some(cmd),
                    started,
                    replace_error: None,
                })
                .await?;
                self.writer.push(frame.as_bytes()).await
            }
            Some(err) => {
                self.expect(Expect::Query {
                    cmd: None,
                    started,
                    replace_error: Some(err),
                })
                .await?;
                self.writer
                    .push(Query::encode(FAILING_STATEMENT).as_bytes())
                    .await
            }
        }
    }

    async fn push_failing_parse(&mut self) -> Result<(), PgError> {
        let mut body = Vec::with_capacity(FAILING_STATEMENT.len() + 4);
        body.push(0);
        body.extend_from_slice(FAILING_STATEMENT.as_bytes());
        body.push(0);
        body.extend_from_slice(&0i16.to_be_bytes());
        self.writer
            .push(Frame::new(tags::PARSE, &body).as_bytes())
            .await
    }
}
