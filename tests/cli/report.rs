//! What a run shows afterwards: the timing fields of records, the HTML
//! report (`--report`), and `sluice report`, which recomputes the summary and
//! the report from result files alone.

use serde_json::Value;

use crate::support::*;

/// The start of the known records: a whole second, so every record below
/// falls in an interval of its own.
const T0: &str = "2026-01-01T00:00";

/// Forty known records, one started every second and each 100 ms long;
/// every fifth failed (HTTP 500), every tenth was retried once after a 429
/// that paused its origin for 50 ms. All were queued at the start.
pub fn known_records() -> String {
    let mut out = String::new();
    for i in 0..40u32 {
        let failed = i % 5 == 4;
        let retried = i % 10 == 0;
        let (status, error) = if failed {
            (
                500,
                r#"{"kind":"http_status","message":"HTTP 500 Internal Server Error"}"#,
            )
        } else {
            (200, "null")
        };
        let log = if retried {
            r#"[{"start_ms":0.0,"duration_ms":20.0,"status":429,"error":"http_status","wait_ms":50.0},{"start_ms":70.0,"duration_ms":30.0}]"#
        } else {
            r#"[{"start_ms":0.0,"duration_ms":100.0}]"#
        };
        let waits = if retried {
            r#"{"queue":0.0,"rate":0.0,"retry":50.0}"#
        } else {
            r#"{"queue":0.0,"rate":0.0,"retry":0.0}"#
        };
        out += &format!(
            r#"{{"id":{n},"line":{n},"method":"GET","url":"http://127.0.0.1:9/item/{n}","ok":{ok},"status":{status},"attempts":{attempts},"started_at":"{T0}:{i:02}.000Z","duration_ms":100.0,"queued_at":"{T0}:00.000Z","wait_ms":{waits},"attempt_log":{log},"error":{error}}}"#,
            n = i + 1,
            ok = !failed,
            attempts = if retried { 2 } else { 1 },
        );
        out.push('\n');
    }
    out
}

/// The summary of [`known_records`]: 40 requests in the 39.1 s from the
/// first queued to the last outcome.
const KNOWN_SUMMARY: &str = "\
sluice: 40 requests: 32 ok, 8 failed in 39.10s (1.0 req/s)
  status   200: 32, 500: 8
  errors   http_status: 8
  attempts 44 (4 retries)
  latency  p50 100.0ms  p90 100.0ms  p99 100.0ms  max 100.0ms
";

/// `sluice report FILE` prints the summary the run would have printed,
/// from the records alone; `--json` writes it.
#[tokio::test]
async fn report_prints_the_summary_of_known_records() {
    let dir = tempdir();
    let results = write_file(dir.path(), "res.jsonl", known_records());
    for record in parse_records(&known_records()) {
        check_record(&record);
    }
    let json = dir.path().join("summary.json");
    let out = Sluice::new([
        "report".as_ref(),
        results.as_os_str(),
        "--json".as_ref(),
        json.as_os_str(),
    ])
    .output()
    .await;
    out.code(0);
    assert_eq!(out.stdout, KNOWN_SUMMARY);
    let summary: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(summary["records"], 40);
    assert_eq!(summary["retries"], 4);
    assert_eq!(summary["by_status"]["500"], 8);
    // `-` reads standard input.
    let piped = Sluice::new(["report", "-"])
        .stdin(known_records())
        .output()
        .await;
    piped.code(0);
    assert_eq!(piped.stdout, KNOWN_SUMMARY);
}

/// Shards (or a resumed run's parts) in several files make one summary;
/// a torn last line is skipped with a warning naming file and line.
#[tokio::test]
async fn report_over_several_files_and_a_torn_tail() {
    let dir = tempdir();
    let all = known_records();
    let lines: Vec<&str> = all.lines().collect();
    let a = write_file(dir.path(), "a.jsonl", lines[..15].join("\n") + "\n");
    let torn = format!("{}\n{}", lines[15..].join("\n"), &lines[0][..30]);
    let b = write_file(dir.path(), "b.jsonl", torn);
    let out = Sluice::new(["report".as_ref(), a.as_os_str(), b.as_os_str()])
        .output()
        .await;
    out.code(0);
    assert_eq!(out.stdout, KNOWN_SUMMARY);
    let warning = format!("{}:26: the last line is incomplete", b.display());
    assert!(out.stderr.contains(&warning), "{}", out.stderr);
}

/// A damaged line in the middle is an error naming the file and line, and
/// no output is written over an input.
#[tokio::test]
async fn report_refuses_bad_lines_and_writing_over_its_input() {
    let dir = tempdir();
    let all = known_records();
    let mut lines: Vec<&str> = all.lines().collect();
    lines[6] = "{\"ok\": tru";
    let bad = write_file(dir.path(), "bad.jsonl", lines.join("\n") + "\n");
    let out = Sluice::new(["report".as_ref(), bad.as_os_str()])
        .output()
        .await;
    out.code(2);
    let expected = format!("{}:7: not a sluice result line", bad.display());
    assert!(out.stderr.contains(&expected), "{}", out.stderr);

    let missing = dir.path().join("missing.jsonl");
    let out = Sluice::new(["report".as_ref(), missing.as_os_str()])
        .output()
        .await;
    out.code(2);
    assert!(
        out.stderr.contains("cannot read the results file"),
        "{}",
        out.stderr
    );

    let good = write_file(dir.path(), "good.jsonl", &all);
    for flag in ["--html", "--json"] {
        let out = Sluice::new([
            "report".as_ref(),
            good.as_os_str(),
            flag.as_ref(),
            good.as_os_str(),
        ])
        .output()
        .await;
        out.code(2);
        assert!(out.stderr.contains("is also the input"), "{}", out.stderr);
        assert_eq!(
            std::fs::read_to_string(&good).unwrap(),
            all,
            "{flag} replaced the input"
        );
    }

    // Like a run's outputs: existing data is replaced only under --overwrite.
    let old = write_file(dir.path(), "old.html", "keep me");
    let args = |extra: &[&str]| {
        let mut a: Vec<std::ffi::OsString> = vec![
            "report".into(),
            good.clone().into(),
            "--html".into(),
            old.clone().into(),
        ];
        a.extend(extra.iter().map(Into::into));
        a
    };
    let out = Sluice::new(args(&[])).output().await;
    out.code(2);
    assert!(out.stderr.contains("--overwrite"), "{}", out.stderr);
    // sluice report sends nothing; it said "nothing was sent".
    assert!(
        out.stderr.contains("nothing was written") && !out.stderr.contains("sent"),
        "{}",
        out.stderr
    );
    assert_eq!(std::fs::read_to_string(&old).unwrap(), "keep me");
    let out = Sluice::new(args(&["--overwrite"])).output().await;
    out.code(0);
    assert!(std::fs::read_to_string(&old).unwrap().contains("<svg"));
}

/// The HTML report of known records: self-contained, and each chart holds
/// the points the records make (structure checked here without a browser;
/// `browser.rs` checks the same in Chromium).
#[tokio::test]
async fn the_report_of_known_records_has_its_charts_and_tables() {
    let dir = tempdir();
    let results = write_file(dir.path(), "res.jsonl", known_records());
    let html_path = dir.path().join("report.html");
    Sluice::new([
        "report".as_ref(),
        results.as_os_str(),
        "--html".as_ref(),
        html_path.as_os_str(),
    ])
    .output()
    .await
    .code(0);
    let html = std::fs::read_to_string(&html_path).unwrap();
    assert_self_contained(&html);
    for (series, points) in KNOWN_POINTS {
        let attr = format!("data-series=\"{series}\" data-points=\"{points}\"");
        assert!(html.contains(&attr), "no {attr}");
    }
    // Four pauses (50 ms each, ten seconds apart), the error message, and
    // the statement that settings are not in records.
    assert_eq!(html.matches("<g class=\"band\">").count(), 4);
    assert!(html.contains("HTTP 500 Internal Server Error</td><td class=\"n\">8<"));
    assert!(html.contains("settings are not in the records"));
    assert!(
        html.contains("in 157 intervals of 0.25 s"),
        "interval count"
    );
}

/// Series and their data points in the report of [`known_records`]:
/// intervals of 0.25 s from 0 to 39.1 s make 157 intervals; each record
/// starts and ends in its own.
pub const KNOWN_POINTS: [(&str, u32); 8] = [
    ("ok", 32),
    ("failed", 8),
    ("ok p50", 32),
    ("ok p99", 32),
    ("failed p50", 8),
    ("failed p99", 8),
    ("retries", 4),
    ("in flight", 157),
];

/// No script, nothing loaded from elsewhere, and a policy that forbids it.
pub fn assert_self_contained(html: &str) {
    assert!(html.starts_with("<!doctype html>"));
    assert!(html.contains("Content-Security-Policy\" content=\"default-src 'none'"));
    assert!(!html.contains("<script"), "a script");
    for external in ["src=", "href=", "url(", "@import"] {
        assert!(!html.contains(external), "loads something: {external}");
    }
}

/// Records carry their waits and attempts: a retried request's log names
/// the failed attempt and its wait; under a rate, requests wait for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_carry_waits_and_the_attempt_log() {
    let server = mock().await;
    let url = server.url();
    let input = lines(&[
        format!("{url}/fast"),
        format!("{url}/fast"),
        format!("{url}/fast"),
        format!("{url}/fail/1/k1?status=503&retry_after_ms=200"),
    ]);
    let out = Sluice::run(["-q", "--rate", "10/s", "-c", "4"])
        .stdin(input)
        .output()
        .await;
    out.code(0);
    let records = by_line(&out.records());
    let retried = &records[&4];
    let log = retried["attempt_log"].as_array().expect("an attempt log");
    assert_eq!(log.len(), 2, "{retried}");
    assert_eq!(log[0]["status"], 503);
    assert_eq!(log[0]["error"], "http_status");
    let waited = log[0]["wait_ms"].as_f64().unwrap();
    assert!(waited >= 200.0, "{retried}");
    assert_eq!(retried["wait_ms"]["retry"].as_f64(), Some(waited));
    assert!(log[1]["start_ms"].as_f64().unwrap() >= 200.0, "{retried}");
    assert!(
        log[1].get("status").is_none(),
        "the last attempt's outcome is the record's"
    );
    // At 10/s, every request after the first waited about 100 ms for the
    // rate (the GCRA spaces starts 100 ms apart) once first in line.
    let rate_waits = records
        .values()
        .filter(|r| r["wait_ms"]["rate"].as_f64().unwrap() >= 50.0)
        .count();
    assert!(rate_waits >= 3, "{records:?}");
    for r in records.values() {
        // Waits and service add up to the time from queued to the outcome.
        let queued = r["queued_at"].as_str().unwrap();
        let started = r["started_at"].as_str().unwrap();
        assert!(queued <= started, "{r}");
        let log = r["attempt_log"].as_array().unwrap();
        assert_eq!(log.len() as u64, r["attempts"].as_u64().unwrap());
        assert_eq!(log[0]["start_ms"], 0.0);
    }
    server.shutdown().await;
}

/// After `--resume`, the run's report covers every record in the file, the
/// earlier run's too; and `sluice report` over that file agrees with the
/// run's summary line for line (but for the wall time).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_runs_report_covers_the_whole_file() {
    let server = mock().await;
    let dir = tempdir();
    let urls: Vec<String> = (0..10)
        .map(|i| {
            format!(
                "{}/status/{}",
                server.url(),
                if i % 3 == 0 { 404 } else { 200 }
            )
        })
        .collect();
    let input = write_file(dir.path(), "urls.txt", lines(&urls));
    let results = dir.path().join("res.jsonl");
    Sluice::run([
        input.as_os_str(),
        "-q".as_ref(),
        "-o".as_ref(),
        results.as_os_str(),
    ])
    .output()
    .await
    .code(1);
    // Keep the records of six lines, as if the first run had stopped there.
    let all = std::fs::read_to_string(&results).unwrap();
    let kept: Vec<&str> = all
        .lines()
        .filter(|l| {
            serde_json::from_str::<Value>(l).unwrap()["line"]
                .as_u64()
                .unwrap()
                <= 6
        })
        .collect();
    std::fs::write(&results, kept.join("\n") + "\n").unwrap();
    let report = dir.path().join("r.html");
    let out = Sluice::run([
        input.as_os_str(),
        "-o".as_ref(),
        results.as_os_str(),
        "--resume".as_ref(),
        "--report".as_ref(),
        report.as_os_str(),
    ])
    .output()
    .await;
    out.code(1);
    let html = std::fs::read_to_string(&report).unwrap();
    assert!(
        html.contains("<tr><th>requests</th><td>10</td></tr>"),
        "not the whole file"
    );
    assert!(html.contains("<tr><th>sent this run</th><td>4</td></tr>"));
    let recomputed = Sluice::new(["report".as_ref(), results.as_os_str()])
        .output()
        .await;
    recomputed.code(0);
    let tail = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|l| {
                l.starts_with("  status")
                    || l.starts_with("  errors")
                    || l.starts_with("  attempts")
            })
            .map(String::from)
            .collect()
    };
    assert_eq!(
        tail(&recomputed.stdout),
        tail(&out.stderr),
        "{}",
        out.stderr
    );
    assert!(
        recomputed
            .stdout
            .starts_with("sluice: 10 requests: 6 ok, 4 failed in ")
    );
    server.shutdown().await;
}

/// A results file in a provider's batch format has no timings: `sluice
/// report` says what it is and what to do (it said "missing field `ok` at
/// line 1 column 441").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_names_a_batch_format_file() {
    let server = mock().await;
    let dir = tempdir();
    let results = dir.path().join("out.jsonl");
    let input = format!("{}/fast\n", server.url());
    Sluice::run([
        "--output-format".as_ref(),
        "openai-batch".as_ref(),
        "-o".as_ref(),
        results.as_os_str(),
    ])
    .stdin(input)
    .output()
    .await
    .code(0);
    let out = Sluice::new(["report".as_ref(), results.as_os_str()])
        .output()
        .await;
    out.code(2);
    let expected = format!(
        "{}:1: an openai-batch result line, not a sluice record",
        results.display()
    );
    assert!(out.stderr.contains(&expected), "{}", out.stderr);
    assert!(
        out.stderr.contains("--output-format sluice"),
        "{}",
        out.stderr
    );
    server.shutdown().await;
}
