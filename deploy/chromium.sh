#!/usr/bin/env bash
# Make sure Debian's headless Chromium is installed (the report test opens the HTML report in it).
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "chromium is missing; install Debian's chromium package (needs root)" >&2
  exit 1
fi
echo "[chromium] installing Debian's chromium package"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
command -v chromium
