//! `--resume` only over a regular output, reading a torn tail in bounded
//! memory (issue 7, bug 4), and advice that works when the output cannot be
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

/// The peak resident memory of the largest child waited for, in MiB.
fn children_peak_mib() -> i64 {
    // SAFETY: getrusage only writes the struct we pass.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    assert_eq!(
        unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) },
        0
    );
    usage.ru_maxrss / 1024
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

    let out = Sluice::run(args(true)).output().await;
    out.code(0);
    assert!(out.stderr.contains("cut 300.0 MiB"), "{}", out.stderr);
    assert_eq!(server.stats().requests, 2);
    let recs = by_line(&parse_records(&std::fs::read_to_string(&results).unwrap()));
    assert_eq!(recs.keys().copied().collect::<Vec<_>>(), [1, 2, 3, 4]);
    let peak = children_peak_mib();
    // Reading the tail would take more than 300 MiB; any child of this test
    // binary stays far below 200 MiB.
    assert!(peak < 200, "a child peaked at {peak} MiB");
    server.shutdown().await;
}
