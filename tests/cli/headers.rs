//! `-H` headers (environment expansion, refusals, overrides) and secrets.

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_values_read_the_environment() {
    let server = mock().await;
    let m = server.url();
    let input = lines(&[
        format!("{m}/echo"),
        format!(r#"{{"url":"{m}/echo","headers":{{"x-token":"from-line"}}}}"#),
    ]);
    let out = Sluice::run(["-H", "X-Token: t=${SLUICE_T};", "-H", "X-Plain: p"])
        .env("SLUICE_T", "value-42")
        .stdin(input)
        .output()
        .await;
    out.code(0);
    let recs = by_line(&out.results());
    let sent = &recs[&1].body_json()["headers"];
    assert_eq!(header(sent, "x-token"), Some("t=value-42;"));
    assert_eq!(header(sent, "x-plain"), Some("p"));
    // A line's header replaces a -H header of the same name, any case.
    let sent = &recs[&2].body_json()["headers"];
    assert_eq!(header(sent, "x-token"), Some("from-line"));
    assert_eq!(header(sent, "x-plain"), Some("p"));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_header_options_exit_2_without_sending() {
    let server = mock().await;
    let input = format!("{}/echo\n", server.url());
    let cases: [&[&str]; 5] = [
        &["-H", "X-Token: ${SLUICE_UNSET_VARIABLE}"],
        &["-H", "X: a\r\nY: b"],
        &["-H", "X: a\nY: b"],
        &["-H", "X: ${SLUICE_CRLF}"],
        &["-H", "NoColonHere"],
    ];
    for args in cases {
        let out = Sluice::run(args.iter().copied())
            .env_remove("SLUICE_UNSET_VARIABLE")
            .env("SLUICE_CRLF", "a\r\nInjected: b")
            .stdin(input.clone())
            .output()
            .await;
        assert_eq!(out.code, 2, "{args:?}: {}", out.stderr);
        assert!(!out.stderr.is_empty());
        assert_eq!(out.stdout, "");
    }
    assert_eq!(server.stats().requests, 0);
    server.shutdown().await;
}

/// Secret query parameters and userinfo are REDACTED in records, logs,
/// errors and the summary; secret request headers never show.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_leave_redacted() {
    let server = mock().await;
    let m = server.url();
    let host = server.addr().to_string();
    let closed = closed_port_url();
    let dir = tempdir();
    let results = dir.path().join("results.jsonl");
    let summary = dir.path().join("summary.json");
    let input = lines(&[
        format!("{m}/fast?api_key=SECRET_Q1&x=1"),
        format!("http://user:SECRET_U@{host}/fast"),
        format!("{m}/status/404?token=SECRET_Q2&session=SECRET_Q3"),
        format!("{closed}/x?key=SECRET_Q4&access_token=SECRET_Q5"),
        format!(r#"{{"url":"{m}/fast?apikey=SECRET_Q6","headers":{{"X-Api-Key":"SECRET_H2"}}}}"#),
        format!("{m}/status/404?api_key=SECRET_Q7\u{1}"),
    ]);
    let out = Sluice::run([
        "-v".as_ref(),
        "--retries".as_ref(),
        "1".as_ref(),
        "--backoff-initial".as_ref(),
        "10ms".as_ref(),
        "--redact".as_ref(),
        "session".as_ref(),
        "-H".as_ref(),
        "Authorization: Bearer SECRET_H1".as_ref(),
        "-H".as_ref(),
        "Cookie: c=SECRET_H3".as_ref(),
        "-o".as_ref(),
        results.as_os_str(),
        "--summary-json".as_ref(),
        summary.as_os_str(),
    ])
    .stdin(input)
    .output()
    .await;
    out.code(1);
    let written = std::fs::read_to_string(&results).unwrap();
    let summary = std::fs::read_to_string(&summary).unwrap();
    for (what, text) in [
        ("stdout", &out.stdout),
        ("stderr", &out.stderr),
        ("output", &written),
        ("summary", &summary),
    ] {
        assert!(!text.contains("SECRET_"), "a secret in {what}:\n{text}");
    }
    let recs = by_line(&parse_results(&written));
    assert_eq!(recs.len(), 6);
    assert_eq!(
        recs[&1].url.as_deref(),
        Some(&*format!("{m}/fast?api_key=REDACTED&x=1"))
    );
    let userinfo = recs[&2].url.as_deref().unwrap();
    assert!(userinfo.contains("REDACTED"), "{userinfo}");
    assert!(recs[&2].ok);
    assert_eq!(
        recs[&3].url.as_deref(),
        Some(&*format!("{m}/status/404?token=REDACTED&session=REDACTED"))
    );
    assert_eq!(
        recs[&4].url.as_deref(),
        Some(&*format!("{closed}/x?key=REDACTED&access_token=REDACTED"))
    );
    assert_eq!(kind(&recs[&4]), "connect");
    assert_eq!(
        recs[&5].url.as_deref(),
        Some(&*format!("{m}/fast?apikey=REDACTED"))
    );
    assert_eq!(
        kind(&recs[&6]),
        "invalid_request",
        "a control character in a URL"
    );
    assert_eq!(server.stats().requests, 4);
    server.shutdown().await;
}

/// Response headers are recorded with `--include-headers`, secret ones as
/// REDACTED.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recorded_response_headers_are_redacted() {
    let url = fixed_server(
        b"HTTP/1.1 200 OK\r\n\
          Content-Type: text/plain\r\n\
          Set-Cookie: session=SECRET_C1\r\n\
          Authorization: Bearer SECRET_C2\r\n\
          X-Secret-Thing: SECRET_C3\r\n\
          X-Visible: shown\r\n\
          Content-Length: 2\r\n\
          Connection: close\r\n\r\nhi",
    )
    .await;
    let out = Sluice::run(["--include-headers", "--redact", "X-Secret-Thing"])
        .stdin(format!("{url}/anything\n"))
        .output()
        .await;
    out.code(0);
    assert!(!out.stdout.contains("SECRET_"), "{}", out.stdout);
    assert!(!out.stderr.contains("SECRET_"), "{}", out.stderr);
    let rec = &out.results()[0];
    assert_eq!(rec.header("set-cookie"), Some("REDACTED"), "{rec}");
    assert_eq!(rec.header("authorization"), Some("REDACTED"), "{rec}");
    assert_eq!(rec.header("x-secret-thing"), Some("REDACTED"), "{rec}");
    assert_eq!(rec.header("x-visible"), Some("shown"), "{rec}");
    assert_eq!(rec.header("content-type"), Some("text/plain"), "{rec}");
    assert_eq!(rec.body_json(), "hi");

    let out = Sluice::run(Vec::<&str>::new())
        .stdin(format!("{url}/anything\n"))
        .output()
        .await;
    out.code(0);
    assert!(
        out.results()[0].headers.is_none(),
        "headers only on request"
    );
}

/// CR/LF in header names, values and URLs is refused, never smuggled or
/// silently stripped; `${VAR}` in input is sent literally (only `-H`
/// expands the environment).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injection_is_refused_and_input_is_never_expanded() {
    let server = mock().await;
    let m = server.url();
    let input = lines(&[
        format!(r#"{{"url":"{m}/echo","headers":{{"X-A":"v\r\nX-Injected: 1"}}}}"#),
        format!(r#"{{"url":"{m}/echo","headers":{{"X-A\r\nX-Injected":"1"}}}}"#),
        format!(r#"{{"url":"{m}/echo\r\nX-Injected: 1"}}"#),
        format!(r#"{{"url":"{m}/echo\tx"}}"#),
        format!(
            r#"{{"url":"{m}/echo?q=${{HOME}}","headers":{{"X-Env":"${{HOME}}"}},"body_text":"${{HOME}}"}}"#
        ),
    ]);
    let out = Sluice::run(Vec::<&str>::new())
        .env("HOME", "/home/SHOULD_NOT_APPEAR")
        .stdin(input)
        .output()
        .await;
    out.code(1);
    let recs = by_line(&out.results());
    for line in 1..=4 {
        assert_eq!(
            recs[&line].kind(),
            "invalid_request",
            "line {line}: {}",
            recs[&line]
        );
    }
    let echo = recs[&5].body.clone().unwrap_or_default();
    assert_eq!(header(&echo["headers"], "x-env"), Some("${HOME}"), "{echo}");
    assert_eq!(echo["body"], "${HOME}", "{echo}");
    assert_eq!(echo["query"]["q"], "${HOME}", "{echo}");
    assert!(!out.stdout.contains("SHOULD_NOT_APPEAR"));
    assert_eq!(server.stats().requests, 1, "nothing else was sent");
    server.shutdown().await;
}

/// Input lines may not set framing headers; `-H` may not either.
/// (Was: `-H 'Content-Length: 5'` made hyper send 5 bytes of an 11-byte POST
/// body, recorded `ok`, and made a GET hang until its timeout.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn framing_headers_from_the_command_line_are_refused() {
    let raw = RawServer::start(|_| Act::Keep(ok("fine"))).await;
    let input = lines(&[format!(
        r#"{{"method":"POST","url":"{}/p","body_text":"hello world"}}"#,
        raw.url
    )]);
    let out = Sluice::run(["-H", "Content-Length: 5"])
        .stdin(input)
        .output()
        .await;
    out.code(2);
    assert_eq!(raw.total(), 0, "nothing may be sent");
}
