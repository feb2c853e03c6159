//! The reorder buffer behind `ordered`: records are held until every
//! earlier line has its record or was dropped, and the oldest unfinished line
//! bounds how far ahead a request may start.

use std::collections::{BTreeMap, BTreeSet};

use crate::record::Record;

/// Holds records until their turn.
#[derive(Debug, Default)]
pub struct Reorder {
    unfinished: BTreeSet<u64>,
    held: BTreeMap<u64, Box<Record>>,
}

impl Reorder {
    /// Notes that `line` will get a record or be dropped.
    pub fn register(&mut self, line: u64) {
        self.unfinished.insert(line);
    }

    /// The oldest line whose record has not been released.
    pub fn oldest(&self) -> Option<u64> {
        self.unfinished.first().copied()
    }

    /// Accepts a record; returns those whose turn has come, in line order.
    pub fn complete(&mut self, record: Box<Record>) -> Vec<Box<Record>> {
        self.held.insert(record.line, record);
        self.release()
    }

    /// Forgets a line that will get no record; returns records now released.
    pub fn drop_line(&mut self, line: u64) -> Vec<Box<Record>> {
        self.unfinished.remove(&line);
        self.release()
    }

    #[allow(
        clippy::vec_box,
        reason = "records arrive boxed and leave boxed, as Event::Record: never unboxed here"
    )]
    fn release(&mut self) -> Vec<Box<Record>> {
        let mut out = Vec::new();
        while let Some(&line) = self.unfinished.first() {
            let Some(record) = self.held.remove(&line) else {
                break;
            };
            self.unfinished.remove(&line);
            out.push(record);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{ErrorKind, Id};

    fn rec(line: u64) -> Box<Record> {
        Box::new(Record::unsent(
            Id::line(line),
            line,
            None,
            None,
            ErrorKind::InvalidRequest,
            "x".into(),
        ))
    }

    fn lines(v: impl IntoIterator<Item = Box<Record>>) -> Vec<u64> {
        v.into_iter().map(|r| r.line).collect()
    }

    #[test]
    fn releases_in_line_order_across_gaps_and_drops() {
        let mut r = Reorder::default();
        for l in [2, 3, 5, 8] {
            r.register(l);
        }
        assert_eq!(lines(r.complete(rec(3))), Vec::<u64>::new());
        assert_eq!(lines(r.complete(rec(8))), Vec::<u64>::new());
        assert_eq!(r.oldest(), Some(2));
        assert_eq!(lines(r.complete(rec(2))), vec![2, 3]);
        assert_eq!(lines(r.drop_line(5)), vec![8]);
        assert_eq!(r.oldest(), None);
    }
}
