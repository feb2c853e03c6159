//! Error kinds, what is retried, and duplicate ids.

use crate::support::*;

/// One request per line, each ending in one error kind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_failure_has_its_kind() {
    let server = mock().await;
    let m = server.url();
    let closed = closed_port_url();
    let input = lines(&[
        format!("{closed}/fast"),
        "http://nx.invalid/fast".to_string(),
        format!("{m}/hang"),
        format!("{m}/reset"),
        format!("{m}/truncate"),
        format!("{m}/bytes/2000"),
        format!("{m}/drip/2000/0"),
        format!("{m}/bytes/1000"),
        format!("{m}/status/503"),
        r#"{"url":"ftp://example.com/x"}"#.to_string(),
    ]);
    let out = Sluice::run([
        "--retries",
        "1",
        "--backoff-initial",
        "10ms",
        "--timeout",
        "300ms",
        "--max-body-size",
        "1000",
        "--halt-after",
        "0",
    ])
    .stdin(input)
    .output()
    .await;
    out.code(1);
    let recs = by_line(&out.results());
    assert_eq!(recs.len(), 10);
    let expect = [
        (1, "connect", 2),
        (2, "dns", 2),
        (3, "timeout", 2),
        (4, "reset", 2),
        (5, "protocol", 1),
        (6, "body_too_large", 1),
        (7, "body_too_large", 1),
        (8, "", 1),
        (9, "http_status", 2),
        (10, "invalid_request", 0),
    ];
    for (line, want_kind, attempts) in expect {
        let rec = &recs[&line];
        assert_eq!(kind(rec), want_kind, "line {line}: {rec}");
        assert_eq!(rec.attempts, attempts, "line {line}: {rec}");
        assert_eq!(rec.ok, want_kind.is_empty(), "line {line}: {rec}");
        assert!(
            rec.error.as_ref().is_none_or(|e| e.maybe_applied.is_none()),
            "GET: {rec}"
        );
    }
    for line in [1, 2, 3, 4] {
        assert_eq!(recs[&line].status, None, "no response: {}", recs[&line]);
    }
    assert_eq!(recs[&9].status, Some(503));
    assert!(recs[&3].duration_ms >= 600.0);
    assert_eq!(path_requests(&server, "/hang"), 2);
    assert_eq!(path_requests(&server, "/reset"), 2);
    assert_eq!(
        path_requests(&server, "/truncate"),
        1,
        "protocol is never retried"
    );
    assert_eq!(path_requests(&server, "/bytes/2000"), 1, "never retried");
    assert_eq!(path_requests(&server, "/drip/2000/0"), 1, "never retried");
    assert_eq!(path_requests(&server, "/status/503"), 2);
    server.shutdown().await;
}

/// Non-idempotent methods are retried only where the server
/// did not act, unless an Idempotency-Key or `--retry-non-idempotent` says so;
/// failures after the request was written carry `maybe_applied`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_idempotent_requests_are_retried_only_when_safe() {
    let server = mock().await;
    let m = server.url();
    let closed = closed_port_url();
    let input = lines(&[
        format!(r#"{{"method":"POST","url":"{m}/status/500"}}"#),
        format!(r#"{{"method":"GET","url":"{m}/status/500?get"}}"#),
        format!(
            r#"{{"method":"POST","url":"{m}/status/502","headers":{{"Idempotency-Key":"k-1"}}}}"#
        ),
        format!(r#"{{"method":"POST","url":"{m}/status/503"}}"#),
        format!(r#"{{"method":"PATCH","url":"{m}/hang"}}"#),
        format!(r#"{{"method":"POST","url":"{closed}/x"}}"#),
        format!(r#"{{"method":"PUT","url":"{m}/status/504"}}"#),
    ]);
    let out = Sluice::run([
        "--retries",
        "1",
        "--backoff-initial",
        "10ms",
        "--timeout",
        "300ms",
    ])
    .stdin(input)
    .output()
    .await;
    out.code(1);
    let recs = by_line(&out.results());
    let maybe = |line: u64| recs[&line].error.as_ref().and_then(|e| e.maybe_applied);
    // (line, attempts, maybe_applied)
    let expect = [
        (1, 1, Some(true)),
        (2, 2, None),
        (3, 2, Some(true)),
        (4, 2, None),
        (5, 1, Some(true)),
        (6, 2, None),
        (7, 2, None),
    ];
    for (line, attempts, maybe_applied) in expect {
        assert_eq!(
            recs[&line].attempts, attempts,
            "line {line}: {}",
            recs[&line]
        );
        assert_eq!(maybe(line), maybe_applied, "line {line}: {}", recs[&line]);
    }
    assert_eq!(kind(&recs[&5]), "timeout");
    assert_eq!(kind(&recs[&6]), "connect");
    assert_eq!(path_requests(&server, "/status/500"), 3);
    assert_eq!(path_requests(&server, "/status/502"), 2);
    assert_eq!(path_requests(&server, "/hang"), 1);

    // --retry-non-idempotent retries the POST, and it may still have applied.
    server.reset_stats();
    let out = Sluice::run([
        "--retries",
        "1",
        "--backoff-initial",
        "10ms",
        "--retry-non-idempotent",
    ])
    .stdin(format!(r#"{{"method":"POST","url":"{m}/status/500"}}"#))
    .output()
    .await;
    out.code(1);
    let rec = &out.results()[0];
    assert_eq!(rec.attempts, 2, "{rec}");
    assert!(rec.maybe_applied(), "{rec}");
    assert_eq!(path_requests(&server, "/status/500"), 2);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_on_is_the_whole_policy() {
    let server = mock().await;
    let m = server.url();
    let input = lines(&[
        format!("{m}/status/404"),
        format!("{m}/status/500"),
        format!("{m}/fail/2/k?status=418"),
    ]);
    let out = Sluice::run([
        "--retries",
        "3",
        "--backoff-initial",
        "10ms",
        "--retry-on",
        "404,418",
    ])
    .stdin(input)
    .output()
    .await;
    out.code(1);
    let recs = by_line(&out.results());
    assert_eq!((recs[&1].attempts, recs[&1].status), (4, Some(404)));
    assert_eq!((recs[&2].attempts, recs[&2].status), (1, Some(500)));
    let fail = &recs[&3];
    assert!(fail.ok, "{fail}");
    assert_eq!(fail.attempts, 3);
    assert_eq!(fail.body_json()["attempt"], 3);
    assert_eq!(path_requests(&server, "/status/404"), 4);
    assert_eq!(path_requests(&server, "/fail/2/k"), 3);
    server.shutdown().await;
}

/// The first line to use an id owns it; ids compare as text (`7` = `"7"`),
/// and a line without an id has its line number as id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_ids_are_recorded_not_sent() {
    let server = mock().await;
    let m = server.url();
    let input = lines(&[
        format!(r#"{{"id":"u-1","url":"{m}/fast"}}"#),
        format!(r#"{{"id":"u-1","url":"{m}/fast"}}"#),
        format!(r#"{{"id":7,"url":"{m}/fast"}}"#),
        format!(r#"{{"id":"7","url":"{m}/fast"}}"#),
        format!(r#"{{"id":"6","url":"{m}/fast"}}"#),
        format!("{m}/fast"),
        format!(r#"{{"custom_id":"u-1","url":"{m}/fast"}}"#),
    ]);
    let out = Sluice::run(Vec::<&str>::new()).stdin(input).output().await;
    out.code(1);
    let recs = by_line(&out.results());
    assert_eq!(recs.len(), 7);
    for line in [1, 3, 5] {
        assert!(recs[&line].ok, "{}", recs[&line]);
    }
    for line in [2, 4, 6, 7] {
        let rec = &recs[&line];
        assert_eq!(kind(rec), "duplicate_id", "{rec}");
        assert_eq!(rec.attempts, 0);
        assert_eq!(rec.status, None);
    }
    assert_eq!(recs[&2].id, "u-1");
    assert_eq!(recs[&4].id, "7");
    assert_eq!(recs[&6].id, 6, "line 6's default id was taken by line 5");
    assert_eq!(server.stats().requests, 3);
    server.shutdown().await;
}

/// Bad lines become `invalid_request` records; the run goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_request_lines_are_invalid_requests() {
    let server = mock().await;
    let m = server.url();
    let bad = [
        format!(r#"{{"url":"{m}/fast","body":1,"body_text":"x"}}"#),
        format!(r#"{{"url":"{m}/fast","headers":{{"Host":"evil"}}}}"#),
        format!(r#"{{"url":"{m}/fast","headers":{{"content-length":"3"}}}}"#),
        format!(r#"{{"url":"{m}/fast","headers":{{"Transfer-Encoding":"chunked"}}}}"#),
        format!(r#"{{"url":"{m}/fast","headers":{{"connection":"close"}}}}"#),
        format!(r#"{{"url":"{m}/fast","headers":{{"TE":"trailers"}}}}"#),
        format!(r#"{{"url":"{m}/fast","headers":{{"Upgrade":"h2c"}}}}"#),
        format!(r#"{{"url":"{m}/fast","headers":{{"X-A":"a\u0000b"}}}}"#),
        format!(r#"{{"url":"{m}/fast","body_text":"a","body_base64":"aGk="}}"#),
        format!(r#"{{"url":"{m}/fast","body_base64":"!!"}}"#),
        format!(r#"{{"id":true,"url":"{m}/fast"}}"#),
        format!(r#"{{"id":1.5,"url":"{m}/fast"}}"#),
        format!(r#"{{"url":"{m}/fast","headers":{{"X-A":"a\r\nX-B: b"}}}}"#),
        format!(r#"{{"url":"{m}/fast","method":"GE T"}}"#),
        format!(r#"{{"url":"{m}/fast","cost":-1}}"#),
        format!(r#"{{"url":"{m}/fa\u0001st"}}"#),
        r#"{"method":"GET"}"#.to_string(),
        r#"{"id":{"a":1},"url":"http://x/"}"#.to_string(),
        "[1,2]".to_string(),
    ];
    let mut input = bad.to_vec();
    input.push(format!("{m}/fast"));
    let out = Sluice::run(Vec::<&str>::new())
        .stdin(lines(&input))
        .output()
        .await;
    out.code(1);
    let recs = by_line(&out.results());
    assert_eq!(recs.len(), bad.len() + 1);
    for line in 1..=bad.len() as u64 {
        let rec = &recs[&line];
        assert_eq!(kind(rec), "invalid_request", "line {line}: {rec}");
        assert_eq!(rec.attempts, 0);
        let msg = rec.message();
        assert!(msg.contains(&format!(":{line}")), "names its line: {msg}");
    }
    assert!(recs[&(bad.len() as u64 + 1)].ok);
    assert_eq!(server.stats().requests, 1);
    server.shutdown().await;
}

/// A line's `timeout` (a duration, or milliseconds) overrides `--timeout`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_line_timeout_overrides_the_run_timeout() {
    let server = mock().await;
    let m = server.url();
    let input = lines(&[
        format!(r#"{{"url":"{m}/hang","timeout":"200ms"}}"#),
        format!(r#"{{"url":"{m}/hang","timeout":250}}"#),
        format!(r#"{{"url":"{m}/delay/0.3","timeout":"5s"}}"#),
    ]);
    let out = Sluice::run(["--timeout", "100ms", "--retries", "0"])
        .stdin(input)
        .output()
        .await;
    out.code(1);
    let recs = by_line(&out.results());
    assert_eq!(kind(&recs[&1]), "timeout");
    assert!(recs[&1].duration_ms >= 200.0, "{}", recs[&1]);
    // One rule on the command line and in input lines: a duration needs its
    // unit; a bare number is refused, not guessed at.
    assert_eq!(kind(&recs[&2]), "invalid_request");
    assert!(recs[&2].message().contains("\"250ms\""), "{}", recs[&2]);
    assert!(recs[&3].ok, "{}", recs[&3]);
    let out = Sluice::run(["--timeout", "30"]).stdin("").output().await;
    out.code(2);
    assert!(out.stderr.contains("30s"), "{}", out.stderr);
    server.shutdown().await;
}
