//! `--resume` sees a changed input: records are matched to
//! lines by what was sent (id, method and redacted URL), so a URL inserted
//! at the top of a list, or a changed URL on a line without an id, is exit 2
//! naming the first line that differs, with nothing sent.

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_url_inserted_at_the_top_is_a_changed_input() {
    let server = mock().await;
    let m = server.url();
    let dir = tempdir();
    let urls: Vec<String> = (1..=5).map(|i| format!("{m}/fast?n={i}")).collect();
    let input = write_file(dir.path(), "in.txt", lines(&urls));
    let results = dir.path().join("res.jsonl");
    Sluice::to_file(&results, &input, &[])
        .output()
        .await
        .code(0);
    let before = std::fs::read_to_string(&results).unwrap();
    server.reset_stats();

    let mut inserted = vec![format!("{m}/fast?n=0")];
    inserted.extend(urls.iter().cloned());
    std::fs::write(&input, lines(&inserted)).unwrap();
    let out = Sluice::to_file(&results, &input, &["--resume"])
        .output()
        .await;
    out.code(2);
    assert!(
        out.stderr.contains("input line 1 is `GET ") && out.stderr.contains("n=0"),
        "names the first line that differs: {}",
        out.stderr
    );
    assert_eq!(server.stats().requests, 0, "nothing was sent");
    assert_eq!(std::fs::read_to_string(&results).unwrap(), before);

    // The same change through standard input is caught as it streams.
    let out = Sluice::run(["--resume".as_ref(), "-o".as_ref(), results.as_os_str()])
        .stdin(lines(&inserted))
        .output()
        .await;
    out.code(2);
    assert!(
        out.stderr.contains("input line 1 is `GET ") && out.stderr.contains("n=0"),
        "names the first line that differs, not a block of 1,023 lines: {}",
        out.stderr
    );
    assert_eq!(server.stats().requests, 0, "nothing was sent");
    assert_eq!(std::fs::read_to_string(&results).unwrap(), before);

    // Lines removed from the end of a streamed input: the first record
    // left without its line is named.
    let out = Sluice::run(["--resume".as_ref(), "-o".as_ref(), results.as_os_str()])
        .stdin(lines(&urls[..3]))
        .output()
        .await;
    out.code(2);
    assert!(
        out.stderr.contains("a record for input line 4 ("),
        "{}",
        out.stderr
    );
    assert_eq!(server.stats().requests, 0, "nothing was sent");
    assert_eq!(std::fs::read_to_string(&results).unwrap(), before);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_lines_without_id_are_checked_by_method_and_redacted_url() {
    let server = mock().await;
    let m = server.url();
    let dir = tempdir();
    let line = |i: u32, method: &str, token: &str| {
        format!(r#"{{"method":"{method}","url":"{m}/fast?n={i}&token={token}"}}"#)
    };
    let input = write_file(
        dir.path(),
        "in.jsonl",
        lines(&[
            line(1, "GET", "s1"),
            line(2, "GET", "s1"),
            line(3, "GET", "s1"),
        ]),
    );
    let results = dir.path().join("res.jsonl");
    Sluice::to_file(&results, &input, &[])
        .output()
        .await
        .code(0);
    server.reset_stats();

    // A different secret is the same request once redacted: resumes fine.
    std::fs::write(
        &input,
        lines(&[
            line(1, "GET", "s2"),
            line(2, "GET", "s2"),
            line(3, "GET", "s2"),
        ]),
    )
    .unwrap();
    Sluice::to_file(&results, &input, &["--resume"])
        .output()
        .await
        .code(0);
    assert_eq!(server.stats().requests, 0);

    // Line 3 now posts: a change, named, and no secret in the message.
    std::fs::write(
        &input,
        lines(&[
            line(1, "GET", "s2"),
            line(2, "GET", "s2"),
            line(3, "POST", "s2"),
        ]),
    )
    .unwrap();
    let out = Sluice::to_file(&results, &input, &["--resume"])
        .output()
        .await;
    out.code(2);
    assert!(
        out.stderr.contains("input line 3 is `POST "),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("s2") && !out.stderr.contains("s1"));
    assert_eq!(server.stats().requests, 0);
    server.shutdown().await;
}
