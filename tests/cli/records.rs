//! One record per request line: ids, line numbers across files, outcomes.

use serde_json::{Value, json};

use crate::support::*;

/// The whole input format and every record field, on one batch over two
/// input files.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_batch_gives_exactly_one_exact_record_per_request_line() {
    let server = mock().await;
    let m = server.url();
    let dir = tempdir();
    // File a: five lines, the last without a newline.
    let a = write_file(
        dir.path(),
        "a.jsonl",
        format!(
            "{{\"id\":\"s-1\",\"url\":\"{m}/fast\"}}\n\
             \n\
             # a comment\n\
             {{\"id\":42,\"url\":\"{m}/status/404\"}}\n\
             {{\"url\":\"{m}/status/500\"}}"
        ),
    );
    // File b: a BOM, a CRLF line, bad JSON, a relative URL without
    // --base-url, a blank-after-trim line, a URL line.
    let b = write_file(
        dir.path(),
        "b.jsonl",
        format!(
            "\u{feff}{{\"url\":\"{m}/delay/2\"}}\r\n\
             {{\"id\": \"x\", oops\n\
             {{\"url\":\"/fast\"}}\n   \t \n\
             {m}/fast?x=1\n"
        ),
    );
    let out = Sluice::run([
        "--retries".as_ref(),
        "1".as_ref(),
        "--backoff-initial".as_ref(),
        "10ms".as_ref(),
        "--timeout".as_ref(),
        "300ms".as_ref(),
        a.as_os_str(),
        b.as_os_str(),
    ])
    .output()
    .await;
    out.code(1);
    let recs = by_line(&out.records());
    assert_eq!(
        recs.keys().copied().collect::<Vec<_>>(),
        [1, 4, 5, 6, 7, 8, 10]
    );

    let ok = &recs[&1];
    assert_eq!(ok["id"], json!("s-1"));
    assert_eq!(ok["method"], "GET");
    assert_eq!(ok["url"], format!("{m}/fast"));
    assert_eq!(
        (ok["ok"].clone(), ok["status"].clone()),
        (json!(true), json!(200))
    );
    assert_eq!(ok["attempts"], 1);
    assert_eq!(ok["error"], Value::Null);
    assert_eq!(ok["body"], json!({"ok": true}));
    assert_eq!(ok["body_encoding"], "json");

    let not_found = &recs[&4];
    assert_eq!(not_found["id"], json!(42), "an integer id stays an integer");
    assert_eq!(not_found["ok"], false);
    assert_eq!(not_found["status"], 404);
    assert_eq!(not_found["attempts"], 1, "404 is not in --retry-on");
    assert_eq!(kind(not_found), "http_status");

    let server_error = &recs[&5];
    assert_eq!(server_error["id"], json!(5), "default id: the line number");
    assert_eq!(server_error["status"], 500);
    assert_eq!(server_error["attempts"], 2, "500 retried once");
    assert_eq!(kind(server_error), "http_status");

    let slow = &recs[&6];
    assert_eq!(slow["id"], json!(6), "a BOM and a CR do not spoil the line");
    assert_eq!(slow["status"], Value::Null);
    assert_eq!(slow["attempts"], 2, "timeout retried once");
    assert_eq!(kind(slow), "timeout");
    assert!(slow["duration_ms"].as_f64().unwrap() >= 600.0, "{slow}");

    let bad_json = &recs[&7];
    assert_eq!(bad_json["id"], json!(7));
    assert_eq!(kind(bad_json), "invalid_request");
    assert_eq!(bad_json["attempts"], 0);
    let msg = bad_json["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("b.jsonl:2"),
        "names the file and its own line: {msg}"
    );

    let relative = &recs[&8];
    assert_eq!(relative["id"], json!(8));
    assert_eq!(kind(relative), "invalid_request");
    assert_eq!(relative["attempts"], 0);
    let msg = relative["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("b.jsonl:3"),
        "names the file and its own line: {msg}"
    );

    let url_line = &recs[&10];
    assert_eq!(url_line["id"], json!(10));
    assert_eq!(url_line["method"], "GET");
    assert_eq!(url_line["url"], format!("{m}/fast?x=1"));
    assert_eq!(url_line["ok"], true);

    for rec in recs.values().filter(|r| r["attempts"] == 0) {
        assert_eq!(rec["ok"], false);
        assert_eq!(rec["status"], Value::Null);
    }
    let stats = server.stats();
    assert_eq!(path_requests(&server, "/fast"), 2);
    assert_eq!(path_requests(&server, "/status/404"), 1);
    assert_eq!(path_requests(&server, "/status/500"), 2);
    assert_eq!(path_requests(&server, "/delay/2"), 2);
    assert_eq!(stats.requests, 7, "{stats:?}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_ok_exits_zero_and_reads_stdin_by_default_or_as_dash() {
    let server = mock().await;
    let m = server.url();
    let input = lines(&[format!("{m}/fast"), format!("{m}/status/204")]);
    for args in [vec![], vec!["-"]] {
        let out = Sluice::run(args).stdin(input.clone()).output().await;
        out.code(0);
        let recs = by_line(&out.records());
        assert_eq!(recs.len(), 2);
        assert!(recs.values().all(|r| r["ok"] == true && r["attempts"] == 1));
        assert_eq!(recs[&2]["status"], 204);
    }
    assert_eq!(server.stats().requests, 4);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_id_is_an_alias_for_id() {
    let server = mock().await;
    let m = server.url();
    let input = lines(&[
        format!(r#"{{"custom_id":"req-1","url":"{m}/fast"}}"#),
        format!(r#"{{"id":"req-2","custom_id":"req-2","url":"{m}/fast"}}"#),
        format!(r#"{{"id":"a","custom_id":"b","url":"{m}/fast"}}"#),
        format!(r#"{{"id":12345678901234567890123,"url":"{m}/fast"}}"#),
        format!(r#"{{"id":77,"custom_id":"77","url":"{m}/fast"}}"#),
    ]);
    let out = Sluice::run(["-"]).stdin(input).output().await;
    out.code(1);
    let recs = by_line(&out.records());
    assert_eq!(recs[&1]["id"], "req-1");
    assert_eq!(recs[&1]["ok"], true);
    assert_eq!(recs[&2]["id"], "req-2");
    assert_eq!(recs[&2]["ok"], true);
    assert_eq!(
        kind(&recs[&3]),
        "invalid_request",
        "id and custom_id differ"
    );
    assert_eq!(recs[&3]["attempts"], 0);
    assert!(
        out.stdout
            .contains(r#""id":12345678901234567890123,"line":4"#),
        "a big integer id keeps its digits: {}",
        out.stdout
    );
    assert_eq!(recs[&4]["ok"], true);
    assert_eq!(
        recs[&5]["ok"], true,
        "77 and \"77\" are the same id: {}",
        recs[&5]
    );
    assert_eq!(server.stats().requests, 4);
    server.shutdown().await;
}

/// `--base-url` joins as httpx does: `https://h/v1` + `chat` or `/chat`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relative_urls_are_appended_to_the_base_url() {
    let server = mock().await;
    let m = server.url();
    let input = lines(&[
        r#"{"url":"404"}"#,
        r#"{"url":"/418"}"#,
        "/201",
        &format!("{m}/fast"),
    ]);
    let base = format!("{m}/status");
    let out = Sluice::run(["--base-url", &base, "--retries", "0"])
        .stdin(input)
        .output()
        .await;
    out.code(1);
    let recs = by_line(&out.records());
    assert_eq!(recs[&1]["url"], format!("{m}/status/404"));
    assert_eq!(recs[&1]["status"], 404);
    assert_eq!(recs[&2]["url"], format!("{m}/status/418"));
    assert_eq!(recs[&2]["status"], 418);
    assert_eq!(recs[&3]["url"], format!("{m}/status/201"));
    assert_eq!(recs[&3]["status"], 201);
    assert_eq!(recs[&4]["url"], format!("{m}/fast"), "absolute URLs stay");
    assert_eq!(server.stats().requests, 4);
    server.shutdown().await;
}

/// Each record of a request that carries a method and JSON body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_lines_send_method_headers_and_bodies() {
    let server = mock().await;
    let m = server.url();
    let input = lines(&[
        format!(r#"{{"method":"PUT","url":"{m}/echo","body":{{"n":1.50,"s":"x"}}}}"#),
        format!(
            r#"{{"method":"POST","url":"{m}/echo","headers":{{"Content-Type":"text/csv"}},"body_text":"a,b"}}"#
        ),
        format!(r#"{{"method":"POST","url":"{m}/echo","body_base64":"aGk="}}"#),
        format!(r#"{{"method":"DELETE","url":"{m}/echo"}}"#),
    ]);
    let out = Sluice::run(["-"]).stdin(input).output().await;
    out.code(0);
    let recs = by_line(&out.records());
    let echo = |line: u64| recs[&line]["body"].clone();
    assert_eq!(recs[&1]["method"], "PUT");
    assert_eq!(echo(1)["method"], "PUT");
    assert_eq!(
        echo(1)["body"],
        r#"{"n":1.50,"s":"x"}"#,
        "sent with its digits"
    );
    assert_eq!(
        header(&echo(1)["headers"], "content-type"),
        Some("application/json")
    );
    assert_eq!(echo(2)["body"], "a,b");
    assert_eq!(
        header(&echo(2)["headers"], "content-type"),
        Some("text/csv")
    );
    assert_eq!(echo(3)["body"], "hi");
    assert_eq!(echo(4)["method"], "DELETE");
    server.shutdown().await;
}

/// Input is a stream: a request starts, and its record is written, while
/// later input has not even been written yet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn input_is_streamed_and_records_are_written_as_they_complete() {
    let server = mock().await;
    let m = server.url();
    let dir = tempdir();
    let results = dir.path().join("results.jsonl");
    let (sluice, feed) = Sluice::run(["-o".as_ref(), results.as_os_str()]).feed();
    let child = sluice.spawn();
    feed.send(format!("{m}/fast?1\n").into_bytes()).unwrap();
    until(&server, "line 1 sent before the input ends", |s| {
        s.requests == 1
    })
    .await;
    wait_for("line 1 written before the input ends", || {
        std::fs::read_to_string(&results).is_ok_and(|t| t.ends_with("}\n"))
    })
    .await;
    feed.send(format!("{m}/fast?2\n").into_bytes()).unwrap();
    drop(feed);
    let out = child.finish().await;
    out.code(0);
    let recs = by_line(&parse_records(&std::fs::read_to_string(&results).unwrap()));
    assert_eq!(recs.keys().copied().collect::<Vec<_>>(), [1, 2]);
    assert_eq!(server.stats().requests, 2);
    server.shutdown().await;
}

/// A line that is not UTF-8 is a bad line, not the end of the input.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_line_that_is_not_utf8_is_an_invalid_request() {
    let server = mock().await;
    let m = server.url();
    let mut input = format!("{m}/fast?").into_bytes();
    input.extend_from_slice(b"\xff\xfe\n");
    input.extend_from_slice(format!("{m}/fast\n").as_bytes());
    let out = Sluice::run(Vec::<&str>::new()).stdin(input).output().await;
    out.code(1);
    let recs = by_line(&out.records());
    assert_eq!(kind(&recs[&1]), "invalid_request", "{}", recs[&1]);
    assert_eq!(recs[&2]["ok"], true);
    assert_eq!(server.stats().requests, 1);
    server.shutdown().await;
}

/// Ids that overflow every integer type, ids that are objects, a 70 MB line
/// and 100 000 nested brackets: each is one record, the run goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_ids_huge_lines_and_deep_nesting_are_single_records() {
    let raw = RawServer::start(|_| Act::Keep(ok("fine"))).await;
    let u = &raw.url;
    let mut input = Vec::new();
    input.extend_from_slice(format!("{{\"id\":1e400,\"url\":\"{u}/a\"}}\n").as_bytes());
    input.extend_from_slice(
        format!("{{\"id\":18446744073709551616,\"url\":\"{u}/b\"}}\n").as_bytes(),
    );
    input.extend_from_slice(
        format!("{{\"id\":\"18446744073709551616\",\"url\":\"{u}/c\"}}\n").as_bytes(),
    );
    input.extend_from_slice(format!("{{\"id\":{{\"a\":1}},\"url\":\"{u}/d\"}}\n").as_bytes());
    input.extend_from_slice(format!("{{\"url\":\"{u}/e\",\"body_text\":\"").as_bytes());
    input.extend(std::iter::repeat_n(b'a', 70_000_000));
    input.extend_from_slice(b"\"}\n");
    input.extend(std::iter::repeat_n(b'[', 100_000));
    input.push(b'\n');
    input.extend_from_slice(format!("{{\"url\":\"{u}/g\",\"x\":").as_bytes());
    input.extend(std::iter::repeat_n(b'[', 100_000));
    input.extend(std::iter::repeat_n(b']', 100_000));
    input.extend_from_slice(b"}\n");
    input.extend_from_slice(format!("{u}/h\n").as_bytes());
    let out = Sluice::run(Vec::<&str>::new()).stdin(input).output().await;
    out.code(1);
    let recs = by_line(&out.results());
    assert_eq!(recs.len(), 8, "one record per line");
    assert_eq!(recs[&1].kind(), "invalid_request", "{}", recs[&1]);
    assert!(recs[&2].ok, "{}", recs[&2]);
    assert!(
        out.stdout.contains(r#""id":18446744073709551616,"#),
        "a big integer id keeps its digits"
    );
    assert_eq!(
        recs[&3].kind(),
        "duplicate_id",
        "ids compare as text: {}",
        recs[&3]
    );
    for line in [4, 5, 6, 7] {
        assert_eq!(
            recs[&line].kind(),
            "invalid_request",
            "line {line}: {}",
            recs[&line]
        );
    }
    assert!(recs[&8].ok);
    assert_eq!(raw.total(), 2, "only /b and /h were sent");
}
