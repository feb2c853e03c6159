//! The IETF draft's `RateLimit-Policy` and `RateLimit` fields
//! (draft-ietf-httpapi-ratelimit-headers), parsed as RFC 9651 structured
//! field lists by `sfv`:
//!
//! ```text
//! RateLimit-Policy: "burst";q=100;w=60,"daily";q=1000;w=86400
//! RateLimit: "burst";r=50;t=30
//! ```
//!
//! A policy's `q` is its quota, `w` its window in seconds, `qu` its unit
//! (only `"requests"`, the default, is paced by), `pk` a partition key; a
//! `RateLimit` item's `r` is what remains and `t` the seconds until more
//! quota comes. Items pair up by name and partition key. A malformed field
//! is ignored as a whole, as the draft requires; a malformed item alone.

use std::time::Duration;

use sfv::{BareItem, Item, List, ListEntry, Parser};

use super::values::Reader;
use super::{Dimension, Limit, Problem};

/// One item of either field, its parameters read.
struct Entry {
    name: String,
    partition: Option<u64>,
    /// `q` (policy) or `r` (RateLimit).
    amount: Option<u64>,
    /// `w` (policy) or `t` (RateLimit).
    seconds: Option<Duration>,
}

/// The limits the two fields describe: one per policy, with what
/// `RateLimit` says about it, then any `RateLimit` item without a policy.
pub(super) fn structured(reader: &mut Reader<'_>) -> Vec<Limit> {
    let policies = field(reader, "ratelimit-policy", "q", "w");
    let mut states = field(reader, "ratelimit", "r", "t");
    let mut limits: Vec<Limit> = policies
        .into_iter()
        .map(|policy| {
            let state = states
                .iter()
                .position(|s| s.name == policy.name && s.partition == policy.partition)
                .map(|at| states.remove(at));
            Limit {
                dimension: Dimension::Requests,
                policy: Some(policy.name),
                partition: policy.partition,
                limit: policy.amount,
                window: policy.seconds.filter(|w| !w.is_zero()),
                remaining: state.as_ref().and_then(|s| s.amount),
                reset: state.and_then(|s| s.seconds),
            }
        })
        .collect();
    limits.extend(states.into_iter().map(|state| Limit {
        policy: Some(state.name),
        partition: state.partition,
        remaining: state.amount,
        reset: state.seconds,
        ..Limit::new(Dimension::Requests)
    }));
    limits
}

/// The items of one field; `amount` and `seconds` name its two integer
/// parameters.
fn field(reader: &mut Reader<'_>, header: &str, amount: &str, seconds: &str) -> Vec<Entry> {
    let Some(text) = reader.joined(header) else {
        return Vec::new();
    };
    let list: List = match Parser::new(&text).parse() {
        Ok(list) => list,
        Err(_) => {
            reader.warn(header, text, Problem::Malformed);
            return Vec::new();
        }
    };
    let mut entries = Vec::new();
    for entry in list {
        let ListEntry::Item(item) = entry else {
            reader.warn(header, text.clone(), Problem::Malformed);
            continue;
        };
        match read_item(reader, header, &text, &item, amount, seconds) {
            Ok(Some(entry)) => entries.push(entry),
            Ok(None) => reader.warn(header, text.clone(), Problem::Unsupported),
            Err(()) => reader.warn(header, text.clone(), Problem::Malformed),
        }
    }
    entries
}

/// One item: `Ok(None)` for a quota unit other than requests, `Err` when
/// the name or a parameter has the wrong type or sign, or the required
/// `amount` is missing.
fn read_item(
    reader: &mut Reader<'_>,
    header: &str,
    text: &str,
    item: &Item,
    amount: &str,
    seconds: &str,
) -> Result<Option<Entry>, ()> {
    let name = match &item.bare_item {
        BareItem::String(s) => s.as_str().to_owned(),
        BareItem::Token(t) => t.as_str().to_owned(),
        _ => return Err(()),
    };
    let param = |key: &str| {
        item.params
            .iter()
            .find(|(k, _)| k.as_str() == key)
            .map(|(_, v)| v)
    };
    if let Some(unit) = param("qu") {
        match unit.as_string() {
            Some(u) if u.as_str() == "requests" => {}
            Some(_) => return Ok(None),
            None => return Err(()),
        }
    }
    let non_negative = |key: &str| -> Result<Option<u64>, ()> {
        match param(key) {
            None => Ok(None),
            Some(v) => {
                let n = i64::from(v.as_integer().ok_or(())?);
                u64::try_from(n).map(Some).map_err(|_| ())
            }
        }
    };
    let quota = non_negative(amount)?.ok_or(())?;
    let secs = non_negative(seconds)?;
    let partition = match param("pk") {
        None => None,
        Some(v) => Some(fingerprint(v.as_byte_sequence().ok_or(())?)),
    };
    Ok(Some(Entry {
        name: name.chars().take(64).collect(),
        partition,
        amount: Some(reader.capped_count(header, text, quota)),
        seconds: secs.map(|s| reader.capped_reset(header, text, s as f64)),
    }))
}

/// FNV-1a of the partition key's bytes.
fn fingerprint(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}
