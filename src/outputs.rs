//! The no-clobber rules for every path a command writes live in the engine
//! ([`sluice::filejob::outputs`], shared with the Python package); this
//! adapter makes their refusals the CLI's usage errors (exit 2), in the
//! words of its options.

use std::path::PathBuf;

use anyhow::{Result, anyhow};
use sluice::filejob::outputs::OutputError;

pub use sluice::filejob::outputs::{Output, bytes, is_regular_or_new, replace};

use crate::run::Usage;

/// Which command writes: `sluice run` sends requests and can resume its
/// output; `report` and `merge` only write files.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Writer {
    /// `sluice run`.
    Run,
    /// `sluice report` or `sluice merge`.
    Files,
}

/// Checks every output before anything is sent; returns the notes to print
/// (what `--overwrite` replaces). Errors are [`Usage`] (exit 2).
pub fn check(
    outputs: &[Output],
    inputs: &[PathBuf],
    overwrite: bool,
    writer: Writer,
) -> Result<Vec<String>> {
    let replaced = sluice::filejob::outputs::check(outputs, inputs, overwrite)
        .map_err(|e| Usage(output_error(e, writer)))?;
    Ok(replaced
        .iter()
        .map(|r| format!("sluice: --overwrite: {r}"))
        .collect())
}

/// A refused output, with the option that would let the command go on.
pub fn output_error(e: OutputError, writer: Writer) -> anyhow::Error {
    match e {
        OutputError::Exists { option, path, len } => {
            // Only `run`'s records can be resumed.
            let advice = if option == "-o" && writer == Writer::Run {
                "use --resume to continue it, or --overwrite to replace it"
            } else {
                "choose another path, or give --overwrite to replace it"
            };
            // `report` and `merge` send nothing: what they did not do is write.
            let nothing = match writer {
                Writer::Run => "nothing was sent",
                Writer::Files => "nothing was written",
            };
            anyhow!(
                "{option} {} already exists and is not empty ({}); {nothing}: {advice}",
                path.display(),
                bytes(len)
            )
        }
        other => other.into(),
    }
}
