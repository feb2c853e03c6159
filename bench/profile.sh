#!/usr/bin/env bash
# A CPU profile of sluice at S1 (GETs of /fast at -c 200, records with bodies
# written to a file), against bench-upstream on 127.0.0.1.
#
#   bash bench/profile.sh [REQUESTS]      # default 50000
#
# Needs bench/run.sh's release build and perf (Debian: linux-perf). Records
# with DWARF call graphs at 999 Hz (the release profile keeps line tables),
# then prints the top symbols by self time and by inclusive time. perf.data
# and the reports stay in $PROFILE_DIR (default /tmp/sluice-profile).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/tmp/target-bench}
N=${1:-50000}
OUT=${PROFILE_DIR:-/tmp/sluice-profile}
mkdir -p "$OUT"
command -v perf >/dev/null || { echo "profile: perf is required (apt-get install linux-perf)" >&2; exit 2; }
cargo build --release --quiet -p sluice-cli -p bench-upstream --bins

coproc UP { exec "$CARGO_TARGET_DIR/release/bench-upstream" 1; }
trap 'kill "$UP_PID" 2>/dev/null || true' EXIT
read -r ports <&"${UP[0]}"
port=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["ports"][0])' "$ports")
url=http://127.0.0.1:$port/fast
awk -v n="$N" -v u="$url" 'BEGIN { for (i = 0; i < n; i++) print u }' >"$OUT/input.txt"

perf record -o "$OUT/perf.data" -F 999 -e cpu-clock --call-graph dwarf,16384 -- \
    "$CARGO_TARGET_DIR/release/sluice" run "$OUT/input.txt" -o "$OUT/out.jsonl" --overwrite \
    -q --progress never -c 200 2>"$OUT/record.log"
perf report -i "$OUT/perf.data" --no-children --sort dso,symbol --stdio --percent-limit 0.7 \
    -g none 2>/dev/null >"$OUT/self.txt"
perf report -i "$OUT/perf.data" --children --sort symbol --stdio --percent-limit 3 \
    -g none 2>/dev/null >"$OUT/inclusive.txt"
# The inclusive list, without the runtime's frames and inlined wrappers that
# every task shares, so what is left names where the time goes.
echo "== top self time ($OUT/self.txt)"
grep -v -e '^#' -e '^$' "$OUT/self.txt" | sed 's/  */ /g' | sed -n 1,40p
echo "== top inclusive time, sluice/hyper/reqwest/url/kernel ($OUT/inclusive.txt)"
grep -v -e '^#' -e '^$' -e '(inlined)' "$OUT/inclusive.txt" | sed 's/  */ /g' |
    grep -E 'sluice::|reqwest::|hyper|url::|serde|malloc|futex|schedule|writev|recv' | sed -n 1,40p
