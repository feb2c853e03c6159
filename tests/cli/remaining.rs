//! Exact remaining counts: for input files, lines are
//! counted up front, so an interrupted run says exactly how many requests
//! have no record; plus the small honesty fixes of the summary (plurals, no
//! rate when nothing was sent, a warning for an empty input, advice that
//! works when results go to stdout).

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_run_says_exactly_how_many_are_left() {
    let server = mock().await;
    let m = server.url();
    let dir = tempdir();
    let mut input: Vec<String> = vec!["# a comment".into(), String::new()];
    input.extend((0..3000).map(|_| format!("{m}/delay/0.2")));
    let input = write_file(dir.path(), "in.txt", lines(&input));
    let results = dir.path().join("res.jsonl");
    let summary = dir.path().join("summary.json");
    let child = Sluice::run([
        "-c".as_ref(),
        "40".as_ref(),
        "-o".as_ref(),
        results.as_os_str(),
        "--summary-json".as_ref(),
        summary.as_os_str(),
        input.as_os_str(),
    ])
    .spawn();
    until(&server, "100 requests at the server", |s| s.requests >= 100).await;
    child.signal(libc::SIGINT);
    let out = child.finish().await;
    out.code(130);
    let written = parse_records(&std::fs::read_to_string(&results).unwrap()).len() as u64;
    let left = 3000 - written;
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    assert_eq!(json["not_written"], left, "{json}");
    assert_eq!(json["not_written_exact"], true);
    assert!(
        out.stderr
            .contains(&format!("{left} requests have no record yet")),
        "{}",
        out.stderr
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_request_is_singular_and_nothing_sent_has_no_rate() {
    let server = mock().await;
    let out = Sluice::run(["--retries", "0"])
        .stdin(format!("{}/fast\n", server.url()))
        .output()
        .await;
    out.code(0);
    assert!(out.stderr.contains("sluice: 1 request:"), "{}", out.stderr);
    assert!(out.stderr.contains("(0 retries)"), "{}", out.stderr);

    let out = Sluice::run::<[&str; 0], &str>([])
        .stdin("{bad\n{bad\n")
        .output()
        .await;
    out.code(1);
    assert!(out.stderr.contains("nothing sent"), "{}", out.stderr);
    assert!(!out.stderr.contains("req/s"), "{}", out.stderr);

    let out = Sluice::run::<[&str; 0], &str>([])
        .stdin("# nothing here\n\n")
        .output()
        .await;
    out.code(0);
    assert!(
        out.stderr.contains("warning: the input holds no requests"),
        "{}",
        out.stderr
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_stdout_does_not_advise_resume() {
    let server = mock().await;
    let out = Sluice::run(["-c", "2"])
        .stdin(lines(&vec![format!("{}/fast", server.url()); 50]))
        .close_stdout()
        .output()
        .await;
    out.code(3);
    assert!(!out.stderr.contains("--resume to"), "{}", out.stderr);
    assert!(
        !out.stderr.contains("again with --resume"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("-o FILE"), "{}", out.stderr);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_shows_a_fixed_total_with_an_eta_and_a_paused_origin() {
    let server = mock().await;
    let m = server.url();
    let dir = tempdir();
    let input = write_file(
        dir.path(),
        "in.txt",
        lines(&vec![format!("{m}/delay/0.6"); 4]),
    );
    let out = Sluice::run([
        "--progress".as_ref(),
        "always".as_ref(),
        "-c".as_ref(),
        "1".as_ref(),
        input.as_os_str(),
    ])
    .output()
    .await;
    out.code(0);
    let line = out
        .stderr
        .lines()
        .find(|l| l.contains("/4 · ETA "))
        .unwrap_or_else(|| panic!("a progress line with the total and an ETA: {}", out.stderr));
    assert!(line.contains("1 in flight"), "{line}");

    // A 429 with Retry-After pauses the origin: the progress says so.
    let out = Sluice::run(["--progress", "always", "-c", "2"])
        .stdin(lines(&[
            format!("{m}/fail/1/p?status=429&retry_after=2"),
            format!("{m}/fast?after"),
        ]))
        .output()
        .await;
    out.code(0);
    let paused = out
        .stderr
        .lines()
        .find(|l| l.contains("paused by Retry-After on HTTP 429 until "))
        .unwrap_or_else(|| panic!("a paused progress line: {}", out.stderr));
    // The retry is counted once, inside what waits (it read as `1 waiting ·
    // 1 waiting to retry`, two of one request).
    assert!(
        paused.contains(", 1 waiting (1 of them to retry)") && !paused.contains("waiting to retry"),
        "{paused}"
    );
    server.shutdown().await;
}

/// At a terminal, with nothing typed yet, the bar is empty, not full (it
/// was drawn as 0/0, which indicatif shows as done). `script` (util-linux)
/// gives sluice a terminal; its standard input ends after a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_for_standard_input_at_a_terminal_shows_an_empty_bar() {
    let dir = tempdir();
    let results = dir.path().join("res.jsonl");
    let command = format!(
        "{} run -o {}",
        env!("CARGO_BIN_EXE_sluice"),
        results.display()
    );
    let out = tokio::task::spawn_blocking(move || {
        let mut child = std::process::Command::new("script")
            .args(["-qfec", &command, "/dev/null"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("util-linux `script` runs sluice at a terminal");
        let stdin = child.stdin.take();
        std::thread::sleep(std::time::Duration::from_millis(1200));
        drop(stdin);
        child.wait_with_output().expect("script ends")
    })
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("reading requests from standard input; Ctrl-D ends it"),
        "{text}"
    );
    assert!(text.contains('░') && !text.contains('█'), "{text}");
}
