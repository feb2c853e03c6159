//! The checks every input item passes before it may be sent, shared by a
//! run and by `--dry-run`: ids are unique (compared as text), and a cost fits
//! the budget's burst.
//!
//! Memory: a 16-byte hash per explicit id, plus one bit per line for lines
//! whose id is their line number, so ten million lines stay small.
//!
//! The hash is keyed at random per intake, so no input can be crafted to
//! collide: neither two ids taken for one, nor many ids in one bucket of
//! the table (whose hash is the low half of it).

use std::collections::HashSet;
use std::hash::{BuildHasher, BuildHasherDefault, Hash, Hasher, RandomState};

use crate::config::{Config, Setting};
use crate::record::{ErrorKind, Id, Record};
use crate::redact::Redactor;
use crate::request::{Input, Request};

/// What to do with an input item.
#[derive(Debug)]
pub enum Checked {
    /// Send it; `cells` is its cost in budget units (rounded up).
    Run(Box<Request>, u64),
    /// Write this record; nothing is sent.
    Reject(Box<Record>),
    /// The line already has a record from an earlier run: its id is claimed,
    /// nothing is sent or written.
    Skip,
}

/// Tracks ids and validates costs. Feed it every item in input order.
#[derive(Debug, Default)]
pub struct Intake {
    explicit: HashSet<u128, BuildHasherDefault<Hashed>>,
    /// The random key of the hashes in `explicit`.
    key: RandomState,
    implicit_lines: BitSet,
    budget_burst: Option<u64>,
    /// What messages call the budget burst.
    budget_burst_name: &'static str,
    redactor: Redactor,
}

impl Intake {
    /// A fresh intake; with a budget, costs above `budget_burst` are
    /// rejected. URLs in its records go through `redactor`.
    pub fn new(budget_burst: Option<u64>, redactor: Redactor) -> Intake {
        Intake {
            budget_burst,
            budget_burst_name: Setting::BudgetBurst.field(),
            redactor,
            ..Intake::default()
        }
    }

    /// The intake of a run of `config`: its budget burst, redactor and
    /// setting names.
    pub fn from_config(config: &Config) -> Intake {
        Intake {
            budget_burst_name: config.name(Setting::BudgetBurst),
            ..Intake::new(config.effective_budget_burst(), config.redactor.clone())
        }
    }

    /// Checks one item.
    pub fn check(&mut self, input: Input) -> Checked {
        match input {
            Input::Invalid(bad) => {
                let id = bad.id.unwrap_or_else(|| Id::line(bad.line));
                self.claim(&id, bad.line);
                Checked::Reject(Box::new(Record::unsent(
                    id,
                    bad.line,
                    bad.method,
                    bad.url,
                    ErrorKind::InvalidRequest,
                    bad.message,
                )))
            }
            Input::Recorded { line, id } => {
                self.claim(&id, line);
                Checked::Skip
            }
            Input::Request(req) => self.check_request(req),
        }
    }

    fn check_request(&mut self, req: Box<Request>) -> Checked {
        // Made only for a message: most requests pass.
        let place = |req: &Request| {
            req.place
                .clone()
                .unwrap_or_else(|| format!("line {}", req.line))
        };
        if !self.claim(&req.id, req.line) {
            let message = format!(
                "{}: id `{}` is already used by an earlier line; ids must be unique (compared as text)",
                place(&req),
                req.id
            );
            return self.reject(req, ErrorKind::DuplicateId, message);
        }
        let cells = cost_cells(req.cost);
        if let Some(burst) = self.budget_burst.filter(|&b| cells > b) {
            let name = self.budget_burst_name;
            let message = format!(
                "{}: cost {} is more than {name} ({burst}), so it could never be sent; raise {name} or lower the cost",
                place(&req),
                req.cost
            );
            return self.reject(req, ErrorKind::InvalidRequest, message);
        }
        Checked::Run(req, cells)
    }

    fn reject(&self, req: Box<Request>, kind: ErrorKind, message: String) -> Checked {
        let url = self.redactor.url(&req.url);
        let method = req.method.to_string();
        Checked::Reject(Box::new(Record::unsent(
            req.id,
            req.line,
            Some(method),
            Some(url),
            kind,
            message,
        )))
    }

    /// Claims `id` for `line`; false when an earlier line owns it.
    fn claim(&mut self, id: &Id, line: u64) -> bool {
        let implicit = id.is_numeric() && id.as_str() == itoa::Buffer::new().format(line);
        if implicit {
            // Taken by an earlier explicit id with this text? (Most runs
            // have none: then no hashing at all.)
            if !self.explicit.is_empty() && self.explicit.contains(&self.hash128(id.as_str())) {
                return false;
            }
            self.implicit_lines.insert(line);
            return true;
        }
        // An explicit id equal to an earlier line's implicit id.
        if let Some(n) = canonical_line_number(id.as_str())
            && n < line
            && self.implicit_lines.contains(n)
        {
            return false;
        }
        self.explicit.insert(self.hash128(id.as_str()))
    }

    /// An id's 128-bit hash under this intake's random key: two ids'
    /// hashes are equal by chance once in 2^128, and no input can make
    /// them meet.
    fn hash128(&self, text: &str) -> u128 {
        let half = |salt: u8| {
            let mut h = self.key.build_hasher();
            salt.hash(&mut h);
            text.hash(&mut h);
            h.finish()
        };
        (u128::from(half(1)) << 64) | u128::from(half(2))
    }
}

/// Budget cells for a cost: fractional costs are rounded up.
pub fn cost_cells(cost: f64) -> u64 {
    if cost.is_finite() && cost > 0.0 {
        // A whole cost (most are 1) without `ceil`, a library call.
        let whole = cost as u64;
        if whole as f64 == cost {
            whole
        } else {
            cost.ceil().min(u64::MAX as f64) as u64
        }
    } else {
        0
    }
}

/// `"17"` → 17, but not `"017"`, `"+17"` or `"-1"`: only the text a line
/// number is written as.
fn canonical_line_number(text: &str) -> Option<u64> {
    if text.starts_with('0') || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// The hasher of a set of `Intake::hash128`s, which are randomly keyed
/// hashes already: their low 64 bits are the table's hash (hashing them
/// again cost a SipHash a line).
#[derive(Default)]
struct Hashed(u64);

impl Hasher for Hashed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u128` is used; any other input is folded in.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u128(&mut self, n: u128) {
        self.0 = n as u64;
    }
}

/// A growable set of line numbers, one bit each.
#[derive(Debug, Default, Clone)]
pub struct BitSet {
    words: Vec<u64>,
}

impl BitSet {
    /// Adds `n`; false when it was there already.
    pub fn insert(&mut self, n: u64) -> bool {
        let (w, b) = ((n / 64) as usize, n % 64);
        if self.words.len() <= w {
            self.words.resize(w + 1, 0);
        }
        let fresh = self.words[w] & (1 << b) == 0;
        self.words[w] |= 1 << b;
        fresh
    }

    /// True when `n` was added.
    pub fn contains(&self, n: u64) -> bool {
        let (w, b) = ((n / 64) as usize, n % 64);
        self.words.get(w).is_some_and(|word| word & (1 << b) != 0)
    }

    /// Removes `n`.
    pub fn remove(&mut self, n: u64) {
        let (w, b) = ((n / 64) as usize, n % 64);
        if let Some(word) = self.words.get_mut(w) {
            *word &= !(1 << b);
        }
    }

    /// True when nothing is in the set.
    pub fn is_empty(&self) -> bool {
        self.words.iter().all(|&w| w == 0)
    }

    /// The numbers in the set, in increasing order.
    pub fn iter(&self) -> impl Iterator<Item = u64> + '_ {
        self.words.iter().enumerate().flat_map(|(i, &w)| {
            (0..64)
                .filter(move |b| w & (1 << b) != 0)
                .map(move |b| i as u64 * 64 + b)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use url::Url;

    fn req(line: u64, id: Option<Id>) -> Input {
        let mut r = Request::get(line, Url::parse("http://127.0.0.1/").unwrap());
        if let Some(id) = id {
            r.id = id;
        }
        Input::from(r)
    }

    #[test]
    fn a_bit_set_lists_in_order() {
        let mut set = BitSet::default();
        assert!(set.insert(130) && set.insert(2) && !set.insert(2));
        assert_eq!(set.iter().collect::<Vec<_>>(), [2, 130]);
        set.remove(2);
        assert_eq!(set.iter().collect::<Vec<_>>(), [130]);
    }

    fn kind(c: &Checked) -> Option<ErrorKind> {
        match c {
            Checked::Reject(r) => r.error_kind(),
            _ => None,
        }
    }

    #[test]
    fn ids_compare_as_text() {
        let mut i = Intake::new(None, Redactor::default());
        assert_eq!(kind(&i.check(req(1, Some(Id::text("a"))))), None);
        assert_eq!(
            kind(&i.check(req(2, Some(Id::text("a"))))),
            Some(ErrorKind::DuplicateId)
        );
        // An explicit "3" on line 3... then line 3's own id collides.
        assert_eq!(kind(&i.check(req(4, Some(Id::text("7"))))), None);
        assert_eq!(kind(&i.check(req(7, None))), Some(ErrorKind::DuplicateId));
        // Line 5 takes id 5 implicitly; a later explicit 5 is a duplicate.
        assert_eq!(kind(&i.check(req(5, None))), None);
        assert_eq!(
            kind(&i.check(req(9, Some(Id::text("5"))))),
            Some(ErrorKind::DuplicateId)
        );
        // "05" is a different text.
        assert_eq!(kind(&i.check(req(10, Some(Id::text("05"))))), None);
    }

    /// Ids hash under a key of each intake's own, so the table's buckets
    /// (and the hashes compared) cannot be foreseen from the input; the
    /// same text still meets itself within one intake.
    #[test]
    fn ids_hash_under_a_random_key() {
        let (a, b) = (Intake::default(), Intake::default());
        assert_ne!(a.hash128("id-1"), b.hash128("id-1"));
        assert_eq!(a.hash128("id-1"), a.hash128("id-1"));
        let mut i = Intake::default();
        for line in 1..=1000 {
            let id = Id::text(format!("id-{line}"));
            assert_eq!(kind(&i.check(req(line, Some(id)))), None);
        }
        assert_eq!(
            kind(&i.check(req(1001, Some(Id::text("id-500"))))),
            Some(ErrorKind::DuplicateId)
        );
    }

    #[test]
    fn costs_above_the_burst_are_invalid() {
        let mut i = Intake::new(Some(100), Redactor::default());
        let mut r = Request::get(1, Url::parse("http://127.0.0.1/").unwrap());
        r.cost = 100.5;
        assert_eq!(
            kind(&i.check(Input::from(r))),
            Some(ErrorKind::InvalidRequest)
        );
        assert_eq!(cost_cells(0.0), 0);
        assert_eq!(cost_cells(2.1), 3);
        // Whole costs (no `ceil`) and the rest agree with `ceil` everywhere.
        for cost in [
            1.0,
            2.0,
            0.5,
            1e-300,
            1e15 + 0.5,
            1.8e19,
            2f64.powi(64),
            1e30,
        ] {
            let want = cost.ceil().min(u64::MAX as f64) as u64;
            assert_eq!(cost_cells(cost), want, "{cost}");
        }
        for cost in [-1.0, f64::NAN, f64::INFINITY] {
            assert_eq!(cost_cells(cost), 0, "{cost}");
        }
    }

    /// The engine names the field; a front end names its own option.
    #[test]
    fn messages_name_the_setting_as_the_caller_calls_it() {
        let message = |mut intake: Intake| {
            let mut r = Request::get(1, Url::parse("http://127.0.0.1/").unwrap());
            r.cost = 5.0;
            match intake.check(Input::from(r)) {
                Checked::Reject(record) => record.error.expect("an error").message,
                other => panic!("{other:?}"),
            }
        };
        let engine = message(Intake::new(Some(4), Redactor::default()));
        assert!(engine.contains("more than budget_burst (4)"), "{engine}");
        let config = Config::builder()
            .budget("4/s".parse().unwrap())
            .setting_names(|_| "--the-option")
            .build()
            .unwrap();
        let cli = message(Intake::from_config(&config));
        assert!(
            cli.contains("more than --the-option (4)") && !cli.contains("budget_burst"),
            "{cli}"
        );
    }
}
