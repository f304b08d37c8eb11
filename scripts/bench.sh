#!/usr/bin/env bash
# Benchmarks every Lambda function binary against a hello-world lambda_runtime
# binary built with the same release profile, and writes the figures into
# docs/PERFORMANCE.md. Rerun it any time; it needs nothing but this repo.
#
#   ./scripts/bench.sh [--cold-starts N] [--warm N]
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/venv.sh >/dev/null
# Every function: one crate per functions/<name>/, building the binary <name>.
shopt -s nullglob
functions=()
for manifest in functions/*/Cargo.toml; do
    functions+=("$(basename "$(dirname "$manifest")")")
done
if ((${#functions[@]} == 0)); then
    echo "bench.sh: no function crate under functions/" >&2
    exit 1
fi
packages=()
for f in "${functions[@]}" hello-world; do packages+=(-p "$f"); done

# The functions exactly as they ship: release profile (fat LTO, stripped),
# each with only the features it needs.
cargo build --release "${packages[@]}"
# The harness itself (emulator, moto, fake provider) needs no optimising.
cargo build -p mailmind-tests --bin lambda-bench

./target/debug/lambda-bench --bin-dir target/release --out docs/PERFORMANCE.md "$@"
