//! kill -9 in the middle of a run that writes a batch API's format, then
//! `--resume`: every `custom_id` has exactly one line across the output and
//! the errors file.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Value, json};

use crate::support::*;

const TOTAL: u64 = 900;

/// Every complete line of the files, keyed by custom_id (each at most once).
fn lines_by_custom_id(paths: &[&Path]) -> BTreeMap<String, Value> {
    let mut map = BTreeMap::new();
    for path in paths {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let complete = &text[..text.rfind('\n').map_or(0, |i| i + 1)];
        for line in complete.lines() {
            let v: Value = serde_json::from_str(line).expect("a JSON line");
            let id = v["custom_id"].as_str().expect("custom_id").to_string();
            assert!(map.insert(id.clone(), v).is_none(), "{id} has two lines");
        }
    }
    map
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_with_openai_batch_output_then_resume_gives_each_custom_id_once() {
    let server = mock().await;
    let dir = tempdir();
    let input: Vec<String> = (1..=TOTAL)
        .map(|i| {
            let model = if i % 10 == 0 { "status-500" } else { "gpt-mock" };
            if i % 3 == 0 {
                json!({"custom_id": format!("r{i}"), "method": "GET", "url": "/delay/0.05"})
            } else {
                json!({"custom_id": format!("r{i}"), "method": "POST", "url": "/v1/chat/completions", "body": {"model": model}})
            }
            .to_string()
        })
        .collect();
    let input = write_file(dir.path(), "batch.jsonl", lines(&input));
    let out = dir.path().join("out.jsonl");
    let errors = dir.path().join("errors.jsonl");
    let base = server.url();
    let args = |resume: bool| {
        let mut a: Vec<std::ffi::OsString> = vec![
            "-q".into(),
            "-c".into(),
            "10".into(),
            "--base-url".into(),
            base.clone().into(),
            "--output-format".into(),
            "openai-batch".into(),
            "-o".into(),
            out.clone().into(),
            "--errors-output".into(),
            errors.clone().into(),
        ];
        if resume {
            a.push("--resume".into());
        }
        a.push(input.clone().into());
        a
    };
    for (cycle, k) in [200usize, 500].into_iter().enumerate() {
        let mut child = Sluice::run(args(cycle > 0)).spawn();
        child
            .until(&format!("{k} lines written"), || {
                complete_lines(&out) + complete_lines(&errors) >= k
            })
            .await;
        child.kill_9().await;
        // At most one line per custom_id so far, torn tails aside.
        lines_by_custom_id(&[&out, &errors]);
    }
    let finished = Sluice::run(args(true)).output().await;
    finished.code(1);
    let all = lines_by_custom_id(&[&out, &errors]);
    assert_eq!(all.len() as u64, TOTAL, "every custom_id exactly once");
    for i in 1..=TOTAL {
        let v = &all[&format!("r{i}")];
        let want = if i % 10 == 0 && i % 3 != 0 { 500 } else { 200 };
        assert_eq!(v["response"]["status_code"], want, "{v}");
    }
    // Failures went to the errors file, successes to the output.
    for line in std::fs::read_to_string(&errors).unwrap().lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["response"]["status_code"], 500, "{v}");
    }
    server.shutdown().await;
}
