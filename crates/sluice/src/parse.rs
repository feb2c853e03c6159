//! One input line → one [`Input`]: a request, or the reason its line was
//! rejected (the format is in `docs/input.md`).
//!
//! A line is trimmed (a trailing `\r`, surrounding ASCII whitespace and a
//! UTF-8 BOM go); an empty line or one starting with `#` is skipped. A line
//! starting with `{` is a JSON request object; any other line is a URL fetched
//! with GET. Nothing here panics, on any bytes: a bad line becomes an
//! [`InvalidLine`] whose message starts with `file:line: ` and says what is
//! wrong. Messages never hold a secret: URLs go through the [`Redactor`] and
//! header values never appear.

use std::fmt;
use std::time::Duration;

use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use bytes::Bytes;
use reqwest::Method;
use reqwest::header::{HeaderMap, HeaderName};
use serde::Deserialize;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use url::Url;

use crate::headers::{self, Setter};
use crate::json::{JsonKind, JsonStrings, compact_json, json_kind};
use crate::record::Id;
use crate::redact::Redactor;
use crate::request::{Input, InvalidLine, Request};
use crate::units::parse_duration;

/// The longest input line accepted unless the caller says otherwise: 64 MiB.
pub const DEFAULT_MAX_LINE_BYTES: usize = 64 * 1024 * 1024;

/// The longest method accepted, in bytes.
const MAX_METHOD_BYTES: usize = 64;

/// JSON nested deeper than this is refused, at any place in the line (the
/// same depth as serde_json's own recursion limit).
const MAX_JSON_DEPTH: usize = 128;

/// How many characters of a URL, id or name a message quotes.
pub(crate) const MESSAGE_CLIP: usize = 200;

/// How many characters of a rejected URL an [`InvalidLine`] keeps.
const FIELD_CLIP: usize = 2048;

/// The UTF-8 byte order mark, ignored at the start of a line (the source
/// also skips it at the start of each file).
pub(crate) const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Standard base64, with or without `=` padding.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// What parsing needs to know about the run.
#[derive(Clone, Debug)]
pub struct ParseOptions {
    /// The URL relative request URLs are appended to (`--base-url`), already
    /// checked with [`check_base_url`]. Default: none, so relative URLs are
    /// rejected.
    pub base_url: Option<Url>,
    /// Decides which URL parts are secret in messages and records, and which
    /// request headers are marked sensitive. Default: the built-in list.
    pub redactor: Redactor,
    /// Longer lines are rejected without being buffered. Default:
    /// [`DEFAULT_MAX_LINE_BYTES`] (64 MiB).
    pub max_line_bytes: usize,
    /// Which JSON line shapes are accepted (`--input-format`). Default:
    /// [`InputFormat::Auto`], decided per line by its keys.
    pub input_format: InputFormat,
}

/// The shapes of JSON request lines (`--input-format`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum InputFormat {
    /// Per line by its keys: `params` without `url`, `method` or a body is
    /// an Anthropic line, anything else a sluice (or OpenAI batch) line.
    #[default]
    Auto,
    /// sluice's own lines (`url`, `method`, `headers`, `body`, ...), which
    /// include OpenAI batch lines.
    Sluice,
    /// OpenAI Batch API lines: `custom_id`, `method` and `url` required.
    OpenAiBatch,
    /// Anthropic Message Batches lines: `{"custom_id", "params"}`, sent as a
    /// `POST` of `params` to `/v1/messages` under the base URL.
    AnthropicBatch,
}

impl InputFormat {
    /// Every format, as the command line names them.
    pub const ALL: [InputFormat; 4] = [
        InputFormat::Auto,
        InputFormat::Sluice,
        InputFormat::OpenAiBatch,
        InputFormat::AnthropicBatch,
    ];

    /// The name on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            InputFormat::Auto => "auto",
            InputFormat::Sluice => "sluice",
            InputFormat::OpenAiBatch => "openai-batch",
            InputFormat::AnthropicBatch => "anthropic-batch",
        }
    }
}

impl std::str::FromStr for InputFormat {
    type Err = UnknownFormat;

    fn from_str(s: &str) -> Result<InputFormat, UnknownFormat> {
        InputFormat::ALL
            .into_iter()
            .find(|f| f.as_str() == s)
            .ok_or_else(|| UnknownFormat {
                what: "input",
                name: s.to_string(),
                known: InputFormat::ALL.map(InputFormat::as_str).to_vec(),
            })
    }
}

/// A format name that is not one of the known ones.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} format `{name}`: use {}", known.join(", "))]
pub struct UnknownFormat {
    /// `input` or `output`.
    pub what: &'static str,
    /// The name as written.
    pub name: String,
    /// The names of the known formats.
    pub known: Vec<&'static str>,
}

/// Where an Anthropic batch line is sent, under the base URL.
pub const ANTHROPIC_MESSAGES_PATH: &str = "/v1/messages";

impl Default for ParseOptions {
    fn default() -> ParseOptions {
        ParseOptions {
            base_url: None,
            redactor: Redactor::default(),
            max_line_bytes: DEFAULT_MAX_LINE_BYTES,
            input_format: InputFormat::Auto,
        }
    }
}

/// Where a line came from, for messages: the file name as given (`-` is shown
/// as `stdin`) and the line's own number in that file (1-based).
#[derive(Clone, Copy, Debug)]
pub struct LineOrigin<'a> {
    /// The input path as given on the command line, or `-` for stdin.
    pub file: &'a str,
    /// The line number within that file, counting from 1.
    pub file_line: u64,
}

impl fmt::Display for LineOrigin<'_> {
    /// `file:line`, the prefix of every [`InvalidLine`] message.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let file = if self.file == "-" { "stdin" } else { self.file };
        write!(f, "{file}:{}", self.file_line)
    }
}

/// Parses one input line into a request, or into the reason it is rejected.
///
/// `raw` is the line without its `\n`; `line` is its number in the whole
/// input stream, which is also the id of a line without one. Returns `None`
/// for lines that are skipped: empty (after trimming) or starting with `#`.
/// Never panics.
///
/// ```
/// use sluice::parse::{parse_line, LineOrigin, ParseOptions};
/// use sluice::Input;
///
/// let origin = LineOrigin { file: "urls.txt", file_line: 3 };
/// let opts = ParseOptions::default();
/// let Some(Input::Request(req)) = parse_line(b"https://example.com/a\r", 3, &origin, &opts) else {
///     panic!("a URL line is a request");
/// };
/// assert_eq!((req.method.as_str(), req.id.as_str()), ("GET", "3"));
///
/// let Some(Input::Invalid(bad)) = parse_line(b"{\"url\": ", 4, &origin, &opts) else {
///     panic!("broken JSON is rejected");
/// };
/// assert!(bad.message.starts_with("urls.txt:3: invalid JSON"));
/// assert!(parse_line(b"  # a comment", 5, &origin, &opts).is_none());
/// ```
pub fn parse_line(
    raw: &[u8],
    line: u64,
    origin: &LineOrigin,
    opts: &ParseOptions,
) -> Option<Input> {
    let trimmed = trim_line(raw);
    if trimmed.is_empty() || trimmed[0] == b'#' {
        return None;
    }
    let ctx = Line {
        number: line,
        origin,
        opts,
    };
    if raw.len() > opts.max_line_bytes {
        return Some(Input::Invalid(line_too_long(
            line,
            origin,
            opts.max_line_bytes,
            raw.len() as u64,
        )));
    }
    let text = match std::str::from_utf8(trimmed) {
        Ok(text) => text,
        Err(e) => return Some(ctx.invalid(Known::default(), not_utf8(&e))),
    };
    let input = if text.starts_with('{') {
        parse_object(text, &ctx)
    } else {
        parse_url_line(text, &ctx)
    };
    Some(match input {
        Input::Request(mut req) => {
            req.place = Some(origin.to_string());
            Input::Request(req)
        }
        other => other,
    })
}

/// Appends a relative URL to a base URL the way httpx does, so
/// `https://h/v1` + `chat` or `/chat` → `https://h/v1/chat`.
///
/// The base path gets a trailing `/`, leading `/`s of `relative` are dropped,
/// and the rest is resolved as a path below the base: it never changes the
/// scheme, host or port. The relative part's query and fragment are kept; the
/// base's query is not carried over. Errors say why the result is not a
/// usable http or https URL.
///
/// ```
/// let base = url::Url::parse("https://h/v1").unwrap();
/// let url = sluice::parse::join_base_url(&base, "/chat?x=1").unwrap();
/// assert_eq!(url.as_str(), "https://h/v1/chat?x=1");
/// ```
///
/// # Errors
///
/// When the joined URL does not parse, or is not http or https with a host.
pub fn join_base_url(base: &Url, relative: &str) -> Result<Url, UrlError> {
    let mut dir = base.clone();
    if !dir.path().ends_with('/') {
        let path = format!("{}/", dir.path());
        dir.set_path(&path);
    }
    // The `./` keeps a `:` or `\` in the first segment in the path, where it
    // cannot become a scheme or a host.
    let below = format!("./{}", relative.trim_start_matches('/'));
    let joined = dir.join(&below).map_err(UrlError::Join)?;
    require_http(joined)
}

/// Why a URL (the base URL, or one joined to it) cannot be used. Messages
/// never repeat the URL, which may hold a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UrlError {
    /// A control character or a space (`what` describes it).
    #[error("the base URL contains {what}: percent-encode it or remove it")]
    ForbiddenChar {
        /// The character, described (`a space`, `a line break`...).
        what: String,
    },
    /// A base URL without a scheme.
    #[error("the base URL must be absolute, starting with http:// or https://")]
    NotAbsolute,
    /// A base URL that does not parse.
    #[error("the base URL is not valid: {0}")]
    Invalid(url::ParseError),
    /// A base URL with a query or a fragment.
    #[error(
        "the base URL must not have a query (`?…`) or fragment (`#…`): put query parameters in each request's url"
    )]
    QueryOrFragment,
    /// A relative URL that cannot be joined to the base.
    #[error("cannot append it to the base URL: {0}")]
    Join(url::ParseError),
    /// A scheme other than http and https.
    #[error(
        "unsupported scheme `{scheme}`: only http and https (write the URL with http:// or https://)"
    )]
    UnsupportedScheme {
        /// The scheme, clipped.
        scheme: String,
    },
    /// A URL without a host.
    #[error("the URL has no host")]
    NoHost,
}

/// Checks a `--base-url` value: an absolute http or https URL with a host,
/// without control characters or spaces, and without a query or fragment
/// (which could not be carried to the joined URLs).
///
/// Messages do not repeat the URL, which may hold a secret.
///
/// ```
/// assert!(sluice::parse::check_base_url("https://api.example.com/v1").is_ok());
/// assert!(sluice::parse::check_base_url("ftp://h/").is_err());
/// ```
///
/// # Errors
///
/// When `text` is not an absolute http or https URL with a host, or holds a query or fragment.
pub fn check_base_url(text: &str) -> Result<Url, UrlError> {
    if let Some(c) = text.chars().find(|&c| is_forbidden_url_char(c)) {
        return Err(UrlError::ForbiddenChar {
            what: describe_char(c),
        });
    }
    let url = match Url::parse(text) {
        Ok(url) => url,
        Err(url::ParseError::RelativeUrlWithoutBase) => return Err(UrlError::NotAbsolute),
        Err(e) => return Err(UrlError::Invalid(e)),
    };
    let url = require_http(url)?;
    if url.query().is_some() || url.fragment().is_some() {
        return Err(UrlError::QueryOrFragment);
    }
    Ok(url)
}

/// The record of a line longer than the limit (`source` skips such lines
/// without buffering them; `len` is the line's length in bytes).
pub(crate) fn line_too_long(line: u64, origin: &LineOrigin, limit: usize, len: u64) -> InvalidLine {
    InvalidLine {
        line,
        id: None,
        method: None,
        url: None,
        message: format!(
            "{origin}: line is longer than the {} limit ({len} bytes); it was skipped",
            show_size(limit)
        ),
    }
}

/// Strips a UTF-8 BOM, then surrounding ASCII whitespace (a trailing `\r`
/// included).
fn trim_line(raw: &[u8]) -> &[u8] {
    raw.strip_prefix(BOM).unwrap_or(raw).trim_ascii()
}

/// A line being parsed.
struct Line<'a> {
    number: u64,
    origin: &'a LineOrigin<'a>,
    opts: &'a ParseOptions,
}

impl Line<'_> {
    fn invalid(&self, known: Known, problem: impl fmt::Display) -> Input {
        Input::Invalid(InvalidLine {
            line: self.number,
            id: known.id,
            method: known.method,
            url: known.url,
            message: format!("{}: {problem}", self.origin),
        })
    }
}

/// What was read of a rejected line, so its record says as much as possible.
#[derive(Default)]
struct Known {
    id: Option<Id>,
    method: Option<String>,
    url: Option<String>,
}

/// A bad field: what is wrong with it, and how to show it in the record.
struct Bad {
    problem: String,
    shown: Option<String>,
}

impl Bad {
    /// A field that cannot be shown (missing, or of the wrong type).
    fn unshown(problem: String) -> Bad {
        Bad {
            problem,
            shown: None,
        }
    }
}

fn not_utf8(e: &std::str::Utf8Error) -> String {
    format!(
        "line is not valid UTF-8 (bad byte at offset {}): save the input as UTF-8",
        e.valid_up_to()
    )
}

// ---- URL lines -------------------------------------------------------------

fn parse_url_line(text: &str, line: &Line) -> Input {
    let known = |url: Option<String>| Known {
        id: Some(Id::line(line.number)),
        method: Some(Method::GET.to_string()),
        url,
    };
    if text.starts_with(['[', '"']) {
        return line.invalid(
            known(None),
            "line is JSON but not an object: write a request as a JSON object `{...}` or as a plain URL",
        );
    }
    match url_field(text, line.opts) {
        Ok(url) => Input::Request(Request::get(line.number, url)),
        Err(bad) => line.invalid(known(bad.shown), bad.problem),
    }
}

/// The URL, or what is wrong with it and the URL as it may be shown.
fn url_field(text: &str, opts: &ParseOptions) -> Result<Url, Bad> {
    resolve_url(text, opts).map_err(|problem| Bad {
        problem,
        shown: (!text.is_empty()).then(|| clip(&opts.redactor.raw_url(text), FIELD_CLIP)),
    })
}

/// A request URL: absolute http(s), or relative to the base URL.
fn resolve_url(text: &str, opts: &ParseOptions) -> Result<Url, String> {
    let shown = || clip(&opts.redactor.raw_url(text), MESSAGE_CLIP);
    if text.is_empty() {
        return Err("`url` is empty".into());
    }
    // Checked before parsing: the url crate silently drops tab, CR and LF.
    if let Some(c) = text.chars().find(|&c| is_forbidden_url_char(c)) {
        return Err(format!(
            "URL `{}` contains {}: percent-encode it (a space is %20) or remove it",
            shown(),
            describe_char(c)
        ));
    }
    match Url::parse(text) {
        Ok(url) => require_http(url).map_err(|e| e.to_string()),
        Err(url::ParseError::RelativeUrlWithoutBase) => resolve_relative(text, opts, shown),
        Err(e) => Err(format!("URL `{}` is not valid: {e}", shown())),
    }
}

fn resolve_relative(
    text: &str,
    opts: &ParseOptions,
    shown: impl Fn() -> String,
) -> Result<Url, String> {
    if text.starts_with("//") || text.starts_with(':') {
        return Err(format!(
            "URL `{}` has no scheme: write it with http:// or https://",
            shown()
        ));
    }
    let Some(base) = &opts.base_url else {
        return Err(format!(
            "relative URL `{}` needs --base-url (or write an absolute http:// or https:// URL)",
            shown()
        ));
    };
    join_base_url(base, text).map_err(|e| format!("relative URL `{}`: {e}", shown()))
}

fn require_http(url: Url) -> Result<Url, UrlError> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err(UrlError::UnsupportedScheme {
            scheme: clip(url.scheme(), MESSAGE_CLIP),
        });
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(UrlError::NoHost);
    }
    Ok(url)
}

/// ASCII control characters and the space, which a URL must carry
/// percent-encoded.
fn is_forbidden_url_char(c: char) -> bool {
    c.is_ascii_control() || c == ' '
}

// ---- JSON lines ------------------------------------------------------------

/// The fields of a JSON request line, unparsed. A field given as `null` is
/// `Some("null")` here, so `"id": null` can be told from a missing id.
#[derive(Deserialize)]
struct Fields<'a> {
    #[serde(borrow, default, deserialize_with = "present")]
    id: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    custom_id: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    method: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    url: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    headers: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    body: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    body_text: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    body_base64: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    timeout: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    cost: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    params: Option<&'a RawValue>,
}

fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(d).map(Some)
}

fn parse_object(text: &str, line: &Line) -> Input {
    if nesting_exceeds(text, MAX_JSON_DEPTH) {
        return line.invalid(
            Known::default(),
            format!("JSON is nested more than {MAX_JSON_DEPTH} levels deep"),
        );
    }
    let fields: Fields = match serde_json::from_str(text) {
        Ok(fields) => fields,
        Err(e) => return line.invalid(Known::default(), format!("invalid JSON: {e}")),
    };
    if let Err(problem) = check_shape(&fields, line.opts.input_format) {
        let known = Known {
            id: read_id(&fields, line.number).ok(),
            ..Known::default()
        };
        return line.invalid(known, problem);
    }
    if is_anthropic(&fields) {
        return parse_anthropic(&fields, line);
    }
    let id = read_id(&fields, line.number);
    let method = read_method(fields.method);
    let url = read_url(fields.url, line.opts);
    match (id, method, url, read_rest(&fields, &line.opts.redactor)) {
        (Ok(id), Ok(method), Ok(url), Ok(rest)) => {
            Input::Request(rest.into_request(id, line.number, method, url))
        }
        (id, method, url, rest) => reject(line, id, method, url, rest.err()),
    }
}

/// True for an Anthropic batch line: `params`, and no field of a sluice line
/// that says what to send (those lines are refused by [`check_shape`]).
fn is_anthropic(fields: &Fields) -> bool {
    given(fields.params).is_some()
}

/// The fields of a sluice line that an Anthropic line must not have: it
/// is always a `POST` of `params` to `/v1/messages`.
fn sluice_request_fields(fields: &Fields) -> Option<&'static str> {
    [
        ("url", fields.url),
        ("method", fields.method),
        ("body", fields.body),
        ("body_text", fields.body_text),
        ("body_base64", fields.body_base64),
    ]
    .into_iter()
    .find_map(|(name, raw)| given(raw).map(|_| name))
}

/// Checks that a line has the keys its `--input-format` requires.
fn check_shape(fields: &Fields, format: InputFormat) -> Result<(), String> {
    const ANTHROPIC: &str = "an anthropic-batch line is {\"custom_id\": ..., \"params\": {...}}, sent as a POST of params to /v1/messages under --base-url";
    const OPENAI: &str = "an openai-batch line is {\"custom_id\", \"method\", \"url\", \"body\"}";
    let params = given(fields.params).is_some();
    match format {
        InputFormat::Auto | InputFormat::AnthropicBatch if params => {
            match sluice_request_fields(fields) {
                Some(name) => Err(format!(
                    "`params` and `{name}` are both set, so the line is neither kind: {ANTHROPIC}; a sluice line has `url` and no `params`"
                )),
                None => Ok(()),
            }
        }
        InputFormat::AnthropicBatch => Err(format!(
            "`params` is missing (--input-format anthropic-batch): {ANTHROPIC}"
        )),
        _ if params => Err(format!(
            "`params` is an anthropic-batch field, but the input format is {}: use --input-format auto or anthropic-batch, or give `url` and `body`",
            format.as_str()
        )),
        InputFormat::OpenAiBatch => {
            let missing = [
                ("custom_id", fields.custom_id),
                ("method", fields.method),
                ("url", fields.url),
            ]
            .into_iter()
            .find(|(_, raw)| given(*raw).is_none());
            match missing {
                Some((name, _)) => Err(format!(
                    "`{name}` is missing (--input-format openai-batch): {OPENAI}"
                )),
                None => Ok(()),
            }
        }
        InputFormat::Auto | InputFormat::Sluice => Ok(()),
    }
}

/// An Anthropic batch line: a `POST` of `params` (a JSON object) to
/// `/v1/messages` under the base URL. `headers`, `timeout` and `cost` are
/// read as on any line.
fn parse_anthropic(fields: &Fields, line: &Line) -> Input {
    let id = read_id(fields, line.number);
    let url = match &line.opts.base_url {
        Some(base) => {
            join_base_url(base, ANTHROPIC_MESSAGES_PATH).map_err(|e| Bad::unshown(e.to_string()))
        }
        None => Err(Bad::unshown(
            "an anthropic-batch line is sent to /v1/messages under --base-url, and none is given: add --base-url (e.g. https://api.anthropic.com)".into(),
        )),
    };
    let rest = read_rest(fields, &line.opts.redactor).and_then(|mut rest| {
        let params = fields
            .params
            .ok_or_else(|| "`params` is missing".to_string())?;
        if !matches!(json_kind(params), JsonKind::Object) {
            return Err(format!(
                "`params` must be an object (the Messages API request body), not {}",
                json_kind(params)
            ));
        }
        rest.body = Some(Bytes::from(compact_json(params.get())));
        rest.json_body = true;
        Ok(rest)
    });
    match (id, url, rest) {
        (Ok(id), Ok(url), Ok(rest)) => {
            Input::Request(rest.into_request(id, line.number, Method::POST, url))
        }
        (id, url, rest) => reject(line, id, Ok(Method::POST), url, rest.err()),
    }
}

/// The record of a JSON line with at least one bad field: the first problem,
/// and every field that could be read.
fn reject(
    line: &Line,
    id: Result<Id, String>,
    method: Result<Method, Bad>,
    url: Result<Url, Bad>,
    rest: Option<String>,
) -> Input {
    let problem = id
        .as_ref()
        .err()
        .cloned()
        .or_else(|| method.as_ref().err().map(|bad| bad.problem.clone()))
        .or_else(|| url.as_ref().err().map(|bad| bad.problem.clone()))
        .or(rest)
        .expect("a line is rejected only when one of its fields is bad");
    let known = Known {
        id: id.ok(),
        method: method.map_or_else(|bad| bad.shown, |m| Some(m.to_string())),
        url: url.map_or_else(|bad| bad.shown, |u| Some(line.opts.redactor.url(&u))),
    };
    line.invalid(known, problem)
}

/// The fields of a request besides its id, method and URL.
struct Rest {
    headers: HeaderMap,
    body: Option<Bytes>,
    json_body: bool,
    timeout: Option<Duration>,
    cost: f64,
}

impl Rest {
    fn into_request(self, id: Id, line: u64, method: Method, url: Url) -> Request {
        Request {
            id,
            line,
            method,
            url,
            headers: self.headers,
            body: self.body,
            json_body: self.json_body,
            timeout: self.timeout,
            cost: self.cost,
            place: None,
            abandon: None,
        }
    }
}

fn read_rest(fields: &Fields, redactor: &Redactor) -> Result<Rest, String> {
    let headers = match given(fields.headers) {
        Some(raw) => read_headers(raw, redactor)?,
        None => HeaderMap::new(),
    };
    let (body, json_body) = read_body(fields)?;
    Ok(Rest {
        headers,
        body,
        json_body,
        timeout: given(fields.timeout).map(read_timeout).transpose()?,
        cost: given(fields.cost).map_or(Ok(1.0), read_cost)?,
    })
}

/// A field that is absent or `null` is not given (ids excepted: see [`read_id`]).
fn given(raw: Option<&RawValue>) -> Option<&RawValue> {
    raw.filter(|r| r.get().trim() != "null")
}

/// `id`, else `custom_id`, else the line number. A `null` id is refused
/// rather than replaced by the line number, which would silently change
/// which record a resumed run matches.
fn read_id(fields: &Fields, line: u64) -> Result<Id, String> {
    let id = fields.id.map(|raw| id_from(raw, "id")).transpose()?;
    let custom = fields
        .custom_id
        .map(|raw| id_from(raw, "custom_id"))
        .transpose()?;
    match (id, custom) {
        (Some(id), Some(custom)) if id.as_str() != custom.as_str() => Err(format!(
            "`id` ({}) and `custom_id` ({}) differ: give one of them, or the same value in both",
            clip(id.as_str(), MESSAGE_CLIP),
            clip(custom.as_str(), MESSAGE_CLIP)
        )),
        (Some(id), _) => Ok(id),
        (None, Some(custom)) => Ok(custom),
        (None, None) => Ok(Id::line(line)),
    }
}

fn id_from(raw: &RawValue, name: &str) -> Result<Id, String> {
    Id::from_json(raw).map_err(|e| format!("`{name}` {e}"))
}

fn read_method(raw: Option<&RawValue>) -> Result<Method, Bad> {
    let Some(raw) = given(raw) else {
        return Ok(Method::GET);
    };
    let text = string_of(raw, "method").map_err(Bad::unshown)?;
    method_from(&text).map_err(|problem| Bad {
        problem,
        shown: Some(clip(&text, MAX_METHOD_BYTES)),
    })
}

/// A method is case-insensitive here: `get` is sent as `GET`.
fn method_from(text: &str) -> Result<Method, String> {
    if text.is_empty() {
        return Err("`method` is empty: give an HTTP method such as GET or POST".into());
    }
    if text.len() > MAX_METHOD_BYTES {
        return Err(format!("`method` is longer than {MAX_METHOD_BYTES} bytes"));
    }
    if let Some(c) = text.chars().find(|&c| !is_tchar(c)) {
        return Err(format!(
            "`method` `{}` contains {}: a method is letters, digits and !#$%&'*+-.^_`|~",
            clip(text, MESSAGE_CLIP),
            describe_char(c)
        ));
    }
    let upper = text.to_ascii_uppercase();
    if upper == "CONNECT" {
        return Err(
            "`method` CONNECT is not supported: sluice sends requests, it does not open tunnels"
                .into(),
        );
    }
    Method::from_bytes(upper.as_bytes())
        .map_err(|e| format!("`method` `{upper}` is not valid: {e}"))
}

/// RFC 9110 `tchar`: the characters of a method or header name.
fn is_tchar(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}

fn read_url(raw: Option<&RawValue>, opts: &ParseOptions) -> Result<Url, Bad> {
    let Some(raw) = given(raw) else {
        return Err(Bad::unshown(
            "`url` is missing: every request line needs one".into(),
        ));
    };
    let text = string_of(raw, "url").map_err(Bad::unshown)?;
    url_field(&text, opts)
}

// ---- headers ---------------------------------------------------------------

/// The entries of a JSON object in order, duplicates kept.
struct Entries<'a>(Vec<(String, &'a RawValue)>);

impl<'de> Deserialize<'de> for Entries<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(EntriesVisitor)
    }
}

struct EntriesVisitor;

impl<'de> Visitor<'de> for EntriesVisitor {
    type Value = Entries<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Entries<'de>, A::Error> {
        let mut entries = Vec::new();
        while let Some(entry) = map.next_entry::<String, &'de RawValue>()? {
            entries.push(entry);
        }
        Ok(Entries(entries))
    }
}

/// `headers`: name → string, or name → array of strings (one header line
/// each). Values are taken literally: `${VAR}` is not expanded.
fn read_headers(raw: &RawValue, redactor: &Redactor) -> Result<HeaderMap, String> {
    if json_kind(raw) != JsonKind::Object {
        return Err(format!(
            "`headers` must be an object of name → value, not {}",
            json_kind(raw)
        ));
    }
    let entries: Entries =
        serde_json::from_str(raw.get()).map_err(|e| format!("`headers`: {e}"))?;
    let mut map = HeaderMap::new();
    for (name, value) in entries.0 {
        add_header(&mut map, &name, value, redactor)?;
    }
    Ok(map)
}

fn add_header(
    map: &mut HeaderMap,
    name: &str,
    value: &RawValue,
    redactor: &Redactor,
) -> Result<(), String> {
    let header = header_name(name)?;
    let shown = clip(name, MESSAGE_CLIP);
    for text in header_texts(&shown, value)? {
        let mut value = headers::value(name, &text).map_err(|e| e.to_string())?;
        value.set_sensitive(redactor.is_secret_header(name));
        map.try_append(header.clone(), value)
            .map_err(|_| "`headers` has too many entries".to_string())?;
    }
    Ok(())
}

fn header_name(name: &str) -> Result<HeaderName, String> {
    if name.is_empty() {
        return Err("a header name in `headers` is empty".into());
    }
    headers::name(name, Setter::RequestLine).map_err(|e| e.to_string())
}

/// The value texts of one header: a string, or a non-empty array of strings.
fn header_texts(shown: &str, value: &RawValue) -> Result<Vec<String>, String> {
    let wrong = |kind: &dyn fmt::Display| {
        format!("header `{shown}` must be a string or an array of strings, not {kind}")
    };
    match json_kind(value) {
        JsonKind::String => Ok(vec![
            decode_string(value).map_err(|e| format!("header `{shown}`: {e}"))?,
        ]),
        JsonKind::Array => {
            let items: Vec<&RawValue> =
                serde_json::from_str(value.get()).map_err(|e| format!("header `{shown}`: {e}"))?;
            if items.is_empty() {
                return Err(format!(
                    "header `{shown}` is an empty array: give at least one value"
                ));
            }
            items
                .into_iter()
                .map(|item| match json_kind(item) {
                    JsonKind::String => {
                        decode_string(item).map_err(|e| format!("header `{shown}`: {e}"))
                    }
                    kind => Err(wrong(&format_args!("an array holding {kind}"))),
                })
                .collect()
        }
        kind => Err(wrong(&kind)),
    }
}

// ---- body, timeout, cost -----------------------------------------------------

/// At most one of `body` (JSON, sent compact), `body_text`, `body_base64`.
fn read_body(fields: &Fields) -> Result<(Option<Bytes>, bool), String> {
    let bodies: Vec<(&str, &RawValue)> = [
        ("body", fields.body),
        ("body_text", fields.body_text),
        ("body_base64", fields.body_base64),
    ]
    .into_iter()
    .filter_map(|(name, raw)| given(raw).map(|raw| (name, raw)))
    .collect();
    match bodies.as_slice() {
        [] => Ok((None, false)),
        [("body", raw)] => Ok((Some(Bytes::from(compact_json(raw.get()))), true)),
        [("body_text", raw)] => Ok((Some(Bytes::from(string_of(raw, "body_text")?)), false)),
        [(_, raw)] => Ok((Some(Bytes::from(read_base64(raw)?)), false)),
        [(a, _), (b, _), ..] => Err(format!(
            "`{a}` and `{b}` are both set: give at most one of body, body_text, body_base64"
        )),
    }
}

fn read_base64(raw: &RawValue) -> Result<Vec<u8>, String> {
    let text = string_of(raw, "body_base64")?;
    BASE64.decode(text.as_bytes()).map_err(|e| {
        format!(
            "`body_base64` is not valid standard base64 (A-Z a-z 0-9 + /, padding optional): {e}"
        )
    })
}

/// A duration with its unit (`"30s"`, `"500ms"`), as on the command line;
/// more than zero. A bare number is refused: `--timeout` and `timeout` follow
/// one rule.
fn read_timeout(raw: &RawValue) -> Result<Duration, String> {
    let timeout = match json_kind(raw) {
        JsonKind::String => parse_duration(&string_of(raw, "timeout")?).map_err(|e| e.to_string()),
        JsonKind::Number => Err(format!(
            "is a bare number ({}): write it as a string with a unit, \"{}ms\" or \"{}s\"",
            raw.get(),
            raw.get(),
            raw.get()
        )),
        kind => Err(format!(
            "must be a duration with a unit such as \"30s\" or \"500ms\", not {kind}"
        )),
    }
    .map_err(|e| format!("`timeout` {e}"))?;
    if timeout.is_zero() {
        return Err("`timeout` must be more than zero".into());
    }
    Ok(timeout)
}

/// A finite number, at least 0.
fn read_cost(raw: &RawValue) -> Result<f64, String> {
    let kind = json_kind(raw);
    if kind != JsonKind::Number {
        return Err(format!("`cost` must be a number, not {kind}"));
    }
    let cost = number_of(raw).map_err(|e| format!("`cost` {e}"))?;
    if !cost.is_finite() || cost < 0.0 {
        return Err(format!(
            "`cost` must be a finite number of at least 0, not {}",
            clip(raw.get(), MESSAGE_CLIP)
        ));
    }
    // `-0` is 0.
    Ok(cost.abs())
}

// ---- JSON helpers ----------------------------------------------------------

fn string_of(raw: &RawValue, name: &str) -> Result<String, String> {
    match json_kind(raw) {
        JsonKind::String => decode_string(raw).map_err(|e| format!("`{name}`: {e}")),
        kind => Err(format!("`{name}` must be a string, not {kind}")),
    }
}

fn decode_string(raw: &RawValue) -> Result<String, String> {
    serde_json::from_str(raw.get()).map_err(|e| e.to_string())
}

/// A JSON number as f64 (`1e400` is infinite, which callers refuse).
fn number_of(raw: &RawValue) -> Result<f64, String> {
    raw.get()
        .trim()
        .parse()
        .map_err(|_| format!("is not a number: {}", clip(raw.get(), MESSAGE_CLIP)))
}

/// True when brackets nest deeper than `limit` outside strings. Checked before
/// parsing so that depth is refused the same way in every field.
fn nesting_exceeds(text: &str, limit: usize) -> bool {
    let mut depth = 0usize;
    let mut strings = JsonStrings::default();
    for &b in text.as_bytes() {
        if strings.inside(b) {
            continue;
        }
        match b {
            b'[' | b'{' => {
                depth += 1;
                if depth > limit {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

// ---- showing text in messages ------------------------------------------------

/// At most `max` characters of `text`, control characters escaped, `…` when cut.
pub(crate) fn clip(text: &str, max: usize) -> String {
    let mut out = String::new();
    for (i, c) in text.chars().enumerate() {
        if i == max {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// A character named for a message: "a space", "a control character (U+000D)".
fn describe_char(c: char) -> String {
    match c {
        ' ' => "a space".into(),
        '\t' => "a tab".into(),
        '\r' | '\n' => format!("a line break (U+{:04X})", c as u32),
        c if c.is_control() => format!("a control character (U+{:04X})", c as u32),
        c => format!("`{c}`"),
    }
}

/// `64 MiB`, `16 KiB` or `100 bytes`.
fn show_size(bytes: usize) -> String {
    const KIB: usize = 1024;
    const MIB: usize = 1024 * 1024;
    match bytes {
        0 => "0 bytes".into(),
        b if b % MIB == 0 => format!("{} MiB", b / MIB),
        b if b % KIB == 0 => format!("{} KiB", b / KIB),
        b => format!("{b} bytes"),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use proptest::prelude::*;

    use super::*;

    const ORIGIN: LineOrigin<'static> = LineOrigin {
        file: "in.jsonl",
        file_line: 7,
    };
    const PREFIX: &str = "in.jsonl:7: ";
    const LINE: u64 = 42;

    fn with_base(base: &str) -> ParseOptions {
        ParseOptions {
            base_url: Some(check_base_url(base).expect("test base URL is valid")),
            ..ParseOptions::default()
        }
    }

    fn parse_with(text: &str, opts: &ParseOptions) -> Option<Input> {
        parse_line(text.as_bytes(), LINE, &ORIGIN, opts)
    }

    fn ok_with(text: &str, opts: &ParseOptions) -> Request {
        match parse_with(text, opts) {
            Some(Input::Request(r)) => r,
            other => panic!("{text:?} should be a request, got {other:?}"),
        }
    }

    fn bad_with(text: &str, opts: &ParseOptions) -> InvalidLine {
        match parse_with(text, opts) {
            Some(Input::Invalid(i)) => {
                assert!(i.message.starts_with(PREFIX), "{}", i.message);
                assert_eq!(i.line, LINE);
                i
            }
            other => panic!("{text:?} should be invalid, got {other:?}"),
        }
    }

    fn ok(text: &str) -> Request {
        ok_with(text, &ParseOptions::default())
    }

    fn bad(text: &str) -> InvalidLine {
        bad_with(text, &ParseOptions::default())
    }

    /// Asserts the line is rejected with a message containing every part.
    fn rejects(text: &str, parts: &[&str]) -> InvalidLine {
        let invalid = bad(text);
        for part in parts {
            assert!(
                invalid.message.contains(part),
                "{text:?}: {:?} lacks {part:?}",
                invalid.message
            );
        }
        invalid
    }

    #[test]
    fn skipped_lines() {
        let opts = ParseOptions::default();
        for raw in [
            &b""[..],
            b"   ",
            b"\r",
            b" \t \r",
            b"# comment",
            b"   #indented comment\r",
            b"\xEF\xBB\xBF",
            b"\xEF\xBB\xBF# comment after a BOM",
            b"# not UTF-8: \xff\xfe",
            b"#{\"url\": \"http://h/\"}",
        ] {
            assert!(parse_line(raw, 1, &ORIGIN, &opts).is_none(), "{raw:?}");
        }
    }

    #[test]
    fn url_lines_are_gets_with_the_line_number_as_id() {
        let r = ok("  https://example.com/a?q=1 \r");
        assert_eq!(r.url.as_str(), "https://example.com/a?q=1");
        assert!(r.id.is_numeric());
        assert_eq!(
            (r.method, r.id, r.line),
            (Method::GET, Id::line(LINE), LINE)
        );
        assert_eq!(
            (r.body, r.json_body, r.timeout, r.cost),
            (None, false, None, 1.0)
        );
        let bom = parse_line(
            b"\xEF\xBB\xBFhttp://h/x\r",
            1,
            &ORIGIN,
            &ParseOptions::default(),
        );
        assert!(matches!(bom, Some(Input::Request(r)) if r.url.as_str() == "http://h/x"));
    }

    #[test]
    fn bad_urls() {
        for (line, part) in [
            ("http://", "empty host"),
            ("http://exa mple.com", "contains a space"),
            ("http://[::1", "invalid IPv6"),
            ("http://h:99999/", "invalid port"),
            ("://x", "has no scheme"),
            ("//h/x", "has no scheme"),
            (
                "file:///etc/passwd",
                "unsupported scheme `file`: only http and https",
            ),
            ("ftp://h/", "unsupported scheme `ftp`: only http and https"),
            ("javascript:alert(1)", "unsupported scheme `javascript`"),
            ("unix:///var/run/x.sock", "unsupported scheme `unix`"),
            ("localhost:8080/x", "unsupported scheme `localhost`"),
            (
                "chat/completions",
                "relative URL `chat/completions` needs --base-url",
            ),
            ("[1]", "JSON but not an object"),
            ("\"http://h/\"", "JSON but not an object"),
        ] {
            let invalid = rejects(line, &[part]);
            assert_eq!(invalid.id, Some(Id::line(LINE)), "{line}");
            assert_eq!(invalid.method.as_deref(), Some("GET"), "{line}");
        }
        // Non-object JSON stays rejected even where relative URLs are allowed.
        bad_with("[1]", &with_base("https://h/v1"));
    }

    #[test]
    fn control_characters_in_urls_are_rejected_not_stripped() {
        for (url, what) in [
            ("http://h/a\tb", "a tab"),
            ("http://h/a\x01", "U+0001"),
            ("http://h/a\x7f", "U+007F"),
            ("http://h/a\x00", "U+0000"),
        ] {
            rejects(url, &[what]);
        }
        let json = r#"{"url": "http://127.0.0.1:1/a\r\nX-Injected: 1"}"#;
        let invalid = rejects(json, &["line break"]);
        assert!(invalid.url.is_some());
        // Percent-encoded, the same bytes are fine and sent as written.
        assert_eq!(ok("http://h/a%0d%0a").url.as_str(), "http://h/a%0d%0a");
    }

    #[test]
    fn relative_urls_join_the_base_like_httpx() {
        let opts = with_base("https://h/v1");
        for (rel, want) in [
            ("chat", "https://h/v1/chat"),
            ("/chat", "https://h/v1/chat"),
            (
                "chat/completions?x=1&y=2",
                "https://h/v1/chat/completions?x=1&y=2",
            ),
            ("?x=1", "https://h/v1/?x=1"),
            ("/a:b", "https://h/v1/a:b"),
        ] {
            let line = format!(r#"{{"url": "{rel}"}}"#);
            assert_eq!(ok_with(&line, &opts).url.as_str(), want, "{rel}");
        }
        assert_eq!(ok_with("chat", &opts).url.as_str(), "https://h/v1/chat");
        // An absolute URL ignores the base.
        assert_eq!(
            ok_with("http://other/x", &opts).url.as_str(),
            "http://other/x"
        );
        bad_with("//evil.example/x", &opts);
        // Text before a `:` is a scheme, so this is not relative.
        assert!(
            bad_with("a:b", &opts)
                .message
                .contains("unsupported scheme `a`")
        );
    }

    #[test]
    fn join_base_url_never_leaves_the_base_origin() {
        let base = |s| Url::parse(s).expect("valid test URL");
        for (b, rel, want) in [
            ("https://h/v1", "chat", "https://h/v1/chat"),
            ("https://h/v1/", "chat", "https://h/v1/chat"),
            ("https://h/v1/", "/chat", "https://h/v1/chat"),
            ("https://h", "chat", "https://h/chat"),
            ("https://h:8443/v1", "", "https://h:8443/v1/"),
            ("https://h/v1", "a:b", "https://h/v1/a:b"),
            (
                "https://h/v1",
                "\\\\evil.example/x",
                "https://h/v1///evil.example/x",
            ),
            ("https://h/v1", "x#frag", "https://h/v1/x#frag"),
        ] {
            let joined = join_base_url(&base(b), rel).expect("joins");
            assert_eq!(joined.as_str(), want, "{b} + {rel}");
        }
    }

    #[test]
    fn base_url_checks() {
        assert_eq!(
            check_base_url("https://api.example.com/v1").map(String::from),
            Ok("https://api.example.com/v1".to_string())
        );
        for (text, part) in [
            ("ftp://h/", "unsupported scheme `ftp`"),
            ("api.example.com/v1", "must be absolute"),
            ("https://h/ v1", "a space"),
            ("https://h/v1\n", "line break"),
            ("https://h/v1?key=SECRET", "must not have a query"),
            ("https://h/v1#x", "must not have a query"),
            ("http://", "the base URL is not valid: empty host"),
            ("http://h:99999", "invalid port"),
        ] {
            let err = check_base_url(text).expect_err(text).to_string();
            assert!(err.contains(part), "{text}: {err}");
            assert!(!err.contains("SECRET"), "{err}");
        }
    }

    #[test]
    fn invalid_utf8_is_reported_for_both_kinds_of_line() {
        for raw in [&b"http://h/\xff"[..], b"{\"url\": \"http://h/\xc3\x28\"}"] {
            match parse_line(raw, 3, &ORIGIN, &ParseOptions::default()) {
                Some(Input::Invalid(i)) => {
                    assert!(i.message.starts_with(PREFIX), "{}", i.message);
                    assert!(i.message.contains("not valid UTF-8"), "{}", i.message);
                    assert_eq!((i.line, i.id), (3, None));
                }
                other => panic!("{raw:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn full_json_line() {
        let r = ok(
            r#"{"id": "u-17", "method": "POST", "url": "https://api.example.com/v1/items",
            "headers": {"Content-Type": "application/json"}, "body": {"name": "x"}, "cost": 1}"#
                .replace('\n', " ")
                .as_str(),
        );
        assert_eq!(r.id, Id::text("u-17"));
        assert_eq!((r.line, r.method), (LINE, Method::POST));
        assert_eq!(r.url.as_str(), "https://api.example.com/v1/items");
        assert_eq!(r.headers["content-type"], "application/json");
        assert_eq!(r.body.as_deref(), Some(&b"{\"name\":\"x\"}"[..]));
        assert!(r.json_body);
        assert_eq!(r.cost, 1.0);
    }

    #[test]
    fn openai_batch_lines_run_as_they_are() {
        let line = r#"{"custom_id": "request-1", "method": "POST", "url": "/v1/chat/completions", "body": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1000}}"#;
        let r = ok_with(line, &with_base("https://api.openai.com"));
        assert_eq!(r.id, Id::text("request-1"));
        assert_eq!(r.url.as_str(), "https://api.openai.com/v1/chat/completions");
        assert!(
            r.body
                .is_some_and(|b| b.starts_with(b"{\"model\":\"gpt-4o-mini\""))
        );
    }

    #[test]
    fn anthropic_batch_lines_post_params_to_messages() {
        let line = r#"{"custom_id": "q-1", "params": {"model": "claude", "max_tokens": 1.50, "messages": [{"role": "user", "content": "Hi"}]}, "cost": 3}"#;
        let r = ok_with(line, &with_base("https://gw.example/anthropic"));
        assert_eq!(r.id, Id::text("q-1"));
        assert_eq!(r.method, Method::POST);
        assert_eq!(r.url.as_str(), "https://gw.example/anthropic/v1/messages");
        assert!(r.json_body);
        assert_eq!(
            r.body.as_deref(),
            Some(&br#"{"model":"claude","max_tokens":1.50,"messages":[{"role":"user","content":"Hi"}]}"#[..])
        );
        assert_eq!(r.cost, 3.0);
        // No base URL, a params that is not an object, or a sluice field beside it.
        let bad = bad(r#"{"custom_id": "q-2", "params": {}}"#);
        assert!(bad.message.contains("add --base-url"), "{}", bad.message);
        assert_eq!(bad.id, Some(Id::text("q-2")));
        let opts = with_base("https://h");
        let bad = bad_with(r#"{"custom_id": "q-3", "params": []}"#, &opts);
        assert!(bad.message.contains("must be an object"), "{}", bad.message);
        let bad = bad_with(r#"{"custom_id": "q-4", "params": {}, "url": "/x"}"#, &opts);
        assert!(
            bad.message.contains("`params` and `url` are both set"),
            "{}",
            bad.message
        );
        assert_eq!(bad.id, Some(Id::text("q-4")));
    }

    #[test]
    fn json_body_keeps_every_digit_and_string_byte() {
        let r = ok(r#"{"url": "http://h/", "body": { "a" : [ 1 , 2.50, 1e400, 18446744073709551616, -0.0 ],
            "s" : "x  y\t\"q\" \\" , "u": "é" }}"#
            .replace('\n', " ")
            .as_str());
        assert_eq!(
            std::str::from_utf8(r.body.as_deref().expect("has a body")),
            Ok(r#"{"a":[1,2.50,1e400,18446744073709551616,-0.0],"s":"x  y\t\"q\" \\","u":"é"}"#)
        );
        for (body, sent) in [
            ("\"text\"", "\"text\""),
            ("0", "0"),
            ("[ ]", "[]"),
            ("false", "false"),
        ] {
            let r = ok(&format!(r#"{{"url": "http://h/", "body": {body}}}"#));
            assert_eq!(r.body.as_deref(), Some(sent.as_bytes()), "{body}");
            assert!(r.json_body);
        }
    }

    #[test]
    fn ids() {
        assert_eq!(ok(r#"{"url":"http://h/"}"#).id, Id::line(LINE));
        let big = ok(r#"{"id": 18446744073709551616, "url": "http://h/"}"#).id;
        assert_eq!(
            (big.as_str(), big.is_numeric()),
            ("18446744073709551616", true)
        );
        assert_eq!(ok(r#"{"id": 7, "url":"http://h/"}"#).id.as_str(), "7");
        assert_eq!(ok(r#"{"id": "7", "url":"http://h/"}"#).id.as_str(), "7");
        assert_eq!(
            ok(r#"{"custom_id": "c", "url":"http://h/"}"#).id,
            Id::text("c")
        );
        let both = ok(r#"{"id": 7, "custom_id": "7", "url":"http://h/"}"#).id;
        assert_eq!((both.as_str(), both.is_numeric()), ("7", true));
        let differ = rejects(
            r#"{"id": "a", "custom_id": "b", "url":"http://h/"}"#,
            &["`id` (a) and `custom_id` (b) differ"],
        );
        assert_eq!(differ.id, None);
        assert_eq!(differ.url.as_deref(), Some("http://h/"));
        for wrong in ["{}", "true", "null", "1.5", "1e400", "[1]"] {
            let invalid = rejects(
                &format!(r#"{{"id": {wrong}, "url":"http://h/"}}"#),
                &["`id` must be a string or an integer"],
            );
            assert_eq!(invalid.id, None, "{wrong}");
            let invalid = rejects(
                &format!(r#"{{"custom_id": {wrong}, "url":"http://h/"}}"#),
                &["`custom_id` must be a string or an integer"],
            );
            assert_eq!(invalid.id, None, "{wrong}");
        }
    }

    #[test]
    fn methods() {
        let method = |m: &str| format!(r#"{{"method": {m}, "url": "http://h/"}}"#);
        assert_eq!(ok(&method("\"get\"")).method, Method::GET);
        assert_eq!(ok(&method("\"Post\"")).method, Method::POST);
        assert_eq!(ok(&method("\"PURGE\"")).method.as_str(), "PURGE");
        assert_eq!(ok(&method("null")).method, Method::GET);
        let long = format!("\"{}\"", "A".repeat(1024));
        for (m, part) in [
            ("\"GE T\"", "contains a space"),
            ("\"\"", "`method` is empty"),
            ("\"CONNECT\"", "CONNECT is not supported"),
            ("\"connect\"", "CONNECT is not supported"),
            ("\"G(T\"", "contains `(`"),
            ("\"GÉT\"", "contains `É`"),
            (long.as_str(), "longer than 64 bytes"),
            ("1", "`method` must be a string, not a number"),
        ] {
            let invalid = rejects(&method(m), &[part]);
            assert_eq!(invalid.id, Some(Id::line(LINE)), "{m}");
            assert_eq!(invalid.url.as_deref(), Some("http://h/"), "{m}");
        }
        // An invalid method is still shown, cut to 64 characters.
        assert_eq!(bad(&method("\"GE T\"")).method.as_deref(), Some("GE T"));
        assert_eq!(
            bad(&method(&long)).method.map(|m| m.chars().count()),
            Some(65)
        );
    }

    #[test]
    fn headers() {
        let r = ok(
            r#"{"url": "http://h/", "headers": {"Accept": "a/b", "X-Multi": ["1", "2"],
            "Authorization": "Bearer SECRET", "X-Env": "${HOME}", "x-multi": "3"}}"#
                .replace('\n', " ")
                .as_str(),
        );
        assert_eq!(r.headers["accept"], "a/b");
        let multi: Vec<_> = r.headers.get_all("x-multi").iter().collect();
        assert_eq!(multi, ["1", "2", "3"]);
        assert!(r.headers["authorization"].is_sensitive());
        assert!(!r.headers["accept"].is_sensitive());
        assert_eq!(r.headers["x-env"], "${HOME}", "never expanded");
        assert!(
            ok(r#"{"url": "http://h/", "headers": null}"#)
                .headers
                .is_empty()
        );
        assert!(
            ok(r#"{"url": "http://h/", "headers": {}}"#)
                .headers
                .is_empty()
        );
    }

    #[test]
    fn forbidden_headers() {
        for name in [
            "Host",
            "content-length",
            "Transfer-Encoding",
            "CONNECTION",
            "TE",
            "Upgrade",
            "Keep-Alive",
            "Proxy-Connection",
        ] {
            let line = format!(r#"{{"url": "http://h/", "headers": {{"{name}": "x"}}}}"#);
            rejects(
                &line,
                &[&format!("`{name}` cannot be set by a request line; sluice")],
            );
        }
        rejects(
            r#"{"url": "http://h/", "headers": {"Host": "evil"}}"#,
            &["`Host` cannot be set by a request line; sluice sets it from the URL"],
        );
    }

    #[test]
    fn bad_headers_name_the_header_but_never_show_the_value() {
        let headers = |h: &str| format!(r#"{{"id": "h", "url": "http://h/", "headers": {h}}}"#);
        for (h, part) in [
            (
                r#"{"X-A": "SECRET\r\nX-Injected: 1"}"#,
                "header `X-A` value contains a line break (CR or LF)",
            ),
            (r#"{"X-A": "SECRET\n"}"#, "line break"),
            (
                r#"{"X-A": "SECRET\u0000"}"#,
                "header `X-A` value contains a NUL byte",
            ),
            (
                r#"{"X-A": "SECRET\u0001"}"#,
                "header `X-A` value contains a control character",
            ),
            (
                r#"{"X-A": ["ok", "SECRET\r"]}"#,
                "header `X-A` value contains a line break",
            ),
            (
                r#"{"X-A": 5}"#,
                "header `X-A` must be a string or an array of strings, not a number",
            ),
            (
                r#"{"X-A": [5]}"#,
                "header `X-A` must be a string or an array of strings",
            ),
            (r#"{"X-A": {"SECRET": 1}}"#, "not an object"),
            (r#"{"X-A": []}"#, "header `X-A` is an empty array"),
            (
                r#"{"Bad Name": "SECRET"}"#,
                "header name `Bad Name` is not valid",
            ),
            (r#"{"X:Y": "SECRET"}"#, "header name `X:Y` is not valid"),
            (r#"{"": "SECRET"}"#, "header name in `headers` is empty"),
            (r#"{"é": "SECRET"}"#, "header name `é` is not valid"),
            (r#"{"X-A\r\nX-B": "SECRET"}"#, "contains CR, LF or NUL"),
            (
                r#"["X-A: SECRET"]"#,
                "`headers` must be an object of name → value, not an array",
            ),
            (r#""X-A: SECRET""#, "not a string"),
        ] {
            let invalid = rejects(&headers(h), &[part]);
            assert!(!invalid.message.contains("SECRET"), "{}", invalid.message);
            assert_eq!(invalid.id, Some(Id::text("h")));
        }
    }

    #[test]
    fn bodies() {
        let line = |fields: &str| format!(r#"{{"url": "http://h/", {fields}}}"#);
        let r = ok(&line(r#""body_text": "héllo\n""#));
        assert_eq!(
            (r.body.as_deref(), r.json_body),
            (Some("héllo\n".as_bytes()), false)
        );
        for b64 in ["aGk=", "aGk"] {
            let r = ok(&line(&format!(r#""body_base64": "{b64}""#)));
            assert_eq!((r.body.as_deref(), r.json_body), (Some(&b"hi"[..]), false));
        }
        assert_eq!(ok(&line(r#""body": null"#)).body, None);
        let r = ok(&line(r#""body": null, "body_text": "t""#));
        assert_eq!(r.body.as_deref(), Some(&b"t"[..]));
        assert_eq!(
            ok(&line(r#""body_base64": """#)).body.as_deref(),
            Some(&b""[..])
        );
        for (fields, part) in [
            (
                r#""body": {}, "body_text": "x""#,
                "`body` and `body_text` are both set: give at most one of body, body_text, body_base64",
            ),
            (
                r#""body": 1, "body_base64": "eA==""#,
                "`body` and `body_base64` are both set",
            ),
            (
                r#""body_text": "", "body_base64": """#,
                "`body_text` and `body_base64` are both set",
            ),
            (
                r#""body_base64": "not base64!""#,
                "`body_base64` is not valid standard base64",
            ),
            (r#""body_base64": "aGk-""#, "`body_base64` is not valid"),
            (
                r#""body_base64": 5"#,
                "`body_base64` must be a string, not a number",
            ),
            (
                r#""body_text": {"a": 1}"#,
                "`body_text` must be a string, not an object",
            ),
        ] {
            rejects(&line(fields), &[part]);
        }
    }

    #[test]
    fn timeouts() {
        let line = |t: &str| format!(r#"{{"url": "http://h/", "timeout": {t}}}"#);
        for (t, want) in [
            ("\"30s\"", Duration::from_secs(30)),
            ("\"500ms\"", Duration::from_millis(500)),
        ] {
            assert_eq!(ok(&line(t)).timeout, Some(want), "{t}");
        }
        assert_eq!(ok(&line("null")).timeout, None);
        for t in [
            "0", "\"0s\"", "-1", "\"-5s\"", "\"abc\"", "true", "1e400", "[]", "\"\"", "1500",
            "2.5", "\"30\"",
        ] {
            rejects(&line(t), &["`timeout`"]);
        }
    }

    #[test]
    fn costs() {
        let line = |c: &str| format!(r#"{{"url": "http://h/", "cost": {c}}}"#);
        for (c, want) in [
            ("0", 0.0),
            ("2.5", 2.5),
            ("-0", 0.0),
            ("18446744073709551616", 2f64.powi(64)),
        ] {
            assert_eq!(ok(&line(c)).cost, want, "{c}");
        }
        assert_eq!(ok(&line("null")).cost, 1.0);
        for c in ["-1", "\"1\"", "1e400", "-1e400", "true", "{}"] {
            rejects(&line(c), &["`cost`"]);
        }
    }

    #[test]
    fn rejected_json_lines_keep_what_was_readable_redacted() {
        let invalid = rejects(
            r#"{"id": "a", "method": "post", "url": "https://u:SECRET_PW@h/x?api_key=SECRET_Q&q=1", "cost": -1}"#,
            &["`cost`"],
        );
        assert_eq!(invalid.id, Some(Id::text("a")));
        assert_eq!(invalid.method.as_deref(), Some("POST"));
        let url = invalid.url.expect("the URL was readable");
        assert_eq!(url, "https://REDACTED@h/x?api_key=REDACTED&q=1");
        assert!(!invalid.message.contains("SECRET"));

        let invalid = rejects(
            r#"{"url": "http://u:SECRET_PW@h:99999/?api_key=SECRET_Q"}"#,
            &["invalid port"],
        );
        assert!(!invalid.message.contains("SECRET"), "{}", invalid.message);
        assert!(!invalid.url.expect("shown").contains("SECRET"));
        let extra = ParseOptions {
            redactor: Redactor::with_extra(["sig"]),
            ..ParseOptions::default()
        };
        let invalid = bad_with(r#"{"url": "http://h/?sig=SECRET_S", "cost": "x"}"#, &extra);
        assert_eq!(invalid.url.as_deref(), Some("http://h/?sig=REDACTED"));
    }

    #[test]
    fn required_and_wrongly_typed_urls() {
        for (line, part) in [
            ("{}", "`url` is missing"),
            (r#"{"url": null}"#, "`url` is missing"),
            (r#"{"url": 5}"#, "`url` must be a string, not a number"),
            (r#"{"url": ""}"#, "`url` is empty"),
            (
                r#"{"url": "ftp://h/"}"#,
                "unsupported scheme `ftp`: only http and https",
            ),
            (r#"{"url": "chat"}"#, "relative URL `chat` needs --base-url"),
        ] {
            rejects(line, &[part]);
        }
    }

    #[test]
    fn broken_and_odd_json() {
        for (line, part) in [
            (r#"{"url": "#, "invalid JSON: EOF while parsing"),
            (
                r#"{"url": "http://h/"} x"#,
                "invalid JSON: trailing characters",
            ),
            (
                r#"{"url": "http://h/", "url": "http://h/"}"#,
                "invalid JSON: duplicate field `url`",
            ),
            (r#"{"url": "http://h/\ud800"}"#, "`url`"),
            ("{'url': 'http://h/'}", "invalid JSON"),
        ] {
            let invalid = rejects(line, &[part]);
            assert!(invalid.id.is_none() || part == "`url`", "{line}");
        }
        // Unknown fields are ignored, whatever they hold.
        ok(r#"{"url": "http://h/", "extra": {"deep": [1, {"x": null}]}, "priority": 3}"#);
    }

    #[test]
    fn deep_nesting_is_refused_without_overflowing_the_stack() {
        let deep = 100_000;
        let balanced = format!(
            r#"{{"url": "http://h/", "body": {}{}}}"#,
            "[".repeat(deep),
            "]".repeat(deep)
        );
        let unbalanced = format!(r#"{{"url": "http://h/", "x": {}"#, "{\"a\":".repeat(deep));
        for line in [balanced, unbalanced, "{".repeat(deep)] {
            rejects(&line, &["nested more than 128 levels"]);
        }
        let fine = format!(
            r#"{{"url": "http://h/", "body": {}{}}}"#,
            "[".repeat(127),
            "]".repeat(127)
        );
        assert!(ok(&fine).body.is_some());
        // Brackets inside strings do not count.
        ok(&format!(
            r#"{{"url": "http://h/", "body_text": "{}"}}"#,
            "[{".repeat(500)
        ));
    }

    #[test]
    fn messages_name_the_file_and_its_own_line() {
        let stdin = LineOrigin {
            file: "-",
            file_line: 3,
        };
        match parse_line(b"ftp://h/", 99, &stdin, &ParseOptions::default()) {
            Some(Input::Invalid(i)) => {
                assert!(
                    i.message.starts_with("stdin:3: unsupported scheme"),
                    "{}",
                    i.message
                );
                assert_eq!(i.line, 99);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn lines_over_the_limit_are_rejected() {
        let opts = ParseOptions {
            max_line_bytes: 10,
            ..ParseOptions::default()
        };
        let invalid = bad_with("http://example.com/long", &opts);
        assert_eq!(
            invalid.message,
            "in.jsonl:7: line is longer than the 10 bytes limit (23 bytes); it was skipped"
        );
        assert_eq!(show_size(DEFAULT_MAX_LINE_BYTES), "64 MiB");
        assert_eq!(show_size(16 * 1024), "16 KiB");
        assert!(parse_with("# a long comment is still a comment", &opts).is_none());
    }

    /// Pieces that JSON-ish test lines are made of.
    fn json_piece() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec![
            "{",
            "}",
            "[",
            "]",
            ",",
            ":",
            "\"",
            "\\",
            " ",
            "\"url\"",
            "\"id\"",
            "\"custom_id\"",
            "\"method\"",
            "\"headers\"",
            "\"body\"",
            "\"body_text\"",
            "\"body_base64\"",
            "\"timeout\"",
            "\"cost\"",
            "\"http://h/\"",
            "\"chat\"",
            "\"GET\"",
            "\"X-A\"",
            "\"Host\"",
            "\"aGk=\"",
            "\"5s\"",
            "null",
            "true",
            "0",
            "-1",
            "1e400",
            "1.5",
            "18446744073709551616",
            "\"\\r\\n\"",
            "\"\\u0000\"",
            "\"\\ud800\"",
            "é",
            "\u{feff}",
        ])
    }

    fn field_value() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec![
            "null",
            "1",
            "-1",
            "0",
            "2.5",
            "1e400",
            "\"\"",
            "\"x\"",
            "\"GET\"",
            "\"get\"",
            "\"http://h/a\"",
            "\"https://u:p@h/?key=s\"",
            "\"ftp://h\"",
            "\"chat\"",
            "\"5s\"",
            "\"aGk\"",
            "[]",
            "[\"a\"]",
            "{}",
            "{\"X-A\":\"v\"}",
            "{\"Host\":\"h\"}",
            "{\"X-A\":[\"v\",1]}",
            "true",
            "\"a b\"",
            "\"\\r\"",
        ])
    }

    fn check(raw: &[u8], opts: &ParseOptions) -> Result<(), TestCaseError> {
        match parse_line(raw, 5, &ORIGIN, opts) {
            Some(Input::Invalid(i)) => {
                prop_assert!(i.message.starts_with(PREFIX), "{}", i.message);
                prop_assert_eq!(i.line, 5);
            }
            Some(Input::Request(r)) => {
                prop_assert!(matches!(r.url.scheme(), "http" | "https"));
                prop_assert!(r.url.host_str().is_some());
                prop_assert_eq!(r.line, 5);
                prop_assert!(r.cost >= 0.0 && r.cost.is_finite());
            }
            None => {}
            Some(other) => prop_assert!(false, "parse_line made {:?}", other),
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn never_panics_on_bytes(raw in prop::collection::vec(any::<u8>(), 0..200)) {
            check(&raw, &ParseOptions::default())?;
            check(&raw, &with_base("https://h/v1"))?;
        }

        #[test]
        fn never_panics_on_json_ish_text(pieces in prop::collection::vec(json_piece(), 0..30)) {
            let text = pieces.concat();
            check(text.as_bytes(), &ParseOptions::default())?;
            check(format!("{{{text}").as_bytes(), &with_base("https://h/v1"))?;
        }

        #[test]
        fn never_panics_on_request_objects(
            fields in prop::collection::vec((json_piece(), field_value()), 0..8),
        ) {
            let body: Vec<String> = fields.iter().map(|(k, v)| format!("{k}: {v}")).collect();
            let line = format!("{{{}}}", body.join(", "));
            check(line.as_bytes(), &ParseOptions::default())?;
            check(line.as_bytes(), &with_base("https://h/v1"))?;
        }
    }
}
