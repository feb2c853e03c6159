//! `--shard K/N` and `--shard env`: each process takes the lines whose
//! number modulo N is K, and together the shards write every line once.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::support::*;

/// Ten lines: requests, a comment, a blank line, a bad line and an id used
/// twice (lines 3 and 8), so every kind of line lands in some shard.
fn input(dir: &Path, m: &str) -> PathBuf {
    let text = [
        format!("{m}/fast?n=1"),
        "# a comment".to_string(),
        format!(r#"{{"id": "twice", "url": "{m}/fast?n=3"}}"#),
        format!("{m}/fast?n=4"),
        String::new(),
        "{not json".to_string(),
        format!("{m}/fast?n=7"),
        format!(r#"{{"id": "twice", "url": "{m}/fast?n=8"}}"#),
        format!("{m}/fast?n=9"),
        format!("{m}/fast?n=10"),
    ];
    write_file(dir, "in.jsonl", lines(&text))
}

fn read_records(path: &Path) -> Vec<Record> {
    parse_results(&std::fs::read_to_string(path).expect("read the output file"))
}

fn run_shard(input: &Path, out: &Path, shard: &str, extra: &[&str]) -> Sluice {
    let mut args: Vec<std::ffi::OsString> = vec!["--shard".into(), shard.into(), "-o".into()];
    args.push(out.as_os_str().into());
    args.extend(extra.iter().map(Into::into));
    args.push(input.as_os_str().into());
    Sluice::run(args)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_shards_write_every_line_once_with_its_global_number() {
    let server = mock().await;
    let dir = tempdir();
    let input = input(dir.path(), &server.url());
    let mut all: BTreeMap<u64, (usize, Record)> = BTreeMap::new();
    for k in 0..4 {
        let out = dir.path().join(format!("out-{k}.jsonl"));
        // Shard 0 owns the duplicate (line 8), shard 2 the bad line (6).
        let code = if k % 2 == 0 { 1 } else { 0 };
        run_shard(&input, &out, &format!("{k}/4"), &["--ordered"])
            .output()
            .await
            .code(code);
        let written: Vec<u64> = read_records(&out).iter().map(|r| r.line).collect();
        assert!(
            written.is_sorted(),
            "--ordered: shard {k} wrote {written:?}"
        );
        for record in read_records(&out) {
            let line = record.line;
            assert_eq!(line % 4, k as u64, "shard {k} wrote line {line}");
            assert!(all.insert(line, (k, record)).is_none(), "line {line} twice");
        }
    }
    // Every request line once (2 is a comment, 5 blank); the bad line 6 and
    // the duplicate at line 8 are reported by their owner only (shards 2, 0).
    assert_eq!(
        all.keys().copied().collect::<Vec<_>>(),
        [1, 3, 4, 6, 7, 8, 9, 10]
    );
    assert_eq!(kind(&all[&6].1), "invalid_request");
    assert_eq!(kind(&all[&8].1), "duplicate_id");
    assert_eq!(all[&3].1.id, "twice");
    assert!(all[&3].1.ok);
    assert_eq!(all[&9].1.id, 9, "ids stay the global line numbers");
    assert_eq!(path_requests(&server, "/fast"), 6, "each request sent once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shard_env_reads_the_kubernetes_index_and_the_count() {
    let server = mock().await;
    let dir = tempdir();
    let input = input(dir.path(), &server.url());
    let out = dir.path().join("out.jsonl");
    run_shard(&input, &out, "env", &[])
        .env("JOB_COMPLETION_INDEX", "1")
        .env("SLUICE_SHARDS", "4")
        .output()
        .await
        .code(0);
    let lines: Vec<u64> = read_records(&out).iter().map(|r| r.line).collect();
    let mut sorted = lines.clone();
    sorted.sort();
    assert_eq!(sorted, [1, 9]);
}

/// `--shard` value, environment (None: unset), what the error says.
type Case = (
    &'static str,
    &'static [(&'static str, Option<&'static str>)],
    &'static str,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_shards_are_usage_errors_before_anything_is_sent() {
    let server = mock().await;
    let dir = tempdir();
    let input = input(dir.path(), &server.url());
    let out = dir.path().join("out.jsonl");
    let cases: [Case; 6] = [
        ("4/4", &[], "0 to 3"),
        ("0/0", &[], "at least one shard"),
        ("1", &[], "is not K/N"),
        (
            "env",
            &[("JOB_COMPLETION_INDEX", None), ("SLUICE_SHARDS", Some("4"))],
            "JOB_COMPLETION_INDEX is not set",
        ),
        (
            "env",
            &[("JOB_COMPLETION_INDEX", Some("0")), ("SLUICE_SHARDS", None)],
            "SLUICE_SHARDS is not set",
        ),
        (
            "env",
            &[
                ("JOB_COMPLETION_INDEX", Some("5")),
                ("SLUICE_SHARDS", Some("4")),
            ],
            "0 to 3",
        ),
    ];
    for (shard, env, says) in cases {
        let mut sluice = run_shard(&input, &out, shard, &[]);
        for (name, value) in env {
            sluice = match value {
                Some(v) => sluice.env(name, v),
                None => sluice.env_remove(name),
            };
        }
        let got = sluice.output().await;
        got.code(2);
        assert!(got.stderr.contains(says), "--shard {shard}: {}", got.stderr);
    }
    assert!(!out.exists(), "nothing was written");
    assert_eq!(server.stats().requests, 0, "nothing was sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_and_retry_failed_work_per_shard() {
    let server = mock().await;
    let m = server.url();
    let dir = tempdir();
    // Line 3 fails once (503), then succeeds; shard 1/2 owns lines 1, 3, 5.
    let text: Vec<String> = (1..=6)
        .map(|i| match i {
            3 => format!("{m}/fail/1/shard-resume?status=500"),
            _ => format!("{m}/fast?n={i}"),
        })
        .collect();
    let input = write_file(dir.path(), "in.txt", lines(&text));
    let out = dir.path().join("out.jsonl");
    run_shard(&input, &out, "1/2", &["--retries", "0"])
        .output()
        .await
        .code(1);
    let first = by_line(&read_records(&out));
    assert_eq!(first.keys().copied().collect::<Vec<_>>(), [1, 3, 5]);
    // A crash lost line 5's record: --resume sends only it.
    std::fs::write(&out, format!("{}\n{}\n", first[&1], first[&3])).unwrap();
    let before = server.stats().requests;
    run_shard(&input, &out, "1/2", &["--resume", "--retries", "0"])
        .output()
        .await
        .code(1);
    assert_eq!(
        server.stats().requests,
        before + 1,
        "only line 5 is sent again"
    );
    // --retry-failed re-sends the failed line 3, and no line of shard 0.
    let before = server.stats().requests;
    run_shard(
        &input,
        &out,
        "1/2",
        &["--resume", "--retry-failed", "--retries", "0"],
    )
    .output()
    .await
    .code(0);
    assert_eq!(server.stats().requests, before + 1);
    let after = by_line(&read_records(&out));
    assert_eq!(after.keys().copied().collect::<Vec<_>>(), [1, 3, 5]);
    assert!(after[&3].ok);
}

/// Resuming one shard's output with another shard would append the second
/// shard's lines to the first's file: refused before anything is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resuming_another_shards_output_is_refused() {
    let server = mock().await;
    let m = server.url();
    let dir = tempdir();
    let text: Vec<String> = (1..=6).map(|i| format!("{m}/fast?n={i}")).collect();
    let input = write_file(dir.path(), "in.txt", lines(&text));
    let out = dir.path().join("out.jsonl");
    run_shard(&input, &out, "1/2", &[]).output().await.code(0);
    let written = std::fs::read_to_string(&out).unwrap();
    let before = server.stats().requests;
    let got = run_shard(&input, &out, "0/2", &["--resume"]).output().await;
    got.code(2);
    assert!(
        got.stderr.contains(
            "holds the record of line 1, which shard 1/2 owns, but this run is shard 0/2"
        ),
        "{}",
        got.stderr
    );
    assert_eq!(server.stats().requests, before, "nothing was sent");
    assert_eq!(
        std::fs::read_to_string(&out).unwrap(),
        written,
        "the file is untouched"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_checks_only_the_shards_lines() {
    let server = mock().await;
    let dir = tempdir();
    let input = input(dir.path(), &server.url());
    // Shard 1/4 owns lines 1, 5 and 9: no bad line.
    let out = Sluice::run(
        ["--dry-run", "--shard", "1/4"]
            .map(Into::into)
            .into_iter()
            .chain([input.clone().into_os_string()]),
    )
    .output()
    .await;
    out.code(0);
    assert!(out.stdout.is_empty(), "{}", out.stdout);
    // Shard 2/4 owns the bad line 6.
    let out = Sluice::run([
        "--dry-run".into(),
        "--shard".into(),
        "2/4".into(),
        input.into_os_string(),
    ])
    .output()
    .await;
    out.code(1);
    let records = out.results();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].line, 6);
}

/// Runs the four shards of `input` into `out-K.jsonl`; returns the paths.
async fn four_shards(input: &Path, dir: &Path) -> Vec<PathBuf> {
    let mut outs = Vec::new();
    for k in 0..4 {
        let out = dir.join(format!("out-{k}.jsonl"));
        let got = run_shard(input, &out, &format!("{k}/4"), &[])
            .output()
            .await;
        assert!(got.code <= 1, "{}", got.stderr);
        outs.push(out);
    }
    outs
}

fn merge(args: &[&std::ffi::OsStr]) -> Sluice {
    let mut all = vec![std::ffi::OsString::from("merge")];
    all.extend(args.iter().map(|a| a.to_os_string()));
    Sluice::new(all)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merge_combines_the_shards_in_input_order_and_checks_every_line() {
    let server = mock().await;
    let dir = tempdir();
    let input = input(dir.path(), &server.url());
    let outs = four_shards(&input, dir.path()).await;
    let merged = dir.path().join("merged.jsonl");
    let mut args: Vec<&std::ffi::OsStr> = outs.iter().map(|p| p.as_os_str()).collect();
    args.extend(["-o".as_ref(), merged.as_os_str(), "--ordered".as_ref()]);
    args.extend(["--check".as_ref(), input.as_os_str()]);
    let got = merge(&args).output().await;
    got.code(0);
    assert!(
        got.stderr.contains("8 records from 4 files"),
        "{}",
        got.stderr
    );
    let lines: Vec<u64> = read_records(&merged).iter().map(|r| r.line).collect();
    assert_eq!(lines, [1, 3, 4, 6, 7, 8, 9, 10], "in input order");

    // An existing output is refused unless --overwrite; an input never.
    // merge has no --resume and sends nothing: its refusal says neither.
    let refused = merge(&args).output().await;
    refused.code(2);
    assert!(
        refused
            .stderr
            .contains("nothing was written: choose another path, or give --overwrite"),
        "{}",
        refused.stderr
    );
    assert!(!refused.stderr.contains("--resume"), "{}", refused.stderr);
    let mut again = args.clone();
    again.push("--overwrite".as_ref());
    merge(&again).output().await.code(0);
    let mut onto_input = args.clone();
    onto_input.extend(["-o".as_ref(), outs[0].as_os_str()]);
    let got = merge(&onto_input).output().await;
    got.code(2);

    // Without --ordered: every record, file by file.
    let unordered = dir.path().join("unordered.jsonl");
    let mut args: Vec<&std::ffi::OsStr> = outs.iter().map(|p| p.as_os_str()).collect();
    args.extend(["-o".as_ref(), unordered.as_os_str()]);
    merge(&args).output().await.code(0);
    assert_eq!(read_records(&unordered).len(), 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merge_check_names_missing_and_doubled_lines() {
    let server = mock().await;
    let dir = tempdir();
    let input = input(dir.path(), &server.url());
    let outs = four_shards(&input, dir.path()).await;
    let merged = dir.path().join("merged.jsonl");
    // Shard 3 (lines 3 and 7) is missing, shard 1 given twice.
    let args: Vec<&std::ffi::OsStr> = vec![
        outs[0].as_os_str(),
        outs[1].as_os_str(),
        outs[1].as_os_str(),
        outs[2].as_os_str(),
        "-o".as_ref(),
        merged.as_os_str(),
        "--check".as_ref(),
        input.as_os_str(),
    ];
    let got = merge(&args).output().await;
    got.code(1);
    assert!(
        got.stderr
            .contains(&format!("2 request lines of the inputs have no record: line 3 ({in_}:3, id `twice`), line 7 ({in_}:7, id `7`); ", in_ = input.display())),
        "{}",
        got.stderr
    );
    let once = |line: u64| {
        let records = read_records(&outs[1]);
        let row = records.iter().position(|r| r.line == line).unwrap() + 1;
        let (out, id) = (outs[1].display(), records[row - 1].id.to_string());
        format!("line {line} recorded in {out}:{row} (id `{id}`) and {out}:{row} (id `{id}`)")
    };
    let doubled = format!(
        "2 lines with more than one record: {}, {}; ",
        once(1),
        once(9)
    );
    assert!(
        got.stderr.contains(&doubled),
        "{}\nwanted: {doubled}",
        got.stderr
    );
    // A line that is not a record is named by file and line (exit 2).
    let bad = write_file(dir.path(), "bad.jsonl", "not a record\n");
    let got = merge(&[
        bad.as_os_str(),
        "-o".as_ref(),
        dir.path().join("x.jsonl").as_os_str(),
    ])
    .output()
    .await;
    got.code(2);
    assert!(
        got.stderr.contains("bad.jsonl:1: not a result line"),
        "{}",
        got.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_covers_several_shard_outputs() {
    let server = mock().await;
    let dir = tempdir();
    let input = input(dir.path(), &server.url());
    let outs = four_shards(&input, dir.path()).await;
    let html = dir.path().join("report.html");
    let mut args = vec![std::ffi::OsString::from("report")];
    args.extend(outs.iter().map(|p| p.clone().into_os_string()));
    args.extend(["--html".into(), html.clone().into_os_string()]);
    let got = Sluice::new(args).output().await;
    got.code(0);
    assert!(
        got.stdout.contains("8 requests: 6 ok, 2 failed"),
        "{}",
        got.stdout
    );
    assert!(std::fs::metadata(&html).unwrap().len() > 1000);
}
