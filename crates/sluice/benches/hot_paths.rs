//! Micro-benchmarks of the per-request hot paths, so that a regression in
//! any of them shows: parsing an input line (a URL line, a JSON line and
//! S4's line with its 1 KiB body), storing a JSON answer in a record,
//! serialising a record to its JSON line, one limiter check, and one
//! decision of the scheduler.
//!
//! Run with `cargo bench -p sluice --bench hot_paths`; CI only builds them
//! (`cargo bench --no-run --workspace`). The end-to-end numbers are in
//! BENCHMARKS.md (`bash bench/run.sh`).

// `criterion_group!` defines a public function it cannot document.
#![allow(missing_docs)]

use std::collections::VecDeque;
use std::hint::black_box;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::value::RawValue;
use sluice::attempt::{Outcome, Response, store};
use sluice::gcra::Gcra;
use sluice::parse::{LineOrigin, ParseOptions, UrlCache, parse_line, parse_line_cached};
use sluice::record::Transport;
use sluice::scheduler::{Action, Scheduler, Ticket};
use sluice::{Body, BodyMode, Config, Id, Input, JsonText, Rate, Record, Request};
use tokio::time::Instant;
use url::Url;

const URL_LINE: &[u8] = b"https://api.example.com/v1/items/12345?page=2&fields=id,name";
const JSON_LINE: &[u8] = br#"{"id":"u-17","method":"POST","url":"https://api.example.com/v1/items","headers":{"Content-Type":"application/json","X-Trace":"abc"},"body":{"name":"x","tags":["a","b"],"count":3}}"#;

/// S4's request line: a POST whose body is a 1 KiB JSON object (one long
/// string), as `bench/harness.py` writes it.
fn s4_line() -> String {
    let pad = "y".repeat(1024 - r#"{"data":""}"#.len());
    format!(r#"{{"method":"POST","url":"http://127.0.0.1:8080/post","body":{{"data":"{pad}"}}}}"#)
}

/// S4's answer: a 4 KiB JSON object, one long string (`bench/upstream`'s).
fn s4_answer() -> String {
    let pad = "x".repeat(4096 - r#"{"data":""}"#.len());
    format!(r#"{{"data":"{pad}"}}"#)
}

/// A chat completion's answer as an API returns it, pretty-printed: many
/// short strings and numbers, whitespace to remove.
fn chat_answer() -> String {
    let choice = |i: usize| {
        format!(
            "    {{\n      \"index\": {i},\n      \"message\": {{\n        \"role\": \"assistant\",\n        \"content\": \"Here is answer number {i}: the quick brown fox jumps over the lazy dog, twice.\\nThen it \\\"rests\\\".\"\n      }},\n      \"logprobs\": null,\n      \"finish_reason\": \"stop\"\n    }}"
        )
    };
    let choices: Vec<String> = (0..8).map(choice).collect();
    format!(
        "{{\n  \"id\": \"chatcmpl-AbC123xyz\",\n  \"object\": \"chat.completion\",\n  \"created\": 1764460000,\n  \"model\": \"gpt-4o-mini-2024-07-18\",\n  \"choices\": [\n{}\n  ],\n  \"usage\": {{\n    \"prompt_tokens\": 1234,\n    \"completion_tokens\": 567,\n    \"total_tokens\": 1801\n  }}\n}}\n",
        choices.join(",\n")
    )
}

/// Storing a JSON answer in its record (`attempt::store`: checked, made
/// compact), beside serde_json's own check of the same text for scale.
fn store_json(c: &mut Criterion) {
    let mut group = c.benchmark_group("store_json");
    for (name, text) in [("s4_answer", s4_answer()), ("chat_answer", chat_answer())] {
        let bytes = Bytes::from(text.clone());
        assert!(matches!(
            store(bytes.clone(), BodyMode::Auto, Some("application/json")),
            Some(Body::Json(_))
        ));
        group.bench_function(name, |b| {
            b.iter(|| {
                store(
                    black_box(bytes.clone()),
                    BodyMode::Auto,
                    Some("application/json"),
                )
            })
        });
        group.bench_function(format!("{name}_serde_json_check"), |b| {
            b.iter(|| serde_json::from_str::<&RawValue>(black_box(&text)).is_ok())
        });
    }
    group.finish();
}

fn parse(c: &mut Criterion) {
    let origin = LineOrigin {
        file: "urls.txt",
        file_line: 1,
    };
    let opts = ParseOptions::default();
    let mut group = c.benchmark_group("parse_line");
    let s4 = s4_line();
    for (name, line) in [
        ("url", URL_LINE),
        ("json", JSON_LINE),
        ("s4", s4.as_bytes()),
    ] {
        // Check once that the line is a request, so the bench measures the
        // success path and not a rejection.
        assert!(matches!(
            parse_line(line, 1, &origin, &opts),
            Some(Input::Request(_))
        ));
        group.bench_function(name, |b| {
            b.iter(|| parse_line(black_box(line), 1, &origin, &opts))
        });
        // As the input stream parses: the last origin's URL cached, so a
        // line to the same origin parses only its path.
        let urls = UrlCache::default();
        group.bench_function(format!("{name}_cached"), |b| {
            b.iter(|| parse_line_cached(black_box(line), 1, &origin, &opts, &urls))
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
        body: JsonText::parse(r#"{"ok":true}"#).map(Body::Json),
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
    // As the sink writes it: appended to its buffer, no line of its own.
    let mut buf = Vec::with_capacity(64 * 1024);
    c.bench_function("record_write_json_line", |b| {
        b.iter(|| {
            if buf.len() > 60 * 1024 {
                buf.clear();
            }
            black_box(&record).write_json_line(&mut buf)
        })
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

/// The scheduler in a steady state on a made-up clock: a few hundred
/// requests queued over two origins, every slot busy (or the rate holding
/// the next start). Only the scheduler's own step is timed, with the taking
/// of its actions; making inputs and outcomes, and carrying the actions out
/// (the driver's work), are not. The bench profile has no debug assertions,
/// so `invariants_hold` is not part of the time.
struct Steady {
    s: Scheduler,
    now: Instant,
    urls: [Url; 2],
    next_line: u64,
    /// Attempts started, oldest first.
    running: VecDeque<Ticket>,
    actions: Vec<Action>,
    starts: u64,
}

impl Steady {
    /// Reads input until the scheduler wants no more: `-c 16` in flight (or
    /// one, under a rate) and `--read-ahead 300` + 16 queued.
    fn new(config: Config) -> Steady {
        let now = Instant::now();
        let mut st = Steady {
            s: Scheduler::new(Arc::new(config), now, SystemTime::UNIX_EPOCH, 1),
            now,
            urls: ["http://127.0.0.1:8080/fast", "http://127.0.0.2:8080/fast"]
                .map(|u| Url::parse(u).expect("a valid URL")),
            next_line: 1,
            running: VecDeque::new(),
            actions: Vec::new(),
            starts: 0,
        };
        while st.s.wants_input() {
            let item = st.input();
            st.s.offer(item, st.now);
            st.collect();
            st.carry_out();
        }
        st
    }

    /// The next input line, to the two origins in turn.
    fn input(&mut self) -> Input {
        let line = self.next_line;
        self.next_line += 1;
        let url = self.urls[(line % 2) as usize].clone();
        Input::from(Request::get(line, url))
    }

    fn collect(&mut self) {
        while let Some(action) = self.s.next_action() {
            self.actions.push(action);
        }
    }

    /// The driver's part: note the attempts started, drop the events.
    fn carry_out(&mut self) {
        for action in self.actions.drain(..) {
            if let Action::Start(a) = action {
                self.running.push_back(a.ticket);
                self.starts += 1;
            }
        }
    }

    fn offer(&mut self) -> Duration {
        let item = self.input();
        let t = std::time::Instant::now();
        self.s.offer(black_box(item), self.now);
        self.collect();
        let spent = t.elapsed();
        self.carry_out();
        spent
    }

    /// The oldest attempt ends with a 200.
    fn complete(&mut self) -> Duration {
        let Some(ticket) = self.running.pop_front() else {
            return Duration::ZERO;
        };
        let outcome = ok();
        let t = std::time::Instant::now();
        self.s.complete(ticket, black_box(outcome), self.now);
        self.collect();
        let spent = t.elapsed();
        self.carry_out();
        spent
    }

    /// The timer fires `by` later.
    fn advance(&mut self, by: Duration) -> Duration {
        self.now += by;
        let t = std::time::Instant::now();
        self.s.advance(black_box(self.now));
        self.collect();
        let spent = t.elapsed();
        self.carry_out();
        spent
    }
}

fn ok() -> Outcome {
    Outcome::Response(Box::new(Response {
        status: 200,
        headers: http::HeaderMap::new(),
        body: None,
        final_url: None,
        note: None,
        transport: Transport {
            http_version: "HTTP/1.1",
            tls_version: None,
        },
    }))
}

/// Runs `iters` cycles of `step`, timing only what `step` reports.
fn timed(iters: u64, mut step: impl FnMut() -> Duration) -> Duration {
    (0..iters).map(|_| step()).sum()
}

/// One decision of the scheduler, as the driver asks for it per request:
/// - `offer`: a line arrives while every slot is busy (intake: id and cost
///   checks, queued behind the others, nothing starts);
/// - `complete_ok`: an attempt ends with a 200 (its record goes out, its slot
///   frees, and the oldest queued request starts);
/// - `advance_paced`: under `--rate 1000/s`, the timer fires when the next
///   start is due, and it starts.
fn scheduler(c: &mut Criterion) {
    let unpaced = || {
        Config::builder()
            .concurrency(NonZeroUsize::new(16).expect("16 is not zero"))
            .read_ahead(300)
            .build()
            .expect("a valid configuration")
    };
    let mut group = c.benchmark_group("scheduler");
    group.bench_function("offer", |b| {
        let mut st = Steady::new(unpaced());
        b.iter_custom(|iters| {
            timed(iters, || {
                let spent = st.offer();
                st.complete();
                spent
            })
        })
    });
    group.bench_function("complete_ok", |b| {
        let mut st = Steady::new(unpaced());
        b.iter_custom(|iters| {
            timed(iters, || {
                let spent = st.complete();
                st.offer();
                spent
            })
        })
    });
    group.bench_function("advance_paced", |b| {
        let rate = Rate::parse("1000/s").expect("a valid rate");
        let config = Config::builder()
            .concurrency(NonZeroUsize::new(16).expect("16 is not zero"))
            .read_ahead(300)
            .rate(rate)
            .build()
            .expect("a valid configuration");
        let mut st = Steady::new(config);
        // The limiter's period: 1 ms stretched by its 0.5% pacing margin.
        let period = Duration::from_micros(1005);
        b.iter_custom(|iters| {
            let before = st.starts;
            let spent = timed(iters, || {
                while !st.running.is_empty() {
                    st.complete();
                }
                st.offer();
                st.advance(period)
            });
            // Each wake-up started exactly one request: the decision timed
            // is a start, not a refusal.
            assert_eq!(st.starts - before, iters);
            spent
        })
    });
    group.finish();
}

criterion_group!(benches, parse, store_json, serialise, limiter, scheduler);
criterion_main!(benches);
