#!/usr/bin/env bash
# sluice against a real nginx: the transport scenarios, in one
# command. Not part of CI (CI has no nginx).
#
#   bash bench/nginx-transport.sh            # every scenario
#   bash bench/nginx-transport.sh 1a 3b      # only these
#
# Installs nginx (Debian's, apt-get) if it is missing, builds the release
# binary, starts one `sluice mock` as nginx's backend, and for each scenario
# runs its own nginx (`daemon off`, loopback high ports, stopped by its PID)
# with the scenario's directives. Every request carries its id in the query
# string and nginx logs one line per request it received, so the table can
# say which failed requests were reported `maybe_applied` although nginx
# never received them ("phantom": must be 0).
#
#   scenario      what
#   1a h1         500 POSTs to a 50 ms backend, HTTP/1.1 -c 50 (the reference time)
#   1a h2c        the same over --http2 (prior knowledge), http2_max_concurrent_streams 10
#   1a h1tls      the same over https (HTTP/1.1, self-signed, --cacert)
#   1a h2tls      the same over https (ALPN h2)
#   1b            1,000 POSTs, --http2 -c 200 --timeout 500ms, 10 streams (also with -k)
#   1c            1,000 POSTs, --http2 -c 200, nginx's default 128 streams
#   2a            2,000 POSTs, --http2 -c 200, keepalive_requests 100
#   2b            5,000 POSTs, --http2 -c 200, nginx's defaults (1000)
#   3a            28 POSTs at 1/s, HTTP/1.1 and HTTP/2, keepalive_timeout 1s
#   3b            400 POSTs, HTTP/1.1 -c 20, keepalive_timeout 1s, limit_req 429 + Retry-After: 1
#   4 h1 / 4 h2   GET and POST to `return 444` (error kind, attempts)
#
# Environment: CARGO_TARGET_DIR (default: the repository's target/),
# SLUICE (a sluice binary to use instead of building), KEEP=1 keeps the work
# directory.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
log() { printf '[nginx %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

# --- tools -------------------------------------------------------------------
# shellcheck source=bench/nginx-common.sh
source bench/nginx-common.sh
for tool in jq openssl curl; do
    command -v "$tool" >/dev/null || { echo "nginx-transport: $tool is required" >&2; exit 2; }
done

WORK=$(mktemp -d /tmp/sluice-nginx.XXXXXX)
MOCK_PID= NGINX_PID=
cleanup() {
    local status=$?
    [[ -n $NGINX_PID ]] && kill "$NGINX_PID" 2>/dev/null && wait "$NGINX_PID" 2>/dev/null || true
    [[ -n $MOCK_PID ]] && kill "$MOCK_PID" 2>/dev/null && wait "$MOCK_PID" 2>/dev/null || true
    [[ ${KEEP:-0} == 1 ]] && log "work directory kept: $WORK" || rm -rf "$WORK"
    exit "$status"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done; echo "port $1 never opened" >&2; return 1; }

openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost \
    -addext 'subjectAltName=DNS:localhost,IP:127.0.0.1' \
    -keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2>/dev/null

MOCK_PORT=$(free_port)
"$SLUICE" mock --listen "127.0.0.1:$MOCK_PORT" >"$WORK/mock.log" 2>&1 &
MOCK_PID=$!
wait_port "$MOCK_PORT"
H1=$(free_port) H2C=$(free_port) TLS=$(free_port)

# start_nginx SERVER_DIRECTIVES [HTTP_DIRECTIVES]: a fresh nginx, empty log.
start_nginx() {
    local dir=$WORK/nginx
    rm -rf "$dir" && mkdir -p "$dir/tmp"
    local user=""
    [[ $EUID == 0 ]] && user="user root;"
    cat >"$dir/nginx.conf" <<EOF
daemon off;
$user
worker_processes 1;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
worker_rlimit_nofile 20000;
events { worker_connections 10000; }
http {
    log_format probe '\$request_id \$connection \$connection_requests \$status \$request_method \$request_uri \$server_protocol';
    access_log $dir/access.log probe;
    client_body_temp_path $dir/tmp/body;
    proxy_temp_path $dir/tmp/proxy;
    fastcgi_temp_path $dir/tmp/fastcgi;
    uwsgi_temp_path $dir/tmp/uwsgi;
    scgi_temp_path $dir/tmp/scgi;
    gzip on; gzip_types application/json text/plain; gzip_min_length 20;
    upstream mock { server 127.0.0.1:$MOCK_PORT; keepalive 512; }
    ${2:-}
    server {
        listen 127.0.0.1:$H1;
        listen 127.0.0.1:$H2C http2;
        listen 127.0.0.1:$TLS ssl http2;
        ssl_certificate $WORK/cert.pem;
        ssl_certificate_key $WORK/key.pem;
        $1
        location = /drop { return 444; }
        location / {
            proxy_pass http://mock;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
EOF
    "$NGINX" -p "$dir" -c "$dir/nginx.conf" &
    NGINX_PID=$!
    wait_port "$H1"; wait_port "$H2C"; wait_port "$TLS"
}

stop_nginx() {
    kill "$NGINX_PID" 2>/dev/null || true
    wait "$NGINX_PID" 2>/dev/null || true
    NGINX_PID=
}

# requests N METHOD BASE PATH: N JSON request lines, id r<i> in the query.
requests() {
    local n=$1 method=$2 base=$3 path=$4
    jq -nc --argjson n "$n" --arg m "$method" --arg u "$base$path" \
        'range($n) | {id: "r\(.)", method: $m, url: "\($u)?id=r\(.)", body: {n: .}}'
}

printf '%-8s %-6s %-44s %6s %6s %6s %6s %8s %8s %8s %s\n' \
    scenario proto what requests ok failed maybe rcvd phantom time errors >"$WORK/table"

# run NAME PROTO WHAT N METHOD PATH [sluice options...]: one sluice run
# against the running nginx, and its line of the table.
run() {
    local name=$1 proto=$2 what=$3 n=$4 method=$5 path=$6
    shift 6
    local base extra=()
    case $proto in
        h1) base=http://127.0.0.1:$H1 ;;
        h1tls) base=https://localhost:$TLS extra=(--cacert "$WORK/cert.pem") ;;
        h2c) base=http://127.0.0.1:$H2C extra=(--http2) ;;
        h2tls) base=https://localhost:$TLS extra=(--http2 --cacert "$WORK/cert.pem") ;;
    esac
    RUNS=$((RUNS + 1))
    local out=$WORK/$RUNS-$name-$proto.jsonl
    requests "$n" "$method" "$base" "$path" >"$WORK/in.jsonl"
    : >"$WORK/nginx/access.log"
    local t0 t1
    t0=$(date +%s.%N)
    "$SLUICE" run "$WORK/in.jsonl" -o "$out" --progress never "${extra[@]}" "$@" \
        --summary-json "${out%.jsonl}.summary.json" 2>"${out%.jsonl}.err" || true
    t1=$(date +%s.%N)
    sleep 0.3 # nginx writes a line when it has finished with a request
    cp "$WORK/nginx/access.log" "${out%.jsonl}.access.log"
    local ok failed maybe rcvd phantom errors
    ok=$(jq -s 'map(select(.ok)) | length' "$out")
    failed=$(jq -s 'map(select(.ok | not)) | length' "$out")
    maybe=$(jq -s 'map(select(.error.maybe_applied == true)) | length' "$out")
    { grep -o 'id=r[0-9]*' "$WORK/nginx/access.log" || true; } | sort -u | sed 's/id=//' >"$WORK/received"
    rcvd=$(grep -c . "$WORK/nginx/access.log" || true)
    phantom=$(jq -r 'select(.error.maybe_applied == true) | .id' "$out" | sort \
        | comm -23 - "$WORK/received" | grep -c . || true)
    errors=$(jq -r 'select(.ok | not) | "\(.error.kind)/\(.attempts)"' "$out" | sort | uniq -c \
        | awk '{printf "%s%s×%s", (NR>1?",":""), $2, $1}')
    printf '%-8s %-6s %-44s %6s %6s %6s %6s %8s %8s %8.2f %s\n' "$name" "$proto" "$what" "$n" \
        "$ok" "$failed" "$maybe" "$rcvd" "$phantom" "$(echo "$t1 - $t0" | bc)" "${errors:--}" \
        | tee -a "$WORK/table" >&2
}

SELECTED="$*" RUNS=0
sel() { [[ -z $SELECTED ]] || [[ " $SELECTED " == *" $1 "* ]]; }

if sel 1a; then
    start_nginx 'http2_max_concurrent_streams 10;'
    run 1a h1 "500 POST /delay/0.05 -c 50" 500 POST /delay/0.05 -c 50
    run 1a h1tls "same, over TLS" 500 POST /delay/0.05 -c 50
    run 1a h2c "same, 10 streams" 500 POST /delay/0.05 -c 50
    run 1a h2tls "same, 10 streams" 500 POST /delay/0.05 -c 50
    run 1a h2tls "same, 10 streams, -k" 500 POST /delay/0.05 -c 50 -k
    stop_nginx
fi
if sel 1b; then
    start_nginx 'http2_max_concurrent_streams 10;'
    run 1b h2c "1000 POST -c 200 --timeout 500ms, 10 streams" 1000 POST /delay/0.05 -c 200 --timeout 500ms
    run 1b h2tls "same" 1000 POST /delay/0.05 -c 200 --timeout 500ms
    run 1b h2tls "same, -k" 1000 POST /delay/0.05 -c 200 --timeout 500ms -k
    stop_nginx
fi
if sel 1c; then
    start_nginx ''
    run 1c h2c "1000 POST -c 200, 128 streams" 1000 POST /delay/0.05 -c 200
    run 1c h2tls "same" 1000 POST /delay/0.05 -c 200
    stop_nginx
fi
if sel 2a; then
    start_nginx 'keepalive_requests 100;'
    run 2a h2c "2000 POST -c 200, keepalive_requests 100" 2000 POST /fast -c 200
    run 2a h2tls "same" 2000 POST /fast -c 200
    stop_nginx
fi
if sel 2b; then
    start_nginx ''
    run 2b h2c "5000 POST -c 200, nginx defaults" 5000 POST /fast -c 200
    run 2b h2tls "same" 5000 POST /fast -c 200
    stop_nginx
fi
if sel 3a; then
    start_nginx 'keepalive_timeout 1s;'
    run 3a h1 "28 POST at --rate 1/s, keepalive_timeout 1s" 28 POST /fast --rate 1/s
    run 3a h2c "same over HTTP/2" 28 POST /fast --rate 1/s
    stop_nginx
fi
if sel 3b; then
    start_nginx 'keepalive_timeout 1s;
        limit_req zone=z burst=10 nodelay; limit_req_status 429;
        add_header Retry-After 1 always;' \
        'limit_req_zone $binary_remote_addr zone=z:1m rate=40r/s;'
    run 3b h1 "400 POST -c 20, 429 Retry-After 1 = keep-alive" 400 POST /fast -c 20
    stop_nginx
fi
if sel 4; then
    start_nginx ''
    for proto in h1 h2c h2tls; do
        run 4 "$proto" "GET return 444 (retries 2)" 3 GET /drop --retries 2 --backoff-initial 10ms
        run 4 "$proto" "POST return 444" 3 POST /drop
    done
    stop_nginx
fi
[[ -n ${EXTRA:-} ]] && source "$EXTRA"

echo
cat "$WORK/table"
echo "phantom = failed with maybe_applied although nginx never logged the request (must be 0);"
echo "rcvd = lines in nginx's access log (one per request received, retries included)."
