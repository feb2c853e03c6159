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

use url::Url;

use crate::config::Setting;
use crate::record::Id;
use crate::redact::Redactor;
use crate::request::{Input, InvalidLine};

mod header_field;
mod object;
mod problem;
mod raw;
mod rest;
mod show;
#[cfg(test)]
mod testing;
mod urls;

pub use show::for_message;
pub(crate) use show::{MESSAGE_CLIP, clip};
pub use urls::{UrlCache, UrlError, check_base_url, join_base_url};

use object::parse_object;
use problem::Problem;
use show::show_size;
use urls::parse_url_line;

/// The longest input line accepted unless the caller says otherwise: 64 MiB.
pub const DEFAULT_MAX_LINE_BYTES: usize = 64 * 1024 * 1024;

/// The UTF-8 byte order mark, ignored at the start of a line (the source
/// also skips it at the start of each file).
pub(crate) const BOM: &[u8] = b"\xEF\xBB\xBF";

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
    /// How messages name a [`Setting`] (`base_url`, `input_format`).
    /// Default [`Setting::field`]; the CLI names its options.
    pub setting_names: fn(Setting) -> &'static str,
}

impl ParseOptions {
    /// What messages call `setting`.
    pub fn name(&self, setting: Setting) -> &'static str {
        (self.setting_names)(setting)
    }
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
            setting_names: Setting::field,
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

impl LineOrigin<'_> {
    /// The file as messages name it.
    fn shown_file(&self) -> &str {
        if self.file == "-" { "stdin" } else { self.file }
    }

    /// The `Display` text, put together without the formatting machinery:
    /// every request carries it (`Request::place`).
    fn place(&self) -> String {
        let (file, mut digits) = (self.shown_file(), itoa::Buffer::new());
        let line = digits.format(self.file_line);
        let mut place = String::with_capacity(file.len() + 1 + line.len());
        place.push_str(file);
        place.push(':');
        place.push_str(line);
        place
    }
}

impl fmt::Display for LineOrigin<'_> {
    /// `file:line`, the prefix of every [`InvalidLine`] message.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.shown_file(), self.file_line)
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
    parse_line_cached(raw, line, origin, opts, &UrlCache::default())
}

/// [`parse_line`] for a stream of lines: `urls` keeps the last origin's
/// parse, so lines to the same origin parse only their paths (the result
/// is the same).
pub fn parse_line_cached(
    raw: &[u8],
    line: u64,
    origin: &LineOrigin,
    opts: &ParseOptions,
    urls: &UrlCache,
) -> Option<Input> {
    let trimmed = trim_line(raw);
    if trimmed.is_empty() || trimmed[0] == b'#' {
        return None;
    }
    let ctx = Line {
        number: line,
        origin,
        opts,
        urls,
    };
    if raw.len() > opts.max_line_bytes {
        return Some(Input::from(line_too_long(
            line,
            origin,
            opts.max_line_bytes,
            raw.len() as u64,
        )));
    }
    let text = match crate::utf8::text(trimmed) {
        Ok(text) => text,
        Err(e) => {
            let problem = Problem::NotUtf8 {
                offset: e.valid_up_to(),
            };
            return Some(ctx.invalid(Known::default(), problem));
        }
    };
    let input = if text.starts_with('{') {
        parse_object(text, &ctx)
    } else {
        parse_url_line(text, &ctx)
    };
    Some(match input {
        Input::Request(mut req) => {
            req.place = Some(origin.place());
            Input::Request(req)
        }
        other => other,
    })
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
    urls: &'a UrlCache,
}

impl Line<'_> {
    fn invalid(&self, known: Known, problem: Problem) -> Input {
        Input::from(InvalidLine {
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
    problem: Problem,
    shown: Option<String>,
}

impl Bad {
    /// A field that cannot be shown (missing, or of the wrong type).
    fn unshown(problem: Problem) -> Bad {
        Bad {
            problem,
            shown: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::testing::*;
    use super::*;

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
    fn a_requests_place_is_its_origin_shown() {
        for file in ["-", "urls.txt", "dir/é.jsonl"] {
            let origin = LineOrigin {
                file,
                file_line: 1234,
            };
            assert_eq!(origin.place(), origin.to_string());
        }
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
