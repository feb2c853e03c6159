#!/usr/bin/env bash
# sluice benchmarks. One command, from anywhere:   bash bench/run.sh
#
# Builds the release binary, starts one `sluice mock` on a free loopback port,
# runs the scenarios below, each under /usr/bin/time -v, and prints Markdown
# tables of the results (see BENCHMARKS.md for what each number means).
#
#   1 demo        200 x /delay/1 at -c 15 (makespan vs the 14 s ideal)
#   2 throughput  20,000 x /fast at -c 200 (run again after 5, to show noise)
#   3 rate        5,000 x /fast at -c 200 --rate 1000/s (burst 1)
#   4 memory      10,000 vs 200,000 x /fast at -c 100 --body none
#   5 asyncio     bench/asyncio_baseline.py doing scenario 2, right after it
#
# Environment: CARGO_TARGET_DIR (default /tmp/target-bench, so the build does
# not wait on other builds' lock), SLUICE_BENCH_PORT (default: a free port),
# SLUICE_BENCH_KEEP=1 keeps the work directory (inputs, outputs, timings).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/tmp/target-bench}
BIN=$CARGO_TARGET_DIR/release/sluice

DEMO_N=200 DEMO_C=15
THRU_N=20000 THRU_C=200
RATE_N=5000 RATE_C=200 RATE=1000 BURST=1
MEM_SMALL=10000 MEM_LARGE=200000 MEM_C=100

log() { printf '[bench %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

# --- tools -------------------------------------------------------------------
if [[ ! -x /usr/bin/time ]]; then
    log "installing GNU time (apt-get)"
    apt-get update -qq && apt-get install -y -qq time >/dev/null
fi
command -v python3 >/dev/null || { echo "bench: python3 is required" >&2; exit 2; }
if ! python3 -c 'import httpx' 2>/dev/null; then
    log "installing httpx (pip) for the asyncio baseline"
    pip install -q httpx
fi

# --- build -------------------------------------------------------------------
log "cargo build --release (CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
cargo build --release --quiet --bin sluice

# --- work dir and mock ---------------------------------------------------------
W=$(mktemp -d /tmp/sluice-bench.XXXXXX)
MOCK_PID=
cleanup() {
    if [[ -n $MOCK_PID ]] && kill -0 "$MOCK_PID" 2>/dev/null; then
        kill "$MOCK_PID" 2>/dev/null || true
        wait "$MOCK_PID" 2>/dev/null || true
    fi
    if [[ ${SLUICE_BENCH_KEEP:-0} == 1 ]]; then
        log "work directory kept: $W"
    else
        rm -rf "$W"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

PORT=${SLUICE_BENCH_PORT:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')}
"$BIN" mock --listen "127.0.0.1:$PORT" >"$W/mock.log" 2>&1 &
MOCK_PID=$!
BASE=http://127.0.0.1:$PORT

# GET or POST on the mock, stdout the body (python: no curl dependency).
mock_http() { # METHOD PATH
    python3 - "$1" "$BASE$2" <<'EOF'
import sys, urllib.request
req = urllib.request.Request(sys.argv[2], method=sys.argv[1], data=b"" if sys.argv[1] == "POST" else None)
with urllib.request.urlopen(req, timeout=30) as r:
    sys.stdout.buffer.write(r.read())
EOF
}

for _ in $(seq 100); do
    mock_http GET /stats >/dev/null 2>&1 && break
    kill -0 "$MOCK_PID" 2>/dev/null || { cat "$W/mock.log" >&2; echo "bench: the mock did not start" >&2; exit 1; }
    sleep 0.1
done
log "mock: $(head -n1 "$W/mock.log")"

lines() { # N PATH FILE: N lines of the URL $BASE$PATH
    awk -v n="$1" -v u="$BASE$2" 'BEGIN { for (i = 0; i < n; i++) print u }' >"$3"
}

# measure NAME STATS_QUERY CMD...: reset the mock's stats, run CMD under
# /usr/bin/time -v (NAME.time), keep its exit status (NAME.rc), stdout and
# stderr, then save the mock's /stats (NAME.stats.json). A failing command does
# not stop the benchmark: its exit status is reported in the table.
measure() {
    local name=$1 query=$2 rc=0
    shift 2
    mock_http POST /stats/reset >/dev/null
    log "$name: $*"
    /usr/bin/time -v -o "$W/$name.time" "$@" >"$W/$name.stdout" 2>"$W/$name.stderr" || rc=$?
    echo "$rc" >"$W/$name.rc"
    mock_http GET "/stats$query" >"$W/$name.stats.json"
    [[ $rc == 0 ]] || log "$name: exit status $rc (stderr: $(tail -n 3 "$W/$name.stderr" | tr '\n' ' '))"
}

sluice_run() { # NAME INPUT [OPTIONS...]
    local name=$1 input=$2
    shift 2
    measure "$name" "${STATS_QUERY:-}" "$BIN" run "$input" -o "$W/$name.jsonl" -q --progress never \
        --summary-json "$W/$name.summary.json" "$@"
}

T0=$(date +%s)
lines "$DEMO_N" /delay/1 "$W/demo.txt"
lines "$THRU_N" /fast "$W/thru.txt"
lines "$RATE_N" /fast "$W/rate.txt"
lines "$MEM_SMALL" /fast "$W/mem_small.txt"
lines "$MEM_LARGE" /fast "$W/mem_large.txt"

# 1. the demo's job, measured like the others
sluice_run demo "$W/demo.txt" -c "$DEMO_C"
# 2 and 5 side by side: sluice, the asyncio baseline, sluice again
sluice_run throughput "$W/thru.txt" -c "$THRU_C"
measure asyncio "" python3 "$ROOT/bench/asyncio_baseline.py" "$BASE/fast" "$THRU_N" "$THRU_C"
sluice_run throughput_repeat "$W/thru.txt" -c "$THRU_C"
# 3. rate accuracy, from the mock's arrival times
STATS_QUERY='?arrivals=1' sluice_run rate "$W/rate.txt" -c "$RATE_C" --rate "$RATE/s" --burst "$BURST"
# 4. memory flatness
sluice_run mem_small "$W/mem_small.txt" -c "$MEM_C" --body none
sluice_run mem_large "$W/mem_large.txt" -c "$MEM_C" --body none
log "scenarios took $(($(date +%s) - T0)) s"

export DEMO_N DEMO_C THRU_N THRU_C RATE_N RATE_C RATE BURST MEM_SMALL MEM_LARGE MEM_C
python3 "$ROOT/bench/report.py" "$W"
