//! The exit status of `sluice`, as `docs/exit-status.md` explains it: one
//! type, decided from how a command ended in one function
//! ([`ExitCode::decide`]) and handed to the operating system in `main`.

use serde::{Serialize, Serializer};

use crate::signals::Signal;

/// How `sluice` exits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ExitCode {
    /// 0: every request has an ok record.
    #[default]
    Ok,
    /// 1: every request has a record and some failed.
    Failed,
    /// 2: nothing was sent: usage, configuration, input or output error.
    Usage,
    /// 3: stopped early; `--resume` continues.
    Stopped,
    /// 128 + the signal's number: interrupted (130 SIGINT, 143 SIGTERM).
    Interrupted(Signal),
}

/// Why a command stopped before its work was done.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// Before anything was sent, or on input that contradicts the records
    /// being resumed: the command line or the files must change.
    Usage,
    /// Part-way (a write, read or engine failure, closed origins): running
    /// again with `--resume` continues.
    Stopped,
}

/// How a command ended, for [`ExitCode::decide`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ending {
    /// The signal that interrupted it.
    pub signal: Option<Signal>,
    /// What stopped it early.
    pub stop: Option<Stop>,
    /// Some records are failures.
    pub failed: bool,
}

impl ExitCode {
    /// Every status, in the order the docs list them.
    #[cfg(test)]
    pub const ALL: [ExitCode; 6] = [
        ExitCode::Ok,
        ExitCode::Failed,
        ExitCode::Usage,
        ExitCode::Stopped,
        ExitCode::Interrupted(Signal::Interrupt),
        ExitCode::Interrupted(Signal::Terminate),
    ];

    /// The one decision: a signal outranks a stop, which outranks failed
    /// records.
    pub fn decide(ending: Ending) -> ExitCode {
        match ending {
            Ending {
                signal: Some(signal),
                ..
            } => ExitCode::Interrupted(signal),
            Ending {
                stop: Some(Stop::Usage),
                ..
            } => ExitCode::Usage,
            Ending {
                stop: Some(Stop::Stopped),
                ..
            } => ExitCode::Stopped,
            Ending { failed: true, .. } => ExitCode::Failed,
            Ending { .. } => ExitCode::Ok,
        }
    }

    /// A command that ended with `stop`.
    pub fn stopped(stop: Stop) -> ExitCode {
        ExitCode::decide(Ending {
            stop: Some(stop),
            ..Ending::default()
        })
    }

    /// A command that failed with an error: `run::Usage` errors mean nothing
    /// was sent.
    pub fn of_error(e: &anyhow::Error) -> ExitCode {
        match e.downcast_ref::<crate::run::Usage>() {
            Some(_) => ExitCode::stopped(Stop::Usage),
            None => ExitCode::stopped(Stop::Stopped),
        }
    }

    /// The number the process exits with.
    pub fn code(self) -> i32 {
        match self {
            ExitCode::Ok => 0,
            ExitCode::Failed => 1,
            ExitCode::Usage => 2,
            ExitCode::Stopped => 3,
            ExitCode::Interrupted(Signal::Interrupt) => 128 + libc::SIGINT,
            ExitCode::Interrupted(Signal::Terminate) => 128 + libc::SIGTERM,
        }
    }
}

/// Summaries hold the number (`"exit_code": 1`).
impl Serialize for ExitCode {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_i32(self.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_codes_are_the_documented_ones() {
        let codes = ExitCode::ALL.map(ExitCode::code);
        assert_eq!(codes, [0, 1, 2, 3, 130, 143]);
    }

    #[test]
    fn a_signal_outranks_a_stop_which_outranks_failures() {
        let all = Ending {
            signal: Some(Signal::Terminate),
            stop: Some(Stop::Usage),
            failed: true,
        };
        assert_eq!(
            ExitCode::decide(all),
            ExitCode::Interrupted(Signal::Terminate)
        );
        let stop = Ending {
            signal: None,
            ..all
        };
        assert_eq!(ExitCode::decide(stop), ExitCode::Usage);
        let failed = Ending { stop: None, ..stop };
        assert_eq!(ExitCode::decide(failed), ExitCode::Failed);
        assert_eq!(ExitCode::decide(Ending::default()), ExitCode::Ok);
    }
}
