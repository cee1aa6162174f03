//! Masking of values on their way to the client: DataRow values (by the result's
//! RowDescription), COPY TO STDOUT rows (text and CSV), and the fields of ErrorResponse /
//! NoticeResponse that can echo row values.
//!
//! A masked value stays valid for its column type: text-like types (`text`, `varchar`,
//! `bpchar`, `name`, `json`, `jsonb`, `xml`, `unknown`) get the masked string; for every
//! other type a value that would change becomes NULL, and so does every value of such a
//! column that a field-name rule masks (whatever the rule would write, without writing it).
//! A masked `json` / `jsonb` value stays a JSON document: a detector's replacement inside
//! a JSON string keeps the document as it is; when the masked text is no longer JSON (a
//! field rule replaced the whole value, a detector replaced a number) it becomes a JSON
//! string holding that text.
//!
//! # Values too large to inspect
//!
//! A row longer than [`PostgresOptions::mask_inspect_max`](crate::PostgresOptions::mask_inspect_max)
//! is not buffered whole: it is read column by column. Each value up to that cap is
//! buffered and masked as above. A longer value cannot be inspected with bounded memory,
//! so it is masked whole, failing closed ([`redact_whole`]): a text-like column gets
//! [`TOO_LARGE_REDACTION`] (as a JSON string in `json` / `jsonb`), any other type (or a column of unknown type) becomes NULL.
//! It counts as one masked value and the session goes on. The same holds for a value
//! that would take the rewritten row held in memory past four times the cap. A COPY TO
//! STDOUT row (text or CSV) longer than the cap is replaced by a row of as many fields,
//! each [`TOO_LARGE_REDACTION`] ([`CopyRowCounter`]). Without masking rules
//! ([`Masker::is_noop`]), long messages are forwarded piece by piece unchanged.
//!
//! Binary COPY TO STDOUT cannot be masked (its rows carry values in each type's binary
//! form, without names). With masking rules in force such a statement is refused before
//! it runs ([`crate::classify::copies_binary_out`]); a binary COPY the check did not
//! recognise ends the session when its output starts, before any row is sent.

use std::borrow::Cow;

use bytes::BytesMut;
use hoop_core::{Field, FieldKind, Masker, PreparedField};

use crate::binary_text;
use crate::codec::Frame;
use crate::error::PgError;
use crate::messages::{DataRow, ErrorFields, RowDescription, tags};

/// One result column, as needed for masking.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Column {
    /// Column name.
    pub name: String,
    /// Type OID.
    pub type_oid: u32,
    /// 0 text, 1 binary.
    pub format: i16,
    /// What the masker decided from the column alone ([`Masker::prepare`]), once per
    /// result instead of once per value. [`PreparedField::default`] (not prepared) is
    /// always correct, only slower.
    pub prepared: PreparedField,
}

impl Column {
    /// A column, with the masker's decisions about it made once.
    pub fn new(masker: &dyn Masker, name: String, type_oid: u32, format: i16) -> Self {
        let mut c = Column {
            name,
            type_oid,
            format,
            prepared: PreparedField::default(),
        };
        c.prepared = masker.prepare(&c.field());
        c
    }

    /// The column as the masker sees it.
    pub fn field(&self) -> Field<'_> {
        Field {
            name: Some(self.name.as_str()),
            table: None,
            kind: if is_text_like(self.type_oid) {
                FieldKind::Text
            } else {
                FieldKind::Typed
            },
        }
    }
}

/// Columns of a result, built from a RowDescription.
pub fn columns(masker: &dyn Masker, desc: &RowDescription<'_>) -> Vec<Column> {
    desc.fields
        .iter()
        .map(|f| Column::new(masker, f.name.to_owned(), f.type_oid, f.format))
        .collect()
}

/// Whether a type's values can hold any string.
pub fn is_text_like(oid: u32) -> bool {
    matches!(oid, 25 | 1043 | 1042 | 19 | 18 | 114 | 3802 | 142 | 705 | 0)
}

const JSONB_OID: u32 = 3802;
const JSON_OID: u32 = 114;

/// Whether `oid` is `json` or `jsonb`: a masked value must stay a JSON document.
fn is_json(oid: u32) -> bool {
    matches!(oid, JSON_OID | JSONB_OID)
}

/// Keeps a masked `json`/`jsonb` value a JSON document: when the masked text written to
/// `out` from `from` on is not one (a field rule replaced the whole value, a detector
/// replaced a number), it becomes a JSON string holding that text, so that a client
/// decoding the column still gets valid JSON and no original value.
fn keep_json_valid(out: &mut BytesMut, from: usize) {
    let Some(text) = out.get(from..) else {
        return;
    };
    // Checked without building the document (bounded memory for a large value; serde
    // limits the nesting depth).
    if serde_json::from_slice::<serde::de::IgnoredAny>(text).is_ok() {
        return;
    }
    let quoted = serde_json::to_string(&String::from_utf8_lossy(text))
        .unwrap_or_else(|_| String::from("null"));
    out.truncate(from);
    out.extend_from_slice(quoted.as_bytes());
}

/// What a value too large to inspect becomes in a text-like column.
pub const TOO_LARGE_REDACTION: &str = "[REDACTED:TOO_LARGE]";

/// Most fields a redacted COPY row may have (PostgreSQL's limit on a target list).
pub const MAX_COPY_FIELDS: usize = 1664;

/// What a value that is too large to inspect is replaced with, failing closed: `Some`
/// with [`TOO_LARGE_REDACTION`] (as the column's format carries it) for a text-like
/// column, `None` (NULL) for every other type, including an unknown one. A value of a
/// result without a description is treated as text, as [`mask_data_row`] does.
pub fn redact_whole(col: Option<&Column>) -> Option<Vec<u8>> {
    let (oid, format) = col.map_or((25, 0), |c| (c.type_oid, c.format));
    if !is_text_like(oid) {
        return None;
    }
    let mut out = Vec::with_capacity(TOO_LARGE_REDACTION.len() + 3);
    if oid == JSONB_OID && format == 1 {
        out.push(1);
    }
    if is_json(oid) {
        // A JSON string: the column stays a JSON document.
        out.push(b'"');
        out.extend_from_slice(TOO_LARGE_REDACTION.as_bytes());
        out.push(b'"');
    } else {
        out.extend_from_slice(TOO_LARGE_REDACTION.as_bytes());
    }
    Some(out)
}

/// Counts the fields of a COPY TO STDOUT row (text or CSV) fed piece by piece, to replace
/// a row too large to inspect by one of as many redacted fields.
#[derive(Clone, Debug)]
pub struct CopyRowCounter {
    format: CopyFormat,
    fields: usize,
    in_quotes: bool,
    last: Option<u8>,
}

impl CopyRowCounter {
    /// A counter for rows in `format`.
    pub fn new(format: CopyFormat) -> Self {
        CopyRowCounter {
            format,
            fields: 1,
            in_quotes: false,
            last: None,
        }
    }

    /// Feeds the next piece of the row.
    pub fn feed(&mut self, piece: &[u8]) {
        match self.format {
            CopyFormat::Text => {
                self.fields = self
                    .fields
                    .saturating_add(memchr::memchr_iter(b'\t', piece).count());
            }
            CopyFormat::Csv => {
                for &b in piece {
                    match b {
                        b'"' => self.in_quotes = !self.in_quotes,
                        b',' if !self.in_quotes => self.fields = self.fields.saturating_add(1),
                        _ => {}
                    }
                }
            }
            CopyFormat::Binary => {}
        }
        if let Some(&b) = piece.last() {
            self.last = Some(b);
        }
    }

    /// Fields seen so far.
    pub fn fields(&self) -> usize {
        self.fields
    }

    /// The CopyData body replacing the row: every field redacted, the line end kept.
    /// Fails when the row claims more than [`MAX_COPY_FIELDS`] fields.
    pub fn redacted_row(&self) -> Result<Vec<u8>, PgError> {
        if self.fields > MAX_COPY_FIELDS {
            return Err(PgError::Codec(crate::CodecError::Invalid {
                what: "CopyData",
                detail: format!("row of {} fields", self.fields),
            }));
        }
        let sep = if self.format == CopyFormat::Csv {
            b','
        } else {
            b'\t'
        };
        let mut out = Vec::with_capacity(self.fields * (TOO_LARGE_REDACTION.len() + 1) + 1);
        for i in 0..self.fields {
            if i > 0 {
                out.push(sep);
            }
            out.extend_from_slice(TOO_LARGE_REDACTION.as_bytes());
        }
        if self.last == Some(b'\n') {
            out.push(b'\n');
        }
        Ok(out)
    }
}

/// Masks one value. Returns `None` when the value passes unchanged, `Some(None)` when it
/// becomes NULL, `Some(Some(bytes))` when it is replaced. See [`mask_value_into`], which
/// writes a replacement straight into an output buffer.
pub fn mask_value(
    masker: &dyn Masker,
    col: Option<&Column>,
    value: &[u8],
) -> Option<Option<Vec<u8>>> {
    let mut out = BytesMut::new();
    match mask_value_into(masker, col, value, &mut out) {
        MaskedValue::Unchanged => None,
        MaskedValue::Null => Some(None),
        MaskedValue::Replaced => Some(Some(out.to_vec())),
    }
}

/// What [`mask_value_into`] did with a value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MaskedValue {
    /// It passes unchanged; nothing was appended.
    Unchanged,
    /// It becomes NULL (a typed column whose value would change); nothing was appended.
    Null,
    /// Its replacement (in the column's format) was appended.
    Replaced,
}

/// Masks one value of column `col` (`None`: a result without description, treated as
/// text), appending a replacement to `out`; see [`MaskedValue`]. No allocation of its
/// own: the masker writes into `out` ([`Masker::mask_prepared_into`]).
pub fn mask_value_into(
    masker: &dyn Masker,
    col: Option<&Column>,
    value: &[u8],
    out: &mut BytesMut,
) -> MaskedValue {
    const UNNAMED: Field<'static> = Field {
        name: None,
        table: None,
        kind: FieldKind::Text,
    };
    let unprepared = PreparedField::default();
    let (field, prepared, oid, format) = match col {
        Some(c) => (c.field(), &c.prepared, c.type_oid, c.format),
        None => (UNNAMED, &unprepared, 25, 0),
    };
    let whole = |masker: &dyn Masker| {
        if masker.masks_prepared(prepared, &field) {
            MaskedValue::Null
        } else {
            MaskedValue::Unchanged
        }
    };
    let start = out.len();
    let text_like = is_text_like(oid);
    if !text_like && masker.masks_prepared(prepared, &field) {
        // A typed column under a field rule: NULL, in either format.
        return MaskedValue::Null;
    }
    // A text-like column whose every value becomes the same text (a redacting field
    // rule): written without decoding the value (json and jsonb, which must stay JSON,
    // take the general path).
    if text_like
        && !is_json(oid)
        && let Some(r) = masker.replacement_prepared(prepared, &field)
    {
        out.extend_from_slice(r.as_bytes());
        return MaskedValue::Replaced;
    }
    if format == 1 {
        // Binary: text-like types are their UTF-8 bytes (jsonb with a version byte).
        let (prefix, body) = match (oid, value) {
            (JSONB_OID, [1, rest @ ..]) => (Some(1u8), rest),
            (JSONB_OID, _) => return whole(masker),
            _ => (None, value),
        };
        if text_like && let Ok(s) = std::str::from_utf8(body) {
            out.extend(prefix);
            return match masker.mask_prepared_into(prepared, &field, s, out) {
                Some(_) => {
                    if is_json(oid) {
                        keep_json_valid(out, start + usize::from(prefix.is_some()));
                    }
                    MaskedValue::Replaced
                }
                None => {
                    out.truncate(start);
                    MaskedValue::Unchanged
                }
            };
        }
        if text_like {
            // Not UTF-8 (a non-UTF-8 client encoding): as in the text format, a field
            // rule still applies; detectors cannot.
            return whole(masker);
        }
        // Not text: the detectors see what the value would show in the text format (a
        // number's digits, an address, an array's elements, the strings inside a
        // composite), and a value they would mask becomes NULL. A value that is not a
        // valid encoding of its type is NULL too (fail closed).
        let mut hit = false;
        let shown = binary_text::binary_texts(oid, value, &is_text_like, &mut |text| {
            hit = masker
                .mask_prepared_into(prepared, &field, text, out)
                .is_some();
            out.truncate(start);
            hit
        });
        return match shown {
            binary_text::Shown::Texts if hit => MaskedValue::Null,
            binary_text::Shown::Unreadable => MaskedValue::Null,
            binary_text::Shown::Texts | binary_text::Shown::Nothing => MaskedValue::Unchanged,
        };
    }
    let Ok(s) = std::str::from_utf8(value) else {
        // Not UTF-8 in a text-format value (a non-UTF-8 client encoding): a field rule
        // still applies; detectors cannot.
        return whole(masker);
    };
    match masker.mask_prepared_into(prepared, &field, s, out) {
        // An array or a record (`{1,4111111111111111}`, `(1,4111111111111111)`): its
        // elements are also seen apart, as in the binary format. A detector may take a
        // digit after `,` for the rest of a number ("1,234") and miss the value there.
        None if !text_like && s.starts_with(['{', '(']) && s.contains(',') => {
            let apart = s.replace(',', "\n");
            let hit = masker
                .mask_prepared_into(prepared, &field, &apart, out)
                .is_some();
            out.truncate(start);
            if hit {
                MaskedValue::Null
            } else {
                MaskedValue::Unchanged
            }
        }
        None => MaskedValue::Unchanged,
        Some(_) if text_like => {
            if is_json(oid) {
                keep_json_valid(out, start);
            }
            MaskedValue::Replaced
        }
        Some(_) => {
            out.truncate(start);
            MaskedValue::Null
        }
    }
}

/// Masks a DataRow. Returns the frame to send (the original when nothing changed) and
/// the number of masked values. See [`mask_data_row_into`], which writes a rewritten row
/// straight into an output buffer.
pub fn mask_data_row(
    masker: &dyn Masker,
    cols: &[Column],
    frame: Frame,
) -> Result<(Frame, u32), PgError> {
    let mut out = BytesMut::new();
    match mask_data_row_into(masker, cols, &frame, &mut out)? {
        0 => Ok((frame, 0)),
        n => Ok((Frame::from_wire(out.freeze())?, n)),
    }
}

/// Masks a DataRow into `out`: when a value changes, the rewritten row is appended to
/// `out` and the number of masked values returned; when nothing changes, nothing is
/// appended, 0 is returned, and the caller forwards the original frame.
///
/// One pass, no allocation while nothing changes: at the first changed value the output
/// row is started with the untouched prefix of the row, and from then on every value
/// (masked or original) is appended to it. With `out` the connection's output buffer, a
/// masked row costs no buffer of its own.
pub fn mask_data_row_into(
    masker: &dyn Masker,
    cols: &[Column],
    frame: &Frame,
    out: &mut BytesMut,
) -> Result<u32, PgError> {
    mask_data_row_wire(masker, cols, frame.as_bytes(), out)
}

/// [`mask_data_row_into`] for a DataRow given as its wire bytes (tag, length, body), such
/// as a message still in the read buffer.
pub fn mask_data_row_wire(
    masker: &dyn Masker,
    cols: &[Column],
    wire: &[u8],
    out: &mut BytesMut,
) -> Result<u32, PgError> {
    let start = out.len();
    let body = wire.get(5..).unwrap_or_default();
    let r = rewrite_row(masker, cols, body, out, start);
    if r.is_err() {
        out.truncate(start);
    }
    r
}

fn rewrite_row(
    masker: &dyn Masker,
    cols: &[Column],
    body: &[u8],
    out: &mut BytesMut,
    start: usize,
) -> Result<u32, PgError> {
    let row = DataRow::parse(body)?;
    let mut started = false;
    let mut n = 0u32;
    // Offset in the body of the current value's length field (after the 2-byte count).
    let mut pos = 2usize;
    for (i, v) in row.values().enumerate() {
        let v = v?;
        let wire_len = 4 + v.map_or(0, <[u8]>::len);
        // Each value is masked in place at the end of `out`, after a length field.
        let mark = out.len();
        let result = match v {
            None => MaskedValue::Unchanged,
            Some(v) => {
                out.extend_from_slice(&[0; 4]);
                let r = mask_value_into(masker, cols.get(i), v, out);
                match r {
                    MaskedValue::Replaced => {
                        let len = i32::try_from(out.len() - mark - 4).map_err(|_| too_long())?;
                        if let Some(field) = out.get_mut(mark..mark + 4) {
                            field.copy_from_slice(&len.to_be_bytes());
                        }
                    }
                    MaskedValue::Null => {
                        out.truncate(mark);
                        out.extend_from_slice(&(-1i32).to_be_bytes());
                    }
                    MaskedValue::Unchanged => out.truncate(mark),
                }
                r
            }
        };
        match result {
            MaskedValue::Unchanged if started => {
                out.extend_from_slice(slice(body, pos, wire_len)?);
            }
            MaskedValue::Unchanged => {}
            MaskedValue::Null | MaskedValue::Replaced => {
                n += 1;
                if !started {
                    // The tag, a length fixed up below, and the untouched prefix go in
                    // front of the value just written (moved through the stack when
                    // short, as it usually is).
                    let prefix = slice(body, 0, pos)?;
                    out.reserve(body.len() + 5 + 64);
                    let mut short = [0u8; 64];
                    match (out.get(mark..), short.get_mut(..out.len() - mark)) {
                        (Some(value), Some(keep)) => {
                            keep.copy_from_slice(value);
                            out.truncate(mark);
                            out.extend_from_slice(&[tags::DATA_ROW, 0, 0, 0, 0]);
                            out.extend_from_slice(prefix);
                            out.extend_from_slice(keep);
                        }
                        _ => {
                            out.extend_from_slice(&[tags::DATA_ROW, 0, 0, 0, 0]);
                            out.extend_from_slice(prefix);
                            if let Some(tail) = out.get_mut(mark..) {
                                tail.rotate_right(5 + prefix.len());
                            }
                        }
                    }
                    started = true;
                }
            }
        }
        pos += wire_len;
    }
    if !started {
        return Ok(0);
    }
    // The length field counts itself and the body, not the tag.
    let len = u32::try_from(out.len() - start - 1).map_err(|_| too_long())?;
    if let Some(field) = out.get_mut(start + 1..start + 5) {
        field.copy_from_slice(&len.to_be_bytes());
    }
    Ok(n)
}

/// `len` bytes of `body` from `pos` (always in range: the values were read from there).
fn slice(body: &[u8], pos: usize, len: usize) -> Result<&[u8], PgError> {
    body.get(pos..pos + len)
        .ok_or(PgError::Codec(crate::CodecError::Truncated("DataRow")))
}

fn too_long() -> PgError {
    PgError::Codec(crate::CodecError::Invalid {
        what: "DataRow",
        detail: "masked row too long".into(),
    })
}

/// COPY TO STDOUT row format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CopyFormat {
    /// Tab-separated text with backslash escapes; `\N` is NULL.
    Text,
    /// CSV with `"` quoting.
    Csv,
    /// Binary: only seen without masking rules (with them, binary COPY output is
    /// refused), so its rows pass unchanged.
    Binary,
}

/// Masks one CopyData row of COPY TO STDOUT. Returns the frame to send and the number of
/// masked values.
pub fn mask_copy_row(masker: &dyn Masker, format: CopyFormat, frame: Frame) -> (Frame, u32) {
    let body = frame.body();
    let Ok(text) = std::str::from_utf8(body) else {
        return (frame, 0);
    };
    let field = Field::anonymous();
    let (out, n) = match format {
        CopyFormat::Binary => return (frame, 0),
        CopyFormat::Text => {
            let line = text.strip_suffix('\n').unwrap_or(text);
            let mut n = 0u32;
            let mut parts: Vec<Cow<'_, str>> = Vec::new();
            for f in line.split('\t') {
                let m = if f == "\\N" {
                    Cow::Borrowed(f)
                } else {
                    masker.mask(&field, f)
                };
                if matches!(m, Cow::Owned(_)) {
                    n += 1;
                }
                parts.push(m);
            }
            if n == 0 {
                return (frame, 0);
            }
            let mut s = parts.join("\t");
            if text.ends_with('\n') {
                s.push('\n');
            }
            (s, n)
        }
        CopyFormat::Csv => {
            let line = text.strip_suffix('\n').unwrap_or(text);
            let mut n = 0u32;
            let mut out = String::with_capacity(text.len());
            for (i, (value, quoted)) in split_csv(line).into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let m = masker.mask(&field, &value);
                let changed = matches!(m, Cow::Owned(_));
                if changed {
                    n += 1;
                }
                if quoted || m.contains([',', '"', '\n', '\r']) {
                    out.push('"');
                    out.push_str(&m.replace('"', "\"\""));
                    out.push('"');
                } else {
                    out.push_str(&m);
                }
            }
            if n == 0 {
                return (frame, 0);
            }
            if text.ends_with('\n') {
                out.push('\n');
            }
            (out, n)
        }
    };
    (Frame::new(tags::COPY_DATA, out.as_bytes()), n)
}

/// Splits a CSV line into (unquoted value, was quoted).
fn split_csv(line: &str) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut in_quotes = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, in_quotes) {
            ('"', true) if chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            ('"', true) => in_quotes = false,
            ('"', false) if cur.is_empty() => {
                in_quotes = true;
                quoted = true;
            }
            (',', false) => {
                out.push((std::mem::take(&mut cur), quoted));
                quoted = false;
            }
            (c, _) => cur.push(c),
        }
    }
    out.push((cur, quoted));
    out
}

/// Masks the free-text fields of an ErrorResponse / NoticeResponse (message, detail,
/// hint, context) with the content detectors.
pub fn mask_error_fields(masker: &dyn Masker, frame: Frame) -> Result<(Frame, u32), PgError> {
    let fields = ErrorFields::parse(frame.body())?;
    let field = Field::anonymous();
    let mut n = 0u32;
    let masked: Vec<(u8, Cow<'_, str>)> = fields
        .fields
        .iter()
        .map(|(code, v)| {
            if matches!(code, b'M' | b'D' | b'H' | b'W' | b'q') {
                let m = masker.mask(&field, v);
                if matches!(m, Cow::Owned(_)) {
                    n += 1;
                }
                (*code, m)
            } else {
                (*code, Cow::Borrowed(*v))
            }
        })
        .collect();
    if n == 0 {
        return Ok((frame, 0));
    }
    let tag = frame.tag();
    Ok((
        ErrorFields::encode(tag, masked.iter().map(|(c, v)| (*c, v.as_ref()))),
        n,
    ))
}

/// Masks the payload of a NotificationResponse with the content detectors: a `NOTIFY`
/// payload is free text, often a row a trigger sent (`pg_notify('c', row_to_json(NEW))`).
pub fn mask_notification(masker: &dyn Masker, frame: Frame) -> Result<(Frame, u32), PgError> {
    let mut c = crate::messages::Cursor::new(frame.body(), "NotificationResponse");
    let pid = c.i32()?;
    let channel = c.cstr()?;
    let payload = c.cstr()?;
    c.finish()?;
    match masker.mask(&Field::anonymous(), payload) {
        Cow::Borrowed(_) => Ok((frame, 0)),
        Cow::Owned(m) => {
            let mut body = pid.to_be_bytes().to_vec();
            crate::messages::put_cstr(&mut body, channel);
            // A NUL would end the string early: none is left in it.
            crate::messages::put_cstr(&mut body, &m.replace('\0', ""));
            Ok((Frame::new(tags::NOTIFICATION, &body), 1))
        }
    }
}

/// Masks the result of a FunctionCall (large-object reads by `loread` among others):
/// when the content detectors find something in it, read as text, the result becomes
/// NULL. A function result has no column to keep a masked text valid for.
pub fn mask_function_result(masker: &dyn Masker, frame: Frame) -> Result<(Frame, u32), PgError> {
    let mut c = crate::messages::Cursor::new(frame.body(), "FunctionCallResponse");
    let value = c.value()?;
    c.finish()?;
    let Some(value) = value else {
        return Ok((frame, 0));
    };
    match masker.mask(&Field::anonymous(), &String::from_utf8_lossy(value)) {
        Cow::Borrowed(_) => Ok((frame, 0)),
        Cow::Owned(_) => Ok((null_function_result(), 1)),
    }
}

/// A FunctionCallResponse with a NULL result.
pub fn null_function_result() -> Frame {
    Frame::new(tags::FUNCTION_CALL_RESPONSE, &(-1i32).to_be_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Masks any value containing '@' (like an e-mail detector) and every value of a
    /// column named `secret`.
    struct AtMasker;
    impl Masker for AtMasker {
        fn mask<'v>(&self, field: &Field<'_>, value: &'v str) -> Cow<'v, str> {
            if field.name == Some("secret") || value.contains('@') {
                // Long values keep their length: a long replacement.
                if value.len() > 64 {
                    return Cow::Owned(value.replace('@', "#"));
                }
                Cow::Owned("[REDACTED]".into())
            } else {
                Cow::Borrowed(value)
            }
        }
        fn masks_field(&self, field: &Field<'_>) -> bool {
            field.name == Some("secret")
        }
    }

    fn col(name: &str, oid: u32, format: i16) -> Column {
        Column::new(&AtMasker, name.into(), oid, format)
    }

    #[test]
    fn data_row_text_typed_binary() {
        let cols = vec![
            col("email", 25, 0),
            col("id", 23, 0),
            col("secret", 23, 1),
            col("note", 25, 1),
        ];
        let f = DataRow::encode([
            Some(Cow::Borrowed(&b"a@b.c"[..])),
            Some(Cow::Borrowed(&b"42"[..])),
            Some(Cow::Borrowed(&[0u8, 0, 0, 7][..])),
            Some(Cow::Borrowed(&b"x@y"[..])),
        ]);
        let (out, n) = mask_data_row(&AtMasker, &cols, f).unwrap();
        assert_eq!(n, 3);
        let row = DataRow::parse(out.body()).unwrap();
        let v: Vec<_> = row.values().collect::<Result<_, _>>().unwrap();
        assert_eq!(v[0], Some(&b"[REDACTED]"[..]));
        assert_eq!(v[1], Some(&b"42"[..]));
        assert_eq!(v[2], None, "binary int under a name rule becomes NULL");
        assert_eq!(
            v[3],
            Some(&b"[REDACTED]"[..]),
            "binary text is masked as text"
        );
    }

    /// A redacting field rule's fixed replacement is written without decoding the value:
    /// a value that is not UTF-8 (another client encoding) is redacted, not nulled; binary
    /// jsonb keeps its version byte and gets a JSON string.
    #[test]
    fn fixed_replacement_without_decoding() {
        let m = hoop_core::masking::RuleMasker::builder()
            .all_detectors(hoop_core::masking::Strategy::Redact)
            .field_rule("secret", hoop_core::masking::Strategy::Redact)
            .build()
            .unwrap();
        let cols = [
            Column::new(&m, "secret".into(), 25, 0),
            Column::new(&m, "secret".into(), 1043, 1),
            Column::new(&m, "secret".into(), JSONB_OID, 1),
            Column::new(&m, "note".into(), 25, 0),
        ];
        let values: [&[u8]; 4] = [b"caf\xe9", b"plain", b"\x01{\"a\":1}", b"a@example.com"];
        for (col, value) in cols.iter().zip(values) {
            let mut out = BytesMut::new();
            let r = mask_value_into(&m, Some(col), value, &mut out);
            assert_eq!(r, MaskedValue::Replaced, "{}", col.type_oid);
            let want: &[u8] = if col.type_oid == JSONB_OID {
                b"\x01\"[REDACTED]\""
            } else if col.name == "note" {
                b"[REDACTED:EMAIL]"
            } else {
                b"[REDACTED]"
            };
            assert_eq!(&out[..], want, "{}", col.type_oid);
        }
    }

    /// Masked json and jsonb values stay JSON documents: a whole-value rule gives a JSON
    /// string, a detector inside a string keeps the document, a detector that replaced a
    /// number turns the masked text into a JSON string; too large a value too.
    #[test]
    fn json_columns_stay_json() {
        let m = hoop_core::masking::RuleMasker::builder()
            .all_detectors(hoop_core::masking::Strategy::Redact)
            .field_rule("secret", hoop_core::masking::Strategy::Redact)
            .field_rule("hint", hoop_core::masking::Strategy::Partial)
            .build()
            .unwrap();
        let card = "4111 1111 1111 1111";
        let cases: [(&str, u32, i16, String); 6] = [
            ("secret", JSON_OID, 0, String::from(r#"{"a":1}"#)),
            ("secret", JSONB_OID, 1, String::from("\u{1}[1,2]")),
            ("hint", JSON_OID, 0, String::from(r#""abcdefgh""#)),
            (
                "note",
                JSON_OID,
                0,
                String::from(r#"{"mail":"a@example.com"}"#),
            ),
            ("note", JSONB_OID, 0, format!(r#"{{"card":"{card}"}}"#)),
            ("note", JSON_OID, 0, String::from("[4111111111111111]")),
        ];
        for (name, oid, format, value) in cases {
            let col = Column::new(&m, name.into(), oid, format);
            let mut out = BytesMut::new();
            let r = mask_value_into(&m, Some(&col), value.as_bytes(), &mut out);
            assert_eq!(r, MaskedValue::Replaced, "{name} {value}");
            let doc = if format == 1 {
                assert_eq!(out.first(), Some(&1), "jsonb version byte");
                &out[1..]
            } else {
                &out[..]
            };
            let parsed: serde_json::Value = serde_json::from_slice(doc)
                .unwrap_or_else(|e| panic!("{name} {value}: not JSON ({e}): {out:?}"));
            let text = parsed.to_string();
            assert!(
                !text.contains("a@example.com") && !text.contains("4111"),
                "{text}"
            );
            assert!(text.contains("REDACTED") || name == "hint", "{text}");
        }
        // Deep nesting: checked without recursion (no stack overflow), and the masked
        // document, still JSON, goes out as it is.
        let deep = format!("{}\"a@example.com\"{}", "[".repeat(5000), "]".repeat(5000));
        let col = Column::new(&m, "note".into(), JSON_OID, 0);
        let mut out = BytesMut::new();
        assert_eq!(
            mask_value_into(&m, Some(&col), deep.as_bytes(), &mut out),
            MaskedValue::Replaced
        );
        assert!(serde_json::from_slice::<serde::de::IgnoredAny>(&out).is_ok());
        let text = String::from_utf8(out.to_vec()).unwrap();
        assert!(text.starts_with("[[[") && text.contains("[REDACTED:EMAIL]"));
        assert!(!text.contains("a@example.com"));
        // A value too large to inspect.
        for (oid, format) in [(JSON_OID, 0), (JSONB_OID, 1)] {
            let col = Column::new(&m, "note".into(), oid, format);
            let whole = redact_whole(Some(&col)).unwrap();
            let doc = whole.get(usize::from(format == 1)..).unwrap();
            assert_eq!(
                serde_json::from_slice::<String>(doc).unwrap(),
                TOO_LARGE_REDACTION
            );
        }
    }

    #[test]
    fn masked_rows_match_a_reference_encoding() {
        let cols = vec![col("a", 25, 0), col("secret", 23, 0), col("c", 25, 0)];
        let long = [&b"a@"[..], &[b'x'; 100]].concat();
        let rows: [[Option<&[u8]>; 4]; 7] = [
            [Some(&long), Some(b"7"), None, Some(b"extra")],
            [Some(b"plain"), None, Some(&long), Some(b"q@r")],
            [Some(b"x"), Some(b"7"), None, Some(b"extra")],
            [None, Some(b"7"), Some(b"a@b"), None],
            [Some(b"a@b"), None, Some(b""), Some(b"q@r")],
            [Some(b""), Some(b"12345"), Some(b"plain"), Some(b"z")],
            [None, None, None, None],
        ];
        for r in rows {
            let f = DataRow::encode(r.iter().map(|v| v.map(Cow::Borrowed)));
            let (out, n) = mask_data_row(&AtMasker, &cols, f.clone()).unwrap();
            let mut want_n = 0;
            let want = DataRow::encode(r.iter().enumerate().map(|(i, v)| {
                match v.and_then(|v| mask_value(&AtMasker, cols.get(i), v)) {
                    None => v.map(Cow::Borrowed),
                    Some(new) => {
                        want_n += 1;
                        new.map(Cow::Owned)
                    }
                }
            }));
            assert_eq!(n, want_n);
            assert_eq!(out.as_bytes(), want.as_bytes(), "row {r:?}");
        }
    }

    #[test]
    fn unchanged_row_is_the_same_frame() {
        let cols = vec![col("a", 25, 0)];
        let f = DataRow::encode([Some(Cow::Borrowed(&b"plain"[..])), None]);
        let (out, n) = mask_data_row(&AtMasker, &cols, f.clone()).unwrap();
        assert_eq!(n, 0);
        assert_eq!(out.as_bytes().as_ptr(), f.as_bytes().as_ptr());
    }

    #[test]
    fn values_too_large_to_inspect_fail_closed_by_type() {
        let redaction = TOO_LARGE_REDACTION.as_bytes().to_vec();
        assert_eq!(
            redact_whole(Some(&col("a", 25, 0))),
            Some(redaction.clone())
        );
        assert_eq!(
            redact_whole(Some(&col("a", 25, 1))),
            Some(redaction.clone())
        );
        assert_eq!(
            redact_whole(None),
            Some(redaction.clone()),
            "undescribed: text"
        );
        // jsonb: its version byte, then a JSON string.
        let mut jsonb = vec![1u8, b'"'];
        jsonb.extend_from_slice(&redaction);
        jsonb.push(b'"');
        assert_eq!(redact_whole(Some(&col("j", JSONB_OID, 1))), Some(jsonb));
        assert_eq!(redact_whole(Some(&col("b", 17, 0))), None, "bytea: NULL");
        assert_eq!(redact_whole(Some(&col("i", 23, 1))), None, "int4: NULL");
        assert_eq!(
            redact_whole(Some(&col("u", u32::MAX, 0))),
            None,
            "unknown: NULL"
        );
    }

    #[test]
    fn copy_row_counter_counts_fields_across_pieces() {
        let r = TOO_LARGE_REDACTION;
        let text = b"a\tb\tc\td\n";
        let csv = b"\"x,\"\"y\",z,\"w\nv\"\n";
        for split in 0..=text.len() {
            let mut c = CopyRowCounter::new(CopyFormat::Text);
            c.feed(&text[..split]);
            c.feed(&text[split..]);
            assert_eq!(c.fields(), 4);
            let want = format!("{r}\t{r}\t{r}\t{r}\n");
            assert_eq!(c.redacted_row().unwrap(), want.as_bytes());
        }
        for split in 0..=csv.len() {
            let mut c = CopyRowCounter::new(CopyFormat::Csv);
            c.feed(&csv[..split]);
            c.feed(&csv[split..]);
            assert_eq!(c.fields(), 3, "quoted commas and newlines are data");
            assert_eq!(
                c.redacted_row().unwrap(),
                format!("{r},{r},{r}\n").as_bytes()
            );
        }
        let mut c = CopyRowCounter::new(CopyFormat::Text);
        c.feed(&vec![b'\t'; MAX_COPY_FIELDS + 1]);
        assert!(
            c.redacted_row().is_err(),
            "a hostile field count is refused"
        );
    }

    #[test]
    fn copy_rows() {
        let f = Frame::new(tags::COPY_DATA, b"1\ta@b.c\t\\N\n");
        let (out, n) = mask_copy_row(&AtMasker, CopyFormat::Text, f);
        assert_eq!(n, 1);
        assert_eq!(out.body(), b"1\t[REDACTED]\t\\N\n");
        let f = Frame::new(tags::COPY_DATA, b"1,\"a@b.c, x\",plain\n");
        let (out, n) = mask_copy_row(&AtMasker, CopyFormat::Csv, f);
        assert_eq!(n, 1);
        assert_eq!(out.body(), b"1,\"[REDACTED]\",plain\n");
    }

    #[test]
    fn error_detail() {
        let f = ErrorFields::encode(
            b'E',
            [
                (b'S', "ERROR"),
                (b'C', "23505"),
                (b'M', "duplicate key"),
                (b'D', "Key (email)=(a@b.c) already exists."),
            ],
        );
        let (out, n) = mask_error_fields(&AtMasker, f).unwrap();
        assert_eq!(n, 1);
        let p = ErrorFields::parse(out.body()).unwrap();
        assert_eq!(p.get(b'D'), Some("[REDACTED]"));
        assert_eq!(p.code(), Some("23505"));
    }
}
