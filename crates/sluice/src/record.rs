//! The result record: exactly one per request line (fields in
//! `docs/output.md`, schema in `schema/result.schema.json`), and its
//! wire form, one JSON object per line.

use std::fmt;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::json::{JsonKind, kind_of};
use crate::json_text::JsonText;
use crate::timing::Timing;

/// A request's id: the `id` (or `custom_id`) of its line, else its line number.
///
/// Ids compare as text, so `7` and `"7"` are the same id; an integer id is
/// written back as an integer with exactly its digits.
///
/// The text is shared: a request's id goes into each of its events and its
/// record, and a clone is a reference count, not an allocation.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Id {
    text: Arc<str>,
    numeric: bool,
}

impl Id {
    /// The default id of a line without one.
    pub fn line(line: u64) -> Id {
        Id {
            text: Arc::from(itoa::Buffer::new().format(line)),
            numeric: true,
        }
    }

    /// A string id.
    pub fn text(text: impl Into<Arc<str>>) -> Id {
        Id {
            text: text.into(),
            numeric: false,
        }
    }

    /// Reads an id from its JSON form: a string, or an integer of any size.
    ///
    /// # Errors
    ///
    /// When `raw` is neither a string nor an integer ([`IdError`]; its
    /// message reads after the field's name: "`id` must be ...").
    pub fn from_json(raw: &RawValue) -> Result<Id, IdError> {
        Id::from_json_text(raw.get())
    }

    /// [`Id::from_json`] of text already checked to be valid JSON.
    pub(crate) fn from_json_text(json: &str) -> Result<Id, IdError> {
        let json = json.trim();
        if json.starts_with('"') {
            let text: String = serde_json::from_str(json).map_err(IdError::String)?;
            return Ok(Id::text(text));
        }
        let digits = json.strip_prefix('-').unwrap_or(json);
        if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
            return Ok(Id {
                text: Arc::from(json),
                numeric: true,
            });
        }
        let kind = match kind_of(json) {
            JsonKind::Number => "a fractional number".to_string(),
            kind => kind.to_string(),
        };
        Err(IdError::Kind { kind })
    }

    /// The id as text, the form in which ids are compared.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// True when the id is written as a JSON integer.
    pub fn is_numeric(&self) -> bool {
        self.numeric
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Serialize for Id {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.numeric {
            // The digits were checked when the id was made.
            let raw: &RawValue =
                serde_json::from_str(&self.text).map_err(serde::ser::Error::custom)?;
            raw.serialize(s)
        } else {
            s.serialize_str(&self.text)
        }
    }
}

/// An id that is neither a string nor an integer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdError {
    /// Another kind of JSON value (`kind`: "an object", "a fractional
    /// number", ...).
    #[error("must be a string or an integer, not {kind}")]
    Kind {
        /// What it is, for the message.
        kind: String,
    },
    /// A string that does not decode (a bad escape).
    #[error("{0}")]
    String(serde_json::Error),
}

/// Why a request failed; the wire names are the documented error kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The input line is bad.
    InvalidRequest,
    /// Refused, unreachable, connect-phase timeout, TLS handshake failure.
    Connect,
    /// The host name did not resolve.
    Dns,
    /// Certificate verification failed.
    Tls,
    /// The attempt did not complete within its timeout.
    Timeout,
    /// The connection was reset or closed before a complete response.
    Reset,
    /// The response was malformed or truncated.
    Protocol,
    /// The decoded body exceeded `--max-body-size`.
    BodyTooLarge,
    /// The final response was not 2xx.
    HttpStatus,
    /// The server asked for a wait beyond `--max-retry-after`.
    RetryAfterTooLong,
    /// An earlier line already used this id.
    DuplicateId,
}

impl ErrorKind {
    /// All kinds, in the order summaries list them.
    pub const ALL: [ErrorKind; 11] = [
        ErrorKind::InvalidRequest,
        ErrorKind::Connect,
        ErrorKind::Dns,
        ErrorKind::Tls,
        ErrorKind::Timeout,
        ErrorKind::Reset,
        ErrorKind::Protocol,
        ErrorKind::BodyTooLarge,
        ErrorKind::HttpStatus,
        ErrorKind::RetryAfterTooLong,
        ErrorKind::DuplicateId,
    ];

    /// The wire name, as in `--retry-on` and in records: serde's
    /// `snake_case` name of the variant, the one table of names.
    pub fn as_str(self) -> &'static str {
        static NAMES: OnceLock<Vec<String>> = OnceLock::new();
        let names = NAMES.get_or_init(|| {
            ErrorKind::ALL
                .iter()
                .map(|k| match serde_json::to_value(k) {
                    Ok(serde_json::Value::String(name)) => name,
                    _ => unreachable!("a unit variant serialises as its name"),
                })
                .collect()
        });
        &names[self as usize]
    }

    /// Kinds that describe the input rather than an attempt: never re-sent.
    pub fn is_input_error(self) -> bool {
        matches!(self, ErrorKind::InvalidRequest | ErrorKind::DuplicateId)
    }
}

impl std::str::FromStr for ErrorKind {
    type Err = serde::de::value::Error;

    /// Reads a wire name (`timeout`), as serde reads it from a record.
    fn from_str(name: &str) -> Result<ErrorKind, Self::Err> {
        use serde::de::IntoDeserializer;
        ErrorKind::deserialize(name.into_deserializer())
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `error` object of a failed record.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RecordError {
    /// What went wrong, as one of the documented kinds.
    pub kind: ErrorKind,
    /// A human-readable explanation, secrets already redacted.
    pub message: String,
    /// Set when a non-idempotent request failed after it was written: the
    /// server may have applied it.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub maybe_applied: bool,
}

/// A response body as stored in a record (`--body`).
#[derive(Clone, Debug)]
pub enum Body {
    /// Compact JSON text, embedded as a JSON value with its numbers untouched.
    Json(JsonText),
    /// A UTF-8 body, stored as a string.
    Text(String),
    /// Any other body, base64 encoded.
    Base64(String),
}

impl PartialEq for Body {
    fn eq(&self, other: &Body) -> bool {
        match (self, other) {
            (Body::Json(a), Body::Json(b)) => a.get() == b.get(),
            (Body::Text(a), Body::Text(b)) | (Body::Base64(a), Body::Base64(b)) => a == b,
            _ => false,
        }
    }
}

impl Body {
    /// The `body_encoding` wire name.
    pub fn encoding(&self) -> &'static str {
        match self {
            Body::Json(_) => "json",
            Body::Text(_) => "text",
            Body::Base64(_) => "base64",
        }
    }
}

/// One result line.
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    /// The request's id.
    pub id: Id,
    /// The request's line number in the input stream (1-based, across files).
    pub line: u64,
    /// The method; `None` when the line could not be parsed far enough.
    pub method: Option<String>,
    /// The resolved URL, redacted; `None` when the line could not be parsed.
    pub url: Option<String>,
    /// True for a 2xx final response.
    pub ok: bool,
    /// The final HTTP status, if a response arrived.
    pub status: Option<u16>,
    /// Attempts started, failed connects included.
    pub attempts: u32,
    /// Wall-clock time the first attempt was sent (under `--http2`, once
    /// its connection was there).
    pub started_at: Option<SystemTime>,
    /// From the first attempt's sending to the final outcome.
    pub duration: Duration,
    /// Response headers (`--include-headers`), redacted.
    pub headers: Option<Vec<(String, String)>>,
    /// The response body under `--body`.
    pub body: Option<Body>,
    /// Why the request failed, if it did.
    pub error: Option<RecordError>,
    /// The URL of the final response when redirects were followed (redacted).
    pub final_url: Option<String>,
    /// The HTTP and TLS versions of the final response, for summaries and
    /// `-v`; written with the headers (`--include-headers`).
    pub transport: Option<Transport>,
    /// Where the request's time went (`queued_at`, `wait_ms`,
    /// `attempt_log`); `None` when no attempt was made.
    pub timing: Option<Box<Timing>>,
}

/// Which protocol versions carried a response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transport {
    /// `HTTP/1.1`, `HTTP/2`, ...
    pub http_version: &'static str,
    /// `TLSv1.3`, `TLSv1.2`, ...; `None` over plain HTTP.
    pub tls_version: Option<&'static str>,
}

impl Record {
    /// A record for a line that was never sent (`invalid_request`, `duplicate_id`).
    pub fn unsent(
        id: Id,
        line: u64,
        method: Option<String>,
        url: Option<String>,
        kind: ErrorKind,
        message: String,
    ) -> Record {
        Record {
            id,
            line,
            method,
            url,
            ok: false,
            status: None,
            attempts: 0,
            started_at: None,
            duration: Duration::ZERO,
            headers: None,
            body: None,
            error: Some(RecordError {
                kind,
                message,
                maybe_applied: false,
            }),
            final_url: None,
            transport: None,
            timing: None,
        }
    }

    /// The error kind, if the request failed.
    pub fn error_kind(&self) -> Option<ErrorKind> {
        self.error.as_ref().map(|e| e.kind)
    }

    /// The record as one JSON line, with its trailing newline.
    pub fn to_json_line(&self) -> String {
        let mut buf = Vec::with_capacity(LINE_CAPACITY);
        self.write_json_line(&mut buf);
        // Every piece written is UTF-8: JSON punctuation, digits and the
        // record's own strings.
        String::from_utf8(buf)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
    }

    /// Appends the record as one JSON line, with its trailing newline, to
    /// `out` (the sink's buffer): the same bytes as serde_json writes for
    /// the record's `Serialize` (a test holds them equal), placed by hand,
    /// with no intermediate string: this runs once per request.
    pub fn write_json_line(&self, out: &mut Vec<u8>) {
        use crate::json::{push_duration_ms, push_opt_str, push_str, push_u64};
        out.extend_from_slice(b"{\"id\":");
        if self.id.numeric {
            // The digits were checked when the id was made.
            out.extend_from_slice(self.id.text.as_bytes());
        } else {
            push_str(out, &self.id.text);
        }
        out.extend_from_slice(b",\"line\":");
        push_u64(out, self.line);
        out.extend_from_slice(b",\"method\":");
        push_opt_str(out, self.method.as_deref());
        out.extend_from_slice(b",\"url\":");
        push_opt_str(out, self.url.as_deref());
        out.extend_from_slice(if self.ok {
            b",\"ok\":true,\"status\":"
        } else {
            b",\"ok\":false,\"status\":"
        });
        match self.status {
            Some(status) => push_u64(out, u64::from(status)),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"attempts\":");
        push_u64(out, u64::from(self.attempts));
        out.extend_from_slice(b",\"started_at\":");
        match self.started_at {
            Some(t) => push_rfc3339(out, t),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"duration_ms\":");
        push_duration_ms(out, self.duration);
        if let Some(t) = &self.timing {
            out.extend_from_slice(b",\"queued_at\":");
            push_rfc3339(out, t.queued_at);
            t.write_json(out);
        }
        if let Some(headers) = &self.headers {
            out.extend_from_slice(b",\"headers\":{");
            for (i, (k, v)) in headers.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                push_str(out, k);
                out.push(b':');
                push_str(out, v);
            }
            out.push(b'}');
        }
        if let Some(body) = &self.body {
            out.extend_from_slice(b",\"body\":");
            // The encoding's name as literal bytes: known, with nothing to escape.
            let encoding: &[u8] = match body {
                Body::Json(raw) => {
                    out.extend_from_slice(raw.get().as_bytes());
                    b",\"body_encoding\":\"json\""
                }
                Body::Text(t) => {
                    push_str(out, t);
                    b",\"body_encoding\":\"text\""
                }
                Body::Base64(t) => {
                    push_str(out, t);
                    b",\"body_encoding\":\"base64\""
                }
            };
            out.extend_from_slice(encoding);
        }
        out.extend_from_slice(b",\"error\":");
        match &self.error {
            Some(e) => {
                out.extend_from_slice(b"{\"kind\":");
                push_str(out, e.kind.as_str());
                out.extend_from_slice(b",\"message\":");
                push_str(out, &e.message);
                if e.maybe_applied {
                    out.extend_from_slice(b",\"maybe_applied\":true");
                }
                out.push(b'}');
            }
            None => out.extend_from_slice(b"null"),
        }
        if let Some(final_url) = &self.final_url {
            out.extend_from_slice(b",\"final_url\":");
            push_str(out, final_url);
        }
        if let (Some(t), Some(_)) = (&self.transport, &self.headers) {
            out.extend_from_slice(b",\"http_version\":");
            push_str(out, t.http_version);
            out.extend_from_slice(b",\"tls_version\":");
            push_opt_str(out, t.tls_version);
        }
        out.extend_from_slice(b"}\n");
    }
}

/// Bytes reserved for a record's line: a small response's record fits.
const LINE_CAPACITY: usize = 768;

impl Serialize for Record {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("id", &self.id)?;
        m.serialize_entry("line", &self.line)?;
        m.serialize_entry("method", &self.method)?;
        m.serialize_entry("url", &self.url)?;
        m.serialize_entry("ok", &self.ok)?;
        m.serialize_entry("status", &self.status)?;
        m.serialize_entry("attempts", &self.attempts)?;
        m.serialize_entry("started_at", &self.started_at.map(rfc3339))?;
        m.serialize_entry("duration_ms", &duration_ms(self.duration))?;
        if let Some(t) = &self.timing {
            m.serialize_entry("queued_at", &rfc3339(t.queued_at))?;
            m.serialize_entry("wait_ms", &t.waits)?;
            m.serialize_entry("attempt_log", &t.attempts)?;
        }
        if let Some(headers) = &self.headers {
            m.serialize_entry("headers", &HeaderMapSer(headers))?;
        }
        if let Some(body) = &self.body {
            match body {
                Body::Json(raw) => m.serialize_entry("body", raw)?,
                Body::Text(t) | Body::Base64(t) => m.serialize_entry("body", t)?,
            }
            m.serialize_entry("body_encoding", body.encoding())?;
        }
        m.serialize_entry("error", &self.error)?;
        if let Some(final_url) = &self.final_url {
            m.serialize_entry("final_url", final_url)?;
        }
        if let (Some(t), Some(_)) = (&self.transport, &self.headers) {
            m.serialize_entry("http_version", t.http_version)?;
            m.serialize_entry("tls_version", &t.tls_version)?;
        }
        m.end()
    }
}

struct HeaderMapSer<'a>(&'a [(String, String)]);

impl Serialize for HeaderMapSer<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in self.0 {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

/// Milliseconds with microsecond precision, as `duration_ms` is written.
pub fn duration_ms(d: Duration) -> f64 {
    (d.as_micros() as f64) / 1000.0
}

/// Formats a wall-clock time as RFC 3339 in UTC with milliseconds.
pub fn rfc3339(t: SystemTime) -> String {
    match rfc3339_digits(t) {
        Ok(digits) => digits.iter().map(|&b| char::from(b)).collect(),
        Err(text) => text,
    }
}

/// Appends [`rfc3339`]'s text as a JSON string (it never needs an escape).
pub(crate) fn push_rfc3339(out: &mut Vec<u8>, t: SystemTime) {
    out.push(b'"');
    match rfc3339_digits(t) {
        Ok(digits) => out.extend_from_slice(&digits),
        Err(text) => out.extend_from_slice(text.as_bytes()),
    }
    out.push(b'"');
}

/// [`rfc3339`]'s characters: every record carries one or two, so the
/// digits are placed by hand rather than through `format!` (a fifth of a
/// small record's serialising time). A year past 9999 is formatted as
/// text (`Err`).
fn rfc3339_digits(t: SystemTime) -> Result<[u8; 24], String> {
    type Second = std::cell::Cell<Option<(u64, [u8; 24])>>;
    thread_local! {
        /// The last two seconds formatted, and their digits, latest first:
        /// a run's records fall in few seconds, so most take only their
        /// milliseconds; two, because a record's `started_at` and
        /// `queued_at` fall in different seconds whenever its wait in the
        /// queue crosses one (one cached second then missed twice a record).
        static LAST: [Second; 2] = const { [Second::new(None), Second::new(None)] };
    }
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let (secs, ms) = (since.as_secs(), since.subsec_millis());
    let mut out = LAST.with(|[latest, before]| {
        for second in [latest, before] {
            if let Some((s, digits)) = second.get()
                && s == secs
            {
                return Ok(digits);
            }
        }
        let digits = second_digits(secs, ms)?;
        before.set(latest.get());
        latest.set(Some((secs, digits)));
        Ok::<_, String>(digits)
    })?;
    out[20] = b'0' + (ms / 100) as u8;
    out[21] = b'0' + (ms / 10 % 10) as u8;
    out[22] = b'0' + (ms % 10) as u8;
    Ok(out)
}

/// [`rfc3339_digits`] of a whole second (its milliseconds `000`; `ms`
/// only for the text of a year past 9999).
fn second_digits(secs: u64, ms: u32) -> Result<[u8; 24], String> {
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, mo, d) = civil_from_days(days as i64);
    let (h, mi, s) = (rem / 3600, (rem % 3600) / 60, rem % 60);
    let year = match u64::try_from(y) {
        Ok(year) if year <= 9999 => year,
        _ => {
            return Err(format!(
                "{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{ms:03}Z"
            ));
        }
    };
    let mut out = *b"0000-00-00T00:00:00.000Z";
    let mut put = |at: usize, width: usize, mut value: u64| {
        for i in (at..at + width).rev() {
            out[i] = b'0' + (value % 10) as u8;
            value /= 10;
        }
    };
    put(0, 4, year);
    put(5, 2, u64::from(mo));
    put(8, 2, u64::from(d));
    put(11, 2, h);
    put(14, 2, mi);
    put(17, 2, s);
    Ok(out)
}

/// Reads an RFC 3339 time as records write it (`2026-11-25T18:52:31.123Z`;
/// any number of fraction digits, `Z` or a `+hh:mm` offset). `None` when it
/// is not one, or before 1970.
pub fn parse_rfc3339(text: &str) -> Option<SystemTime> {
    let b = text.as_bytes();
    let digits = |s: Option<&str>| -> Option<i64> {
        let s = s?;
        s.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| s.parse().ok())?
    };
    let num = |r: std::ops::Range<usize>| digits(text.get(r));
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, s) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    let mut rest = text.get(19..)?;
    let mut nanos = 0u32;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let kept = &frac[..digits.min(9)];
        nanos = kept.parse::<u32>().ok()? * 10u32.pow(9 - kept.len() as u32);
        rest = &frac[digits..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ if rest.len() == 6
            && matches!(rest.get(..1), Some("+" | "-"))
            && rest.get(3..4) == Some(":") =>
        {
            let sign = if rest.starts_with('-') { -1 } else { 1 };
            sign * (digits(rest.get(1..3))? * 3600 + digits(rest.get(4..6))? * 60)
        }
        _ => return None,
    };
    let secs = days_from_civil(y, mo as u32, d as u32) * 86_400 + h * 3600 + mi * 60 + s - offset;
    let secs = u64::try_from(secs).ok()?;
    Some(UNIX_EPOCH + Duration::new(secs, nanos))
}

/// A (year, month, day) date to days since 1970-01-01; Howard Hinnant's algorithm.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Days since 1970-01-01 to a (year, month, day) date; Howard Hinnant's algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(s: &str) -> Box<RawValue> {
        RawValue::from_string(s.to_string()).unwrap()
    }

    #[test]
    fn error_kind_names_are_serdes() {
        for (i, kind) in ErrorKind::ALL.into_iter().enumerate() {
            assert_eq!(kind as usize, i, "ALL is in declaration order");
            let json = serde_json::to_string(&kind).unwrap();
            assert_eq!(json, format!("\"{}\"", kind.as_str()));
            assert_eq!(kind.as_str().parse::<ErrorKind>().unwrap(), kind);
        }
        assert_eq!(ErrorKind::BodyTooLarge.as_str(), "body_too_large");
        assert!("body-too-large".parse::<ErrorKind>().is_err());
    }

    #[test]
    fn ids_keep_their_form() {
        assert_eq!(Id::from_json(&raw("\"u-17\"")).unwrap(), Id::text("u-17"));
        let big = Id::from_json(&raw("18446744073709551616")).unwrap();
        assert_eq!(serde_json::to_string(&big).unwrap(), "18446744073709551616");
        assert_eq!(big.as_str(), "18446744073709551616");
        assert_eq!(
            Id::from_json(&raw("7")).unwrap().as_str(),
            Id::text("7").as_str()
        );
        for bad in ["1.5", "1e400", "{}", "[1]", "true", "null"] {
            assert!(Id::from_json(&raw(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn timestamps() {
        let t = UNIX_EPOCH + Duration::from_millis(1_795_632_751_123);
        assert_eq!(rfc3339(t), "2026-11-25T18:52:31.123Z");
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let far = UNIX_EPOCH + std::time::Duration::from_millis(253_402_300_799_999);
        assert_eq!(rfc3339(far), "9999-12-31T23:59:59.999Z");
        let farther = UNIX_EPOCH + std::time::Duration::from_secs(253_402_300_800);
        assert_eq!(rfc3339(farther), "10000-01-01T00:00:00.000Z");
        assert_eq!(parse_rfc3339("2026-11-25T18:52:31.123Z"), Some(t));
        assert_eq!(parse_rfc3339("2026-11-25T19:52:31.123+01:00"), Some(t));
        assert_eq!(
            parse_rfc3339("2026-11-25T18:52:31Z"),
            Some(t - Duration::from_millis(123))
        );
        assert_eq!(
            parse_rfc3339("2000-02-29T00:00:00.5Z")
                .map(rfc3339)
                .as_deref(),
            Some("2000-02-29T00:00:00.500Z")
        );
        // The cached seconds: the same second again, then the next, then
        // back, then a third that pushes the first out, then the first.
        for (ms, text) in [
            (1_795_632_751_007, "2026-11-25T18:52:31.007Z"),
            (1_795_632_751_999, "2026-11-25T18:52:31.999Z"),
            (1_795_632_752_040, "2026-11-25T18:52:32.040Z"),
            (1_795_632_751_500, "2026-11-25T18:52:31.500Z"),
            (1_795_632_799_001, "2026-11-25T18:53:19.001Z"),
            (1_795_632_752_002, "2026-11-25T18:52:32.002Z"),
            (1_795_632_751_003, "2026-11-25T18:52:31.003Z"),
        ] {
            assert_eq!(rfc3339(UNIX_EPOCH + Duration::from_millis(ms)), text);
        }
        for bad in [
            "",
            "2026-11-25",
            "2026-13-01T00:00:00Z",
            "2026-11-25T18:52:31.Z",
            "1969-12-31T23:59:59Z",
            "2026-11-25T18:52:31.123",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    mod written_by_hand {
        use proptest::prelude::*;

        use super::*;
        use crate::timing::{AttemptTime, Waits};

        fn text() -> impl Strategy<Value = String> {
            prop_oneof![
                "[a-zA-Z0-9:/?&=._-]{0,30}",
                any::<String>(),
                Just("q\"uote \\ tab\t nl\n \u{1} é ∂ \u{7f}".to_string()),
            ]
        }

        fn float() -> impl Strategy<Value = f64> {
            prop_oneof![
                (0u64..10_000_000_000).prop_map(|us| us as f64 / 1000.0),
                any::<f64>(),
                Just(0.0),
            ]
        }

        fn id() -> impl Strategy<Value = Id> {
            prop_oneof![
                any::<u64>().prop_map(Id::line),
                "-?[1-9][0-9]{0,24}".prop_map(|digits| Id {
                    text: digits.into(),
                    numeric: true
                }),
                text().prop_map(Id::text),
            ]
        }

        fn body() -> impl Strategy<Value = Body> {
            prop_oneof![
                prop::sample::select(vec!["{\"ok\":true}", "[1,2.50e3]", "\"s\"", "null", "{}"])
                    .prop_map(|json| Body::Json(JsonText::parse(json).unwrap())),
                text().prop_map(Body::Text),
                "[A-Za-z0-9+/]{0,12}={0,2}".prop_map(Body::Base64),
            ]
        }

        fn time() -> impl Strategy<Value = SystemTime> {
            prop_oneof![
                (0u64..4_000_000_000_000).prop_map(|ms| UNIX_EPOCH + Duration::from_millis(ms)),
                (0u64..400_000_000_000).prop_map(|s| UNIX_EPOCH + Duration::from_secs(s)),
            ]
        }

        fn attempt() -> impl Strategy<Value = AttemptTime> {
            (
                float(),
                float(),
                any::<Option<u16>>(),
                prop::option::of(prop::sample::select(ErrorKind::ALL.to_vec())),
                prop::option::of(float()),
            )
                .prop_map(|(start_ms, duration_ms, status, error, wait_ms)| {
                    AttemptTime {
                        start_ms,
                        duration_ms,
                        status,
                        error,
                        wait_ms,
                    }
                })
        }

        fn timing() -> impl Strategy<Value = Timing> {
            (
                time(),
                (float(), float(), float()),
                prop::collection::vec(attempt(), 0..4),
            )
                .prop_map(|(queued_at, (queue, rate, retry), attempts)| Timing {
                    queued_at,
                    waits: Waits { queue, rate, retry },
                    attempts,
                })
        }

        fn error() -> impl Strategy<Value = RecordError> {
            (
                prop::sample::select(ErrorKind::ALL.to_vec()),
                text(),
                any::<bool>(),
            )
                .prop_map(|(kind, message, maybe_applied)| RecordError {
                    kind,
                    message,
                    maybe_applied,
                })
        }

        fn transport() -> impl Strategy<Value = Transport> {
            (
                prop::sample::select(vec!["HTTP/1.1", "HTTP/2", "HTTP/1.0"]),
                prop::option::of(prop::sample::select(vec!["TLSv1.3", "TLSv1.2"])),
            )
                .prop_map(|(http_version, tls_version)| Transport {
                    http_version,
                    tls_version,
                })
        }

        fn record() -> impl Strategy<Value = Record> {
            (
                (
                    id(),
                    any::<u64>(),
                    prop::option::of(text()),
                    prop::option::of(text()),
                ),
                (any::<bool>(), any::<Option<u16>>(), any::<u32>()),
                (prop::option::of(time()), any::<u64>()),
                prop::option::of(prop::collection::vec((text(), text()), 0..4)),
                (prop::option::of(body()), prop::option::of(error())),
                (prop::option::of(text()), prop::option::of(transport())),
                prop::option::of(timing()),
            )
                .prop_map(
                    |(
                        (id, line, method, url),
                        (ok, status, attempts),
                        (started_at, micros),
                        headers,
                        (body, error),
                        (final_url, transport),
                        timing,
                    )| Record {
                        id,
                        line,
                        method,
                        url,
                        ok,
                        status,
                        attempts,
                        started_at,
                        duration: Duration::from_micros(micros),
                        headers,
                        body,
                        error,
                        final_url,
                        transport,
                        timing: timing.map(Box::new),
                    },
                )
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2000))]

            /// The line written by hand is serde's, byte for byte.
            #[test]
            fn same_bytes_as_serde(record in record()) {
                let mut expected = serde_json::to_string(&record).unwrap();
                expected.push('\n');
                let mut out = b"earlier line\n".to_vec();
                record.write_json_line(&mut out);
                prop_assert_eq!(String::from_utf8(out).unwrap(), format!("earlier line\n{expected}"));
                prop_assert_eq!(record.to_json_line(), expected);
            }
        }
    }

    #[test]
    fn record_line_has_every_required_field() {
        let mut r = Record::unsent(
            Id::line(3),
            3,
            None,
            None,
            ErrorKind::InvalidRequest,
            "bad".into(),
        );
        let line = r.to_json_line();
        assert!(line.ends_with("}\n"));
        assert_eq!(
            line,
            "{\"id\":3,\"line\":3,\"method\":null,\"url\":null,\"ok\":false,\"status\":null,\"attempts\":0,\"started_at\":null,\"duration_ms\":0.0,\"error\":{\"kind\":\"invalid_request\",\"message\":\"bad\"}}\n"
        );
        r.body = Some(Body::Json(JsonText::parse("{\"n\":1.000}").unwrap()));
        assert!(
            r.to_json_line()
                .contains("\"body\":{\"n\":1.000},\"body_encoding\":\"json\"")
        );
    }
}
