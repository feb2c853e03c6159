//! `sluice merge --check` against what a demanding user meets: records of
//! another input (ids that are not their lines'), blank and comment lines
//! (no record expected), several inputs (line numbers run on across them),
//! records beyond the inputs, and lines written twice: each named by file,
//! line and id, with what to do.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::support::*;

/// `sluice merge RESULTS... -o OUT --check INPUT...`.
async fn merge(results: &[&Path], out: &Path, inputs: &[&Path]) -> Out {
    let mut args: Vec<OsString> = vec!["merge".into()];
    args.extend(results.iter().map(|p| p.as_os_str().to_os_string()));
    args.extend(["-o".into(), out.as_os_str().to_os_string()]);
    for input in inputs {
        args.extend(["--check".into(), input.as_os_str().to_os_string()]);
    }
    Sluice::new(args).output().await
}

/// Runs `inputs` into `out.jsonl` in `dir`.
async fn run(dir: &Path, inputs: &[&Path]) -> PathBuf {
    let out = dir.join("out.jsonl");
    let mut args: Vec<OsString> = vec!["-q".into(), "-o".into(), out.clone().into_os_string()];
    args.extend(inputs.iter().map(|p| p.as_os_str().to_os_string()));
    Sluice::run(args).output().await.code(0);
    out
}

/// The result lines of `path`, as JSON.
fn records(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Where the record of `line` is in `path` (its line there, from 1).
fn row_of(path: &Path, line: u64) -> usize {
    records(path)
        .iter()
        .position(|r| r["line"] == line)
        .expect("a record of that line")
        + 1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_of_another_input_are_named_with_both_ids() {
    let server = mock().await;
    let dir = tempdir();
    let line = |id: &str| format!(r#"{{"id": "{id}", "url": "{}/fast"}}"#, server.url());
    let a = write_file(
        dir.path(),
        "a.jsonl",
        lines(&[line("a1"), line("a2"), line("a3")]),
    );
    let out = run(dir.path(), &[&a]).await;
    merge(&[&out], &dir.path().join("ok.jsonl"), &[&a])
        .await
        .code(0);
    // The same number of lines, other ids but line 2's.
    let b = write_file(
        dir.path(),
        "b.jsonl",
        lines(&[line("b1"), line("a2"), line("b3")]),
    );
    let got = merge(&[&out], &dir.path().join("m.jsonl"), &[&b]).await;
    got.code(1);
    let want = format!(
        "--check: 2 lines recorded with another id than the input line's: line 1 ({b}:1, id `b1`) recorded in {out}:{} (id `a1`), line 3 ({b}:3, id `b3`) recorded in {out}:{} (id `a3`); those records are of another input",
        row_of(&out, 1),
        row_of(&out, 3),
        b = b.display(),
        out = out.display()
    );
    assert!(got.stderr.contains(&want), "{}\nwanted: {want}", got.stderr);
    assert!(
        got.stderr
            .contains("check that --check names the run's inputs, in the order it read them"),
        "{}",
        got.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lines_run_on_across_inputs_and_blank_or_comment_lines_want_no_record() {
    let server = mock().await;
    let dir = tempdir();
    let url = format!("{}/fast", server.url());
    // a.txt: lines 1-3 (2 a comment); b.txt: lines 4-6 (4 blank).
    let a = write_file(dir.path(), "a.txt", lines(&[&url, "# a comment", &url]));
    let b = write_file(dir.path(), "b.txt", lines(&["", &url, &url]));
    let out = run(dir.path(), &[&a, &b]).await;
    let got = merge(&[&out], &dir.path().join("ok.jsonl"), &[&a, &b]).await;
    got.code(0);
    assert!(
        got.stderr.contains("4 records from 1 file"),
        "{}",
        got.stderr
    );

    // Line 5's record lost; records made up for line 2 (the comment),
    // line 4 (the blank line) and line 9 (past the inputs' 6 lines).
    let mut edited: Vec<serde_json::Value> = records(&out)
        .into_iter()
        .filter(|r| r["line"] != 5)
        .collect();
    let template = edited[0].clone();
    for line in [2, 4, 9] {
        let mut record = template.clone();
        record["line"] = line.into();
        record["id"] = format!("made-{line}").into();
        edited.push(record);
    }
    let text: Vec<String> = edited.iter().map(|r| r.to_string()).collect();
    let edited = write_file(dir.path(), "edited.jsonl", lines(&text));
    let got = merge(&[&edited], &dir.path().join("m.jsonl"), &[&a, &b]).await;
    got.code(1);
    let (ad, bd, e) = (a.display(), b.display(), edited.display());
    for want in [
        format!(
            "--check: 1 request line of the inputs has no record: line 5 ({bd}:2, id `5`); run the shard that owns each (line modulo N is K) again with --resume, then merge again"
        ),
        format!(
            "--check: 2 records for lines that hold no request (blank, or a # comment) in the inputs: line 2 ({ad}:2) recorded in {e}:4 (id `made-2`), line 4 ({bd}:1) recorded in {e}:5 (id `made-4`); check that --check names the run's inputs"
        ),
        format!(
            "--check: 1 record for lines beyond the inputs' 6 lines: line 9 recorded in {e}:6 (id `made-9`); check that --check names every input of the run"
        ),
    ] {
        assert!(got.stderr.contains(&want), "{}\nwanted: {want}", got.stderr);
    }
    // Only the first input given: line 5 is beyond it, and b.txt's lines
    // are missing from no input (nothing of b.txt is expected).
    let got = merge(&[&out], &dir.path().join("a-only.jsonl"), &[&a]).await;
    got.code(1);
    assert!(
        got.stderr.contains(
            "--check: 2 records for lines beyond the inputs' 3 lines: line 5 recorded in"
        ),
        "{}",
        got.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_line_written_twice_is_named_with_each_file_and_row() {
    let server = mock().await;
    let dir = tempdir();
    let url = format!("{}/fast", server.url());
    let input = write_file(dir.path(), "in.txt", lines(&[&url, &url]));
    let out = run(dir.path(), &[&input]).await;
    let copy = dir.path().join("copy.jsonl");
    std::fs::copy(&out, &copy).unwrap();
    let got = merge(&[&out, &copy], &dir.path().join("m.jsonl"), &[&input]).await;
    got.code(1);
    let row = row_of(&out, 1);
    let want = format!(
        "2 lines with more than one record: line 1 recorded in {o}:{row} (id `1`) and {c}:{row} (id `1`), line 2",
        o = out.display(),
        c = copy.display()
    );
    assert!(got.stderr.contains(&want), "{}\nwanted: {want}", got.stderr);
    assert!(
        got.stderr
            .contains("both records are in the merged file, keep one of them"),
        "{}",
        got.stderr
    );
}
