//! What the parser's tests share: a line's origin and number, and asserting
//! that a line parses or is rejected.

use crate::request::{Input, InvalidLine, Request};

use super::{LineOrigin, ParseOptions, check_base_url, parse_line};

pub(super) const ORIGIN: LineOrigin<'static> = LineOrigin {
    file: "in.jsonl",
    file_line: 7,
};
pub(super) const PREFIX: &str = "in.jsonl:7: ";
pub(super) const LINE: u64 = 42;

pub(super) fn with_base(base: &str) -> ParseOptions {
    ParseOptions {
        base_url: Some(check_base_url(base).expect("test base URL is valid")),
        ..ParseOptions::default()
    }
}

pub(super) fn parse_with(text: &str, opts: &ParseOptions) -> Option<Input> {
    parse_line(text.as_bytes(), LINE, &ORIGIN, opts)
}

pub(super) fn ok_with(text: &str, opts: &ParseOptions) -> Request {
    match parse_with(text, opts) {
        Some(Input::Request(r)) => *r,
        other => panic!("{text:?} should be a request, got {other:?}"),
    }
}

pub(super) fn bad_with(text: &str, opts: &ParseOptions) -> InvalidLine {
    match parse_with(text, opts) {
        Some(Input::Invalid(i)) => {
            assert!(i.message.starts_with(PREFIX), "{}", i.message);
            assert_eq!(i.line, LINE);
            *i
        }
        other => panic!("{text:?} should be invalid, got {other:?}"),
    }
}

pub(super) fn ok(text: &str) -> Request {
    ok_with(text, &ParseOptions::default())
}

pub(super) fn bad(text: &str) -> InvalidLine {
    bad_with(text, &ParseOptions::default())
}

/// Asserts the line is rejected with a message containing every part.
pub(super) fn rejects(text: &str, parts: &[&str]) -> InvalidLine {
    let invalid = bad(text);
    for part in parts {
        assert!(
            invalid.message.contains(part),
            "{text:?}: {:?} lacks {part:?}",
            invalid.message
        );
    }
    invalid
}
