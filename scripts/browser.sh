#!/usr/bin/env bash
# Installs the headless browser the settings-page test drives: Debian's
# Chromium and its WebDriver (chromedriver). Nothing happens when chromedriver
# is already on PATH. Needs root (the CI and the dev machines run as root).
set -euo pipefail

if command -v chromedriver >/dev/null 2>&1; then
    exit 0
fi
started=$(date +%s)
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
echo "browser.sh: installed chromium and chromium-driver in $(( $(date +%s) - started )) s" >&2
