#!/usr/bin/env bash
# The README's test command: runs every test of the workspace.
#
# The AWS adapters are tested against moto_server, installed into the project
# venv (.venv) here; the end-to-end tests start the real binaries
# (mailmind-local, the Lambda functions), so those are built first. The
# settings page test drives Debian's Chromium, installed by scripts/browser.sh.
# Last, schemathesis fuzzes the local server against docs/openapi.json.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/venv.sh >/dev/null
# Chromium and chromedriver for the settings page test (apt, when missing).
./scripts/browser.sh
cargo build --workspace --bins
cargo test --workspace "$@"
# Property-based fuzzing of the REST API against docs/openapi.json (schemathesis).
./scripts/fuzz-api.sh
