//! `--resume` repairs, checks and completes an output file;
//! `--retry-failed` replaces failures; a failing output stops the run.

use serde_json::json;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_last_line_is_repaired_on_resume() {
    let FileJob {
        server,
        dir: _dir,
        input,
        output,
    } = FileJob::start(|m| vec![format!("{m}/fast"); 5]).await;
    Sluice::to_file(&output, &input, &["-q"])
        .output()
        .await
        .code(0);
    assert_eq!(file_results(&output).len(), 5);
    // Half a record, as a crash in the middle of a write leaves it.
    let mut text = std::fs::read_to_string(&output).expect("read output");
    text.push_str(r#"{"id":6,"line":6,"method":"GET","url":"http://127."#);
    std::fs::write(&output, text).expect("tear the last line");

    let urls = vec![format!("{}/fast", server.url()); 6];
    std::fs::write(&input, lines(&urls)).expect("add a sixth line");
    let out = Sluice::to_file(&output, &input, &["-q", "--resume"])
        .output()
        .await;
    out.code(0);
    let recs = file_results(&output);
    assert_eq!(recs.keys().copied().collect::<Vec<_>>(), [1, 2, 3, 4, 5, 6]);
    assert_eq!(
        server.stats().requests,
        6,
        "only line 6 was sent by the resume"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_input_is_refused_before_anything_is_sent() {
    let server = mock().await;
    let url = format!("{}/fast", server.url());
    let dir = tempdir();
    let with_ids = |ids: [&str; 3]| lines(&ids.map(|id| json_line(json!({"id": id, "url": url}))));
    let a = write_file(dir.path(), "a.jsonl", with_ids(["a1", "a2", "a3"]));
    let output = dir.path().join("out.jsonl");
    Sluice::to_file(&output, &a, &["-q"]).output().await.code(0);
    let before = std::fs::read(&output).expect("read output");

    let b = write_file(dir.path(), "b.jsonl", with_ids(["a1", "other", "a3"]));
    let out = Sluice::to_file(&output, &b, &["--resume"]).output().await;
    out.code(2);
    assert!(
        out.stderr.contains("line 2"),
        "names the changed line: {}",
        out.stderr
    );
    assert_eq!(server.stats().requests, 3, "the resume sent nothing");
    assert_eq!(
        std::fs::read(&output).expect("read output"),
        before,
        "the output is untouched"
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_failed_resends_only_the_failed_line() {
    let FileJob {
        server,
        dir,
        input,
        output,
    } = FileJob::start(|m| vec![format!("{m}/fail/1/key"), format!("{m}/fast")]).await;
    Sluice::to_file(&output, &input, &["-q", "--retries", "0"])
        .output()
        .await
        .code(1);
    let recs = file_results(&output);
    assert_eq!((recs[&1].status, recs[&1].ok), (Some(503), false));

    let out = Sluice::to_file(&output, &input, &["-q", "--resume", "--retry-failed"])
        .output()
        .await;
    out.code(0);
    let recs = file_results(&output);
    assert_eq!(
        recs.keys().copied().collect::<Vec<_>>(),
        [1, 2],
        "one record per line"
    );
    assert_eq!((recs[&1].status, recs[&1].ok), (Some(200), true));
    assert_eq!(
        path_requests(&server, "/fail/1/key"),
        2,
        "the failed line was re-sent once"
    );
    assert_eq!(
        path_requests(&server, "/fast"),
        1,
        "the ok line was not re-sent"
    );
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .expect("list the directory")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name())
        .filter(|n| n.to_string_lossy().contains("tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_output_that_fails_to_write_stops_the_run_with_3() {
    let server = mock().await;
    let input = lines(&vec![format!("{}/fast", server.url()); 3]);
    let out = Sluice::run(["-o", "/dev/full"]).stdin(input).output().await;
    out.code(3);
    assert!(
        out.stderr.contains("/dev/full"),
        "the message names the output: {}",
        out.stderr
    );
    server.shutdown().await;
}
