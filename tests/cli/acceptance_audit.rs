//! Checks written as a newcomer reads the contract: the names `sluice run`
//! uses for an option work wherever the same thing is asked for.

use crate::report::known_records;
use crate::support::*;

/// `sluice report` writes what `sluice run` writes, under `run`'s names
/// too: `--summary-json FILE` and `--report FILE.html`, over several files.
#[tokio::test]
async fn report_takes_the_output_names_of_run() {
    let dir = tempdir();
    let all = known_records();
    let lines: Vec<&str> = all.lines().collect();
    let a = write_file(dir.path(), "a.jsonl", lines[..15].join("\n") + "\n");
    let b = write_file(dir.path(), "b.jsonl", lines[15..].join("\n") + "\n");
    let json = dir.path().join("summary.json");
    let html = dir.path().join("report.html");
    let out = Sluice::new([
        "report".as_ref(),
        a.as_os_str(),
        b.as_os_str(),
        "--summary-json".as_ref(),
        json.as_os_str(),
        "--report".as_ref(),
        html.as_os_str(),
    ])
    .output()
    .await;
    out.code(0);
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("the summary was written"))
            .expect("the summary is JSON");
    assert_eq!(summary["records"], 40, "{summary}");
    assert_eq!(summary["ok"], 32, "{summary}");
    let page = std::fs::read_to_string(&html).expect("the report was written");
    assert!(page.contains("<html"), "{}", &page[..page.len().min(200)]);
}
