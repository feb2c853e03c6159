//! A rate discovered from refusals where no header speaks
//! (`scheduler/discovered.rs`) is shared under `--redis` as learned limits
//! are: two shards against the mock's headerless meter (nginx's
//! `limit_req` with no `Retry-After`), refusals counted at the server.

use std::path::Path;

use sluice_mock::redis::RedisServer;

use crate::support::arrivals::{achieved_rate, arrivals};
use crate::support::*;

const SHARDS: u64 = 2;

/// `sluice run --shard K/2 -c 8` with more arguments.
fn shard(dir: &Path, input: &Path, k: u64, extra: &[String]) -> Running {
    let out = dir.join(format!("out-{k}.jsonl"));
    let mut args: Vec<std::ffi::OsString> = vec![
        "-q".into(),
        "-c".into(),
        "8".into(),
        "--shard".into(),
        format!("{k}/{SHARDS}").into(),
        "-o".into(),
        out.into_os_string(),
    ];
    args.extend(extra.iter().map(Into::into));
    args.push(input.as_os_str().into());
    Sluice::run(args).spawn()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_one_shard_discovered_paces_the_others() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let server = mock().await;
    let dir = tempdir();
    let n = 300;
    let key = "fleet";
    let url = format!(
        "{}/limited/leaky/none/{key}?limit=10&window=0.2&retry_after=0",
        server.url()
    );
    let input = write_file(dir.path(), "in.txt", lines(&vec![url; n]));
    let extra = [
        "--redis".to_string(),
        redis.url(),
        "--job".into(),
        key.into(),
    ];
    let running: Vec<Running> = (0..SHARDS)
        .map(|k| shard(dir.path(), &input, k, &extra))
        .collect();
    for run in running {
        run.finish().await.code(0);
    }
    let mut lines: Vec<u64> = (0..SHARDS)
        .flat_map(|k| file_results(&dir.path().join(format!("out-{k}.jsonl"))))
        .map(|(line, record)| {
            assert!(record.ok, "{:?}", record.json);
            line
        })
        .collect();
    lines.sort();
    assert_eq!(
        lines,
        (1..=n as u64).collect::<Vec<_>>(),
        "one record per line"
    );
    let refused = server.stats().limited.get(key).map_or(0, |l| l.refused);
    let rate = achieved_rate(&arrivals(&server, |_| true));
    eprintln!("two shards sharing a headerless 50/s: {refused} refused, {rate:.1}/s");
    // What was discovered is on Redis, in the origin's cell, for every
    // process of the job.
    let cell = format!("sluice:{{{key}}}:learned:{}", server.url());
    let period = std::process::Command::new("redis-cli")
        .arg("-s")
        .arg(redis.socket())
        .args(["HGET", &cell, "period"])
        .output()
        .expect("redis-cli runs");
    let period = String::from_utf8_lossy(&period.stdout).trim().to_string();
    assert!(
        period.parse::<u128>().is_ok_and(|p| p > 0),
        "no discovered rate in {cell}: {period:?}"
    );
    // Each shard discovering alone (no --redis, the same run otherwise),
    // each paces only itself and both probe upwards: 16-19 refused
    // (measured, 3 runs on a loaded 2-core machine). Sharing, the rate
    // either discovers paces both: 7-15 refused (7 runs; the first
    // refusals come before anything is published, and both shards' AIMD
    // publish to the one cell). Whether the fleet shares is proved by the
    // cell above; the refusals are held to the headerless bound
    // with room for timing on a loaded machine (10%, not 5%: 8, 10 and 12
    // refused were measured again at a load average of 17 on 2 cores, and
    // 15, the 5% edge, before; the first wave alone, 16 requests at -c 8
    // against a bucket of 10, is about 6).
    assert!(refused <= n as u64 / 10, "{refused} refused at the server");
}
