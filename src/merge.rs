//! `sluice merge RESULTS... -o FILE`: the outputs of several shards (or
//! runs) combined into one results file, optionally in input order, and
//! checked against the inputs: every request line exactly one record.
//!
//! Result lines are read by the one reader of result files
//! ([`crate::recompute::for_each_line`]) and their line numbers as
//! `--resume` reads them, so any output format merges. Under `--ordered`,
//! memory holds 24 bytes per record (where each is), and the records are
//! read again in order; under `--check`, 16 (its line and a hash of its
//! id, compared with the inputs' in [`check`]).

mod check;

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow};
use sluice::intake::BitSet;

use crate::cli::MergeArgs;
use crate::exit::{Ending, ExitCode};
use crate::outputs::Output;
use crate::recompute::{ResultLine, for_each_line};
use crate::run::Usage;
use check::{Named, Where};

/// Runs the command: 0 merged (and checked), 1 a line has no record or
/// several, 2 a file could not be read or written.
pub async fn merge(args: MergeArgs) -> Result<ExitCode> {
    check_paths(&args)?;
    let mut index = Index {
        checking: !args.check.is_empty(),
        ..Index::default()
    };
    let to_stdout = args.output == Path::new("-");
    let written = if to_stdout {
        let mut out = BufWriter::new(io::stdout().lock());
        write_all(&args, &mut index, &mut out).and_then(|()| Ok(out.flush()?))
    } else {
        write_replacing(&args.output, |out| write_all(&args, &mut index, out))
    };
    written.map_err(Usage)?;
    let mut found = if args.check.is_empty() {
        check::Found::default()
    } else {
        check::inputs(&args.check, &mut index.ids)
            .await
            .map_err(Usage)?
    };
    found.doubled = Named::of(index.doubled.iter().map(|line| (line, None)));
    let places = check::locate(&args.files, &found.lines_named()).map_err(Usage)?;
    let problems = found.messages(&Where {
        places: &places,
        results: &args.files,
        inputs: &args.check,
    });
    eprintln!(
        "sluice merge: {} from {} into {}",
        plural(index.records, "record"),
        plural(args.files.len() as u64, "file"),
        if to_stdout {
            "stdout".to_string()
        } else {
            args.output.display().to_string()
        }
    );
    for problem in &problems {
        eprintln!("sluice merge: {problem}");
    }
    Ok(ExitCode::decide(Ending {
        failed: !problems.is_empty(),
        ..Ending::default()
    }))
}

/// `-o` is checked as a run's outputs are: never one of the files read,
/// never an existing non-empty file unless `--overwrite`.
fn check_paths(args: &MergeArgs) -> Result<()> {
    if args.ordered && args.files.iter().any(|p| p == Path::new("-")) {
        return Err(Usage(anyhow!(
            "--ordered reads the results twice, so they must be files, not standard input (-)"
        ))
        .into());
    }
    if args.output == Path::new("-") {
        return Ok(());
    }
    let outputs = [Output {
        option: "-o",
        path: &args.output,
        appends: false,
    }];
    let read: Vec<PathBuf> = args.files.iter().chain(&args.check).cloned().collect();
    for note in crate::outputs::check(
        &outputs,
        &read,
        args.overwrite,
        crate::outputs::Writer::Files,
    )? {
        eprintln!("{note}");
    }
    Ok(())
}

/// Writes `path` through a temporary file renamed into place
/// ([`sluice::replace`]), so a failure leaves no half-merged file.
fn write_replacing(path: &Path, write: impl FnOnce(&mut dyn Write) -> Result<()>) -> Result<()> {
    let mut failed: Option<anyhow::Error> = None;
    let written = sluice::replace::replace_with(path, |out| {
        write(out).map_err(|e| {
            let io = io::Error::other(e.to_string());
            failed = Some(e);
            io
        })
    });
    match (written, failed) {
        (_, Some(e)) => Err(e),
        (Err(e), None) => {
            Err(anyhow::Error::new(e).context(format!("cannot write {}", path.display())))
        }
        (Ok(()), None) => Ok(()),
    }
}

/// Reads every record, writing it at once (in the order read) or, under
/// `--ordered`, noting where it is and writing all in line order after.
fn write_all(args: &MergeArgs, index: &mut Index, out: &mut dyn Write) -> Result<()> {
    let mut failed: Option<io::Error> = None;
    for_each_line(&args.files, |line| {
        let (number, id) = sluice::resume::record_line_and_id(line.text)
            .map_err(|why| format!("not a result line ({why}); fix or remove that line"))?;
        index.add(number, &id, line, args.ordered);
        if !args.ordered && failed.is_none() {
            failed = writeln!(out, "{}", line.text).err();
        }
        Ok(())
    })?;
    if let Some(e) = failed {
        return Err(anyhow!("cannot write {}: {e}", args.output.display()));
    }
    if args.ordered {
        index.write_ordered(&args.files, out)?;
    }
    Ok(())
}

/// Where one record is, for `--ordered`.
struct Place {
    line: u64,
    offset: u64,
    len: u32,
    file: u32,
}

/// The records seen: which lines have one, which several, (checking)
/// each one's line and id, and (ordered) where each is.
#[derive(Default)]
struct Index {
    records: u64,
    seen: BitSet,
    doubled: BitSet,
    checking: bool,
    ids: Vec<(u64, u64)>,
    places: Vec<Place>,
}

impl Index {
    fn add(&mut self, number: u64, id: &str, line: &ResultLine, ordered: bool) {
        self.records += 1;
        if !self.seen.insert(number) {
            self.doubled.insert(number);
        }
        if self.checking {
            self.ids.push((number, check::id_hash(id)));
        }
        if ordered {
            self.places.push(Place {
                line: number,
                offset: line.offset,
                // A record line is at most 1 GiB (the reader's limit).
                len: line.text.len() as u32,
                file: line.file as u32,
            });
        }
    }

    /// Reads the records again, in line order (records of one line in the
    /// order read), and writes them.
    fn write_ordered(&mut self, paths: &[PathBuf], out: &mut dyn Write) -> Result<()> {
        use std::os::unix::fs::FileExt;
        self.places.sort_by_key(|p| (p.line, p.file, p.offset));
        let files = paths
            .iter()
            .map(|p| File::open(p).with_context(|| format!("cannot read {}", p.display())))
            .collect::<Result<Vec<_>>>()?;
        let mut buf = Vec::new();
        for place in &self.places {
            buf.resize(place.len as usize, 0);
            let path = &paths[place.file as usize];
            files[place.file as usize]
                .read_exact_at(&mut buf, place.offset)
                .with_context(|| {
                    format!("cannot read {} again (did it change?)", path.display())
                })?;
            buf.push(b'\n');
            out.write_all(&buf)
                .context("cannot write the merged results")?;
        }
        Ok(())
    }
}

/// `n thing` or `n things`.
fn plural(n: u64, thing: &str) -> String {
    if n == 1 {
        format!("1 {thing}")
    } else {
        format!("{n} {thing}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plural_counts() {
        assert_eq!(plural(1, "record"), "1 record");
        assert_eq!(plural(2, "record"), "2 records");
    }
}
