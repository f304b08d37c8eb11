#!/usr/bin/env bash
# Creates the project venv (.venv at the repo root) and keeps it in step with
# requirements-dev.txt, then prints the venv's path on stdout.
#
# Idempotent and fast when nothing changed: the packages are (re)installed only
# when requirements-dev.txt (or the venv's Python) differs from the last
# successful install, recorded as a sha256 in .venv/.requirements-dev.sha256.
# Progress goes to stderr, so `venv=$(scripts/venv.sh)` gets just the path.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
# Through a link, the venv is made at the link's target (CI keeps it in its
# cache: .ci/run), so its scripts name a path that stays when the clone goes.
venv=$(realpath -m "$root/.venv")
requirements="$root/requirements-dev.txt"
stamp="$venv/.requirements-dev.sha256"

fingerprint() {
    # The file's content and the interpreter it is installed for.
    { sha256sum <"$requirements"; "$venv/bin/python" -c 'import sys; print(sys.version)'; } | sha256sum | cut -d' ' -f1
}

up_to_date() {
    [[ -x "$venv/bin/python" && -f "$stamp" ]] && "$venv/bin/python" -c '' 2>/dev/null &&
        [[ "$(cat "$stamp")" == "$(fingerprint)" ]]
}

if ! up_to_date; then
    # Two callers at once (e.g. tests and a build) must not install over each other.
    # The lock lives outside the venv, which may be deleted and recreated below.
    exec 9>"${TMPDIR:-/tmp}/mailmind-venv-$(printf '%s' "$venv" | sha256sum | cut -c1-16).lock"
    flock 9
    if ! up_to_date; then
        # A venv whose interpreter is gone (Python moved or upgraded) is rebuilt.
        if [[ -d "$venv" ]] && ! "$venv/bin/python" -c '' 2>/dev/null; then
            echo "venv.sh: $venv is broken, recreating it" >&2
            rm -rf "$venv"
        fi
        if [[ ! -x "$venv/bin/python" ]]; then
            echo "venv.sh: creating $venv" >&2
            python3 -m venv "$venv" >&2
        fi
        echo "venv.sh: installing requirements-dev.txt into $venv" >&2
        rm -f "$stamp"
        "$venv/bin/python" -m pip install --disable-pip-version-check -r "$requirements" >&2
        fingerprint >"$stamp"
    fi
    exec 9>&-
fi

echo "$venv"
