#!/usr/bin/env bash
# sluice's benchmark harness. One command, from anywhere:
#
#   bash bench/run.sh                 # every scenario: s1 s4 pacing s2 s3
#   bash bench/run.sh s1 pacing       # only these
#   BENCH_REPS=1 bash bench/run.sh s1 # a quick look (medians need 3)
#
# Builds sluice and bench-upstream (the one-thread hyper upstream) in release
# mode, installs the peers that are missing (oha with cargo install; wrk, hey
# and GNU time with apt-get; httpx and aiohttp with pip), compiles the
# pacing table's C floor (bench/floor.c) when a C compiler is present, then runs
# bench/harness.py, which prints the Markdown tables of BENCHMARKS.md and
# exits 1 when a performance target is missed or a run failed.
#
# Environment: CARGO_TARGET_DIR (default /tmp/target-bench, so the build does
# not wait on other builds' lock), BENCH_REPS, BENCH_PY_N, BENCH_WRK_SECONDS,
# BENCH_WORK (see bench/harness.py).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/tmp/target-bench}

log() { printf '[bench %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

# --- peers and tools -----------------------------------------------------------
command -v python3 >/dev/null || { echo "bench: python3 is required" >&2; exit 2; }
missing_debs=()
command -v wrk >/dev/null || missing_debs+=(wrk)
command -v hey >/dev/null || missing_debs+=(hey)
command -v curl >/dev/null || missing_debs+=(curl)
[[ -x /usr/bin/time ]] || missing_debs+=(time)
if ((${#missing_debs[@]})); then
    log "installing ${missing_debs[*]} (apt-get)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing_debs[@]}" >/dev/null
fi
if ! command -v oha >/dev/null; then
    log "installing oha (cargo install oha --locked; a few minutes)"
    cargo install oha --locked --quiet
fi
for module in httpx aiohttp; do
    if ! python3 -c "import $module" 2>/dev/null; then
        log "installing $module (pip)"
        pip install -q "$module"
    fi
done

# --- build ----------------------------------------------------------------------
log "cargo build --release (CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
cargo build --release --quiet -p sluice-cli -p bench-upstream --bins
# The pacing table's C floor (bench/floor.c); its row is left out without
# a C compiler (nothing is installed for it).
rm -f "$CARGO_TARGET_DIR/release/bench-floor"
if ! command -v cc >/dev/null; then
    log "no C compiler (cc): the pacing table will have no C floor row"
elif ! cc -O2 -o "$CARGO_TARGET_DIR/release/bench-floor" bench/floor.c; then
    log "bench/floor.c did not compile: the pacing table will have no C floor row"
fi

exec python3 bench/harness.py "$@"
