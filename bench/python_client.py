#!/usr/bin/env python3
"""Issue 10's benchmark: the Python package against the CLI and the
asyncio + httpx pattern, on bench-upstream, in the same run.

    BENCH_PYTHON=/path/to/venv/bin/python python3 bench/python_client.py

Needs the release binaries bench/run.sh builds (`cargo build --release
-p sluice-cli -p bench-upstream --bins` with CARGO_TARGET_DIR, default
/tmp/target-bench), a Python with the package installed (`pip install .`,
a release build; BENCH_PYTHON, default this interpreter), and httpx for
`python3` (the harness's peer). Measures, REPS times each:

- 200,000 GETs through `client.stream` at concurrency 200, results consumed
  in Python, beside `sluice run` on the same 200,000 and asyncio + httpx on
  BENCH_PY_N (its rate is per second, so the counts may differ);
- peak RSS of `client.stream` fed from a generator at 10^5 and 10^6
  requests (BENCH_PY_RSS_N and ten times it).

Prints a Markdown table; exits 1 when a target is missed: at least 80% of
the CLI's requests/s, at least 50x the asyncio + httpx pattern's, and peak
RSS at 10^6 within 1.25x of that at 10^5 (flat memory).
"""

import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402  (the harness's upstream, measurement and helpers)

PYTHON = os.environ.get("BENCH_PYTHON", sys.executable)
N = int(os.environ.get("BENCH_PY_CLIENT_N", "200000"))
RSS_N = int(os.environ.get("BENCH_PY_RSS_N", "100000"))  # and ten times that
C = 200


def stream_argv(url, n):
    return [PYTHON, os.path.join(harness.ROOT, "bench", "python_stream.py"), url, str(n), str(C)]


def main():
    work = tempfile.mkdtemp(prefix="sluice-bench-py-")
    up = harness.Upstream(1, work)
    try:
        url = up.base + "/fast"
        inp = os.path.join(work, "get.txt")
        harness.write_lines(inp, N, url)
        tools = [
            ("sluice CLI", harness.sluice(work, "cli", inp, "-c", str(C), "--retries", "0"), N),
            ("sluice Python", stream_argv(url, N), N),
            ("asyncio+httpx", ["python3", os.path.join(harness.ROOT, "bench", "asyncio_baseline.py"),
                               url, str(harness.PY_N), str(C)], harness.PY_N),
        ]
        runs = harness.alternate(up, work, "py", tools)
        memory = harness.alternate(up, work, "py-rss", [
            ("stream 10^5", stream_argv(url, RSS_N), RSS_N),
            ("stream 10^6", stream_argv(url, 10 * RSS_N), 10 * RSS_N),
        ])
    finally:
        up.stop()
    rate = {tool: harness.med(rs, harness.rps) for tool, rs in runs.items()}
    print(f"| tool | requests | requests/s | CPU µs/request | peak RSS MiB |\n|---|---|---|---|---|")
    for tool, rs in {**runs, **memory}.items():
        print(f"| {tool} | {rs[0].sent} | {harness.med(rs, harness.rps):,.0f} | "
              f"{harness.med(rs, harness.cpu_us):.1f} | {harness.med(rs, harness.rss_mib):.1f} |")
    vs_cli = harness.div(rate["sluice Python"], rate["sluice CLI"])
    vs_httpx = harness.div(rate["sluice Python"], rate["asyncio+httpx"])
    rss = harness.div(harness.med(memory["stream 10^6"], harness.rss_mib),
                      harness.med(memory["stream 10^5"], harness.rss_mib))
    print(f"\nPython/CLI {vs_cli:.0%} (target ≥ 80%), Python/httpx {vs_httpx:.0f}x (target ≥ 50x), "
          f"RSS 10^6/10^5 {rss:.2f} (target ≤ 1.25)")
    failed = any(r.failed for rs in {**runs, **memory}.values() for r in rs)
    return 1 if failed or vs_cli < 0.8 or vs_httpx < 50 or rss > 1.25 else 0


if __name__ == "__main__":
    sys.exit(main())
