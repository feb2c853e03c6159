//! The HTML report in a real browser: headless Chromium, driven over the
//! DevTools protocol on a pipe (`--remote-debugging-pipe`), so only the
//! page's own requests and messages are seen — not the browser's background
//! traffic. The report must load nothing, log no error, and its charts must
//! hold the data points of the records.
//!
//! Without Chromium the tests are skipped loudly; under `CI=true` a missing
//! Chromium is a failure (`.ci/run` installs Debian's `chromium`).

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::report::{KNOWN_POINTS, assert_self_contained, known_records};
use crate::support::*;

/// Longest the browser may take for one page.
const BROWSER_TIMEOUT: Duration = Duration::from_secs(60);

/// The report of known records renders in Chromium without an error or a
/// request, and its charts carry exactly the records' data points.
#[tokio::test]
async fn the_report_renders_in_chromium_with_its_data_and_loads_nothing() {
    let Some(chromium) = chromium() else { return };
    let dir = tempdir();
    let results = write_file(dir.path(), "res.jsonl", known_records());
    let html = dir.path().join("report.html");
    Sluice::new([
        "report".as_ref(),
        results.as_os_str(),
        "--html".as_ref(),
        html.as_os_str(),
    ])
    .output()
    .await
    .code(0);
    assert_self_contained(&std::fs::read_to_string(&html).unwrap());
    let page = tokio::task::spawn_blocking(move || load(&chromium, &html, dir.path()))
        .await
        .expect("the browser thread");
    page.assert_clean();
    let charts = &page.facts["charts"];
    let ids: Vec<&str> = charts
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["throughput", "latency", "activity", "histogram"]);
    for (series, points) in KNOWN_POINTS {
        assert_eq!(
            page.facts["series"][series].as_u64(),
            Some(u64::from(points)),
            "series {series}: {}",
            page.facts
        );
    }
    assert_eq!(page.facts["bands"], 4, "{}", page.facts);
    assert!(page.facts["bins"].as_u64().unwrap() >= 1, "{}", page.facts);
    for chart in charts.as_array().unwrap() {
        assert!(
            chart["width"].as_f64().unwrap() > 500.0,
            "not laid out: {chart}"
        );
        assert!(
            chart["ticks"].as_u64().unwrap() >= 4,
            "no axis ticks: {chart}"
        );
    }
}

/// The report a real run writes (with secrets in its headers and URLs)
/// renders cleanly too and shows no secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runs_report_renders_in_chromium() {
    let Some(chromium) = chromium() else { return };
    let server = mock().await;
    let dir = tempdir();
    let url = server.url();
    let input = lines(&[
        format!("{url}/fast?api_key=SECRET_Q"),
        format!("{url}/status/500"),
        format!("{url}/fail/1/k?status=429&retry_after_ms=100"),
        format!("{url}/delay/0.05"),
    ]);
    let html = dir.path().join("run.html");
    let out = Sluice::run([
        "-q".as_ref(),
        "--retries".as_ref(),
        "1".as_ref(),
        "--backoff-initial".as_ref(),
        "10ms".as_ref(),
        "-H".as_ref(),
        "Authorization: Bearer SECRET_H".as_ref(),
        "--report".as_ref(),
        html.as_os_str(),
    ])
    .stdin(input)
    .output()
    .await;
    out.code(1);
    let text = std::fs::read_to_string(&html).unwrap();
    assert_self_contained(&text);
    assert!(!text.contains("SECRET_"), "a secret in the report");
    assert!(text.contains("<h3>Settings</h3>") && text.contains("authorization: REDACTED"));
    let page = tokio::task::spawn_blocking(move || load(&chromium, &html, dir.path()))
        .await
        .expect("the browser thread");
    page.assert_clean();
    assert!(
        page.facts["series"]["ok"].as_u64() >= Some(1),
        "{}",
        page.facts
    );
    assert!(
        page.facts["series"]["in flight"].as_u64() >= Some(1),
        "{}",
        page.facts
    );
    server.shutdown().await;
}

/// Chromium, or `None` (with a loud message) when it is absent outside CI.
fn chromium() -> Option<PathBuf> {
    let found = std::env::var_os("SLUICE_CHROMIUM")
        .map(PathBuf::from)
        .into_iter()
        .chain(
            ["chromium", "chromium-browser", "google-chrome"]
                .iter()
                .flat_map(|name| {
                    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
                        .map(move |dir| dir.join(name))
                        .collect::<Vec<_>>()
                }),
        )
        .find(|p| p.is_file());
    if found.is_none() {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!(
                "Chromium is required under CI=true: apt-get install -y chromium (.ci/run does)"
            );
        }
        eprintln!(
            "\n*** SKIPPED: the HTML report was NOT checked in a browser: Chromium is not installed (apt-get install -y chromium, or set SLUICE_CHROMIUM) ***\n"
        );
    }
    found
}

/// What the page did and what it shows.
struct Page {
    /// Requests other than the page itself.
    requests: Vec<String>,
    /// Console errors and warnings, exceptions, and logged errors.
    errors: Vec<String>,
    /// Counts read from the DOM.
    facts: Value,
}

impl Page {
    fn assert_clean(&self) {
        assert!(
            self.requests.is_empty(),
            "the report loaded {:?}",
            self.requests
        );
        assert!(
            self.errors.is_empty(),
            "the browser reported {:?}",
            self.errors
        );
    }
}

/// What the page script reads: every chart, its ticks, series and marks.
const FACTS: &str = r#"JSON.stringify({
  charts: [...document.querySelectorAll('svg.chart')].map(s => ({
    id: s.id,
    width: s.getBoundingClientRect().width,
    ticks: s.querySelectorAll('line.grid').length,
  })),
  series: Object.fromEntries([...document.querySelectorAll('[data-series]')]
    .map(g => [g.dataset.series, Number(g.dataset.points)])),
  bands: document.querySelectorAll('g.band').length,
  bins: document.querySelectorAll('rect.bin').length,
})"#;

/// Loads `html` in a fresh headless Chromium and returns what happened.
fn load(chromium: &Path, html: &Path, profile: &Path) -> Page {
    let mut b = Browser::start(chromium, &profile.join("chromium-profile"));
    let target = b.call("Target.createTarget", json!({"url": "about:blank"}), None);
    let target = target["targetId"]
        .as_str()
        .expect("a target id")
        .to_string();
    let attached = b.call(
        "Target.attachToTarget",
        json!({"targetId": target, "flatten": true}),
        None,
    );
    let session = attached["sessionId"]
        .as_str()
        .expect("a session")
        .to_string();
    for domain in [
        "Network.enable",
        "Runtime.enable",
        "Log.enable",
        "Page.enable",
    ] {
        b.call(domain, json!({}), Some(&session));
    }
    let url = format!("file://{}", html.display());
    b.call("Page.navigate", json!({"url": url}), Some(&session));
    b.wait_for("Page.loadEventFired");
    let facts = b.call(
        "Runtime.evaluate",
        json!({"expression": FACTS, "returnByValue": true}),
        Some(&session),
    );
    let facts: Value = serde_json::from_str(facts["result"]["value"].as_str().expect("facts"))
        .expect("facts are JSON");
    let (mut requests, mut errors) = (Vec::new(), Vec::new());
    for e in &b.events {
        let p = &e["params"];
        match e["method"].as_str().unwrap_or("") {
            "Network.requestWillBeSent" => {
                let u = p["request"]["url"].as_str().unwrap_or("").to_string();
                if u != url {
                    requests.push(u);
                }
            }
            "Runtime.consoleAPICalled"
                if matches!(p["type"].as_str(), Some("error" | "warning" | "assert")) =>
            {
                errors.push(p["args"].to_string())
            }
            "Runtime.exceptionThrown" => errors.push(p["exceptionDetails"].to_string()),
            "Log.entryAdded"
                if matches!(p["entry"]["level"].as_str(), Some("error" | "warning")) =>
            {
                errors.push(p["entry"]["text"].to_string())
            }
            _ => {}
        }
    }
    Page {
        requests,
        errors,
        facts,
    }
}

/// A headless Chromium and its DevTools pipe: messages are JSON, each
/// ended by a NUL byte; the browser reads fd 3 and writes fd 4.
struct Browser {
    child: Child,
    to: File,
    from: mpsc::Receiver<Value>,
    next: u64,
    events: Vec<Value>,
    deadline: Instant,
}

impl Browser {
    fn start(chromium: &Path, profile: &Path) -> Browser {
        let (to_read, to_write) = pipe();
        let (from_read, from_write) = pipe();
        let (r, w) = (to_read.as_raw_fd(), from_write.as_raw_fd());
        let mut cmd = Command::new(chromium);
        cmd.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-extensions",
            "--remote-debugging-pipe",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("about:blank")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        // SAFETY: between fork and exec only async-signal-safe calls: fcntl
        // and dup2 put the pipe ends on fds 3 and 4 (first moved above 9, so
        // neither overwrites the other).
        unsafe {
            cmd.pre_exec(move || {
                let high_r = libc::fcntl(r, libc::F_DUPFD, 10);
                let high_w = libc::fcntl(w, libc::F_DUPFD, 10);
                if high_r < 0
                    || high_w < 0
                    || libc::dup2(high_r, 3) < 0
                    || libc::dup2(high_w, 4) < 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().expect("start chromium");
        drop((to_read, from_write));
        let (tx, rx) = mpsc::channel();
        let mut reader = File::from(from_read);
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 65536];
            while let Ok(n) = reader.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
                while let Some(end) = buf.iter().position(|&b| b == 0) {
                    let message: Vec<u8> = buf.drain(..=end).collect();
                    if let Ok(v) = serde_json::from_slice(&message[..end])
                        && tx.send(v).is_err()
                    {
                        return;
                    }
                }
            }
        });
        Browser {
            child,
            to: File::from(to_write),
            from: rx,
            next: 0,
            events: Vec::new(),
            deadline: Instant::now() + BROWSER_TIMEOUT,
        }
    }

    fn recv(&mut self) -> Value {
        let left = self.deadline.saturating_duration_since(Instant::now());
        self.from
            .recv_timeout(left)
            .unwrap_or_else(|e| panic!("no answer from chromium within {BROWSER_TIMEOUT:?}: {e}"))
    }

    /// Sends a command and returns its result; events meanwhile are kept.
    fn call(&mut self, method: &str, params: Value, session: Option<&str>) -> Value {
        self.next += 1;
        let id = self.next;
        let mut m = json!({"id": id, "method": method, "params": params});
        if let Some(s) = session {
            m["sessionId"] = json!(s);
        }
        let mut bytes = serde_json::to_vec(&m).unwrap();
        bytes.push(0);
        self.to.write_all(&bytes).expect("write to chromium");
        loop {
            let v = self.recv();
            if v["id"] == id {
                assert!(v.get("error").is_none(), "{method} failed: {v}");
                return v["result"].clone();
            }
            self.events.push(v);
        }
    }

    fn wait_for(&mut self, event: &str) {
        if self.events.iter().any(|e| e["method"] == event) {
            return;
        }
        loop {
            let v = self.recv();
            let done = v["method"] == event;
            self.events.push(v);
            if done {
                return;
            }
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A pipe whose ends are closed on exec (the child gets its copies by dup2).
fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two new descriptors into `fds`, owned below.
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(rc, 0, "pipe2: {}", std::io::Error::last_os_error());
    // SAFETY: both descriptors are fresh and owned by nobody else.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}
