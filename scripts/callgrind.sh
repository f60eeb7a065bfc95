#!/usr/bin/env bash
# Instructions per call, counted by valgrind's callgrind: repeatable on a shared, noisy machine
# (the same binary and load give the same count whatever else runs), where timings are not.
#
#   bash scripts/callgrind.sh               # release build; chain of 1 (authenticate, STOP_AND_RETURN)
#   CALLS_WINDOW=6s bash scripts/callgrind.sh
#
# For each process that serves the call -- the provider alone (X, the physical reference of
# issue 11: one HTTP/2 server side, decode, encode), the h2 crate alone answering a fixed reply
# (the HTTP/2 floor of one side), haproxy (proto h2 on both sides) in front of the provider,
# and the gateway in front of it -- the process runs under callgrind, a warm-up load
# opens every connection, the counters are zeroed, the load generator makes calls for
# CALLS_WINDOW (1 connection, 4 in flight), and the counters are dumped: instructions / calls.
# User-space instructions only: system calls are counted as one instruction each, so this
# complements the benchmark's CPU seconds (which include the kernel's share), it does not
# replace them. The profiles stay in target/callgrind/ (callgrind_annotate FILE).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "error: valgrind is needed (apt-get install valgrind)"; exit 1; }
window="${CALLS_WINDOW:-4s}"
target_dir="${CARGO_TARGET_DIR:-target}"
cargo build --release -q -p exhook-gateway -p exhook-loadgen -p exhook-benches --bin h2-floor
bin="$target_dir/release"
out="$target_dir/callgrind"
rm -rf "$out" && mkdir -p "$out"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 1 600); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 never opened"; exit 1; }

# Starts "$@" under callgrind (output file $1), records its pid in $vg_pid.
under_callgrind() {
  local file=$1; shift
  valgrind --tool=callgrind --callgrind-out-file="$file" --dump-instr=no \
    "$@" >"$file.log" 2>&1 &
  vg_pid=$!
  pids+=("$vg_pid")
}

# Loads $1 for the window after a warm-up; prints "instructions calls" of the callgrind
# process $2 whose output file is $3 (a dump after zeroing holds the window's counts only).
measure() {
  local url=$1 pid=$2 file=$3 extra=${4:-}
  # shellcheck disable=SC2086 # $extra: optional loadgen flags
  "$bin/exhook-loadgen" --target "$url" --connections 1 --inflight 4 --duration 1s --warmup 0s $extra >/dev/null
  callgrind_control -z "$pid" >/dev/null
  local json
  # shellcheck disable=SC2086
  json=$("$bin/exhook-loadgen" --target "$url" --connections 1 --inflight 4 --duration "$window" --warmup 0s --json $extra 2>/dev/null)
  callgrind_control -d "$pid" >/dev/null
  local calls ir dump
  calls=$(python3 -c 'import json,sys; r=json.loads(sys.argv[1]); assert r["errors"] == 0, r["error_samples"]; print(r["total_calls"])' "$json")
  dump=$(ls -t "$file".* | grep -v '\.log$' | head -1)
  ir=$(awk '/^(summary|totals):/ {print $2; exit}' "$dump")
  echo "$ir $calls"
}

report=()
# 1. The provider alone (X).
pport=$(free_port)
under_callgrind "$out/provider.out" "$bin/exhook-bench-provider" --provider name=auth,package=v3,answer=stop --port "$pport" --threads 1
ppid=$vg_pid; wait_port "$pport"
read -r ir calls < <(measure "http://127.0.0.1:$pport" "$ppid" "$out/provider.out")
report+=("provider (X)|$ir|$calls")
kill "$ppid"; wait "$ppid" 2>/dev/null || true

# 1b. The HTTP/2 layer alone (benches/src/bin/h2-floor.rs: h2 answering a fixed reply).
fport=$(free_port)
under_callgrind "$out/h2-floor.out" "$bin/h2-floor" --port "$fport"
fpid=$vg_pid; wait_port "$fport"
# It answers every path with the ValuedResponse: no OnProviderLoaded first.
read -r ir calls < <(measure "http://127.0.0.1:$fport" "$fpid" "$out/h2-floor.out" --no-load)
report+=("h2 server alone|$ir|$calls")
kill "$fpid"; wait "$fpid" 2>/dev/null || true

# The provider, plain, behind the middles.
"$bin/exhook-bench-provider" --provider name=auth,package=v3,answer=stop --port "$pport" >/dev/null 2>&1 &
pids+=($!); wait_port "$pport"

# 2. haproxy in front of it.
if command -v haproxy >/dev/null; then
  hport=$(free_port)
  cat >"$out/haproxy.cfg" <<EOF
global
    nbthread 1
defaults
    mode http
    timeout connect 1s
    timeout client 30s
    timeout server 30s
frontend emqx
    bind 127.0.0.1:$hport proto h2
    default_backend provider
backend provider
    server p 127.0.0.1:$pport proto h2
EOF
  under_callgrind "$out/haproxy.out" haproxy -db -f "$out/haproxy.cfg"
  hpid=$vg_pid; wait_port "$hport"
  read -r ir calls < <(measure "http://127.0.0.1:$hport" "$hpid" "$out/haproxy.out")
  report+=("haproxy|$ir|$calls")
  kill "$hpid"; wait "$hpid" 2>/dev/null || true
else
  report+=("haproxy|skipped (not installed)|")
fi

# 3. The gateway in front of it (default configuration but the ports).
gport=$(free_port); aport=$(free_port)
cat >"$out/gateway.toml" <<EOF
[server]
listen = "127.0.0.1:$gport"
[admin]
listen = "127.0.0.1:$aport"
[[providers]]
name = "auth"
url = "http://127.0.0.1:$pport"
protocol = "v3"
[chains]
"client.authenticate" = ["auth"]
EOF
under_callgrind "$out/gateway.out" "$bin/exhook-gateway" run --config "$out/gateway.toml"
gpid=$vg_pid; wait_port "$gport"
read -r ir calls < <(measure "http://127.0.0.1:$gport" "$gpid" "$out/gateway.out")
report+=("gateway|$ir|$calls")
kill -TERM "$gpid"; wait "$gpid" 2>/dev/null || true

x=""
printf '%-14s %16s %8s %14s %8s\n' process instructions calls "per call" "× X"
for line in "${report[@]}"; do
  IFS='|' read -r name ir calls <<<"$line"
  if [ -z "$calls" ]; then printf '%-14s %s\n' "$name" "$ir"; continue; fi
  per=$((ir / calls))
  [ -z "$x" ] && x=$per
  printf '%-14s %16s %8s %14s %8s\n' "$name" "$ir" "$calls" "$per" "$(python3 -c "print(f'{$per/$x:.2f}')")"
done | tee "$out/report.txt"
