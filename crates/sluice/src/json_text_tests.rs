//! `is_valid` against serde_json's own verdict: edge cases, then random
//! JSON text and random damage done to it.

use proptest::prelude::*;
use serde_json::value::RawValue;

use super::*;

/// serde_json's verdict: the one `is_valid` must give.
fn serde_accepts(bytes: &[u8]) -> bool {
    serde_json::from_slice::<&RawValue>(bytes).is_ok()
}

fn is_valid(text: &str) -> bool {
    check(text).is_some()
}

/// Ours on bytes: UTF-8 first (as `str`), then the grammar.
fn accepts(bytes: &[u8]) -> bool {
    std::str::from_utf8(bytes).is_ok_and(is_valid)
}

fn nested(depth: usize, open: &str, inner: &str, close: &str) -> String {
    format!("{}{inner}{}", open.repeat(depth), close.repeat(depth))
}

#[test]
fn edge_cases_are_decided_as_serde_json_decides_them() {
    let long = "x".repeat(40);
    let cases: Vec<(String, bool)> = [
        ("{}", true),
        ("[]", true),
        (" \t\r\n{ } \n", true),
        ("\"\"", true),
        ("0", true),
        ("-0", true),
        ("-0.0e-0", true),
        ("1E+9", true),
        ("12345678901234567890123456789", true),
        ("true", true),
        ("null", true),
        ("[1,[2,{\"a\":[]}],{}]", true),
        ("{\"a\":1,\"a\":2}", true),
        ("\"\\ud800\"", true),
        ("\"\\udc00\\ud800x\"", true),
        ("\"\\uABcd\\/\\b\\f\\n\\r\\t\\\"\\\\\"", true),
        ("\"é ∂ \u{7f} \u{10ffff}\"", true),
        ("", false),
        (" ", false),
        ("{", false),
        ("[1,]", false),
        ("{\"a\":1,}", false),
        ("{,}", false),
        ("[,1]", false),
        ("{\"a\" 1}", false),
        ("{1:2}", false),
        ("{\"a\":}", false),
        ("[1 2]", false),
        ("1 2", false),
        ("{}x", false),
        ("{}}", false),
        ("[}", false),
        ("{]", false),
        ("01", false),
        ("-01", false),
        ("-", false),
        ("1.", false),
        (".5", false),
        ("1e", false),
        ("1e+", false),
        ("+1", false),
        ("0x1", false),
        ("NaN", false),
        ("tru", false),
        ("nul", false),
        ("truex", false),
        ("\"\\u12\"", false),
        ("\"\\u12g4\"", false),
        ("\"\\x\"", false),
        ("\"\\", false),
        ("\"abc", false),
        ("\"a\tb\"", false),
        ("\"a\u{0}b\"", false),
        ("\"a\u{1f}b\"", false),
        ("\u{feff}{}", false),
        ("{}\u{0}", false),
        ("{} \u{0c}", false),
    ]
    .into_iter()
    .map(|(text, ok)| (text.to_string(), ok))
    .chain([
        // Strings past the first block of the scan, a special byte at and
        // around its edges, and in the overlapping last step.
        (format!("\"{long}\""), true),
        (format!("[\"{long}\",\"{long}\\n{long}\"]"), true),
        (format!("\"{}\\\"\"", "y".repeat(15)), true),
        (format!("\"{}\\\"\"", "y".repeat(16)), true),
        (format!("\"{}\u{1}\"", "y".repeat(31)), false),
        (
            format!("\"{}\u{1}{}\"", "y".repeat(17), "z".repeat(3)),
            false,
        ),
        (format!("\"{}", "y".repeat(40)), false),
        (
            format!("\"{}\u{1}{}\"", "y".repeat(63), "z".repeat(70)),
            false,
        ),
        (format!("\"{}\\n{}\"", "y".repeat(64), "z".repeat(70)), true),
        (
            format!("[\"{}\",\"{}\"]", "y".repeat(130), "z".repeat(65)),
            true,
        ),
        // Deeper than serde_json's recursion limit: a value it only checks
        // has none.
        (nested(200, "[", "", "]"), true),
        (nested(5_000, "{\"k\":[", "1", "]}"), true),
        (nested(70, "[", "", "]") + "]", false),
        (format!("{}{}", "[".repeat(70), "}".repeat(70)), false),
        (
            format!("{}1{}]", "[{\"a\":".repeat(40), "}]".repeat(40)),
            false,
        ),
        (nested(100_000, "[", "", "]"), true),
    ])
    .collect();
    for (text, ok) in cases {
        let shown = text.chars().take(80).collect::<String>();
        assert_eq!(
            serde_accepts(text.as_bytes()),
            ok,
            "serde_json on {shown:?}"
        );
        assert_eq!(is_valid(&text), ok, "{shown:?}");
        assert_eq!(
            JsonText::from_bytes(text.as_bytes()).is_some(),
            ok,
            "{shown:?}"
        );
    }
}

#[test]
fn invalid_utf8_is_refused_as_serde_json_refuses_it() {
    for bytes in [
        &b"\"\xff\""[..],
        b"\"\xc0\x80\"",
        b"\"\x80\"",
        b"\"\xed\xa0\x80\"",
        b"[\"a\",\"\xe2\x82\"]",
        b"\xff",
    ] {
        assert!(!serde_accepts(bytes), "{bytes:?}");
        assert!(!accepts(bytes), "{bytes:?}");
        assert_eq!(JsonText::from_bytes(bytes), None, "{bytes:?}");
    }
}

#[test]
fn json_text_is_compact_and_written_raw() {
    let text = JsonText::parse("{ \"a\" : [1.50, \"x y\"] }\n").expect("valid");
    assert_eq!(text.get(), "{\"a\":[1.50,\"x y\"]}");
    assert_eq!(
        serde_json::to_string(&text).expect("serializes"),
        "{\"a\":[1.50,\"x y\"]}"
    );
    assert_eq!(JsonText::parse("[1 2]"), None);
    assert_eq!(
        format!("{text:?}"),
        "JsonText(\"{\\\"a\\\":[1.50,\\\"x y\\\"]}\")"
    );
}

/// The first byte from `at` that stops a run, byte by byte.
fn first_stop<const HIGH: bool>(bytes: &[u8], at: usize) -> usize {
    (at..bytes.len())
        .find(|&i| stops::<HIGH>(bytes[i]))
        .unwrap_or(bytes.len())
}

/// The run's end by every way of finding it, each as a byte-by-byte look
/// finds it.
fn run_ends_agree<const HIGH: bool>(bytes: &[u8], at: usize) -> Result<(), TestCaseError> {
    let wanted = first_stop::<HIGH>(bytes, at);
    prop_assert_eq!(plain_run_end::<HIGH>(bytes, at), wanted);
    prop_assert_eq!(
        plain_run_end_by::<HIGH>(bytes, at, stops_in::<HIGH>),
        wanted
    );
    prop_assert_eq!(
        plain_run_end_by::<HIGH>(bytes, at, stops_by_words::<HIGH>),
        wanted
    );
    for block in bytes.chunks_exact(STEP) {
        let block: &[u8; STEP] = block.try_into().expect("a whole step");
        let by_bytes = (0..STEP).fold(0u64, |bits, i| {
            bits | u64::from(stops::<HIGH>(block[i])) << i
        });
        prop_assert_eq!(stops_in::<HIGH>(block), by_bytes);
        prop_assert_eq!(stops_by_words::<HIGH>(block), by_bytes);
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2, checked just above.
            prop_assert_eq!(unsafe { avx2::stops_in::<HIGH>(block) }, by_bytes);
        }
    }
    Ok(())
}

/// Bytes that are special or next to special in their encodings: the
/// three special kinds, their neighbours, and the edges of the ranges.
fn tricky_byte() -> impl Strategy<Value = u8> {
    prop_oneof![
        Just(b'"'),
        Just(b'\\'),
        Just(0x00),
        Just(0x1f),
        Just(0x20),
        Just(0x21),
        Just(0x23),
        Just(0x5b),
        Just(0x5d),
        Just(0x7f),
        Just(0x80),
        Just(0x9f),
        Just(0xa2),
        Just(0xdc),
        Just(0xff),
        Just(b'y'),
        any::<u8>(),
    ]
}

/// A JSON string literal with escapes (lone surrogates among them), text
/// outside ASCII, and runs long enough to cross the scan's blocks.
fn string_literal() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        "[a-z ]{0,40}",
        Just("\\\"".to_string()),
        Just("\\\\".to_string()),
        Just("\\/\\b\\f\\n\\r\\t".to_string()),
        Just("\\ud83d\\ude00".to_string()),
        Just("\\ud800".to_string()),
        Just("\\uDFFF".to_string()),
        Just("é∂€😀".to_string()),
        Just("\u{7f}".to_string()),
    ];
    prop::collection::vec(piece, 0..6).prop_map(|p| format!("\"{}\"", p.concat()))
}

fn number() -> impl Strategy<Value = String> {
    "-?(0|[1-9][0-9]{0,20})(\\.[0-9]{1,5})?([eE][+-]?[0-9]{1,3})?"
}

fn whitespace() -> impl Strategy<Value = String> {
    "[ \t\r\n]{0,2}"
}

/// Any JSON text: values nested a few levels, whitespace between tokens.
pub(crate) fn json_text() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        string_literal(),
        number(),
        Just("true".to_string()),
        Just("false".to_string()),
        Just("null".to_string()),
    ];
    let value = leaf.prop_recursive(5, 64, 6, |inner| {
        let spaced = (whitespace(), inner, whitespace())
            .prop_map(|(a, v, b)| a + &v + &b)
            .boxed();
        prop_oneof![
            prop::collection::vec(spaced.clone(), 0..6).prop_map(|v| format!("[{}]", v.join(","))),
            prop::collection::vec((string_literal(), whitespace(), spaced), 0..6).prop_map(
                |members| {
                    let members: Vec<String> = members
                        .into_iter()
                        .map(|(k, s, v)| format!("{k}{s}:{v}"))
                        .collect();
                    format!("{{{}}}", members.join(","))
                }
            ),
        ]
    });
    (whitespace(), value, whitespace()).prop_map(|(a, v, b)| a + &v + &b)
}

/// `JsonText::from_bytes` (one pass, UTF-8 checked only where the bytes
/// are not ASCII) gives what `JsonText::parse` gives the bytes' text, and
/// calls the bytes it accepts ASCII exactly when they are.
fn from_bytes_decides_as_parse(bytes: &[u8]) -> Result<(), TestCaseError> {
    let shown = || String::from_utf8_lossy(bytes).into_owned();
    let parsed = std::str::from_utf8(bytes).ok().and_then(JsonText::parse);
    prop_assert_eq!(JsonText::from_bytes(bytes), parsed, "{:?}", shown());
    if let Some((spacing, ascii)) = check_bytes(bytes) {
        prop_assert_eq!(ascii, bytes.is_ascii(), "{:?}", shown());
        if let Ok(text) = std::str::from_utf8(bytes) {
            prop_assert_eq!(Some(spacing), check(text), "{:?}", shown());
        }
    }
    Ok(())
}

/// One change that may break JSON text.
#[derive(Clone, Debug)]
pub(crate) enum Damage {
    Truncate(prop::sample::Index),
    Replace(prop::sample::Index, u8),
    Insert(prop::sample::Index, u8),
    Remove(prop::sample::Index),
    InsertText(prop::sample::Index, &'static str),
    Wrap(usize),
}

pub(crate) fn damage() -> impl Strategy<Value = Damage> {
    let index = any::<prop::sample::Index>;
    prop_oneof![
        index().prop_map(Damage::Truncate),
        (index(), tricky_byte()).prop_map(|(i, b)| Damage::Replace(i, b)),
        (index(), tricky_byte()).prop_map(|(i, b)| Damage::Insert(i, b)),
        index().prop_map(Damage::Remove),
        (
            index(),
            prop::sample::select(vec![
                "\\u12", "\\q", "\\", ",", ":", "]", "}", "[", "{", "\"", "0", "-", ".", "e",
                "\u{0}", "\t", "\u{feff}", "\\uzzzz", "01", "tru", "nul", "1e+", ", ]",
            ])
        )
            .prop_map(|(i, t)| Damage::InsertText(i, t)),
        (1usize..300).prop_map(Damage::Wrap),
    ]
}

pub(crate) fn apply(text: &str, damage: &Damage) -> Vec<u8> {
    let mut bytes = text.as_bytes().to_vec();
    let at = |i: &prop::sample::Index, len: usize| i.index(len + 1);
    match damage {
        Damage::Truncate(i) => bytes.truncate(at(i, bytes.len())),
        Damage::Replace(i, b) if !bytes.is_empty() => {
            let i = i.index(bytes.len());
            bytes[i] = *b;
        }
        Damage::Replace(..) => {}
        Damage::Insert(i, b) => bytes.insert(at(i, bytes.len()), *b),
        Damage::Remove(i) if !bytes.is_empty() => {
            bytes.remove(i.index(bytes.len()));
        }
        Damage::Remove(_) => {}
        Damage::InsertText(i, t) => {
            let i = at(i, bytes.len());
            bytes.splice(i..i, t.bytes());
        }
        Damage::Wrap(depth) => {
            let mut wrapped = "[".repeat(*depth).into_bytes();
            wrapped.extend_from_slice(&bytes);
            wrapped.extend(std::iter::repeat_n(b']', *depth));
            bytes = wrapped;
        }
    }
    bytes
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn random_json_and_its_damage_are_decided_as_serde_json_decides_them(
        text in json_text(),
        damages in prop::collection::vec(damage(), 1..3),
    ) {
        prop_assert!(serde_accepts(text.as_bytes()), "the generator made invalid JSON: {text:?}");
        let spaced = crate::json::compact_json(&text) != text;
        let spacing = if spaced { Spacing::Spaced } else { Spacing::Compact };
        prop_assert_eq!(check(&text), Some(spacing), "{:?}", text);
        prop_assert_eq!(without_space(&text), crate::json::compact_json(&text), "{:?}", text);
        from_bytes_decides_as_parse(text.as_bytes())?;
        let mut broken = text;
        for d in &damages {
            let bytes = apply(&broken, d);
            prop_assert_eq!(accepts(&bytes), serde_accepts(&bytes), "{:?}", String::from_utf8_lossy(&bytes));
            from_bytes_decides_as_parse(&bytes)?;
            // Go on from text, even if the damage broke its UTF-8.
            broken = String::from_utf8_lossy(&bytes).into_owned();
        }
    }

    #[test]
    fn the_run_of_plain_bytes_ends_where_a_byte_by_byte_look_says(
        bytes in prop::collection::vec(prop_oneof![8 => Just(b'y'), 1 => tricky_byte()], 0..200),
        at in any::<prop::sample::Index>(),
    ) {
        let at = at.index(bytes.len() + 1);
        run_ends_agree::<false>(&bytes, at)?;
        run_ends_agree::<true>(&bytes, at)?;
    }
}
