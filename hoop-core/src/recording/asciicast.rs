//! [`AsciicastRecorder`]: asciicast v2 files of terminal sessions, for replay with any
//! asciinema player.
//!
//! The file is a header line
//! `{"version":2,"width":W,"height":H,"timestamp":UNIX,"env":{...},"title":"..."}`
//! followed by one `[elapsed_seconds, code, data]` line per [`Event::Terminal`]: `"o"`
//! output, `"i"` input, `"r"` resize (`"COLSxROWS"`), and `"m"` markers where the queue
//! dropped events. Other events are not part of a terminal replay and are ignored (a
//! [`TeeRecorder`](super::TeeRecorder) puts them in the JSONL audit file).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use async_trait::async_trait;

use super::jsonl::{create_private, open_or_discard};
use super::writer::{Encoder, QueuedRecording, WriterConfig};
use super::{Event, RecordError, Recorder, Recording, SessionMeta};

/// Writes `{dir}/{session_id}.cast` (asciicast v2) for every session.
///
/// The terminal size in the header comes from [`with_size`](Self::with_size) or, when
/// not set, from the session's first resize (`r`) event if it is the first terminal
/// event, else 80x24.
///
/// ```no_run
/// use hoop_core::recording::{AsciicastRecorder, JsonlRecorder, TeeRecorder};
///
/// let dir = "/var/lib/hoop/recordings";
/// let recorder = TeeRecorder::new()
///     .with(JsonlRecorder::new(dir))
///     .with(AsciicastRecorder::new(dir).with_env("SHELL", "/bin/bash"));
/// ```
#[derive(Clone, Debug)]
pub struct AsciicastRecorder {
    dir: PathBuf,
    size: Option<(u16, u16)>,
    env: BTreeMap<String, String>,
    writer: WriterConfig,
}

/// Terminal size used when neither configured nor announced by a first resize.
pub const DEFAULT_SIZE: (u16, u16) = (80, 24);

impl AsciicastRecorder {
    /// A recorder writing into `dir`, failing closed, with `TERM=xterm-256color` in the
    /// header's `env`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        let mut env = BTreeMap::new();
        env.insert(String::from("TERM"), String::from("xterm-256color"));
        AsciicastRecorder {
            dir: dir.into(),
            size: None,
            env,
            writer: WriterConfig::default(),
        }
    }

    /// Fixes the terminal size written in the header.
    pub fn with_size(mut self, width: u16, height: u16) -> Self {
        self.size = Some((width, height));
        self
    }

    /// Sets an `env` entry of the header (`TERM`, `SHELL`).
    pub fn with_env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.insert(key.into(), value.into());
        self
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
        self.dir.join(format!("{session_id}.cast"))
    }

    async fn open_inner(&self, meta: &SessionMeta) -> Result<Box<dyn Recording>, RecordError> {
        let path = self.path_for(&meta.session_id);
        let file = create_private(&self.dir, &path).await?;
        let encoder = CastEncoder {
            started: meta.started_at,
            size: self.size,
            env: self.env.clone(),
            title: format!(
                "{}@{} ({}, session {})",
                meta.identity.subject, meta.resource, meta.protocol, meta.session_id
            ),
            header_written: false,
            last_micros: 0,
        };
        Ok(Box::new(QueuedRecording::spawn(
            file.into_std().await,
            encoder,
            &self.writer,
            Some(path),
            |e| matches!(e, Event::Terminal { .. }),
        )?))
    }
}

#[async_trait]
impl Recorder for AsciicastRecorder {
    async fn open(&self, meta: &SessionMeta) -> Result<Box<dyn Recording>, RecordError> {
        open_or_discard(self.writer.fail_closed, "asciicast", self.open_inner(meta)).await
    }
}

#[derive(serde::Serialize)]
struct Header<'a> {
    version: u8,
    width: u16,
    height: u16,
    timestamp: u64,
    env: &'a BTreeMap<String, String>,
    title: &'a str,
}

struct CastEncoder {
    started: SystemTime,
    size: Option<(u16, u16)>,
    env: BTreeMap<String, String>,
    title: String,
    header_written: bool,
    /// Times never go backwards in the file, even if the clock does.
    last_micros: u64,
}

/// Parses `COLSxROWS`.
fn parse_size(s: &str) -> Option<(u16, u16)> {
    let (w, h) = s.split_once('x')?;
    let (w, h) = (w.trim().parse().ok()?, h.trim().parse().ok()?);
    (w > 0 && h > 0).then_some((w, h))
}

impl CastEncoder {
    fn header(&mut self, first: Option<&Event>, out: &mut Vec<u8>) -> Result<(), String> {
        if self.header_written {
            return Ok(());
        }
        let announced = match first {
            Some(Event::Terminal { stream: 'r', data }) => parse_size(data),
            _ => None,
        };
        let (width, height) = self.size.or(announced).unwrap_or(DEFAULT_SIZE);
        let timestamp = self
            .started
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        serde_json::to_writer(
            &mut *out,
            &Header {
                version: 2,
                width,
                height,
                timestamp,
                env: &self.env,
                title: &self.title,
            },
        )
        .map_err(|e| e.to_string())?;
        out.push(b'\n');
        self.header_written = true;
        Ok(())
    }

    fn line(
        &mut self,
        time: SystemTime,
        code: &str,
        data: &str,
        out: &mut Vec<u8>,
    ) -> Result<(), String> {
        let micros = time
            .duration_since(self.started)
            .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
            .unwrap_or(0)
            .max(self.last_micros);
        self.last_micros = micros;
        let secs = micros as f64 / 1_000_000.0;
        serde_json::to_writer(&mut *out, &(secs, code, data)).map_err(|e| e.to_string())?;
        out.push(b'\n');
        Ok(())
    }
}

impl Encoder for CastEncoder {
    fn event(&mut self, time: SystemTime, event: &Event, out: &mut Vec<u8>) -> Result<(), String> {
        let Event::Terminal { stream, data } = event else {
            return Ok(());
        };
        let code = match stream {
            'o' => "o",
            'i' => "i",
            'r' => "r",
            // Not a terminal stream asciicast knows: leave it to the audit file.
            _ => return Ok(()),
        };
        self.header(Some(event), out)?;
        self.line(time, code, data, out)
    }

    fn dropped(&mut self, time: SystemTime, count: u64, out: &mut Vec<u8>) -> Result<(), String> {
        self.header(None, out)?;
        self.line(time, "m", &format!("recording dropped {count} events"), out)
    }

    fn end(&mut self, _time: SystemTime, _reason: &str, out: &mut Vec<u8>) -> Result<(), String> {
        // An empty session still gets a valid file.
        self.header(None, out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("120x40"), Some((120, 40)));
        assert_eq!(parse_size("0x40"), None);
        assert_eq!(parse_size("x"), None);
        assert_eq!(parse_size("99999x1"), None);
    }
}
