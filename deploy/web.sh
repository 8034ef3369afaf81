#!/usr/bin/env bash
# Install the browser library's pinned npm packages (clients/web/package-lock.json) when the lock file is newer
# than the last install, and build it (the build prints the module's size).
set -euo pipefail
cd "$(dirname "$0")/../clients/web"
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "[web] npm ci in clients/web"
  npm ci --no-audit --no-fund --loglevel=error
fi
node build.mjs
