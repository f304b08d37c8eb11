#!/usr/bin/env bash
# The README's test command: runs every test of the workspace.
#
# The end-to-end tests start the real binaries (mailmind-local, the Lambda
# functions), so those are built first.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --workspace --bins
cargo test --workspace "$@"
