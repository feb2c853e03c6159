//! Small helpers over a field's unparsed JSON text (valid JSON: checked
//! when the line was split into its fields).

use crate::json::{JsonKind, JsonStrings, kind_of, opening_brackets};

use super::problem::Problem;

/// A field that is absent or `null` is not given (ids excepted: see [`read_id`]).
pub(super) fn given(raw: Option<&str>) -> Option<&str> {
    raw.filter(|r| r.trim() != "null")
}

/// The string a field holds (`field` names it in messages).
pub(super) fn string_of(raw: &str, field: &'static str) -> Result<String, Problem> {
    match kind_of(raw) {
        JsonKind::String => decode_string(raw).map_err(|error| Problem::BadString { field, error }),
        kind => Err(Problem::NotAString { field, kind }),
    }
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
