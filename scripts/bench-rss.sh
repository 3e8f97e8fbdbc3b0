#!/usr/bin/env bash
# Tether's RSS with LOAD concurrent proxied connections, without the rest of bench-proxy.sh:
# upstream nginx, Tether on STORED connections (the cache filled by proxying through CYCLE of
# them), then wrk -cLOAD for D, sampling the RSS and the upstream sockets (ss). Release builds:
#   cargo build --release -p tether-cli -p tether-server --bins --example bench_connections
#   STORED=1000 CYCLE=0 scripts/bench-rss.sh; BIN=/path/to/other/tether scripts/bench-rss.sh
# ENVX="valgrind --tool=massif --massif-out-file=/tmp/massif.out" runs Tether under massif.
set -euo pipefail
cd "$(dirname "$0")/.."; root=$PWD
BIN=${BIN:-$root/target/release/tether}
STORED=${STORED:-100000}; CYCLE=${CYCLE:-100000}; LOAD=${LOAD:-1000}; D=${D:-5s}
ulimit -n 8192
work=$(mktemp -d); tpid=""
cleanup() { [ -n "$tpid" ] && kill "$tpid" 2>/dev/null; [ -f $work/up.pid ] && kill "$(cat $work/up.pid)" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
. "$root/scripts/bench-lib.sh"
UP=$(free_port); T=$(free_port); KEY=bench-key-0123456789abcdef0123456789
cat > $work/up.conf <<CONF
worker_processes 1; pid $work/up.pid; error_log $work/up.err warn;
events { worker_connections 8192; }
http { access_log off; server { listen 127.0.0.1:$UP; keepalive_requests 1000000;
 location / { default_type application/json; return 200 '{"deals":[{"id":1,"title":"Benchmark deal","value":1000}]}'; } } }
CONF
nginx -c $work/up.conf -p $work
SERVE_THREADS=${THREADS:-} write_tether_toml "$work/t.toml" "$T" "$UP" "$work/t.db" $((LOAD + 64))
export TETHER_ENCRYPTION_KEYS=$("$BIN" keys generate)
"${GEN:-$root/target/release/examples/bench_connections}" "sqlite://$work/t.db" crm "$STORED" | sqlite3 "$work/t.db" >/dev/null
(cd $work && exec env TETHER_API_KEY=$KEY RUST_LOG=warn ${ENVX:-} "$BIN" --config t.toml serve >$work/t.out 2>&1) & tpid=$!
until curl -sf "http://127.0.0.1:$T/ready" >/dev/null; do kill -0 $tpid || { cat $work/t.out; exit 1; }; sleep 0.01; done
rss() { awk '$1=="VmRSS:"{printf "%.1f", $2/1024}' /proc/$tpid/status; }
echo "idle: $(rss) MiB"
write_cycle_lua "$work/cycle.lua"
conn=$(printf 'conn_%032x' 1)
url="http://127.0.0.1:$T/v1/proxy/$conn/v1/deals"
wrk -t1 -c16 -d2s -H "Authorization: Bearer $KEY" "$url" >/dev/null
if [ "$CYCLE" -gt 0 ]; then wrk -t1 -c16 -d${CD:-4s} -s $work/cycle.lua "http://127.0.0.1:$T/" -- "$CYCLE" proxy "$KEY" | awk '/Requests\/sec/{print "cycle req/s", $2}'; fi
echo "before load: $(rss) MiB"
wrk -t1 -c$LOAD -d$D --latency -H "Authorization: Bearer $KEY" "$url" > $work/load.txt & lp=$!
peak=0; maxup=0
while kill -0 $lp 2>/dev/null; do
  now=$(awk '$1=="VmRSS:"{print $2}' /proc/$tpid/status); [ "$now" -gt "$peak" ] && peak=$now
  up=$(ss -tnH state established "( dport = :$UP )" | wc -l); [ "$up" -gt "$maxup" ] && maxup=$up
  sleep 0.1
done
wait $lp
awk '/Requests\/sec/{print "load req/s", $2} $1=="50%"{print "p50",$2} $1=="99%"{print "p99",$2} /Non-2xx|Socket errors/' $work/load.txt
echo "peak during load: $(awk -v k=$peak 'BEGIN{printf "%.1f", k/1024}') MiB, HWM $(awk '$1=="VmHWM:"{printf "%.1f", $2/1024}' /proc/$tpid/status) MiB, max upstream sockets $maxup"
echo "after: $(rss) MiB; load $(cut -d' ' -f1-3 /proc/loadavg)"
