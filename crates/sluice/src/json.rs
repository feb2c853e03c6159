//! Small helpers over JSON text shared by the input parser, records and
//! response bodies: the kind of a value (for messages) and compaction.

use std::fmt;

use serde_json::value::RawValue;

/// The kind of a JSON value, shown in messages as "a string", "an object", ...
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum JsonKind {
    Object,
    Array,
    String,
    Boolean,
    Null,
    Number,
}

impl fmt::Display for JsonKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            JsonKind::Object => "an object",
            JsonKind::Array => "an array",
            JsonKind::String => "a string",
            JsonKind::Boolean => "a boolean",
            JsonKind::Null => "null",
            JsonKind::Number => "a number",
        })
    }
}

/// The kind of `raw`, which serde_json has already checked is valid JSON.
pub(crate) fn json_kind(raw: &RawValue) -> JsonKind {
    match raw.get().trim_start().as_bytes().first() {
        Some(b'{') => JsonKind::Object,
        Some(b'[') => JsonKind::Array,
        Some(b'"') => JsonKind::String,
        Some(b't' | b'f') => JsonKind::Boolean,
        Some(b'n') => JsonKind::Null,
        _ => JsonKind::Number,
    }
}

/// Valid JSON text without its insignificant whitespace; every other byte,
/// and so every digit of every number, is kept. Most bodies are compact
/// already and are copied as they are (one scan, no filtering).
pub(crate) fn compact_json(json: &str) -> String {
    let is_space = |b: u8| matches!(b, b' ' | b'\t' | b'\n' | b'\r');
    if !json.bytes().any(is_space) {
        return json.to_owned();
    }
    let mut strings = JsonStrings::default();
    let bytes: Vec<u8> = json
        .bytes()
        .filter(|&b| strings.inside(b) || !is_space(b))
        .collect();
    String::from_utf8(bytes).expect("removing ASCII bytes from UTF-8 text leaves UTF-8 text")
}

/// Tracks whether a byte of JSON text is part of a string literal.
#[derive(Default)]
pub(crate) struct JsonStrings {
    in_string: bool,
    escaped: bool,
}

impl JsonStrings {
    /// Feeds the next byte; true when it belongs to a string literal
    /// (its quotes included).
    pub(crate) fn inside(&mut self, b: u8) -> bool {
        if self.in_string {
            if self.escaped {
                self.escaped = false;
            } else if b == b'\\' {
                self.escaped = true;
            } else if b == b'"' {
                self.in_string = false;
            }
            true
        } else {
            self.in_string = b == b'"';
            self.in_string
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compaction_keeps_strings_and_numbers() {
        assert_eq!(
            compact_json("{ \"a b\" : [1 ,\n 2.50e3 ], \"q\\\" x\": \"\\\\ \" }"),
            "{\"a b\":[1,2.50e3],\"q\\\" x\":\"\\\\ \"}"
        );
        assert_eq!(compact_json(" \"é ü\" "), "\"é ü\"");
        assert_eq!(
            compact_json("{\"k\" : \"a\\\\\",\n \"é ü\": [1, \"ß \\\" ∂\"]}"),
            "{\"k\":\"a\\\\\",\"é ü\":[1,\"ß \\\" ∂\"]}"
        );
        assert_eq!(compact_json(r#"{"a":[1,2]}"#), r#"{"a":[1,2]}"#);
    }

    #[test]
    fn kinds_by_first_byte() {
        let kind = |s: &str| json_kind(&RawValue::from_string(s.into()).unwrap());
        assert_eq!(kind("{}"), JsonKind::Object);
        assert_eq!(kind(" [1]"), JsonKind::Array);
        assert_eq!(kind("\"x\""), JsonKind::String);
        assert_eq!(kind("false"), JsonKind::Boolean);
        assert_eq!(kind("null"), JsonKind::Null);
        assert_eq!(kind("-1.5"), JsonKind::Number);
    }
}
