//! Every documented option of `sluice run` is accepted, and `--report` writes its
//! self-contained HTML.

use crate::support::*;

/// Each option with a valid value, checked by a dry run over one good line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_option_is_accepted() {
    let dir = tempdir();
    let out_file = dir.path().join("out.jsonl").display().to_string();
    let summary = dir.path().join("summary.json").display().to_string();
    let cases: Vec<Vec<&str>> = vec![
        vec!["-o", &out_file],
        vec!["--output", &out_file, "--overwrite"],
        vec!["-c", "3"],
        vec!["--concurrency", "3"],
        vec!["--per-host-concurrency", "2"],
        vec!["--rate", "50/s"],
        vec!["--rate", "3000/m"],
        vec!["--per-host-rate", "100000/h"],
        vec!["--rate", "5/s", "--burst", "4"],
        vec!["--budget", "90000/m", "--budget-burst", "1000"],
        vec!["--timeout", "30s"],
        vec!["--timeout", "500ms"],
        vec!["--timeout", "5m"],
        vec!["--connect-timeout", "10s"],
        vec!["--retries", "0"],
        vec!["--retry-on", "408,429,500-599,timeout,connect,dns,reset"],
        vec!["--retry-non-idempotent"],
        vec!["--backoff-initial", "100ms", "--backoff-max", "2s"],
        vec!["--max-retry-after", "1m"],
        vec!["--halt-after", "0"],
        vec!["-H", "X-A: 1", "--header", "X-B: 2"],
        vec!["--base-url", "http://127.0.0.1:9/v1"],
        vec!["--ordered", "--reorder-window", "8"],
        vec!["--resume", "-o", &out_file],
        vec!["--resume", "--retry-failed", "-o", &out_file],
        vec!["--fsync"],
        vec!["--body", "none"],
        vec!["--max-body-size", "16MiB"],
        vec!["--include-headers"],
        vec!["--redact", "session", "--redact", "X-Other"],
        vec!["--progress", "never"],
        vec!["--progress", "always"],
        vec!["-q"],
        vec!["-v"],
        vec!["--summary-json", &summary],
        vec!["-k"],
        vec!["--insecure"],
        vec!["--proxy", "http://127.0.0.1:9"],
        vec!["--no-proxy"],
        vec!["--http2"],
        vec!["--compressed"],
    ];
    for args in cases {
        let mut all = vec!["--dry-run"];
        all.extend(&args);
        let out = Sluice::run(all)
            .stdin("http://127.0.0.1:9/x\n")
            .output()
            .await;
        assert_eq!(out.code, 0, "{args:?}: {}", out.stderr);
    }
}

/// `--report FILE.html`: a self-contained HTML report, secrets redacted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_writes_self_contained_html() {
    let server = mock().await;
    let dir = tempdir();
    let report = dir.path().join("report.html");
    let input = lines(&[
        format!("{}/fast?api_key=SECRET_R", server.url()),
        format!("{}/status/404", server.url()),
    ]);
    let out = Sluice::run(["-q".as_ref(), "--report".as_ref(), report.as_os_str()])
        .stdin(input)
        .output()
        .await;
    out.code(1);
    let html = std::fs::read_to_string(&report).expect("the report file");
    assert!(html.to_ascii_lowercase().contains("<html"), "{html}");
    assert!(!html.contains("SECRET_R"), "a secret in the report");
    for external in ["<script src=\"http", "<link rel=\"stylesheet\" href=\"http"] {
        assert!(!html.contains(external), "not self-contained: {external}");
    }
    server.shutdown().await;
}
