#!/usr/bin/env bash
# Property-based fuzzing of the REST API with schemathesis, against
# mailmind-local and the project's own docs/openapi.json, with every check
# (`--checks all`). Fails on any finding: a 5xx, a status, header or body the
# document does not allow, a method answered without `405` + `Allow`, ...
#
# Offline and bounded: the server runs on a temporary data directory, every
# provider's base URL points at a closed local port (so each key check ends
# at once as `provider_unavailable`, nothing leaves the machine), and
# FUZZ_MAX_EXAMPLES (default 30) cases per operation and phase keep the run
# to about a minute on two cores.
#
# Expects the binaries built (scripts/test.sh builds them first).
# Usage: scripts/fuzz-api.sh [extra schemathesis arguments]
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
venv=$(./scripts/venv.sh)
server_bin="$root/target/debug/mailmind-local"
[[ -x "$server_bin" ]] || { echo "fuzz-api.sh: build first (cargo build --workspace --bins)" >&2; exit 1; }

work=$(mktemp -d)
server_pid=
cleanup() {
    if [[ -n "$server_pid" ]]; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

export LOCAL_JWT_SECRET="fuzz-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
export MAILMIND_LOG=warn
export PROVIDER_TIMEOUT_MS=2000
# Every provider of the document at a closed port: no outbound network.
for id in $("$venv/bin/python" -c '
import json, sys
doc = json.load(open(sys.argv[1]))
print(" ".join(doc["paths"]["/api/v1/credentials/{provider}"]["get"]["parameters"][0]["schema"]["enum"]))
' docs/openapi.json); do
    export "PROVIDER_BASE_URL_${id^^}=http://127.0.0.1:9"
done

# User endpoints (openai_compatible, azure_openai) only at a loopback literal:
# a fuzzed https://some.host/ is refused before any name lookup or connection.
export ENDPOINT_ALLOWED_HOSTS=127.0.0.1
token=$("$server_bin" --token fuzzer)
: >"$work/server.out"
# No per-user validation budget: otherwise most creates, updates and checks
# would stop at 429 and the fuzzing would never reach the paths behind it.
"$server_bin" --port 0 --data-dir "$work/data" --validation-limit 0 >"$work/server.out" 2>"$work/server.err" &
server_pid=$!
base_url=
for _ in $(seq 100); do
    base_url=$(sed -n 's/^MailMind credential service listening on //p' "$work/server.out")
    [[ -n "$base_url" ]] && break
    kill -0 "$server_pid" 2>/dev/null || { cat "$work/server.err" >&2; exit 1; }
    sleep 0.1
done
[[ -n "$base_url" ]] || { echo "fuzz-api.sh: the server did not start" >&2; exit 1; }

started=$(date +%s)
status=0
# From the scratch directory: schemathesis keeps a cache (.schemathesis/) in its working directory.
# One worker: CPython 3.11's ast.parse is not thread-safe (hypothesis parses
# lambdas' sources while describing strategies), and two workers crashed a CI
# run with "AST constructor recursion depth mismatch". The run takes seconds.
(cd "$work" && "$venv/bin/schemathesis" --config-file "$root/scripts/schemathesis.toml" run "$root/docs/openapi.json" \
    --url "$base_url" \
    --header "Authorization: Bearer $token" \
    --checks all \
    --max-examples "${FUZZ_MAX_EXAMPLES:-30}" \
    --workers 1 \
    --seed "${FUZZ_SEED:-20261124}" \
    --request-timeout 15 \
    --report junit --report-dir "$work/report" \
    "$@") || status=$?
echo "fuzz-api.sh: schemathesis took $(($(date +%s) - started)) s" >&2
if [[ $status -ne 0 ]]; then
    echo "fuzz-api.sh: server errors, if any:" >&2
    grep -v '"level":"INFO"' "$work/server.err" | tail -20 >&2 || true
fi
exit $status
