//! Resilience: politeness under pressure (retries, Retry-After,
//! origin pauses and closures, rates and budgets) and nothing lost (kill -9,
//! SIGINT/SIGTERM drains, torn lines, changed inputs, `--retry-failed`,
//! failing output), against the real `sluice` binary and an
//! in-process mock upstream on 127.0.0.1:0.
//!
//! Timing is read from the mock's arrival timestamps and asserted only as
//! lower bounds (or as the order of arrivals); counts are exact.

// Shared with tests/cli; not every helper is used here.
#[allow(dead_code)]
#[path = "../cli/support.rs"]
mod support;

mod batch;
mod child;
mod interrupts;
mod origins;
mod rates;
mod resume;
mod retries;
mod shared;
