#!/usr/bin/env bash
# Builds every fuzz target and runs each for SECONDS (default 15): what CI runs.
# Uses `cargo fuzz` when a nightly toolchain has it; otherwise the same
# instrumentation by hand on the stable toolchain (libFuzzer from libfuzzer-sys,
# sanitizer coverage and overflow checks are all stable `-C` flags; no ASan,
# which the crate's safe Rust does not need).
#   crates/data/fuzz/run_all.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")"
seconds="${1:-15}"
targets=(idx_images idx_labels csv cifar_archive cifar_records mat svhn jpeg)
triple="x86_64-unknown-linux-gnu"
if cargo +nightly fuzz --version >/dev/null 2>&1; then
    for t in "${targets[@]}"; do
        cargo +nightly fuzz run "$t" -- -max_total_time="$seconds" -rss_limit_mb=3000
    done
    exit 0
fi
RUSTFLAGS="--cfg fuzzing -Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares -Cdebug-assertions -Coverflow-checks" \
    cargo build --release --locked --bins --target "$triple"
mkdir -p corpus/mat corpus/svhn
cp ../tests/data/*.mat corpus/mat/
cp ../tests/data/*.mat corpus/svhn/
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t"
    "target/$triple/release/$t" "corpus/$t" -max_total_time="$seconds" -rss_limit_mb=3000 -max_len=20000
done
