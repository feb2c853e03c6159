//! JSON request lines: their fields, the shape each `--input-format` requires,
//! the id and method, Anthropic batch lines, and the record of a rejected line.

use bytes::Bytes;
use reqwest::Method;
use serde::Deserialize;
use serde::de::Deserializer;
use serde_json::value::RawValue;
use url::Url;

use crate::config::Setting;
use crate::json::{JsonKind, compact_json, kind_of};
use crate::json_text::{self, Depth, Spacing};
use crate::parse::ParseOptions;
use crate::record::Id;
use crate::request::Input;

use super::problem::{Names, Problem};
use super::raw::{given, nesting_exceeds, string_of};
use super::rest::read_rest;
use super::show::{MESSAGE_CLIP, clip, describe_char};
use super::urls::url_field;
use super::{ANTHROPIC_MESSAGES_PATH, Bad, InputFormat, Known, Line, join_base_url};

/// The longest method accepted, in bytes.
const MAX_METHOD_BYTES: usize = 64;

/// JSON nested deeper than this is refused, at any place in the line (the
/// same depth as serde_json's own recursion limit).
const MAX_JSON_DEPTH: usize = 128;

/// The fields of a JSON request line, written once for the two ways a line
/// is split into them: [`Fields`] (each field's JSON text, unparsed) and its
/// serde form.
macro_rules! line_fields {
    ($($name:ident),* $(,)?) => {
        /// The fields of a JSON request line, each its unparsed JSON text (valid
        /// JSON). A field given as `null` is `Some("null")` here, so `"id": null`
        /// can be told from a missing id.
        #[derive(Debug, Default, PartialEq)]
        pub(super) struct Fields<'a> {
            $(pub(super) $name: Option<&'a str>,)*
        }

        /// [`Fields`] as serde_json reads them, for the lines [`split_fields`]
        /// leaves to it.
        #[derive(Deserialize)]
        struct SerdeFields<'a> {
            $(
                #[serde(borrow, default, deserialize_with = "present")]
                $name: Option<&'a RawValue>,
            )*
        }

        impl<'a> From<SerdeFields<'a>> for Fields<'a> {
            fn from(read: SerdeFields<'a>) -> Fields<'a> {
                Fields {
                    $($name: read.$name.map(RawValue::get),)*
                }
            }
        }

        impl<'a> Fields<'a> {
            /// Where the field named `key` goes; `None` for a key that names
            /// no field (ignored, as serde ignores it).
            fn slot(&mut self, key: &str) -> Option<&mut Option<&'a str>> {
                match key {
                    $(stringify!($name) => Some(&mut self.$name),)*
                    _ => None,
                }
            }
        }
    };
}

line_fields!(
    id,
    custom_id,
    method,
    url,
    headers,
    body,
    body_text,
    body_base64,
    timeout,
    cost,
    params,
);

fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(d).map(Some)
}

/// A line's fields as serde_json reads them: for the lines [`split_fields`]
/// leaves to it. Both give the same fields (a proptest holds them equal);
/// serde_json words every error.
fn serde_fields(text: &str) -> Result<Fields<'_>, serde_json::Error> {
    serde_json::from_str::<SerdeFields>(text).map(Fields::from)
}

/// The fields of a line that is one valid JSON object whose keys hold no
/// escape and name no field twice, and how deep its brackets nest: the
/// common line, split by [`json_text::members`], which skips string bodies
/// a block at a time (the body of a POST is most of its line). Any other
/// line is `None`, for serde_json to decide. With them, whether the `body`
/// field is compact JSON as it is (found on the way: sent as it is, not
/// searched again for whitespace).
fn split_fields(text: &str) -> Option<(Fields<'_>, Depth, bool)> {
    let mut fields = Fields::default();
    let mut compact_body = false;
    let depth = json_text::members(text, |key, value, spacing| {
        if let Some(slot) = fields.slot(key) {
            if slot.is_some() {
                return None;
            }
            *slot = Some(value);
            if key == "body" {
                compact_body = spacing == Spacing::Compact;
            }
        }
        Some(())
    })?;
    Some((fields, depth, compact_body))
}

pub(super) fn parse_object(text: &str, line: &Line) -> Input {
    let split = split_fields(text);
    // The split measured the depth of the line it split: counted again
    // only for a deep line, or one the split left to serde_json.
    let shallow = split
        .as_ref()
        .is_some_and(|(_, depth, _)| *depth <= Depth(MAX_JSON_DEPTH));
    if !shallow && nesting_exceeds(text, MAX_JSON_DEPTH) {
        let problem = Problem::TooDeep {
            limit: MAX_JSON_DEPTH,
        };
        return line.invalid(Known::default(), problem);
    }
    let (read, compact_body) = match split {
        Some((fields, _, compact_body)) => (Ok(fields), compact_body),
        None => (serde_fields(text), false),
    };
    let fields = match read {
        Ok(fields) => fields,
        Err(e) => return line.invalid(Known::default(), Problem::InvalidJson(e)),
    };
    if let Err(problem) = check_shape(&fields, line.opts) {
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
    let url = read_url(fields.url, line);
    let rest = read_rest(&fields, &line.opts.redactor, compact_body);
    match (id, method, url, rest) {
        (Ok(id), Ok(method), Ok(url), Ok(rest)) => {
            Input::from(rest.into_request(id, line.number, method, url))
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
fn check_shape(fields: &Fields, opts: &ParseOptions) -> Result<(), Problem> {
    let (format, names) = (opts.input_format, Names::of(opts));
    let params = given(fields.params).is_some();
    match format {
        InputFormat::Auto | InputFormat::AnthropicBatch if params => {
            match sluice_request_fields(fields) {
                Some(field) => Err(Problem::ParamsBeside { field, names }),
                None => Ok(()),
            }
        }
        InputFormat::AnthropicBatch => Err(Problem::ParamsRequired { names }),
        _ if params => Err(Problem::ParamsInFormat { format, names }),
        InputFormat::OpenAiBatch => {
            let missing = [
                ("custom_id", fields.custom_id),
                ("method", fields.method),
                ("url", fields.url),
            ]
            .into_iter()
            .find(|(_, raw)| given(*raw).is_none());
            match missing {
                Some((field, _)) => Err(Problem::OpenAiFieldMissing { field, names }),
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
            join_base_url(base, ANTHROPIC_MESSAGES_PATH).map_err(|e| Bad::unshown(Problem::Url(e)))
        }
        None => Err(Bad::unshown(Problem::AnthropicWithoutBase {
            base_url: line.opts.name(Setting::BaseUrl),
        })),
    };
    let rest = read_rest(fields, &line.opts.redactor, false).and_then(|mut rest| {
        let params = fields.params.ok_or(Problem::ParamsMissing)?;
        let kind = kind_of(params);
        if kind != JsonKind::Object {
            return Err(Problem::ParamsNotObject { kind });
        }
        rest.body = Some(Bytes::from(compact_json(params)));
        rest.json_body = true;
        Ok(rest)
    });
    match (id, url, rest) {
        (Ok(id), Ok(url), Ok(rest)) => {
            Input::from(rest.into_request(id, line.number, Method::POST, url))
        }
        (id, url, rest) => reject(line, id, Ok(Method::POST), url, rest.err()),
    }
}

/// The record of a JSON line with at least one bad field: the first problem,
/// and every field that could be read.
fn reject(
    line: &Line,
    id: Result<Id, Problem>,
    method: Result<Method, Bad>,
    url: Result<Url, Bad>,
    rest: Option<Problem>,
) -> Input {
    let (id, id_problem) = match id {
        Ok(id) => (Some(id), None),
        Err(problem) => (None, Some(problem)),
    };
    let (method, method_problem) = match method {
        Ok(m) => (Some(m.to_string()), None),
        Err(bad) => (bad.shown, Some(bad.problem)),
    };
    let (url, url_problem) = match url {
        Ok(u) => (Some(line.opts.redactor.url(&u)), None),
        Err(bad) => (bad.shown, Some(bad.problem)),
    };
    let problem = (id_problem.or(method_problem).or(url_problem).or(rest))
        .expect("a line is rejected only when one of its fields is bad");
    line.invalid(Known { id, method, url }, problem)
}

/// `id`, else `custom_id`, else the line number. A `null` id is refused
/// rather than replaced by the line number, which would silently change
/// which record a resumed run matches.
fn read_id(fields: &Fields, line: u64) -> Result<Id, Problem> {
    let id = fields.id.map(|raw| id_from(raw, "id")).transpose()?;
    let custom = fields
        .custom_id
        .map(|raw| id_from(raw, "custom_id"))
        .transpose()?;
    match (id, custom) {
        (Some(id), Some(custom)) if id.as_str() != custom.as_str() => Err(Problem::IdsDiffer {
            id: clip(id.as_str(), MESSAGE_CLIP),
            custom: clip(custom.as_str(), MESSAGE_CLIP),
        }),
        (Some(id), _) => Ok(id),
        (None, Some(custom)) => Ok(custom),
        (None, None) => Ok(Id::line(line)),
    }
}

fn id_from(raw: &str, field: &'static str) -> Result<Id, Problem> {
    Id::from_json_text(raw).map_err(|error| Problem::Id { field, error })
}

fn read_method(raw: Option<&str>) -> Result<Method, Bad> {
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
fn method_from(text: &str) -> Result<Method, Problem> {
    if text.is_empty() {
        return Err(Problem::MethodEmpty);
    }
    if text.len() > MAX_METHOD_BYTES {
        return Err(Problem::MethodTooLong {
            limit: MAX_METHOD_BYTES,
        });
    }
    if let Some(c) = text.chars().find(|&c| !is_tchar(c)) {
        return Err(Problem::MethodChar {
            method: clip(text, MESSAGE_CLIP),
            what: describe_char(c),
        });
    }
    let upper = text.to_ascii_uppercase();
    if upper == "CONNECT" {
        return Err(Problem::MethodConnect);
    }
    Method::from_bytes(upper.as_bytes()).map_err(|error| Problem::MethodInvalid {
        method: upper,
        error,
    })
}

/// RFC 9110 `tchar`: the characters of a method or header name.
fn is_tchar(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c)
}

fn read_url(raw: Option<&str>, line: &Line) -> Result<Url, Bad> {
    let Some(raw) = given(raw) else {
        return Err(Bad::unshown(Problem::UrlMissing));
    };
    let text = string_of(raw, "url").map_err(Bad::unshown)?;
    url_field(&text, line)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::ParseOptions;
    use crate::parse::testing::*;
    use crate::redact::Redactor;

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
        assert!(bad.message.contains("add base_url"), "{}", bad.message);
        // A front end's own names for the settings, and no other.
        let cli = ParseOptions {
            setting_names: |s| match s {
                Setting::BaseUrl => "--the-base",
                Setting::InputFormat => "--the-format",
                _ => s.field(),
            },
            ..ParseOptions::default()
        };
        let bad = bad_with(r#"{"custom_id": "q-2", "params": {}}"#, &cli);
        assert!(
            bad.message
                .contains("under --the-base, and none is given: add --the-base")
        );
        let strict = ParseOptions {
            input_format: InputFormat::OpenAiBatch,
            ..cli.clone()
        };
        let bad = bad_with(r#"{"custom_id": "q-2", "params": {}}"#, &strict);
        assert!(
            bad.message
                .contains("use --the-format auto or anthropic-batch"),
            "{}",
            bad.message
        );
        let names = ["base_url", "input_format"];
        assert!(
            !names.iter().any(|n| bad.message.contains(n)),
            "{}",
            bad.message
        );
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
        // Many brackets side by side are not deep (more than the limit in
        // all: the count that settles most lines cannot decide this one).
        ok(&format!(
            r#"{{"url": "http://h/", "body": [{}[]]}}"#,
            "{},[],".repeat(200)
        ));
        // Brackets inside strings do not count.
        ok(&format!(
            r#"{{"url": "http://h/", "body_text": "{}"}}"#,
            "[{".repeat(500)
        ));
    }
}

#[cfg(test)]
#[path = "fields_tests.rs"]
mod fields_tests;
