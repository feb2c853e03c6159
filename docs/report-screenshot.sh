#!/usr/bin/env bash
# Makes docs/report.png: a run of 1,500 requests against the test upstream
# (delays, some 500s, a few 429s that pause the origin), its --report, and
# a screenshot of that report by headless Chromium.
# Usage: bash docs/report-screenshot.sh   (needs chromium; about 30 seconds)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet
sluice=target/release/sluice
work=$(mktemp -d)
trap 'kill "$mock" 2>/dev/null || true; rm -rf "$work"' EXIT
port=18099
"$sluice" mock --listen "127.0.0.1:$port" >/dev/null &
mock=$!
sleep 0.5
url="http://127.0.0.1:$port"
for i in $(seq 1 1500); do
    case $((i % 50)) in
        7) echo "$url/fail/1/k$i?status=429&retry_after=1" ;;
        11|23|37) echo "$url/status/500" ;;
        *) echo "$url/delay/0.$((RANDOM % 3))$((RANDOM % 10))" ;;
    esac
done >"$work/urls.txt"
"$sluice" run "$work/urls.txt" -c 40 --rate 100/s --retries 2 -q \
    -H 'Authorization: Bearer not-shown' -o "$work/results.jsonl" --report "$work/report.html" || true
chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=1000,2350 \
    --screenshot="$PWD/docs/report.png" "file://$work/report.html" 2>/dev/null
echo "wrote docs/report.png"
