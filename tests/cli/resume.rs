//! `--resume`: after a crash, exactly one record per request line, and only
//! lines without a record are sent.

use std::path::{Path, PathBuf};

use crate::support::*;

/// A test upstream, its URL, a temporary directory and a results path in it.
async fn setup() -> (sluice_mock::MockServer, String, tempfile::TempDir, PathBuf) {
    let server = mock().await;
    let m = server.url();
    let dir = tempdir();
    let results = dir.path().join("results.jsonl");
    (server, m, dir, results)
}

fn read_records(path: &Path) -> Vec<Record> {
    parse_results(&std::fs::read_to_string(path).expect("read the output file"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_repairs_a_torn_line_and_sends_only_what_is_missing() {
    let (server, m, dir, results) = setup().await;
    let input = write_file(
        dir.path(),
        "in.txt",
        lines(
            &(1..=6)
                .map(|i| format!("{m}/fast?n={i}"))
                .collect::<Vec<_>>(),
        ),
    );
    let args = |extra: &[&str]| Sluice::to_file(&results, &input, extra);
    args(&[]).output().await.code(0);
    let first = by_line(&read_records(&results));
    assert_eq!(first.len(), 6);

    // A crash: lines 1 and 3 were written, line 4 only in part.
    let torn = first[&4].to_string();
    let crashed = format!("{}\n{}\n{}", first[&1], first[&3], &torn[..torn.len() / 2]);
    std::fs::write(&results, crashed).unwrap();
    server.reset_stats();
    let out = args(&["--resume"]).output().await;
    out.code(0);
    let after = by_line(&read_records(&results));
    assert_eq!(
        after.keys().copied().collect::<Vec<_>>(),
        [1, 2, 3, 4, 5, 6]
    );
    assert_eq!(after[&1], first[&1], "old records are kept as they were");
    assert_eq!(after[&3], first[&3]);
    assert_eq!(server.stats().requests, 4, "lines 2, 4, 5 and 6 only");

    // Everything recorded: a resumed run sends nothing.
    server.reset_stats();
    args(&["--resume"]).output().await.code(0);
    assert_eq!(read_records(&results).len(), 6);
    assert_eq!(server.stats().requests, 0);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_failed_resends_failures_and_replaces_their_records() {
    let (server, m, dir, results) = setup().await;
    let input = write_file(
        dir.path(),
        "in.txt",
        lines(&[
            format!("{m}/fail/1/r?status=500"),
            format!("{m}/fast"),
            "{bad json".to_string(),
            format!(r#"{{"id":2,"url":"{m}/fast"}}"#),
        ]),
    );
    let args = |extra: &[&str]| {
        let extra: Vec<&str> = extra.iter().copied().chain(["--retries", "0"]).collect();
        Sluice::to_file(&results, &input, &extra)
    };
    // --resume with no output file yet starts one.
    args(&["--resume"]).output().await.code(1);
    let first = by_line(&read_records(&results));
    assert_eq!(first[&1].status, Some(500));
    assert_eq!(kind(&first[&3]), "invalid_request");
    assert_eq!(kind(&first[&4]), "duplicate_id");

    assert_eq!(server.stats().requests, 2);

    // Plain --resume keeps the failure. (No stats reset here: it would also
    // reset the /fail counter.)
    args(&["--resume"]).output().await.code(1);
    assert_eq!(server.stats().requests, 2);

    let out = args(&["--resume", "--retry-failed"]).output().await;
    out.code(1);
    let after = by_line(&read_records(&results));
    assert_eq!(after.len(), 4, "one record per line");
    assert!(after[&1].ok, "{}", after[&1]);
    assert_eq!(after[&2], first[&2]);
    assert_eq!(kind(&after[&3]), "invalid_request", "input errors stay");
    assert_eq!(kind(&after[&4]), "duplicate_id");
    assert_eq!(server.stats().requests, 3, "only the failed line again");
    server.shutdown().await;
}

/// A record whose id differs from its line's id means the input changed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_over_changed_input_exits_2() {
    let (server, m, dir, results) = setup().await;
    let before = write_file(
        dir.path(),
        "before.jsonl",
        lines(&[
            format!(r#"{{"id":"a","url":"{m}/fast"}}"#),
            format!(r#"{{"id":"b","url":"{m}/fast"}}"#),
        ]),
    );
    let changed = write_file(
        dir.path(),
        "changed.jsonl",
        lines(&[
            format!(r#"{{"id":"x","url":"{m}/fast"}}"#),
            format!(r#"{{"id":"b","url":"{m}/fast"}}"#),
            format!(r#"{{"id":"c","url":"{m}/fast"}}"#),
        ]),
    );
    Sluice::run(["-o".as_ref(), results.as_os_str(), before.as_os_str()])
        .output()
        .await
        .code(0);
    let written = std::fs::read_to_string(&results).unwrap();
    server.reset_stats();
    let out = Sluice::run([
        "--resume".as_ref(),
        "-o".as_ref(),
        results.as_os_str(),
        changed.as_os_str(),
    ])
    .output()
    .await;
    out.code(2);
    assert_eq!(server.stats().requests, 0);
    assert_eq!(std::fs::read_to_string(&results).unwrap(), written);
    server.shutdown().await;
}

/// On standard input the check happens as lines stream, but the lines of a
/// block that holds records wait for it, so a changed input still sends
/// nothing: exit 2, the file untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_over_changed_stdin_exits_2_having_sent_nothing() {
    let (server, m, _dir, results) = setup().await;
    let before = lines(&[
        format!(r#"{{"id":"a","url":"{m}/fast"}}"#),
        format!(r#"{{"id":"b","url":"{m}/fast"}}"#),
    ]);
    Sluice::run(["-o".as_ref(), results.as_os_str()])
        .stdin(before.clone())
        .output()
        .await
        .code(0);
    let written = std::fs::read_to_string(&results).unwrap();
    server.reset_stats();
    let changed = lines(&[
        format!(r#"{{"id":"a","url":"{m}/fast"}}"#),
        format!(r#"{{"id":"x","url":"{m}/fast"}}"#),
        format!(r#"{{"id":"c","url":"{m}/fast"}}"#),
    ]);
    let out = Sluice::run(["--resume".as_ref(), "-o".as_ref(), results.as_os_str()])
        .stdin(changed)
        .output()
        .await;
    out.code(2);
    assert!(out.stderr.contains("input changed"), "{}", out.stderr);
    assert_eq!(server.stats().requests, 0);
    assert_eq!(std::fs::read_to_string(&results).unwrap(), written);
    // The same input, grown by a line, resumes: only the new line is sent.
    let grown = format!("{before}{{\"id\":\"c\",\"url\":\"{m}/fast\"}}\n");
    Sluice::run(["--resume".as_ref(), "-o".as_ref(), results.as_os_str()])
        .stdin(grown)
        .output()
        .await
        .code(0);
    assert_eq!(server.stats().requests, 1);
    assert_eq!(
        std::fs::read_to_string(&results).unwrap().lines().count(),
        3
    );
    server.shutdown().await;
}

/// Results reach the file while the run goes on, so a `kill -9` loses only
/// what was in flight, and `--resume` sends exactly that again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_kill_9_resume_sends_only_the_unrecorded_lines() {
    let (server, m, dir, results) = setup().await;
    let input = write_file(
        dir.path(),
        "in.txt",
        lines(&[
            format!("{m}/fast"),
            format!("{m}/hang"),
            format!("{m}/fast?3"),
        ]),
    );
    let child = Sluice::run([
        "-c".as_ref(),
        "3".as_ref(),
        "-o".as_ref(),
        results.as_os_str(),
        input.as_os_str(),
    ])
    .spawn();
    wait_for("lines 1 and 3 written while line 2 hangs", || {
        std::fs::read_to_string(&results)
            .is_ok_and(|text| text.lines().filter(|l| l.ends_with('}')).count() == 2)
    })
    .await;
    child.kill_9().await;
    assert_eq!(server.stats().requests, 3);

    let out = Sluice::run([
        "--resume".as_ref(),
        "--timeout".as_ref(),
        "200ms".as_ref(),
        "--retries".as_ref(),
        "0".as_ref(),
        "-o".as_ref(),
        results.as_os_str(),
        input.as_os_str(),
    ])
    .output()
    .await;
    out.code(1);
    let recs = by_line(&read_records(&results));
    assert_eq!(recs.keys().copied().collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!(kind(&recs[&2]), "timeout");
    assert_eq!(
        path_requests(&server, "/hang"),
        2,
        "only line 2 was sent again"
    );
    assert_eq!(path_requests(&server, "/fast"), 2);
    server.shutdown().await;
}

/// A foreign or damaged output claiming an absurd line number is refused
/// (exit 2), never an allocation failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_refuses_an_absurd_line_number() {
    let server = mock().await;
    let dir = tempdir();
    let results = write_file(
        dir.path(),
        "results.jsonl",
        "{\"id\":\"x\",\"line\":100000000000000,\"ok\":true,\"status\":200}\n",
    );
    let input = write_file(dir.path(), "in.txt", format!("{}/fast\n", server.url()));
    let out = Sluice::run([
        "--resume".as_ref(),
        "-o".as_ref(),
        results.as_os_str(),
        input.as_os_str(),
    ])
    .output()
    .await;
    out.code(2);
    assert!(out.stderr.contains("100000000000000"), "{}", out.stderr);
    assert_eq!(server.stats().requests, 0);
    server.shutdown().await;
}

/// A resume refused before sending changes nothing on disk: the failed
/// records `--retry-failed` would replace, and a torn last line, stay as
/// they were.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_resume_leaves_the_output_untouched() {
    let (server, m, dir, results) = setup().await;
    let input = write_file(
        dir.path(),
        "in.txt",
        lines(&[format!("{m}/fast"), format!("{m}/status/500")]),
    );
    Sluice::run([
        "--retries".as_ref(),
        "0".as_ref(),
        "-o".as_ref(),
        results.as_os_str(),
        input.as_os_str(),
    ])
    .output()
    .await
    .code(1);
    let mut before = std::fs::read_to_string(&results).unwrap();
    before.push_str("{\"id\":3,\"line\":3,\"ok\":tr");
    std::fs::write(&results, &before).unwrap();
    server.reset_stats();
    let out = Sluice::run([
        "--resume".as_ref(),
        "--retry-failed".as_ref(),
        "--summary-json".as_ref(),
        dir.path().join("missing-dir/s.json").as_os_str(),
        "-o".as_ref(),
        results.as_os_str(),
        input.as_os_str(),
    ])
    .output()
    .await;
    out.code(2);
    assert_eq!(server.stats().requests, 0);
    assert_eq!(std::fs::read_to_string(&results).unwrap(), before);
    server.shutdown().await;
}
