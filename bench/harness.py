#!/usr/bin/env python3
"""sluice's benchmark harness: the scenarios of BENCHMARKS.md, sluice against
its peers, in one run. Start it with `bash bench/run.sh [SCENARIO...]`, which
builds the binaries and installs the peers first; see BENCHMARKS.md.

Each scenario runs every tool in turn, then again, BENCH_REPS times (sluice,
peer 1, peer 2, ..., sluice, peer 1, ...), so slow drifts of a shared machine
hit every tool alike. A run is one process: its wall time, user and system CPU,
voluntary context switches and peak RSS come from wait4(2) (the client process
only); the requests it made, its connections and its arrival times come from
the upstream's /stats.

CPU is user + system time from wait4, the kernel's own account of the
process: on Linux its total is the scheduler's exact runtime of every thread
(sum_exec_runtime, the same figure as the process's CPU clock), not a count of
timer ticks; ticks only split it into user and system. The scheduler charges
a thread from the instant it is woken, so each wake-up also pays for the
interrupt's return and the switch that bring the thread in. `perf stat`'s
task-clock starts counting only once the thread is switched in, so for a
process that sleeps and wakes thousands of times (a paced run) it reads lower,
by 6-13 us a sleep on this VM; for a busy one the two agree. Both are applied alike to every tool; the
harness keeps wait4's, which is what the machine spends because the client
woke (BENCHMARKS.md, "What the numbers mean").
Medians over the repetitions are reported, with ratios to sluice, and each
performance target is checked. The exit status is 1 when a target is missed
or a run failed (a non-zero exit, or fewer requests at the server than sent).

Environment: BENCH_REPS (3), BENCH_PY_N (5000: requests of the Python
peers, which manage a few hundred to a few thousand a second), BENCH_WRK_SECONDS
(3: wrk runs for a duration, not a count), BENCH_WORK (a work directory to
keep; default a temporary one, removed at the end).
"""

import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.environ.get("CARGO_TARGET_DIR", "/tmp/target-bench")
SLUICE = os.path.join(TARGET, "release", "sluice")
UPSTREAM = os.path.join(TARGET, "release", "bench-upstream")
# bench/floor.c, compiled by bench/run.sh when a C compiler is present.
FLOOR = os.path.join(TARGET, "release", "bench-floor")
GNU_TIME = "/usr/bin/time"
REPS = int(os.environ.get("BENCH_REPS", "3"))
PY_N = int(os.environ.get("BENCH_PY_N", "5000"))
WRK_SECONDS = int(os.environ.get("BENCH_WRK_SECONDS", "3"))
SCENARIOS = ["s1", "s4", "pacing", "s2", "s3"]

# The numbers of the performance targets.
S1_N, S4_N = 200_000, 100_000
CPU_TARGET_US, CPU_VS_OHA = 12.0, 1.15
S4_BODY_BYTES = 1024
ORIGINS, ORIGIN_RATE, ORIGIN_N = 100, 10, 50
S2_N, S2_C = 200, 15
S3_SMALL, S3_LARGE, S3_RSS_MIB, S3_RSS_GROWTH, S3_RATE_SHARE = 100_000, 1_000_000, 64, 1.20, 0.90
PACING = [  # (label, sluice option, rate per second, requests, CPU seconds allowed)
    ("--rate 1000/s", "--rate", 1000, 5000, 0.25),
    ("--rate 100/s", "--rate", 100, 1000, 0.05),
    ("--per-host-rate 1000/s", "--per-host-rate", 1000, 5000, 0.25),
    ("--per-host-rate 100/s", "--per-host-rate", 100, 1000, 0.05),
]


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class Upstream:
    """bench-upstream on 127.0.0.1, on `ports` ports, killed by stop()."""

    def __init__(self, ports, work):
        self.log = open(os.path.join(work, f"upstream-{ports}.log"), "w")
        self.proc = subprocess.Popen(
            [UPSTREAM, str(ports)], stdout=subprocess.PIPE, stderr=self.log, text=True
        )
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit("bench: bench-upstream did not start")
        self.ports = json.loads(line)["ports"]
        self.base = f"http://127.0.0.1:{self.ports[0]}"

    def _call(self, method, path):
        req = urllib.request.Request(self.base + path, method=method, data=b"" if method == "POST" else None)
        with urllib.request.urlopen(req, timeout=60) as r:
            return json.loads(r.read())

    def reset(self):
        self._call("POST", "/stats/reset")

    def stats(self):
        return self._call("GET", "/stats")

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=10)
        self.log.close()


class Run:
    """One measured process: what wait4 and the upstream saw."""

    def __init__(self, tool, rc, wall, cpu, rss_kib, stats, sent, out, sleeps=0):
        self.tool, self.rc, self.wall, self.cpu, self.rss_kib = tool, rc, wall, cpu, rss_kib
        # Voluntary context switches: each is a sleep, so a wake-up after it.
        self.sleeps = sleeps
        self.stats, self.sent, self.out = stats, sent, out
        self.requests = stats["requests"]

    @property
    def failed(self):
        # wrk runs for a duration (sent is None); the others must all arrive.
        return self.rc != 0 or (self.sent is not None and self.requests < self.sent)


def measure(upstream, tool, argv, work, name, sent):
    """Runs argv with the upstream's counters reset; returns its Run.

    The command runs under GNU time, which only reports its peak RSS: Linux
    carries the peak RSS across fork and exec, so a process started by this
    (much larger) Python process directly would inherit Python's. The CPU
    time comes from wait4 on `time`, which includes its waited-for child's
    to the microsecond (and time's own, about a millisecond), and its
    voluntary context switches likewise (time's own: a handful).
    """
    upstream.reset()
    out_path = os.path.join(work, name + ".out")
    rss_path = os.path.join(work, name + ".rss")
    with open(out_path, "wb") as out, open(os.path.join(work, name + ".err"), "wb") as err:
        start = time.perf_counter()
        proc = subprocess.Popen([GNU_TIME, "-f", "%M", "-o", rss_path, *argv],
                                stdout=out, stderr=err, stdin=subprocess.DEVNULL)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    with open(rss_path) as f:
        # On a non-zero exit, GNU time writes "Command exited with ..." first.
        rss_kib = int(f.read().split()[-1])
    run = Run(tool, proc.returncode, wall, usage.ru_utime + usage.ru_stime, rss_kib,
              upstream.stats(), sent, out_path, sleeps=usage.ru_nvcsw)
    if run.failed:
        log(f"{name}: FAILED (exit {run.rc}, {run.requests} of {sent} requests at the server; "
            f"see {work}/{name}.err)")
    else:
        log(f"{name}: {run.requests} requests, {wall:.2f} s, {run.cpu:.2f} CPU s, "
            f"{run.rss_kib / 1024:.1f} MiB, {run.stats['connections']} connections")
    return run


def write_lines(path, n, line):
    with open(path, "w") as f:
        chunk = (line + "\n") * 10_000
        for _ in range(n // 10_000):
            f.write(chunk)
        f.write((line + "\n") * (n % 10_000))


def sluice(work, name, input_path, *options):
    out = os.path.join(work, name + ".results.jsonl")
    return [SLUICE, "run", input_path, "-o", out, "--overwrite", "-q", "--progress", "never",
            "--summary-json", os.path.join(work, name + ".summary.json"), *options]


def peers_get(url, n, c, py_n):
    """The peers of a GET scenario: (tool, argv, requests sent or None)."""
    return [
        ("oha", ["oha", "-n", str(n), "-c", str(c), "--no-tui", url], n),
        ("wrk", ["wrk", "-t", "2", "-c", str(c), "-d", f"{WRK_SECONDS}s", url], None),
        # hey gives each of its c workers n ÷ c requests, so it sends n − n % c.
        ("hey", ["hey", "-n", str(n), "-c", str(c), url], n - n % c),
        ("curl --parallel", ["curl", "-s", "-Z", "--parallel-max", str(c), "-o", "/dev/null",
                             f"{url}?[1-{n}]"], n),
        ("asyncio+httpx", ["python3", os.path.join(ROOT, "bench", "asyncio_baseline.py"),
                           url, str(py_n), str(c)], py_n),
        ("asyncio+aiohttp", ["python3", os.path.join(ROOT, "bench", "asyncio_aiohttp.py"),
                             url, str(py_n), str(c)], py_n),
    ]


def alternate(upstream, work, label, tools):
    """Runs each (tool, argv, sent) in turn, REPS times; returns {tool: [Run]}."""
    runs = {tool: [] for tool, _, _ in tools}
    for rep in range(REPS):
        for tool, argv, sent in tools:
            name = f"{label}-{re.sub('[^A-Za-z0-9]+', '_', tool).strip('_')}-{rep}"
            runs[tool].append(measure(upstream, tool, argv, work, name, sent))
    return runs


def div(a, b):
    """a ÷ b, or NaN when b is 0 (a failed tool), so a report still prints."""
    return a / b if b else float("nan")


def med(runs, f):
    return statistics.median(f(r) for r in runs)


def rps(r):
    return r.requests / r.wall


def cpu_us(r):
    return r.cpu / max(r.requests, 1) * 1e6


def rss_mib(r):
    return r.rss_kib / 1024


class Report:
    def __init__(self):
        self.sections = []
        self.checks = []  # (target, measured, wanted, met)
        self.notes = []  # lines printed under the targets, checking nothing
        self.failures = []

    def table(self, title, runs, note=""):
        """A Markdown table of medians per tool, with ratios to sluice."""
        base = runs.get("sluice")
        lines = [f"### {title}", ""]
        if note:
            lines += [note, ""]
        lines += ["| tool | runs | requests/s | CPU µs/request | peak RSS MiB | connections | wall s | "
                  "requests/s ÷ sluice's | CPU/request ÷ sluice's |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for tool, rs in runs.items():
            ok = [r for r in rs if not r.failed]
            self.failures += [f"{title}: {tool} (exit {r.rc}, {r.requests} requests)" for r in rs if r.failed]
            if not ok:
                lines.append(f"| {tool} | 0 of {len(rs)} ok | | | | | | | |")
                continue
            ratio = cpu_ratio = ""
            if base and tool != "sluice":
                ok_base = [r for r in base if not r.failed] or base
                if med(ok_base, rps) > 0 and med(ok_base, cpu_us) > 0:
                    ratio = f"{med(ok, rps) / med(ok_base, rps):.2f}"
                    cpu_ratio = f"{med(ok, cpu_us) / med(ok_base, cpu_us):.2f}"
            lines.append(
                f"| {tool} | {len(ok)} | {med(ok, rps):,.0f} | {med(ok, cpu_us):.1f} | "
                f"{med(ok, rss_mib):.1f} | {med(ok, lambda r: r.stats['connections']):.0f} | "
                f"{med(ok, lambda r: r.wall):.2f} | {ratio} | {cpu_ratio} |")
        self.sections.append("\n".join(lines))

    def check(self, target, measured, wanted, met):
        self.checks.append((target, measured, wanted, met))

    def text(self):
        out = ["## Results", ""] + [s + "\n" for s in self.sections]
        out += ["### Targets", "", "| target | measured (medians) | wanted | met |",
                "|---|---|---|---|"]
        out += [f"| {t} | {m} | {w} | {'met' if ok else '**missed**'} |" for t, m, w, ok in self.checks]
        if self.notes:
            out += [""] + self.notes
        if self.failures:
            out += ["", "Failed runs: " + "; ".join(self.failures)]
        return "\n".join(out) + "\n"


def scenario_s1(up, work, report, results):
    """S1: 200,000 GETs of /fast at -c 200 and -c 15; and CPU per request."""
    url = up.base + "/fast"
    inp = os.path.join(work, "s1.txt")
    write_lines(inp, S1_N, url)
    for c in (200, 15):
        tools = [("sluice", sluice(work, f"s1-c{c}", inp, "-c", str(c)), S1_N)]
        tools += peers_get(url, S1_N, c, PY_N)
        runs = alternate(up, work, f"s1-c{c}", tools)
        report.table(f"S1: {S1_N:,} GETs of /fast at -c {c}", runs,
                     f"sluice writes every record, with its body, to a file; the peers write "
                     f"nothing. wrk runs {WRK_SECONDS} s; the Python peers make {PY_N:,} requests.")
        s, o = med(runs["sluice"], rps), med(runs["oha"], rps)
        report.check(f"1 S1 requests/s at -c {c} ≥ oha's", f"{s:,.0f} vs {o:,.0f} ({div(s, o):.2f}×)",
                     "≥ 1.00×", s >= o)
        results[f"s1-c{c}"] = runs
        if c == 200:
            su, ou = med(runs["sluice"], cpu_us), med(runs["oha"], cpu_us)
            report.check("2 CPU per request at -c 200", f"{su:.1f} µs (oha {ou:.1f} µs, {div(su, ou):.2f}×)",
                         f"≤ {CPU_TARGET_US:g} µs and ≤ {CPU_VS_OHA}× oha's",
                         su <= CPU_TARGET_US and su <= CPU_VS_OHA * ou)


def scenario_s4(up, work, report, results):
    """S4: 100,000 POSTs of 1 KiB JSON bodies, 4 KiB JSON responses, -c 100."""
    c = 100
    url = up.base + "/post"
    pad = S4_BODY_BYTES - len('{"data":""}')
    body = '{"data":"' + "y" * pad + '"}'
    body_file = os.path.join(work, "s4-body.json")
    with open(body_file, "w") as f:
        f.write(body)
    inp = os.path.join(work, "s4.jsonl")
    write_lines(inp, S4_N, json.dumps({"method": "POST", "url": url, "body": json.loads(body)},
                                      separators=(",", ":")))
    lua = os.path.join(work, "s4.lua")
    with open(lua, "w") as f:
        f.write(f'wrk.method = "POST"\nwrk.body = {json.dumps(body)}\n'
                'wrk.headers["Content-Type"] = "application/json"\n')
    tools = [
        ("sluice", sluice(work, "s4", inp, "-c", str(c)), S4_N),
        ("oha", ["oha", "-n", str(S4_N), "-c", str(c), "--no-tui", "-m", "POST", "-D", body_file,
                 "-T", "application/json", url], S4_N),
        ("wrk", ["wrk", "-t", "2", "-c", str(c), "-d", f"{WRK_SECONDS}s", "-s", lua, url], None),
        ("hey", ["hey", "-n", str(S4_N), "-c", str(c), "-m", "POST", "-D", body_file,
                 "-T", "application/json", url], S4_N - S4_N % c),
        ("curl --parallel", ["curl", "-s", "-Z", "--parallel-max", str(c), "-o", "/dev/null",
                             "-H", "Content-Type: application/json", "--data-binary", "@" + body_file,
                             f"{url}?[1-{S4_N}]"], S4_N),
    ]
    runs = alternate(up, work, "s4", tools)
    report.table(f"S4: {S4_N:,} POSTs of 1 KiB JSON, 4 KiB JSON responses, at -c {c}", runs,
                 "sluice's input lines carry the body as JSON (`{\"method\":\"POST\",\"url\":…,\"body\":{…}}`) "
                 "and it writes every 4 KiB response into its records; the peers send a file and write nothing.")
    s, o = med(runs["sluice"], rps), med(runs["oha"], rps)
    report.check("3 S4 requests/s at -c 100 ≥ oha's", f"{s:,.0f} vs {o:,.0f} ({div(s, o):.2f}×)", "≥ 1.00×", s >= o)
    results["s4"] = runs


def pacing_row(label, rate, n, runs, allowed_cpu, report, per_port=False):
    """One row of the pacing table, and its three checks."""
    ok = [r for r in runs if not r.failed] or runs
    cpu = med(ok, lambda r: r.cpu)
    key_max, key_rate = ("port_max_in_1s", "port_min_rate") if per_port else ("max_in_1s", "achieved_rate")
    worst_window = max(r.stats[key_max] for r in ok)
    achieved = med(ok, lambda r: r.stats[key_rate] or 0.0)
    worst_rate = min((r.stats[key_rate] or 0.0) for r in ok)
    # Every origin's rate must be within 1%: the slowest and the fastest.
    keys = ("port_min_rate", "port_max_rate") if per_port else ("achieved_rate",)
    burst = 1
    report.check(f"4 pacing {label}: client CPU for {n:,} requests", f"{cpu:.3f} s", f"≤ {allowed_cpu} s",
                 cpu <= allowed_cpu)
    report.check(f"4 pacing {label}: most arrivals in any 1 s{' at one origin' if per_port else ''}",
                 f"{worst_window} (worst run)", f"≤ {rate + burst} (rate + burst)", worst_window <= rate + burst)
    report.check(f"4 pacing {label}: achieved rate{' (slowest origin)' if per_port else ''}",
                 f"{achieved:.2f}/s (median; worst run {worst_rate:.2f}/s)", f"{rate}/s within 1%",
                 all(abs((r.stats[k] or 0.0) - rate) <= 0.01 * rate for r in ok for k in keys))
    wall = med(ok, lambda r: r.wall)
    return (f"| {label} | {n:,} | {len(ok)} | {wall:.2f} | {cpu:.3f} | {cpu / n * 1e6:.0f} | "
            f"{med(ok, lambda r: r.sleeps) / n:.2f} | {worst_window} | {achieved:.2f} | {med(ok, rss_mib):.1f} |")


def pacing_peer_row(label, n, rs):
    """A peer's row of the pacing table (medians of its runs that did not
    fail), checking nothing; its median CPU s, or None when every run failed."""
    ok = [r for r in rs if not r.failed]
    if not ok:
        return f"| {label} | {n:,} | 0 of {len(rs)} ok | | | | | | | |", None
    cpu = med(ok, lambda r: r.cpu)
    return (f"| {label} | {n:,} | {len(ok)} | {med(ok, lambda r: r.wall):.2f} | "
            f"{cpu:.3f} | {cpu / n * 1e6:.0f} | {med(ok, lambda r: r.sleeps) / n:.2f} | "
            f"{max(r.stats['max_in_1s'] for r in ok)} | "
            f"{med(ok, lambda r: r.stats['achieved_rate'] or 0.0):.2f} | {med(ok, rss_mib):.1f} |"), cpu


def floor_label(rate):
    return f"C floor (blocking socket, clock_nanosleep), {rate}/s"


def scenario_pacing(work, report, results):
    """Pacing: client CPU, achieved rate and window maxima at the server;
    oha -q and the C floor (bench/floor.c) beside sluice, unchecked."""
    floor = os.access(FLOOR, os.X_OK)
    floor_note = ("The C floor is `bench/floor.c`: one thread, one kept-alive connection, a `clock_nanosleep` "
                  "to each request's instant (one wake-up a request), then the answer before it read without "
                  "waiting and its line written, then the request: the least a paced client can do, so what "
                  "this machine charges for the wake-ups alone."
                  if floor else f"No C floor: {FLOOR} was not built (no C compiler).")
    rows = ["### Pacing: client CPU and exactness at the server", "",
            "sluice at `-c 200 --burst 1`; arrivals timed by the upstream. `achieved` is (n − 1) ÷ "
            "(last − first arrival); `max in 1 s` is the most arrivals in any window [t, t + 1 s), "
            "worst of the runs; `wake-ups/request` is the client's voluntary context switches (sleeps) "
            "over its requests. oha's `-q` (its rate limit) and the C floor are shown for comparison, "
            "unchecked. " + floor_note, "",
            "| run | requests | runs | wall s | CPU s | CPU µs/request | wake-ups/request | max in 1 s | achieved /s | peak RSS MiB |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    up = Upstream(1, work)
    try:
        url = up.base + "/fast"
        tools = []
        for label, option, rate, n, _ in PACING:
            inp = os.path.join(work, f"pace-{n}.txt")
            write_lines(inp, n, url)
            tools.append((label, sluice(work, "pace", inp, "-c", "200", "--burst", "1", option, f"{rate}/s"), n))
        for rate, n in sorted({(r, n) for _, _, r, n, _ in PACING}, reverse=True):
            tools.append((f"oha -q {rate}", ["oha", "-n", str(n), "-c", "200", "--no-tui", "-q", str(rate), url], n))
            if floor:
                tools.append((floor_label(rate), [FLOOR, "127.0.0.1", str(up.ports[0]), "/fast", str(rate), str(n)], n))
        runs = alternate(up, work, "pacing", tools)
        for label, _, rate, n, allowed in PACING:
            rows.append(pacing_row(label, rate, n, runs[label], allowed, report))
            report.failures += [f"pacing {label} (exit {r.rc})" for r in runs[label] if r.failed]
        for rate, n in sorted({(r, n) for _, _, r, n, _ in PACING}, reverse=True):
            rows.append(pacing_peer_row(f"oha -q {rate} (peer)", n, runs[f"oha -q {rate}"])[0])
        floors = []
        for rate, n, allowed in sorted({(r, n, a) for _, _, r, n, a in PACING}, reverse=True) if floor else []:
            row, cpu = pacing_peer_row(floor_label(rate), n, runs[floor_label(rate)])
            rows.append(row)
            if cpu is not None:
                above = " (above it: no client paced by sleeping meets it here)" if cpu > allowed else ""
                floors.append(f"{cpu:.3f} CPU s for {n:,} requests at {rate}/s against target 4's "
                              f"{allowed} s{above}")
        if floors:
            report.notes.append("The machine's pacing floor (the C floor, medians): "
                                + "; ".join(reversed(floors)) + ".")
        results["pacing"] = runs
    finally:
        up.stop()
    up = Upstream(ORIGINS, work)
    try:
        inp = os.path.join(work, "pace-origins.txt")
        with open(inp, "w") as f:
            for _ in range(ORIGIN_N):
                for port in up.ports:
                    f.write(f"http://127.0.0.1:{port}/fast\n")
        n = ORIGINS * ORIGIN_N
        label = f"{ORIGINS} origins at --per-host-rate {ORIGIN_RATE}/s"
        argv = sluice(work, "pace-origins", inp, "-c", "200", "--burst", "1", "--per-host-rate", f"{ORIGIN_RATE}/s")
        runs = alternate(up, work, "pacing-origins", [(label, argv, n)])[label]
        # The same CPU per request as 1000/s overall: 0.25 s for 5,000.
        rows.append(pacing_row(label, ORIGIN_RATE, n, runs, 0.25 * n / 5000, report, per_port=True))
        report.failures += [f"pacing {label} (exit {r.rc})" for r in runs if r.failed]
        results["pacing-origins"] = runs
    finally:
        up.stop()
    report.sections.append("\n".join(rows))


def scenario_s2(up, work, report, results):
    """S2: the demo, 200 × /delay/1 at -c 15, against oha."""
    url = up.base + "/delay/1"
    inp = os.path.join(work, "s2.txt")
    write_lines(inp, S2_N, url)
    tools = [("sluice", sluice(work, "s2", inp, "-c", str(S2_C)), S2_N),
             ("oha", ["oha", "-n", str(S2_N), "-c", str(S2_C), "--no-tui", url], S2_N)]
    runs = alternate(up, work, "s2", tools)
    report.table(f"S2: the demo, {S2_N} × /delay/1 at -c {S2_C} (ideal makespan 14 s)", runs)
    s, o = med(runs["sluice"], lambda r: r.wall), med(runs["oha"], lambda r: r.wall)
    report.check("5 S2 makespan ≤ oha's", f"{s:.2f} s vs {o:.2f} s", "≤ oha's", s <= o)
    results["s2"] = runs


def scenario_s3(up, work, report, results):
    """S3: peak RSS at 10^5 and 10^6 lines; 10^6-line requests/s against S1."""
    url = up.base + "/fast"
    tools = []
    for n in (S3_SMALL, S3_LARGE):
        inp = os.path.join(work, f"s3-{n}.txt")
        write_lines(inp, n, url)
        tools.append((f"sluice {n:,} lines", sluice(work, "s3", inp, "-c", "200"), n))
    if "s1-c200" not in results:
        inp = os.path.join(work, "s1.txt")
        write_lines(inp, S1_N, url)
        tools.append(("sluice", sluice(work, "s1-c200", inp, "-c", "200"), S1_N))
    runs = alternate(up, work, "s3", tools)
    report.table("S3: memory, 10^5 and 10^6 URL lines of /fast at -c 200 (records with bodies)", runs)
    small, large = runs[f"sluice {S3_SMALL:,} lines"], runs[f"sluice {S3_LARGE:,} lines"]
    rs, rl = med(small, rss_mib), med(large, rss_mib)
    report.check("6 S3 peak RSS at 10^6 lines", f"{rl:.1f} MiB", f"< {S3_RSS_MIB} MiB", rl < S3_RSS_MIB)
    report.check("6 S3 peak RSS 10^6 vs 10^5 lines", f"{rl:.1f} vs {rs:.1f} MiB ({div(rl, rs):.2f}×)",
                 f"≤ {S3_RSS_GROWTH:.2f}×", rl <= S3_RSS_GROWTH * rs)
    s1 = results["s1-c200"]["sluice"] if "s1-c200" in results else runs["sluice"]
    r1, rlarge = med(s1, rps), med(large, rps)
    report.check("6 S3 requests/s at 10^6 lines vs S1 (-c 200)", f"{rlarge:,.0f} vs {r1:,.0f} ({div(rlarge, r1):.2f}×)",
                 f"≥ {S3_RATE_SHARE:.2f}×", rlarge >= S3_RATE_SHARE * r1)
    results["s3"] = runs


def main(argv):
    chosen = argv or SCENARIOS
    unknown = [s for s in chosen if s not in SCENARIOS]
    if unknown:
        raise SystemExit(f"bench: unknown scenario {', '.join(unknown)}; choose from {' '.join(SCENARIOS)}")
    keep = "BENCH_WORK" in os.environ
    work = os.environ["BENCH_WORK"] if keep else tempfile.mkdtemp(prefix="sluice-bench.")
    os.makedirs(work, exist_ok=True)
    report, results = Report(), {}
    started = time.time()
    try:
        up = Upstream(1, work)
        try:
            for name in [s for s in SCENARIOS if s in chosen]:
                log(f"scenario {name}")
                if name == "pacing":
                    scenario_pacing(work, report, results)
                else:
                    globals()[f"scenario_{name}"](up, work, report, results)
        finally:
            up.stop()
    finally:
        if not keep:
            shutil.rmtree(work, ignore_errors=True)
    log(f"scenarios took {time.time() - started:.0f} s")
    text = report.text()
    print(text)
    missed = [t for t, _, _, met in report.checks if not met]
    if missed or report.failures:
        log(f"{len(missed)} target(s) missed, {len(report.failures)} failed run(s)")
        return 1
    log("every target met")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
