#!/usr/bin/env bash
# The one release build of every Lambda function: `cargo lambda build
# --release` of all crates under functions/ (and the benchmark's hello world)
# at once, into target/lambda/<name>/bootstrap. Dependencies compile once and
# cargo links the binaries in parallel; a second call with nothing changed
# only checks fingerprints. The Makefile's build-<LogicalId> (sam build) and
# scripts/bench.sh call it.
#
# Architecture: MAILMIND_ARCH, arm64 (default, the template's) or x86_64.
# Compiler: CARGO_LAMBDA_COMPILER (cargo-lambda's default is zig; here
# scripts/sam-build.sh sets `cargo`, the host's, for x86_64).
set -euo pipefail
cd "$(dirname "$0")/.."

arch=${MAILMIND_ARCH:-arm64}
case "$arch" in
    x86_64) arch_flag=--x86-64 ;;
    arm64) arch_flag=--arm64 ;;
    *)
        echo "build-functions.sh: MAILMIND_ARCH is arm64 or x86_64, not $arch" >&2
        exit 2
        ;;
esac

# cargo-lambda comes with the project venv (requirements-dev.txt).
venv=$(./scripts/venv.sh)
export PATH="$venv/bin:$PATH"

# Serialised: sam builds functions one after another, but a second caller
# (say, the bench during a sam build) must not race the first.
mkdir -p target
exec 9>target/.build-functions.lock
flock 9

packages=(-p hello-world)
for manifest in functions/*/Cargo.toml; do
    packages+=(-p "$(basename "$(dirname "$manifest")")")
done
cargo lambda build --release "$arch_flag" "${packages[@]}" >&2
