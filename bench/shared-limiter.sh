#!/usr/bin/env bash
# The shared limiter's cost: four shards at 5,000 requests/s
# shared through one redis-server, against one process at 5,000/s with its
# own limiter. Prints Redis's CPU time, the number of script calls, and
# sluice's CPU time over the same 20,000 requests. Needs redis-server and
# redis-cli (Debian: redis-server) and GNU time; builds sluice in release.
#   bash bench/shared-limiter.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked --bin sluice >&2
B="${CARGO_TARGET_DIR:-target}/release/sluice"
D=$(mktemp -d)
trap 'kill $MOCK $RPID 2>/dev/null; rm -rf "$D"' EXIT
PORT=18181
"$B" mock --listen 127.0.0.1:$PORT >/dev/null 2>&1 & MOCK=$!
redis-server --port 0 --unixsocket "$D/redis.sock" --save "" --appendonly no --dir "$D" >/dev/null 2>&1 & RPID=$!
sleep 1
python3 -c "print('\n'.join(['http://127.0.0.1:$PORT/fast']*20000))" > "$D/in.txt"
cpu() { awk '{print $14+$15}' "/proc/$1/stat"; }
r0=$(cpu $RPID)
t0=$(date +%s.%N)
PIDS=()
for k in 0 1 2 3; do
    /usr/bin/time -f "%U %S" -o "$D/time-$k" "$B" run "$D/in.txt" -q --shard $k/4 \
        --redis "unix://$D/redis.sock" --job bench --rate 5000/s -c 64 -o "$D/out-$k.jsonl" &
    PIDS+=($!)
done
wait "${PIDS[@]}"
t1=$(date +%s.%N)
r1=$(cpu $RPID)
calls=$(redis-cli -s "$D/redis.sock" info commandstats | grep -oE 'cmdstat_eval(sha)?:calls=[0-9]+' | grep -oE '[0-9]+$' | paste -sd+ | bc)
shared=$(cat "$D"/time-[0-3] | awk '{s+=$1+$2} END {print s}')
/usr/bin/time -f "%U %S" -o "$D/time-local" "$B" run "$D/in.txt" -q --rate 5000/s -c 64 -o "$D/local.jsonl"
local=$(awk '{print $1+$2}' "$D/time-local")
tick=$(getconf CLK_TCK)
echo "four shards: $(cat "$D"/out-* | wc -l) records in $(echo "$t1 - $t0" | bc) s; Redis CPU $(echo "($r1 - $r0) / $tick" | bc -l | cut -c1-5) s in $calls script calls; sluice CPU $shared s"
echo "one process: $(wc -l < "$D/local.jsonl") records; sluice CPU $local s"
