//! The no-clobber rules for every path a command writes live in the engine
//! ([`sluice::filejob::outputs`], shared with the Python package); this
//! adapter makes their refusals the CLI's usage errors (exit 2).

use std::path::PathBuf;

use anyhow::{Result, anyhow};

pub use sluice::filejob::outputs::{Output, bytes, is_regular_or_new, replace};

use crate::run::Usage;

/// Checks every output before anything is sent; returns the notes to print
/// (what `--overwrite` replaces). Errors are [`Usage`] (exit 2).
pub fn check(outputs: &[Output], inputs: &[PathBuf], overwrite: bool) -> Result<Vec<String>> {
    sluice::filejob::outputs::check(outputs, inputs, overwrite)
        .map_err(|e| Usage(anyhow!("{e}")).into())
}
