//! The rest of a request line: its body (three forms), timeout and cost, and
//! [`Rest`], which gathers them with its headers.

use std::time::Duration;

use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use bytes::Bytes;
use reqwest::Method;
use reqwest::header::HeaderMap;
use url::Url;

use crate::json::{JsonKind, compact_json, kind_of};
use crate::record::Id;
use crate::redact::Redactor;
use crate::request::Request;
use crate::units::parse_duration;

use super::header_field::read_headers;
use super::object::Fields;
use super::problem::Problem;
use super::raw::{given, number_of, string_of};
use super::show::{MESSAGE_CLIP, clip};

/// Standard base64, with or without `=` padding.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The fields of a request besides its id, method and URL.
pub(super) struct Rest {
    pub(super) headers: HeaderMap,
    pub(super) body: Option<Bytes>,
    pub(super) json_body: bool,
    pub(super) timeout: Option<Duration>,
    pub(super) cost: f64,
    pub(super) cost_given: bool,
}

impl Rest {
    pub(super) fn into_request(self, id: Id, line: u64, method: Method, url: Url) -> Request {
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
            cost_given: self.cost_given,
            place: None,
            abandon: None,
        }
    }
}

pub(super) fn read_rest(
    fields: &Fields,
    redactor: &Redactor,
    compact_body: bool,
) -> Result<Rest, Problem> {
    let headers = match given(fields.headers) {
        Some(raw) => read_headers(raw, redactor)?,
        None => HeaderMap::new(),
    };
    let (body, json_body) = read_body(fields, compact_body)?;
    Ok(Rest {
        headers,
        body,
        json_body,
        timeout: given(fields.timeout).map(read_timeout).transpose()?,
        cost: given(fields.cost).map_or(Ok(1.0), read_cost)?,
        cost_given: given(fields.cost).is_some(),
    })
}

/// At most one of `body` (JSON, sent compact), `body_text`, `body_base64`.
/// `compact_body`: the `body` is known to hold no whitespace to remove.
fn read_body(fields: &Fields, compact_body: bool) -> Result<(Option<Bytes>, bool), Problem> {
    let bodies: Vec<(&'static str, &str)> = [
        ("body", fields.body),
        ("body_text", fields.body_text),
        ("body_base64", fields.body_base64),
    ]
    .into_iter()
    .filter_map(|(name, raw)| given(raw).map(|raw| (name, raw)))
    .collect();
    match bodies.as_slice() {
        [] => Ok((None, false)),
        [("body", raw)] if compact_body => Ok((Some(Bytes::copy_from_slice(raw.as_bytes())), true)),
        [("body", raw)] => Ok((Some(Bytes::from(compact_json(raw))), true)),
        [("body_text", raw)] => Ok((
            Some(Bytes::from(string_of(raw, "body_text")?.into_owned())),
            false,
        )),
        [(_, raw)] => Ok((Some(Bytes::from(read_base64(raw)?)), false)),
        [(first, _), (second, _), ..] => Err(Problem::TwoBodies { first, second }),
    }
}

fn read_base64(raw: &str) -> Result<Vec<u8>, Problem> {
    let text = string_of(raw, "body_base64")?;
    BASE64.decode(text.as_bytes()).map_err(Problem::Base64)
}

/// A duration with its unit (`"30s"`, `"500ms"`), as on the command line;
/// more than zero. A bare number is refused: `--timeout` and `timeout` follow
/// one rule.
fn read_timeout(raw: &str) -> Result<Duration, Problem> {
    let timeout = match kind_of(raw) {
        JsonKind::String => parse_duration(&string_of(raw, "timeout")?).map_err(Problem::Timeout),
        JsonKind::Number => Err(Problem::TimeoutBareNumber {
            text: raw.to_string(),
        }),
        kind => Err(Problem::TimeoutNotText { kind }),
    }?;
    if timeout.is_zero() {
        return Err(Problem::TimeoutZero);
    }
    Ok(timeout)
}

/// A finite number, at least 0.
fn read_cost(raw: &str) -> Result<f64, Problem> {
    let kind = kind_of(raw);
    if kind != JsonKind::Number {
        return Err(Problem::CostNotNumber { kind });
    }
    let text = || clip(raw, MESSAGE_CLIP);
    let cost = number_of(raw).ok_or_else(|| Problem::CostUnreadable { text: text() })?;
    if !cost.is_finite() || cost < 0.0 {
        return Err(Problem::CostOutOfRange { text: text() });
    }
    // `-0` is 0.
    Ok(cost.abs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::testing::*;

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
}
