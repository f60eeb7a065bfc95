#!/usr/bin/env bash
# The long fuzz run: every cargo-fuzz target (or those named) for SECONDS each, one after the
# other, at the lowest CPU priority, then a table of executions, exec/s and coverage.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]      # default: 180 s each, all seven targets
#
# Needs cargo-fuzz (`cargo install cargo-fuzz --locked`) and a nightly toolchain; with only
# stable, set FUZZ_TOOLCHAIN=stable and it builds with RUSTC_BOOTSTRAP=1.
#
# Each target grows a copy of its seeds in fuzz/grown/<target>/ (the checked-in
# fuzz/corpus/<target>/ holds only the seeds and is never written); crashes land in
# fuzz/artifacts/<target>/, logs in fuzz/logs/. A crash reproducer belongs in
# fuzz/regressions/<target>/ once fixed: the test suite replays those forever.
set -euo pipefail

seconds=${1:-180}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(requests grpc_frame server grpc_timeout replies config topic)
fi

cd "$(dirname "$0")/../fuzz"
toolchain=${FUZZ_TOOLCHAIN:-nightly}
# Lowest CPU priority: the machine is shared with builds and tests.
fuzz() {
    if [ "$toolchain" = nightly ]; then
        nice -n 19 cargo +nightly fuzz "$@"
    else
        RUSTC_BOOTSTRAP=1 nice -n 19 cargo "+$toolchain" fuzz "$@"
    fi
}

# Built once, then the binaries are run directly: `cargo fuzz run` would rebuild whatever
# changed in the tree between two targets.
fuzz build
host=$(rustc -vV | sed -n 's/^host: //p')
mkdir -p logs grown
for t in "${targets[@]}"; do
    mkdir -p "grown/$t" "artifacts/$t"
    echo "== $t: ${seconds}s" >&2
    # -timeout: an input slower than 10 s is a hang; -rss_limit_mb: a leak or a bomb.
    nice -n 19 "target/$host/release/$t" -artifact_prefix="artifacts/$t/" \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=4096 -print_final_stats=1 \
        "grown/$t" "corpus/$t" >"logs/$t.log" 2>&1 ||
        echo "!! $t failed: see fuzz/logs/$t.log and fuzz/artifacts/$t/" >&2
done

printf '| target | executions | seconds | exec/s | cov | ft | corpus (files/bytes) | crashes |\n|---|---|---|---|---|---|---|---|\n'
for t in "${targets[@]}"; do
    log="logs/$t.log"
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo '?')
    rate=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo '?')
    last=$(grep -E '^#[0-9]+' "$log" | tail -1)
    cov=$(sed -E 's/.*cov: ([0-9]+).*/\1/' <<<"$last")
    ft=$(sed -E 's/.*ft: ([0-9]+).*/\1/' <<<"$last")
    corp=$(sed -E 's/.*corp: ([0-9]+\/[0-9a-zA-Z]+).*/\1/' <<<"$last")
    done_line=$(grep -o 'Done [0-9]* runs in [0-9]* second' "$log" | grep -o 'in [0-9]*' | grep -o '[0-9]*' || echo "$seconds")
    crashes=$(find "artifacts/$t" -type f 2>/dev/null | wc -l)
    printf '| %s | %s | %s | %s | %s | %s | %s | %s |\n' "$t" "$runs" "$done_line" "$rate" "$cov" "$ft" "$corp" "$crashes"
done
