//! Table tests of every dialect (well-formed, malformed, absurd) and a
//! property test that no header set panics.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderMap, HeaderName, HeaderValue};
use proptest::prelude::*;

use super::*;

/// 2025-02-11T10:00:00Z, the server's and the local now unless a test says.
const NOW: u64 = 1_739_268_000;
const DATE: &str = "Tue, 11 Feb 2025 10:00:00 GMT";

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(NOW)
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(
            HeaderName::from_bytes(name.as_bytes()).expect("test header name"),
            HeaderValue::from_str(value).expect("test header value"),
        );
    }
    map
}

fn read(pairs: &[(&str, &str)]) -> Snapshot {
    observe(&headers(pairs), now()).expect("rate-limit headers")
}

fn secs(s: f64) -> Option<Duration> {
    Some(Duration::from_secs_f64(s))
}

fn lim(
    dimension: Dimension,
    limit: Option<u64>,
    remaining: Option<u64>,
    reset: Option<Duration>,
) -> Limit {
    Limit {
        limit,
        remaining,
        reset,
        ..Limit::new(dimension)
    }
}

fn problems(snapshot: &Snapshot) -> Vec<(String, Problem)> {
    snapshot
        .warnings
        .iter()
        .map(|w| (w.header.clone(), w.problem))
        .collect()
}

#[test]
fn no_rate_limit_headers_is_none() {
    let map = headers(&[("content-type", "application/json"), ("date", DATE)]);
    assert_eq!(observe(&map, now()), None);
}

#[test]
fn openai_go_durations() {
    let s = read(&[
        ("x-ratelimit-limit-requests", "5000"),
        ("x-ratelimit-remaining-requests", "4999"),
        ("x-ratelimit-reset-requests", "12ms"),
        ("x-ratelimit-limit-tokens", "160000"),
        ("x-ratelimit-remaining-tokens", "159976"),
        ("x-ratelimit-reset-tokens", "2m59.56s"),
    ]);
    assert_eq!(s.dialect, Dialect::OpenAi);
    assert_eq!(s.window, Window::Bucket);
    assert_eq!(
        s.limits,
        vec![
            lim(Dimension::Requests, Some(5000), Some(4999), secs(0.012)),
            lim(
                Dimension::Tokens,
                Some(160_000),
                Some(159_976),
                secs(179.56)
            ),
        ]
    );
    assert!(s.warnings.is_empty());
}

#[test]
fn openai_numbers_follow_the_magnitude_rule() {
    // Azure sends integer seconds, others epoch seconds or milliseconds.
    // Epochs count from the response's Date (09:59:50, i.e. 1739267990),
    // not from the local clock (10:00:00).
    let cases: &[(&str, Option<Duration>)] = &[
        ("6", secs(6.0)),
        ("0.25", secs(0.25)),
        ("1739268020", secs(30.0)),
        ("1739268020500", secs(30.5)),
        ("1739267000", secs(0.0)),      // in the past: no wait
        ("999999999", Some(MAX_RESET)), // a 31-year delay: capped
        ("-1", None),                   // unknown
    ];
    for (value, want) in cases {
        let s = read(&[
            ("date", "Tue, 11 Feb 2025 09:59:50 GMT"),
            ("x-ratelimit-remaining-requests", "3"),
            ("x-ratelimit-reset-requests", value),
        ]);
        let got = s.limit(Dimension::Requests).and_then(|l| l.reset);
        assert_eq!(got, *want, "{value}");
    }
}

#[test]
fn openai_unknown_and_malformed_values() {
    let s = read(&[
        ("x-ratelimit-limit-requests", "-1"),
        ("x-ratelimit-remaining-requests", "lots"),
        ("x-ratelimit-reset-requests", "soon"),
        ("x-ratelimit-limit-tokens", "-1"),
        ("x-ratelimit-remaining-tokens", "-1"),
        ("x-ratelimit-reset-tokens", "-1"),
    ]);
    assert_eq!(s.dialect, Dialect::OpenAi);
    assert!(s.limits.is_empty(), "{:?}", s.limits);
    assert_eq!(
        problems(&s),
        vec![
            ("x-ratelimit-remaining-requests".into(), Problem::Malformed),
            ("x-ratelimit-reset-requests".into(), Problem::Malformed),
        ]
    );
}

#[test]
fn openai_absurd_values_are_capped() {
    let s = read(&[
        ("x-ratelimit-limit-tokens", "99999999999999999999"),
        ("x-ratelimit-remaining-tokens", "5"),
        ("x-ratelimit-reset-tokens", "1000000h"),
        ("x-ratelimit-limit-requests", "10"),
        ("x-ratelimit-remaining-requests", "50"),
    ]);
    assert_eq!(
        s.limits,
        vec![
            lim(Dimension::Requests, Some(10), Some(10), None),
            lim(Dimension::Tokens, Some(MAX_COUNT), Some(5), Some(MAX_RESET)),
        ]
    );
    let p = problems(&s);
    assert!(
        p.contains(&("x-ratelimit-limit-tokens".into(), Problem::Capped)),
        "{p:?}"
    );
    assert!(
        p.contains(&("x-ratelimit-reset-tokens".into(), Problem::Capped)),
        "{p:?}"
    );
    assert!(
        p.contains(&("x-ratelimit-remaining-requests".into(), Problem::AboveLimit)),
        "{p:?}"
    );
}

#[test]
fn anthropic_resets_are_measured_against_date() {
    // The local clock is an hour fast; the resets still count from Date.
    let map = headers(&[
        ("date", DATE),
        ("anthropic-ratelimit-requests-limit", "50"),
        ("anthropic-ratelimit-requests-remaining", "49"),
        ("anthropic-ratelimit-requests-reset", "2025-02-11T10:00:02Z"),
        ("anthropic-ratelimit-input-tokens-limit", "80000"),
        ("anthropic-ratelimit-input-tokens-remaining", "78000"),
        (
            "anthropic-ratelimit-input-tokens-reset",
            "2025-02-11T11:00:02+01:00",
        ),
        ("anthropic-ratelimit-output-tokens-limit", "16000"),
        ("anthropic-ratelimit-output-tokens-remaining", "16000"),
        (
            "anthropic-ratelimit-output-tokens-reset",
            "2025-02-11T10:00:00Z",
        ),
        ("anthropic-ratelimit-tokens-limit", "96000"),
        ("anthropic-ratelimit-tokens-remaining", "94000"),
        ("anthropic-ratelimit-tokens-reset", "2025-02-11T09:59:00Z"),
    ]);
    let s = observe(&map, now() + Duration::from_secs(3600)).expect("anthropic");
    assert_eq!(s.dialect, Dialect::Anthropic);
    assert_eq!(s.window, Window::Bucket);
    assert_eq!(
        s.limits,
        vec![
            lim(Dimension::Requests, Some(50), Some(49), secs(2.0)),
            lim(Dimension::Tokens, Some(96_000), Some(94_000), secs(0.0)),
            lim(
                Dimension::InputTokens,
                Some(80_000),
                Some(78_000),
                secs(2.0)
            ),
            lim(
                Dimension::OutputTokens,
                Some(16_000),
                Some(16_000),
                secs(0.0)
            ),
        ]
    );
    assert!(s.warnings.is_empty(), "{:?}", s.warnings);
}

#[test]
fn anthropic_without_date_uses_now_and_malformed_is_reported() {
    let s = read(&[
        ("anthropic-ratelimit-requests-remaining", "0"),
        ("anthropic-ratelimit-requests-reset", "2025-02-11T10:00:30Z"),
        ("anthropic-ratelimit-tokens-reset", "in 30 seconds"),
        ("anthropic-ratelimit-tokens-limit", "1e6"),
    ]);
    assert_eq!(
        s.limits,
        vec![lim(Dimension::Requests, None, Some(0), secs(30.0))]
    );
    assert_eq!(
        problems(&s),
        vec![
            (
                "anthropic-ratelimit-tokens-limit".into(),
                Problem::Malformed
            ),
            (
                "anthropic-ratelimit-tokens-reset".into(),
                Problem::Malformed
            ),
        ]
    );
}

#[test]
fn a_malformed_date_is_reported_and_now_used() {
    let s = read(&[
        ("date", "yesterday"),
        ("anthropic-ratelimit-requests-reset", "2025-02-11T10:00:05Z"),
    ]);
    assert_eq!(s.limits[0].reset, secs(5.0));
    assert_eq!(problems(&s), vec![("date".into(), Problem::Malformed)]);
}

#[test]
fn github_fixed_window() {
    let s = read(&[
        ("date", DATE),
        ("x-ratelimit-limit", "5000"),
        ("x-ratelimit-remaining", "4987"),
        ("x-ratelimit-used", "13"),
        ("x-ratelimit-reset", "1739269800"),
        ("x-ratelimit-resource", "core"),
    ]);
    assert_eq!(s.dialect, Dialect::GitHub);
    assert_eq!(s.window, Window::Fixed);
    let mut want = lim(Dimension::Requests, Some(5000), Some(4987), secs(1800.0));
    want.policy = Some("core".into());
    assert_eq!(s.limits, vec![want]);
}

#[test]
fn github_remaining_from_used_delta_reset_and_bad_resource() {
    let s = read(&[
        ("x-ratelimit-limit", "60"),
        ("x-ratelimit-used", "61"),
        ("x-ratelimit-reset", "42"),
        ("x-ratelimit-resource", "core search"),
    ]);
    assert_eq!(
        s.limits,
        vec![lim(Dimension::Requests, Some(60), Some(0), secs(42.0))]
    );
    assert_eq!(
        problems(&s),
        vec![("x-ratelimit-resource".into(), Problem::Malformed)]
    );
}

#[test]
fn ietf_structured_fields() {
    let s = read(&[
        (
            "ratelimit-policy",
            r#""burst";q=100;w=60, "daily";q=1000;w=86400"#,
        ),
        ("ratelimit-policy", r#""bytes";q=5000;qu="content-bytes""#),
        ("ratelimit", r#""burst";r=50;t=30, "daily";r=900"#),
    ]);
    assert_eq!(s.dialect, Dialect::IetfStructured);
    assert_eq!(s.window, Window::Fixed);
    let mut burst = lim(Dimension::Requests, Some(100), Some(50), secs(30.0));
    burst.policy = Some("burst".into());
    burst.window = secs(60.0);
    let mut daily = lim(Dimension::Requests, Some(1000), Some(900), None);
    daily.policy = Some("daily".into());
    daily.window = secs(86_400.0);
    assert_eq!(s.limits, vec![burst, daily]);
    assert_eq!(
        problems(&s),
        vec![("ratelimit-policy".into(), Problem::Unsupported)]
    );
}

#[test]
fn ietf_partition_keys_pair_items() {
    let s = read(&[
        ("ratelimit-policy", r#""p";q=10;pk=:AQID:"#),
        ("ratelimit", r#""p";r=1;pk=:BAUG:, "p";r=7;t=3;pk=:AQID:"#),
    ]);
    assert_eq!(s.limits.len(), 2, "{:?}", s.limits);
    assert_eq!(
        (s.limits[0].limit, s.limits[0].remaining),
        (Some(10), Some(7))
    );
    assert_eq!(s.limits[0].reset, secs(3.0));
    assert_eq!((s.limits[1].limit, s.limits[1].remaining), (None, Some(1)));
    assert!(s.limits[0].partition.is_some());
    assert_ne!(s.limits[0].partition, s.limits[1].partition);
}

#[test]
fn ietf_malformed_and_absurd() {
    let cases: &[(&str, &str, usize, &[Problem])] = &[
        // Not a structured list at all: the whole field is ignored.
        (
            r#""burst";q=100;w=60,,"#,
            r#""burst";r=5"#,
            1,
            &[Problem::Malformed],
        ),
        // A negative quota, a missing r, a wrong type: that item only.
        (
            r#""a";q=-1, "b";q=5"#,
            r#""b";t=4, "c";r=?1"#,
            1,
            &[Problem::Malformed, Problem::Malformed, Problem::Malformed],
        ),
        // An inner list is not an item.
        (r#"("a" "b");q=1"#, "", 0, &[Problem::Malformed]),
        // Absurd: capped.
        (
            r#""a";q=999999999999999;w=999999999"#,
            r#""a";r=0;t=999999999"#,
            1,
            &[Problem::Capped, Problem::Capped, Problem::Capped],
        ),
    ];
    for (policy, state, count, want) in cases {
        let mut pairs = vec![("ratelimit-policy", *policy)];
        if !state.is_empty() {
            pairs.push(("ratelimit", *state));
        }
        let s = read(&pairs);
        assert_eq!(s.limits.len(), *count, "{policy} / {state}: {:?}", s.limits);
        let got: Vec<Problem> = s.warnings.iter().map(|w| w.problem).collect();
        assert_eq!(&got, want, "{policy} / {state}");
    }
    let s = read(&[("ratelimit-policy", r#""a";q=999999999999999;w=999999999"#)]);
    assert_eq!(s.limits[0].limit, Some(MAX_COUNT));
    assert_eq!(s.limits[0].window, Some(MAX_RESET));
}

#[test]
fn ietf_legacy_triple() {
    let s = read(&[
        ("ratelimit-limit", "100"),
        ("ratelimit-remaining", "0"),
        ("ratelimit-reset", "17"),
    ]);
    assert_eq!(s.dialect, Dialect::IetfLegacy);
    assert_eq!(s.window, Window::Fixed);
    assert_eq!(
        s.limits,
        vec![lim(Dimension::Requests, Some(100), Some(0), secs(17.0))]
    );
}

#[test]
fn cached_responses_say_nothing() {
    let fresh = [("ratelimit-remaining", "5"), ("ratelimit-reset", "10")];
    for age in ["0", "00", "", "soon"] {
        let mut pairs = fresh.to_vec();
        pairs.push(("age", age));
        assert_eq!(read(&pairs).limits.len(), 1, "age {age:?}");
    }
    let s = read(&[("ratelimit-remaining", "5"), ("age", "30")]);
    assert!(s.limits.is_empty());
    assert_eq!(problems(&s), vec![("age".into(), Problem::Cached)]);
}

#[test]
fn detection_order() {
    let cases: &[(&[(&str, &str)], Dialect)] = &[
        (
            &[
                ("anthropic-ratelimit-requests-limit", "1"),
                ("x-ratelimit-limit-requests", "1"),
            ],
            Dialect::Anthropic,
        ),
        (
            &[
                ("x-ratelimit-limit-requests", "1"),
                ("x-ratelimit-limit", "1"),
            ],
            Dialect::OpenAi,
        ),
        (
            &[("x-ratelimit-reset", "1"), ("ratelimit", r#""a";r=1"#)],
            Dialect::GitHub,
        ),
        (
            &[("ratelimit", r#""a";r=1"#), ("ratelimit-limit", "1")],
            Dialect::IetfStructured,
        ),
        (&[("ratelimit-reset", "1")], Dialect::IetfLegacy),
    ];
    for (pairs, want) in cases {
        assert_eq!(read(pairs).dialect, *want, "{pairs:?}");
    }
}

#[test]
fn warnings_name_the_header_and_cut_the_value() {
    let long = "x".repeat(500);
    let s = read(&[("x-ratelimit-remaining-tokens", &long)]);
    let warning = &s.warnings[0];
    assert_eq!(warning.value.len(), 80);
    let text = warning.to_string();
    assert!(
        text.starts_with("rate-limit header x-ratelimit-remaining-tokens: `xxx"),
        "{text}"
    );
    assert!(
        text.ends_with("ignored: not a value sluice can read"),
        "{text}"
    );
}

#[test]
fn non_text_values_are_malformed() {
    let mut map = HeaderMap::new();
    map.insert(
        "x-ratelimit-remaining-requests",
        HeaderValue::from_bytes(b"\xff\xfe").expect("opaque bytes are a valid value"),
    );
    let s = observe(&map, now()).expect("openai");
    assert_eq!(
        problems(&s),
        vec![("x-ratelimit-remaining-requests".into(), Problem::Malformed)]
    );
}

/// Header names the parsers read, so random values reach them.
const NAMES: &[&str] = &[
    "date",
    "x-ratelimit-limit-requests",
    "x-ratelimit-remaining-tokens",
    "x-ratelimit-reset-requests",
    "x-ratelimit-reset-tokens",
    "anthropic-ratelimit-tokens-reset",
    "anthropic-ratelimit-output-tokens-remaining",
    "x-ratelimit-limit",
    "x-ratelimit-used",
    "x-ratelimit-reset",
    "x-ratelimit-resource",
    "ratelimit-policy",
    "ratelimit",
    "ratelimit-reset",
];

fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        proptest::sample::select(NAMES).prop_map(str::to_owned),
        "[a-z-]{1,30}",
    ]
}

fn value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..40),
        "-?[0-9]{0,25}(\\.[0-9]{0,5})?[hmsuµn]{0,2}".prop_map(String::into_bytes),
        r#"("[a-z]{0,3}";)?[qwrtpk]{1,2}=-?[0-9:A-Za-z?]{0,20}(, )?"#.prop_map(String::into_bytes),
    ]
}

proptest! {
    #[test]
    fn no_header_set_panics(
        pairs in proptest::collection::vec((name(), value()), 0..12),
        now_secs in any::<u32>(),
        headroom in 0.01f64..=1.0,
    ) {
        let mut map = HeaderMap::new();
        for (name, value) in &pairs {
            if let (Ok(n), Ok(v)) = (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_bytes(value)) {
                map.append(n, v);
            }
        }
        let at = UNIX_EPOCH + Duration::from_secs(u64::from(now_secs));
        if let Some(snapshot) = observe(&map, at) {
            for limit in &snapshot.limits {
                prop_assert!(limit.limit.is_none_or(|l| l <= MAX_COUNT));
                prop_assert!(limit.remaining <= limit.limit.or(Some(MAX_COUNT)));
                prop_assert!(limit.reset.is_none_or(|r| r <= MAX_RESET));
            }
            let headroom = Headroom::new(headroom).expect("in range");
            let suggestion = suggest(&snapshot, headroom);
            for pace in &suggestion.paces {
                prop_assert!(pace.per_second.is_finite() && pace.per_second > 0.0);
                prop_assert!(pace.per_second <= MAX_RATE && pace.burst >= 1);
            }
            prop_assert!(suggestion.pause.is_none_or(|p| p <= MAX_RESET));
        }
    }
}
