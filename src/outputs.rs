//! The no-clobber rules for every path a command writes live in the engine
//! ([`sluice::filejob::outputs`], shared with the Python package); this
//! adapter makes their refusals the CLI's usage errors (exit 2), in the
//! words of its options.

use std::path::PathBuf;

use anyhow::{Result, anyhow};
use sluice::filejob::outputs::OutputError;

pub use sluice::filejob::outputs::{Output, bytes, is_regular_or_new, replace};

use crate::run::Usage;

/// Checks every output before anything is sent; returns the notes to print
/// (what `--overwrite` replaces). Errors are [`Usage`] (exit 2).
pub fn check(outputs: &[Output], inputs: &[PathBuf], overwrite: bool) -> Result<Vec<String>> {
    let replaced = sluice::filejob::outputs::check(outputs, inputs, overwrite)
        .map_err(|e| Usage(output_error(e)))?;
    Ok(replaced
        .iter()
        .map(|r| format!("sluice: --overwrite: {r}"))
        .collect())
}

/// A refused output, with the option that would let the command go on.
pub fn output_error(e: OutputError) -> anyhow::Error {
    match e {
        OutputError::Exists { option, path, len } => {
            let advice = if option == "-o" {
                "use --resume to continue it, or --overwrite to replace it"
            } else {
                "choose another path, or give --overwrite to replace it"
            };
            // `sluice report` sends nothing: what it did not do is write.
            let nothing = if matches!(option, "--html" | "--json") {
                "nothing was written"
            } else {
                "nothing was sent"
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
