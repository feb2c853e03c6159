//! The output file, exit statuses, and failures before anything is sent.

use std::path::Path;

use crate::support::*;

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).expect("read the output file")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_file_is_written_refused_when_full_and_overwritten_on_request() {
    let server = mock().await;
    let m = server.url();
    let dir = tempdir();
    let results = dir.path().join("results.jsonl");
    let input = lines(&[format!("{m}/fast"), format!("{m}/fast?second")]);

    // A fresh file: results go there, not to stdout.
    let out = Sluice::run(["-o".as_ref(), results.as_os_str()])
        .stdin(input.clone())
        .output()
        .await;
    out.code(0);
    assert_eq!(out.stdout, "", "records go to the file");
    let first = read(&results);
    assert_eq!(by_line(&parse_results(&first)).len(), 2);
    assert_eq!(server.stats().requests, 2);

    // The file now holds results: refused, nothing sent, file untouched.
    server.reset_stats();
    let out = Sluice::run(["-o".as_ref(), results.as_os_str()])
        .stdin(input.clone())
        .output()
        .await;
    out.code(2);
    assert!(!out.stderr.is_empty(), "the refusal is explained");
    assert_eq!(server.stats().requests, 0);
    assert_eq!(read(&results), first);

    // --overwrite replaces it.
    let out = Sluice::run(["--overwrite".as_ref(), "-o".as_ref(), results.as_os_str()])
        .stdin(format!("{m}/status/404\n"))
        .output()
        .await;
    out.code(1);
    let recs = parse_results(&read(&results));
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].status, Some(404));
    assert_eq!(server.stats().requests, 1);

    // An existing empty file is fine.
    let empty = write_file(dir.path(), "empty.jsonl", "");
    let out = Sluice::run(["-o".as_ref(), empty.as_os_str()])
        .stdin(input.clone())
        .output()
        .await;
    out.code(0);
    assert_eq!(parse_results(&read(&empty)).len(), 2);

    // `-o -` is stdout.
    let out = Sluice::run(["-o", "-"]).stdin(input).output().await;
    out.code(0);
    assert_eq!(out.results().len(), 2);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_input_fails_before_anything_is_sent() {
    let server = mock().await;
    let dir = tempdir();
    let present = write_file(
        dir.path(),
        "present.txt",
        format!("{}/fast\n", server.url()),
    );
    let missing = dir.path().join("missing.txt");
    let results = dir.path().join("results.jsonl");
    let out = Sluice::run([
        "-o".as_ref(),
        results.as_os_str(),
        present.as_os_str(),
        missing.as_os_str(),
    ])
    .output()
    .await;
    out.code(2);
    assert!(
        out.stderr.contains("missing.txt"),
        "names the file: {}",
        out.stderr
    );
    assert_eq!(server.stats().requests, 0);

    // A directory is no input either.
    let out = Sluice::run([
        "-o".as_ref(),
        results.as_os_str(),
        present.as_os_str(),
        dir.path().as_os_str(),
    ])
    .output()
    .await;
    out.code(2);
    assert_eq!(server.stats().requests, 0);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unwritable_output_fails_before_anything_is_sent() {
    let server = mock().await;
    let dir = tempdir();
    let input = format!("{}/fast\n", server.url());
    let nowhere = dir.path().join("no-such-dir").join("x.jsonl");
    for target in [dir.path(), nowhere.as_path()] {
        let out = Sluice::run(["-o".as_ref(), target.as_os_str()])
            .stdin(input.clone())
            .output()
            .await;
        out.code(2);
        assert_eq!(out.stdout, "");
        assert_eq!(server.stats().requests, 0, "-o {}", target.display());
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_write_stops_with_exit_3() {
    let server = mock().await;
    let dir = tempdir();
    let summary = dir.path().join("summary.json");
    let out = Sluice::run([
        "-o".as_ref(),
        "/dev/full".as_ref(),
        "--summary-json".as_ref(),
        summary.as_os_str(),
    ])
    .stdin(format!("{}/fast\n", server.url()))
    .output()
    .await;
    out.code(3);
    assert_eq!(server.stats().requests, 1);
    // The record was lost, but the request was sent: the summary counts its
    // attempt and shows no rate (not "0 requests ... 39.0 req/s", nor
    // "nothing sent").
    assert!(
        out.stderr
            .contains("sluice: 0 requests: 0 ok, 0 failed in ")
            && out.stderr.contains("(none recorded)")
            && out.stderr.contains("attempts 1 (0 retries)"),
        "{}",
        out.stderr
    );
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&summary).expect("summary")).expect("json");
    assert_eq!(json["requests_per_second"], 0.0, "{json}");
    assert_eq!(json["attempts"], 1, "{json}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_stdout_stops_with_exit_3() {
    let server = mock().await;
    let out = Sluice::run(Vec::<&str>::new())
        .stdin(format!("{}/fast\n", server.url()))
        .close_stdout()
        .output()
        .await;
    out.code(3);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_errors_exit_2_without_sending() {
    let server = mock().await;
    let input = format!("{}/fast\n", server.url());
    let cases: &[&[&str]] = &[
        &["--no-such-option"],
        &["-c", "0"],
        &["--rate", "fast"],
        &["--timeout", "soon"],
        &["--retry-on", "tls"],
        &["--body", "xml"],
        &["--base-url", "not a url"],
    ];
    for args in cases {
        let out = Sluice::run(args.iter().copied())
            .stdin(input.clone())
            .output()
            .await;
        assert_eq!(out.code, 2, "{args:?}: {}", out.stderr);
        assert_eq!(out.stdout, "", "{args:?}");
    }
    assert_eq!(server.stats().requests, 0);
    server.shutdown().await;
}

/// The summary goes to stderr; `-q` silences it; `--summary-json` is JSON.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn summary_on_stderr_quiet_and_json() {
    let server = mock().await;
    let dir = tempdir();
    let summary = dir.path().join("summary.json");
    let input = lines(&[format!("{}/fast", server.url())]);

    let out = Sluice::run(Vec::<&str>::new())
        .stdin(input.clone())
        .output()
        .await;
    out.code(0);
    assert!(!out.stderr.is_empty(), "a summary on stderr");

    let out = Sluice::run([
        "-q".as_ref(),
        "--summary-json".as_ref(),
        summary.as_os_str(),
    ])
    .stdin(input)
    .output()
    .await;
    out.code(0);
    assert_eq!(out.stderr, "", "-q silences progress and summary");
    assert_eq!(out.records().len(), 1);
    let text = std::fs::read_to_string(&summary).expect("the summary file");
    let json: serde_json::Value = serde_json::from_str(&text).expect("summary JSON");
    assert!(json.is_object(), "{json}");
    server.shutdown().await;
}

/// Standard error going away (`sluice run -v -o out.jsonl 2>&1 | head`, a
/// log shipper that dies) costs no records. (Was: the first failed write
/// to stderr panicked, exit 101, and the records of requests already
/// answered never reached the output file, so `--resume` sent them again.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_stderr_loses_no_records() {
    let raw = RawServer::start(|_| Act::Keep(ok("fine"))).await;
    let dir = tempdir();
    let results = dir.path().join("out.jsonl");
    let input = lines(
        &(0..300)
            .map(|i| format!("{}/x{i}", raw.url))
            .collect::<Vec<_>>(),
    );
    let out = Sluice::run(["-v".as_ref(), "-o".as_ref(), results.as_os_str()])
        .close_stderr()
        .stdin(input)
        .output()
        .await;
    let code = out.code;
    let written = std::fs::read_to_string(&results)
        .unwrap_or_default()
        .lines()
        .count();
    assert_ne!(code, 101, "sluice panicked");
    assert!(
        written + 16 >= raw.total(),
        "the server answered {} requests, {written} records were written (exit {code})",
        raw.total()
    );
}
