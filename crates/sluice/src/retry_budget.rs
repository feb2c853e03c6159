//! The retry budget: retries must not multiply the load
//! on a failing server. As Finagle's `RetryBudget`, retries spend from a
//! budget that first attempts fill by a share each (20%) and time fills at
//! a floor rate (10 a second); a retry that finds it empty waits for it,
//! holding no slot, and never fails for it.
//!
//! Retries the server asked for with `Retry-After` do not spend: the server
//! said when it wants them, and the origin's pause already spaces them.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::timing::later;
use tokio::time::Instant;

/// `--retry-budget`: a share of first attempts plus a rate, e.g. `20%+10/s`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RetryBudget {
    /// Retries each first attempt adds (0.2 for 20%).
    pub share: f64,
    /// Retries a second time adds.
    pub per_second: f64,
}

impl RetryBudget {
    /// Finagle's defaults: 20% of first attempts plus 10 a second.
    pub const DEFAULT: RetryBudget = RetryBudget {
        share: 0.2,
        per_second: 10.0,
    };
}

impl fmt::Display for RetryBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}%+{}/s", self.share * 100.0, self.per_second)
    }
}

/// Why a `--retry-budget` value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BudgetError(String);

impl FromStr for RetryBudget {
    type Err = BudgetError;

    /// `P%+R/s` (either part may be `0`), e.g. `20%+10/s`.
    ///
    /// # Errors
    ///
    /// When the text is not of that form, or a number is negative, not
    /// finite, or both are zero (use `off`).
    fn from_str(s: &str) -> Result<RetryBudget, BudgetError> {
        let bad = || {
            BudgetError(format!(
                "invalid retry budget {s:?}: expected PERCENT%+RATE/s, e.g. 20%+10/s, or off"
            ))
        };
        let (share, rate) = s.trim().split_once('+').ok_or_else(bad)?;
        let share = share.trim().strip_suffix('%').ok_or_else(bad)?;
        let rate = rate.trim().strip_suffix("/s").ok_or_else(bad)?;
        let number = |t: &str| {
            t.trim()
                .parse::<f64>()
                .ok()
                .filter(|n| n.is_finite() && *n >= 0.0 && *n <= 1e9)
        };
        let (share, per_second) = (
            number(share).ok_or_else(bad)?,
            number(rate).ok_or_else(bad)?,
        );
        if share == 0.0 && per_second == 0.0 {
            return Err(BudgetError(format!(
                "invalid retry budget {s:?}: it would never let a retry go; use off to retry without a budget"
            )));
        }
        Ok(RetryBudget {
            share: share / 100.0,
            per_second,
        })
    }
}

/// Where one request stands with the budget.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct RetryHold {
    /// The coming retry's wait was the server's (`Retry-After`): it does
    /// not spend.
    pub(crate) exempt: bool,
    /// Since when the coming retry has waited for budget.
    pub(crate) since: Option<Instant>,
    /// Its first attempt added its share to the budget.
    pub(crate) filled: bool,
}

/// The budget of one run: a balance of retries, capped at a second's worth
/// of the floor rate plus the share of the first attempts of the last
/// [`WINDOW`] (so a long healthy stretch does not bank an unbounded burst).
#[derive(Debug)]
pub(crate) struct Budget {
    spec: RetryBudget,
    balance: f64,
    last: Instant,
    /// First attempts of the last [`WINDOW`], by second: when each second
    /// began, and the count.
    recent: std::collections::VecDeque<(Instant, u64)>,
    /// The sum of `recent`'s counts.
    firsts: u64,
    /// When the oldest second of `recent` leaves the window, and when the
    /// newest ends: so a first attempt compares instants and subtracts
    /// none (`Some` exactly while `recent` is not empty).
    front_leaves: Option<Instant>,
    back_ends: Option<Instant>,
    /// Total time retries waited for budget.
    waited: Duration,
    /// Retries that had to wait.
    held: u64,
    /// The final account was given.
    told: bool,
}

/// How far back first attempts count towards the cap.
const WINDOW: Duration = Duration::from_secs(10);

impl Budget {
    /// An empty budget at `now`.
    pub(crate) fn new(spec: RetryBudget, now: Instant) -> Budget {
        Budget {
            spec,
            balance: 0.0,
            last: now,
            recent: std::collections::VecDeque::new(),
            firsts: 0,
            front_leaves: None,
            back_ends: None,
            waited: Duration::ZERO,
            held: 0,
            told: false,
        }
    }

    fn refill(&mut self, now: Instant) {
        let since = self.last;
        self.last = since.max(now);
        // More than WINDOW old: `now - t > WINDOW`, i.e. `now > t + WINDOW`.
        while self.front_leaves.is_some_and(|leaves| now > leaves) {
            if let Some((_, n)) = self.recent.pop_front() {
                self.firsts -= n;
            }
            self.front_leaves = self.recent.front().map(|&(t, _)| later(t, WINDOW));
        }
        if self.recent.is_empty() {
            self.back_ends = None;
        }
        let cap = (self.spec.per_second + self.spec.share * self.firsts as f64).max(1.0);
        if self.balance >= cap {
            // At the cap (a run whose retries spend little stays there),
            // time adds nothing: no subtraction of instants, one a start.
            self.balance = cap;
            return;
        }
        let elapsed = now.saturating_duration_since(since).as_secs_f64();
        self.balance = (self.balance + elapsed * self.spec.per_second).min(cap);
    }

    /// A first attempt started: it adds its share.
    pub(crate) fn first_attempt(&mut self, now: Instant) {
        self.refill(now);
        // Within the newest second: `now - t < 1 s`, i.e. `now < t + 1 s`.
        match self.recent.back_mut() {
            Some((_, n)) if self.back_ends.is_some_and(|ends| now < ends) => *n += 1,
            _ => {
                self.recent.push_back((now, 1));
                self.back_ends = Some(later(now, Duration::from_secs(1)));
                self.front_leaves.get_or_insert_with(|| later(now, WINDOW));
            }
        }
        self.firsts += 1;
        self.balance += self.spec.share;
    }

    /// A retry is due at `now`: `None` when it may go (the budget is
    /// charged), or the instant the budget will have one for it.
    pub(crate) fn retry(&mut self, now: Instant) -> Option<Instant> {
        self.refill(now);
        if self.balance >= 1.0 {
            self.balance -= 1.0;
            return None;
        }
        let short = 1.0 - self.balance;
        // Without a floor rate only first attempts refill it: check again
        // in a second.
        let wait = if self.spec.per_second > 0.0 {
            Duration::from_secs_f64(short / self.spec.per_second).max(Duration::from_millis(1))
        } else {
            Duration::from_secs(1)
        };
        Some(now + wait)
    }

    /// A retry waited `wait` for budget.
    pub(crate) fn note_wait(&mut self, wait: Duration) {
        self.waited += wait;
    }

    /// A retry found the budget empty and waits.
    pub(crate) fn note_held(&mut self) {
        self.held += 1;
    }

    /// Total time retries waited, and how many had to; once (`None` after).
    pub(crate) fn final_account(&mut self) -> Option<(Duration, u64)> {
        if self.told {
            return None;
        }
        self.told = true;
        Some((self.waited, self.held))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_forms_and_refuses_the_rest() {
        let b: RetryBudget = "20%+10/s".parse().expect("valid");
        assert_eq!(b, RetryBudget::DEFAULT);
        assert_eq!(b.to_string(), "20%+10/s");
        let b: RetryBudget = "0%+5/s".parse().expect("valid");
        assert_eq!(b.per_second, 5.0);
        for bad in [
            "", "20%", "10/s", "20+10/s", "20%+10", "-1%+10/s", "0%+0/s", "x%+1/s",
        ] {
            assert!(bad.parse::<RetryBudget>().is_err(), "{bad}");
        }
    }

    #[test]
    fn retries_stay_within_the_share_of_first_attempts_plus_the_rate() {
        let t0 = Instant::now();
        let mut b = Budget::new(RetryBudget::DEFAULT, t0);
        // 100 first attempts at once, then retries as fast as allowed for
        // five seconds.
        for _ in 0..100 {
            b.first_attempt(t0);
        }
        let mut now = t0;
        let mut retries = 0;
        while now < t0 + Duration::from_secs(5) {
            match b.retry(now) {
                None => retries += 1,
                Some(at) => now = at,
            }
        }
        // 20 from the share, 50 from the rate, 1 of rounding.
        assert!((69..=71).contains(&retries), "{retries}");
    }

    #[test]
    fn an_idle_budget_banks_no_more_than_its_cap() {
        let t0 = Instant::now();
        let mut b = Budget::new(RetryBudget::DEFAULT, t0);
        let later = t0 + Duration::from_secs(3600);
        let mut burst = 0;
        while b.retry(later).is_none() {
            burst += 1;
        }
        assert_eq!(burst, 10, "a second's worth of the rate");
    }
}
