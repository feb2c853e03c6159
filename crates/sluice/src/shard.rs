//! Static sharding: several processes read the same input, and each takes
//! its own share of the lines, so together they send every line once.
//!
//! The rule, so anyone can reproduce the split: shard `K` of `N` owns the
//! lines whose line number modulo `N` is `K`. Line numbers are the ones in
//! the records (`line`): they count from 1 and run on across input files,
//! blank and `#` lines included. `K` counts from 0, so `--shard 0/4` owns
//! lines 4, 8, 12, … and `--shard 1/4` owns lines 1, 5, 9, ….
//!
//! A line another shard owns still claims its id (as a line recorded by an
//! earlier run does), so a duplicate id is reported exactly as without
//! shards, by the shard that owns the later line; a bad line is reported
//! only by the shard that owns it.

use std::fmt;
use std::num::NonZeroU64;

use futures::{Stream, StreamExt};

use crate::request::Input;
use crate::resume::id_of;

/// One shard of a job: this process's share of the input lines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    index: u64,
    count: NonZeroU64,
}

/// Why a shard specification is not valid.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ShardError {
    /// Not `K/N` with two whole numbers.
    #[error("`{0}` is not K/N (e.g. 0/4: the first of four shards)")]
    Syntax(String),
    /// `N` is 0.
    #[error("a job has at least one shard: N in K/N must be 1 or more, not 0")]
    NoShards,
    /// `K` is `N` or more.
    #[error(
        "shard {index} of {count} does not exist: K in K/N counts from 0, so it must be 0 to {}",
        count - 1
    )]
    OutOfRange {
        /// The index given.
        index: u64,
        /// The number of shards given.
        count: u64,
    },
}

impl Shard {
    /// Shard `index` of `count`; `index` counts from 0.
    ///
    /// ```
    /// use sluice::shard::Shard;
    /// let shard = Shard::new(1, 4).unwrap();
    /// assert!(shard.owns(5) && !shard.owns(4));
    /// assert!(Shard::new(4, 4).is_err() && Shard::new(0, 0).is_err());
    /// ```
    ///
    /// # Errors
    /// No shards, or `index` is not below `count`.
    pub fn new(index: u64, count: u64) -> Result<Shard, ShardError> {
        let count = NonZeroU64::new(count).ok_or(ShardError::NoShards)?;
        if index >= count.get() {
            return Err(ShardError::OutOfRange {
                index,
                count: count.get(),
            });
        }
        Ok(Shard { index, count })
    }

    /// Reads `K/N`.
    ///
    /// # Errors
    /// The text is not `K/N`, or [`Shard::new`] refuses the numbers.
    pub fn parse(text: &str) -> Result<Shard, ShardError> {
        let syntax = || ShardError::Syntax(text.to_string());
        let (k, n) = text.trim().split_once('/').ok_or_else(syntax)?;
        let number = |s: &str| s.trim().parse::<u64>().map_err(|_| syntax());
        Shard::new(number(k)?, number(n)?)
    }

    /// This shard's index, from 0.
    pub fn index(&self) -> u64 {
        self.index
    }

    /// How many shards the job has.
    pub fn count(&self) -> u64 {
        self.count.get()
    }

    /// True when this shard sends (and records) input line `line`.
    pub fn owns(&self, line: u64) -> bool {
        line % self.count.get() == self.index
    }

    /// A line another shard owns becomes [`Input::Recorded`]: it claims its
    /// id, and is neither sent nor written here.
    pub fn filter(&self, input: Input) -> Input {
        let line = input.line();
        if self.owns(line) || matches!(input, Input::Recorded { .. }) {
            return input;
        }
        Input::Recorded {
            line,
            id: id_of(&input),
        }
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl std::str::FromStr for Shard {
    type Err = ShardError;
    fn from_str(s: &str) -> Result<Shard, ShardError> {
        Shard::parse(s)
    }
}

/// The items of `stream` with every line `shard` does not own turned into
/// [`Input::Recorded`] (see [`Shard::filter`]); `None` passes all through.
pub fn select<S, E>(stream: S, shard: Option<Shard>) -> impl Stream<Item = Result<Input, E>>
where
    S: Stream<Item = Result<Input, E>>,
{
    stream.map(move |item| match shard {
        Some(shard) => item.map(|input| shard.filter(input)),
        None => item,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Id;
    use crate::request::Request;

    fn request(line: u64) -> Input {
        Input::from(Request::get(line, "http://a.test/".parse().unwrap()))
    }

    #[test]
    fn every_line_has_exactly_one_owner() {
        for count in 1..=7 {
            let shards: Vec<Shard> = (0..count).map(|k| Shard::new(k, count).unwrap()).collect();
            for line in 1..=100 {
                let owners = shards.iter().filter(|s| s.owns(line)).count();
                assert_eq!(owners, 1, "line {line} of {count} shards");
            }
        }
    }

    #[test]
    fn the_rule_is_line_modulo_n_with_k_from_zero() {
        let first = Shard::parse("0/4").unwrap();
        let owned: Vec<u64> = (1..=12).filter(|&l| first.owns(l)).collect();
        assert_eq!(owned, [4, 8, 12]);
        let second = Shard::parse("1/4").unwrap();
        let owned: Vec<u64> = (1..=12).filter(|&l| second.owns(l)).collect();
        assert_eq!(owned, [1, 5, 9]);
        assert!(Shard::parse("0/1").unwrap().owns(17));
    }

    #[test]
    fn bad_specifications_say_why() {
        assert_eq!(
            Shard::parse("4/4"),
            Err(ShardError::OutOfRange { index: 4, count: 4 })
        );
        assert_eq!(Shard::parse("0/0"), Err(ShardError::NoShards));
        for bad in ["", "1", "a/4", "1/b", "-1/4", "1/4/2", "1.5/4"] {
            assert!(
                matches!(Shard::parse(bad), Err(ShardError::Syntax(_))),
                "{bad}"
            );
        }
        let message = Shard::parse("4/4").unwrap_err().to_string();
        assert!(message.contains("0 to 3"), "{message}");
    }

    #[test]
    fn lines_of_other_shards_keep_their_ids_but_are_not_sent() {
        let shard = Shard::new(0, 2).unwrap();
        assert!(matches!(shard.filter(request(2)), Input::Request(_)));
        match shard.filter(request(3)) {
            Input::Recorded { line, id } => {
                assert_eq!(line, 3);
                assert_eq!(id, Id::line(3));
            }
            other => panic!("line 3 belongs to shard 1: {other:?}"),
        }
    }
}
