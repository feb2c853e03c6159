//! The shared limiter's Lua script against the in-process limiter
//! (`gcra.rs`), on a real `redis-server`: the same reservations, to the
//! nanosecond, for thousands of random sequences of times, costs, horizons,
//! leads and numbers of starts wanted, over one dimension (the rate) or two (the
//! rate and a budget, all or nothing).

use std::time::Duration;

use sluice::Rate;
use sluice::gcra::Gcra;
use sluice::shared::{Call, Dimension, Dimensions, Limiter, Reply, SharedConfig, paced};
use sluice_mock::redis::RedisServer;
use tokio::time::Instant;

/// One random sequence's limits.
struct Limits {
    rate: (Rate, u64),
    budget: Option<(Rate, u64)>,
}

fn random_rate(rng: &mut fastrand::Rng, most: u64) -> Rate {
    let per = ["s", "m", "h"][rng.usize(..3)];
    Rate::parse(&format!("{}/{per}", rng.u64(1..=most))).unwrap()
}

fn random_limits(rng: &mut fastrand::Rng) -> Limits {
    let rate = (random_rate(rng, 5000), rng.u64(1..=10));
    let budget = rng
        .bool()
        .then(|| (random_rate(rng, 100_000), rng.u64(1..=2000)));
    Limits { rate, budget }
}

/// What the in-process limiters reserve for the same call.
fn reference(
    dims: &mut [(Gcra, u64)],
    now: Instant,
    call: &Call,
) -> (Vec<Duration>, Option<Duration>) {
    let mut starts = Vec::new();
    // No start sooner than the lead.
    let soonest = now + call.lead;
    for _ in 0..call.wanted {
        let at = dims
            .iter()
            .map(|(g, cost)| g.earliest(soonest, *cost))
            .max()
            .unwrap_or(soonest);
        let offset = at - now;
        if offset > call.horizon {
            return (starts, Some(offset));
        }
        for (g, cost) in dims.iter_mut() {
            g.charge(at, *cost);
        }
        starts.push(offset);
    }
    (starts, None)
}

#[tokio::test]
async fn the_script_reserves_exactly_what_the_local_limiter_would() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let mut rng = fastrand::Rng::with_seed(13);
    let mut calls = 0;
    for sequence in 0..150 {
        let limits = random_limits(&mut rng);
        let config = SharedConfig {
            url: redis.url(),
            job: format!("differential-{sequence}"),
            timeout: Duration::from_secs(5),
        };
        let rate = Dimension::new("rate", limits.rate.0, limits.rate.1);
        let budget = limits.budget.map(|(r, b)| Dimension::new("budget", r, b));
        let mut limiter = Limiter::connect(
            &config,
            Dimensions {
                rate: Some(rate),
                budget,
                host: None,
            },
        )
        .await
        .unwrap();
        let t0 = Instant::now();
        let t0_us: u64 = 1_764_000_000_000_000 + rng.u64(..1_000_000_000);
        // Redis paces a shared rate as the local limiter paces `paced(rate)`.
        let gcra = |r: Rate, b: u64| Gcra::new(paced(r), b, t0);
        let mut local: Vec<(Gcra, u64)> = vec![(gcra(limits.rate.0, limits.rate.1), 1)];
        if let Some((r, b)) = limits.budget {
            local.push((gcra(r, b), 0));
        }
        let cell = limits.rate.0.per / limits.rate.0.count.get() as u32;
        let mut now_us = t0_us;
        for step in 0..20 {
            if step > 0 {
                now_us += rng.u64(..=(cell.as_micros() as u64 * 3).max(1));
            }
            let cells = limits.budget.map_or(0, |(_, b)| rng.u64(..=b));
            if let Some(dim) = local.get_mut(1) {
                dim.1 = cells;
            }
            let call = Call {
                wanted: rng.u32(..6),
                budget_cells: cells,
                horizon: Duration::from_nanos(rng.u64(..=(cell.as_nanos() as u64 * 4))),
                lead: Duration::from_nanos(rng.u64(..=(cell.as_nanos() as u64)) / 2),
                now_us: Some(now_us),
                ..Call::default()
            };
            let now = t0 + Duration::from_micros(now_us - t0_us);
            let Reply { starts, missed, .. } = limiter.call(&call).await.unwrap();
            let expected = reference(&mut local, now, &call);
            assert_eq!(
                (starts, missed),
                expected,
                "sequence {sequence} step {step}: rate {:?} budget {:?} call {call:?}",
                limits.rate,
                limits.budget
            );
            calls += 1;
        }
    }
    assert_eq!(calls, 3000);
}

#[tokio::test]
async fn pauses_and_closures_reach_every_process_of_the_job() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let config = SharedConfig {
        url: redis.url(),
        job: "pauses".into(),
        timeout: Duration::from_secs(5),
    };
    let mut one = Limiter::connect(&config, Dimensions::default())
        .await
        .unwrap();
    let mut two = Limiter::connect(&config, Dimensions::default())
        .await
        .unwrap();
    let publish = Call {
        pause: Some(("http://a.test:80".into(), Duration::from_secs(2))),
        close: Some(("http://b.test:80".into(), "quota spent".into())),
        ..Call::default()
    };
    one.call(&publish).await.unwrap();
    let seen = two.call(&Call::default()).await.unwrap();
    assert_eq!(seen.pauses.len(), 1);
    assert_eq!(seen.pauses[0].0, "http://a.test:80");
    assert!(
        seen.pauses[0].1 > Duration::from_millis(1900)
            && seen.pauses[0].1 <= Duration::from_secs(2)
    );
    assert_eq!(
        seen.closed,
        [("http://b.test:80".to_string(), "quota spent".to_string())]
    );
    // Another job sees none of it.
    let other = SharedConfig {
        job: "another".into(),
        ..config
    };
    let mut three = Limiter::connect(&other, Dimensions::default())
        .await
        .unwrap();
    let seen = three.call(&Call::default()).await.unwrap();
    assert!(seen.pauses.is_empty() && seen.closed.is_empty());
}

#[tokio::test]
async fn learned_limits_published_by_one_process_pace_the_others() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let config = SharedConfig {
        url: redis.url(),
        job: "learned".into(),
        timeout: Duration::from_secs(5),
    };
    let mut one = Limiter::connect(&config, Dimensions::default())
        .await
        .unwrap();
    let mut two = Limiter::connect(&config, Dimensions::default())
        .await
        .unwrap();
    let now_us = 1_764_000_000_000_000;
    // One process learned 10/s with a burst of 2, and that nothing is left.
    let learned = Dimension::learned(10.0, 2);
    let publish = Call {
        learn: Some(("http://a.test:80".into(), learned, 0)),
        now_us: Some(now_us),
        ..Call::default()
    };
    one.call(&publish).await.unwrap();
    let reserve = |origin: &str| Call {
        wanted: 3,
        origin: Some(origin.into()),
        horizon: Duration::from_secs(1),
        now_us: Some(now_us),
        ..Call::default()
    };
    // The other's starts to that origin come one paced period (about
    // 101 ms: 1% below 10/s) apart, the first after one period (nothing
    // was left).
    let paced = Duration::from_nanos((learned.period / learned.count) as u64);
    assert!(
        paced > Duration::from_micros(100_900) && paced < Duration::from_micros(101_100),
        "{paced:?}"
    );
    let seen = two.call(&reserve("http://a.test:80")).await.unwrap();
    assert_eq!(seen.starts, [paced, paced * 2, paced * 3]);
    // Another origin learned nothing: all three now.
    let seen = two.call(&reserve("http://b.test:80")).await.unwrap();
    assert_eq!(seen.starts, [Duration::ZERO; 3]);
}

#[tokio::test]
async fn a_wrong_url_or_a_refused_password_fails_at_connect() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let bad = |url: &str| SharedConfig {
        url: url.into(),
        job: "j".into(),
        timeout: Duration::from_secs(1),
    };
    let err = Limiter::connect(&bad("http://127.0.0.1:6379"), Dimensions::default())
        .await
        .err()
        .unwrap();
    assert!(err.to_string().contains("redis://"), "{err}");
    let nobody = format!("unix://{}/nobody.sock", std::env::temp_dir().display());
    let err = Limiter::connect(&bad(&nobody), Dimensions::default())
        .await
        .err()
        .unwrap();
    assert!(err.to_string().contains("cannot connect"), "{err}");
    // A password Redis does not know (no password is set): refused.
    let with_password = redis.url().replace("unix://", "unix://:hunter2@");
    if let Err(err) = Limiter::connect(&bad(&with_password), Dimensions::default()).await {
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }
}
