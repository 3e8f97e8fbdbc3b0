# Shared by bench-proxy.sh and bench-rss.sh (sourced, not run): the pieces both set up the
# same way, so the two measure the same Tether configuration.

# A free loopback port.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Tether's configuration for a benchmark: file, port, upstream port, database file, the most
# connections it keeps open. SERVE_THREADS and MAX_IN_FLIGHT, when set, go in too.
write_tether_toml() {
  cat > "$1" <<CONF
[server]
listen = "127.0.0.1:$2"
max_connections = $5
${SERVE_THREADS:+threads = $SERVE_THREADS}

[proxy]
${MAX_IN_FLIGHT:+max_in_flight_per_host = $MAX_IN_FLIGHT}

[database]
url = "sqlite://$4"

[integrations.crm]
provider = "oauth2"
client_id = "bench"
client_secret = "bench-secret"
authorization_url = "http://127.0.0.1:$3/oauth/authorize"
token_url = "http://127.0.0.1:$3/oauth/token"
api_base_url = "http://127.0.0.1:$3"
CONF
}

# The wrk script cycling through the first N connection ids (`conn_` + N as 32 hex digits),
# each wrk thread from its own offset; its arguments: N, `proxy` or `credentials`, the API key.
write_cycle_lua() { # file
  cat > "$1" <<'LUA'
local n, kind, key = 1, "credentials", ""
local i = 0
function init(args)
  n = tonumber(args[1]); kind = args[2]; key = args[3]
  i = math.random(0, n - 1)
end
function request()
  i = (i + 1) % n
  local id = string.format("conn_%032x", i + 1)
  local path
  if kind == "proxy" then path = "/v1/proxy/" .. id .. "/v1/deals" else path = "/v1/connections/" .. id .. "/credentials" end
  return wrk.format("GET", path, { ["Authorization"] = "Bearer " .. key })
end
LUA
}
