//! `sluice report RESULTS.jsonl...`: the summary and the HTML report
//! recomputed from result files alone (vegeta's model), over one file or
//! several (shards, resumed runs). Also reads a resumed run's whole output
//! back, so its report covers every record in the file.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use anyhow::{Result, anyhow, bail};
use sluice::stats::{Report, Sample};

use crate::cli::ReportArgs;
use crate::exit::{Ending, ExitCode};
use crate::html::{self, Source};
use crate::outputs::Output;
use crate::run::Usage;
use crate::screen::Summary;
use crate::settings::RunInfo;

/// Runs the command: prints the summary, writes `--html` and `--json`.
pub fn report(args: ReportArgs) -> Result<ExitCode> {
    let outputs: Vec<Output> = [("--html", &args.html), ("--json", &args.json)]
        .into_iter()
        .filter_map(|(option, path)| {
            let path = path.as_deref()?;
            Some(Output {
                option,
                path,
                appends: false,
            })
        })
        .collect();
    for note in crate::outputs::check(
        &outputs,
        &args.files,
        args.overwrite,
        crate::outputs::Writer::Files,
    )? {
        eprintln!("{note}");
    }
    let report = read(&args.files).map_err(Usage)?;
    let summary = summary(&report);
    print!("{}", summary.text());
    if let Some(path) = &args.json {
        summary.write_json(path).map_err(Usage)?;
    }
    if let Some(path) = &args.html {
        html::write(path, &summary, &report, Source::Files(&args.files)).map_err(Usage)?;
    }
    Ok(ExitCode::Ok)
}

/// The summary a run prints, from records alone: the wall time is the time
/// during which a request was in sluice (so the gaps between resumed runs
/// do not count). What records do not hold (closed origins, requests left
/// without a record, how the run ended) is absent.
pub fn summary(report: &Report) -> Summary {
    let mut s = Summary::new(&report.tally, &report.tally, report.busy_time());
    s.exit_code = ExitCode::decide(Ending {
        failed: report.tally.failed() > 0,
        ..Ending::default()
    });
    s
}

/// The records a run's report covers: after `--resume`, the whole output
/// file read back (earlier runs' records too); otherwise this run's.
pub fn whole_output(live: Option<Report>, resumed: bool, info: &RunInfo) -> Result<Report> {
    match &info.results_file {
        Some(path) if resumed => read(std::slice::from_ref(path))
            .map_err(|e| anyhow!("cannot read the results back for the report: {e:#}")),
        _ => Ok(live.unwrap_or_default()),
    }
}

/// Reads result files (`-` is standard input) into one report. A line that
/// is not a record is an error naming its file and line; an incomplete last
/// line (a crash, or a run still writing) is skipped with a warning.
pub fn read(paths: &[PathBuf]) -> Result<Report> {
    let mut report = Report::default();
    for_each_line(paths, |line| {
        let sample = Sample::from_json(line.text).map_err(|e| not_a_record(line.text, &e))?;
        report.add(&sample);
        Ok(())
    })?;
    Ok(report)
}

/// One complete line of a results file.
pub struct ResultLine<'a> {
    /// The file's index in the list read.
    pub file: usize,
    /// Where the line starts in its file (bytes).
    pub offset: u64,
    /// The line, without its line end.
    pub text: &'a str,
}

/// Calls `take` with every line of the result files (`-` is standard
/// input), in order: the one reader of result files for `sluice report` and
/// `sluice merge`. When `take` refuses a complete line (its message says
/// why), the error names the file and line; an incomplete last line it
/// refuses (a crash, or a run still writing) is skipped with a warning.
pub fn for_each_line(
    paths: &[PathBuf],
    mut take: impl FnMut(&ResultLine) -> Result<(), String>,
) -> Result<()> {
    for (file, path) in paths.iter().enumerate() {
        if path == Path::new("-") {
            read_lines(std::io::stdin().lock(), "standard input", file, &mut take)?;
        } else {
            let opened = File::open(path)
                .map_err(|e| anyhow!("cannot read the results file {}: {e}", path.display()))?;
            let name = path.display().to_string();
            read_lines(BufReader::new(opened), &name, file, &mut take)?;
        }
    }
    Ok(())
}

fn read_lines(
    mut reader: impl BufRead,
    name: &str,
    file: usize,
    take: &mut impl FnMut(&ResultLine) -> Result<(), String>,
) -> Result<()> {
    let mut buf = Vec::new();
    let mut offset = 0u64;
    for n in 1u64.. {
        buf.clear();
        let read = (&mut reader)
            .take(MAX_LINE_BYTES)
            .read_until(b'\n', &mut buf)
            .map_err(|e| anyhow!("cannot read {name}: {e}"))?;
        if read == 0 {
            break;
        }
        let complete = buf.last() == Some(&b'\n');
        if !complete && read as u64 == MAX_LINE_BYTES {
            bail!("{name}:{n}: a line longer than {MAX_LINE_BYTES} bytes is not a sluice record");
        }
        let taken = match std::str::from_utf8(&buf) {
            Ok(text) => take(&ResultLine {
                file,
                offset,
                text: text.trim_end(),
            }),
            Err(e) => Err(format!(
                "not a sluice result line ({e}); fix or remove that line"
            )),
        };
        match taken {
            Ok(()) => {}
            Err(_) if !complete => {
                eprintln!(
                    "sluice: warning: {name}:{n}: the last line is incomplete ({read} bytes, cut off by a crash or still being written); skipped"
                );
            }
            Err(e) => bail!("{name}:{n}: {e}"),
        }
        offset += read as u64;
    }
    Ok(())
}

/// Longest result line read (a record holds a body of at most
/// `--max-body-size`, 16 MiB by default, base64-encoded at worst).
const MAX_LINE_BYTES: u64 = 1 << 30;

/// Why a complete line is not a record, and what to do: a provider's batch
/// line (`--output-format openai-batch` or `anthropic-batch`) is named as
/// such, since those carry no timings to recompute a report from.
fn not_a_record(line: &str, why: &str) -> String {
    let batch = sluice::format::read_batch_line(line).and_then(Result::ok);
    match batch {
        Some(b) => format!(
            "an {} result line, not a sluice record: those carry no attempts or timings to make a report from; sluice report reads the records of a run with --output-format sluice (the default)",
            b.format
        ),
        None => format!("not a sluice result line ({why}); fix or remove that line"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: &str = r#"{"id":1,"line":1,"method":"GET","url":"http://h/","ok":true,"status":200,"attempts":1,"started_at":"2026-11-25T18:52:31.000Z","duration_ms":10.0,"error":null}"#;

    fn read_text(text: &str) -> Result<Report> {
        let mut r = Report::default();
        read_lines(text.as_bytes(), "res.jsonl", 0, &mut |line| {
            let sample = Sample::from_json(line.text).map_err(|e| not_a_record(line.text, &e))?;
            r.add(&sample);
            Ok(())
        })?;
        Ok(r)
    }

    #[test]
    fn a_torn_last_line_is_skipped_and_a_bad_middle_line_is_an_error() {
        let r = read_text(&format!("{OK}\n{OK}\n{{\"id\":3,\"li")).unwrap();
        assert_eq!(r.tally.records, 2);
        let e = read_text(&format!("{OK}\nnot json\n{OK}\n")).unwrap_err();
        let e = e.to_string();
        assert!(
            e.starts_with("res.jsonl:2: not a sluice result line"),
            "{e}"
        );
        // A last line without its newline that is whole still counts.
        assert_eq!(read_text(&format!("{OK}\n{OK}")).unwrap().tally.records, 2);
    }

    #[test]
    fn the_summary_comes_from_the_records() {
        let r = read_text(&format!("{OK}\n")).unwrap();
        let s = summary(&r);
        assert_eq!((s.records, s.ok, s.exit_code), (1, 1, ExitCode::Ok));
        assert!((s.wall_seconds - 0.010).abs() < 1e-9, "{}", s.wall_seconds);
    }
}
