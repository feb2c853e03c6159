#!/usr/bin/env bash
# Discovered limits against a real nginx: `limit_req rate=50r/s burst=10`
# (no rate-limit headers), 1,000 GETs at `-c 15` with nothing configured,
# with and without `Retry-After: 1` on the 429s (the ideal:
# 20 s, 1,000 requests at 50 a second). Not part of CI.
#
#   bash bench/nginx-discovery.sh            # both cases, RUNS=1 each
#   RUNS=3 bash bench/nginx-discovery.sh     # three runs of each
#
# Installs nginx (Debian's, apt-get) if it is missing, builds the release
# binary unless SLUICE names one, and for each case runs its own nginx
# (`daemon off`, a loopback high port, stopped by its PID) serving a static
# file, so `limit_req` (the preaccess phase) applies to every request.
# nginx logs each request's time and status: the makespan is from the first
# request nginx received to the last it served with 200, and the refusals
# are its 429s.
#
# Environment: SLUICE (a sluice binary to use instead of building), RUNS,
# ARGS (more sluice options, e.g. -v), KEEP=1 keeps the work directory.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
log() { printf '[nginx-discovery %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

# shellcheck source=bench/nginx-common.sh
source bench/nginx-common.sh
RUNS=${RUNS:-1}
N=1000

WORK=$(mktemp -d /tmp/sluice-nginx-discovery.XXXXXX)
NGINX_PID=
cleanup() {
    local status=$?
    [[ -n $NGINX_PID ]] && kill "$NGINX_PID" 2>/dev/null && wait "$NGINX_PID" 2>/dev/null || true
    [[ ${KEEP:-0} == 1 ]] && log "work directory kept: $WORK" || rm -rf "$WORK"
    exit "$status"
}
trap cleanup EXIT

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p "$WORK/www"
echo '{"ok":true}' >"$WORK/www/ok.json"

# start_nginx EXTRA_SERVER_DIRECTIVES: a fresh nginx with the limit.
start_nginx() {
    local dir=$WORK/nginx user=""
    rm -rf "$dir" && mkdir -p "$dir/tmp"
    [[ $EUID == 0 ]] && user="user root;"
    cat >"$dir/nginx.conf" <<EOF
daemon off;
$user
worker_processes 1;
pid $dir/nginx.pid;
error_log $dir/error.log crit;
events { worker_connections 1024; }
http {
    log_format timed '\$msec \$status';
    access_log $dir/access.log timed;
    client_body_temp_path $dir/tmp/body;
    proxy_temp_path $dir/tmp/proxy;
    fastcgi_temp_path $dir/tmp/fastcgi;
    uwsgi_temp_path $dir/tmp/uwsgi;
    scgi_temp_path $dir/tmp/scgi;
    limit_req_zone \$binary_remote_addr zone=api:1m rate=50r/s;
    server {
        listen 127.0.0.1:$PORT;
        limit_req zone=api burst=10;
        limit_req_status 429;
        $1
        location / { root $WORK/www; default_type application/json; }
    }
}
EOF
    "$NGINX" -p "$dir" -c "$dir/nginx.conf" &
    NGINX_PID=$!
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && return 0
        sleep 0.05
    done
    echo "nginx never opened port $PORT" >&2
    return 1
}

stop_nginx() {
    kill "$NGINX_PID" 2>/dev/null || true
    wait "$NGINX_PID" 2>/dev/null || true
    NGINX_PID=
}

for _ in $(seq "$N"); do echo "http://127.0.0.1:$PORT/ok.json"; done >"$WORK/in.txt"

printf '| case | run | makespan (s) | vs ideal 20 s | 429s at nginx | records ok |\n|---|---|---|---|---|---|\n' \
    >"$WORK/table"
for case in retry-after no-retry-after; do
    extra=""
    [[ $case == retry-after ]] && extra="add_header Retry-After 1 always;"
    for run in $(seq "$RUNS"); do
        start_nginx "$extra"
        sleep 1.2 # the zone starts empty: no burst left over from a run before
        out=$WORK/$case-$run.jsonl
        # shellcheck disable=SC2086 # ARGS: extra options, split on spaces
        "$SLUICE" run "$WORK/in.txt" -c 15 -o "$out" --progress never ${ARGS:-} \
            2>"$WORK/$case-$run.err" || true
        sleep 0.3 # nginx writes a line when it has finished with a request
        stop_nginx
        read -r makespan refused < <(awk '
            NR == 1 { first = $1 }
            $2 == 200 { last = $1 }
            $2 == 429 { refused++ }
            END { printf "%.2f %d\n", last - first, refused }' "$WORK/nginx/access.log")
        ok=$(grep -c '"ok":true' "$out" || true)
        ratio=$(echo "$makespan / 20" | bc -l)
        printf '| %s | %s | %s | %.3f× | %s | %s |\n' "$case" "$run" "$makespan" "$ratio" \
            "$refused" "$ok" >>"$WORK/table"
        log "$case run $run: $makespan s, $refused refused, $ok ok"
    done
done
cat "$WORK/table"
