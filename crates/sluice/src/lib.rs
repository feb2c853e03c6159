//! sluice executes large batches of HTTP requests — a hundred or a hundred
//! million — over one pooled client, with exact concurrency and rate limits,
//! retries that honour what the server says, and exactly one result
//! [`Record`] per request.
//!
//! The pipeline, one module per stage:
//! [`source`] (input lines) → [`parse`] (line → [`Request`]) → [`intake`]
//! (unique ids, costs) → [`engine`] (drives the [`scheduler`]: limits, retries;
//! [`gcra`], [`retry`]) →
//! [`attempt`] (one exchange; [`classify`] its failures) → [`Record`]s →
//! [`sink`] (crash-safe output) and
//! [`stats`]. [`filejob`] is the crash-safe file job around it (outputs
//! checked, `--resume`), shared by the CLI and the Python package.
//!
//! The engine never prints, exits or reads the environment: it takes a
//! [`Config`], a stream of [`Input`]s and a shutdown future, and yields
//! [`Event`]s. See [`run`] for an example.

mod alarm;
pub mod attempt;
pub mod classify;
pub mod client;
pub mod config;
mod connecting;
mod ends;
pub mod engine;
pub mod event;
pub mod filejob;
pub mod format;
pub mod gcra;
pub mod headers;
pub mod intake;
mod json;
pub mod json_text;
pub mod order;
pub mod parse;
pub mod ratelimit;
pub mod record;
pub mod redact;
pub mod replace;
pub mod request;
pub mod resume;
pub mod retry;
pub mod retry_budget;
pub mod scheduler;
pub mod shard;
pub mod shared;
pub mod sink;
pub mod source;
pub mod stats;
mod tasks;
#[cfg(target_os = "linux")]
mod timerfd;
mod timers;
pub mod timing;
pub mod transport;
pub mod trust;
pub mod units;
mod utf8;
pub mod worker;

pub use config::{BodyMode, Config, ConfigBuilder, ConfigError, ProxyConfig, Setting, TlsConfig};
pub use engine::{Run, RunError, run};
pub use event::Event;
pub use json_text::JsonText;
pub use record::{Body, ErrorKind, Id, Record, RecordError};
pub use redact::Redactor;
pub use request::{Abandon, Input, InvalidLine, Request};
pub use retry::RetryOn;
pub use units::Rate;
