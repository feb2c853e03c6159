//! Dialect detection and the readers of the header-per-value dialects
//! (Anthropic, OpenAI, GitHub, the older IETF triple). The structured IETF
//! fields are in `ietf`.

use std::time::SystemTime;

use http::HeaderMap;

use super::values::{Reader, duration_or_number, number_reset, rfc3339};
use super::{Dialect, Dimension, Limit, Problem, Snapshot, ietf};

/// Detects the dialect and reads it; `None` when no rate-limit header is
/// present.
pub(super) fn observe(headers: &HeaderMap, now: SystemTime) -> Option<Snapshot> {
    let dialect = detect(headers)?;
    let mut reader = Reader::new(headers, now);
    let mut limits = match reader.text("age").filter(|age| cached(age)) {
        Some(age) => {
            reader.warn("age", age.to_owned(), Problem::Cached);
            Vec::new()
        }
        None => read(&mut reader, dialect),
    };
    for limit in &mut limits {
        cap_remaining(&mut reader, dialect, limit);
    }
    Some(Snapshot {
        dialect,
        window: dialect.window(),
        limits,
        date_lag: reader.date_lag(now),
        warnings: reader.warnings,
    })
}

fn read(reader: &mut Reader<'_>, dialect: Dialect) -> Vec<Limit> {
    match dialect {
        Dialect::Anthropic => anthropic(reader),
        Dialect::OpenAi => openai(reader),
        Dialect::GitHub => github(reader).into_iter().collect(),
        Dialect::IetfStructured => ietf::structured(reader),
        Dialect::IetfLegacy => legacy(reader).into_iter().collect(),
    }
}

/// A positive `Age`: the response came from a cache, so its limits are
/// someone else's past (the IETF draft asks clients to ignore them).
fn cached(age: &str) -> bool {
    !age.is_empty() && age.bytes().all(|b| b.is_ascii_digit()) && age.bytes().any(|b| b != b'0')
}

/// The dialect of the first family whose names appear, in the order of
/// [`Dialect`]'s table in the module docs. One pass over the names: this
/// runs on every response, and most carry no rate-limit header at all.
fn detect(headers: &HeaderMap) -> Option<Dialect> {
    const PRECEDENCE: [Dialect; 5] = [
        Dialect::Anthropic,
        Dialect::OpenAi,
        Dialect::GitHub,
        Dialect::IetfStructured,
        Dialect::IetfLegacy,
    ];
    let rank = |d: Dialect| PRECEDENCE.iter().position(|&p| p == d);
    let mut found: Option<Dialect> = None;
    for name in headers.keys() {
        if let Some(d) = family(name.as_str())
            && found.is_none_or(|f| rank(d) < rank(f))
        {
            found = Some(d);
        }
    }
    found
}

/// The family whose names include `name`, if any.
fn family(name: &str) -> Option<Dialect> {
    const GITHUB: [&str; 4] = [
        "x-ratelimit-limit",
        "x-ratelimit-remaining",
        "x-ratelimit-used",
        "x-ratelimit-reset",
    ];
    const LEGACY: [&str; 3] = ["ratelimit-limit", "ratelimit-remaining", "ratelimit-reset"];
    // Every name above starts with `a`, `x` or `r`: one byte rules out
    // the common headers (content-type, date, ...), seen on every response.
    if !matches!(name.as_bytes().first(), Some(b'a' | b'x' | b'r')) {
        return None;
    }
    if name.starts_with("anthropic-ratelimit-") {
        Some(Dialect::Anthropic)
    } else if name.starts_with("x-ratelimit-") {
        if name.ends_with("-requests") || name.ends_with("-tokens") {
            Some(Dialect::OpenAi)
        } else {
            GITHUB.contains(&name).then_some(Dialect::GitHub)
        }
    } else if name == "ratelimit-policy" || name == "ratelimit" {
        Some(Dialect::IetfStructured)
    } else {
        LEGACY.contains(&name).then_some(Dialect::IetfLegacy)
    }
}

fn anthropic(reader: &mut Reader<'_>) -> Vec<Limit> {
    let dimensions = [
        Dimension::Requests,
        Dimension::Tokens,
        Dimension::InputTokens,
        Dimension::OutputTokens,
    ];
    dimensions
        .into_iter()
        .filter_map(|dimension| {
            let name = |field: &str| format!("anthropic-ratelimit-{}-{field}", dimension.name());
            let limit = Limit {
                limit: reader.count(&name("limit")),
                remaining: reader.count(&name("remaining")),
                reset: reader.reset(&name("reset"), rfc3339),
                ..Limit::new(dimension)
            };
            known(limit)
        })
        .collect()
}

fn openai(reader: &mut Reader<'_>) -> Vec<Limit> {
    [Dimension::Requests, Dimension::Tokens]
        .into_iter()
        .filter_map(|dimension| {
            let name = |field: &str| format!("x-ratelimit-{field}-{}", dimension.name());
            let limit = Limit {
                limit: reader.count(&name("limit")),
                remaining: reader.count(&name("remaining")),
                reset: reader.reset(&name("reset"), duration_or_number),
                ..Limit::new(dimension)
            };
            known(limit)
        })
        .collect()
}

fn github(reader: &mut Reader<'_>) -> Option<Limit> {
    let limit = reader.count("x-ratelimit-limit");
    let used = reader.count("x-ratelimit-used");
    let remaining = reader
        .count("x-ratelimit-remaining")
        .or_else(|| Some(limit?.saturating_sub(used?)));
    known(Limit {
        policy: resource(reader),
        limit,
        remaining,
        reset: reader.reset("x-ratelimit-reset", number_reset),
        ..Limit::new(Dimension::Requests)
    })
}

/// GitHub's `x-ratelimit-resource` (`core`, `search`...): a token-like name.
fn resource(reader: &mut Reader<'_>) -> Option<String> {
    let text = reader.text("x-ratelimit-resource")?;
    let valid = !text.is_empty()
        && text.len() <= 64
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
    if !valid {
        reader.warn("x-ratelimit-resource", text.to_owned(), Problem::Malformed);
    }
    valid.then(|| text.to_owned())
}

/// `RateLimit-Reset` is delta seconds; the magnitude rule still applies, as
/// some servers put an epoch there.
fn legacy(reader: &mut Reader<'_>) -> Option<Limit> {
    known(Limit {
        limit: reader.count("ratelimit-limit"),
        remaining: reader.count("ratelimit-remaining"),
        reset: reader.reset("ratelimit-reset", number_reset),
        ..Limit::new(Dimension::Requests)
    })
}

/// A limit with nothing known is no limit.
fn known(limit: Limit) -> Option<Limit> {
    (limit.limit.is_some() || limit.remaining.is_some() || limit.reset.is_some()).then_some(limit)
}

fn cap_remaining(reader: &mut Reader<'_>, dialect: Dialect, limit: &mut Limit) {
    if let (Some(cap), Some(left)) = (limit.limit, limit.remaining)
        && left > cap
    {
        let header = remaining_header(dialect, limit.dimension);
        reader.warn(&header, format!("{left} > {cap}"), Problem::AboveLimit);
        limit.remaining = Some(cap);
    }
}

/// The header that carried a limit's `remaining`, for its warning.
fn remaining_header(dialect: Dialect, dimension: Dimension) -> String {
    match dialect {
        Dialect::Anthropic => format!("anthropic-ratelimit-{}-remaining", dimension.name()),
        Dialect::OpenAi => format!("x-ratelimit-remaining-{}", dimension.name()),
        Dialect::GitHub => "x-ratelimit-remaining".to_owned(),
        Dialect::IetfStructured => "ratelimit".to_owned(),
        Dialect::IetfLegacy => "ratelimit-remaining".to_owned(),
    }
}
