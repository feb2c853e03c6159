//! `sluice merge --check`: the inputs read as the run read them, each
//! request line matched with its records by line number and id, and what
//! is wrong named by file, line and id, with what to do.
//!
//! The records' lines and id hashes are sorted and walked beside the input
//! stream (which comes in line order), so the check holds 16 bytes per
//! record and nothing per input line. Where the named records are in the
//! result files is found by reading those files again, only when something
//! is wrong (and not for standard input, which is read once).

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Result, anyhow};
use futures::StreamExt;
use sluice::parse::ParseOptions;
use sluice::source::Source;

use super::plural;
use crate::recompute::for_each_line;

/// How many lines a message names before it only counts the rest.
const SHOWN: usize = 20;

/// A hash of an id: a record's is compared with its input line's in 8
/// bytes (a false match is one in 2^64).
pub fn id_hash(id: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::hash::DefaultHasher::new();
    id.hash(&mut h);
    h.finish()
}

/// The lines of one kind of problem: how many, and the first few (with the
/// id their input line has, where that is known).
#[derive(Debug, Default)]
pub struct Named {
    count: u64,
    shown: Vec<(u64, Option<String>)>,
    /// The line added last (`shown` stops growing; this does not).
    last: Option<u64>,
}

impl Named {
    /// The lines `items` gives, in order.
    pub fn of(items: impl Iterator<Item = (u64, Option<String>)>) -> Named {
        let mut named = Named::default();
        for (line, id) in items {
            named.push(line, id);
        }
        named
    }

    /// Adds `line`, unless it is the one added last (several records of one line).
    fn push(&mut self, line: u64, id: Option<String>) {
        if self.last == Some(line) {
            return;
        }
        self.last = Some(line);
        self.count += 1;
        if self.shown.len() < SHOWN {
            self.shown.push((line, id));
        }
    }
}

/// What the check found.
#[derive(Debug, Default)]
pub struct Found {
    /// Request lines without a record (and their ids).
    pub missing: Named,
    /// Lines with more than one record.
    pub doubled: Named,
    /// Lines whose records carry another id than the line (and its id).
    pub mismatched: Named,
    /// Records of lines that hold no request (blank, or a `#` comment).
    pub not_requests: Named,
    /// Records of lines past the inputs' last.
    pub beyond: Named,
    /// Each input's line count (`None` from standard input or a pipe on: read once).
    counts: Vec<Option<u64>>,
}

/// Reads `inputs` as a run does and walks `records` (line, id hash) beside
/// them.
///
/// # Errors
/// An input cannot be opened or read.
pub async fn inputs(inputs: &[PathBuf], records: &mut [(u64, u64)]) -> Result<Found> {
    let counts = line_counts(inputs)?;
    let source =
        Source::open(inputs, ParseOptions::default()).map_err(|e| anyhow!("--check: {e}"))?;
    let mut stream = Box::pin(source.into_stream());
    records.sort_unstable();
    let mut found = Found {
        counts,
        ..Found::default()
    };
    let mut next = 0;
    while let Some(item) = stream.next().await {
        let input = item.map_err(|e| anyhow!("--check: {e}"))?;
        let line = input.line();
        while let Some(&(before, _)) = records.get(next).filter(|r| r.0 < line) {
            found.not_requests.push(before, None);
            next += 1;
        }
        let first = next;
        while records.get(next).is_some_and(|r| r.0 == line) {
            next += 1;
        }
        let id = sluice::resume::id_of(&input).as_str().to_string();
        let hash = id_hash(&id);
        if first == next {
            found.missing.push(line, Some(id));
        } else if records[first..next].iter().any(|&(_, h)| h != hash) {
            found.mismatched.push(line, Some(id));
        }
    }
    let total = found.total();
    for &(line, _) in &records[next..] {
        match total {
            Some(total) if line > total => found.beyond.push(line, None),
            _ => found.not_requests.push(line, None),
        }
    }
    Ok(found)
}

impl Found {
    /// Every line a message names, to find where their records are.
    pub fn lines_named(&self) -> BTreeSet<u64> {
        [
            &self.doubled,
            &self.mismatched,
            &self.not_requests,
            &self.beyond,
        ]
        .into_iter()
        .flat_map(|named| named.shown.iter().map(|(line, _)| *line))
        .collect()
    }

    /// All the inputs' lines, blank and comment lines included (`None`
    /// when standard input is one of them).
    fn total(&self) -> Option<u64> {
        self.counts.iter().copied().sum()
    }

    /// One message per kind of problem: what, where (file, line, id) and
    /// what to do.
    pub fn messages(&self, at: &Where) -> Vec<String> {
        let mut messages = Vec::new();
        let mut say = |named: &Named,
                       what: String,
                       each: &dyn Fn(u64, Option<&str>) -> String,
                       todo: &str| {
            if named.count == 0 {
                return;
            }
            let mut list: Vec<String> = named
                .shown
                .iter()
                .map(|(line, id)| each(*line, id.as_deref()))
                .collect();
            if named.count > named.shown.len() as u64 {
                list.push(format!(
                    "and {} more",
                    named.count - named.shown.len() as u64
                ));
            }
            messages.push(format!("{what}: {}; {todo}", list.join(", ")));
        };
        let input = |line: u64, id: Option<&str>| {
            let mut parts: Vec<String> = at.input_line(line, &self.counts).into_iter().collect();
            parts.extend(id.map(|id| format!("id `{}`", sluice::parse::for_message(id))));
            match parts.is_empty() {
                true => format!("line {line}"),
                false => format!("line {line} ({})", parts.join(", ")),
            }
        };
        say(
            &self.doubled,
            format!(
                "{} with more than one record",
                plural(self.doubled.count, "line")
            ),
            &|line, _| format!("line {line}{}", at.recorded(line)),
            "a line sent by two shards (the same --shard twice, or a shard run again without --resume) was written twice: both records are in the merged file, keep one of them",
        );
        let count = self.missing.count;
        say(
            &self.missing,
            format!(
                "--check: {} of the inputs {} no record",
                plural(count, "request line"),
                if count == 1 { "has" } else { "have" }
            ),
            &input,
            "run the shard that owns each (line modulo N is K) again with --resume, then merge again",
        );
        say(
            &self.mismatched,
            format!(
                "--check: {} recorded with another id than the input line's",
                plural(self.mismatched.count, "line")
            ),
            &|line, id| format!("{}{}", input(line, id), at.recorded(line)),
            "those records are of another input, or the input changed after the run: check that --check names the run's inputs, in the order it read them; if it does, run those lines' shards again into new outputs",
        );
        say(
            &self.not_requests,
            format!(
                "--check: {} for lines that hold no request (blank, or a # comment) in the inputs",
                plural(self.not_requests.count, "record")
            ),
            &|line, _| format!("{}{}", input(line, None), at.recorded(line)),
            "check that --check names the run's inputs, in the order it read them",
        );
        let beyond = match self.total() {
            Some(total) => format!("the inputs' {}", plural(total, "line")),
            None => "the inputs' last line".into(),
        };
        say(
            &self.beyond,
            format!(
                "--check: {} for lines beyond {beyond}",
                plural(self.beyond.count, "record")
            ),
            &|line, _| format!("line {line}{}", at.recorded(line)),
            "check that --check names every input of the run, in the order it read them",
        );
        messages
    }
}

/// A record found again: its results file, its line there, its id.
#[derive(Debug)]
pub struct Place {
    file: usize,
    row: u64,
    id: String,
}

/// What names a problem's lines: where their records are, and the inputs.
pub struct Where<'a> {
    /// The named lines' records ([`locate`]).
    pub places: &'a BTreeMap<u64, Vec<Place>>,
    /// The result files, as given.
    pub results: &'a [PathBuf],
    /// The inputs, as given to `--check`.
    pub inputs: &'a [PathBuf],
}

impl Where<'_> {
    /// `IN:N` for the run's `line` (none past standard input).
    fn input_line(&self, line: u64, counts: &[Option<u64>]) -> Option<String> {
        let mut first = 1;
        for (path, count) in self.inputs.iter().zip(counts) {
            let count = (*count)?;
            if (first..first + count).contains(&line) {
                return Some(format!("{}:{}", path.display(), line - first + 1));
            }
            first += count;
        }
        None
    }

    /// ` recorded in OUT:N (id `X`) and ...` for the records of `line`
    /// (nothing when they were not found again).
    fn recorded(&self, line: u64) -> String {
        let Some(places) = self.places.get(&line) else {
            return String::new();
        };
        let list: Vec<String> = places
            .iter()
            .map(|p| {
                let file = self
                    .results
                    .get(p.file)
                    .map_or(Path::new("?"), |p| p.as_path());
                format!(
                    "{}:{} (id `{}`)",
                    file.display(),
                    p.row,
                    sluice::parse::for_message(&p.id)
                )
            })
            .collect();
        format!(" recorded in {}", list.join(" and "))
    }
}

/// Reads the result files again for the records of `lines`; nothing when
/// no line is named or a results file is standard input (read once).
///
/// # Errors
/// A results file can no longer be read.
pub fn locate(results: &[PathBuf], lines: &BTreeSet<u64>) -> Result<BTreeMap<u64, Vec<Place>>> {
    let mut places: BTreeMap<u64, Vec<Place>> = BTreeMap::new();
    if lines.is_empty() || results.iter().any(|p| p == Path::new("-")) {
        return Ok(places);
    }
    let (mut file, mut row) = (usize::MAX, 0u64);
    for_each_line(results, |result| {
        if result.file != file {
            (file, row) = (result.file, 0);
        }
        row += 1;
        if let Ok((line, id)) = sluice::resume::record_line_and_id(result.text)
            && lines.contains(&line)
        {
            places
                .entry(line)
                .or_default()
                .push(Place { file, row, id });
        }
        Ok(())
    })?;
    Ok(places)
}

/// Each input's lines, counted as the run numbers them (a last line
/// without a newline counts); `None` for standard input, a pipe or a FIFO, and after it.
fn line_counts(inputs: &[PathBuf]) -> Result<Vec<Option<u64>>> {
    let mut counts = Vec::new();
    let mut known = true;
    for path in inputs {
        // Counted only where reading twice is safe: a pipe or a FIFO
        // would give its data to the count and none to the walk.
        known &= path != Path::new("-") && std::fs::metadata(path).is_ok_and(|m| m.is_file());
        counts.push(match known {
            true => Some(count_lines(path)?),
            false => None,
        });
    }
    Ok(counts)
}

fn count_lines(path: &Path) -> Result<u64> {
    let cannot =
        |e: std::io::Error| anyhow!("--check: cannot read input `{}`: {e}", path.display());
    let mut file = File::open(path).map_err(cannot)?;
    let mut buf = vec![0u8; 1 << 16];
    let (mut lines, mut last) = (0u64, b'\n');
    loop {
        let n = file.read(&mut buf).map_err(cannot)?;
        if n == 0 {
            break;
        }
        lines += buf[..n].iter().filter(|&&b| b == b'\n').count() as u64;
        last = buf[n - 1];
    }
    Ok(lines + u64::from(last != b'\n'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_is_named_once_however_many_records_it_has() {
        let named = Named::of([(3, None), (3, None), (5, None)].into_iter());
        assert_eq!(named.count, 2);
        let many = Named::of((1..=25).map(|l| (l, None)));
        assert_eq!((many.count, many.shown.len()), (25, SHOWN));
        // Past the lines shown, a line's second record still counts once.
        let doubled = Named::of((1..=25).flat_map(|l| [(l, None), (l, None)]));
        assert_eq!((doubled.count, doubled.shown.len()), (25, SHOWN));
    }

    #[test]
    fn input_lines_are_named_by_file_across_inputs() {
        let inputs = [PathBuf::from("a.txt"), PathBuf::from("b.txt")];
        let places = BTreeMap::new();
        let at = Where {
            places: &places,
            results: &[],
            inputs: &inputs,
        };
        let counts = [Some(3), Some(4)];
        assert_eq!(at.input_line(3, &counts).as_deref(), Some("a.txt:3"));
        assert_eq!(at.input_line(4, &counts).as_deref(), Some("b.txt:1"));
        assert_eq!(at.input_line(8, &counts), None);
        assert_eq!(at.input_line(0, &counts), None);
        assert_eq!(at.input_line(4, &[Some(3), None]), None);
    }
}
