//! Small helpers over JSON text shared by the input parser, records and
//! response bodies: the kind of a value (for messages), compaction, and
//! the pieces a record's line is written with (strings, integers and
//! floats appended to a byte buffer, exactly as serde_json writes them).

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
    kind_of(raw.get())
}

/// The kind of `json`, text already checked to be valid JSON.
pub(crate) fn kind_of(json: &str) -> JsonKind {
    match json.trim_start().as_bytes().first() {
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
    if !may_hold_space(json.as_bytes()) {
        return json.to_owned();
    }
    let is_space = |b: u8| matches!(b, b' ' | b'\t' | b'\n' | b'\r');
    let mut strings = JsonStrings::default();
    let bytes: Vec<u8> = json
        .bytes()
        .filter(|&b| strings.inside(b) || !is_space(b))
        .collect();
    String::from_utf8(bytes).expect("removing ASCII bytes from UTF-8 text leaves UTF-8 text")
}

/// False only when `bytes` hold no byte up to a space (JSON's whitespace
/// is four of those), so the text needs no compaction. It looks at every
/// byte without branching, a block at a time, which the compiler turns
/// into vector instructions: a 4 KiB body costs a few hundred instructions,
/// where a byte-by-byte search cost six per byte.
pub(crate) fn may_hold_space(bytes: &[u8]) -> bool {
    bytes
        .chunks(64)
        .any(|block| block.iter().fold(false, |seen, &b| seen | (b <= b' ')))
}

/// How many `[` and `{` bytes `bytes` hold, strings included: an upper
/// bound of the nesting depth, counted without branching (see
/// [`may_hold_space`]). `[` is `{` without the 0x20 bit.
pub(crate) fn opening_brackets(bytes: &[u8]) -> usize {
    bytes
        .chunks(128)
        .map(|block| {
            let n = block
                .iter()
                .fold(0u8, |n, &b| n + u8::from(b | 0x20 == b'{'));
            usize::from(n)
        })
        .sum()
}

/// Appends `text` as a JSON string. Text that needs no escape (the common
/// case: URLs, methods, ids) is copied in one go; any other goes through
/// serde_json, so every byte is the same as serde_json's.
pub(crate) fn push_str(out: &mut Vec<u8>, text: &str) {
    // A block at a time without branching, like `may_hold_space`.
    let plain = !text.as_bytes().chunks(32).any(|block| {
        block.iter().fold(false, |seen, &b| {
            seen | (b < 0x20) | (b == b'"') | (b == b'\\')
        })
    });
    if plain {
        out.reserve(text.len() + 2);
        out.push(b'"');
        out.extend_from_slice(text.as_bytes());
        out.push(b'"');
    } else {
        // Writing a string into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, text);
    }
}

/// Appends an optional string: `null` when there is none.
pub(crate) fn push_opt_str(out: &mut Vec<u8>, text: Option<&str>) {
    match text {
        Some(text) => push_str(out, text),
        None => out.extend_from_slice(b"null"),
    }
}

/// Appends an unsigned integer.
pub(crate) fn push_u64(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// Appends a float as serde_json writes an `f64`: the shortest digits that
/// read back the same (zmij, serde_json's own formatter), `null` when it is not finite.
pub(crate) fn push_f64(out: &mut Vec<u8>, x: f64) {
    if x.to_bits() == 0 {
        // Most of a record's waits and its first attempt's start are zero:
        // written at once, without the formatter's buffer (-0.0 is not
        // this, and is formatted).
        out.extend_from_slice(b"0.0");
        return;
    }
    // A record's times are whole microseconds as milliseconds: written
    // from the integer, where the formatter cost about 170 instructions
    // each, three a record. (Rounded by a cast: `f64::round` is a call.)
    let micros = (x * 1000.0 + 0.5) as u64;
    if (1..MILLIS_MICROS_BELOW).contains(&micros) && micros as f64 / 1000.0 == x {
        // `micros` is below 2^53, so `micros as f64 / 1000.0` is the float
        // nearest the decimal `micros / 1000`, and it is `x`.
        push_millis(out, micros);
    } else if x.is_finite() {
        out.extend_from_slice(zmij::Buffer::new().format_finite(x).as_bytes());
    } else {
        out.extend_from_slice(b"null");
    }
}

/// Times of at least this many microseconds are formatted as any float.
/// Below it (about 31 years) a float's spacing is under a tenth of a
/// microsecond, so no decimal with three or fewer fraction digits other
/// than `micros / 1000` reads back as the same float: those digits, their
/// trailing zeros dropped, are the shortest that do, which is what
/// serde_json writes (in fixed notation, as for every value from 1e-5 to
/// 1e16).
const MILLIS_MICROS_BELOW: u64 = 1_000_000_000_000_000;

/// Appends `micros` microseconds as milliseconds, as serde_json writes the
/// float `micros / 1000` (`1.5`, `126.62`, `3.0`): the digits of the
/// milliseconds, a point, then those of the microseconds without their
/// trailing zeros (at least one digit). Placed in a buffer from the right
/// and appended at once. Call only below [`MILLIS_MICROS_BELOW`] and above
/// zero (zero is `0.0`, written apart).
fn push_millis(out: &mut Vec<u8>, micros: u64) {
    let mut buf = [b'0'; 20];
    let (mut whole, frac) = (micros / 1000, micros % 1000);
    // The fraction's digits, then its trailing zeros dropped (one kept).
    let digits = [frac / 100, frac / 10 % 10, frac % 10];
    buf[16] = b'.';
    for (i, d) in digits.into_iter().enumerate() {
        buf[17 + i] = b'0' + d as u8;
    }
    let end = match frac {
        _ if frac % 100 == 0 => 18,
        _ if frac % 10 == 0 => 19,
        _ => 20,
    };
    // The whole milliseconds (below 10^12: at most 12 digits), from the right.
    let mut start = 16;
    loop {
        start -= 1;
        buf[start] = b'0' + (whole % 10) as u8;
        whole /= 10;
        if whole == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[start..end]);
}

/// Appends a duration as milliseconds with microseconds, as [`push_f64`]
/// writes [`crate::record::duration_ms`]'s float, without making it.
pub(crate) fn push_duration_ms(out: &mut Vec<u8>, d: std::time::Duration) {
    let micros = (d.as_secs().checked_mul(1_000_000))
        .and_then(|m| m.checked_add(u64::from(d.subsec_micros())));
    match micros {
        Some(micros) if (1..MILLIS_MICROS_BELOW).contains(&micros) => {
            push_millis(out, micros);
        }
        _ => push_f64(out, crate::record::duration_ms(d)),
    }
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
    fn block_scans_agree_with_a_byte_by_byte_look() {
        let mut text: Vec<u8> = b"{\"data\":\"".to_vec();
        text.extend(std::iter::repeat_n(b'y', 300));
        text.extend_from_slice(b"\"}");
        for at in [
            None,
            Some(0),
            Some(63),
            Some(64),
            Some(200),
            Some(text.len() - 1),
        ] {
            for put in [b' ', b'\t', b'\n', b'\r', b'[', b'{', 0x1f, b'!', 0x7f] {
                let mut t = text.clone();
                if let Some(i) = at {
                    t[i] = put;
                }
                let spaces = t.iter().any(|&b| b <= b' ');
                assert_eq!(may_hold_space(&t), spaces, "{at:?} {put}");
                let brackets = t.iter().filter(|&&b| b == b'[' || b == b'{').count();
                assert_eq!(opening_brackets(&t), brackets, "{at:?} {put}");
            }
        }
        assert_eq!(opening_brackets(&[b'['; 1000]), 1000);
        assert!(!may_hold_space(b""));
    }

    #[test]
    fn pieces_are_written_as_serde_json_writes_them() {
        for text in [
            "",
            "http://h/a?b=1",
            "q\"uote",
            "back\\slash",
            "tab\t",
            "\u{1}\u{1f}",
            "é ∂ \u{7f}",
            // Past the first block of the scan, and at a block's end.
            "a long text of forty bytes or more: \"quoted\"",
            "0123456789012345678901234567890\\",
            "0123456789012345678901234567890123456789\n",
        ] {
            let mut out = Vec::new();
            push_str(&mut out, text);
            assert_eq!(out, serde_json::to_vec(text).unwrap(), "{text:?}");
        }
        for x in [
            0.0,
            -0.0,
            1.5,
            0.001,
            123_456.789,
            1e21,
            1e-7,
            f64::NAN,
            f64::INFINITY,
        ] {
            let mut out = Vec::new();
            push_f64(&mut out, x);
            assert_eq!(out, serde_json::to_vec(&x).unwrap(), "{x}");
        }
        let mut out = Vec::new();
        push_u64(&mut out, u64::MAX);
        push_opt_str(&mut out, None);
        assert_eq!(out, b"18446744073709551615null");
    }

    /// Times in whole microseconds, the common case, are written from the
    /// integer: every one is as serde_json writes the float, around each
    /// power of ten and at the bound where the float formatter takes over.
    #[test]
    fn milliseconds_are_written_as_serde_json_writes_them() {
        let serde = |x: f64| serde_json::to_vec(&x).unwrap();
        let mut micros: Vec<u64> = (0..=20_000).collect();
        for p in 3..=16 {
            let p = 10u64.pow(p);
            micros.extend((p.saturating_sub(2_000)..p + 2_000).step_by(7));
        }
        let mut rng = fastrand::Rng::with_seed(7);
        micros.extend((0..20_000).map(|_| rng.u64(..10u64.pow(16))));
        micros.extend((0..2_000).map(|_| rng.u64(..)));
        for n in micros {
            let x = n as f64 / 1000.0;
            let mut out = Vec::new();
            push_f64(&mut out, x);
            assert_eq!(out, serde(x), "{n} us");
            let d = std::time::Duration::from_micros(n);
            let mut out = Vec::new();
            push_duration_ms(&mut out, d);
            assert_eq!(out, serde(crate::record::duration_ms(d)), "{n} us");
        }
        // Not whole microseconds, or not milliseconds at all.
        for x in [0.0005, 1.0 / 3.0, 0.1 + 0.2, 1e-6, 2.5e-5, 123.4567, 1e300] {
            let mut out = Vec::new();
            push_f64(&mut out, x);
            assert_eq!(out, serde(x), "{x}");
        }
        let mut out = Vec::new();
        push_duration_ms(&mut out, std::time::Duration::MAX);
        assert_eq!(
            out,
            serde(crate::record::duration_ms(std::time::Duration::MAX))
        );
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
