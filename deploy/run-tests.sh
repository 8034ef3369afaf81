#!/usr/bin/env bash
# Start the real services, run the whole test suite against them, stop them (by PID) on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
export FLYWHEEL_RUN_DIR="${FLYWHEEL_RUN_DIR:-$PWD/.run}"

export FLYWHEEL_WITH_ARGILLA="${FLYWHEEL_WITH_ARGILLA:-1}"
trap 'deploy/stack.sh down' EXIT
deploy/chromium.sh
deploy/promtool.sh
deploy/web.sh
deploy/stack.sh up
set -a
# shellcheck disable=SC1091
source "$FLYWHEEL_RUN_DIR/stack.env"
set +a
.venv/bin/pytest "$@"
