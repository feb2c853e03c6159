//! Integration tests of `sluice`: the real binary against the in-process
//! test upstream on 127.0.0.1 (port 0), one module per feature. Every result
//! line is validated against `result.schema.json`.
//!
//! Timing is read from the mock's arrival timestamps and asserted only as
//! lower bounds (or as the order of arrivals); counts are exact.

mod acceptance_audit;
mod adaptive;
mod attempt_timer;
mod batch_formats;
mod batch_resume;
mod bodies;
mod broken_servers;
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
mod interrupts;
mod learned;
mod limits;
mod merge_check;
mod options;
mod origins;
mod output;
mod overwrite;
mod pool_hot;
mod rates;
mod records;
mod redirects;
mod remaining;
mod report;
mod resume;
mod resume_output;
mod resume_repair;
mod retries;
mod retry_budget;
mod schema;
mod shards;
mod shared_discovered;
mod shared_limits;
mod signals;
mod snapshots;
mod support;
mod threads_split;
mod tls;
mod tokens;
mod transport;
mod transport_direct;
