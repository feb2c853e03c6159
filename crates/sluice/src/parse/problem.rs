//! What is wrong with a rejected line: one variant per rule, with the
//! pieces its message needs. The messages are the record's `message` (after
//! `file:line: `), so they never hold a secret: URLs are redacted and clipped
//! before they get here, and header values never do.

use crate::headers::HeaderError;
use crate::json::JsonKind;
use crate::record::IdError;
use crate::units::UnitError;

use super::urls::UrlError;
use super::{ANTHROPIC_MESSAGES_PATH, InputFormat};

/// What an Anthropic batch line looks like, for messages; the name of the
/// base URL's setting follows.
const ANTHROPIC: &str = "an anthropic-batch line is {\"custom_id\": ..., \"params\": {...}}, sent as a POST of params to /v1/messages under";
/// What an OpenAI batch line looks like, for messages.
const OPENAI: &str = "an openai-batch line is {\"custom_id\", \"method\", \"url\", \"body\"}";

/// Why a line is rejected. `field` names a request line's field (`url`,
/// `timeout`, ...); `url`, `method` and `header` are shown redacted and clipped;
/// `base_url` and `input_format` are what the caller calls those settings
/// ([`ParseOptions::name`](super::ParseOptions::name)).
#[derive(Debug, thiserror::Error)]
pub(crate) enum Problem {
    // ---- the line as a whole
    #[error("line is not valid UTF-8 (bad byte at offset {offset}): save the input as UTF-8")]
    NotUtf8 { offset: usize },
    #[error(
        "line is JSON but not an object: write a request as a JSON object `{{...}}` or as a plain URL"
    )]
    JsonNotObject,
    #[error("JSON is nested more than {limit} levels deep")]
    TooDeep { limit: usize },
    #[error("invalid JSON: {0}")]
    InvalidJson(serde_json::Error),

    // ---- a field's JSON type
    #[error("`{field}` must be a string, not {kind}")]
    NotAString { field: &'static str, kind: JsonKind },
    #[error("`{field}`: {error}")]
    BadString {
        field: &'static str,
        error: serde_json::Error,
    },

    // ---- url
    #[error("`url` is missing: every request line needs one")]
    UrlMissing,
    #[error("`url` is empty")]
    UrlEmpty,
    #[error("URL `{url}` contains {what}: percent-encode it (a space is %20) or remove it")]
    UrlChar { url: String, what: String },
    #[error("URL `{url}` is not valid: {error}")]
    UrlInvalid { url: String, error: url::ParseError },
    #[error("URL `{url}` has no scheme: write it with http:// or https://")]
    UrlNoScheme { url: String },
    #[error("relative URL `{url}` needs {base_url} (or write an absolute http:// or https:// URL)")]
    RelativeWithoutBase { url: String, base_url: &'static str },
    #[error("relative URL `{url}`: {error}")]
    RelativeJoin { url: String, error: UrlError },
    #[error("{0}")]
    Url(UrlError),

    // ---- id and method
    #[error("`{field}` {error}")]
    Id { field: &'static str, error: IdError },
    #[error(
        "`id` ({id}) and `custom_id` ({custom}) differ: give one of them, or the same value in both"
    )]
    IdsDiffer { id: String, custom: String },
    #[error("`method` is empty: give an HTTP method such as GET or POST")]
    MethodEmpty,
    #[error("`method` is longer than {limit} bytes")]
    MethodTooLong { limit: usize },
    #[error("`method` `{method}` contains {what}: a method is letters, digits and !#$%&'*+-.^_`|~")]
    MethodChar { method: String, what: String },
    #[error("`method` CONNECT is not supported: sluice sends requests, it does not open tunnels")]
    MethodConnect,
    #[error("`method` `{method}` is not valid: {error}")]
    MethodInvalid {
        method: String,
        error: http::method::InvalidMethod,
    },

    // ---- the shape of each input format
    #[error(
        "`params` and `{field}` are both set, so the line is neither kind: {ANTHROPIC} {}; a sluice line has `url` and no `params`",
        names.base_url
    )]
    ParamsBeside { field: &'static str, names: Names },
    #[error(
        "`params` is missing ({} anthropic-batch): {ANTHROPIC} {}",
        names.input_format,
        names.base_url
    )]
    ParamsRequired { names: Names },
    #[error(
        "`params` is an anthropic-batch field, but the input format is {}: use {} auto or anthropic-batch, or give `url` and `body`",
        format.as_str(),
        names.input_format
    )]
    ParamsInFormat { format: InputFormat, names: Names },
    #[error("`{field}` is missing ({} openai-batch): {OPENAI}", names.input_format)]
    OpenAiFieldMissing { field: &'static str, names: Names },
    #[error(
        "an anthropic-batch line is sent to {ANTHROPIC_MESSAGES_PATH} under {base_url}, and none is given: add {base_url} (e.g. https://api.anthropic.com)"
    )]
    AnthropicWithoutBase { base_url: &'static str },
    #[error("`params` is missing")]
    ParamsMissing,
    #[error("`params` must be an object (the Messages API request body), not {kind}")]
    ParamsNotObject { kind: JsonKind },

    // ---- headers
    #[error("`headers` must be an object of name → value, not {kind}")]
    HeadersNotObject { kind: JsonKind },
    #[error("`headers`: {0}")]
    HeadersJson(serde_json::Error),
    #[error("`headers` has too many entries")]
    TooManyHeaders,
    #[error("a header name in `headers` is empty")]
    HeaderNameEmpty,
    #[error("{0}")]
    Header(HeaderError),
    #[error("header `{header}` must be a string or an array of strings, not {kind}")]
    HeaderNotText { header: String, kind: JsonKind },
    #[error(
        "header `{header}` must be a string or an array of strings, not an array holding {kind}"
    )]
    HeaderArrayNotText { header: String, kind: JsonKind },
    #[error("header `{header}`: {error}")]
    HeaderJson {
        header: String,
        error: serde_json::Error,
    },
    #[error("header `{header}` is an empty array: give at least one value")]
    HeaderEmptyArray { header: String },

    // ---- body, timeout, cost
    #[error(
        "`{first}` and `{second}` are both set: give at most one of body, body_text, body_base64"
    )]
    TwoBodies {
        first: &'static str,
        second: &'static str,
    },
    #[error("`body_base64` is not valid standard base64 (A-Z a-z 0-9 + /, padding optional): {0}")]
    Base64(base64::DecodeError),
    #[error(
        "`timeout` is a bare number ({text}): write it as a string with a unit, \"{text}ms\" or \"{text}s\""
    )]
    TimeoutBareNumber { text: String },
    #[error("`timeout` must be a duration with a unit such as \"30s\" or \"500ms\", not {kind}")]
    TimeoutNotText { kind: JsonKind },
    #[error("`timeout` {0}")]
    Timeout(UnitError),
    #[error("`timeout` must be more than zero")]
    TimeoutZero,
    #[error("`cost` must be a number, not {kind}")]
    CostNotNumber { kind: JsonKind },
    #[error("`cost` is not a number: {text}")]
    CostUnreadable { text: String },
    #[error("`cost` must be a finite number of at least 0, not {text}")]
    CostOutOfRange { text: String },
}

/// What the caller calls the settings a line's shape depends on.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Names {
    pub(crate) base_url: &'static str,
    pub(crate) input_format: &'static str,
}

impl Names {
    /// The names `opts` gives.
    pub(crate) fn of(opts: &super::ParseOptions) -> Names {
        use crate::config::Setting;
        Names {
            base_url: opts.name(Setting::BaseUrl),
            input_format: opts.name(Setting::InputFormat),
        }
    }
}
