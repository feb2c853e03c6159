//! `--resume` only over a regular output, reading a torn tail in bounded
//! memory, and advice that works when the output cannot be
//! resumed.

use std::ffi::OsString;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_into_a_device_or_fifo_is_refused() {
    let server = mock().await;
    let dir = tempdir();
    let input = write_file(dir.path(), "in.txt", format!("{}/fast\n", server.url()));
    let fifo = dir.path().join("fifo");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo only reads the path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    for output in [OsString::from("/dev/full"), fifo.clone().into()] {
        let out = Sluice::run([
            OsString::from("--resume"),
            "-o".into(),
            output.clone(),
            input.clone().into(),
        ])
        .output()
        .await;
        out.code(2);
        assert!(
            out.stderr.contains("cannot be read back") && out.stderr.contains("regular file"),
            "{output:?}: {}",
            out.stderr
        );
    }
    assert_eq!(server.stats().requests, 0);

    // A failed write to a device does not advise --resume.
    let out = Sluice::run(["-o".as_ref(), "/dev/full".as_ref(), input.as_os_str()])
        .output()
        .await;
    out.code(3);
    assert!(!out.stderr.contains("--resume to"), "{}", out.stderr);
    assert!(out.stderr.contains("-o FILE"), "{}", out.stderr);
    server.shutdown().await;
}

/// Runs `sluice ARGS` to its end and returns its exit status, its stderr
/// and the peak resident memory of that child alone, in MiB (its VmHWM). (Not
/// `RUSAGE_CHILDREN`: that is the largest child of the whole test binary,
/// Chromium of the browser tests included.)
async fn run_measured(args: Vec<OsString>) -> (i32, String, i64) {
    tokio::task::spawn_blocking(move || {
        #[expect(
            clippy::zombie_processes,
            reason = "reaped below by wait4, which also gives its rusage"
        )]
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_sluice"))
            .arg("run")
            .args(&args)
            .env("NO_PROXY", "*")
            .env("no_proxy", "*")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn sluice");
        // The child's own high-water mark, polled from /proc until it exits:
        // its rusage maxrss would also count the test binary's memory (a
        // vfork-style spawn shares the parent's address space until exec,
        // and the kernel keeps that mark across exec).
        let pid = child.id() as libc::pid_t;
        let hwm = std::thread::spawn(move || {
            let mut peak_kib = 0i64;
            let path = format!("/proc/{pid}/status");
            for _ in 0..12_000 {
                let Some(kib) = std::fs::read_to_string(&path).ok().and_then(|s| {
                    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?.to_owned();
                    line.split_whitespace().nth(1)?.parse::<i64>().ok()
                }) else {
                    break;
                };
                peak_kib = peak_kib.max(kib);
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            peak_kib
        });
        let mut stderr = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
        let mut status = 0;
        // SAFETY: wait4 only writes the status and the struct we pass; the
        // child is ours and not waited for elsewhere.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        assert_eq!(unsafe { libc::wait4(pid, &mut status, 0, &mut usage) }, pid);
        let code = if libc::WIFEXITED(status) {
            libc::WEXITSTATUS(status)
        } else {
            -libc::WTERMSIG(status)
        };
        let peak_kib = hwm.join().unwrap();
        assert!(
            peak_kib > 1024,
            "the child's VmHWM was read ({peak_kib} KiB)"
        );
        (code, stderr, peak_kib / 1024)
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_300_mib_torn_tail_is_cut_in_bounded_memory_and_reported() {
    let server = mock().await;
    let m = server.url();
    let dir = tempdir();
    let input = write_file(
        dir.path(),
        "in.txt",
        lines(
            &(1..=4)
                .map(|i| format!("{m}/fast?n={i}"))
                .collect::<Vec<_>>(),
        ),
    );
    let results = dir.path().join("res.jsonl");
    let args = |resume: bool| {
        let mut a: Vec<OsString> = Vec::new();
        if resume {
            a.push("--resume".into());
        }
        a.extend(["-o".into(), results.clone().into(), input.clone().into()]);
        a
    };
    Sluice::run(args(false)).output().await.code(0);
    let text = std::fs::read_to_string(&results).unwrap();
    let two: String = text.lines().take(2).map(|l| format!("{l}\n")).collect();
    std::fs::write(&results, &two).unwrap();
    // 300 MiB of zeros after the last record (sparse: cheap to make).
    let tail: u64 = 300 << 20;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&results)
        .unwrap();
    file.set_len(two.len() as u64 + tail).unwrap();
    drop(file);
    server.reset_stats();

    let (code, stderr, peak) = run_measured(args(true)).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("cut 300.0 MiB"), "{stderr}");
    assert_eq!(server.stats().requests, 2);
    let recs = by_line(&parse_records(&std::fs::read_to_string(&results).unwrap()));
    assert_eq!(recs.keys().copied().collect::<Vec<_>>(), [1, 2, 3, 4]);
    // Reading the tail would take more than 300 MiB; sluice stays far below.
    assert!(peak < 200, "sluice peaked at {peak} MiB");
    server.shutdown().await;
}
