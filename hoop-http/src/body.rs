//! Response bodies: masking of JSON and text, gzip/deflate decoding, bounded buffering.

use std::borrow::Cow;
use std::io::Read;

use bytes::Bytes;
use hoop_core::{Field, Masker};
use http::HeaderMap;
use http::header;
use serde_json::Value;

/// What kind of body a `Content-Type` announces, for masking.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyKind {
    /// `application/json` or `*/*+json`: masked by key name and by detectors.
    Json,
    /// `text/*`, the textual `application/` types (XML, YAML, form data, JavaScript,
    /// CSV, NDJSON) and a response without a `Content-Type`: masked by detectors (a body
    /// that is then not UTF-8 is refused).
    Text,
    /// Structured binary encodings the gateway cannot read (protobuf, including
    /// Kubernetes', MessagePack, CBOR, Avro, gRPC): refused while masking rules are in
    /// force, so that asking for another encoding cannot get around them.
    Sealed,
    /// Anything else (images, archives, `application/octet-stream`...): not inspected.
    Opaque,
}

/// Media types that carry structured data in a binary encoding the masking cannot read.
pub fn is_sealed_media_type(mime: &str) -> bool {
    let mime = mime.trim().to_ascii_lowercase();
    mime.contains("protobuf")
        || mime.contains("msgpack")
        || mime.contains("messagepack")
        || mime.ends_with("cbor")
        || mime.contains("avro")
        || mime.starts_with("application/grpc")
        || mime.starts_with("application/x-thrift")
        || mime.starts_with("application/vnd.apache.thrift")
}

/// Textual `application/` types, masked like `text/*`.
fn is_textual_application(mime: &str) -> bool {
    matches!(
        mime,
        "application/xml"
            | "application/yaml"
            | "application/x-yaml"
            | "application/x-www-form-urlencoded"
            | "application/javascript"
            | "application/ecmascript"
            | "application/csv"
            | "application/x-ndjson"
            | "application/jsonl"
            | "application/graphql"
            | "application/sql"
            | "application/x-sh"
    ) || mime.ends_with("+xml")
        || mime.ends_with("+yaml")
}

impl BodyKind {
    /// The kind of a response from its headers.
    pub fn of(headers: &HeaderMap) -> BodyKind {
        let Some(ct) = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
        else {
            // Unlabelled: read as text (what cannot be read so is refused).
            return BodyKind::Text;
        };
        let mime = ct
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if mime == "application/json" || mime.ends_with("+json") {
            BodyKind::Json
        } else if mime.starts_with("text/") || is_textual_application(&mime) {
            BodyKind::Text
        } else if is_sealed_media_type(&mime) {
            BodyKind::Sealed
        } else {
            BodyKind::Opaque
        }
    }
}

/// How a body is encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Coding {
    /// No content coding.
    Identity,
    /// gzip.
    Gzip,
    /// deflate (zlib, or raw deflate as some servers send).
    Deflate,
}

impl Coding {
    /// The coding of a response; `None` for a coding the gateway cannot decode.
    pub fn of(headers: &HeaderMap) -> Option<Coding> {
        let Some(v) = headers.get(header::CONTENT_ENCODING) else {
            return Some(Coding::Identity);
        };
        match v.to_str().ok()?.trim().to_ascii_lowercase().as_str() {
            "" | "identity" => Some(Coding::Identity),
            "gzip" | "x-gzip" => Some(Coding::Gzip),
            "deflate" => Some(Coding::Deflate),
            _ => None,
        }
    }
}

/// Decodes `data` in `coding`, refusing output larger than `limit` (zip bombs).
pub fn decode(data: &[u8], coding: Coding, limit: usize) -> Result<Cow<'_, [u8]>, String> {
    fn read_limited(r: impl Read, limit: usize) -> Result<Vec<u8>, String> {
        let mut out = Vec::new();
        let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
        r.take(cap)
            .read_to_end(&mut out)
            .map_err(|e| format!("cannot decode the body: {e}"))?;
        if out.len() > limit {
            return Err(format!("decoded body larger than {limit} bytes"));
        }
        Ok(out)
    }
    match coding {
        Coding::Identity => Ok(Cow::Borrowed(data)),
        Coding::Gzip => {
            read_limited(flate2::read::MultiGzDecoder::new(data), limit).map(Cow::Owned)
        }
        Coding::Deflate => read_limited(flate2::read::ZlibDecoder::new(data), limit)
            .or_else(|_| read_limited(flate2::read::DeflateDecoder::new(data), limit))
            .map(Cow::Owned),
    }
}

/// Masks string values of a JSON document: by the name of the key they are under (also
/// inside arrays under that key) and by the masker's detectors. Values that are not
/// strings under a key the masker always masks are replaced by the masked text of their
/// JSON form. Returns the re-serialised document and the number of values masked, or
/// `None` when nothing changed (the original bytes are then sent as they are).
pub fn mask_json(masker: &dyn Masker, data: &[u8]) -> Result<Option<(Vec<u8>, u64)>, String> {
    if data.iter().all(u8::is_ascii_whitespace) || !crate::scan::needs_masking(masker, data)? {
        return Ok(None);
    }
    let mut doc: Value =
        serde_json::from_slice(data).map_err(|e| format!("invalid JSON body: {e}"))?;
    let mut count = 0u64;
    let plans = crate::scan::Plans::default();
    walk(masker, &plans, None, &mut doc, &mut count);
    if count == 0 {
        return Ok(None);
    }
    serde_json::to_vec(&doc)
        .map(|v| Some((v, count)))
        .map_err(|e| format!("cannot serialise the masked body: {e}"))
}

fn walk(
    masker: &dyn Masker,
    plans: &crate::scan::Plans,
    key: Option<&str>,
    v: &mut Value,
    count: &mut u64,
) {
    let field = match key {
        Some(k) => Field::named(k),
        None => Field::anonymous(),
    };
    match v {
        Value::String(s) => {
            let plan = plans.get(masker, &field);
            if let (Cow::Owned(m), n) = masker.mask_prepared(&plan, &field, s)
                && m != *s
            {
                *s = m;
                *count += u64::from(n.max(1));
            }
        }
        Value::Array(items) => {
            for item in items {
                walk(masker, plans, key, item, count);
            }
        }
        Value::Object(map) => {
            for (k, item) in map.iter_mut() {
                walk(masker, plans, Some(k), item, count);
            }
        }
        Value::Number(n) => {
            // A rule on the key masks the number; otherwise the detectors see its
            // digits (a card number sent as a number). Either way a masked number
            // becomes the masked string.
            let plan = plans.get(masker, &field);
            let text = crate::scan::number_text(n);
            let masked = if masker.masks_prepared(&plan, &field) {
                Some(masker.mask(&field, &text).into_owned())
            } else {
                match masker.mask_prepared(&plan, &field, &text).0 {
                    Cow::Owned(m) if m != text => Some(m),
                    _ => None,
                }
            };
            if let Some(m) = masked {
                *v = Value::String(m);
                *count += 1;
            }
        }
        Value::Bool(_) => {
            if masker.masks_field(&field) {
                let text = v.to_string();
                let masked = masker.mask(&field, &text).into_owned();
                *v = Value::String(masked);
                *count += 1;
            }
        }
        Value::Null => {}
    }
}

/// Masks a text body line by line with the masker's detectors. `None` when nothing
/// changed. Invalid UTF-8 is refused (fail closed: it cannot be inspected).
pub fn mask_text(masker: &dyn Masker, data: &[u8]) -> Result<Option<(Vec<u8>, u64)>, String> {
    let text = std::str::from_utf8(data).map_err(|_| String::from("text body is not UTF-8"))?;
    let field = Field::anonymous();
    let mut out = String::new();
    let mut count = 0u64;
    let mut changed = false;
    let mut pos = 0usize;
    for line in text.split_inclusive('\n') {
        let (body, nl) = match line.strip_suffix('\n') {
            Some(b) => (b, "\n"),
            None => (line, ""),
        };
        match masker.mask_counted(&field, body) {
            (Cow::Owned(m), n) if m != body => {
                if !changed {
                    out.reserve(text.len());
                    out.push_str(text.get(..pos).unwrap_or(""));
                    changed = true;
                }
                out.push_str(&m);
                out.push_str(nl);
                count += u64::from(n.max(1));
            }
            _ if changed => out.push_str(line),
            _ => {}
        }
        pos += line.len();
    }
    Ok(changed.then(|| (out.into_bytes(), count)))
}

/// Masks a whole decoded body of `kind`. `None` when nothing changed.
pub fn mask_body(
    masker: &dyn Masker,
    kind: BodyKind,
    data: &[u8],
) -> Result<Option<(Bytes, u64)>, String> {
    let r = match kind {
        BodyKind::Json => mask_json(masker, data)?,
        BodyKind::Text => mask_text(masker, data)?,
        BodyKind::Sealed => {
            return Err(String::from(
                "the response's content type cannot be inspected for masking",
            ));
        }
        BodyKind::Opaque => None,
    };
    Ok(r.map(|(v, n)| (Bytes::from(v), n)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    struct M;
    impl Masker for M {
        fn mask<'v>(&self, field: &Field<'_>, value: &'v str) -> Cow<'v, str> {
            if field.name == Some("ssn") {
                return Cow::Owned("[SSN]".into());
            }
            if value.contains('@') {
                Cow::Owned("[EMAIL]".into())
            } else {
                Cow::Borrowed(value)
            }
        }
        fn masks_field(&self, field: &Field<'_>) -> bool {
            field.name == Some("ssn")
        }
    }

    #[test]
    fn json_nested_arrays_and_objects() {
        let body = br#"{"users":[{"email":"a@x.io","ssn":"1","n":1},{"emails":["b@x.io","ok"],"ssn":123}],"note":"plain"}"#;
        let (out, n) = mask_json(&M, body).unwrap().unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(n, 4);
        assert_eq!(v["users"][0]["email"], "[EMAIL]");
        assert_eq!(v["users"][0]["ssn"], "[SSN]");
        assert_eq!(v["users"][0]["n"], 1);
        assert_eq!(v["users"][1]["emails"][0], "[EMAIL]");
        assert_eq!(v["users"][1]["emails"][1], "ok");
        assert_eq!(v["users"][1]["ssn"], "[SSN]");
        assert_eq!(v["note"], "plain");
        assert!(mask_json(&M, br#"{"a":[1,"x"]}"#).unwrap().is_none());
        assert!(mask_json(&M, b"{not json").is_err());
        assert!(mask_json(&M, b"").unwrap().is_none());
        assert!(mask_json(&M, b" \n").unwrap().is_none());
    }

    #[test]
    fn json_numbers_pass_the_detectors() {
        let masker = hoop_core::masking::RuleMasker::builder()
            .all_detectors(hoop_core::masking::Strategy::Redact)
            .build()
            .unwrap();
        let body = br#"{"card":4111111111111111,"id":42,"items":[{"card":5500005555555559}]}"#;
        let (out, n) = mask_json(&masker, body).unwrap().unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(n, 2);
        assert!(v["card"].is_string(), "{v}");
        assert!(!v["card"].as_str().unwrap().contains("4111111111111111"));
        assert!(
            !v["items"][0]["card"]
                .as_str()
                .unwrap()
                .contains("5500005555555559")
        );
        assert_eq!(v["id"], 42, "other numbers stay numbers");
        assert!(
            mask_json(&masker, br#"{"id":42,"n":[1,2.5]}"#)
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn text_lines() {
        let (out, n) = mask_text(&M, b"hello\nmail a@b.c\nbye").unwrap().unwrap();
        assert_eq!(out, b"hello\n[EMAIL]\nbye");
        assert_eq!(n, 1);
        assert!(mask_text(&M, b"nothing here\n").unwrap().is_none());
        assert!(mask_text(&M, &[0xff, 0xfe]).is_err());
    }

    #[test]
    fn gzip_and_deflate_round_trip_with_limit() {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(b"hello world").unwrap();
        let gz = gz.finish().unwrap();
        assert_eq!(
            decode(&gz, Coding::Gzip, 100).unwrap().as_ref(),
            b"hello world"
        );
        assert!(decode(&gz, Coding::Gzip, 5).is_err());
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(b"zlib").unwrap();
        assert_eq!(
            decode(&z.finish().unwrap(), Coding::Deflate, 100)
                .unwrap()
                .as_ref(),
            b"zlib"
        );
        let mut d = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
        d.write_all(b"raw").unwrap();
        assert_eq!(
            decode(&d.finish().unwrap(), Coding::Deflate, 100)
                .unwrap()
                .as_ref(),
            b"raw"
        );
        assert!(decode(b"not gzip", Coding::Gzip, 100).is_err());
    }

    #[test]
    fn kinds() {
        let mut h = HeaderMap::new();
        // Unlabelled: read as text, never passed through unread.
        assert_eq!(BodyKind::of(&h), BodyKind::Text);
        for (ct, kind) in [
            ("application/xml", BodyKind::Text),
            ("application/atom+xml", BodyKind::Text),
            ("application/x-www-form-urlencoded", BodyKind::Text),
            ("application/yaml", BodyKind::Text),
            ("application/vnd.kubernetes.protobuf", BodyKind::Sealed),
            ("application/x-protobuf", BodyKind::Sealed),
            ("application/msgpack", BodyKind::Sealed),
            ("application/cbor", BodyKind::Sealed),
            ("application/grpc+proto", BodyKind::Sealed),
            ("application/octet-stream", BodyKind::Opaque),
            ("image/png", BodyKind::Opaque),
        ] {
            h.insert("content-type", ct.parse().unwrap());
            assert_eq!(BodyKind::of(&h), kind, "{ct}");
        }
        assert!(mask_body(&M, BodyKind::Sealed, b"x").is_err());
        h.insert(
            "content-type",
            "application/json; charset=utf-8".parse().unwrap(),
        );
        assert_eq!(BodyKind::of(&h), BodyKind::Json);
        h.insert(
            "content-type",
            "application/merge-patch+json".parse().unwrap(),
        );
        assert_eq!(BodyKind::of(&h), BodyKind::Json);
        h.insert("content-type", "text/html".parse().unwrap());
        assert_eq!(BodyKind::of(&h), BodyKind::Text);
        h.insert("content-encoding", "br".parse().unwrap());
        assert_eq!(Coding::of(&h), None);
    }
}
