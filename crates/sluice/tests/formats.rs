//! Golden tests of the output formats: every mapping of a record to an
//! `openai-batch` and an `anthropic-batch` line, and reading each line back
//! as `--resume` does. Run with `UPDATE_GOLDEN=1` to rewrite the golden file
//! after an intended change (and review the diff).

use std::time::{Duration, UNIX_EPOCH};

use sluice::format::{OutputFormat, batch_id, parse_batch_id, read_batch_line, sent_digest};
use sluice::{Body, ErrorKind, Id, JsonText, Record, RecordError};

const GOLDEN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/formats.golden");

fn json(text: &str) -> Option<Body> {
    Some(Body::Json(JsonText::parse(text).unwrap()))
}

/// A record of a request `line` with id `c<line>` that got `status`.
fn answered(line: u64, status: u16, body: Option<Body>, headers: &[(&str, &str)]) -> Record {
    let ok = (200..300).contains(&status);
    Record {
        id: Id::text(format!("c{line}")),
        line,
        method: Some("POST".into()),
        url: Some("http://127.0.0.1:9/v1/messages".into()),
        ok,
        status: Some(status),
        attempts: 1,
        started_at: Some(UNIX_EPOCH + Duration::from_secs(1_795_632_751)),
        duration: Duration::from_millis(41),
        headers: Some(
            headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        ),
        body,
        error: (!ok).then(|| RecordError {
            kind: ErrorKind::HttpStatus,
            message: format!("HTTP {status}"),
            maybe_applied: false,
        }),
        final_url: None,
        transport: None,
        timing: None,
    }
}

/// A record of a request `line` that failed with `kind` (a status when one arrived).
fn failed(line: u64, kind: ErrorKind, status: Option<u16>, message: &str) -> Record {
    let mut r = answered(line, status.unwrap_or(200), None, &[]);
    r.status = status;
    r.ok = false;
    r.error = Some(RecordError {
        kind,
        message: message.into(),
        maybe_applied: kind == ErrorKind::Timeout,
    });
    r
}

fn cases() -> Vec<(&'static str, Record)> {
    let message = r#"{"id":"msg_1","type":"message","role":"assistant","model":"m","content":[{"type":"text","text":"hi"}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":1,"output_tokens":2}}"#;
    let mut numeric = answered(17, 200, json(r#"{"n":1.000}"#), &[]);
    numeric.id = Id::line(17);
    let mut invalid = Record::unsent(
        Id::line(18),
        18,
        None,
        None,
        ErrorKind::InvalidRequest,
        "in.jsonl:18: invalid JSON: EOF while parsing an object at line 1 column 9".into(),
    );
    invalid.headers = None;
    let duplicate = Record::unsent(
        Id::text("c1"),
        19,
        Some("POST".into()),
        Some("http://127.0.0.1:9/v1/messages".into()),
        ErrorKind::DuplicateId,
        "in.jsonl:19: id `c1` is already used by an earlier line; ids must be unique (compared as text)".into(),
    );
    // Cut on a character boundary: 'é' is two bytes.
    let long = "é".repeat(2100);
    vec![
        (
            "success, JSON body, x-request-id",
            answered(1, 200, json(message), &[("x-request-id", "req_a1")]),
        ),
        (
            "success, request-id (Anthropic's header)",
            answered(2, 201, json(message), &[("request-id", "req_b2")]),
        ),
        (
            "400 with an OpenAI error body",
            answered(
                3,
                400,
                json(
                    r#"{"error":{"message":"bad model","type":"invalid_request_error","param":"model","code":null}}"#,
                ),
                &[("x-request-id", "req_c3")],
            ),
        ),
        (
            "429 with an Anthropic error body, request id from the header",
            answered(
                4,
                429,
                json(
                    r#"{"type":"error","error":{"type":"rate_limit_error","message":"slow down"}}"#,
                ),
                &[("request-id", "req_d4")],
            ),
        ),
        (
            "529 with an Anthropic error body that has its request_id",
            answered(
                5,
                529,
                json(
                    r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"},"request_id":"req_e5"}"#,
                ),
                &[],
            ),
        ),
        (
            "500 with a JSON body of another shape",
            answered(6, 500, json(r#"{"status":500}"#), &[]),
        ),
        (
            "502 with a non-JSON (HTML) body",
            answered(
                7,
                502,
                Some(Body::Text("<html><body>Bad Gateway</body></html>".into())),
                &[],
            ),
        ),
        (
            "200 with a non-JSON text body",
            answered(8, 200, Some(Body::Text("plain ok".into())), &[]),
        ),
        (
            "200 with a binary body",
            answered(9, 200, Some(Body::Base64("AAECAwQ=".into())), &[]),
        ),
        (
            "200 with a JSON array",
            answered(10, 200, json("[1,2]"), &[]),
        ),
        ("401", answered(11, 401, json(r#"{"error":"no key"}"#), &[])),
        ("403", answered(12, 403, json(r#"{"error":"no"}"#), &[])),
        (
            "404",
            answered(13, 404, Some(Body::Text("not here".into())), &[]),
        ),
        (
            "413",
            answered(14, 413, Some(Body::Text("too big".into())), &[]),
        ),
        (
            "an Anthropic-shaped body with a type the SDK does not know",
            answered(
                15,
                418,
                json(
                    r#"{"type":"error","error":{"type":"teapot_error","message":"short and stout"}}"#,
                ),
                &[],
            ),
        ),
        (
            "503 with a long text body (cut)",
            answered(16, 503, Some(Body::Text(long)), &[]),
        ),
        ("a numeric id", numeric),
        ("invalid line", invalid),
        ("duplicate id", duplicate),
        (
            "connect",
            failed(
                20,
                ErrorKind::Connect,
                None,
                "could not connect: connection refused",
            ),
        ),
        (
            "dns",
            failed(
                21,
                ErrorKind::Dns,
                None,
                "could not resolve host `nothing.invalid`",
            ),
        ),
        (
            "tls",
            failed(
                22,
                ErrorKind::Tls,
                None,
                "invalid peer certificate: UnknownIssuer",
            ),
        ),
        (
            "timeout",
            failed(
                23,
                ErrorKind::Timeout,
                None,
                "no complete response within 1s",
            ),
        ),
        (
            "reset",
            failed(
                24,
                ErrorKind::Reset,
                None,
                "connection closed before a response",
            ),
        ),
        (
            "protocol (a body cut short after a 200)",
            failed(
                25,
                ErrorKind::Protocol,
                Some(200),
                "body cut short: 50 of 100 bytes",
            ),
        ),
        (
            "body_too_large (after a 200)",
            failed(26, ErrorKind::BodyTooLarge, Some(200), "body over 1 KiB"),
        ),
        (
            "retry_after_too_long (a 429)",
            failed(
                27,
                ErrorKind::RetryAfterTooLong,
                Some(429),
                "Retry-After 3600s exceeds --max-retry-after 5m",
            ),
        ),
    ]
}

fn render_all() -> String {
    let mut out = String::new();
    for (name, record) in cases() {
        out.push_str(&format!("## {name}\n"));
        for format in [OutputFormat::OpenAiBatch, OutputFormat::AnthropicBatch] {
            out.push_str(&format!("{format}: {}", format.render(&record)));
        }
    }
    out
}

#[test]
fn every_mapping_matches_the_golden_file() {
    let got = render_all();
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(GOLDEN, &got).unwrap();
    }
    let want =
        std::fs::read_to_string(GOLDEN).expect("the golden file (UPDATE_GOLDEN=1 writes it)");
    for (n, (g, w)) in got.lines().zip(want.lines()).enumerate() {
        assert_eq!(g, w, "golden line {}", n + 1);
    }
    assert_eq!(got.lines().count(), want.lines().count());
}

#[test]
fn every_line_reads_back_as_resume_needs() {
    for (name, record) in cases() {
        let digest = sent_digest(
            record.id.as_str(),
            record.method.as_deref(),
            record.url.as_deref(),
        );
        for format in [OutputFormat::OpenAiBatch, OutputFormat::AnthropicBatch] {
            let line = format.render(&record);
            assert!(
                line.ends_with("}\n") && line.matches('\n').count() == 1,
                "{name}"
            );
            let back = read_batch_line(line.trim_end())
                .unwrap_or_else(|| panic!("{name}: not read as a batch line"))
                .unwrap();
            assert_eq!(back.format, format, "{name}");
            assert_eq!(back.line, record.line, "{name}");
            assert_eq!(back.id, record.id.as_str(), "{name}");
            assert_eq!(back.digest, Some(digest), "{name}");
            assert_eq!(back.ok, !format.is_failure(&record), "{name} ({format})");
            if format == OutputFormat::OpenAiBatch {
                assert_eq!(back.ok, record.ok, "{name}");
                // A response line says its status; an error line its kind.
                let kind = match back.status {
                    Some(_) if back.ok => None,
                    Some(_) => Some(ErrorKind::HttpStatus),
                    None => record.error_kind(),
                };
                assert_eq!(back.kind, kind, "{name}");
            }
            if let Some(kind) = record.error_kind().filter(|k| k.is_input_error()) {
                assert_eq!(
                    back.kind,
                    Some(kind),
                    "{name} ({format}): input errors are never re-sent"
                );
            }
        }
    }
}

#[test]
fn batch_ids_are_deterministic_and_carry_the_line() {
    let r = answered(12345, 200, None, &[]);
    let id = batch_id(&r);
    assert_eq!(id, batch_id(&r.clone()));
    assert!(id.starts_with("batch_req_12345_"), "{id}");
    let (line, digest) = parse_batch_id(&id).unwrap();
    assert_eq!(line, 12345);
    assert_eq!(
        digest,
        sent_digest(
            "c12345",
            Some("POST"),
            Some("http://127.0.0.1:9/v1/messages")
        )
    );
    // What was sent is in the digest: another URL, method or id is another id.
    let mut moved = r.clone();
    moved.url = Some("http://127.0.0.1:9/v1/other".into());
    assert_ne!(batch_id(&moved), id);
    for bad in [
        "batch_req_1",
        "batch_req_x_0123456789abcdef",
        "req_1_0123456789abcdef",
        "batch_req_1_0123",
    ] {
        assert_eq!(parse_batch_id(bad), None, "{bad}");
    }
    // The digest is fixed across versions: it is written into files.
    assert_eq!(
        format!("{:016x}", sent_digest("a", Some("GET"), Some("http://h/"))),
        "42df1843a494965f"
    );
}
