//! No file is clobbered: every path a run writes (`-o`, `--errors-output`, `--report`,
//! `--summary-json`) is checked before anything is sent, and the files
//! written at the end are replaced safely. The CLI and the Python package
//! both check their outputs here.
//!
//! The rules, in one place: an output may not be an input nor another
//! output, and an existing non-empty regular file is refused unless
//! `--overwrite` (or, for `-o`, `--resume`) is given. Devices and FIFOs
//! (`/dev/null`, a named pipe) are written in place and never refused: they
//! hold no data to lose.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

type Result<T> = std::result::Result<T, OutputError>;

/// A path the run may not write. `option` is the caller's name for the
/// output ([`Output::option`]); what would let the run go on is the
/// caller's to say.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OutputError {
    /// The directory the file would go in is missing or unreadable.
    #[error(
        "{option} {}: the directory it would go in does not exist or cannot be read: create it, or choose another path",
        path.display()
    )]
    NoDirectory {
        /// The output's name.
        option: &'static str,
        /// The path.
        path: PathBuf,
    },
    /// The output is one of the inputs.
    #[error(
        "{option} {} is also the input {input}: writing it would destroy the input; write to another file",
        path.display()
    )]
    IsInput {
        /// The output's name.
        option: &'static str,
        /// The path.
        path: PathBuf,
        /// The input, as given (`standard input` for `-`).
        input: String,
    },
    /// Two outputs name the same file.
    #[error("{first_option} and {second_option} both name {}: each output needs a file of its own", path.display())]
    SameFile {
        /// The output named first.
        first_option: &'static str,
        /// The output named second.
        second_option: &'static str,
        /// The path.
        path: PathBuf,
    },
    /// A non-empty regular file that the run may neither replace nor
    /// append to.
    #[error(
        "{option} {} already exists and is not empty ({}): choose another path, or allow replacing it",
        path.display(),
        bytes(*len)
    )]
    Exists {
        /// The output's name.
        option: &'static str,
        /// The path.
        path: PathBuf,
        /// Its size in bytes.
        len: u64,
    },
    /// The file cannot be written.
    #[error("cannot write {option} {}", path.display())]
    NotWritable {
        /// The output's name.
        option: &'static str,
        /// The path.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
}

/// An existing file the run will replace (allowed by `overwrite`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replaced {
    /// The output's name.
    pub option: &'static str,
    /// The path.
    pub path: PathBuf,
    /// Its size in bytes now.
    pub len: u64,
}

impl std::fmt::Display for Replaced {
    /// `-o out.jsonl (1.2 KiB) will be replaced`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (option, path) = (self.option, self.path.display());
        write!(f, "{option} {path} ({}) will be replaced", bytes(self.len))
    }
}

/// One path the run will write, with the option that names it.
pub struct Output<'a> {
    /// `-o`, `--errors-output`, `--report`, `--summary-json`.
    pub option: &'static str,
    /// Where it goes.
    pub path: &'a Path,
    /// Existing records are kept and appended to (`-o` with `--resume`).
    pub appends: bool,
}

/// What a path is on disk: the same file has the same identity whatever
/// path reaches it (links, `./`, symlinks).
#[derive(Debug, PartialEq, Eq)]
enum Identity {
    /// An existing file: device and inode.
    File { dev: u64, ino: u64, regular: bool },
    /// A file yet to be created: its canonical directory and name.
    New(PathBuf),
}

fn identity(path: &Path) -> Option<Identity> {
    use std::os::unix::fs::MetadataExt;
    match std::fs::metadata(path) {
        Ok(m) => Some(Identity::File {
            dev: m.dev(),
            ino: m.ino(),
            regular: m.is_file(),
        }),
        Err(_) => {
            let name = path.file_name()?;
            let parent = match path.parent() {
                Some(p) if !p.as_os_str().is_empty() => p,
                _ => Path::new("."),
            };
            Some(Identity::New(
                std::fs::canonicalize(parent).ok()?.join(name),
            ))
        }
    }
}

/// Standard input's identity, when it is read as an input.
fn stdin_identity() -> Option<Identity> {
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;
    let file = File::from(io::stdin().as_fd().try_clone_to_owned().ok()?);
    let m = file.metadata().ok()?;
    Some(Identity::File {
        dev: m.dev(),
        ino: m.ino(),
        regular: m.is_file(),
    })
}

/// Only a regular file (or one yet to be created) can lose data by being
/// written twice or over an input.
fn can_clobber(id: &Identity) -> bool {
    !matches!(id, Identity::File { regular: false, .. })
}

/// Checks every output before anything is sent; returns the files that
/// `overwrite` lets the run replace, for the caller to tell. An error means
/// nothing may be sent.
///
/// # Errors
/// An output that is an input or another output, whose directory is
/// missing, that is not writable, or that holds data it may not replace.
pub fn check(outputs: &[Output], inputs: &[PathBuf], overwrite: bool) -> Result<Vec<Replaced>> {
    let mut input_ids: Vec<(String, Identity)> = Vec::new();
    let stdin = [PathBuf::from("-")];
    for input in if inputs.is_empty() {
        &stdin[..]
    } else {
        inputs
    } {
        let id = if input == Path::new("-") {
            stdin_identity()
        } else {
            identity(input)
        };
        if let Some(id) = id {
            input_ids.push((show(input), id));
        }
    }
    let mut seen: Vec<(&Output, Identity)> = Vec::new();
    let mut notes = Vec::new();
    for out in outputs {
        let (option, path) = (out.option, out.path.to_path_buf());
        let Some(id) = identity(out.path) else {
            return Err(OutputError::NoDirectory { option, path });
        };
        if can_clobber(&id) {
            if let Some((name, _)) = input_ids.iter().find(|(_, i)| *i == id) {
                let input = name.clone();
                return Err(OutputError::IsInput {
                    option,
                    path,
                    input,
                });
            }
            if let Some((other, _)) = seen.iter().find(|(_, i)| *i == id) {
                return Err(OutputError::SameFile {
                    first_option: other.option,
                    second_option: option,
                    path,
                });
            }
            if let Some(note) = check_existing(out, overwrite)? {
                notes.push(note);
            }
        }
        check_writable(out)?;
        seen.push((out, id));
    }
    Ok(notes)
}

/// An existing non-empty regular file is refused unless the run may replace
/// (or append to) it; returns what is replaced.
fn check_existing(out: &Output, overwrite: bool) -> Result<Option<Replaced>> {
    let len = match std::fs::metadata(out.path) {
        Ok(m) if m.is_file() && m.len() > 0 => m.len(),
        _ => return Ok(None),
    };
    if out.appends {
        return Ok(None);
    }
    let (option, path) = (out.option, out.path.to_path_buf());
    if overwrite {
        return Ok(Some(Replaced { option, path, len }));
    }
    Err(OutputError::Exists { option, path, len })
}

/// A file written at the end must be writable now: an existing one is
/// checked for write permission (without opening it: a FIFO would block), a
/// new one by creating and removing a probe beside it.
fn check_writable(out: &Output) -> Result<()> {
    let fail = |source: io::Error| OutputError::NotWritable {
        option: out.option,
        path: out.path.to_path_buf(),
        source,
    };
    match std::fs::metadata(out.path) {
        Ok(m) if m.is_dir() => Err(fail(io::Error::other(
            "it is a directory; give a file name",
        ))),
        Ok(_) => {
            use std::os::unix::ffi::OsStrExt;
            let c = std::ffi::CString::new(out.path.as_os_str().as_bytes())
                .map_err(|_| fail(io::Error::other("the path holds a NUL byte")))?;
            // SAFETY: access(2) only reads the NUL-terminated path.
            if unsafe { libc::access(c.as_ptr(), libc::W_OK) } != 0 {
                return Err(fail(io::Error::last_os_error()));
            }
            Ok(())
        }
        Err(_) => {
            let probe = sibling(out.path, "sluice-probe");
            OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&probe)
                .and_then(|_| std::fs::remove_file(&probe))
                .map_err(fail)
        }
    }
}

/// A hidden, per-process name beside `path`, so no file of the user's is
/// touched.
fn sibling(path: &Path, what: &str) -> PathBuf {
    let mut name = std::ffi::OsString::from(".");
    name.push(path.file_name().unwrap_or_default());
    name.push(format!(".{what}-{}", std::process::id()));
    path.with_file_name(name)
}

/// Writes `bytes` as the whole content of `path`: a regular file is replaced
/// through a temporary file and a rename (readers never see half of it); a
/// device or FIFO (`/dev/null`) is written in place, never replaced.
///
/// # Errors
/// The file (or its temporary sibling) cannot be written or renamed.
pub fn replace(path: &Path, bytes: &[u8]) -> io::Result<()> {
    if std::fs::metadata(path).is_ok_and(|m| !m.is_file()) {
        return OpenOptions::new().write(true).open(path)?.write_all(bytes);
    }
    crate::replace::replace_with(path, |out| out.write_all(bytes))
}

/// True when `path` is a regular file (or does not exist yet, and will be
/// one): records written there can be read back by `--resume`.
pub fn is_regular_or_new(path: &Path) -> bool {
    match std::fs::metadata(path) {
        Ok(m) => m.is_file(),
        Err(e) => e.kind() == io::ErrorKind::NotFound,
    }
}

/// What kind of file `path` is, for messages.
pub fn kind_of(path: &Path) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    match std::fs::metadata(path).map(|m| m.file_type()) {
        Ok(t) if t.is_char_device() => "a character device",
        Ok(t) if t.is_block_device() => "a block device",
        Ok(t) if t.is_fifo() => "a FIFO (named pipe)",
        Ok(t) if t.is_socket() => "a socket",
        Ok(t) if t.is_dir() => "a directory",
        _ => "not a regular file",
    }
}

fn show(path: &Path) -> String {
    if path == Path::new("-") {
        "standard input".into()
    } else {
        path.display().to_string()
    }
}

/// `1234` → `1234 bytes`, `1.2 MiB`: a size for people.
pub fn bytes(n: u64) -> String {
    const KIB: f64 = 1024.0;
    let f = n as f64;
    if f < KIB {
        format!("{n} byte{}", if n == 1 { "" } else { "s" })
    } else if f < KIB * KIB {
        format!("{:.1} KiB", f / KIB)
    } else if f < KIB * KIB * KIB {
        format!("{:.1} MiB", f / KIB / KIB)
    } else {
        format!("{:.1} GiB", f / KIB / KIB / KIB)
    }
}
