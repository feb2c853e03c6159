//! The origins whose head request could start now, oldest head first.
//!
//! A start takes its origin out under its head's sequence number and, most
//! often, puts it back under the next one's: a `BTreeMap`'s remove and
//! insert, about 240 instructions a request. The oldest entry is kept
//! beside the map instead, so an origin that stays the oldest ready one (a
//! run of one origin, every request) is moved on by a write in place.

use std::collections::BTreeMap;

/// Origins (by index) keyed by their head request's sequence number.
#[derive(Debug, Default)]
pub(super) struct Ready {
    /// The entry with the least key, held out of `rest`.
    first: Option<(u64, usize)>,
    /// Every other entry; each key greater than `first`'s.
    rest: BTreeMap<u64, usize>,
}

impl Ready {
    /// The entry with the least key.
    pub(super) fn first(&self) -> Option<(u64, usize)> {
        self.first
    }

    /// Lists origin `o` under `key` (a key not listed).
    pub(super) fn insert(&mut self, key: u64, o: usize) {
        match self.first {
            None => self.first = Some((key, o)),
            Some((least, _)) if key < least => {
                if let Some((k, v)) = self.first.replace((key, o)) {
                    self.rest.insert(k, v);
                }
            }
            Some(_) => {
                self.rest.insert(key, o);
            }
        }
    }

    /// Takes the entry under `key` out, if it is listed.
    pub(super) fn remove(&mut self, key: u64) {
        if self.first.is_some_and(|(least, _)| least == key) {
            self.first = self.rest.pop_first();
        } else {
            self.rest.remove(&key);
        }
    }

    /// The origin listed under `key`.
    pub(super) fn get(&self, key: u64) -> Option<usize> {
        match self.first {
            Some((least, o)) if least == key => Some(o),
            _ => self.rest.get(&key).copied(),
        }
    }

    /// The origins listed, in no particular order.
    pub(super) fn origins(&self) -> impl Iterator<Item = usize> + '_ {
        self.first
            .iter()
            .map(|&(_, o)| o)
            .chain(self.rest.values().copied())
    }

    pub(super) fn len(&self) -> usize {
        usize::from(self.first.is_some()) + self.rest.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.first.is_none()
    }

    pub(super) fn clear(&mut self) {
        self.first = None;
        self.rest.clear();
    }

    /// `first` is the least entry (debug builds' invariant checks).
    pub(super) fn well_ordered(&self) -> bool {
        match (self.first, self.rest.first_key_value()) {
            (None, next) => next.is_none(),
            (Some((least, _)), Some((&next, _))) => least < next,
            (Some(_), None) => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Any sequence of inserts and removes leaves the same entries, in
        /// the same order, as a plain `BTreeMap`.
        #[test]
        fn ready_is_a_btreemap(ops in proptest::collection::vec((any::<bool>(), 0u64..16, 0usize..4), 0..200)) {
            let mut ready = Ready::default();
            let mut model = BTreeMap::new();
            for (insert, key, o) in ops {
                if insert && !model.contains_key(&key) {
                    ready.insert(key, o);
                    model.insert(key, o);
                } else if !insert {
                    ready.remove(key);
                    model.remove(&key);
                }
                prop_assert!(ready.well_ordered());
                prop_assert_eq!(ready.first(), model.first_key_value().map(|(&k, &v)| (k, v)));
                prop_assert_eq!(ready.len(), model.len());
                prop_assert_eq!(ready.is_empty(), model.is_empty());
                for k in 0..16 {
                    prop_assert_eq!(ready.get(k), model.get(&k).copied());
                }
                let mut listed: Vec<usize> = ready.origins().collect();
                let mut expected: Vec<usize> = model.values().copied().collect();
                listed.sort_unstable();
                expected.sort_unstable();
                prop_assert_eq!(listed, expected);
            }
        }
    }
}
