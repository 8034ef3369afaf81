#!/usr/bin/env bash
# Make sure promtool is installed (Debian's prometheus package): the metrics tests check /metrics scrapes with it.
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
# Only promtool is wanted, not the Prometheus server the package would start: a policy-rc.d answering 101 makes
# invoke-rc.d start no service during the install (put there only for it, when there is none).
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' > "$policy"
  chmod +x "$policy"
  trap 'rm -f "$policy"' EXIT
fi
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
command -v promtool
