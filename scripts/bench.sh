#!/usr/bin/env bash
# Benchmarks: what the gateway costs, measured side by side in one run against the obvious
# alternatives (direct calls, nginx grpc_pass, haproxy h2) on this machine.
#
#   bash scripts/bench.sh                 # release build; 3 rounds x 3 s per scenario and shape
#   bash scripts/bench.sh --smoke         # debug build; ~1 s per scenario; non-zero on any error (CI)
#   bash scripts/bench.sh --micro         # criterion micro-benchmarks (fold, conversion, topic match)
#   bash scripts/bench.sh --rounds 2 --duration 5s --only A,B,C
#
# Other arguments go to the runner (target/<profile>/compare --help). nginx and haproxy are
# installed from Debian's packages when missing (their scenarios are skipped, and reported,
# if that fails). Results: target/bench-report/{report.txt,results.json,chart.svg}.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ "${1:-}" == "--micro" ]]; then
  shift
  exec cargo bench -p exhook-benches "$@"
fi

target_dir="${CARGO_TARGET_DIR:-target}"
profile=release
for arg in "$@"; do
  if [[ "$arg" == "--smoke" ]]; then profile=debug; fi
done

if [[ "$profile" == release ]]; then
  cargo build --release -p exhook-gateway -p exhook-loadgen -p exhook-benches
  exec "$target_dir/release/compare" "$@"
else
  cargo build -p exhook-gateway -p exhook-loadgen -p exhook-benches
  exec "$target_dir/debug/compare" "$@"
fi
