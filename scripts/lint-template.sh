#!/usr/bin/env bash
# Usage: scripts/lint-template.sh [TEMPLATE]   (default template.yaml)
#
# Lints the SAM template offline: cfn-lint (every rule, informational ones
# included) and `sam validate --lint`. Exits non-zero on any finding.
# Needs no AWS account or credentials: the region is only read by the SAM
# translator, and nothing here calls AWS.
set -euo pipefail
cd "$(dirname "$0")/.."

template=${1:-template.yaml}
venv=$(./scripts/venv.sh)
export AWS_DEFAULT_REGION=${AWS_DEFAULT_REGION:-us-east-1}
export SAM_CLI_TELEMETRY=0

status=0
echo "== cfn-lint $template"
# Exit code 0 only when there is no error, warning or informational finding.
"$venv/bin/cfn-lint" --include-checks I -- "$template" || status=1

echo "== sam validate --lint"
# sam validate --lint prints its findings and exits 1 on any of them.
"$venv/bin/sam" validate --lint --template-file "$template" --region "$AWS_DEFAULT_REGION" || status=1

if [[ $status -eq 0 ]]; then
    echo "$template: no findings"
else
    echo "$template: findings above" >&2
fi
exit $status
