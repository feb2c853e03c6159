//! What a run reports while it works: records, and the life of each request
//! for progress displays and `-v` logs.

use std::time::Duration;

use crate::record::{Id, Record};

/// One thing that happened in a run. Records arrive in output order
/// (completion order, or input order under `ordered`).
///
/// An event is small (a few words): the record and the learned limits are
/// boxed, so the three or four events of each request move through the
/// scheduler, the channel and the consumer as pointers and counters, not as
/// hundreds of bytes each (a record is allocated once, where it is made).
#[derive(Clone, Debug)]
pub enum Event {
    /// A request's final record.
    Record(Box<Record>),
    /// A request was read and waits for its turn.
    Waiting {
        /// Its line.
        line: u64,
        /// Its id.
        id: Id,
    },
    /// An attempt started.
    Started {
        /// Its line.
        line: u64,
        /// Its id.
        id: Id,
        /// 1 for the first attempt.
        attempt: u32,
        /// Requests in flight, this one included.
        in_flight: usize,
    },
    /// An attempt failed and the request will be tried again after `wait`.
    Retrying {
        /// Its line.
        line: u64,
        /// Its id.
        id: Id,
        /// The attempt that failed.
        attempt: u32,
        /// The wait before the next attempt.
        wait: Duration,
        /// Why the attempt failed (status or error kind and message).
        reason: String,
    },
    /// An origin is paused (429 or 503) for `wait`.
    Paused {
        /// The origin, `scheme://host:port`.
        origin: String,
        /// How long no request to it will start.
        wait: Duration,
        /// Why, as a user reads it: `Retry-After on HTTP 429`, or `HTTP 503
        /// without Retry-After (backoff)`.
        reason: String,
    },
    /// An origin was closed: its remaining requests are neither sent nor written.
    OriginClosed {
        /// The origin.
        origin: String,
        /// Why.
        reason: String,
    },
    /// Under `--redis`: the shared limiter's Redis is unreachable (no new
    /// request starts meanwhile), reachable again, or gone for good.
    Redis(crate::shared::Trouble),
    /// What sluice learned about an origin's limits changed (or, once the
    /// run has finished, the last word on them). Only with
    /// `learn_limits`, and only for origins that said something.
    Learned(Box<Learned>),
    /// Under `adaptive`: the concurrency limit changed (or, once the run
    /// has finished, its account).
    Concurrency(Concurrency),
    /// Once, when the run has finished under a retry budget: how long
    /// retries waited for it.
    RetryBudget {
        /// Total time retries waited for budget.
        waited: Duration,
        /// Retries that had to wait.
        held: u64,
    },
    /// Once, when a run under `--redis` has finished and some of the
    /// starts it reserved there went stale (each cost the job one start of
    /// its rate, never a start late): `dropped` were found past the
    /// lateness allowed when the scheduler came to them (its process woke
    /// too late), `unsent` when their attempt's task first ran (its request
    /// went back to its queue, unsent, for a new grant).
    StaleGrants {
        /// Dropped before a start.
        dropped: u64,
        /// Attempts not sent.
        unsent: u64,
    },
    /// A request was dropped without a record (the run is draining, or its
    /// origin closed); `--resume` sends it again.
    Dropped {
        /// Its line.
        line: u64,
        /// Attempts it had made (they count in the run's statistics).
        attempts: u32,
    },
}

/// What sluice learned about one origin's limits.
#[derive(Clone, Debug, PartialEq)]
pub struct Learned {
    /// The origin, `scheme://host:port`.
    pub origin: String,
    /// The rate-limit dialect its headers spoke (`openai`, `anthropic`,
    /// `github`, `ietf`, `ietf-legacy`), or `none` for a rate discovered
    /// from 429s and 503s where no header spoke.
    pub dialect: &'static str,
    /// The request rate sluice paces the origin at (headroom and any
    /// lowering after refusals applied), when the headers said enough.
    pub requests_per_second: Option<f64>,
    /// How many starts may bunch up under that rate.
    pub burst: u64,
    /// The token limits it is paced at (headroom and lowering applied),
    /// when its headers limit tokens: OpenAI's `tokens`, Anthropic's
    /// `tokens`, `input-tokens` and `output-tokens`.
    pub tokens: Vec<TokenPace>,
    /// How long the origin's next request waited for the learned limits.
    pub paced: Duration,
    /// 429s the learned limits did not predict (each lowers the rate).
    pub refused: u64,
    /// Header values ignored or capped since the last event, as `-v` shows them.
    pub warnings: Vec<String>,
    /// The run has finished: this is the origin's final account.
    pub last: bool,
}

/// The pace of one learned token limit.
#[derive(Clone, Debug, PartialEq)]
pub struct TokenPace {
    /// What it counts: `tokens`, `input-tokens` or `output-tokens`.
    pub dimension: &'static str,
    /// Tokens a second.
    pub per_second: f64,
    /// How many tokens may be spent at once.
    pub burst: u64,
}

/// The adaptive concurrency limit (`adaptive`): where it stands and how it
/// moved.
#[derive(Clone, Debug, PartialEq)]
pub struct Concurrency {
    /// Attempts that may be in flight now.
    pub limit: usize,
    /// The lowest it has been.
    pub lowest: usize,
    /// The highest it has been.
    pub highest: usize,
    /// Its mean over the run so far, weighted by time.
    pub mean: f64,
    /// How many times it was lowered.
    pub decreases: u64,
    /// Why it changed (empty in the final account).
    pub why: String,
    /// The run has finished: this is the final account.
    pub last: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The values handed along for every request stay a few words: each
    /// is moved a dozen times a request (see ARCHITECTURE.md, "The
    /// dispatcher"), and a large one is a `memcpy` call each time.
    #[test]
    fn values_moved_per_request_stay_small() {
        use std::mem::size_of;
        let sizes = [
            ("Event", size_of::<Event>()),
            ("Action", size_of::<crate::scheduler::Action>()),
            ("Input", size_of::<crate::Input>()),
            ("Id", size_of::<Id>()),
            ("Ended", size_of::<crate::ends::Ended>()),
        ];
        for (name, size) in sizes {
            assert!(size <= 96, "{name} is {size} bytes: box its large variant");
        }
        assert!(size_of::<crate::Input>() <= 48, "{sizes:?}");
        // An attempt's end crosses from its task to the driver in four
        // moves: its failure is boxed (a failure's headers took it to
        // 176 bytes).
        assert!(size_of::<crate::ends::Ended>() <= 80, "{sizes:?}");
    }
}
