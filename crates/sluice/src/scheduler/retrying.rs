//! The scheduler's hooks for the retry budget (`crate::retry_budget`):
//! first attempts fill it, a due retry spends from it or waits for it in
//! the retry queue, where it holds no slot.

use tokio::time::Instant;

use crate::event::Event;

use super::Job;

impl super::Scheduler {
    /// A first attempt starts: it adds its share to the budget, once (a
    /// first attempt not sent, [`super::Scheduler::unsent`], starts again).
    pub(super) fn first_attempt_fills_budget(&mut self, job: &mut Job, now: Instant) {
        if job.attempts == 1
            && !std::mem::replace(&mut job.budget.filled, true)
            && let Some(b) = &mut self.retry_budget
        {
            b.first_attempt(now);
        }
    }

    /// A retry is due: it goes (returned) when the budget has one for it
    /// or the server asked for it; otherwise it waits in the retry queue
    /// until the budget will.
    pub(super) fn spend_retry_budget(&mut self, mut job: Job, now: Instant) -> Option<Job> {
        let Some(b) = self.retry_budget.as_mut().filter(|_| !job.budget.exempt) else {
            return Some(job);
        };
        match b.retry(now) {
            None => {
                if let Some(since) = job.budget.since.take() {
                    b.note_wait(now.saturating_duration_since(since));
                }
                Some(job)
            }
            Some(at) => {
                if job.budget.since.is_none() {
                    job.budget.since = Some(now);
                    b.note_held();
                }
                self.retries.insert((at, job.seq), job);
                None
            }
        }
    }

    /// Once the run has finished: how long retries waited for budget.
    pub(super) fn retry_budget_account(&mut self) {
        if let Some(b) = self.retry_budget.as_mut()
            && let Some((waited, held)) = b.final_account()
        {
            self.emit(Event::RetryBudget { waited, held });
        }
    }
}
