#!/usr/bin/env python3
"""Turns the files bench/run.sh leaves in its work directory into Markdown.

For each scenario NAME the work directory holds NAME.time (GNU time -v),
NAME.rc, NAME.stats.json (the mock's /stats after the run) and, for sluice
runs, NAME.summary.json; asyncio.stdout is the baseline's JSON line.
Exits 1 if a target is missed or a run failed, after printing everything.
"""

import json
import os
import re
import sys

W = sys.argv[1]
ENV = {k: int(os.environ[k]) for k in (
    "DEMO_N", "DEMO_C", "THRU_N", "THRU_C", "RATE_N", "RATE_C", "RATE", "BURST",
    "MEM_SMALL", "MEM_LARGE", "MEM_C")}


def path(name, ext):
    return os.path.join(W, f"{name}.{ext}")


def gnu_time(name):
    """wall s, user+sys s, max RSS KiB, from `/usr/bin/time -v`."""
    text = open(path(name, "time")).read()

    def field(label):
        m = re.search(r"^\s*" + re.escape(label) + r".*?:\s*(\S+)\s*$", text, re.M)
        if not m:
            raise SystemExit(f"{name}.time: no '{label}'")
        return m.group(1)

    wall = 0.0
    for part in field("Elapsed (wall clock) time").split(":"):
        wall = wall * 60 + float(part)
    cpu = float(field("User time (seconds)")) + float(field("System time (seconds)"))
    return wall, cpu, int(field("Maximum resident set size (kbytes)"))


def load(name, ext):
    try:
        with open(path(name, ext)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def rc(name):
    return int(open(path(name, "rc")).read().strip())


def mib(kib):
    return f"{kib / 1024:.1f}"


problems = []


def run_row(label, name, n, c):
    wall, cpu, rss = gnu_time(name)
    stats = load(name, "stats.json") or {}
    summary = load(name, "summary.json")
    if summary is not None:
        ok = summary.get("ok")
        engine = f"{summary.get('wall_seconds', 0):.2f}"
    else:  # the asyncio baseline prints its own JSON line
        try:
            out = json.loads(open(path(name, "stdout")).read().strip().splitlines()[-1])
        except (OSError, ValueError, IndexError):
            out = {}
        ok = out.get("ok")
        engine = f"{out.get('wall_seconds', 0):.2f}" if out else "?"
    status = rc(name)
    if status != 0 or ok != n:
        problems.append(f"{label}: exit status {status}, {ok} of {n} ok")
    return {
        "label": label, "n": n, "c": c, "wall": wall, "cpu": cpu, "rss": rss,
        "engine": engine, "rps": n / wall if wall else float("inf"),
        "conns": stats.get("connections", "?"), "ok": ok, "rc": status,
    }


rows = [
    run_row("1 demo: /delay/1", "demo", ENV["DEMO_N"], ENV["DEMO_C"]),
    run_row("2 throughput: /fast", "throughput", ENV["THRU_N"], ENV["THRU_C"]),
    run_row("5 asyncio+httpx baseline: /fast", "asyncio", ENV["THRU_N"], ENV["THRU_C"]),
    run_row("2 throughput (repeat, after 5)", "throughput_repeat", ENV["THRU_N"], ENV["THRU_C"]),
    run_row(f"3 rate {ENV['RATE']}/s burst {ENV['BURST']}: /fast", "rate", ENV["RATE_N"], ENV["RATE_C"]),
    run_row("4 memory small: /fast --body none", "mem_small", ENV["MEM_SMALL"], ENV["MEM_C"]),
    run_row("4 memory large: /fast --body none", "mem_large", ENV["MEM_LARGE"], ENV["MEM_C"]),
]
R = {name: row for name, row in zip(
    ["demo", "throughput", "asyncio", "throughput_repeat", "rate", "mem_small", "mem_large"], rows)}

print("### All runs\n")
print("| scenario | requests | -c | ok | exit | wall s (process) | wall s (tool's own) | requests/s | CPU s (user+sys) | peak RSS MiB | connections seen |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for r in rows:
    print(f"| {r['label']} | {r['n']:,} | {r['c']} | {r['ok']} | {r['rc']} | {r['wall']:.2f} | {r['engine']} "
          f"| {r['rps']:,.0f} | {r['cpu']:.2f} | {mib(r['rss'])} | {r['conns']} |")

# 1. demo
demo = R["demo"]
ideal = -(-ENV["DEMO_N"] // ENV["DEMO_C"]) * 1.0
engine_wall = float(demo["engine"])
dev = (demo["wall"] / ideal - 1) * 100
demo_ok = abs(dev) <= 1.0
if not demo_ok:
    problems.append(f"demo makespan {demo['wall']:.2f} s is {dev:+.2f}% from the {ideal:.0f} s ideal (target: within 1%)")
print("\n### Checks against targets\n")
print("| check | measured | target | met |")
print("|---|---|---|---|")
print(f"| 1 demo makespan (process wall; sluice's own: {engine_wall:.2f} s) | {demo['wall']:.2f} s, {dev:+.2f}% vs {ideal:.0f} s ideal | within 1% | {'yes' if demo_ok else '**NO**'} |")
print(f"| 1 demo connections seen | {demo['conns']} | about {ENV['DEMO_C']} | {'yes' if demo['conns'] != '?' and demo['conns'] <= ENV['DEMO_C'] + 2 else '**NO**'} |")

# 3. rate
stats = load("rate", "stats.json") or {}
t = sorted(a["ms"] for a in stats.get("arrivals", []) if a.get("path") == "/fast")
limit = ENV["RATE"] + ENV["BURST"]
if len(t) >= 2:
    span = (t[-1] - t[0]) / 1000
    achieved = len(t) / span
    achieved_intervals = (len(t) - 1) / span
    j = best = 0
    for i in range(len(t)):  # arrivals in any window [x, x + 1 s)
        while t[i] - t[j] >= 1000:
            j += 1
        best = max(best, i - j + 1)
    gaps = sorted(b - a for a, b in zip(t, t[1:]))
    median_gap = gaps[len(gaps) // 2]
    rate_dev = (achieved / ENV["RATE"] - 1) * 100
    window_ok = best <= limit
    rate_ok = abs(rate_dev) <= 1.0
    print(f"| 3 max arrivals in any 1 s window | {best} | at most {limit} (rate + burst) | {'yes' if window_ok else '**NO**'} |")
    print(f"| 3 achieved rate: {len(t)} arrivals / (last − first) | {achieved:.1f}/s ({rate_dev:+.1f}%; {achieved_intervals:.1f}/s counting n−1 intervals; median gap {median_gap:.3f} ms) | {ENV['RATE']}/s within 1% | {'yes' if rate_ok else '**NO**'} |")
    if not window_ok:
        problems.append(f"rate: {best} arrivals in one 1 s window, above {limit}")
    if not rate_ok:
        problems.append(f"rate: achieved {achieved:.1f}/s against --rate {ENV['RATE']}/s ({rate_dev:+.1f}%)")
else:
    problems.append("rate: the mock reported no arrivals")
    print("| 3 rate | no arrivals recorded | | **NO** |")

# 4. memory
small, large = R["mem_small"], R["mem_large"]
mem_ratio = large["rss"] / small["rss"]
print(f"| 4 peak RSS {ENV['MEM_LARGE']:,} vs {ENV['MEM_SMALL']:,} lines | {mib(large['rss'])} vs {mib(small['rss'])} MiB (× {mem_ratio:.2f}) | about the same | {'yes' if mem_ratio <= 1.5 else '**NO**'} |")
if mem_ratio > 1.5:
    problems.append(f"memory: {ENV['MEM_LARGE']} lines took {mem_ratio:.2f}x the RSS of {ENV['MEM_SMALL']}")

# 5. ratios
s, a = R["throughput"], R["asyncio"]
print(f"\n### sluice vs the asyncio pattern ({ENV['THRU_N']:,} × /fast at concurrency {ENV['THRU_C']}, run back to back)\n")
print("| measure | sluice | asyncio + httpx | sluice / asyncio | asyncio / sluice |")
print("|---|---:|---:|---:|---:|")
for what, sv, av, fmt in [
    ("wall s", s["wall"], a["wall"], "{:.2f}"),
    ("CPU s (user+sys)", s["cpu"], a["cpu"], "{:.2f}"),
    ("peak RSS MiB", s["rss"] / 1024, a["rss"] / 1024, "{:.1f}"),
]:
    print(f"| {what} | {fmt.format(sv)} | {fmt.format(av)} | {sv / av:.3f} | {av / sv:.1f}× |")
print(f"| requests/s | {s['rps']:,.0f} | {a['rps']:,.0f} | {s['rps'] / a['rps']:.1f}× | |")
print(f"| connections seen | {s['conns']} | {a['conns']} | | |")

print()
if problems:
    print("**Targets missed or runs failed:**\n")
    for p in problems:
        print(f"- {p}")
    sys.exit(1)
print("All targets met.")
