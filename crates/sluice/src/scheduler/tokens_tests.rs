//! Token limits on a made-up clock: a simulated server keeps a token bucket
//! (OpenAI's `x-ratelimit-*-tokens` headers), reserves at admission at most
//! what sluice estimates for each request, settles it at the `usage` it
//! answers with, and counts refusals. Told only the headers and the
//! answers, the scheduler must never be refused and come close to the
//! ideal.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use proptest::prelude::*;
use reqwest::Method;
use reqwest::header::{HeaderMap, HeaderValue};
use tokio::time::Instant;

use crate::event::Event;
use crate::json_text::JsonText;
use crate::ratelimit::cost;
use crate::record::Body;
use crate::request::Request;
use crate::scheduler::simulated;

/// The simulated server: a bucket of `size` tokens refilled at
/// `size / window` a second.
struct Server {
    size: f64,
    window: f64,
    tokens: f64,
    last: f64,
    admitted: u64,
    refused: u64,
    /// Tokens spent, as settled.
    spent: f64,
    /// Rate-limit headers on every this many answers only.
    headers_every: u64,
    /// Each request reserves its estimate less up to this share of it.
    slack: f64,
    /// Each request settles at its reservation less up to this share of its
    /// completion.
    unused: f64,
    rng: fastrand::Rng,
}

impl Server {
    fn new(size: u64, window: f64, seed: u64) -> Server {
        Server {
            size: size as f64,
            window,
            tokens: size as f64,
            last: 0.0,
            admitted: 0,
            refused: 0,
            spent: 0.0,
            headers_every: 1,
            slack: 0.0,
            unused: 0.0,
            rng: fastrand::Rng::with_seed(seed),
        }
    }

    /// `req` arrives `t` seconds after the start: status, headers, body.
    fn arrive(&mut self, t: f64, req: &Request) -> (u16, HeaderMap, Option<Body>) {
        let rate = self.size / self.window;
        self.tokens = (self.tokens + (t - self.last) * rate).min(self.size);
        self.last = t;
        let estimate = cost::of_request(req);
        let reserved = (estimate.total() as f64 * (1.0 - self.slack * self.rng.f64())).ceil();
        let ok = self.tokens >= reserved;
        let mut body = None;
        if ok {
            let output = estimate.output as f64 * (1.0 - self.unused * self.rng.f64());
            let output = output.floor().min(reserved);
            let input = (reserved - estimate.output as f64).max(0.0);
            // Settled at once: the answer is complete when it leaves.
            self.tokens -= input + output;
            self.spent += input + output;
            self.admitted += 1;
            let usage = format!(
                r#"{{"usage":{{"prompt_tokens":{},"completion_tokens":{}}}}}"#,
                input as u64, output as u64
            );
            body = Some(Body::Json(JsonText::parse(&usage).expect("JSON")));
        } else {
            self.refused += 1;
        }
        let mut headers = HeaderMap::new();
        if !(self.admitted + self.refused - 1).is_multiple_of(self.headers_every) {
            return (if ok { 200 } else { 429 }, headers, body);
        }
        let reset = (self.size - self.tokens) / rate;
        headers.insert("x-ratelimit-limit-tokens", num(self.size));
        headers.insert("x-ratelimit-remaining-tokens", num(self.tokens.floor()));
        let ms = format!("{:.3}ms", reset * 1000.0);
        headers.insert(
            "x-ratelimit-reset-tokens",
            HeaderValue::from_str(&ms).expect("a header value"),
        );
        (if ok { 200 } else { 429 }, headers, body)
    }
}

fn num(n: f64) -> HeaderValue {
    HeaderValue::from(n as u64)
}

/// A completions request whose prompt has `chars` characters and which asks
/// for `max_tokens`.
fn request(line: u64, chars: usize, max_tokens: u64) -> Request {
    let url = url::Url::parse("http://127.0.0.1:8080/v1/completions").expect("a URL");
    let body = format!(
        r#"{{"prompt":"{}","max_tokens":{max_tokens}}}"#,
        "x".repeat(chars)
    );
    Request {
        method: Method::POST,
        body: Some(Bytes::from(body)),
        json_body: true,
        ..Request::get(line, url)
    }
}

/// Runs `requests` against `server` at concurrency `c`, with delays each
/// way drawn from [0, `delay`]. Returns (makespan in seconds, records ok,
/// the learned events).
fn simulate(
    server: &mut Server,
    requests: Vec<Request>,
    c: usize,
    delay: Duration,
    seed: u64,
) -> (f64, u64, Vec<Event>) {
    let wall = SystemTime::UNIX_EPOCH;
    let net = simulated::Network::on_time(c, delay, seed, wall);
    simulated::learned(requests, &net, |t, req| {
        let (status, headers, body) = server.arrive(t, req);
        simulated::response(status, headers, body)
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    /// Told only the headers and the usage of the answers, sluice is never
    /// refused by a token bucket it alone spends, whatever its size, rate,
    /// the requests' costs, concurrency and delays, as long as each
    /// estimate is at least what the server reserves (and the first `-c`
    /// requests, sent before any answer, fit), with headers on every
    /// answer or only some.
    #[test]
    fn the_learned_token_limiter_never_admits_more_than_the_server_allows(
        size in 3_000u64..30_000,
        window in 0.2f64..3.0,
        c in 1usize..40,
        delay_ms in 0u64..30,
        n in 50u64..300,
        slack in 0.0f64..0.5,
        unused in 0.0f64..1.0,
        every in 1u64..4,
        seed in any::<u64>(),
    ) {
        let mut rng = fastrand::Rng::with_seed(seed);
        // At most 100 + 200 tokens each.
        let c = c.min(size as usize / 300).max(1);
        let requests = (1..=n)
            .map(|line| request(line, rng.usize(0..400), rng.u64(1..200)))
            .collect();
        let mut server = Server::new(size, window, seed);
        server.slack = slack;
        server.unused = unused;
        server.headers_every = every;
        let delay = Duration::from_millis(delay_ms);
        let (_, ok, _) = simulate(&mut server, requests, c, delay, seed);
        prop_assert_eq!(server.refused, 0, "{} admitted", server.admitted);
        prop_assert_eq!(ok, n);
    }
}

/// Close to the ideal: a bucket of 10,000 tokens refilled at 20,000 a
/// second serves 1,000 requests of 100 tokens (estimated and spent) in
/// (100,000 − 10,000) / 20,000 = 4.5 s at best.
#[test]
fn a_token_bucket_is_used_to_within_a_few_percent() {
    let mut server = Server::new(10_000, 0.5, 7);
    // 38 characters of prompt JSON text (with its quotes): 10 tokens, plus 90.
    let requests = (1..=1000).map(|line| request(line, 38, 90)).collect();
    let (makespan, ok, events) = simulate(&mut server, requests, 50, Duration::from_millis(2), 7);
    assert_eq!((ok, server.refused), (1000, 0));
    assert!((4.5..4.5 * 1.05).contains(&makespan), "{makespan} s");
    let Some(Event::Learned(last)) = events.last() else {
        panic!("no learned event: {events:?}");
    };
    assert!(last.last && last.dialect == "openai", "{last:?}");
    assert_eq!(last.tokens.len(), 1, "{last:?}");
    let pace = &last.tokens[0];
    assert_eq!(pace.dimension, "tokens");
    assert!((pace.per_second - 20_000.0).abs() < 200.0, "{pace:?}");
    assert_eq!(pace.burst, 10_000);
}

/// Answers that spend less than the estimate give the rest back: requests
/// estimated at 100 tokens that use 55 on average finish far sooner than
/// the estimate alone allows ((1,000 × 100 − 10,000) / 20,000 = 4.5 s),
/// close to what they spend allows, even when the headers come on one
/// answer in 100 (measured: within 1%; 10% above without the usage).
#[test]
fn usage_gives_back_what_the_estimate_overcounted() {
    let mut server = Server::new(10_000, 0.5, 7);
    server.unused = 1.0;
    server.headers_every = 100;
    let requests = (1..=1000).map(|line| request(line, 38, 90)).collect();
    let (makespan, ok, _) = simulate(&mut server, requests, 50, Duration::from_millis(2), 7);
    assert_eq!((ok, server.refused), (1000, 0));
    let ideal = (server.spent - 10_000.0) / 20_000.0;
    assert!((2.0..2.5).contains(&ideal), "{ideal} s");
    assert!(
        makespan >= ideal && makespan < ideal * 1.03,
        "{makespan} s, ideal {ideal} s"
    );
}

/// A request costing more than the whole bucket still goes, alone, once the
/// bucket is full, instead of waiting forever.
#[test]
fn a_request_larger_than_the_bucket_still_goes() {
    use super::{LearnedTokens, TokenDispatch};
    use crate::ratelimit::{Headroom, Tokens};
    let now = Instant::now();
    let mut tokens = LearnedTokens::default();
    let mut headers = HeaderMap::new();
    headers.insert("x-ratelimit-limit-tokens", num(1000.0));
    headers.insert("x-ratelimit-remaining-tokens", num(500.0));
    headers.insert(
        "x-ratelimit-reset-tokens",
        HeaderValue::from_static("500ms"),
    );
    let snapshot = crate::ratelimit::observe(&headers, SystemTime::UNIX_EPOCH).expect("OpenAI");
    let dispatch = TokenDispatch::default();
    let learning = tokens.observe(&snapshot, 1, &dispatch, Headroom::FULL, 1.0, now);
    assert!(learning.covered && learning.pause.is_none());
    let huge = Tokens {
        input: 5000,
        output: 0,
    };
    // 499 tokens left (500 less the rounding) of a burst of 998: the huge
    // request waits until the limiter is full, then goes.
    let at = tokens.ready_at(now, huge).expect("it waits");
    assert!(at - now < Duration::from_millis(510), "{:?}", at - now);
    assert_eq!(tokens.ready_at(at, huge), None);
    tokens.start(at, huge);
    // The debt it left holds the next one for its time.
    let small = Tokens {
        input: 10,
        output: 0,
    };
    let next = tokens.ready_at(at, small).expect("held");
    assert!(next - at > Duration::from_secs(2), "{:?}", next - at);
}

/// Anthropic's input and output token limits are buckets of their own: a
/// request starts only when both have its part, all or nothing.
#[test]
fn input_and_output_tokens_must_both_admit() {
    use super::{LearnedTokens, TokenDispatch};
    use crate::ratelimit::{Headroom, Tokens};
    let now = Instant::now();
    let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let mut headers = HeaderMap::new();
    headers.insert(
        "date",
        HeaderValue::from_static("Tue, 14 Nov 2023 22:13:20 GMT"),
    );
    for (dimension, remaining) in [("input-tokens", 900.0), ("output-tokens", 10.0)] {
        let name = |field: &str| format!("anthropic-ratelimit-{dimension}-{field}");
        headers.insert(
            reqwest::header::HeaderName::from_bytes(name("limit").as_bytes()).expect("a name"),
            num(1000.0),
        );
        headers.insert(
            reqwest::header::HeaderName::from_bytes(name("remaining").as_bytes()).expect("a name"),
            num(remaining),
        );
        // Full again in 1 s: the deficit refills at (deficit − 1) a second.
        headers.insert(
            reqwest::header::HeaderName::from_bytes(name("reset").as_bytes()).expect("a name"),
            HeaderValue::from_static("2023-11-14T22:13:21Z"),
        );
    }
    let snapshot = crate::ratelimit::observe(&headers, wall).expect("Anthropic");
    let mut tokens = LearnedTokens::default();
    let learning = tokens.observe(
        &snapshot,
        1,
        &TokenDispatch::default(),
        Headroom::FULL,
        1.0,
        now,
    );
    assert!(learning.covered);
    let paces = tokens.paces();
    assert_eq!(paces.len(), 2, "{paces:?}");
    // Plenty of input left, but only 10 output tokens: 20 must wait.
    let cost = Tokens {
        input: 100,
        output: 20,
    };
    assert!(tokens.ready_at(now, cost).is_some());
    let small = Tokens {
        input: 100,
        output: 10,
    };
    assert_eq!(tokens.ready_at(now, small), None);
    tokens.start(now, small);
    // Both were charged: the output bucket is empty, and the input one
    // (a burst of a second's refill, 99) owes a token.
    let output = Tokens {
        input: 0,
        output: 1,
    };
    let input = Tokens {
        input: 1,
        output: 0,
    };
    assert!(tokens.ready_at(now, output).is_some());
    assert!(tokens.ready_at(now, input).is_some());
    let later = now + Duration::from_millis(50);
    assert_eq!(tokens.ready_at(later, output), None);
    assert_eq!(tokens.ready_at(later, input), None);
}
