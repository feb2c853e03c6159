//! From a [`Snapshot`] to a pace: how fast, how bunched, and whether to
//! pause. A pure function of the snapshot and the headroom.
//!
//! **Buckets** (OpenAI, Anthropic): the reset is the time until the bucket
//! is *full* again, not until the next unit. A bucket that refills at a
//! constant rate `ρ` and lacks `limit − remaining` units is full after
//! `(limit − remaining) / ρ`, so `ρ = (limit − remaining) / reset`. That
//! rate is what the server lets a client sustain forever (`limit / ρ` is
//! the limit's window, about 60 s for per-minute limits), so sluice paces
//! at it and never "sleeps until reset". What it does not say:
//! - at `remaining == limit` the bucket is full, the reset is 0 and the
//!   formula says nothing: no pace is suggested (the next response will
//!   have spent something);
//! - with `reset == 0` and something spent, the refill is faster than the
//!   reset's resolution: no pace is suggested;
//! - resets rounded to whole seconds (Anthropic's RFC 3339 times against a
//!   `Date` of one-second resolution) make the rate rough for small
//!   deficits; callers should prefer the snapshot with the largest deficit.
//! - The snapshot is the bucket as the server admitted *that* request:
//!   whatever was sent after it is not yet counted (the caller's job).
//!
//! `remaining == 0` with a future reset pauses: for a fixed window until the
//! reset (nothing comes back before), for a bucket with a known limit only
//! until one unit has refilled (`reset / limit`), after which the pace
//! holds — sleeping until the bucket is full would waste the window the
//! issue asks sluice to use. A bucket whose limit is unknown pauses until
//! the reset, the only safe reading.
//!
//! **Fixed windows** (GitHub, IETF): nothing comes back before the reset,
//! so what remains is spread evenly until it: `remaining / reset`. An IETF
//! policy with a window `w` and no `t` paces at `q / w`.
//!
//! Every rate is multiplied by the [`Headroom`], and the burst is about one
//! second's worth (servers that publish per-minute limits enforce them per
//! second), at least 1, at most what remains.

use std::time::Duration;

use super::{Dimension, Limit, Snapshot, Window};

/// Rates above this (10^9 per second) are capped: above any real quota
/// (the largest token tiers are a few million tokens per second), and it
/// keeps the burst a small exact integer.
pub const MAX_RATE: f64 = 1e9;

/// The share of a learned limit sluice aims at, in (0, 1]: 1.0 uses it all
/// (sluice is the key's only client), lower leaves room for others.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Headroom(f64);

impl Headroom {
    /// All of the learned limit.
    pub const FULL: Headroom = Headroom(1.0);

    /// A headroom of `factor`, which must be finite, above 0 and at most 1.
    pub fn new(factor: f64) -> Option<Headroom> {
        (factor.is_finite() && factor > 0.0 && factor <= 1.0).then_some(Headroom(factor))
    }

    /// The factor.
    pub fn get(self) -> f64 {
        self.0
    }
}

/// A headroom that is not a share above 0 and at most 1.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("`{0}` is not a share above 0 and at most 1 (e.g. 0.8)")]
pub struct HeadroomError(pub String);

impl std::str::FromStr for Headroom {
    type Err = HeadroomError;

    fn from_str(text: &str) -> Result<Headroom, HeadroomError> {
        text.trim()
            .parse::<f64>()
            .ok()
            .and_then(Headroom::new)
            .ok_or_else(|| HeadroomError(text.to_string()))
    }
}

impl Default for Headroom {
    /// 1.0: the goal is the ideal makespan.
    fn default() -> Headroom {
        Headroom::FULL
    }
}

/// The pace one limit suggests.
#[derive(Clone, Debug, PartialEq)]
pub struct Pace {
    /// What it counts.
    pub dimension: Dimension,
    /// The limit's policy, when it has one.
    pub policy: Option<String>,
    /// Units per second (requests, or tokens), headroom applied.
    pub per_second: f64,
    /// How many units may bunch: about a second's worth, at least 1, at
    /// most what remains.
    pub burst: u64,
}

/// What a snapshot suggests.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Suggestion {
    /// Pause the origin this long (the longest any limit asks for).
    pub pause: Option<Duration>,
    /// One pace per limit that says enough to pace by.
    pub paces: Vec<Pace>,
}

/// The pace and pause `snapshot` suggests at `headroom`.
pub fn suggest(snapshot: &Snapshot, headroom: Headroom) -> Suggestion {
    let mut suggestion = Suggestion::default();
    for limit in &snapshot.limits {
        let (pause, rate) = match snapshot.window {
            Window::Bucket => bucket(limit),
            Window::Fixed => fixed(limit),
        };
        if let Some(pause) = pause.filter(|p| !p.is_zero()) {
            suggestion.pause = suggestion.pause.max(Some(pause));
        }
        if let Some(rate) = rate {
            let per_second = (rate * headroom.get()).min(MAX_RATE);
            suggestion.paces.push(Pace {
                dimension: limit.dimension,
                policy: limit.policy.clone(),
                per_second,
                burst: burst(per_second, limit.remaining),
            });
        }
    }
    suggestion
}

/// (pause, rate per second) of a refilling bucket.
fn bucket(limit: &Limit) -> (Option<Duration>, Option<f64>) {
    let Some(reset) = limit.reset.filter(|r| !r.is_zero()) else {
        return (None, None);
    };
    match (limit.limit, limit.remaining) {
        (Some(cap), Some(left)) if left < cap => {
            let rate = (cap - left) as f64 / reset.as_secs_f64();
            let pause = (left == 0).then(|| reset.div_f64(cap as f64));
            (pause, Some(rate))
        }
        (None, Some(0)) => (Some(reset), None),
        _ => (None, None),
    }
}

/// (pause, rate per second) of a fixed window.
fn fixed(limit: &Limit) -> (Option<Duration>, Option<f64>) {
    match (limit.reset, limit.remaining) {
        (Some(reset), Some(0)) if !reset.is_zero() => (Some(reset), None),
        (Some(reset), Some(left)) if !reset.is_zero() => {
            (None, Some(left as f64 / reset.as_secs_f64()))
        }
        (None, _) => match (limit.limit, limit.window) {
            (Some(quota), Some(window)) if quota > 0 && !window.is_zero() => {
                (None, Some(quota as f64 / window.as_secs_f64()))
            }
            _ => (None, None),
        },
        _ => (None, None),
    }
}

fn burst(per_second: f64, remaining: Option<u64>) -> u64 {
    let second = (per_second.floor() as u64).max(1);
    match remaining {
        Some(left) if left > 0 => second.min(left),
        _ => second,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ratelimit::Dialect;

    fn ms(n: u64) -> Option<Duration> {
        Some(Duration::from_millis(n))
    }

    /// One limit's facts: (limit, remaining, reset, window).
    type Facts = (Option<u64>, Option<u64>, Option<Duration>, Option<Duration>);

    fn snapshot(window: Window, facts: &[(Dimension, Facts)]) -> Snapshot {
        let limits = facts
            .iter()
            .map(|(dimension, (limit, remaining, reset, w))| Limit {
                limit: *limit,
                remaining: *remaining,
                reset: *reset,
                window: *w,
                ..Limit::new(*dimension)
            })
            .collect();
        Snapshot {
            dialect: Dialect::OpenAi,
            window,
            limits,
            warnings: Vec::new(),
            date_lag: None,
        }
    }

    const R: Dimension = Dimension::Requests;
    const T: Dimension = Dimension::Tokens;

    #[test]
    fn the_rules() {
        use Window::{Bucket, Fixed};
        // (window, limits, headroom, pause ms, paces as (rate, burst))
        type Case = (
            Window,
            Vec<(Dimension, Facts)>,
            f64,
            Option<u64>,
            Vec<(f64, u64)>,
        );
        let cases: Vec<Case> = vec![
            // 600 a minute: one request refills in 100 ms, so 10/s.
            (
                Bucket,
                vec![(R, (Some(600), Some(599), ms(100), None))],
                1.0,
                None,
                vec![(10.0, 10)],
            ),
            // OpenAI's documented example: 5000/min.
            (
                Bucket,
                vec![(R, (Some(5000), Some(4999), ms(12), None))],
                1.0,
                None,
                vec![(83.333, 83)],
            ),
            // Same bucket half spent: same rate (time until full doubles too).
            (
                Bucket,
                vec![(R, (Some(600), Some(300), ms(30_000), None))],
                1.0,
                None,
                vec![(10.0, 10)],
            ),
            // Empty bucket: pause until one request is back, then pace.
            (
                Bucket,
                vec![(R, (Some(600), Some(0), ms(60_000), None))],
                1.0,
                Some(100),
                vec![(10.0, 10)],
            ),
            // Headroom lowers the rate and the burst.
            (
                Bucket,
                vec![(R, (Some(600), Some(599), ms(100), None))],
                0.5,
                None,
                vec![(5.0, 5)],
            ),
            // Slow limits still let one through at a time.
            (
                Bucket,
                vec![(R, (Some(50), Some(49), ms(2000), None))],
                1.0,
                None,
                vec![(0.5, 1)],
            ),
            // Full bucket, or refilled within the reset's resolution: nothing said.
            (
                Bucket,
                vec![(R, (Some(600), Some(600), ms(0), None))],
                1.0,
                None,
                vec![],
            ),
            (
                Bucket,
                vec![(R, (Some(600), Some(300), ms(0), None))],
                1.0,
                None,
                vec![],
            ),
            // Empty with the limit unknown: pause until the reset.
            (
                Bucket,
                vec![(R, (None, Some(0), ms(20_000), None))],
                1.0,
                Some(20_000),
                vec![],
            ),
            // Something left, limit unknown: nothing to pace by.
            (
                Bucket,
                vec![(R, (None, Some(5), ms(20_000), None))],
                1.0,
                None,
                vec![],
            ),
            // Tokens empty, requests fine: the origin pauses, both paced.
            (
                Bucket,
                vec![
                    (R, (Some(600), Some(590), ms(1000), None)),
                    (T, (Some(60_000), Some(0), ms(60_000), None)),
                ],
                1.0,
                Some(1),
                vec![(10.0, 10), (1000.0, 1000)],
            ),
            // Fixed window: what remains, spread until the reset.
            (
                Fixed,
                vec![(R, (Some(5000), Some(4000), ms(1_000_000), None))],
                1.0,
                None,
                vec![(4.0, 4)],
            ),
            // ... with headroom.
            (
                Fixed,
                vec![(R, (Some(5000), Some(4000), ms(1_000_000), None))],
                0.25,
                None,
                vec![(1.0, 1)],
            ),
            // ... the burst never exceeds what remains.
            (
                Fixed,
                vec![(R, (Some(100), Some(3), ms(500), None))],
                1.0,
                None,
                vec![(6.0, 3)],
            ),
            // Nothing left: pause until the window ends.
            (
                Fixed,
                vec![(R, (Some(60), Some(0), ms(30_000), None))],
                1.0,
                Some(30_000),
                vec![],
            ),
            // The window ends now: nothing said.
            (
                Fixed,
                vec![(R, (Some(60), Some(0), ms(0), None))],
                1.0,
                None,
                vec![],
            ),
            // An IETF policy with a window and no state: q / w.
            (
                Fixed,
                vec![(R, (Some(100), None, None, ms(60_000)))],
                1.0,
                None,
                vec![(1.667, 1)],
            ),
            // Absurd: the rate is capped.
            (
                Bucket,
                vec![(
                    T,
                    (
                        Some(1_000_000_000_000),
                        Some(0),
                        Some(Duration::from_nanos(1)),
                        None,
                    ),
                )],
                1.0,
                None,
                vec![(MAX_RATE, 1_000_000_000)],
            ),
        ];
        for (i, (window, facts, headroom, pause, paces)) in cases.into_iter().enumerate() {
            let got = suggest(
                &snapshot(window, &facts),
                Headroom::new(headroom).expect("valid"),
            );
            assert_eq!(got.pause, pause.map(Duration::from_millis), "case {i}");
            let rates: Vec<(f64, u64)> =
                got.paces.iter().map(|p| (p.per_second, p.burst)).collect();
            assert_eq!(rates.len(), paces.len(), "case {i}: {rates:?}");
            for ((rate, burst), (want_rate, want_burst)) in rates.iter().zip(&paces) {
                assert!(
                    (rate - want_rate).abs() < 1e-3,
                    "case {i}: {rate} != {want_rate}"
                );
                assert_eq!(burst, want_burst, "case {i}");
            }
        }
    }

    #[test]
    fn paces_name_their_dimension_and_policy() {
        let mut s = snapshot(Window::Fixed, &[(T, (Some(10), Some(5), ms(1000), None))]);
        s.limits[0].policy = Some("core".into());
        let pace = &suggest(&s, Headroom::FULL).paces[0];
        assert_eq!((pace.dimension, pace.policy.as_deref()), (T, Some("core")));
    }

    #[test]
    fn headroom_is_in_zero_to_one() {
        for bad in [0.0, -0.5, 1.01, f64::NAN, f64::INFINITY] {
            assert_eq!(Headroom::new(bad), None, "{bad}");
        }
        assert_eq!(Headroom::new(0.9).map(Headroom::get), Some(0.9));
        assert_eq!(Headroom::default(), Headroom::FULL);
    }
}
