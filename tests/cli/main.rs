//! Integration tests of `sluice run`: the real binary against the in-process
//! test upstream on 127.0.0.1 (port 0), one module per feature. Every result
//! line is validated against `result.schema.json`.

mod bodies;
mod changed_input;
mod connections;
mod docs;
mod dryrun;
mod errors;
mod headers;
mod help;
mod hostile;
mod limits;
mod options;
mod origins;
mod output;
mod overwrite;
mod records;
mod redirects;
mod remaining;
mod resume;
mod resume_output;
mod schema;
mod signals;
mod support;
mod tls;
mod transport;
