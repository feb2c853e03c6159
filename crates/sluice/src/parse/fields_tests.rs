//! The one-scan split of a JSON line into its fields against serde_json's.

use proptest::prelude::*;

use super::*;

/// Keys: every field, keys that name none, a field's name written with an
/// escape, and near misses.
fn key() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "id",
        "custom_id",
        "method",
        "url",
        "headers",
        "body",
        "body_text",
        "body_base64",
        "timeout",
        "cost",
        "params",
        "other",
        "",
        "URL",
        "url ",
        "u\\u0072l",
        "b\\\"ody",
        "é",
    ])
}

fn value() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        "\"[a-z/:. é\\\\\"]{0,40}\""
            .prop_map(|s| s.replace('\\', "\\\\").replace("\\\\\"", "\\\"")),
        Just("\"http://h/x\"".to_string()),
        Just("\"\\ud800 \\n\"".to_string()),
        Just(format!("\"{}\"", "y".repeat(100))),
        Just("null".to_string()),
        Just("-1.5e3".to_string()),
        Just("true".to_string()),
        Just("7".to_string()),
    ];
    // Whitespace between a nested value's tokens too, so a body that is
    // compact only at its top level is told from a compact one.
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            (prop::collection::vec(inner.clone(), 0..4), space())
                .prop_map(|(v, s)| format!("[{s}{}]", v.join(&format!("{s},")))),
            (prop::collection::vec((key(), inner), 0..4), space()).prop_map(|(m, s)| {
                let m: Vec<String> = m.iter().map(|(k, v)| format!("\"{k}\"{s}:{v}")).collect();
                format!("{{{}{s}}}", m.join(","))
            }),
        ]
    })
}

fn space() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec!["", "", " ", "\n\t "])
}

/// A line: an object of members, whitespace between its tokens; sometimes
/// with one byte changed, inserted or cut.
fn line() -> impl Strategy<Value = String> {
    let member = (space(), key(), space(), space(), value(), space())
        .prop_map(|(a, k, b, c, v, d)| format!("{a}\"{k}\"{b}:{c}{v}{d}"));
    let object = (space(), prop::collection::vec(member, 0..7), space())
        .prop_map(|(a, m, b)| format!("{a}{{{}}}{b}", m.join(",")));
    let damage = prop_oneof![
        4 => Just(None),
        1 => (any::<prop::sample::Index>(), prop::sample::select(vec!["", ",", "}", "\"", "\\", "\u{1}", "]", "x"]))
            .prop_map(Some),
    ];
    (object, damage).prop_map(|(text, damage)| match damage {
        None => text,
        Some((at, put)) => {
            let mut cut: Vec<usize> = text.char_indices().map(|(i, _)| i).collect();
            cut.push(text.len());
            let i = cut[at.index(cut.len())];
            let j = text[i..].chars().next().map_or(i, |c| i + c.len_utf8());
            format!("{}{put}{}", &text[..i], &text[j..])
        }
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn one_scan_splits_a_line_as_serde_json_does(text in line()) {
        let split = split_fields(&text);
        let serde = serde_fields(&text).ok();
        if let Some((fields, Depth(depth), compact_body)) = &split {
            prop_assert_eq!(Some(fields), serde.as_ref(), "{:?}", text);
            // A body said to be compact is one compacting leaves as it is.
            let compact = fields.body.is_some_and(|b| crate::json::compact_json(b) == b);
            prop_assert_eq!(*compact_body, compact, "{:?}", text);
            // The depth the split measured is the one the bracket count finds.
            prop_assert!(nesting_exceeds(&text, depth - 1), "{:?}", text);
            prop_assert!(!nesting_exceeds(&text, *depth), "{:?}", text);
        }
        // Every line serde reads is split by the scan, unless a key holds
        // an escape (told here by any backslash).
        if serde.is_some() && !text.contains('\\') {
            prop_assert!(split.is_some(), "{:?}", text);
        }
    }
}

#[test]
fn a_field_given_twice_is_left_to_serde_json() {
    let text = r#"{"url":"http://h/","url":"http://h/"}"#;
    assert_eq!(split_fields(text), None);
    let message = serde_fields(text)
        .expect_err("a duplicate field")
        .to_string();
    assert!(message.contains("duplicate field `url`"), "{message}");
    // A key that names no field may repeat, as serde ignores it.
    let text = r#"{"x":1,"url":"http://h/","x":2}"#;
    assert_eq!(
        split_fields(text).and_then(|(f, _, _)| f.url),
        Some("\"http://h/\"")
    );
}

#[test]
fn the_split_tells_a_compact_body_from_a_spaced_one() {
    let compact = |text| split_fields(text).map(|(_, _, compact)| compact);
    assert_eq!(
        compact(r#"{"url":"http://h/","body":{"a":"x y","b":[1,2]}}"#),
        Some(true)
    );
    assert_eq!(
        compact(r#"{"url":"http://h/","body":{"a":1, "b":2}}"#),
        Some(false)
    );
    assert_eq!(
        compact(r#"{"url":"http://h/", "body":[1,2] , "x": 1}"#),
        Some(true)
    );
    assert_eq!(
        compact(r#"{"url":"http://h/","body":[1,{"c" :2}]}"#),
        Some(false)
    );
    assert_eq!(compact(r#"{"url":"http://h/"}"#), Some(false));
}
