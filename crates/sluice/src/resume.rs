//! `--resume`: read the records an earlier run wrote, repair a torn last
//! line, and tell which input lines already have a record (and with which
//! id), so only the others are sent.
//!
//! Memory: one bit per line (has it a record?) and, to check that the input
//! did not change, one 8-byte digest per block of 1024 lines of what each
//! record says was sent (id, method and redacted URL) — not the records
//! themselves.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde_json::value::RawValue;

use std::collections::BTreeMap;

use crate::format::{self, OutputFormat};
use crate::intake::BitSet;
use crate::record::{ErrorKind, Id};
use crate::redact::Redactor;
use crate::request::Input;
use crate::stats::{RecordFacts, Tally};

/// What the output file already holds.
#[derive(Debug, Default)]
pub struct Recorded {
    /// The blocks of [`BLOCK`] lines that hold records. Sparse: a record
    /// claiming line 10^14 costs one block, not a bitmap that long.
    blocks: BTreeMap<u64, Block>,
    /// The files read (the output, and `--errors-output` if any).
    files: Vec<Scanned>,
    retry_failed: bool,
    /// The format of the records read (`None` while there are none).
    pub format: Option<OutputFormat>,
    /// Statistics over the records kept.
    pub tally: Tally,
    /// Records kept.
    pub kept: u64,
    /// Failed records removed for `--retry-failed`.
    pub removed: u64,
    /// Bytes of a torn last line that were cut off.
    pub repaired_bytes: u64,
    /// Redacts input URLs as the records' URLs were redacted.
    redactor: Redactor,
}

/// One file of records that was read.
#[derive(Debug)]
struct Scanned {
    path: PathBuf,
    /// Where the last complete line ends.
    good_end: u64,
    /// Failed records to drop under `--retry-failed`.
    removed: u64,
}

/// The output cannot be resumed; the message says why and what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ResumeError {
    /// A file of records could not be opened.
    #[error("cannot read {} to resume", path.display())]
    Open {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A file of records is a device, a pipe or a directory.
    #[error("{} is not a regular file, so its records cannot be read back to resume: write the results to a regular file", path.display())]
    NotRegular {
        /// The file.
        path: PathBuf,
    },
    /// Reading a file of records failed.
    #[error("cannot read {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A line before the last is not a record.
    #[error("{}:{line}: not a record sluice writes ({reason}); the file is damaged in the middle, so it cannot be resumed safely: fix or remove that line", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// The line number in the file.
        line: u64,
        /// What is wrong with it.
        reason: String,
    },
    /// Records of two formats in one file.
    #[error("{}:{line}: a record in the {found} format after records in the {before} format; the file mixes formats, so it cannot be resumed safely", path.display())]
    MixedFormats {
        /// The file.
        path: PathBuf,
        /// The line number in the file.
        line: u64,
        /// The format of this line.
        found: OutputFormat,
        /// The format of the lines before.
        before: OutputFormat,
    },
    /// Two records for one input line.
    #[error("{} holds two records for input line {line}; it was not written by one sluice run over these inputs", path.display())]
    TwoRecords {
        /// The file.
        path: PathBuf,
        /// The input line.
        line: u64,
    },
    /// A torn last line could not be cut.
    #[error("cannot repair the torn last line of {}", path.display())]
    Repair {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The file without its failed records could not be written.
    #[error("cannot rewrite {}", path.display())]
    Rewrite {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
}

/// The [`ResumeError::Read`] of `path`.
fn read_error(path: &Path) -> impl Fn(io::Error) -> ResumeError + '_ {
    move |source| ResumeError::Read {
        path: path.to_path_buf(),
        source,
    }
}

#[derive(Deserialize)]
struct Line<'a> {
    #[serde(borrow)]
    id: &'a RawValue,
    line: u64,
    #[serde(default)]
    method: Option<String>,
    #[serde(default)]
    url: Option<String>,
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
    /// Reads `path` (a missing file holds nothing); nothing is changed
    /// until [`Recorded::commit`]. With `retry_failed`, failed records do not count as recorded, so
    /// their lines are sent again; call [`Recorded::commit`] once the inputs
    /// are known to match, to drop them from the file.
    ///
    /// `redactor` must be the run's: input URLs are redacted with it before
    /// they are compared with the recorded (redacted) URLs.
    ///
    /// # Errors
    ///
    /// As [`Recorded::scan_all`].
    pub fn scan(
        path: &Path,
        retry_failed: bool,
        redactor: &Redactor,
    ) -> Result<Recorded, ResumeError> {
        Recorded::scan_all(&[path], retry_failed, redactor)
    }

    /// [`Recorded::scan`] over several files that together hold one run's
    /// records (the output and `--errors-output`): a line may have a record
    /// in only one of them.
    ///
    /// # Errors
    ///
    /// When a file cannot be read, is not a regular file, holds a line that is not a record (damaged in the middle), mixes formats, or holds two records for one input line ([`ResumeError`]).
    pub fn scan_all(
        paths: &[&Path],
        retry_failed: bool,
        redactor: &Redactor,
    ) -> Result<Recorded, ResumeError> {
        let mut rec = Recorded {
            redactor: redactor.clone(),
            retry_failed,
            ..Recorded::default()
        };
        for path in paths {
            let file = match File::open(path) {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(source) => {
                    return Err(ResumeError::Open {
                        path: path.to_path_buf(),
                        source,
                    });
                }
            };
            if !file.metadata().is_ok_and(|m| m.is_file()) {
                return Err(ResumeError::NotRegular {
                    path: path.to_path_buf(),
                });
            }
            let removed_before = rec.removed;
            let good_end = rec.read_all(file, path)?;
            rec.files.push(Scanned {
                path: path.to_path_buf(),
                good_end,
                removed: rec.removed - removed_before,
            });
        }
        Ok(rec)
    }

    /// Once every check before sending has passed: cuts a torn last line,
    /// and under `--retry-failed` rewrites the file without its failed
    /// records (through a temporary file and a rename), so each line keeps
    /// one record. Call it before opening the file for appending.
    ///
    /// # Errors
    ///
    /// When a file cannot be truncated or rewritten ([`ResumeError`]).
    pub fn commit(&mut self) -> Result<(), ResumeError> {
        for file in &self.files {
            self.repaired_bytes += truncate_torn(&file.path, file.good_end)?;
            if self.retry_failed && file.removed > 0 {
                rewrite_without_failures(&file.path)?;
            }
        }
        Ok(())
    }

    /// Reads every complete line; returns the byte offset after the last
    /// one. A torn tail (after the last newline) is never read: finding the
    /// last newline scans back from the end a chunk at a time, so junk or a
    /// zero-filled tail of any size costs no memory.
    fn read_all(&mut self, mut file: File, path: &Path) -> Result<u64, ResumeError> {
        let read_error = read_error(path);
        let good_end = end_of_last_line(&mut file).map_err(&read_error)?;
        let mut reader = BufReader::new(io::Read::take(file, good_end));
        let (mut buf, mut n) = (Vec::new(), 0u64);
        loop {
            n += 1;
            match read_record_line(&mut reader, &mut buf).map_err(&read_error)? {
                LineRead::End => return Ok(good_end),
                LineRead::TooLong => {
                    return Err(ResumeError::Corrupt {
                        path: path.to_path_buf(),
                        line: n,
                        reason: format!("longer than {} MiB", MAX_RECORD_BYTES >> 20),
                    });
                }
                LineRead::Line => {}
            }
            if self.add(&buf, n, path, self.retry_failed)? {
                self.removed += 1;
            }
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
        let corrupt = |reason: String| ResumeError::Corrupt {
            path: path.to_path_buf(),
            line: n,
            reason,
        };
        let text = std::str::from_utf8(raw).map_err(|e| corrupt(e.to_string()))?;
        let parsed = parse_record(text.trim_end()).map_err(corrupt)?;
        match self.format {
            Some(before) if before != parsed.format => {
                return Err(ResumeError::MixedFormats {
                    path: path.to_path_buf(),
                    line: n,
                    found: parsed.format,
                    before,
                });
            }
            _ => self.format = Some(parsed.format),
        }
        self.claim(parsed.line, &parsed.sent, path)?;
        if parsed.retried && retry_failed {
            self.unclaim(parsed.line, &parsed.sent);
            return Ok(true);
        }
        self.kept += 1;
        self.tally.add(parsed.outcome);
        Ok(false)
    }

    fn claim(&mut self, line: u64, sent: &Fingerprint, path: &Path) -> Result<(), ResumeError> {
        let block = self.blocks.entry(line / BLOCK).or_default();
        if !block.set(line) {
            return Err(ResumeError::TwoRecords {
                path: path.to_path_buf(),
                line,
            });
        }
        block.digest = block.digest.wrapping_add(mix(line, sent));
        Ok(())
    }

    fn unclaim(&mut self, line: u64, sent: &Fingerprint) {
        let Some(block) = self.blocks.get_mut(&(line / BLOCK)) else {
            return;
        };
        block.clear(line);
        block.digest = block.digest.wrapping_sub(mix(line, sent));
        if block.is_empty() {
            self.blocks.remove(&(line / BLOCK));
        }
    }

    /// The first line with a record that `wanted` picks, in line order.
    pub fn first_line(&self, mut wanted: impl FnMut(u64) -> bool) -> Option<u64> {
        self.blocks.iter().find_map(|(&block, b)| {
            (0..BLOCK)
                .filter(|&i| b.lines.contains(i))
                .map(|i| block * BLOCK + i)
                .find(|&line| wanted(line))
        })
    }

    /// True when `line` already has a record.
    pub fn has(&self, line: u64) -> bool {
        self.blocks
            .get(&(line / BLOCK))
            .is_some_and(|b| b.get(line))
    }

    /// Turns an input item whose line has a record into [`Input::Recorded`]
    /// (its id is claimed, nothing is sent or written). Whether the ids
    /// still match is [`Check`]'s business.
    pub fn filter(&self, input: Input) -> Input {
        let line = input.line();
        if !self.has(line) {
            return input;
        }
        Input::Recorded {
            line,
            id: id_of(&input),
        }
    }

    /// A checker that the inputs, fed in order, match these records.
    pub fn check(&self) -> Check<'_> {
        self.check_from(0, 0)
    }

    /// True when a block of lines holds records (its lines must be checked).
    pub fn block_has_records(&self, block: u64) -> bool {
        self.blocks.contains_key(&block)
    }

    /// The digest of a block's records (0 without records).
    fn digest(&self, block: u64) -> u64 {
        self.blocks.get(&block).map_or(0, |b| b.digest)
    }

    /// The first block with records from `from` on.
    fn next_block(&self, from: u64) -> Option<u64> {
        self.blocks.range(from..).next().map(|(&b, _)| b)
    }

    /// A checker resumed at a [`Check::position`], for callers that keep
    /// its state themselves.
    pub fn check_from(&self, block: u64, sum: u64) -> Check<'_> {
        Check {
            recorded: self,
            block,
            sum,
        }
    }

    /// What an input line would be recorded as sending, to compare with
    /// its record.
    pub fn fingerprint(&self, input: &Input) -> Fingerprint {
        let (method, url) = match input {
            Input::Request(r) => (Some(r.method.to_string()), Some(self.redactor.url(&r.url))),
            Input::Invalid(bad) => (bad.method.clone(), bad.url.clone()),
            Input::Recorded { .. } => (None, None),
        };
        Fingerprint::new(id_of(input).as_str().to_string(), method, url)
    }

    /// What the records of the lines of `block` say was sent, read again
    /// from the file, to name the exact line where the input changed.
    ///
    /// # Errors
    ///
    /// When a file can no longer be read ([`ResumeError`]).
    pub fn block_ids(
        &self,
        block: u64,
    ) -> Result<std::collections::BTreeMap<u64, Fingerprint>, ResumeError> {
        let mut ids = std::collections::BTreeMap::new();
        for file in &self.files {
            let path = &file.path;
            let read_error = read_error(path);
            let f = File::open(path).map_err(&read_error)?;
            let mut reader = BufReader::new(io::Read::take(f, file.good_end));
            let mut raw = Vec::new();
            while let LineRead::Line =
                read_record_line(&mut reader, &mut raw).map_err(&read_error)?
            {
                let Some(parsed) = std::str::from_utf8(&raw)
                    .ok()
                    .and_then(|t| parse_record(t.trim_end()).ok())
                else {
                    continue;
                };
                if parsed.line / BLOCK == block && self.has(parsed.line) {
                    ids.insert(parsed.line, parsed.sent);
                }
            }
        }
        Ok(ids)
    }
}

/// Lines per digest block.
pub const BLOCK: u64 = 1024;

/// The records of one block: a bit per line and the digest of their ids.
#[derive(Debug, Default)]
struct Block {
    /// The lines, counted from the block's first.
    lines: BitSet,
    digest: u64,
}

impl Block {
    /// Sets the line's bit; false when it was set already.
    fn set(&mut self, line: u64) -> bool {
        self.lines.insert(line % BLOCK)
    }

    fn clear(&mut self, line: u64) {
        self.lines.remove(line % BLOCK);
    }

    fn get(&self, line: u64) -> bool {
        self.lines.contains(line % BLOCK)
    }

    fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }
}

/// The id an input line has (explicit, else its line number).
pub fn id_of(input: &Input) -> Id {
    match input {
        Input::Request(r) => r.id.clone(),
        Input::Invalid(bad) => bad.id.clone().unwrap_or_else(|| Id::line(bad.line)),
        Input::Recorded { id, .. } => id.clone(),
    }
}

/// What a line's record says was sent: its id, method and (redacted) URL —
/// or, for the batch formats, which do not carry the method and URL, their
/// digest ([`format::sent_digest`]). Two fingerprints are equal when their
/// ids and digests are.
#[derive(Clone, Debug)]
pub struct Fingerprint {
    /// The id, as text.
    pub id: String,
    /// The method (`None` for a line too bad to have one, or a batch record).
    pub method: Option<String>,
    /// The redacted URL (`None` for a line too bad to have one, or a batch record).
    pub url: Option<String>,
    /// The digest of id, method and URL.
    pub digest: u64,
}

impl Fingerprint {
    /// The fingerprint of a line or record that says its method and URL.
    pub fn new(id: String, method: Option<String>, url: Option<String>) -> Fingerprint {
        let digest = format::sent_digest(&id, method.as_deref(), url.as_deref());
        Fingerprint {
            id,
            method,
            url,
            digest,
        }
    }
}

impl PartialEq for Fingerprint {
    fn eq(&self, other: &Fingerprint) -> bool {
        self.id == other.id && self.digest == other.digest
    }
}

impl std::fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.method.is_none() && self.url.is_none() {
            return write!(
                f,
                "a request with id `{}` (digest {:016x} of its id, method and URL)",
                self.id, self.digest
            );
        }
        let method = self.method.as_deref().unwrap_or("(no method)");
        let url = self.url.as_deref().unwrap_or("(no URL)");
        write!(f, "`{method} {url}` with id `{}`", self.id)
    }
}

/// The recorded lines of a block whose ids do not match the input's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mismatch {
    /// The block: lines `block * BLOCK` to `block * BLOCK + BLOCK - 1`.
    pub block: u64,
}

impl Mismatch {
    /// What to tell the user when the exact line is not known.
    pub fn message(&self) -> String {
        let first = (self.block * BLOCK).max(1);
        let last = self.block * BLOCK + BLOCK - 1;
        format!(
            "the records of input lines {first}-{last} do not match those lines (id, method or URL): the input changed since the output was written; resume with the same inputs, or start a new output"
        )
    }
}

/// Checks, block by block, that the inputs still hold the recorded lines
/// with the same ids. Feed every item in input order, then call `finish`.
#[derive(Debug)]
pub struct Check<'a> {
    recorded: &'a Recorded,
    block: u64,
    sum: u64,
}

impl Check<'_> {
    /// Takes the next input item; fails once a finished block differs.
    ///
    /// # Errors
    ///
    /// When a finished block of lines differs from its records ([`Mismatch`]).
    pub fn feed(&mut self, input: &Input) -> Result<(), Mismatch> {
        let line = input.line();
        if self.block < line / BLOCK {
            self.close_block()?;
            // Blocks skipped over must hold no records.
            if let Some(b) = self
                .recorded
                .next_block(self.block)
                .filter(|&b| b < line / BLOCK)
            {
                return Err(Mismatch { block: b });
            }
            self.block = line / BLOCK;
        }
        if self.recorded.has(line) {
            let sent = self.recorded.fingerprint(input);
            self.sum = self.sum.wrapping_add(mix(line, &sent));
        }
        Ok(())
    }

    /// At the end of the input: every remaining block must match too (a
    /// record beyond the input's last line means the input changed).
    ///
    /// # Errors
    ///
    /// When a remaining block differs from its records, or records lie beyond the input's last line ([`Mismatch`]).
    pub fn finish(mut self) -> Result<(), Mismatch> {
        self.close_block()?;
        match self.recorded.next_block(self.block) {
            Some(b) => Err(Mismatch { block: b }),
            None => Ok(()),
        }
    }

    /// Where the check is, to continue it later with [`Recorded::check_from`].
    pub fn position(&self) -> (u64, u64) {
        (self.block, self.sum)
    }

    fn close_block(&mut self) -> Result<(), Mismatch> {
        if self.sum != self.recorded.digest(self.block) {
            return Err(Mismatch { block: self.block });
        }
        self.block += 1;
        self.sum = 0;
        Ok(())
    }
}

/// What `--resume` needs from one record line, in any output format.
struct Parsed {
    format: OutputFormat,
    line: u64,
    sent: Fingerprint,
    /// A failure that `--retry-failed` sends again (not an input error).
    retried: bool,
    outcome: RecordFacts,
}

/// The input line number a result line of any format records, read as
/// `--resume` reads it (for `sluice merge`); the error says why the text is
/// not a record.
///
/// # Errors
/// The text is not a result line (the message says why).
pub fn record_line(text: &str) -> Result<u64, String> {
    parse_record(text).map(|parsed| parsed.line)
}

/// [`record_line`], with the id the record carries (a batch format's
/// `custom_id`), for `sluice merge --check` to compare with its input line's.
///
/// # Errors
/// The text is not a result line (the message says why).
pub fn record_line_and_id(text: &str) -> Result<(u64, String), String> {
    parse_record(text).map(|parsed| (parsed.line, parsed.sent.id))
}

/// The largest line number a record may name: far past any input (a
/// trillion lines), and small enough that the line sets kept per number
/// (resume, merge) stay allocatable whatever a damaged file says.
const MAX_LINE: u64 = 1 << 40;

/// Reads a record line of any format, refusing a line number no run
/// writes (0, or past [`MAX_LINE`]).
fn parse_record(text: &str) -> Result<Parsed, String> {
    let parsed = parse_any_record(text)?;
    match parsed.line {
        1..=MAX_LINE => Ok(parsed),
        line => Err(format!("line {line} is not a line number sluice writes")),
    }
}

/// Reads a record line of any format (a batch-format line first, since a
/// sluice record never has a `custom_id`).
fn parse_any_record(text: &str) -> Result<Parsed, String> {
    if let Some(back) = format::read_batch_line(text) {
        let back = back?;
        let sent = Fingerprint {
            id: back.id,
            method: None,
            url: None,
            digest: back.digest.unwrap_or_default(),
        };
        return Ok(Parsed {
            format: back.format,
            line: back.line,
            sent,
            retried: !back.ok && !back.kind.is_some_and(ErrorKind::is_input_error),
            // The batch formats carry neither attempts nor timings.
            outcome: RecordFacts {
                ok: back.ok,
                status: back.status,
                kind: back.kind,
                attempts: 0,
                duration: Duration::ZERO,
            },
        });
    }
    let line: Line = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let id = Id::from_json(line.id).map_err(|e| format!("id {e}"))?;
    let kind = line.error.as_ref().map(|e| e.kind);
    Ok(Parsed {
        format: OutputFormat::Sluice,
        line: line.line,
        sent: Fingerprint::new(id.as_str().to_string(), line.method, line.url),
        retried: !line.ok && kind.is_some_and(|k| !k.is_input_error()),
        outcome: RecordFacts {
            ok: line.ok,
            status: line.status,
            kind,
            attempts: line.attempts,
            duration: Duration::try_from_secs_f64(line.duration_ms / 1000.0).unwrap_or_default(),
        },
    })
}

/// Rewrites a file without its failed records (through a temporary file
/// and a rename), for `--retry-failed`.
fn rewrite_without_failures(path: &Path) -> Result<(), ResumeError> {
    let file = File::open(path).map_err(read_error(path))?;
    let mut reader = BufReader::new(file);
    crate::replace::replace_with(path, |out| {
        let mut buf = Vec::new();
        while reader.read_until(b'\n', &mut buf)? > 0 {
            let failed = std::str::from_utf8(&buf)
                .ok()
                .and_then(|t| parse_record(t.trim_end()).ok())
                .is_some_and(|p| p.retried);
            if !failed {
                out.write_all(&buf)?;
            }
            buf.clear();
        }
        Ok(())
    })
    .map_err(|source| ResumeError::Rewrite {
        path: path.to_path_buf(),
        source,
    })
}

/// A 64-bit hash of a record's line and what it sent, summed per block.
fn mix(line: u64, sent: &Fingerprint) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::hash::DefaultHasher::new();
    line.hash(&mut h);
    sent.digest.hash(&mut h);
    h.finish()
}

/// The longest record line `--resume` reads (a record holds a body of at
/// most `--max-body-size`, 16 MiB by default, escaped): a longer complete
/// line is damage, and is not read into memory.
pub const MAX_RECORD_BYTES: usize = 256 << 20;

/// What [`read_record_line`] found.
enum LineRead {
    End,
    Line,
    TooLong,
}

/// Reads one `\n`-terminated line into `buf` (cleared first), holding at
/// most [`MAX_RECORD_BYTES`].
fn read_record_line(reader: &mut impl BufRead, buf: &mut Vec<u8>) -> io::Result<LineRead> {
    buf.clear();
    loop {
        let chunk = match reader.fill_buf() {
            Ok(chunk) => chunk,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if chunk.is_empty() {
            return Ok(if buf.is_empty() {
                LineRead::End
            } else {
                LineRead::Line
            });
        }
        let newline = chunk.iter().position(|&b| b == b'\n');
        let used = newline.map_or(chunk.len(), |i| i + 1);
        if buf.len() + used > MAX_RECORD_BYTES {
            return Ok(LineRead::TooLong);
        }
        buf.extend_from_slice(&chunk[..used]);
        reader.consume(used);
        if newline.is_some() {
            return Ok(LineRead::Line);
        }
    }
}

/// The offset just after the file's last `\n` (0 without one), found by
/// reading back from the end in fixed-size chunks.
fn end_of_last_line(file: &mut File) -> io::Result<u64> {
    use std::io::{Read, Seek, SeekFrom};
    const CHUNK: u64 = 64 * 1024;
    let mut end = file.metadata()?.len();
    let mut buf = vec![0u8; CHUNK as usize];
    while end > 0 {
        let start = end.saturating_sub(CHUNK);
        let part = &mut buf[..(end - start) as usize];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(part)?;
        if let Some(i) = part.iter().rposition(|&b| b == b'\n') {
            file.seek(SeekFrom::Start(0))?;
            return Ok(start + i as u64 + 1);
        }
        end = start;
    }
    file.seek(SeekFrom::Start(0))?;
    Ok(0)
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
        .map_err(|source| ResumeError::Repair {
            path: path.to_path_buf(),
            source,
        })?;
    let _ = file.sync_data();
    Ok(len - good_end)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Record, RecordError};

    #[test]
    fn a_line_number_no_run_writes_is_refused() {
        let record = |line: u64| {
            format!(
                r#"{{"id":"1","line":{line},"ok":true,"status":200,"attempts":1,"duration_ms":1.0}}"#
            )
        };
        assert!(record_line_and_id(&record(1)).is_ok());
        for line in [0, MAX_LINE + 1, u64::MAX] {
            let err = record_line_and_id(&record(line)).unwrap_err();
            assert!(err.contains("not a line number"), "{line}: {err}");
        }
    }

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
            Some("http://127.0.0.1/".into()),
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
        Input::from(req)
    }

    #[test]
    fn a_missing_file_holds_nothing() {
        let r = Recorded::scan(&temp("missing"), false, &Redactor::default()).unwrap();
        assert!(!r.has(1));
        assert!(r.check().finish().is_ok());
    }

    #[test]
    fn a_torn_last_line_is_cut() {
        let path = temp("torn");
        let whole = format!("{}{}", record(1, true), record(3, true));
        std::fs::write(&path, format!("{whole}{{\"id\":2,\"line\":2,\"ok\":tr")).unwrap();
        let mut r = Recorded::scan(&path, false, &Redactor::default()).unwrap();
        assert!(r.has(1) && r.has(3) && !r.has(2));
        assert_eq!(r.kept, 2);
        r.commit().unwrap();
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
        let err = Recorded::scan(&path, false, &Redactor::default()).unwrap_err();
        assert!(
            matches!(&err, ResumeError::Corrupt { line: 2, .. }),
            "{err:?}"
        );
        assert!(
            err.to_string().contains(":2: not a record sluice writes"),
            "{err}"
        );
        std::fs::write(&path, format!("{}{}", record(1, true), record(1, true))).unwrap();
        let err = Recorded::scan(&path, false, &Redactor::default()).unwrap_err();
        assert!(
            matches!(err, ResumeError::TwoRecords { line: 1, .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("two records for input line 1"));
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
        let mut r = Recorded::scan(&path, true, &Redactor::default()).unwrap();
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
    fn filter_skips_recorded_lines_and_check_catches_changed_ids() {
        let path = temp("filter");
        std::fs::write(&path, format!("{}{}", record(2, true), record(5000, true))).unwrap();
        let r = Recorded::scan(&path, false, &Redactor::default()).unwrap();
        assert!(matches!(r.filter(input(1, Id::line(1))), Input::Request(_)));
        assert!(matches!(
            r.filter(input(2, Id::line(2))),
            Input::Recorded { line: 2, .. }
        ));
        // The same inputs match.
        let mut c = r.check();
        for line in [1, 2, 3, 5000] {
            c.feed(&input(line, Id::line(line))).unwrap();
        }
        c.finish().unwrap();
        // A changed id is caught when its block ends.
        let mut c = r.check();
        c.feed(&input(2, Id::text("other"))).unwrap();
        assert_eq!(
            c.feed(&input(1025, Id::line(1025))),
            Err(Mismatch { block: 0 })
        );
        assert!(Mismatch { block: 0 }.message().contains("lines 1-1023"));
        // A recorded line missing from the input (here: the input is shorter).
        let mut c = r.check();
        c.feed(&input(2, Id::line(2))).unwrap();
        assert_eq!(c.finish(), Err(Mismatch { block: 4 }));
        assert_eq!(
            r.block_ids(0).unwrap().get(&2).map(|f| f.id.as_str()),
            Some("2")
        );
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn a_changed_url_or_method_with_the_same_id_is_a_change() {
        let path = temp("changed-url");
        std::fs::write(&path, record(2, true)).unwrap();
        let r = Recorded::scan(&path, false, &Redactor::default()).unwrap();
        let mut moved = input(2, Id::line(2));
        if let Input::Request(req) = &mut moved {
            req.url = url::Url::parse("http://127.0.0.1/other").unwrap();
        }
        let mut c = r.check();
        c.feed(&moved).unwrap();
        assert_eq!(c.finish(), Err(Mismatch { block: 0 }));
        let mut posted = input(2, Id::line(2));
        if let Input::Request(req) = &mut posted {
            req.method = reqwest::Method::POST;
        }
        let mut c = r.check();
        c.feed(&posted).unwrap();
        assert_eq!(c.finish(), Err(Mismatch { block: 0 }));
        let mut c = r.check();
        c.feed(&input(2, Id::line(2))).unwrap();
        assert_eq!(c.finish(), Ok(()));
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn a_long_torn_tail_is_cut_and_counted() {
        let path = temp("long-tail");
        let whole = format!("{}{}", record(1, true), record(2, true));
        std::fs::write(&path, &whole).unwrap();
        // A zero-filled tail, as a filesystem may leave after power loss.
        let tail = 3 * 1024 * 1024 + 17;
        let file = OpenOptions::new().write(true).open(&path).unwrap();
        file.set_len(whole.len() as u64 + tail).unwrap();
        let mut r = Recorded::scan(&path, false, &Redactor::default()).unwrap();
        assert_eq!(r.kept, 2);
        r.commit().unwrap();
        assert_eq!(r.repaired_bytes, tail);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), whole);
        let _ = std::fs::remove_file(&path);
    }
}
