//! The deployment examples in `docs/deploy/` run what they say: each
//! command a manifest gives sluice is run, with the manifest's environment,
//! as `--dry-run` over a real input (paths under /data moved to a temporary
//! directory), and must be a valid `sluice run` that checks every line.

use std::collections::BTreeMap;
use std::path::Path;

use serde_yaml::Value;

use crate::support::*;

/// Runs `args` (a manifest's `sluice run ...`) as a dry run with `env`.
async fn dry_run(args: &[String], env: &BTreeMap<String, String>, data: &Path) -> Out {
    assert_eq!(args.first().map(String::as_str), Some("run"), "{args:?}");
    let data = data.to_str().unwrap();
    let mut all: Vec<String> = args
        .iter()
        .map(|a| {
            let a = a.replace("/data/", &format!("{data}/"));
            env.iter().fold(a, |a, (name, value)| {
                a.replace(&format!("$({name})"), value)
            })
        })
        .collect();
    all.push("--dry-run".into());
    let mut sluice = Sluice::new(all);
    for (name, value) in env {
        sluice = sluice.env(name, value);
    }
    sluice.output().await
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_sequence()
        .expect("a list")
        .iter()
        .map(|v| v.as_str().expect("a string").to_string())
        .collect()
}

fn read(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("docs/deploy")
        .join(name);
    serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn data_dir() -> tempfile::TempDir {
    let dir = tempdir();
    write_file(
        dir.path(),
        "requests.jsonl",
        lines(&["http://127.0.0.1:9/a"; 8]),
    );
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kubernetes_indexed_job_runs_a_valid_command() {
    let job = read("k8s-indexed-job.yaml");
    assert_eq!(job["spec"]["completionMode"], "Indexed");
    let completions = job["spec"]["completions"].as_u64().unwrap();
    let container = &job["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(strings(&container["command"]), ["sluice"]);
    let mut env: BTreeMap<String, String> = container["env"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|e| {
            let value = e["value"].as_str().unwrap_or("from-a-secret");
            (e["name"].as_str().unwrap().to_string(), value.to_string())
        })
        .collect();
    assert_eq!(env["SLUICE_SHARDS"], completions.to_string());
    let data = data_dir();
    for index in 0..completions {
        env.insert("JOB_COMPLETION_INDEX".into(), index.to_string());
        let out = dry_run(&strings(&container["args"]), &env, data.path()).await;
        out.code(0);
        assert!(
            out.stderr.contains("2 would be sent"),
            "shard {index}: {}",
            out.stderr
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_compose_file_runs_redis_and_valid_shards() {
    let compose = read("compose.yaml");
    let services = compose["services"].as_mapping().unwrap();
    assert!(services.contains_key("redis"));
    let data = data_dir();
    let mut shards = 0;
    for (name, service) in services {
        if name == "redis" {
            continue;
        }
        let out = dry_run(&strings(&service["command"]), &BTreeMap::new(), data.path()).await;
        out.code(0);
        assert!(
            out.stderr.contains("2 would be sent"),
            "{name:?}: {}",
            out.stderr
        );
        shards += 1;
    }
    assert_eq!(shards, 4);
}
