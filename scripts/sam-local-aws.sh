#!/usr/bin/env bash
# The AWS of `sam local`: moto_server (DynamoDB, KMS) from the project venv,
# with the table and KMS key that sam/env.json names. Runs in the foreground
# until Ctrl-C; the data lives as long as it runs.
#
# Usage: scripts/sam-local-aws.sh [HOST] [PORT]   (default 127.0.0.1 5000)
#
# The function containers reach it as host.docker.internal (samconfig.toml
# maps it to the host gateway): on Linux that is the docker0 bridge, so
# listen there, e.g. `scripts/sam-local-aws.sh 172.17.0.1`; Docker Desktop
# forwards host.docker.internal to the host's loopback, so the default does.
set -euo pipefail
cd "$(dirname "$0")/.."

host=${1:-127.0.0.1}
port=${2:-5000}
venv=$(./scripts/venv.sh)

"$venv/bin/moto_server" -H "$host" -p "$port" &
moto=$!
trap 'kill $moto 2>/dev/null' EXIT INT TERM
for _ in $(seq 100); do
    if "$venv/bin/python" -c "import socket,sys; socket.create_connection(('$host', $port), 0.2)" 2>/dev/null; then
        break
    fi
    sleep 0.1
done
"$venv/bin/python" sam/sam_local_aws.py "http://$host:$port"
echo "moto_server on http://$host:$port (Ctrl-C stops it)"
wait $moto
