//! No file is clobbered: every path a run writes (`-o`,
//! `--report`, `--summary-json`) is checked before anything is sent; none may
//! be an input or another output, and an existing non-empty file is replaced
//! only under `--overwrite`, which says so. `/dev/null` always works.

use std::ffi::OsString;
use std::path::Path;

use crate::support::*;

fn args(list: &[&dyn AsRef<std::ffi::OsStr>]) -> Vec<OsString> {
    list.iter().map(|a| a.as_ref().to_os_string()).collect()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_output_that_is_an_input_or_another_output_is_refused() {
    let server = mock().await;
    let dir = tempdir();
    let input = write_file(
        dir.path(),
        "in.txt",
        lines(&[format!("{}/fast", server.url())]),
    );
    let before = read(&input);
    let results = dir.path().join("res.jsonl");

    // -o and --report name the same (new) file.
    let out = Sluice::run(args(&[&"-o", &results, &"--report", &results, &input]))
        .output()
        .await;
    out.code(2);
    assert!(
        out.stderr.contains("-o and --report both name"),
        "{}",
        out.stderr
    );
    assert!(!results.exists(), "nothing was written");

    // --summary-json over the input, also through a hard link.
    let link = dir.path().join("link.txt");
    std::fs::hard_link(&input, &link).unwrap();
    for target in [&input, &link] {
        let out = Sluice::run(args(&[&"--summary-json", target, &input]))
            .output()
            .await;
        out.code(2);
        assert!(
            out.stderr.contains("is also the input") && out.stderr.contains("--summary-json"),
            "{}",
            out.stderr
        );
    }
    // Standard input redirected from the file is that input too.
    Sluice::run(args(&[&"--report", &input]))
        .stdin_file(&input)
        .output()
        .await
        .code(2);
    assert_eq!(read(&input), before, "the input is untouched");
    assert_eq!(server.stats().requests, 0, "nothing was sent");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn existing_reports_are_replaced_only_under_overwrite() {
    let server = mock().await;
    let dir = tempdir();
    let input = write_file(
        dir.path(),
        "in.txt",
        lines(&[format!("{}/fast", server.url())]),
    );
    let report = write_file(dir.path(), "report.html", "my notes\n");
    let summary = write_file(dir.path(), "summary.json", "{\"mine\": 1}\n");
    let results = dir.path().join("res.jsonl");

    let out = Sluice::run(args(&[
        &"-o",
        &results,
        &"--report",
        &report,
        &"--summary-json",
        &summary,
        &input,
    ]))
    .output()
    .await;
    out.code(2);
    assert!(
        out.stderr.contains("--report") && out.stderr.contains("--overwrite"),
        "{}",
        out.stderr
    );
    assert_eq!(read(&report), "my notes\n");
    assert!(!results.exists());
    assert_eq!(server.stats().requests, 0);

    let out = Sluice::run(args(&[
        &"--overwrite",
        &"-o",
        &results,
        &"--report",
        &report,
        &"--summary-json",
        &summary,
        &input,
    ]))
    .output()
    .await;
    out.code(0);
    for path in [&report, &summary] {
        assert!(
            out.stderr.contains(&format!("{} (", path.display()))
                && out.stderr.contains("will be replaced"),
            "--overwrite names what it replaces: {}",
            out.stderr
        );
    }
    assert!(read(&report).contains("<html"));
    assert!(read(&summary).contains("\"exit_code\": 0"));

    // --resume appends to -o; --overwrite then replaces only the others.
    let out = Sluice::run(args(&[
        &"--resume",
        &"--overwrite",
        &"-o",
        &results,
        &"--summary-json",
        &summary,
        &input,
    ]))
    .output()
    .await;
    out.code(0);
    assert_eq!(parse_records(&read(&results)).len(), 1, "-o was kept");
    assert_eq!(server.stats().requests, 1);
    // No stray temporary or probe files are left beside the outputs.
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["in.txt", "report.html", "res.jsonl", "summary.json"]
    );
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_can_go_to_dev_null() {
    let server = mock().await;
    let out = Sluice::run([
        "--report",
        "/dev/null",
        "--summary-json",
        "/dev/null",
        "-o",
        "/dev/null",
    ])
    .stdin(format!("{}/fast\n", server.url()))
    .output()
    .await;
    out.code(0);
    assert!(
        std::fs::metadata("/dev/null").is_ok_and(|m| !m.is_file()),
        "/dev/null is still a device"
    );
    assert_eq!(server.stats().requests, 1);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_says_it_leaves_the_output_untouched() {
    let dir = tempdir();
    let results = write_file(dir.path(), "res.jsonl", "keep\n");
    let out = Sluice::run(args(&[&"--dry-run", &"-o", &results]))
        .stdin("http://127.0.0.1:9/\n")
        .output()
        .await;
    out.code(0);
    assert!(out.stderr.contains("left untouched"), "{}", out.stderr);
    assert_eq!(read(&results), "keep\n");
}

/// An output that cannot be written is exit 2 before anything
/// is sent — the summary and the report are outputs too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unwritable_summary_or_report_fails_before_anything_is_sent() {
    let raw = RawServer::start(|_| Act::Keep(ok("fine"))).await;
    let dir = tempdir();
    let missing = dir.path().join("no-such-dir");
    for (option, name) in [("--summary-json", "s.json"), ("--report", "r.html")] {
        let out = Sluice::run([option.as_ref(), missing.join(name).as_os_str()])
            .stdin(lines(&[format!("{}/x", raw.url)]))
            .output()
            .await;
        out.code(2);
        assert_eq!(raw.total(), 0, "{option}: nothing may be sent");
    }
}

/// `-o` naming one of the inputs, even with `--overwrite`, is refused
/// (exit 2) with the input intact. (Was: the input was truncated before it
/// was read; nothing sent, input gone, exit 0.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_output_that_is_an_input_is_refused() {
    let raw = RawServer::start(|_| Act::Keep(ok("fine"))).await;
    let dir = tempdir();
    let content = lines(&[format!("{}/x", raw.url)]);
    let path = write_file(dir.path(), "in.txt", &content);
    let out = Sluice::run([
        path.as_os_str(),
        "-o".as_ref(),
        path.as_os_str(),
        "--overwrite".as_ref(),
    ])
    .output()
    .await;
    out.code(2);
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        content,
        "the input was destroyed"
    );
}
