//! Output formats: how a [`Record`] is written as one line.
//!
//! The engine always produces [`Record`]s; a format is a pure rendering of
//! one at the sink. Besides sluice's own record there are the result lines
//! of the two LLM batch APIs, so code that reads a provider's batch results
//! reads sluice's unchanged:
//!
//! - `openai-batch`: `{"id", "custom_id", "response": {"status_code",
//!   "request_id", "body"} | null, "error": {"code", "message"} | null}` —
//!   `response` whenever an HTTP response was received, `error` (with the
//!   sluice error kind as `code`) when none was.
//! - `anthropic-batch`: `{"id", "custom_id", "result": {"type": "succeeded",
//!   "message"} | {"type": "errored", "error"}}`; every `error` is an
//!   Anthropic error response (`{"type": "error", "error": {"type",
//!   "message"}, "request_id"}`).
//!
//! Both carry a deterministic `id`, `batch_req_<line>_<digest>`: the input
//! line number and a digest of what was sent (id, method, redacted URL), so
//! `--resume` finds and checks the lines these formats record without the
//! fields they lack (see [`parse_batch_id`]).

use std::fmt;
use std::hash::Hasher;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::json_text::JsonText;
use crate::record::{Body, ErrorKind, Record};

/// How records are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum OutputFormat {
    /// sluice's own record (the default): every field.
    #[default]
    Sluice,
    /// The OpenAI Batch API's output (and error) file lines.
    OpenAiBatch,
    /// The Anthropic Message Batches results lines.
    AnthropicBatch,
}

impl OutputFormat {
    /// Every format, in the order help lists them.
    pub const ALL: [OutputFormat; 3] = [
        OutputFormat::Sluice,
        OutputFormat::OpenAiBatch,
        OutputFormat::AnthropicBatch,
    ];

    /// The name on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            OutputFormat::Sluice => "sluice",
            OutputFormat::OpenAiBatch => "openai-batch",
            OutputFormat::AnthropicBatch => "anthropic-batch",
        }
    }

    /// Renders a record as one line, with its trailing newline.
    pub fn render(self, record: &Record) -> String {
        match self {
            OutputFormat::Sluice => record.to_json_line(),
            OutputFormat::OpenAiBatch => line(&openai(record), record),
            OutputFormat::AnthropicBatch => line(&anthropic(record), record),
        }
    }

    /// Appends a record's line, with its trailing newline, to `out` (the
    /// sink's buffer): sluice's own record is written there directly.
    pub fn write_line(self, record: &Record, out: &mut Vec<u8>) {
        match self {
            OutputFormat::Sluice => record.write_json_line(out),
            _ => out.extend_from_slice(self.render(record).as_bytes()),
        }
    }

    /// True when the record's line is a failure in this format (it goes to
    /// `--errors-output` when one is given).
    pub fn is_failure(self, record: &Record) -> bool {
        match self {
            OutputFormat::Sluice | OutputFormat::OpenAiBatch => !record.ok,
            OutputFormat::AnthropicBatch => succeeded_message(record).is_none(),
        }
    }
}

impl fmt::Display for OutputFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for OutputFormat {
    type Err = crate::parse::UnknownFormat;

    fn from_str(s: &str) -> Result<OutputFormat, Self::Err> {
        OutputFormat::ALL
            .into_iter()
            .find(|f| f.as_str() == s)
            .ok_or_else(|| crate::parse::UnknownFormat {
                what: "output",
                name: s.to_string(),
                known: OutputFormat::ALL.map(OutputFormat::as_str).to_vec(),
            })
    }
}

/// The longest error message taken from a response body, in bytes; the rest
/// is cut and its size said.
pub const MESSAGE_LIMIT: usize = 4096;

/// The Anthropic error types the official SDK knows; an error body of
/// another type is wrapped rather than passed through, so every line
/// validates.
const ANTHROPIC_ERROR_TYPES: [&str; 9] = [
    "invalid_request_error",
    "authentication_error",
    "billing_error",
    "permission_error",
    "not_found_error",
    "rate_limit_error",
    "timeout_error",
    "api_error",
    "overloaded_error",
];

/// A digest of what a line sent (its id, method and redacted URL), stable
/// across processes and versions (FNV-1a over length-prefixed parts): it is
/// written into batch-format ids and compared by `--resume`.
pub fn sent_digest(id: &str, method: Option<&str>, url: Option<&str>) -> u64 {
    let mut h = fnv::FnvHasher::default();
    for part in [Some(id), method, url] {
        match part {
            Some(text) => {
                h.write_u8(1);
                h.write(&(text.len() as u64).to_le_bytes());
                h.write(text.as_bytes());
            }
            None => h.write_u8(0),
        }
    }
    h.finish()
}

/// The deterministic `id` of a batch-format line: `batch_req_<line>_<digest>`,
/// the digest as 16 hex digits.
pub fn batch_id(record: &Record) -> String {
    let digest = sent_digest(
        record.id.as_str(),
        record.method.as_deref(),
        record.url.as_deref(),
    );
    format!("batch_req_{}_{digest:016x}", record.line)
}

/// Reads a [`batch_id`] back: the line number and the digest of what was sent.
pub fn parse_batch_id(id: &str) -> Option<(u64, u64)> {
    let rest = id.strip_prefix("batch_req_")?;
    let (line, digest) = rest.split_once('_')?;
    if digest.len() != 16 || line.is_empty() || !line.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((line.parse().ok()?, u64::from_str_radix(digest, 16).ok()?))
}

fn line(value: &impl Serialize, record: &Record) -> String {
    let mut out = serde_json::to_string(value).unwrap_or_else(|e| {
        // Serialising our own plain data cannot fail; if it ever did, the
        // line must still carry this record's identity.
        format!(
            r#"{{"id":"{}","custom_id":{},"error":{{"code":"protocol","message":{}}}}}"#,
            batch_id(record),
            serde_json::Value::String(record.id.as_str().into()),
            serde_json::Value::String(e.to_string())
        )
    });
    out.push('\n');
    out
}

/// The response's request id: `x-request-id` (OpenAI), else `request-id`
/// (Anthropic). Needs the record's headers.
fn request_id(record: &Record) -> Option<&str> {
    let headers = record.headers.as_ref()?;
    ["x-request-id", "request-id"].into_iter().find_map(|name| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    })
}

/// True when an HTTP response was received and is what the record is about
/// (a final status, or a wait too long to honour); other failures after a
/// status line (a body cut short or too large) are failures without a
/// usable response.
fn has_response(record: &Record) -> bool {
    record.status.is_some()
        && matches!(
            record.error_kind(),
            None | Some(ErrorKind::HttpStatus) | Some(ErrorKind::RetryAfterTooLong)
        )
}

/// The body as one JSON object, when it is one.
fn json_object(record: &Record) -> Option<&JsonText> {
    match &record.body {
        Some(Body::Json(raw)) if raw.get().starts_with('{') => Some(raw),
        _ => None,
    }
}

/// The body as text for an error message: JSON and text as they are, a
/// binary body by its size; cut to [`MESSAGE_LIMIT`].
fn body_text(record: &Record) -> String {
    let text = match &record.body {
        Some(Body::Json(raw)) => raw.get().to_string(),
        Some(Body::Text(t)) => t.clone(),
        Some(Body::Base64(b)) => format!(
            "a binary body of {} bytes, not JSON",
            b.len() / 4 * 3 - b.bytes().rev().take_while(|&c| c == b'=').count()
        ),
        None => String::new(),
    };
    clip(&text, MESSAGE_LIMIT)
}

/// Cuts `text` to at most `max` bytes on a character boundary, saying how
/// long it was.
fn clip(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… (cut; {} bytes in all)", &text[..end], text.len())
}

/// The message of a failure without a response: its sluice kind, then what
/// happened.
fn kind_message(record: &Record) -> (ErrorKind, String) {
    match &record.error {
        Some(e) => (e.kind, format!("{}: {}", e.kind, e.message)),
        // A record without a response is always a failure; keep the line valid.
        None => (ErrorKind::Protocol, "protocol: no response".into()),
    }
}

// ---- openai-batch ------------------------------------------------------------

#[derive(Serialize)]
struct OpenAiLine<'a> {
    id: String,
    custom_id: &'a str,
    response: Option<OpenAiResponse<'a>>,
    error: Option<OpenAiError>,
}

#[derive(Serialize)]
struct OpenAiResponse<'a> {
    status_code: u16,
    request_id: Option<&'a str>,
    body: OpenAiBody<'a>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum OpenAiBody<'a> {
    Json(&'a JsonText),
    /// A body that is not a JSON object, in OpenAI's error body shape.
    NotJson {
        error: NotJsonError,
    },
}

#[derive(Serialize)]
struct NotJsonError {
    message: String,
    #[serde(rename = "type")]
    kind: &'static str,
    param: Option<()>,
    code: Option<()>,
}

#[derive(Serialize)]
struct OpenAiError {
    code: &'static str,
    message: String,
}

/// The `type` of the error object that stands for a body that is not a
/// JSON object.
pub const NON_JSON_BODY: &str = "non_json_body";

fn openai(record: &Record) -> OpenAiLine<'_> {
    let (response, error) = match (record.status, has_response(record)) {
        (Some(status_code), true) => {
            let body = match json_object(record) {
                Some(raw) => OpenAiBody::Json(raw),
                None => OpenAiBody::NotJson {
                    error: NotJsonError {
                        message: body_text(record),
                        kind: NON_JSON_BODY,
                        param: None,
                        code: None,
                    },
                },
            };
            let response = OpenAiResponse {
                status_code,
                request_id: request_id(record),
                body,
            };
            (Some(response), None)
        }
        _ => {
            let (code, message) = match &record.error {
                Some(e) => (e.kind.as_str(), e.message.clone()),
                // A record without a response is always a failure; keep the line valid.
                None => (ErrorKind::Protocol.as_str(), "no response".into()),
            };
            (None, Some(OpenAiError { code, message }))
        }
    };
    OpenAiLine {
        id: batch_id(record),
        custom_id: record.id.as_str(),
        response,
        error,
    }
}

// ---- anthropic-batch ---------------------------------------------------------

#[derive(Serialize)]
struct AnthropicLine<'a> {
    id: String,
    custom_id: &'a str,
    result: AnthropicResult<'a>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum AnthropicResult<'a> {
    Succeeded {
        #[serde(rename = "type")]
        kind: &'static str,
        message: &'a JsonText,
    },
    Errored {
        #[serde(rename = "type")]
        kind: &'static str,
        error: AnthropicError<'a>,
    },
}

#[derive(Serialize)]
#[serde(untagged)]
enum AnthropicError<'a> {
    /// An error body that is already Anthropic's, as received (with the
    /// `request-id` header added as `request_id` when it lacks one).
    Passed(Box<RawValue>),
    Wrapped {
        #[serde(rename = "type")]
        kind: &'static str,
        error: ErrorObject,
        request_id: Option<&'a str>,
    },
}

#[derive(Serialize)]
struct ErrorObject {
    #[serde(rename = "type")]
    kind: &'static str,
    message: String,
}

/// An Anthropic error body, as far as it must be checked to pass through.
#[derive(Deserialize)]
struct ErrorBody {
    #[serde(rename = "type")]
    kind: String,
    error: ErrorBodyObject,
    #[serde(default)]
    request_id: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
struct ErrorBodyObject {
    #[serde(rename = "type")]
    kind: String,
    #[allow(dead_code)] // Checked to be a string: the SDK requires one.
    message: String,
}

/// The Anthropic error type for an HTTP status.
pub fn anthropic_error_type(status: u16) -> &'static str {
    match status {
        400 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        // Anthropic answers 413 with `request_too_large`, but the SDK's
        // `ErrorObject` (anthropic 2.14) has no such type, so a line with it
        // does not validate: the closest type it knows.
        413 => "invalid_request_error",
        429 => "rate_limit_error",
        529 => "overloaded_error",
        _ => "api_error",
    }
}

/// The message of a 2xx response whose body is a JSON object.
fn succeeded_message(record: &Record) -> Option<&JsonText> {
    json_object(record).filter(|_| record.ok && has_response(record))
}

/// A body that is an Anthropic error of a type the SDK knows, with the
/// request id from the headers when the body has none.
fn anthropic_shaped(record: &Record) -> Option<Box<RawValue>> {
    let raw = json_object(record)?;
    let body: ErrorBody = serde_json::from_str(raw.get()).ok()?;
    if body.kind != "error" || !ANTHROPIC_ERROR_TYPES.contains(&body.error.kind.as_str()) {
        return None;
    }
    let text = match (body.request_id, request_id(record)) {
        (None, Some(id)) => {
            let id = serde_json::Value::String(id.to_string());
            // `raw` is a non-empty object: `{` then at least one member.
            format!("{{\"request_id\":{id},{}", &raw.get()[1..])
        }
        _ => raw.get().to_string(),
    };
    RawValue::from_string(text).ok()
}

fn anthropic(record: &Record) -> AnthropicLine<'_> {
    let result = match succeeded_message(record) {
        Some(message) => AnthropicResult::Succeeded {
            kind: "succeeded",
            message,
        },
        None => AnthropicResult::Errored {
            kind: "errored",
            error: anthropic_error(record),
        },
    };
    AnthropicLine {
        id: batch_id(record),
        custom_id: record.id.as_str(),
        result,
    }
}

fn anthropic_error(record: &Record) -> AnthropicError<'_> {
    let wrapped = |kind, message| AnthropicError::Wrapped {
        kind: "error",
        error: ErrorObject { kind, message },
        request_id: request_id(record),
    };
    match record.status.filter(|_| has_response(record)) {
        Some(status) if record.ok => wrapped(
            "api_error",
            format!(
                "the response (status {status}) is not a JSON message: {}",
                body_text(record)
            ),
        ),
        Some(status) => match anthropic_shaped(record) {
            Some(raw) => AnthropicError::Passed(raw),
            None => wrapped(anthropic_error_type(status), body_text(record)),
        },
        None => {
            let (kind, message) = kind_message(record);
            let kind = if kind.is_input_error() {
                "invalid_request_error"
            } else {
                "api_error"
            };
            wrapped(kind, message)
        }
    }
}

/// What `--resume` needs from a line of any format.
#[derive(Clone, Debug, PartialEq)]
pub struct ReadBack {
    /// The format the line is in.
    pub format: OutputFormat,
    /// The input line it records.
    pub line: u64,
    /// The request's id, as text.
    pub id: String,
    /// The digest of what was sent (see [`sent_digest`]), for batch formats
    /// (sluice records carry the method and URL themselves).
    pub digest: Option<u64>,
    /// The line is a success.
    pub ok: bool,
    /// The final status, when the line says it.
    pub status: Option<u16>,
    /// The sluice error kind, when the line says it (or implies it).
    pub kind: Option<ErrorKind>,
}

#[derive(Deserialize)]
struct BatchLine<'a> {
    id: String,
    #[serde(borrow)]
    custom_id: &'a RawValue,
    #[serde(default, borrow)]
    response: Option<&'a RawValue>,
    #[serde(default)]
    error: Option<OpenAiErrorIn>,
    #[serde(default)]
    result: Option<ResultIn>,
}

#[derive(Deserialize)]
struct OpenAiErrorIn {
    code: String,
}

#[derive(Deserialize)]
struct StatusIn {
    status_code: u16,
}

#[derive(Deserialize)]
struct ResultIn {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    error: Option<ErrorBodyIn>,
}

#[derive(Deserialize)]
struct ErrorBodyIn {
    #[serde(default)]
    error: Option<ErrorMessageIn>,
}

#[derive(Deserialize)]
struct ErrorMessageIn {
    #[serde(default)]
    message: String,
}

/// Reads a batch-format line back (`None` when it is not one: then it may
/// be a sluice record). Errors say what is wrong with a line that looks
/// like one.
///
/// # Errors
///
/// `Some(Err)` when the line has a batch line's shape but a field is missing or of the wrong type.
pub fn read_batch_line(text: &str) -> Option<Result<ReadBack, String>> {
    let line: BatchLine = serde_json::from_str(text).ok()?;
    Some(read_parsed(line))
}

fn read_parsed(line: BatchLine) -> Result<ReadBack, String> {
    let (number, digest) = parse_batch_id(&line.id)
        .ok_or_else(|| format!("id `{}` is not one sluice writes", line.id))?;
    let id = crate::record::Id::from_json(line.custom_id)
        .map_err(|e| format!("custom_id {e}"))?
        .as_str()
        .to_string();
    let mut back = ReadBack {
        format: OutputFormat::OpenAiBatch,
        line: number,
        id,
        digest: Some(digest),
        ok: false,
        status: None,
        kind: None,
    };
    if let Some(result) = line.result {
        back.format = OutputFormat::AnthropicBatch;
        back.ok = result.kind == "succeeded";
        if !back.ok {
            let message = result
                .error
                .and_then(|e| e.error)
                .map(|e| e.message)
                .unwrap_or_default();
            back.kind = Some(kind_of_message(&message));
        }
        return Ok(back);
    }
    let response = line.response.filter(|r| r.get().trim() != "null");
    match (response, line.error) {
        (Some(raw), _) => {
            let status: StatusIn =
                serde_json::from_str(raw.get()).map_err(|e| format!("response: {e}"))?;
            back.status = Some(status.status_code);
            back.ok = (200..300).contains(&status.status_code);
            if !back.ok {
                back.kind = Some(ErrorKind::HttpStatus);
            }
        }
        (None, Some(error)) => {
            let kind = ErrorKind::ALL
                .into_iter()
                .find(|k| k.as_str() == error.code)
                .ok_or_else(|| format!("error code `{}` is not a sluice error kind", error.code))?;
            back.kind = Some(kind);
        }
        (None, None) => return Err("neither a response nor an error".into()),
    }
    Ok(back)
}

/// The sluice kind an Anthropic error message names (`timeout: ...`), else
/// `http_status` (the message is a response body).
fn kind_of_message(message: &str) -> ErrorKind {
    ErrorKind::ALL
        .into_iter()
        .filter(|k| *k != ErrorKind::HttpStatus)
        .find(|k| {
            message
                .strip_prefix(k.as_str())
                .is_some_and(|rest| rest.starts_with(": "))
        })
        .unwrap_or(ErrorKind::HttpStatus)
}
