//! The batch APIs' formats: Anthropic and OpenAI batch files in, their
//! result lines out (`--output-format`, `--errors-output`), and `--resume`,
//! `--retry-failed` and the changed-input check over them.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Value, json};

use crate::support::*;

/// Every line of a batch-format file, parsed, keyed by custom_id (each once).
fn by_custom_id(paths: &[&Path]) -> BTreeMap<String, Value> {
    let mut map = BTreeMap::new();
    for path in paths {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        for line in text.lines() {
            let v: Value = serde_json::from_str(line).expect("a JSON line");
            let id = v["custom_id"]
                .as_str()
                .expect("custom_id is a string")
                .to_string();
            assert!(map.insert(id.clone(), v).is_none(), "{id} has two lines");
        }
    }
    map
}

/// The input line a batch id names.
fn line_of(v: &Value) -> u64 {
    let id = v["id"].as_str().expect("id");
    let rest = id.strip_prefix("batch_req_").expect("batch_req_ id");
    rest.split('_')
        .next()
        .unwrap()
        .parse()
        .expect("line number")
}

#[tokio::test]
async fn a_thousand_line_anthropic_batch_file_runs_end_to_end() {
    let server = mock().await;
    let dir = tempdir();
    let input: Vec<String> = (1..=1000)
        .map(|i| {
            json!({"custom_id": format!("req-{i}"), "params": {"model": "claude-mock", "max_tokens": 16, "messages": [{"role": "user", "content": format!("question {i}")}]}})
                .to_string()
        })
        .collect();
    let input = write_file(dir.path(), "batch.jsonl", lines(&input));
    let out = dir.path().join("results.jsonl");
    let base = server.url();
    Sluice::run([
        "-q".as_ref(),
        "-c".as_ref(),
        "32".as_ref(),
        "--base-url".as_ref(),
        base.as_ref(),
        "--output-format".as_ref(),
        "anthropic-batch".as_ref(),
        "-o".as_ref(),
        out.as_os_str(),
        input.as_os_str(),
    ])
    .output()
    .await
    .code(0);
    let results = by_custom_id(&[&out]);
    assert_eq!(results.len(), 1000);
    for i in 1..=1000u64 {
        let v = &results[&format!("req-{i}")];
        assert_eq!(line_of(v), i);
        assert_eq!(v["result"]["type"], "succeeded", "{v}");
        assert_eq!(v["result"]["message"]["type"], "message");
        assert_eq!(v["result"]["message"]["model"], "claude-mock");
    }
    assert_eq!(path_requests(&server, "/v1/messages"), 1000);
    assert_eq!(server.stats().requests, 1000);
    server.shutdown().await;
}

#[tokio::test]
async fn a_thousand_line_openai_batch_file_runs_end_to_end() {
    let server = mock().await;
    let dir = tempdir();
    let input: Vec<String> = (1..=1000)
        .map(|i| {
            json!({"custom_id": format!("request-{i}"), "method": "POST", "url": "/v1/chat/completions", "body": {"model": "gpt-mock", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 10}})
                .to_string()
        })
        .collect();
    let input = write_file(dir.path(), "batch.jsonl", lines(&input));
    let out = dir.path().join("results.jsonl");
    let base = server.url();
    Sluice::run([
        "-q".as_ref(),
        "-c".as_ref(),
        "32".as_ref(),
        "--input-format".as_ref(),
        "openai-batch".as_ref(),
        "--base-url".as_ref(),
        base.as_ref(),
        "--output-format".as_ref(),
        "openai-batch".as_ref(),
        "-o".as_ref(),
        out.as_os_str(),
        input.as_os_str(),
    ])
    .output()
    .await
    .code(0);
    let results = by_custom_id(&[&out]);
    assert_eq!(results.len(), 1000);
    for i in 1..=1000u64 {
        let v = &results[&format!("request-{i}")];
        assert_eq!(line_of(v), i);
        assert_eq!(v["error"], Value::Null);
        assert_eq!(v["response"]["status_code"], 200);
        let rid = v["response"]["request_id"].as_str().expect("x-request-id");
        assert!(rid.starts_with("req_mock"), "{rid}");
        assert_eq!(v["response"]["body"]["object"], "chat.completion");
    }
    assert_eq!(path_requests(&server, "/v1/chat/completions"), 1000);
    server.shutdown().await;
}

/// Lines 1-4 succeed; 5 (a 400), 6 (a 500) and 7 (nothing listens) fail;
/// 8 is invalid and 9 a duplicate of 1.
fn mixed_input(base: &str) -> String {
    let closed = closed_port_url();
    lines(&[
        json!({"custom_id": "a", "params": {"model": "m", "max_tokens": 1, "messages": []}}).to_string(),
        json!({"custom_id": "b", "method": "POST", "url": "/v1/chat/completions", "body": {"model": "m"}}).to_string(),
        json!({"custom_id": "c", "url": format!("{base}/fast")}).to_string(),
        format!("{base}/fast"),
        json!({"custom_id": "e", "params": {"model": "status-400", "max_tokens": 1, "messages": []}}).to_string(),
        json!({"custom_id": "f", "url": "/status/500"}).to_string(),
        json!({"custom_id": "g", "url": format!("{closed}/x")}).to_string(),
        json!({"custom_id": "h", "params": "not an object"}).to_string(),
        json!({"custom_id": "a", "url": "/fast"}).to_string(),
    ])
}

fn run_args<'a>(
    base: &'a str,
    format: &'a str,
    out: &'a Path,
    errors: &'a Path,
    input: &'a Path,
    extra: &[&'a str],
) -> Vec<std::ffi::OsString> {
    let mut args: Vec<std::ffi::OsString> = vec![
        "-q".into(),
        "--retries".into(),
        "0".into(),
        "--base-url".into(),
        base.into(),
        "--output-format".into(),
        format.into(),
        "-o".into(),
        out.into(),
        "--errors-output".into(),
        errors.into(),
    ];
    args.extend(extra.iter().map(Into::into));
    args.push(input.into());
    args
}

#[tokio::test]
async fn errors_output_splits_failures_and_resume_reads_both_files() {
    let server = mock().await;
    let base = server.url();
    let dir = tempdir();
    let input = write_file(dir.path(), "in.jsonl", mixed_input(&base));
    for format in ["openai-batch", "anthropic-batch"] {
        let out = dir.path().join(format!("{format}.jsonl"));
        let errors = dir.path().join(format!("{format}.errors.jsonl"));
        let args = |extra: &[&str]| run_args(&base, format, &out, &errors, &input, extra);
        Sluice::run(args(&[])).output().await.code(1);
        let ok = by_custom_id(&[&out]);
        let failed = by_custom_id(&[&errors]);
        assert_eq!(
            ok.keys().collect::<Vec<_>>(),
            ["4", "a", "b", "c"],
            "{format}"
        );
        // The duplicate `a` (line 9) is a failure line of its own.
        let failed_lines: Vec<u64> = {
            let text = std::fs::read_to_string(&errors).unwrap();
            let mut l: Vec<u64> = text
                .lines()
                .map(|l| line_of(&serde_json::from_str(l).unwrap()))
                .collect();
            l.sort();
            l
        };
        assert_eq!(failed_lines, [5, 6, 7, 8, 9], "{format}");
        assert!(failed.contains_key("e") && failed.contains_key("h"));
        let sent = server.stats().requests;

        // Resuming a finished run sends nothing and changes nothing.
        let before = (
            std::fs::read(&out).unwrap(),
            std::fs::read(&errors).unwrap(),
        );
        Sluice::run(args(&["--resume"])).output().await.code(1);
        assert_eq!(server.stats().requests, sent, "{format}: nothing re-sent");
        assert_eq!(std::fs::read(&out).unwrap(), before.0);
        assert_eq!(std::fs::read(&errors).unwrap(), before.1);

        // --retry-failed re-sends the three failed requests (not the bad
        // lines): the 400 and the 500 reach the server, the closed port not.
        Sluice::run(args(&["--resume", "--retry-failed"]))
            .output()
            .await
            .code(1);
        assert_eq!(server.stats().requests, sent + 2, "{format}");
        let failed_again = std::fs::read_to_string(&errors).unwrap();
        assert_eq!(failed_again.lines().count(), 5, "{format}: {failed_again}");
        assert_eq!(std::fs::read(&out).unwrap(), before.0);
    }
    server.shutdown().await;
}

#[tokio::test]
async fn resume_over_a_batch_format_detects_a_changed_input() {
    let server = mock().await;
    let base = server.url();
    let dir = tempdir();
    let first = lines(&[
        json!({"custom_id": "x", "method": "POST", "url": "/v1/chat/completions", "body": {"model": "m"}}).to_string(),
        json!({"custom_id": "y", "url": "/fast"}).to_string(),
    ]);
    let input = write_file(dir.path(), "in.jsonl", &first);
    let out = dir.path().join("out.jsonl");
    let errors = dir.path().join("errors.jsonl");
    Sluice::run(run_args(&base, "openai-batch", &out, &errors, &input, &[]))
        .output()
        .await
        .code(0);
    // Same ids, but line 2 now goes elsewhere.
    std::fs::write(&input, first.replace("\"/fast\"", "\"/status/200\"")).unwrap();
    let sent = server.stats().requests;
    let res = Sluice::run(run_args(
        &base,
        "openai-batch",
        &out,
        &errors,
        &input,
        &["--resume"],
    ))
    .output()
    .await;
    res.code(2);
    assert!(res.stderr.contains("input line 2"), "{}", res.stderr);
    assert_eq!(server.stats().requests, sent);
    // Another output format than the file's is refused too.
    std::fs::write(&input, &first).unwrap();
    let res = Sluice::run(run_args(
        &base,
        "anthropic-batch",
        &out,
        &errors,
        &input,
        &["--resume"],
    ))
    .output()
    .await;
    res.code(2);
    assert!(
        res.stderr.contains("--output-format openai-batch"),
        "{}",
        res.stderr
    );
    server.shutdown().await;
}

#[tokio::test]
async fn errors_output_is_an_output_like_the_others() {
    let dir = tempdir();
    let input = write_file(dir.path(), "in.txt", "http://127.0.0.1:9/x\n");
    let out = dir.path().join("out.jsonl");
    let same = Sluice::run([
        "-o".as_ref(),
        out.as_os_str(),
        "--errors-output".as_ref(),
        out.as_os_str(),
        input.as_os_str(),
    ])
    .output()
    .await;
    same.code(2);
    assert!(same.stderr.contains("--errors-output"), "{}", same.stderr);
    let clobber = Sluice::run([
        "-o".as_ref(),
        out.as_os_str(),
        "--errors-output".as_ref(),
        input.as_os_str(),
        input.as_os_str(),
    ])
    .output()
    .await;
    clobber.code(2);
    assert!(
        clobber.stderr.contains("is also the input"),
        "{}",
        clobber.stderr
    );
    let existing = write_file(dir.path(), "errors.jsonl", "{}\n");
    let held = Sluice::run([
        "-o".as_ref(),
        out.as_os_str(),
        "--errors-output".as_ref(),
        existing.as_os_str(),
        input.as_os_str(),
    ])
    .output()
    .await;
    held.code(2);
    assert_eq!(std::fs::read_to_string(&existing).unwrap(), "{}\n");
    let no_output = Sluice::run([
        "--errors-output".as_ref(),
        existing.as_os_str(),
        input.as_os_str(),
    ])
    .output()
    .await;
    no_output.code(2);
    assert!(no_output.stderr.contains("-o FILE"), "{}", no_output.stderr);
}

#[tokio::test]
async fn input_format_decides_which_lines_are_requests() {
    let dir = tempdir();
    let anthropic = json!({"custom_id": "a", "params": {"model": "m"}}).to_string();
    let openai = json!({"custom_id": "o", "method": "POST", "url": "http://127.0.0.1:9/v1/chat/completions", "body": {}}).to_string();
    let plain = json!({"url": "http://127.0.0.1:9/x"}).to_string();
    let input = write_file(
        dir.path(),
        "in.jsonl",
        lines(&[&anthropic, &openai, &plain]),
    );
    let check = |format: &'static str| {
        let input = input.clone();
        async move {
            let out = Sluice::run([
                "--dry-run".as_ref(),
                "-q".as_ref(),
                "--base-url".as_ref(),
                "http://127.0.0.1:9".as_ref(),
                "--input-format".as_ref(),
                format.as_ref(),
                input.as_os_str(),
            ])
            .output()
            .await;
            let bad: Vec<u64> = out
                .records()
                .iter()
                .map(|r| r["line"].as_u64().unwrap())
                .collect();
            (bad, out.stdout)
        }
    };
    assert_eq!(check("auto").await.0, Vec::<u64>::new());
    let (bad, text) = check("sluice").await;
    assert_eq!(bad, [1], "{text}");
    assert!(
        text.contains("`params` is an anthropic-batch field"),
        "{text}"
    );
    let (bad, text) = check("openai-batch").await;
    assert_eq!(bad, [1, 3], "{text}");
    assert!(text.contains("`custom_id` is missing"), "{text}");
    let (bad, text) = check("anthropic-batch").await;
    assert_eq!(bad, [2, 3], "{text}");
    assert!(text.contains("`params` is missing"), "{text}");
    // Without --base-url an Anthropic line has nowhere to go.
    let out = Sluice::run(["--dry-run".as_ref(), "-q".as_ref(), input.as_os_str()])
        .output()
        .await;
    let records = out.records();
    assert_eq!(records.len(), 1, "{}", out.stdout);
    assert!(
        records[0]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("add --base-url"),
        "{}",
        out.stdout
    );
}

#[tokio::test]
async fn ordered_batch_output_is_in_input_order_and_the_summary_counts_it() {
    let server = mock().await;
    let dir = tempdir();
    // Early lines are slow, so completion order differs from input order.
    let input: Vec<String> = (1..=40)
        .map(|i| {
            let url = if i % 4 == 1 {
                "/delay/0.2"
            } else {
                "/status/200"
            };
            json!({"custom_id": format!("r{i}"), "method": "GET", "url": url}).to_string()
        })
        .chain([json!({"custom_id": "bad", "url": "/status/404"}).to_string()])
        .collect();
    let input = write_file(dir.path(), "in.jsonl", lines(&input));
    let summary = dir.path().join("summary.json");
    let base = server.url();
    let out = Sluice::run([
        "-q".as_ref(),
        "-c".as_ref(),
        "8".as_ref(),
        "--ordered".as_ref(),
        "--base-url".as_ref(),
        base.as_ref(),
        "--output-format".as_ref(),
        "anthropic-batch".as_ref(),
        "--summary-json".as_ref(),
        summary.as_os_str(),
        input.as_os_str(),
    ])
    .output()
    .await;
    out.code(1);
    let got: Vec<u64> = out
        .stdout
        .lines()
        .map(|l| line_of(&serde_json::from_str(l).unwrap()))
        .collect();
    assert_eq!(got, (1..=41).collect::<Vec<_>>());
    let s: Value = serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    assert_eq!(s["records"], 41, "{s}");
    assert_eq!(s["ok"], 40, "{s}");
    server.shutdown().await;
}

#[tokio::test]
async fn resume_from_standard_input_checks_batch_records_as_they_stream() {
    let server = mock().await;
    let base = server.url();
    let dir = tempdir();
    let first = lines(&[
        json!({"custom_id": "x", "url": "/status/200"}).to_string(),
        json!({"custom_id": "y", "url": "/status/200"}).to_string(),
    ]);
    let out = dir.path().join("out.jsonl");
    let args = |resume: bool| {
        let mut a: Vec<std::ffi::OsString> = vec![
            "-q".into(),
            "--base-url".into(),
            base.clone().into(),
            "--output-format".into(),
            "openai-batch".into(),
            "-o".into(),
            out.clone().into(),
        ];
        if resume {
            a.push("--resume".into());
        }
        a
    };
    Sluice::run(args(false))
        .stdin(first.clone())
        .output()
        .await
        .code(0);
    assert_eq!(server.stats().requests, 2);
    // One line more: only it is sent.
    let more = format!(
        "{first}{}\n",
        json!({"custom_id": "z", "url": "/status/200"})
    );
    Sluice::run(args(true))
        .stdin(more.clone())
        .output()
        .await
        .code(0);
    assert_eq!(server.stats().requests, 3);
    assert_eq!(by_custom_id(&[&out]).len(), 3);
    // Line 1 now goes elsewhere: refused before any line of its block is sent.
    let changed = more.replacen("/status/200", "/status/201", 1)
        + &format!("{}\n", json!({"custom_id": "w", "url": "/status/200"}));
    let res = Sluice::run(args(true)).stdin(changed).output().await;
    res.code(2);
    assert!(res.stderr.contains("input changed"), "{}", res.stderr);
    assert_eq!(server.stats().requests, 3);
    server.shutdown().await;
}
