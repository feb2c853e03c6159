//! Micro-benchmarks of the per-request hot paths, so that a regression in
//! any of them shows: parsing an input line (a URL line and a JSON line),
//! serialising a record to its JSON line, and one limiter check.
//!
//! Run with `cargo bench -p sluice --bench hot_paths`; CI only builds them
//! (`cargo bench --no-run --workspace`). The end-to-end numbers are in
//! BENCHMARKS.md (`bash bench/run.sh`).

use std::hint::black_box;
use std::time::{Duration, SystemTime};

use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::value::RawValue;
use sluice::gcra::Gcra;
use sluice::parse::{LineOrigin, ParseOptions, parse_line};
use sluice::{Body, Id, Input, Rate, Record};
use tokio::time::Instant;

const URL_LINE: &[u8] = b"https://api.example.com/v1/items/12345?page=2&fields=id,name";
const JSON_LINE: &[u8] = br#"{"id":"u-17","method":"POST","url":"https://api.example.com/v1/items","headers":{"Content-Type":"application/json","X-Trace":"abc"},"body":{"name":"x","tags":["a","b"],"count":3}}"#;

fn parse(c: &mut Criterion) {
    let origin = LineOrigin {
        file: "urls.txt",
        file_line: 1,
    };
    let opts = ParseOptions::default();
    let mut group = c.benchmark_group("parse_line");
    for (name, line) in [("url", URL_LINE), ("json", JSON_LINE)] {
        // Check once that the line is a request, so the bench measures the
        // success path and not a rejection.
        assert!(matches!(
            parse_line(line, 1, &origin, &opts),
            Some(Input::Request(_))
        ));
        group.bench_function(name, |b| {
            b.iter(|| parse_line(black_box(line), 1, &origin, &opts))
        });
    }
    group.finish();
}

/// A record as S1 writes it: a small JSON body, no headers, no error.
fn s1_record() -> Record {
    Record {
        id: Id::line(123_456),
        line: 123_456,
        method: Some("GET".into()),
        url: Some("http://127.0.0.1:8080/fast".into()),
        ok: true,
        status: Some(200),
        attempts: 1,
        started_at: Some(SystemTime::UNIX_EPOCH + Duration::from_micros(1_764_460_000_123_456)),
        duration: Duration::from_micros(1_234),
        headers: None,
        body: RawValue::from_string(r#"{"ok":true}"#.into())
            .ok()
            .map(Body::Json),
        error: None,
        final_url: None,
        transport: None,
        timing: None,
    }
}

fn serialise(c: &mut Criterion) {
    let record = s1_record();
    assert!(record.body.is_some());
    c.bench_function("record_to_json_line", |b| {
        b.iter(|| black_box(&record).to_json_line())
    });
}

/// One limiter check as the dispatcher makes it before a start: ask when a
/// cell may pass, and take it. Time moves one period per check, so every
/// check passes, as it does in a paced run.
fn limiter(c: &mut Criterion) {
    let rate = Rate::parse("1000/s").expect("a valid rate");
    let start = Instant::now();
    let mut gcra = Gcra::new(rate, 1, start);
    let step = Duration::from_micros(1005);
    let mut now = start;
    c.bench_function("gcra_check_and_take", |b| {
        b.iter(|| {
            now += step;
            let ready = gcra.ready_at(black_box(now), 1);
            if ready <= now {
                gcra.take(now, 1);
            }
            ready
        })
    });
}

criterion_group!(benches, parse, serialise, limiter);
criterion_main!(benches);
