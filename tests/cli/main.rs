//! Integration tests of `sluice run`: the real binary against the in-process
//! test upstream on 127.0.0.1 (port 0), one module per feature. Every result
//! line is validated against `result.schema.json`.

mod batch_formats;
mod bodies;
mod browser;
mod changed_input;
mod connections;
mod deploy;
mod discovered;
mod docs;
mod dryrun;
mod errors;
mod headers;
mod help;
mod hostile;
mod learned;
mod limits;
mod options;
mod origins;
mod output;
mod overwrite;
mod records;
mod redirects;
mod remaining;
mod report;
mod resume;
mod resume_output;
mod retry_budget;
mod schema;
mod shards;
mod signals;
mod support;
mod tls;
mod transport;
mod transport_direct;
