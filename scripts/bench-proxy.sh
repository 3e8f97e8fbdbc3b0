#!/usr/bin/env bash
# Tether's hot paths, measured side by side in one run and printed as one table:
#   - direct to the upstream, nginx as the same hop (adds a Bearer header, keep-alive pool),
#     Tether's proxy: ROUNDS alternating rounds, the median ratio Tether/nginx quoted. The
#     upstream runs in its own nginx; the hop runs in two more, as an operator would run it:
#     one worker per serving thread Tether uses, and `worker_processes auto`. The ratio is
#     quoted against the faster of the two in each round, so the reference is never handicapped;
#   - GET /v1/connections/{id}/credentials cycling through 1, 1k, 100k and 1M stored
#     connections (the cache holds [cache] capacity of them; the rest are misses), and the
#     proxy cycling through 1 and all of them;
#   - Tether's RSS idle, and its peak with LOAD_CONNECTIONS concurrent proxied connections;
#   - the time from starting `tether serve` (on the database with every row) to `/ready`.
#
#   scripts/bench-proxy.sh                        # 1M connections, 5 s per run
#   CONNECTIONS_STORED=100000 DURATION=10s scripts/bench-proxy.sh
#   SERVE_THREADS=1 scripts/bench-proxy.sh        # Tether on one serving thread ([server] threads)
#   MAX_IN_FLIGHT=0 scripts/bench-proxy.sh        # no cap per provider host ([proxy] max_in_flight_per_host)
#   PROFILE=1 scripts/bench-proxy.sh              # also `perf record` Tether's proxy run
#   PROFILE=misses scripts/bench-proxy.sh         # ... or its credentials read through all rows
#   PROFILE=1 KEEP_PERF=perf.data scripts/bench-proxy.sh   # keep the recording for perf report
#   PROFILE=1 PERF_CALLGRAPH="--call-graph dwarf" ...       # callers without frame pointers
#   NO_BUILD=1 scripts/bench-proxy.sh             # measure target/release as it is, without building
#   SYSCALLS=1 scripts/bench-proxy.sh             # also system calls per request: Tether's proxy
#                                                  # and the nginx hop's workers, under strace -c
#   TETHER_BIN=/path/to/other/tether scripts/bench-proxy.sh   # measure another build
#   BASELINE_BIN=/path/to/older/tether scripts/bench-proxy.sh # ... and an older one beside it,
#                                                  # in the same rounds (same schema: seeded by
#                                                  # this build's generator)
#   BASELINE_DIR=/path/to/older/checkout scripts/bench-proxy.sh # ... or one built from a checkout
#
# Needs (Debian): apt-get install nginx wrk curl sqlite3 python3 (and linux-perf for PROFILE).
# Builds Tether and the row generator in release mode. Everything listens on 127.0.0.1 only,
# every run is bounded by DURATION, and every process started here is stopped by pid. The
# rows are written straight into SQLite (examples/bench_connections.rs), not through the API.
# Not part of CI: the figures depend on the machine and on whatever else runs on it.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

DURATION=${DURATION:-5s}
THREADS=${THREADS:-1}
CONNECTIONS=${CONNECTIONS:-16}
ROUNDS=${ROUNDS:-3}
CONNECTIONS_STORED=${CONNECTIONS_STORED:-1000000}
LOAD_CONNECTIONS=${LOAD_CONNECTIONS:-1000}
BASELINE_STORED=${BASELINE_STORED:-1000}
for tool in nginx wrk curl sqlite3 python3; do
  command -v "$tool" >/dev/null || { echo "bench-proxy: $tool is missing (apt-get install nginx wrk curl sqlite3 python3)" >&2; exit 1; }
done
if [ -n "${SYSCALLS:-}" ]; then
  command -v strace >/dev/null || { echo "bench-proxy: SYSCALLS needs strace (apt-get install strace)" >&2; exit 1; }
fi
if [ -n "${PROFILE:-}" ]; then
  command -v perf >/dev/null || { echo "bench-proxy: PROFILE needs perf (apt-get install linux-perf)" >&2; exit 1; }
fi
[ "$(ulimit -n)" -gt $((LOAD_CONNECTIONS * 3)) ] || ulimit -n $((LOAD_CONNECTIONS * 3 + 1024))

# NO_BUILD=1: use the release build as it is (say, while the tree is being changed and rebuilt).
[ -n "${NO_BUILD:-}" ] || cargo build --release --quiet -p tether-cli -p tether-server --bins --example bench_connections
TETHER_BIN=${TETHER_BIN:-$root/target/release/tether}   # another build to compare, e.g. without mimalloc
work=$(mktemp -d)
tether_pid=""
baseline_pid=""
cleanup() {
  [ -n "$tether_pid" ] && kill "$tether_pid" 2>/dev/null || true
  [ -n "$baseline_pid" ] && kill "$baseline_pid" 2>/dev/null || true
  for conf in upstream hop hop-auto; do
    [ -f "$work/$conf.pid" ] && kill "$(cat "$work/$conf.pid")" 2>/dev/null || true
  done
  if [ -n "${KEEP_PERF:-}" ] && [ -f "$work/perf.data" ]; then cp "$work/perf.data" "$KEEP_PERF" || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

. "$root/scripts/bench-lib.sh"
UPSTREAM=$(free_port); NGINX_PROXY=$(free_port); NGINX_AUTO=$(free_port); TETHER=$(free_port); BASELINE=$(free_port)
KEY=bench-key-0123456789abcdef0123456789

# Three nginx processes: the upstream, which answers a fixed JSON body, and two reference hops
# in front of it, each in its own process as an operator would run one (a hop sharing its
# process with the upstream it calls would be a handicapped reference).
HOP_WORKERS=${SERVE_THREADS:-$(nproc)}
UPSTREAM_WORKERS=${UPSTREAM_WORKERS:-1}
nginx_conf() { # name, worker_processes, server block
  cat > "$work/$1.conf" <<CONF
worker_processes $2;
pid $work/$1.pid;
error_log $work/$1.error.log warn;
events { worker_connections 8192; }
http {
  access_log off;
  upstream crm { server 127.0.0.1:$UPSTREAM; keepalive 256; }
  $3
}
CONF
  nginx -c "$work/$1.conf" -p "$work"
}
hop_server() { # port
  cat <<CONF
server {
    listen 127.0.0.1:$1;
    keepalive_requests 1000000;
    location / {
      proxy_pass http://crm;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Authorization "Bearer benchmark-access-token";
      proxy_set_header Cookie "";
    }
  }
CONF
}
nginx_conf upstream "$UPSTREAM_WORKERS" "server {
    listen 127.0.0.1:$UPSTREAM;
    keepalive_requests 1000000;
    location / { default_type application/json; return 200 '{\"deals\":[{\"id\":1,\"title\":\"Benchmark deal\",\"value\":1000}]}'; }
  }"
nginx_conf hop "$HOP_WORKERS" "$(hop_server "$NGINX_PROXY")"
nginx_conf hop-auto auto "$(hop_server "$NGINX_AUTO")"

tether_toml() { # name, port
  write_tether_toml "$work/$1.toml" "$2" "$UPSTREAM" "$work/$1.db" $((LOAD_CONNECTIONS + 64))
}
TETHER_ENCRYPTION_KEYS=$("$root/target/release/tether" keys generate)
export TETHER_ENCRYPTION_KEYS

seed() { # name, the build's bench_connections, count
  echo "writing $3 connections into SQLite ($1)..." >&2
  local seeded_at; seeded_at=$(date +%s.%N)
  "$2" "sqlite://$work/$1.db" crm "$3" | sqlite3 "$work/$1.db" >/dev/null
  echo "  done in $(python3 -c "print(f'{$(date +%s.%N)-$seeded_at:.1f}')") s" >&2
}
start() { # name, binary, port; sets started_pid
  (cd "$work" && exec env TETHER_API_KEY=$KEY RUST_LOG=warn \
    "$2" --config "$1.toml" serve >"$work/$1.out" 2>&1) &
  started_pid=$!
  until curl -sf "http://127.0.0.1:$3/ready" >/dev/null; do
    kill -0 "$started_pid" 2>/dev/null || { cat "$work/$1.out" >&2; exit 1; }
    sleep 0.005
  done
}

tether_toml tether "$TETHER"
seed tether "$root/target/release/examples/bench_connections" "$CONNECTIONS_STORED"
started_at=$(date +%s.%N)
start tether "$TETHER_BIN" "$TETHER"
tether_pid=$started_pid
ready_ms=$(python3 -c "print(f'{($(date +%s.%N)-$started_at)*1000:.0f}')")
rss() { awk -v f="$1" '$1 == f":" {printf "%.1f MiB", $2/1024}' "/proc/$tether_pid/status"; }
rss_idle=$(rss VmRSS)

# An older build beside this one, measured in the same rounds, on its own database: with
# BASELINE_DIR (another checkout) built there and seeded by its own generator (its schema may
# differ); with BASELINE_BIN (an older binary of the same schema) seeded by this build's.
if [ -n "${BASELINE_DIR:-}" ] || [ -n "${BASELINE_BIN:-}" ]; then
  generator=$root/target/release/examples/bench_connections
  if [ -n "${BASELINE_DIR:-}" ]; then
    (cd "$BASELINE_DIR" && cargo build --release --quiet -p tether-cli -p tether-server --bins --example bench_connections)
    generator=$BASELINE_DIR/target/release/examples/bench_connections
    BASELINE_BIN=$BASELINE_DIR/target/release/tether
  fi
  tether_toml baseline "$BASELINE"
  seed baseline "$generator" "$BASELINE_STORED"
  start baseline "$BASELINE_BIN" "$BASELINE"
  baseline_pid=$started_pid
fi

id_of() { printf 'conn_%032x' "$1"; }
conn=$(id_of 1)
direct_url="http://127.0.0.1:$UPSTREAM/v1/deals"
nginx_url="http://127.0.0.1:$NGINX_PROXY/v1/deals"
nginx_auto_url="http://127.0.0.1:$NGINX_AUTO/v1/deals"
tether_url="http://127.0.0.1:$TETHER/v1/proxy/$conn/v1/deals"
baseline_url="http://127.0.0.1:$BASELINE/v1/proxy/$conn/v1/deals"
curl -sf "$tether_url" -H "Authorization: Bearer $KEY" | grep -q 'Benchmark deal'
curl -sf "$nginx_url" | grep -q 'Benchmark deal'
curl -sf "$nginx_auto_url" | grep -q 'Benchmark deal'
[ -z "$baseline_pid" ] || curl -sf "$baseline_url" -H "Authorization: Bearer $KEY" | grep -q 'Benchmark deal'

# wrk cycling through the first N connection ids (bench-lib.sh).
write_cycle_lua "$work/cycle.lua"

# One wrk run: prints "req/s p50 p99 errors".
run() {
  local out
  out=$(wrk -t"$THREADS" -c"${C:-$CONNECTIONS}" -d"${D:-$DURATION}" --latency "$@")
  echo "$out" | awk '
    /Requests\/sec/ {rps=$2}
    $1 == "50%" {p50=$2} $1 == "99%" {p99=$2}
    /Non-2xx/ {errors+=$NF} /Socket errors/ {errors+=1}
    END {printf "%s %s %s %d\n", rps, p50, p99, errors}'
}
cycle() { run -s "$work/cycle.lua" "http://127.0.0.1:${PORT:-$TETHER}/" -- "$1" "$2" "$KEY"; }
tether_proxy() { run -H "Authorization: Bearer $KEY" "$tether_url"; }
baseline_proxy() { run -H "Authorization: Bearer $KEY" "$baseline_url"; }
faster() { python3 -c "print('$1' if float('${1%% *}') >= float('${2%% *}') else '$2')"; }
ratio() { python3 -c "print(f'{float(\"${1%% *}\")/float(\"${2%% *}\"):.2f}')"; }

echo "warming up..." >&2
D=2s run "$direct_url" >/dev/null; D=2s run "$nginx_url" >/dev/null; D=2s run "$nginx_auto_url" >/dev/null
D=2s tether_proxy >/dev/null
[ -z "$baseline_pid" ] || D=2s baseline_proxy >/dev/null

perf_pid=""
declare -a direct nginx nginx_auto tether baseline ratios baseline_ratios
for round in $(seq 1 "$ROUNDS"); do
  direct+=("$(run "$direct_url")")
  nginx+=("$(run "$nginx_url")")
  nginx_auto+=("$(run "$nginx_auto_url")")
  if [ "${PROFILE:-}" = 1 ] && [ "$round" = 1 ]; then
    perf record -F 999 ${PERF_CALLGRAPH:--g} -p "$tether_pid" -o "$work/perf.data" >/dev/null 2>&1 & perf_pid=$!
  fi
  tether+=("$(tether_proxy)")
  if [ -n "$perf_pid" ]; then kill -INT "$perf_pid"; wait "$perf_pid" || true; perf_pid=""; fi
  best=$(faster "${nginx[-1]}" "${nginx_auto[-1]}")
  ratios+=("$(ratio "${tether[-1]}" "$best")")
  line="round $round: direct ${direct[-1]%% *}, nginx hop ${nginx[-1]%% *} ($HOP_WORKERS workers) / ${nginx_auto[-1]%% *} (auto), tether ${tether[-1]%% *}"
  if [ -n "$baseline_pid" ]; then
    baseline+=("$(baseline_proxy)")
    baseline_ratios+=("$(ratio "${baseline[-1]}" "$best")")
    line="$line, baseline ${baseline[-1]%% *}"
  fi
  echo "$line req/s (ratio ${ratios[-1]}${baseline_pid:+, baseline ${baseline_ratios[-1]}})" >&2
done
median() { printf '%s\n' "$@" | sort -n | sed -n "$(( ($# + 1) / 2 ))p"; }
median_row() { # the run whose req/s is the median
  local m; m=$(median $(printf '%s\n' "$@" | cut -d' ' -f1))
  printf '%s\n' "$@" | awk -v m="$m" '$1 == m {print; exit}'
}

declare -A cycled
# 1, 1k, 100k and every stored connection, each once.
mapfile -t sizes < <(printf '%s\n' 1 1000 100000 "$CONNECTIONS_STORED" | awk -v max="$CONNECTIONS_STORED" '$1 <= max && !seen[$1]++')
for n in "${sizes[@]}"; do
  echo "credentials read cycling through $n..." >&2
  if [ "${PROFILE:-}" = misses ] && [ "$n" = "$CONNECTIONS_STORED" ]; then
    perf record -F 999 ${PERF_CALLGRAPH:--g} -p "$tether_pid" -o "$work/perf.data" >/dev/null 2>&1 & perf_pid=$!
  fi
  cycled[creds_$n]=$(cycle "$n" credentials)
  if [ -n "$perf_pid" ]; then kill -INT "$perf_pid"; wait "$perf_pid" || true; perf_pid=""; fi
done
if [ -n "$baseline_pid" ]; then
  echo "credentials read cycling through $BASELINE_STORED (baseline, then this build)..." >&2
  cycled[baseline_creds]=$(PORT=$BASELINE cycle "$BASELINE_STORED" credentials)
  cycled[tether_creds]=$(cycle "$BASELINE_STORED" credentials)
fi
for n in 1 "$CONNECTIONS_STORED"; do
  echo "proxy cycling through $n..." >&2
  cycled[proxy_$n]=$(cycle "$n" proxy)
done

rss_before_load=$(rss VmRSS)
echo "proxy with $LOAD_CONNECTIONS concurrent connections..." >&2
C=$LOAD_CONNECTIONS run -H "Authorization: Bearer $KEY" "$tether_url" >"$work/load.txt" &
load_pid=$!
peak_kib=0
while kill -0 "$load_pid" 2>/dev/null; do
  now=$(awk '$1 == "VmRSS:" {print $2}' "/proc/$tether_pid/status")
  [ "$now" -gt "$peak_kib" ] && peak_kib=$now
  sleep 0.1
done
wait "$load_pid"
load=$(cat "$work/load.txt")
rss_load=$(awk -v k="$peak_kib" 'BEGIN {printf "%.1f MiB", k/1024}')
rss_hwm=$(rss VmHWM)
rss_after=$(rss VmRSS)

row() { # name, "rps p50 p99 errors", vs-nginx
  read -r rps p50 p99 errors <<<"$2"
  printf '| %s | %s | %s | %s | %s | %s |\n' "$1" "$(python3 -c "print(f'{float(\"$rps\"):,.0f}')")" "$p50" "$p99" "$errors" "${3:-}"
}
nginx_median=$(median_row "${nginx[@]}")
nginx_auto_median=$(median_row "${nginx_auto[@]}")
best_median=$(faster "$nginx_median" "$nginx_auto_median")
echo
echo "wrk -t$THREADS -c$CONNECTIONS -d$DURATION, $ROUNDS alternating rounds (median shown), upstream nginx with $UPSTREAM_WORKERS worker(s) in its own process, $CONNECTIONS_STORED stored connections, cache capacity 10,000 (default), load average $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) CPUs, Tether serving threads ${SERVE_THREADS:-one per CPU}, in flight per provider host ${MAX_IN_FLIGHT:-256}"
echo
echo "| what | req/s | p50 | p99 | errors | vs the faster nginx hop |"
echo "|---|---|---|---|---|---|"
row "direct to the upstream" "$(median_row "${direct[@]}")"
row "nginx as the same hop, $HOP_WORKERS workers (one per Tether serving thread)" "$nginx_median" "$(ratio "$nginx_median" "$best_median")"
row "nginx as the same hop, worker_processes auto" "$nginx_auto_median" "$(ratio "$nginx_auto_median" "$best_median")"
row "Tether proxy (1 connection)" "$(median_row "${tether[@]}")" "**$(median "${ratios[@]}")** (median of ${ratios[*]})"
if [ -n "$baseline_pid" ]; then
  row "baseline build's proxy (1 connection)" "$(median_row "${baseline[@]}")" "$(median "${baseline_ratios[@]}") (median of ${baseline_ratios[*]})"
  row "credentials read, cycling through $(printf "%'d" "$BASELINE_STORED"), this build" "${cycled[tether_creds]}"
  row "credentials read, cycling through $(printf "%'d" "$BASELINE_STORED"), baseline build" "${cycled[baseline_creds]}"
fi
for n in "${sizes[@]}"; do
  [ -n "${cycled[creds_$n]:-}" ] && row "credentials read, cycling through $(printf "%'d" "$n")" "${cycled[creds_$n]}"
done
for n in 1 "$CONNECTIONS_STORED"; do
  row "proxy, cycling through $(printf "%'d" "$n")" "${cycled[proxy_$n]}" \
    "$(ratio "${cycled[proxy_$n]}" "$best_median")"
done
row "proxy, $LOAD_CONNECTIONS concurrent connections" "$load"
echo
echo "| Tether | |"
echo "|---|---|"
echo "| time to ready ($CONNECTIONS_STORED stored connections) | $ready_ms ms |"
echo "| RSS idle after start | $rss_idle |"
echo "| RSS after the cycling runs (cache full), before the load run | $rss_before_load |"
echo "| RSS peak with $LOAD_CONNECTIONS concurrent proxied connections | $rss_load |"
echo "| RSS high-water mark of the whole run (VmHWM) | $rss_hwm |"
echo "| RSS after the runs | $rss_after |"
if [ -n "${PROFILE:-}" ]; then
  echo
  echo "perf report ($([ "$PROFILE" = misses ] && echo "the credentials read through every row" || echo "round 1 of the proxy"), by symbol, self time):"
  perf report -i "$work/perf.data" --no-children --sort dso -g none --stdio 2>/dev/null | grep '%' | head -8 || true
  echo
  perf report -i "$work/perf.data" --no-children --sort dso,symbol -g none --stdio 2>/dev/null | grep '%' | cut -c1-160 | head -45 || true
  # What the hot path's metrics and tracing cost: the self time of their crates' functions.
  perf report -i "$work/perf.data" --no-children --sort symbol -g none --stdio 2>/dev/null \
    | awk '/%/ && /prometheus_client|tracing_core|tracing::|tracing_subscriber/ {sub("%", "", $1); sum += $1}
           END {printf "\nmetrics and tracing (prometheus_client, tracing*): %.2f%% of the samples\n", sum}' || true
fi

# System calls per request (SYSCALLS=1): the hop's processes under `strace -c` during one wrk
# run, the count divided by the requests wrk made. strace slows what it traces, so the req/s of
# these runs mean nothing; the counts per request are what the hop does for each request.
syscalls_per_request() { # label, pids (space-separated), then wrk's arguments
  local label=$1 pids=$2; shift 2
  local attach=() pid
  for pid in $pids; do attach+=(-p "$pid"); done
  strace -f -c -o "$work/strace.txt" "${attach[@]}" 2>/dev/null & local strace_pid=$!
  sleep 0.5
  local requests
  requests=$(wrk -t1 -c"$CONNECTIONS" -d3s "$@" | awk '/requests in/ {print $1}')
  kill -INT "$strace_pid"; wait "$strace_pid" 2>/dev/null || true
  awk -v label="$label" -v n="$requests" '
    $NF == "total" {total = $4}
    $1 ~ /^[0-9.]+$/ && NF >= 5 && $NF != "total" {calls[$NF] = $4}
    END {
      line = sprintf("| %s | %s | %.2f |", label, n, total / n)
      for (name in calls) if (calls[name] / n >= 0.05) line = line sprintf(" %s %.2f", name, calls[name] / n)
      print line " |"
    }' "$work/strace.txt"
}
if [ -n "${SYSCALLS:-}" ]; then
  echo
  echo "System calls per request (strace -c over one 3 s wrk run, -c$CONNECTIONS):"
  echo
  echo "| hop | requests | system calls per request | by call (>= 0.05 per request) |"
  echo "|---|---|---|---|"
  syscalls_per_request "nginx, $HOP_WORKERS workers" "$(pgrep -P "$(cat "$work/hop.pid")" | tr '\n' ' ')" "$nginx_url"
  syscalls_per_request "Tether proxy" "$tether_pid" -H "Authorization: Bearer $KEY" "$tether_url"
fi
