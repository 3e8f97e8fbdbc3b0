#!/usr/bin/env bash
# Proxy throughput: Tether's authenticated proxy against nginx doing the same hop (add an
# Authorization header, forward to an upstream on loopback), measured side by side with wrk.
#
#   scripts/bench-proxy.sh            # 10 s per run, 64 connections
#   DURATION=20s CONNECTIONS=128 scripts/bench-proxy.sh
#
# Everything listens on 127.0.0.1 only and is stopped by pid at the end. Needs nginx and wrk
# (Debian packages: apt-get install nginx wrk) and builds Tether in release mode.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-64}
THREADS=${THREADS:-2}
for tool in nginx wrk curl; do
  command -v "$tool" >/dev/null || { echo "bench-proxy: $tool is missing (apt-get install nginx wrk curl)" >&2; exit 1; }
done

cargo build --release -p tether-cli --quiet
work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  [ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
UPSTREAM=$(free_port); NGINX_PROXY=$(free_port); TETHER=$(free_port)

# One nginx: an upstream that answers a fixed JSON body, and the reference proxy in front of it.
cat > "$work/nginx.conf" <<CONF
worker_processes 1;
pid $work/nginx.pid;
error_log $work/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  upstream crm { server 127.0.0.1:$UPSTREAM; keepalive 256; }
  server {
    listen 127.0.0.1:$UPSTREAM;
    location / { default_type application/json; return 200 '{"deals":[{"id":1,"title":"Benchmark deal","value":1000}]}'; }
  }
  server {
    listen 127.0.0.1:$NGINX_PROXY;
    location / {
      proxy_pass http://crm;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Authorization "Bearer benchmark-access-token";
      proxy_set_header Cookie "";
    }
  }
}
CONF
nginx -c "$work/nginx.conf" -p "$work"

cat > "$work/tether.toml" <<CONF
[server]
listen = "127.0.0.1:$TETHER"

[database]
url = "sqlite://$work/tether.db"

[integrations.crm]
provider = "oauth2"
client_id = "bench"
client_secret = "bench-secret"
authorization_url = "http://127.0.0.1:$UPSTREAM/oauth/authorize"
token_url = "http://127.0.0.1:$UPSTREAM/oauth/token"
api_base_url = "http://127.0.0.1:$UPSTREAM"
CONF
(cd "$work" && TETHER_API_KEY=bench-key-0123456789abcdef0123456789 RUST_LOG=warn exec "$OLDPWD/target/release/tether" --config tether.toml serve >"$work/tether.out" 2>&1) &
pids+=($!)
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$TETHER/health" >/dev/null && break; sleep 0.1; done

# A connection whose token is fresh for a day, so the hot path never refreshes.
conn=$(curl -sf -X POST "http://127.0.0.1:$TETHER/v1/connections" -H 'Authorization: Bearer bench-key-0123456789abcdef0123456789' \
  -H 'Content-Type: application/json' \
  -d '{"integration":"crm","end_user":{"id":"bench"},"credentials":{"access_token":"benchmark-access-token","expires_in":86400}}' \
  | sed -E 's/.*"id":"([^"]+)".*/\1/')
tether_url="http://127.0.0.1:$TETHER/v1/proxy/$conn/v1/deals"
nginx_url="http://127.0.0.1:$NGINX_PROXY/v1/deals"
curl -sf "$tether_url" -H 'Authorization: Bearer bench-key-0123456789abcdef0123456789' | grep -q 'Benchmark deal'
curl -sf "$nginx_url" | grep -q 'Benchmark deal'

rps() { wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" "$@" | awk '/Requests\/sec/ {print $2}'; }
echo "warming up..."
rps -d3s "$nginx_url" >/dev/null; rps -d3s -H 'Authorization: Bearer bench-key-0123456789abcdef0123456789' "$tether_url" >/dev/null
# Alternating rounds, so a noisy neighbour hurts both sides alike; the median ratio is quoted.
ratios=()
for round in 1 2 3; do
  nginx_rps=$(rps "$nginx_url")
  tether_rps=$(rps -H 'Authorization: Bearer bench-key-0123456789abcdef0123456789' "$tether_url")
  ratio=$(python3 -c "print(f'{float($tether_rps)/float($nginx_rps):.2f}')")
  ratios+=("$ratio")
  echo "round $round: nginx $nginx_rps req/s, tether $tether_rps req/s, ratio $ratio"
done
median=$(printf '%s\n' "${ratios[@]}" | sort -n | sed -n 2p)
echo "median ratio tether/nginx: $median  ($THREADS wrk threads, $CONNECTIONS connections, $DURATION per run)"
