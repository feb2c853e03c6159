//! `--dry-run`: every line checked as a run would; nothing sent.

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_reports_bad_lines_and_sends_nothing() {
    let server = mock().await;
    let m = server.url();
    let dir = tempdir();
    // An existing non-empty output would be refused by a run; a dry run
    // never opens it.
    let results = write_file(dir.path(), "results.jsonl", "keep me\n");
    let fresh = dir.path().join("fresh.jsonl");
    let input = lines(&[
        format!(r#"{{"id":"a","url":"{m}/fast"}}"#),
        "{not json".to_string(),
        format!(r#"{{"id":"a","url":"{m}/fast"}}"#),
        "# comment".to_string(),
        format!("{m}/fast"),
        r#"{"url":"relative"}"#.to_string(),
        format!(r#"{{"url":"{m}/fast","cost":5}}"#),
        format!(r#"{{"url":"{m}/fast","cost":50}}"#),
    ]);
    for output in [&results, &fresh] {
        let out = Sluice::run([
            "--dry-run".as_ref(),
            "--budget".as_ref(),
            "10/s".as_ref(),
            "-o".as_ref(),
            output.as_os_str(),
        ])
        .stdin(input.clone())
        .output()
        .await;
        out.code(1);
        let recs = by_line(&out.results());
        assert_eq!(
            recs.keys().copied().collect::<Vec<_>>(),
            [2, 3, 6, 8],
            "only bad lines"
        );
        assert_eq!(recs[&2].kind(), "invalid_request");
        assert_eq!(recs[&3].kind(), "duplicate_id");
        assert_eq!(recs[&3].id, "a");
        assert_eq!(recs[&6].kind(), "invalid_request");
        assert_eq!(
            recs[&8].kind(),
            "invalid_request",
            "cost above --budget-burst"
        );
        assert!(recs.values().all(|r| r.attempts == 0));
    }
    assert_eq!(std::fs::read_to_string(&results).unwrap(), "keep me\n");
    assert!(!fresh.exists(), "--output is never opened");
    assert_eq!(server.stats().requests, 0);
    assert_eq!(server.stats().connections, 0);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_of_good_lines_exits_zero() {
    let server = mock().await;
    let m = server.url();
    let input = lines(&[
        format!("{m}/fast"),
        format!(r#"{{"method":"POST","url":"{m}/echo","body":{{}}}}"#),
    ]);
    let out = Sluice::run(["--dry-run"]).stdin(input).output().await;
    out.code(0);
    assert_eq!(out.stdout, "");
    assert_eq!(server.stats().requests, 0);
    server.shutdown().await;
}
