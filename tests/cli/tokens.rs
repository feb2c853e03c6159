//! Token limits learned from the API's own headers: chat requests whose
//! costs the test knows (the mock's documented rule) against the mock's
//! token-limited `/limited` endpoints, nothing configured but `-c 50`:
//! never refused at the server, and within 10% of the ideal the token
//! bucket allows.

use sluice_mock::MockServer;

use crate::support::*;

const N: usize = 1000;

/// A bucket of 10,000 tokens refilled at 20,000 a second.
const TOKENS: f64 = 10_000.0;
const WINDOW: f64 = 0.5;

/// Each request: 200 characters of prompt (50 tokens at the mock's 4 a
/// token), `max_tokens` 50 (reserved: 100, so the first 50 fit the
/// bucket), of which it uses 30 (`completion=30`): 80 spent.
const PROMPT: usize = 200;
const MAX_TOKENS: u64 = 50;
const COMPLETION: u64 = 30;

/// The timing tests take turns with those of learned request limits: each
/// measures a makespan, which the others' load would blur.
use crate::learned::SERIAL;

/// `n` chat request lines to `url`.
fn chat_lines(url: &str, n: usize) -> String {
    let body = serde_json::json!({
        "model": "m",
        "messages": [{"role": "user", "content": "x".repeat(PROMPT)}],
        "max_tokens": MAX_TOKENS,
    });
    let line = serde_json::json!({"method": "POST", "url": url, "body": body}).to_string();
    lines(&vec![line; n])
}

/// Runs the batch against `dialect`'s token-limited key; checks that the
/// server refused nothing and the makespan is within 10% of the ideal;
/// returns the summary's `learned` list.
async fn token_case(dialect: &str) -> serde_json::Value {
    let _turn = SERIAL.lock().await;
    let server = mock().await;
    let key = format!("tokens-{dialect}");
    let path = format!("/limited/bucket/{dialect}/{key}");
    // The request limit (a million a window) never binds.
    let url = format!(
        "{}{path}?limit=1000000&window={WINDOW}&tokens={TOKENS}&completion={COMPLETION}",
        server.url()
    );
    let dir = tempdir();
    let summary = dir.path().join("summary.json");
    let summary_arg = summary.to_str().expect("a UTF-8 path");
    server.reset_stats();
    let out = Sluice::run(["-c", "50", "-q", "--summary-json", summary_arg])
        .stdin(chat_lines(&url, N))
        .output()
        .await;
    out.code(0);
    let records = out.results();
    assert_eq!(records.len(), N);
    assert!(records.iter().all(|r| r.ok && r.attempts == 1));
    let stats = server.stats();
    let limited = stats.limited.get(&key).expect("the key was used");
    assert_eq!(limited.refused, 0, "429s at the server");
    let prompt = (PROMPT as u64).div_ceil(4);
    assert_eq!(limited.tokens, N as u64 * (prompt + COMPLETION));
    let arrivals: Vec<f64> = stats
        .arrivals
        .iter()
        .filter(|a| a.path == path)
        .map(|a| a.ms / 1000.0)
        .collect();
    let makespan = arrivals.last().expect("arrivals") - arrivals[0];
    // All but the first bucket comes at the refill rate; the last request
    // needs its whole reservation there.
    let rate = TOKENS / WINDOW;
    let spent = limited.tokens as f64;
    let ideal = (spent - TOKENS + (MAX_TOKENS - COMPLETION) as f64) / rate;
    eprintln!("tokens {dialect}: {makespan:.3} s, ideal {ideal:.3} s");
    assert!(
        makespan <= ideal * 1.1 && makespan >= ideal * 0.99,
        "tokens {dialect}: {makespan:.3} s, ideal {ideal:.3} s"
    );
    server.shutdown().await;
    let text = std::fs::read_to_string(&summary).expect("the summary");
    let json: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    json["learned"].clone()
}

/// The summary lists the token limit sluice paced the origin at.
fn assert_learned_tokens(learned: &serde_json::Value, dialect: &str) {
    let origin = &learned[0];
    assert_eq!(origin["dialect"], dialect, "{learned}");
    let pace = &origin["tokens"][0];
    assert_eq!(pace["dimension"], "tokens", "{learned}");
    let rate = pace["per_second"].as_f64().expect("a rate");
    assert!(
        (rate - TOKENS / WINDOW).abs() < 0.02 * TOKENS / WINDOW,
        "{learned}"
    );
    assert_eq!(origin["refused"], 0, "{learned}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_tokens() {
    let learned = token_case("openai").await;
    assert_learned_tokens(&learned, "openai");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_tokens() {
    let learned = token_case("anthropic").await;
    assert_learned_tokens(&learned, "anthropic");
}

/// Without learning, a bucket of 20 requests' tokens refuses part of the
/// first 50 (sent before any answer, however slow the machine), and
/// nothing paces the rest: the token headers are what helps.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_learning_off_is_refused() {
    let _turn = SERIAL.lock().await;
    let server: MockServer = mock().await;
    let url = format!(
        "{}/limited/bucket/openai/off?limit=1000000&window=1&tokens=2000",
        server.url()
    );
    let out = Sluice::run(["-c", "50", "-q", "--learn-limits", "off"])
        .stdin(chat_lines(&url, 60))
        .output()
        .await;
    out.code(0);
    let refused = server.stats().limited.get("off").map_or(0, |l| l.refused);
    assert!(refused > 0, "the bucket refused nothing");
    server.shutdown().await;
}
