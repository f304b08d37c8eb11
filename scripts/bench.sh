#!/usr/bin/env bash
# Benchmarks every Lambda function binary against a hello-world lambda_runtime
# binary built with the same release profile, and writes the figures into
# docs/PERFORMANCE.md. Rerun it any time; it needs nothing but this repo.
#
#   ./scripts/bench.sh [--cold-starts N] [--warm N]
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/venv.sh >/dev/null
# The functions exactly as they ship (release profile: fat LTO, stripped),
# with the hello world, from the one release build sam build uses too; for
# this machine's architecture, as they run here.
case "$(uname -m)" in
    aarch64 | arm64) arch=arm64 ;;
    *) arch=x86_64 ;;
esac
MAILMIND_ARCH=$arch CARGO_LAMBDA_COMPILER=${CARGO_LAMBDA_COMPILER:-cargo} ./scripts/build-functions.sh
# The harness itself (emulator, moto, fake provider) needs no optimising.
cargo build -p mailmind-tests --bin lambda-bench --bin consumer-bench

./target/debug/lambda-bench --bin-dir target/lambda --out docs/PERFORMANCE.md "$@"
# What a consumer of credentials-resolve sees (cold, warm, record cache).
./target/debug/consumer-bench --bin-dir target/lambda --out docs/PERFORMANCE.md
