//! `--resume`: read the records an earlier run wrote, repair a torn last
//! line, and tell which input lines already have a record (and with which
//! id), so only the others are sent.
//!
//! Memory: a 4-byte fingerprint of the id per line (0 = no record), not the
//! records themselves.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::record::{ErrorKind, Id};
use crate::request::Input;
use crate::stats::{Outcome, Tally};

/// What the output file already holds.
#[derive(Debug, Default)]
pub struct Recorded {
    fingerprints: Vec<u32>,
    path: Option<PathBuf>,
    retry_failed: bool,
    /// Statistics over the records kept.
    pub tally: Tally,
    /// Records kept.
    pub kept: u64,
    /// Failed records removed for `--retry-failed`.
    pub removed: u64,
    /// Bytes of a torn last line that were cut off.
    pub repaired_bytes: u64,
}

/// The output cannot be resumed; the message says why and what to do.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ResumeError(pub String);

#[derive(Deserialize)]
struct Line<'a> {
    #[serde(borrow)]
    id: &'a RawValue,
    line: u64,
    ok: bool,
    status: Option<u16>,
    #[serde(default)]
    attempts: u32,
    #[serde(default)]
    duration_ms: f64,
    error: Option<LineError>,
}

#[derive(Deserialize)]
struct LineError {
    kind: ErrorKind,
}

impl Recorded {
    /// Reads `path` (a missing file holds nothing) and cuts a torn last
    /// line. With `retry_failed`, failed records do not count as recorded, so
    /// their lines are sent again; call [`Recorded::commit`] once the inputs
    /// are known to match, to drop them from the file.
    pub fn scan(path: &Path, retry_failed: bool) -> Result<Recorded, ResumeError> {
        let shown = path.display();
        let file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Recorded::default()),
            Err(e) => return Err(ResumeError(format!("cannot read {shown} to resume: {e}"))),
        };
        let mut rec = Recorded {
            path: Some(path.to_path_buf()),
            retry_failed,
            ..Recorded::default()
        };
        let good_end = rec.read_all(file, path)?;
        rec.repaired_bytes = truncate_torn(path, good_end)?;
        Ok(rec)
    }

    /// Under `--retry-failed`, rewrites the file without its failed records
    /// (through a temporary file and a rename), so each line keeps one record.
    pub fn commit(&self) -> Result<(), ResumeError> {
        let Some(path) = self
            .path
            .as_deref()
            .filter(|_| self.retry_failed && self.removed > 0)
        else {
            return Ok(());
        };
        let file = File::open(path)
            .map_err(|e| ResumeError(format!("cannot read {}: {e}", path.display())))?;
        let mut rewrite = Rewrite::new(path)?;
        let mut reader = BufReader::new(file);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            let read = reader
                .read_until(b'\n', &mut buf)
                .map_err(|e| ResumeError(format!("cannot read {}: {e}", path.display())))?;
            if read == 0 {
                break;
            }
            let failed = serde_json::from_slice::<Line>(&buf).is_ok_and(|l| is_retried(&l));
            if !failed {
                rewrite.write(&buf)?;
            }
        }
        rewrite.commit(path)
    }

    /// Reads every complete line; returns the byte offset after the last one.
    fn read_all(&mut self, file: File, path: &Path) -> Result<u64, ResumeError> {
        let mut reader = BufReader::new(file);
        let (mut buf, mut offset, mut n) = (Vec::new(), 0u64, 0u64);
        loop {
            buf.clear();
            let read = reader
                .read_until(b'\n', &mut buf)
                .map_err(|e| ResumeError(format!("cannot read {}: {e}", path.display())))?;
            if read == 0 || buf.last() != Some(&b'\n') {
                return Ok(offset); // EOF, or a torn last line.
            }
            n += 1;
            if self.add(&buf, n, path, self.retry_failed)? {
                self.removed += 1;
            }
            offset += read as u64;
        }
    }

    /// Adds one record; returns true when it is a failure that
    /// `--retry-failed` re-sends (not an input error).
    fn add(
        &mut self,
        raw: &[u8],
        n: u64,
        path: &Path,
        retry_failed: bool,
    ) -> Result<bool, ResumeError> {
        let corrupt = |why: String| {
            ResumeError(format!(
                "{}:{n}: not a sluice record ({why}); the file is damaged in the middle, so it cannot be resumed safely: fix or remove that line",
                path.display()
            ))
        };
        let text = std::str::from_utf8(raw).map_err(|e| corrupt(e.to_string()))?;
        let line: Line =
            serde_json::from_str(text.trim_end()).map_err(|e| corrupt(e.to_string()))?;
        let id = Id::from_json(line.id).map_err(|e| corrupt(format!("id {e}")))?;
        let kind = line.error.as_ref().map(|e| e.kind);
        let retry = is_retried(&line);
        self.claim(line.line, &id, path)?;
        if retry && retry_failed {
            self.unclaim(line.line);
            return Ok(true);
        }
        self.kept += 1;
        self.tally.add(Outcome {
            ok: line.ok,
            status: line.status,
            kind,
            attempts: line.attempts,
            duration: Duration::try_from_secs_f64(line.duration_ms / 1000.0).unwrap_or_default(),
        });
        Ok(false)
    }

    fn claim(&mut self, line: u64, id: &Id, path: &Path) -> Result<(), ResumeError> {
        let i = usize::try_from(line).map_err(|_| ResumeError("line number too large".into()))?;
        if self.fingerprints.len() <= i {
            self.fingerprints.resize(i + 1, 0);
        }
        if self.fingerprints[i] != 0 {
            return Err(ResumeError(format!(
                "{} holds two records for input line {line}; it was not written by one sluice run over these inputs",
                path.display()
            )));
        }
        self.fingerprints[i] = fingerprint(id);
        Ok(())
    }

    fn unclaim(&mut self, line: u64) {
        if let Some(f) = self.fingerprints.get_mut(line as usize) {
            *f = 0;
        }
    }

    /// True when `line` already has a record.
    pub fn has(&self, line: u64) -> bool {
        self.fingerprints
            .get(line as usize)
            .is_some_and(|&f| f != 0)
    }

    /// The highest line with a record.
    pub fn last_line(&self) -> u64 {
        self.fingerprints.iter().rposition(|&f| f != 0).unwrap_or(0) as u64
    }

    /// Turns an input item whose line has a record into [`Input::Recorded`];
    /// fails when the record's id differs from the line's (the input changed).
    pub fn filter(&self, input: Input) -> Result<Input, ResumeError> {
        let line = input.line();
        if !self.has(line) {
            return Ok(input);
        }
        let id = match &input {
            Input::Request(r) => r.id.clone(),
            Input::Invalid(bad) => bad.id.clone().unwrap_or_else(|| Id::line(line)),
            Input::Recorded { id, .. } => id.clone(),
        };
        if self.fingerprints[line as usize] != fingerprint(&id) {
            return Err(ResumeError(format!(
                "input line {line} has id `{id}` but its record has another id: the input changed since the output was written; resume with the same inputs, or start a new output"
            )));
        }
        Ok(Input::Recorded { line, id })
    }
}

/// True for a failure that `--retry-failed` sends again (not an input error).
fn is_retried(line: &Line) -> bool {
    !line.ok
        && line
            .error
            .as_ref()
            .is_some_and(|e| !e.kind.is_input_error())
}

/// A 32-bit fingerprint of an id's text, never 0.
fn fingerprint(id: &Id) -> u32 {
    use std::hash::{Hash, Hasher};
    let mut h = std::hash::DefaultHasher::new();
    id.as_str().hash(&mut h);
    (h.finish() as u32).max(1)
}

/// Cuts everything after `good_end` (a torn last line); returns the bytes cut.
fn truncate_torn(path: &Path, good_end: u64) -> Result<u64, ResumeError> {
    let len = std::fs::metadata(path).map(|m| m.len()).unwrap_or(good_end);
    if len <= good_end {
        return Ok(0);
    }
    let file = OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|f| f.set_len(good_end).map(|_| f))
        .map_err(|e| {
            ResumeError(format!(
                "cannot repair the torn last line of {}: {e}",
                path.display()
            ))
        })?;
    let _ = file.sync_data();
    Ok(len - good_end)
}

/// The kept records of a `--retry-failed` rewrite.
struct Rewrite {
    tmp: PathBuf,
    out: io::BufWriter<File>,
}

impl Rewrite {
    fn new(path: &Path) -> Result<Rewrite, ResumeError> {
        let mut name = path.file_name().unwrap_or_default().to_os_string();
        name.push(".sluice-tmp");
        let tmp = path.with_file_name(name);
        let file = File::create(&tmp)
            .map_err(|e| ResumeError(format!("cannot create {}: {e}", tmp.display())))?;
        Ok(Rewrite {
            tmp,
            out: io::BufWriter::new(file),
        })
    }

    fn write(&mut self, line: &[u8]) -> Result<(), ResumeError> {
        self.out
            .write_all(line)
            .map_err(|e| ResumeError(format!("cannot write {}: {e}", self.tmp.display())))
    }

    fn commit(self, path: &Path) -> Result<(), ResumeError> {
        let fail = |e: io::Error| ResumeError(format!("cannot rewrite {}: {e}", path.display()));
        let mut file = self.out.into_inner().map_err(|e| fail(e.into_error()))?;
        file.flush().map_err(fail)?;
        file.sync_all().map_err(fail)?;
        std::fs::rename(&self.tmp, path).map_err(fail)?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            let _ = File::open(dir).and_then(|d| d.sync_all());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Record, RecordError};

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("sluice-resume-{}-{name}", std::process::id()));
        let _ = std::fs::remove_file(&dir);
        dir
    }

    fn record(line: u64, ok: bool) -> String {
        let mut r = Record::unsent(
            Id::line(line),
            line,
            Some("GET".into()),
            None,
            ErrorKind::Timeout,
            "x".into(),
        );
        r.attempts = 1;
        r.ok = ok;
        if ok {
            r.error = None;
        } else {
            r.error = Some(RecordError {
                kind: ErrorKind::Timeout,
                message: "x".into(),
                maybe_applied: false,
            });
        }
        r.to_json_line()
    }

    fn input(line: u64, id: Id) -> Input {
        let mut req = crate::Request::get(line, url::Url::parse("http://127.0.0.1/").unwrap());
        req.id = id;
        Input::Request(req)
    }

    #[test]
    fn a_missing_file_holds_nothing() {
        let r = Recorded::scan(&temp("missing"), false).unwrap();
        assert!(!r.has(1));
        assert_eq!(r.last_line(), 0);
    }

    #[test]
    fn a_torn_last_line_is_cut() {
        let path = temp("torn");
        let whole = format!("{}{}", record(1, true), record(3, true));
        std::fs::write(&path, format!("{whole}{{\"id\":2,\"line\":2,\"ok\":tr")).unwrap();
        let r = Recorded::scan(&path, false).unwrap();
        assert!(r.has(1) && r.has(3) && !r.has(2));
        assert_eq!(r.kept, 2);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), whole);
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn a_damaged_middle_line_or_two_records_for_a_line_are_refused() {
        let path = temp("corrupt");
        std::fs::write(
            &path,
            format!("{}garbage\n{}", record(1, true), record(2, true)),
        )
        .unwrap();
        let err = Recorded::scan(&path, false).unwrap_err();
        assert!(err.0.contains(":2: not a sluice record"), "{err}");
        std::fs::write(&path, format!("{}{}", record(1, true), record(1, true))).unwrap();
        assert!(
            Recorded::scan(&path, false)
                .unwrap_err()
                .0
                .contains("two records for input line 1")
        );
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn retry_failed_rewrites_without_failures() {
        let path = temp("retry");
        std::fs::write(
            &path,
            format!("{}{}{}", record(1, true), record(2, false), record(3, true)),
        )
        .unwrap();
        let r = Recorded::scan(&path, true).unwrap();
        assert!(r.has(1) && !r.has(2) && r.has(3));
        assert_eq!((r.kept, r.removed), (2, 1));
        // Nothing is rewritten until the inputs are known to match.
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 3);
        r.commit().unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            format!("{}{}", record(1, true), record(3, true))
        );
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn filter_skips_recorded_lines_and_catches_changed_ids() {
        let path = temp("filter");
        std::fs::write(&path, record(2, true)).unwrap();
        let r = Recorded::scan(&path, false).unwrap();
        assert!(matches!(
            r.filter(input(1, Id::line(1))),
            Ok(Input::Request(_))
        ));
        assert!(matches!(
            r.filter(input(2, Id::line(2))),
            Ok(Input::Recorded { line: 2, .. })
        ));
        let err = r.filter(input(2, Id::text("other"))).unwrap_err();
        assert!(err.0.contains("input changed"), "{err}");
        let _ = std::fs::remove_file(&path);
    }
}
