#!/usr/bin/env bash
# Runs every fuzz target of the protocol core for a given time each, with
# AddressSanitizer (cargo fuzz; on a stable toolchain via RUSTC_BOOTSTRAP).
# Seeds come from core/fuzz/seeds; findings land in core/fuzz/artifacts.
# Usage: scripts/fuzz.sh [seconds-per-target] [target...]   (default 60, all)
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
seconds=${1:-60}
shift || true
cd "$top/core/fuzz"
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked --quiet
export RUSTC_BOOTSTRAP=1
targets=("$@")
[ ${#targets[@]} -gt 0 ] || mapfile -t targets < <(cargo fuzz list)
cargo fuzz build -O >/dev/null 2>&1 || cargo fuzz build -O
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t"
    [ -d "seeds/$t" ] && cp -n "seeds/$t"/* "corpus/$t/" 2>/dev/null || true
    out=$(cargo fuzz run -O "$t" -- -max_total_time="$seconds" -print_final_stats=1 2>&1) || {
        echo "$out" | tail -40
        echo "fuzz target $t FAILED; reproducer in core/fuzz/artifacts/$t" >&2
        exit 1
    }
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' <<<"$out")
    echo "fuzz $t: ${runs:-?} executions in ${seconds}s, no crash"
done
