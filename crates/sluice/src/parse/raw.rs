//! Small helpers over a field's unparsed JSON text (valid JSON: checked
//! when the line was split into its fields).

use std::borrow::Cow;

use crate::json::{JsonKind, JsonStrings, kind_of, opening_brackets};

use super::problem::Problem;

/// A field that is absent or `null` is not given (ids excepted: see [`read_id`]).
pub(super) fn given(raw: Option<&str>) -> Option<&str> {
    raw.filter(|r| r.trim() != "null")
}

/// The string a field holds (`field` names it in messages): borrowed from
/// the line when it holds no escape (a URL, a method), decoded otherwise.
pub(super) fn string_of<'a>(raw: &'a str, field: &'static str) -> Result<Cow<'a, str>, Problem> {
    match kind_of(raw) {
        JsonKind::String => match plain_string(raw) {
            Some(text) => Ok(Cow::Borrowed(text)),
            None => decode_string(raw)
                .map(Cow::Owned)
                .map_err(|error| Problem::BadString { field, error }),
        },
        kind => Err(Problem::NotAString { field, kind }),
    }
}

/// The text between the quotes of a JSON string without a backslash, which
/// is the string itself (valid JSON: no quote or control character
/// inside); `None` for a string with escapes.
fn plain_string(raw: &str) -> Option<&str> {
    let inner = raw.trim().strip_prefix('"')?.strip_suffix('"')?;
    memchr::memchr(b'\\', inner.as_bytes())
        .is_none()
        .then_some(inner)
}

/// A JSON string's text (an unpaired surrogate escape is an error).
pub(super) fn decode_string(raw: &str) -> Result<String, serde_json::Error> {
    serde_json::from_str(raw)
}

/// A JSON number as f64 (`1e400` is infinite, which callers refuse).
pub(super) fn number_of(raw: &str) -> Option<f64> {
    raw.trim().parse().ok()
}

/// True when brackets nest deeper than `limit` outside strings. Checked before
/// parsing so that depth is refused the same way in every field.
pub(super) fn nesting_exceeds(text: &str, limit: usize) -> bool {
    // Most lines hold far fewer brackets than the limit: one vectorised
    // count settles them without following strings byte by byte.
    if opening_brackets(text.as_bytes()) <= limit {
        return false;
    }
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

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Borrowed or decoded, a string field is what serde_json reads.
        #[test]
        fn strings_read_as_serde_json_reads_them(
            text in "(\\PC|[\\x00-\\x1f\"\\\\/])*",
            spaced in any::<bool>(),
        ) {
            let json = serde_json::to_string(&text).expect("a string serializes");
            let raw = if spaced { format!(" {json}\n") } else { json };
            let read = string_of(&raw, "url").expect("a JSON string");
            prop_assert_eq!(read.as_ref(), text.as_str());
            prop_assert_eq!(matches!(read, Cow::Borrowed(_)), !raw.contains('\\'));
        }
    }

    #[test]
    fn escaped_strings_are_decoded() {
        let read = string_of(r#""a\u00e9\/b""#, "url").expect("a JSON string");
        assert_eq!(read, "aé/b");
        assert!(matches!(
            string_of("5", "url"),
            Err(Problem::NotAString { .. })
        ));
    }
}
