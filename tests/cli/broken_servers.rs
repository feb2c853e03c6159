//! Servers that break HTTP the way broken servers and middleboxes do, on
//! loopback (the raw server of `support::raw`): malformed heads, interim
//! responses, connections closed at once, dropped after an answer or
//! before one (over TLS too), statuses beyond 599, HTTP/1.1 answering
//! `--http2`, headers and bodies that trickle in, handshakes that never
//! finish. Each is a typed failure, retried only where that is safe, and
//! never a panic or a hang.

use crate::support::*;

/// Responses a compliant client must refuse are `protocol` failures, never
/// retried, never `ok` — and no panic or hang on any of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_responses_are_protocol_errors_and_never_retried() {
    let raw = RawServer::start(|req| {
        let last = |b: &[u8]| Act::Last(b.to_vec());
        match req.path.as_str() {
            "/garbage-status" => last(b"HTTQ/9.9 abc nope\r\n\r\nhello"),
            "/no-colon" => last(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nNoColonHere\r\n\r\nok"),
            "/nul" => last(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-A: a\0b\r\n\r\nok"),
            "/two-lengths" => {
                last(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 5\r\n\r\nokabc")
            }
            "/length-list" => last(b"HTTP/1.1 200 OK\r\nContent-Length: 2, 5\r\n\r\nokabc"),
            "/bad-chunk" => {
                last(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nok\r\n0\r\n\r\n")
            }
            "/chunks-cut" => {
                last(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n")
            }
            "/101-headers" => {
                let names: Vec<String> = (0..101).map(|i| format!("X-H{i}: v")).collect();
                let names: Vec<&str> = names.iter().map(String::as_str).collect();
                Act::Last(response("200 OK", &names, b"ok"))
            }
            "/mib-header" => {
                let big = format!("X-Big: {}", "a".repeat(1 << 20));
                Act::Last(response("200 OK", &[&big], b"ok"))
            }
            _ => Act::Last(response("404 Not Found", &[], b"")),
        }
    })
    .await;
    let paths = [
        "/garbage-status",
        "/no-colon",
        "/nul",
        "/two-lengths",
        "/length-list",
        "/bad-chunk",
        "/chunks-cut",
        "/101-headers",
        "/mib-header",
    ];
    let input = lines(
        &paths
            .iter()
            .map(|p| format!("{}{p}", raw.url))
            .collect::<Vec<_>>(),
    );
    let out = Sluice::run([
        "--retries",
        "2",
        "--backoff-initial",
        "5ms",
        "--timeout",
        "10s",
    ])
    .stdin(input)
    .output()
    .await;
    out.code(1);
    let recs = by_line(&out.results());
    assert_eq!(recs.len(), paths.len());
    for (i, path) in paths.iter().enumerate() {
        let rec = &recs[&(i as u64 + 1)];
        assert_eq!(kind(rec), "protocol", "{path}: {rec}");
        assert_eq!(rec.attempts, 1, "{path}: protocol is never retried: {rec}");
        assert_eq!(raw.requests(path), 1, "{path}");
    }
}

/// 100 Continue and 103 Early Hints before the final response are skipped;
/// `Connection: close` on every response still gives every request its
/// answer, on a connection of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interim_responses_and_connection_close_are_handled() {
    let raw = RawServer::start(|req| {
        if req.path == "/interim" {
            let mut bytes =
                b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
                    .to_vec();
            bytes.extend(response(
                "200 OK",
                &["Content-Type: application/json"],
                br#"{"a":1}"#,
            ));
            Act::Keep(bytes)
        } else {
            Act::Last(response("200 OK", &["Connection: close"], b"closed"))
        }
    })
    .await;
    let mut input = vec![format!("{}/interim", raw.url)];
    input.extend((0..8).map(|i| format!("{}/close/{i}", raw.url)));
    let out = Sluice::run(["-c", "2"]).stdin(lines(&input)).output().await;
    out.code(0);
    let recs = by_line(&out.results());
    assert_eq!(
        recs[&1].body,
        Some(serde_json::json!({"a": 1})),
        "{}",
        recs[&1]
    );
    for line in 2..=9 {
        assert_eq!(recs[&line].text(), Some("closed"), "{}", recs[&line]);
        assert_eq!(recs[&line].attempts, 1);
    }
    assert_eq!(raw.total(), 9);
}

/// A server that closes every connection as soon as it is accepted: each
/// attempt costs exactly one connection (no hidden reconnect storm) and
/// GETs stop after `--retries`. (Whether the POST was written before the
/// close arrived is a race, so its attempts are not pinned here; the stale
/// connection test below pins that a written POST is never re-sent.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_closes_every_connection_costs_one_connection_per_attempt() {
    let server = RawServer::closing().await;
    let addr = &server.addr;
    let input = lines(&[
        format!("http://{addr}/a"),
        format!("http://{addr}/b"),
        format!(r#"{{"method":"POST","url":"http://{addr}/p","body":{{"x":1}}}}"#),
    ]);
    let out = Sluice::run([
        "--retries",
        "2",
        "--backoff-initial",
        "5ms",
        "--halt-after",
        "0",
    ])
    .stdin(input)
    .output()
    .await;
    out.code(1);
    let recs = by_line(&out.results());
    for line in [1, 2] {
        assert_eq!(recs[&line].kind(), "reset", "{}", recs[&line]);
        assert_eq!(recs[&line].attempts, 3, "{}", recs[&line]);
    }
    let post = &recs[&3];
    assert_eq!(kind(post), "reset", "{post}");
    if post.attempts == 1 {
        assert!(post.maybe_applied(), "{post}");
    }
    let attempts: u64 = recs.values().map(|r| u64::from(r.attempts)).sum();
    assert_eq!(
        server.accepts() as u64,
        attempts,
        "one connection per attempt"
    );
}

/// A keep-alive server that drops each connection after its first answer,
/// without saying so: the request written onto the dead connection is a
/// GET that is retried and succeeds, or a POST that is sent only once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_pooled_connection_retries_gets_and_never_resends_posts() {
    let raw = RawServer::start(|req| {
        if req.nth == 1 {
            Act::Keep(ok("served"))
        } else {
            Act::Close
        }
    })
    .await;
    let u = &raw.url;
    let input = lines(&[
        format!("{u}/g1"),
        format!(r#"{{"method":"POST","url":"{u}/p1","body":{{"n":1}}}}"#),
        format!("{u}/g2"),
        format!(r#"{{"method":"POST","url":"{u}/p2","body":{{"n":2}}}}"#),
        format!("{u}/g3"),
    ]);
    let out = Sluice::run(["-c", "1", "--retries", "3", "--backoff-initial", "5ms"])
        .stdin(input)
        .output()
        .await;
    let recs = by_line(&out.results());
    assert_eq!(recs.len(), 5, "{}", out.stdout);
    for line in [1, 3, 5] {
        assert!(
            recs[&line].ok,
            "GETs survive a stale connection: {}",
            recs[&line]
        );
    }
    for (line, path) in [(2, "/p1"), (4, "/p2")] {
        let rec = &recs[&line];
        assert_eq!(raw.requests(path), 1, "{path} was sent more than once");
        assert_eq!(rec.attempts, 1, "{rec}");
        if !rec.ok {
            assert_eq!(kind(rec), "reset", "{rec}");
            assert!(rec.maybe_applied(), "{rec}");
        }
    }
}

/// A record's `status` is 100–599 (the schema's bounds); hyper accepts any
/// three digits, so a `999` is a `protocol` failure. (Was: recorded as
/// status 999, breaking the result schema.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_status_beyond_599_does_not_break_the_schema() {
    let raw = RawServer::start(|_| Act::Keep(response("999 Weird", &[], b"odd"))).await;
    let out = Sluice::run(Vec::<&str>::new())
        .stdin(lines(&[format!("{}/x", raw.url)]))
        .output()
        .await;
    out.code(1);
    for rec in out.unchecked_records() {
        let errors = schema_errors(&rec);
        assert!(errors.is_empty(), "{rec}: {errors:?}");
        assert_eq!(kind(&rec), "protocol", "{rec}");
    }
}

/// `--http2` (prior knowledge) to a server that answers in HTTP/1.1: the
/// garbage frames are a `protocol` violation, never retried.
/// (Was: classified `reset` and retried `--retries` times.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_framing_garbage_is_a_protocol_error() {
    // The connection stays open, so the client always reads the garbage
    // (not an early close, which is a `reset`).
    // hyper may also cancel the request queued on the dying connection
    // before it is sent (`reset`, rightly retried); what must never be
    // retried is the attempt that read the garbage.
    let raw = RawServer::start(|_| Act::Keep(ok("I speak HTTP/1.1"))).await;
    let out = Sluice::run([
        "-v",
        "--http2",
        "--retries",
        "5",
        "--backoff-initial",
        "5ms",
    ])
    .stdin(lines(&[format!("{}/x", raw.url)]))
    .output()
    .await;
    out.code(1);
    let rec = &out.results()[0];
    assert_eq!(kind(rec), "protocol", "{rec}");
    assert!(
        !out.stderr.contains("failed (protocol"),
        "a protocol failure was retried:\n{}",
        out.stderr
    );
}

/// A connection that closes before any response is `reset`
/// (retried for a GET), over HTTPS as over plain HTTP. (Was: a TLS peer
/// closing without close_notify — a crash, most load balancers — surfaced
/// as io `UnexpectedEof`, classified `protocol`: never retried.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_connection_dropped_before_the_response_is_a_reset() {
    // The server reads each request, then drops the connection without a
    // response and without TLS close_notify, as crashing servers and many
    // load balancers do.
    let raw = RawServer::start_tls(crate::support::raw::self_signed(), |_| Act::Close).await;
    let url = &raw.url;
    let out = Sluice::run(["-k", "--retries", "2", "--backoff-initial", "5ms"])
        .stdin(lines(&[format!("{url}/x")]))
        .output()
        .await;
    out.code(1);
    let rec = &out.results()[0];
    assert_eq!(kind(rec), "reset", "{rec}");
    assert_eq!(rec.attempts, 3, "{rec}");
    assert_eq!(raw.total(), 3);
}

/// Headers trickling in (slow-loris) and a body slower than `--timeout`
/// both end in `timeout`, on time, once per attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_headers_and_slow_bodies_time_out() {
    let raw = RawServer::start(|req| {
        if req.path == "/slow-headers" {
            Act::Stream {
                head: b"HTTP/1.1 200 OK\r\n".to_vec(),
                piece: b"X-Slow: v\r\n".to_vec(),
                every: std::time::Duration::from_millis(50),
                limit: 2000,
            }
        } else {
            Act::Stream {
                head: b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n".to_vec(),
                piece: b"x".to_vec(),
                every: std::time::Duration::from_millis(50),
                limit: 100,
            }
        }
    })
    .await;
    let input = lines(&[
        format!("{}/slow-headers", raw.url),
        format!("{}/slow-body", raw.url),
    ]);
    let started = std::time::Instant::now();
    let out = Sluice::run([
        "--timeout",
        "300ms",
        "--retries",
        "1",
        "--backoff-initial",
        "5ms",
    ])
    .stdin(input)
    .output()
    .await;
    out.code(1);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    for rec in out.results() {
        assert_eq!(rec.kind(), "timeout", "{rec}");
        assert_eq!(rec.attempts, 2, "{rec}");
        let ms = rec.duration_ms;
        assert!((600.0..3000.0).contains(&ms), "{rec}");
    }
    assert_eq!(raw.requests("/slow-headers"), 2);
    assert_eq!(raw.requests("/slow-body"), 2);
}

/// `connect` covers a connect-phase timeout; `maybe_applied` is
/// only for requests that were written. A TLS handshake that never
/// completes, under a `--timeout` shorter than `--connect-timeout` (the
/// default is 10s, so `--timeout 5s` does it), is `connect` and retried,
/// even for a POST. (Was: `timeout` with `maybe_applied: true`, not retried.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connect_phase_stall_is_a_connect_failure() {
    let server = RawServer::silent().await;
    let addr = &server.addr;
    let input = format!(r#"{{"method":"POST","url":"https://{addr}/x","body":{{"a":1}}}}"#);
    let out = Sluice::run([
        "--timeout",
        "400ms",
        "--retries",
        "1",
        "--backoff-initial",
        "5ms",
    ])
    .stdin(lines(&[input]))
    .output()
    .await;
    out.code(1);
    let rec = &out.results()[0];
    assert_eq!(kind(rec), "connect", "{rec}");
    assert!(
        rec.error
            .as_ref()
            .is_some_and(|e| e.maybe_applied.is_none()),
        "nothing was written: {rec}"
    );
    assert_eq!(rec.attempts, 2, "connect is retried even for POST: {rec}");
    assert_eq!(server.accepts(), 2);
}
