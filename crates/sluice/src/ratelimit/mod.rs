//! What a server says about its rate limits, read from one response's
//! headers into one model ([`Snapshot`]), and what pace that suggests
//! ([`suggest`]). Pure functions: "now" is an input, no clock is read, nothing
//! is printed; malformed values come back as [`Warning`]s for the caller to
//! show under `-v`.
//!
//! The scheduler's learned limits (`scheduler/learned.rs`) call [`observe`]
//! on every response under `--learn-limits auto`.
//!
//! Dialects, detected from header names (first match wins, in this order):
//!
//! | dialect | headers | reset | window |
//! |---|---|---|---|
//! | [`Dialect::Anthropic`] | `anthropic-ratelimit-{requests,tokens,input-tokens,output-tokens}-{limit,remaining,reset}` | RFC 3339 time, against the response's `Date` | bucket |
//! | [`Dialect::OpenAi`] | `x-ratelimit-{limit,remaining,reset}-{requests,tokens}` | Go duration (`6m0s`), or a number: see [`EPOCH_THRESHOLD`] | bucket |
//! | [`Dialect::GitHub`] | `x-ratelimit-{limit,remaining,used,reset,resource}` | epoch seconds (a number: see [`EPOCH_THRESHOLD`]) | fixed |
//! | [`Dialect::IetfStructured`] | `RateLimit-Policy`, `RateLimit` (RFC 9651 lists: `q`, `w`, `qu`, `r`, `t`, `pk`) | `t`, delta seconds | fixed |
//! | [`Dialect::IetfLegacy`] | `RateLimit-Limit`, `RateLimit-Remaining`, `RateLimit-Reset` | delta seconds | fixed |
//!
//! The IETF draft does not promise that quota returns before `t` (nor that
//! all of it returns at `t`), so both IETF forms are read as fixed windows:
//! the reading that never spends faster than the server allows.

pub mod cost;
mod dialects;
mod ietf;
pub(crate) mod lag;
mod pacing;
mod values;

use std::fmt;
use std::time::{Duration, SystemTime};

use http::HeaderMap;

pub use cost::Tokens;
pub use pacing::{Headroom, HeadroomError, MAX_RATE, Pace, Suggestion, suggest};
pub use values::{EPOCH_MILLIS_THRESHOLD, EPOCH_THRESHOLD, MAX_COUNT, MAX_RESET};

/// Which family of headers a response used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    /// OpenAI, Azure OpenAI and OpenAI-compatible servers.
    OpenAi,
    /// Anthropic's `anthropic-ratelimit-*`.
    Anthropic,
    /// GitHub's `x-ratelimit-*` (and the many APIs that copy it).
    GitHub,
    /// The IETF draft's `RateLimit-Policy` and `RateLimit` structured fields.
    IetfStructured,
    /// The older IETF drafts' `RateLimit-Limit/Remaining/Reset`.
    IetfLegacy,
}

impl Dialect {
    /// The dialect's name as shown to users.
    pub fn name(self) -> &'static str {
        match self {
            Dialect::OpenAi => "openai",
            Dialect::Anthropic => "anthropic",
            Dialect::GitHub => "github",
            Dialect::IetfStructured => "ietf",
            Dialect::IetfLegacy => "ietf-legacy",
        }
    }

    /// How the dialect's quota comes back (see the table above).
    pub fn window(self) -> Window {
        match self {
            Dialect::OpenAi | Dialect::Anthropic => Window::Bucket,
            Dialect::GitHub | Dialect::IetfStructured | Dialect::IetfLegacy => Window::Fixed,
        }
    }
}

/// What a limit counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Dimension {
    /// Requests.
    Requests,
    /// Tokens (for Anthropic: the most restrictive token limit in effect).
    Tokens,
    /// Input (prompt) tokens.
    InputTokens,
    /// Output (completion) tokens.
    OutputTokens,
}

impl Dimension {
    /// The dimension's name as shown to users.
    pub fn name(self) -> &'static str {
        match self {
            Dimension::Requests => "requests",
            Dimension::Tokens => "tokens",
            Dimension::InputTokens => "input-tokens",
            Dimension::OutputTokens => "output-tokens",
        }
    }
}

/// How quota comes back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Window {
    /// A bucket that refills continuously; the reset is the time until it is
    /// full again (OpenAI, Anthropic).
    Bucket,
    /// A fixed window: nothing comes back before the reset, then all of it
    /// (GitHub, and the IETF forms read safely).
    Fixed,
}

/// One limit the server reported. Every field is optional: servers send
/// partial sets, and `-1` or malformed values mean "unknown".
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limit {
    /// What it counts.
    pub dimension: Dimension,
    /// The policy's name: an IETF policy, or GitHub's `x-ratelimit-resource`.
    pub policy: Option<String>,
    /// A fingerprint (FNV-1a) of the IETF partition key `pk`: enough to tell
    /// partitions apart without keeping bytes that may be derived from a key.
    pub partition: Option<u64>,
    /// The quota (at most [`MAX_COUNT`]).
    pub limit: Option<u64>,
    /// What is left (at most the quota).
    pub remaining: Option<u64>,
    /// Time from the response until the reset (at most [`MAX_RESET`]).
    pub reset: Option<Duration>,
    /// The policy's window (IETF `w`), when the server says.
    pub window: Option<Duration>,
}

impl Limit {
    /// A limit of `dimension` with nothing known yet.
    pub fn new(dimension: Dimension) -> Limit {
        Limit {
            dimension,
            policy: None,
            partition: None,
            limit: None,
            remaining: None,
            reset: None,
            window: None,
        }
    }
}

/// What one response's headers said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// The dialect detected.
    pub dialect: Dialect,
    /// Whether quota refills continuously or per fixed window.
    pub window: Window,
    /// The limits, requests first, in the order of [`Dimension`].
    pub limits: Vec<Limit>,
    /// Values ignored or capped, for `-v`.
    pub warnings: Vec<Warning>,
    /// Microseconds from the response's `Date` (whole seconds) to the
    /// local time it was read, when it has a valid one: the clocks' skew plus
    /// how far into its second the server answered and the way back. The
    /// least of these over an origin's responses places the server's
    /// whole seconds on the local clock (`scheduler/learned.rs`).
    pub date_lag: Option<i64>,
}

impl Snapshot {
    /// The first limit reported for `dimension`.
    pub fn limit(&self, dimension: Dimension) -> Option<&Limit> {
        self.limits.iter().find(|l| l.dimension == dimension)
    }
}

/// A header value that was ignored or capped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Warning {
    /// The header's name.
    pub header: String,
    /// The value, cut to 80 characters (rate-limit headers carry no secrets,
    /// and only their values are kept).
    pub value: String,
    /// What was wrong.
    pub problem: Problem,
}

/// What was wrong with a header value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Problem {
    /// Not in the expected form: ignored.
    Malformed,
    /// Beyond a documented cap: capped.
    Capped,
    /// `remaining` above `limit`: `remaining` capped at `limit`.
    AboveLimit,
    /// The response came from a cache (a positive `Age`): every limit of
    /// the response is ignored.
    Cached,
    /// A form sluice does not pace by (an IETF quota unit other than
    /// requests): ignored.
    Unsupported,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.problem {
            Problem::Malformed => "ignored: not a value sluice can read",
            Problem::Capped => "capped: beyond what sluice believes",
            Problem::AboveLimit => "capped: remaining above the limit",
            Problem::Unsupported => "ignored: not a limit sluice paces by",
            Problem::Cached => "the response came from a cache: its rate-limit headers are ignored",
        };
        write!(
            f,
            "rate-limit header {}: `{}` {what}",
            self.header, self.value
        )
    }
}

/// Reads the rate-limit headers of one response. `now` is the local time the
/// response arrived; absolute resets are measured against the response's own
/// `Date` when it has a valid one (so clock skew does not matter), else
/// against `now`. `None` when the response carries no rate-limit headers.
pub fn observe(headers: &HeaderMap, now: SystemTime) -> Option<Snapshot> {
    dialects::observe(headers, now)
}

#[cfg(test)]
mod tests;
