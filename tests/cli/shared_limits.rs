//! Four shards sharing one rate through a real `redis-server`
//! (`--redis`), a `Retry-After` seen by one pausing all, a shard killed and
//! resumed, and Redis outages, short and long. Counts are exact; timing is
//! read from the mock's arrival times.

use std::path::{Path, PathBuf};
use std::time::Duration;

use sluice_mock::redis::RedisServer;

use crate::support::arrivals::{achieved_rate, arrivals, max_in_window, sent_ms};
use crate::support::*;

const SHARDS: u64 = 4;

/// Writes `n` lines of `path` on the mock to `in.txt`.
fn input(dir: &Path, base: &str, n: usize, path: impl Fn(usize) -> String) -> PathBuf {
    let text: Vec<String> = (1..=n).map(|i| format!("{base}{}", path(i))).collect();
    write_file(dir, "in.txt", lines(&text))
}

/// `sluice run --shard K/4 --redis ... --job JOB` with more arguments.
fn shard(dir: &Path, input: &Path, redis: &RedisServer, k: u64, extra: &[&str]) -> Running {
    let out = dir.join(format!("out-{k}.jsonl"));
    let mut args: Vec<std::ffi::OsString> = vec![
        "-q".into(),
        "--shard".into(),
        format!("{k}/{SHARDS}").into(),
        "--redis".into(),
        redis.url().into(),
        "--job".into(),
        "test".into(),
        "-o".into(),
        out.into_os_string(),
    ];
    args.extend(extra.iter().map(Into::into));
    args.push(input.as_os_str().into());
    Sluice::run(args).spawn()
}

/// Every line 1..=n has exactly one record across the shards' outputs.
fn one_record_per_line(dir: &Path, n: u64) {
    let mut lines: Vec<u64> = Vec::new();
    for k in 0..SHARDS {
        let path = dir.join(format!("out-{k}.jsonl"));
        for (line, record) in file_results(&path) {
            assert_eq!(line % SHARDS, k, "shard {k} wrote line {line}");
            assert!(record.ok, "{record}");
            lines.push(line);
        }
    }
    lines.sort();
    assert_eq!(lines, (1..=n).collect::<Vec<_>>(), "one record per line");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_shards_share_one_rate() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let server = mock().await;
    let dir = tempdir();
    let n = 600;
    let input = input(dir.path(), &server.url(), n, |_| "/fast".into());
    let running: Vec<Running> = (0..SHARDS)
        .map(|k| shard(dir.path(), &input, &redis, k, &["--rate", "200/s"]))
        .collect();
    for run in running {
        run.finish().await.code(0);
    }
    one_record_per_line(dir.path(), n as u64);
    let at = arrivals(&server, |_| true);
    assert_eq!(at.len(), n, "each request once");
    // The issue's bound is rate × window + burst (1), exact. Redis reserves
    // starts 1% below the rate, a process never starts one before its
    // instant (Redis's clock is mapped on its own with the latest offset
    // the replies allow) and at most 7.5 ms after it (`late_allowed`: half
    // of what keeps a second at 201), checked when the scheduler decides
    // the start and again when its attempt first runs, just before its
    // request is handed to a connection. Windows of 1 s and 2 s: as for
    // one process, shorter ones see connection setup bunch arrivals.
    // What sluice sends is held to the bound exactly: each record's
    // `started_at` (to the millisecond, so windows a millisecond longer).
    // At the mock, an arrival is stamped when the mock's task runs, on the
    // same starved machine: with the suite's other tests beside it (load
    // 6-14 on 2 cores) 1 run in 5 to 10 read 202-205 arrivals in a second
    // (once 212) while sluice's own sends read 199-201 in each
    // (BENCHMARKS.md, "A shared grant checked again"): the mock's lateness,
    // not sluice's. So the arrivals are held to the bound plus 5% for it,
    // which still catches a process that ignores the others' grants (four
    // at once: 4 × 201 in a second) or starts late grants in a bunch.
    let records: Vec<Record> = (0..SHARDS)
        .flat_map(|k| file_results(&dir.path().join(format!("out-{k}.jsonl"))).into_values())
        .collect();
    let sent = sent_ms(&records, &server.url());
    assert_eq!(sent.len(), n, "a send instant for each request");
    for window_ms in [1000.0, 2000.0] {
        let most = max_in_window(&at, window_ms);
        let sends = max_in_window(&sent, window_ms + 1.0);
        let bound = (200.0 * window_ms / 1000.0).floor() as usize + 1;
        eprintln!("most in {window_ms} ms: {most} arrivals, {sends} sends (bound {bound})");
        assert!(
            sends <= bound,
            "sluice sent {sends} in {window_ms} ms ± 1 ms, bound {bound}"
        );
        assert!(
            most <= bound + bound / 20,
            "{most} arrivals in {window_ms} ms, bound {bound} and 5% for the mock's \
             stamping (sluice's own sends: at most {sends})"
        );
    }
    // Never above the rate; below it, only a smoke check against a gross
    // loss. On a quiet machine the four reach 196-198/s (Redis reserves at
    // 198/s, exactly what one process's limiter would:
    // `crates/sluice/tests/shared_limiter.rs`). A process woken more than
    // 7.5 ms after a reserved instant drops that start rather than bunch it
    // with the others' (the bound above first; each such drop costs one
    // start), so on a loaded machine the job loses rate: 175-198/s measured
    // at load averages of 11-17 on 2 cores for this test alone, down to
    // 146/s with the other Redis tests beside it (the loss mostly dropped
    // grants, 4-47 a run, their processes woken 7.6-26 ms late). The bound
    // used to be 196/s when the 1-minute load average read below the core
    // count before the run: a figure a minute old, which the test suite's
    // own load and its neighbours' overtake during the run (here 177.6/s
    // at a load of 5: a machine that read 1.9 a minute earlier fails).
    let achieved = achieved_rate(&at);
    eprintln!("four shards at 200/s: {achieved:.1}/s overall");
    assert!(
        (120.0..=201.0).contains(&achieved),
        "the four shards together: {achieved:.1}/s at 200/s"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_seen_by_one_shard_pauses_all() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let server = mock().await;
    let dir = tempdir();
    let n = 200;
    // Line 41 (shard 1) gets a 429 with Retry-After: 2 the first time.
    let input = input(dir.path(), &server.url(), n, |i| match i {
        41 => "/fail/1/pause?status=429&retry_after=2".into(),
        _ => "/fast".into(),
    });
    let running: Vec<Running> = (0..SHARDS)
        .map(|k| shard(dir.path(), &input, &redis, k, &["--rate", "50/s"]))
        .collect();
    for run in running {
        run.finish().await.code(0);
    }
    one_record_per_line(dir.path(), n as u64);
    let stats = server.stats();
    let refused = stats
        .arrivals
        .iter()
        .find(|a| a.path == "/fail/1/pause")
        .expect("the 429 arrived")
        .ms;
    // The shard that got the 429 pauses at once; the others learn it from
    // Redis at their next call (every 50 ms of reservations, or 100 ms
    // idle), so arrivals stop within 200 ms and none come for the rest of
    // the 2 s.
    let during: Vec<f64> = arrivals(&server, |_| true)
        .into_iter()
        .filter(|&t| t > refused + 200.0 && t < refused + 2000.0)
        .collect();
    assert!(
        during.is_empty(),
        "arrivals during the pause: {during:?} (429 at {refused} ms)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_shard_resumes_and_merge_checks_every_line() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let server = mock().await;
    let dir = tempdir();
    let n = 200;
    let input = input(dir.path(), &server.url(), n, |_| "/fast".into());
    let mut running: Vec<Running> = (0..SHARDS)
        .map(|k| shard(dir.path(), &input, &redis, k, &["--rate", "100/s"]))
        .collect();
    let victim = dir.path().join("out-2.jsonl");
    running[2]
        .until("shard 2 wrote some records", || {
            complete_lines(&victim) >= 5
        })
        .await;
    running.remove(2).kill_9().await;
    for run in running {
        run.finish().await.code(0);
    }
    shard(
        dir.path(),
        &input,
        &redis,
        2,
        &["--rate", "100/s", "--resume"],
    )
    .finish()
    .await
    .code(0);
    let merged = dir.path().join("merged.jsonl");
    let mut args: Vec<std::ffi::OsString> = vec!["merge".into()];
    args.extend((0..SHARDS).map(|k| dir.path().join(format!("out-{k}.jsonl")).into_os_string()));
    args.extend([
        "-o".into(),
        merged.clone().into_os_string(),
        "--check".into(),
    ]);
    args.push(input.clone().into_os_string());
    Sluice::new(args).output().await.code(0);
    assert_eq!(file_results(&merged).len(), n);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_for_3s_holds_starts_then_the_run_completes() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let server = mock().await;
    let dir = tempdir();
    let n = 200;
    let input = input(dir.path(), &server.url(), n, |_| "/fast".into());
    let running: Vec<Running> = (0..SHARDS)
        .map(|k| shard(dir.path(), &input, &redis, k, &["--rate", "40/s"]))
        .collect();
    until(&server, "40 requests arrived", |s| s.requests >= 40).await;
    redis.stop();
    let stopped = server.stats().requests;
    tokio::time::sleep(Duration::from_secs(3)).await;
    // Only starts already granted (at most 50 ms ahead each) went out.
    let during = server.stats().requests - stopped;
    assert!(
        during <= 4 * 3,
        "{during} requests started while Redis was down"
    );
    redis.restart();
    for run in running {
        run.finish().await.code(0);
    }
    one_record_per_line(dir.path(), n as u64);
    let at = arrivals(&server, |_| true);
    assert_eq!(at.len(), n);
    for window_ms in [1000.0, 2000.0] {
        let most = max_in_window(&at, window_ms);
        let bound = (40.0 * window_ms / 1000.0).floor() as usize + 1;
        assert!(
            most <= bound,
            "{most} arrivals in {window_ms} ms, bound {bound}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_gone_past_the_timeout_stops_resumably() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let server = mock().await;
    let dir = tempdir();
    let n = 100;
    let input = input(dir.path(), &server.url(), n, |_| "/fast".into());
    let args = ["--rate", "20/s", "--redis-timeout", "2s"];
    let one = shard(dir.path(), &input, &redis, 0, &args);
    until(&server, "5 requests arrived", |s| s.requests >= 5).await;
    // Before the stop: the run may see the connection go before stop()
    // returns.
    let lost = std::time::Instant::now();
    redis.stop();
    one.finish().await.code(3);
    // It stops at the timeout, counted from the first call Redis did not
    // answer (within 100 ms of the loss: the idle poll), not at the end
    // of the backoff step that crosses it (0.1 s doubling: 3.1 s).
    let stopped = lost.elapsed();
    assert!(
        stopped >= Duration::from_secs(2) && stopped <= Duration::from_millis(2500),
        "stopped {stopped:?} after Redis went, with --redis-timeout 2s"
    );
    let out = dir.path().join("out-0.jsonl");
    let first = file_results(&out).len();
    // In-flight requests finished and were written: every request that
    // reached the server has its record.
    assert_eq!(
        server.stats().requests,
        first as u64,
        "a request without a record"
    );
    redis.restart();
    shard(
        dir.path(),
        &input,
        &redis,
        0,
        &["--rate", "200/s", "--resume"],
    )
    .finish()
    .await
    .code(0);
    // One record per line (`file_results` refuses a line written twice),
    // and the resume sent only the lines not written.
    let records = file_results(&out);
    assert_eq!(records.len(), n / SHARDS as usize);
    assert_eq!(server.stats().requests, records.len() as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_that_cannot_be_used_is_exit_2_before_anything_is_sent() {
    let server = mock().await;
    let dir = tempdir();
    let input = input(dir.path(), &server.url(), 5, |_| "/fast".into());
    let nowhere = format!("unix://{}/none.sock", dir.path().display());
    for (url, says) in [
        ("http://127.0.0.1:6379", "redis://"),
        (nowhere.as_str(), "cannot connect"),
    ] {
        let out = dir.path().join("out.jsonl");
        let got = Sluice::run([
            "--redis",
            url,
            "--job",
            "j",
            "-o",
            out.to_str().unwrap(),
            input.to_str().unwrap(),
        ])
        .output()
        .await;
        got.code(2);
        assert!(got.stderr.contains(says), "{}", got.stderr);
        assert!(!out.exists(), "no output is created");
    }
    // Under --resume too, before the output is touched: its torn last line
    // is still there afterwards.
    let torn = dir.path().join("torn.jsonl");
    std::fs::write(&torn, "{\"id\":\"1\",\"li").unwrap();
    let got = Sluice::run([
        "--redis",
        nowhere.as_str(),
        "--job",
        "j",
        "--resume",
        "-o",
        torn.to_str().unwrap(),
        input.to_str().unwrap(),
    ])
    .output()
    .await;
    got.code(2);
    assert_eq!(
        std::fs::read_to_string(&torn).unwrap(),
        "{\"id\":\"1\",\"li",
        "the output is left as it was: {}",
        got.stderr
    );
    // --redis needs --job.
    Sluice::run(["--redis", "redis://127.0.0.1:1", input.to_str().unwrap()])
        .output()
        .await
        .code(2);
    assert_eq!(server.stats().requests, 0, "nothing was sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_password_is_exit_2_and_never_shown() {
    let Some(redis) = RedisServer::start_with(&["--requirepass", "right-one"]) else {
        return;
    };
    let server = mock().await;
    let dir = tempdir();
    let input = input(dir.path(), &server.url(), 3, |_| "/fast".into());
    // redis-rs reads a unix socket's password from `?pass=`.
    for (url, says) in [
        (
            format!("{}?pass=wrong-one", redis.url()),
            "authentication refused",
        ),
        // No password at all: the same advice, not "cannot load the script".
        (redis.url(), "authentication refused"),
    ] {
        let got = Sluice::run(["--redis", &url, "--job", "j", input.to_str().unwrap()])
            .output()
            .await;
        got.code(2);
        assert!(got.stderr.contains(says), "{}", got.stderr);
        assert!(!got.stderr.contains("wrong-one"), "{}", got.stderr);
    }
    let right = format!("{}?pass=right-one", redis.url());
    Sluice::run([
        "-q",
        "--redis",
        &right,
        "--job",
        "j",
        input.to_str().unwrap(),
    ])
    .output()
    .await
    .code(0);
    assert_eq!(
        server.stats().requests,
        3,
        "sent only with the right password"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_who_may_not_run_scripts_is_exit_2_before_anything_is_sent() {
    let Some(redis) =
        RedisServer::start_with(&["--user", "batch", "on", ">pw", "~*", "+@all", "-@scripting"])
    else {
        return;
    };
    let server = mock().await;
    let dir = tempdir();
    let input = input(dir.path(), &server.url(), 3, |_| "/fast".into());
    let url = format!("{}?user=batch&pass=pw", redis.url());
    let got = Sluice::run(["--redis", &url, "--job", "j", input.to_str().unwrap()])
        .output()
        .await;
    got.code(2);
    assert!(
        got.stderr.contains("cannot load sluice's Lua script"),
        "{}",
        got.stderr
    );
    assert!(!got.stderr.contains("pass=pw"), "{}", got.stderr);
    assert_eq!(server.stats().requests, 0, "nothing was sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_shards_share_one_budget() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let server = mock().await;
    let dir = tempdir();
    let n = 80;
    // Each request costs 10 of a 400/s budget (burst 40): 40 requests/s together.
    let text: Vec<String> = (1..=n)
        .map(|_| format!(r#"{{"url": "{}/fast", "cost": 10}}"#, server.url()))
        .collect();
    let input = write_file(dir.path(), "in.jsonl", lines(&text));
    let args = ["--budget", "400/s", "--budget-burst", "40"];
    let running: Vec<Running> = (0..SHARDS)
        .map(|k| shard(dir.path(), &input, &redis, k, &args))
        .collect();
    for run in running {
        run.finish().await.code(0);
    }
    one_record_per_line(dir.path(), n);
    let at = arrivals(&server, |_| true);
    assert_eq!(at.len(), n as usize);
    // 400 × 1 s + 40 of budget in any second: at most 44 requests of 10.
    let most = max_in_window(&at, 1000.0);
    assert!(
        most <= 44,
        "{most} requests of cost 10 in 1 s under 400/s, burst 40"
    );
    let achieved = achieved_rate(&at);
    // First to last arrival: the burst (4 requests) at the start counts too.
    // The floor is a smoke check, as in `four_shards_share_one_rate` (a
    // process woken too late drops its grant): it catches a halved rate
    // (every start charged twice: 4 at once, 76 at 20/s, 20.8/s first to
    // last) and no more. 25/s broke at load 12 on 2 cores (23.9/s).
    assert!((21.5..=43.0).contains(&achieved), "{achieved:.1}/s at 40/s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_shards_share_each_origins_rate() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let (a, b) = (mock().await, mock().await);
    let dir = tempdir();
    let n = 120;
    // Two origins, alternating: 60 requests each, at 20/s per origin.
    let text: Vec<String> = (1..=n)
        .map(|i| format!("{}/fast", if i % 2 == 0 { a.url() } else { b.url() }))
        .collect();
    let input = write_file(dir.path(), "in.txt", lines(&text));
    let running: Vec<Running> = (0..SHARDS)
        .map(|k| shard(dir.path(), &input, &redis, k, &["--per-host-rate", "20/s"]))
        .collect();
    for run in running {
        run.finish().await.code(0);
    }
    one_record_per_line(dir.path(), n);
    for server in [&a, &b] {
        let at = arrivals(server, |_| true);
        assert_eq!(at.len(), n as usize / 2);
        let most = max_in_window(&at, 1000.0);
        assert!(most <= 21, "{most} arrivals at one origin in 1 s at 20/s");
        let achieved = achieved_rate(&at);
        assert!((14.0..=20.5).contains(&achieved), "{achieved:.1}/s at 20/s");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_shards_share_what_one_learned_from_the_headers() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let server = mock().await;
    let dir = tempdir();
    let n = 300;
    // A bucket of 50 refilled at 100/s, told in OpenAI's headers; nothing
    // configured but --redis. Each shard's first two requests go out before
    // any answer (8 of the 50); after that, what one shard learned paces the
    // four together from one cell on Redis.
    let query = "/limited/bucket/openai/fleet?limit=50&window=0.5";
    let input = input(dir.path(), &server.url(), n, |_| query.into());
    let running: Vec<Running> = (0..SHARDS)
        .map(|k| shard(dir.path(), &input, &redis, k, &["-c", "2"]))
        .collect();
    for run in running {
        run.finish().await.code(0);
    }
    let limited = server
        .stats()
        .limited
        .get("fleet")
        .cloned()
        .expect("the bucket's counts");
    let at = arrivals(&server, |_| true);
    eprintln!(
        "four shards learning one bucket: {} refused, {:.1}/s",
        limited.refused,
        achieved_rate(&at)
    );
    // Without --redis, each learning alone (from the quota the headers say
    // is left, which the others spend too), the four are refused 6 or 7
    // times (measured); sharing one cell, none were (a slack of 2 for the
    // first answers, which come before anything is published).
    assert!(
        limited.refused <= 2,
        "{} refused at the server",
        limited.refused
    );
    one_record_per_line(dir.path(), n as u64);
}
