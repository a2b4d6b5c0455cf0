#!/usr/bin/env bash
# Run every fuzz target (or the ones named) for a bounded time, one after the other.
#
#   fuzz/run.sh 600                  # each target 10 minutes
#   fuzz/run.sh 60 seal_open         # one target, one minute
#
# Needs cargo-fuzz (`cargo install cargo-fuzz`) and a nightly toolchain (`rustup toolchain
# install nightly`; libFuzzer's instrumentation and AddressSanitizer use -Z flags). The
# committed seed corpus (fuzz/corpus/<target>) is only read; what the run discovers goes
# to a scratch corpus under $FUZZ_WORK (default /tmp/edge-fuzz), so the seeds stay small.
# A crash leaves its input in fuzz/artifacts/<target>/ and stops the script.
set -euo pipefail
cd "$(dirname "$0")"
secs=${1:?usage: fuzz/run.sh SECONDS [TARGET...]}
shift
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(wire_decode seal_open canonical_path request_facts plugin_config action_request)
fi
work=${FUZZ_WORK:-/tmp/edge-fuzz}
cargo +nightly fuzz build -O >/dev/null
for t in "${targets[@]}"; do
    mkdir -p "$work/$t"
    log="$work/$t.log"
    echo "== $t: ${secs} s, log $log"
    cargo +nightly fuzz run -O "$t" "$work/$t" "corpus/$t" -- \
        -max_total_time="$secs" -rss_limit_mb=6144 -print_final_stats=1 >"$log" 2>&1
    # The last status line: executions, coverage (edges), features, corpus size.
    grep -E '^#[0-9]+.*DONE' "$log" | tail -1
    grep -E '^stat::number_of_executed_units|^stat::peak_rss_mb' "$log"
done
