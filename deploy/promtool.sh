#!/usr/bin/env bash
# Make sure Prometheus' promtool is installed (a test checks the alerting rules in deploy/prometheus with it).
set -euo pipefail
if command -v promtool >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "promtool is missing; install Debian's prometheus package (needs root)" >&2
  exit 1
fi
echo "[promtool] installing Debian's prometheus package"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus >/dev/null
command -v promtool
