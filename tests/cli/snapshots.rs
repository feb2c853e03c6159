//! What sluice shows a person, pinned whole as insta snapshots (committed
//! under `tests/cli/snapshots/`): the text summary of a run and of
//! `sluice report`, and the `--help` of sluice and of each command. A
//! change to any of them fails here until its `.snap` file is updated and
//! reviewed (`INSTA_UPDATE=always`, or `cargo insta review`); CI never
//! writes snapshots (`CI=true`, and `.ci/run` sets `INSTA_UPDATE=no`).
//! What varies from run to run (times, rates, ports) is filtered out.

use crate::report::known_records;
use crate::support::*;

/// Runs `sluice ARGS`, which must exit 0, and returns its standard output.
async fn help_of(args: &[&str]) -> String {
    let out = Sluice::new(args).output().await;
    out.code(0);
    out.stdout
}

/// The filters that make a summary the same from run to run: durations,
/// rates and the mock's port.
fn steady() -> insta::Settings {
    let mut settings = insta::Settings::clone_current();
    settings.add_filter(r"127\.0\.0\.1:\d+", "127.0.0.1:[PORT]");
    settings.add_filter(r"\d+(\.\d+)? req/s", "[RATE] req/s");
    settings.add_filter(r"\b\d+(\.\d+)?(µs|ms|s)\b", "[TIME]");
    settings
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sluice_help() {
    insta::assert_snapshot!(help_of(&["--help"]).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_help() {
    insta::assert_snapshot!(help_of(&["run", "--help"]).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_help() {
    insta::assert_snapshot!(help_of(&["report", "--help"]).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merge_help() {
    insta::assert_snapshot!(help_of(&["merge", "--help"]).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mock_help() {
    insta::assert_snapshot!(help_of(&["mock", "--help"]).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_help() {
    insta::assert_snapshot!(help_of(&["demo", "--help"]).await);
}

/// The summary of a run with every kind of line: ok, an HTTP failure kept
/// as it is, one retried then failed, and a line that is not a request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_summary() {
    let server = mock().await;
    let m = server.url();
    let input = lines(&[
        format!("{m}/fast"),
        format!("{m}/fast"),
        format!("{m}/status/404"),
        format!("{m}/status/500"),
        "not a url".to_string(),
    ]);
    // No retry budget: whether the retry waits for it depends on timing.
    let out = Sluice::run([
        "--retries",
        "1",
        "--backoff-initial",
        "5ms",
        "--retry-budget",
        "off",
    ])
    .stdin(input)
    .output()
    .await;
    out.code(1);
    steady().bind(|| insta::assert_snapshot!(out.stderr));
    server.shutdown().await;
}

/// `sluice report` over known records: the summary recomputed from a file
/// alone is fixed, to the millisecond.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_summary() {
    let dir = tempdir();
    let results = write_file(dir.path(), "results.jsonl", known_records());
    let out = Sluice::new(["report".as_ref(), results.as_os_str()])
        .output()
        .await;
    insta::assert_snapshot!(format!(
        "exit {}\n--- stdout\n{}--- stderr\n{}",
        out.code, out.stdout, out.stderr
    ));
}
