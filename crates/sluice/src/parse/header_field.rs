//! A request line's `headers` field.

use std::fmt;

use reqwest::header::{HeaderMap, HeaderName};
use serde::Deserialize;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

use crate::headers::{self, Setter};
use crate::json::{JsonKind, json_kind, kind_of};
use crate::redact::Redactor;

use super::problem::Problem;
use super::raw::decode_string;
use super::show::{MESSAGE_CLIP, clip};

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
pub(super) fn read_headers(raw: &str, redactor: &Redactor) -> Result<HeaderMap, Problem> {
    let kind = kind_of(raw);
    if kind != JsonKind::Object {
        return Err(Problem::HeadersNotObject { kind });
    }
    let entries: Entries = serde_json::from_str(raw).map_err(Problem::HeadersJson)?;
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
) -> Result<(), Problem> {
    let header = header_name(name)?;
    let shown = clip(name, MESSAGE_CLIP);
    for text in header_texts(&shown, value)? {
        let mut value = headers::value(name, &text).map_err(Problem::Header)?;
        value.set_sensitive(redactor.is_secret_header(name));
        map.try_append(header.clone(), value)
            .map_err(|_| Problem::TooManyHeaders)?;
    }
    Ok(())
}

fn header_name(name: &str) -> Result<HeaderName, Problem> {
    if name.is_empty() {
        return Err(Problem::HeaderNameEmpty);
    }
    headers::name(name, Setter::RequestLine).map_err(Problem::Header)
}

/// The value texts of one header: a string, or a non-empty array of strings.
fn header_texts(shown: &str, value: &RawValue) -> Result<Vec<String>, Problem> {
    let unreadable = |error| Problem::HeaderJson {
        header: shown.to_string(),
        error,
    };
    match json_kind(value) {
        JsonKind::String => Ok(vec![decode_string(value.get()).map_err(unreadable)?]),
        JsonKind::Array => {
            let items: Vec<&RawValue> = serde_json::from_str(value.get()).map_err(unreadable)?;
            if items.is_empty() {
                let header = shown.to_string();
                return Err(Problem::HeaderEmptyArray { header });
            }
            items
                .into_iter()
                .map(|item| match json_kind(item) {
                    JsonKind::String => decode_string(item.get()).map_err(unreadable),
                    kind => Err(Problem::HeaderArrayNotText {
                        header: shown.to_string(),
                        kind,
                    }),
                })
                .collect()
        }
        kind => Err(Problem::HeaderNotText {
            header: shown.to_string(),
            kind,
        }),
    }
}

#[cfg(test)]
mod tests {
    use crate::parse::testing::*;
    use crate::record::Id;

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
}
