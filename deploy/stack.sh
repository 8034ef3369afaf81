#!/usr/bin/env bash
# The services the integration tests talk to, on loopback, without Docker.
#
#   deploy/stack.sh up      fetch (once, cached) and start Kafka and S3Proxy, write $RUN_DIR/stack.env
#   deploy/stack.sh down    stop what `up` started (by PID) and delete its run data
#   deploy/stack.sh restart NAME   stop one service and start it with the same data and ports
#   deploy/stack.sh env     print stack.env (KEY=VALUE lines); e.g. `set -a; . .run/stack.env; set +a`
#   deploy/stack.sh health  run every service's health check
#
# Typical use, from the repository root:
#   deploy/stack.sh up && .venv/bin/pytest tests -q; deploy/stack.sh down
#
# Each service is a script deploy/<name>.sh with the verbs fetch|start|stop|health|env that keeps its logs,
# pidfiles and data in $RUN_DIR/<name>/; its `env` prints its FLYWHEEL_TEST_* lines, which `up` gathers
# into stack.env. Argilla (server, worker, OpenSearch, Redis: deploy/argilla.sh) plugs in the same way and
# is heavy, so it is started only when FLYWHEEL_WITH_ARGILLA=1.
set -euo pipefail

LOG_TAG=stack
# shellcheck source=deploy/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ENV_FILE="$RUN_DIR/stack.env"
STARTED_FILE="$RUN_DIR/stack.services" # what `up` started, so `down` stops it even if the flags changed

services() {
  local list=(kafka s3)
  # The Argilla stack: opt-in, because it costs a minute and ~1.5 GB more.
  if [[ "${FLYWHEEL_WITH_ARGILLA:-0}" == 1 ]]; then
    [[ -x "$DEPLOY_DIR/argilla.sh" ]] || die "FLYWHEEL_WITH_ARGILLA=1 but $DEPLOY_DIR/argilla.sh is missing"
    list+=(argilla)
  fi
  printf '%s\n' "${list[@]}"
}

up() {
  local t0=$SECONDS name failed=() list
  local -a names
  list="$(services)" # not `< <(services)`: a failure in there must stop `up`
  mapfile -t names <<<"$list"
  mkdir -p "$RUN_DIR"
  # One at a time: concurrent Maven runs can corrupt a shared ~/.m2 (a no-op once cached).
  for name in "${names[@]}"; do
    "$DEPLOY_DIR/$name.sh" fetch
  done
  printf '%s\n' "${names[@]}" >"$STARTED_FILE"
  # Side by side: most of a start is JVM warm-up and waiting, so this nearly halves the time.
  local -A pids=()
  for name in "${names[@]}"; do
    "$DEPLOY_DIR/$name.sh" start &
    pids[$name]=$!
  done
  for name in "${names[@]}"; do
    wait "${pids[$name]}" || failed+=("$name")
  done
  if ((${#failed[@]})); then
    log "failed to start: ${failed[*]}; stopping the rest (logs kept in $RUN_DIR)"
    stop_all
    exit 1
  fi
  write_env
  log "up in $((SECONDS - t0))s: ${names[*]}; settings in $ENV_FILE"
}

# Everything that may be running: what `up` recorded, plus what the current flags name.
started() {
  {
    [[ -f "$STARTED_FILE" ]] && cat "$STARTED_FILE"
    services
  } | awk 'NF && !seen[$0]++'
}

stop_all() {
  local -a names
  local list
  list="$(started)"
  mapfile -t names <<<"$list"
  local i rc=0
  for ((i = ${#names[@]} - 1; i >= 0; i--)); do # reverse start order
    "$DEPLOY_DIR/${names[i]}.sh" stop || rc=1
  done
  return "$rc"
}

down() {
  local t0=$SECONDS name list
  local -a names
  list="$(started)"
  mapfile -t names <<<"$list"
  # Data is removed only after every process is confirmed stopped.
  stop_all || die "some service did not stop; run data left in $RUN_DIR"
  for name in "${names[@]}"; do
    rm -rf "${RUN_DIR:?}/$name"
  done
  rm -f "$ENV_FILE" "$STARTED_FILE"
  rmdir "$RUN_DIR" 2>/dev/null || true # only if nothing else lives there
  log "down in $((SECONDS - t0))s"
}

health() {
  local name rc=0
  [[ -f "$ENV_FILE" ]] || die "the stack is not up ($ENV_FILE is missing)"
  while read -r name; do
    "$DEPLOY_DIR/$name.sh" health || rc=1
  done <"$STARTED_FILE"
  return "$rc"
}

# Stop one service and start it again with its data and ports (deploy/<name>.sh restart); stack.env stays right.
restart() {
  local name="${1:-}"
  [[ -n "$name" && -x "$DEPLOY_DIR/$name.sh" ]] || die "usage: $0 restart {kafka|s3|argilla}"
  [[ -f "$ENV_FILE" ]] || die "the stack is not up ($ENV_FILE is missing)"
  "$DEPLOY_DIR/$name.sh" restart
  write_env
  log "restarted $name"
}

# stack.env: every service's FLYWHEEL_TEST_* lines (what tests read), and the names the CLI reads, so that
# `set -a; . .run/stack.env; set +a` configures `flywheel` for this stack too.
write_env() {
  local name
  {
    echo "# Written by deploy/stack.sh up; removed by deploy/stack.sh down."
    while read -r name; do
      "$DEPLOY_DIR/$name.sh" env
    done <"$STARTED_FILE"
  } >"$ENV_FILE.tmp"
  cli_names "$ENV_FILE.tmp" >>"$ENV_FILE.tmp"
  chmod 600 "$ENV_FILE.tmp" # it holds the S3 secret
  mv "$ENV_FILE.tmp" "$ENV_FILE"
}

cli_names() {
  local file="$1"
  awk -F= '
    $1 == "FLYWHEEL_TEST_KAFKA_BOOTSTRAP" { print "FLYWHEEL_KAFKA_BOOTSTRAP_SERVERS=" $2 }
    $1 == "FLYWHEEL_TEST_S3_ENDPOINT" { print "FLYWHEEL_LAKE_S3_ENDPOINT_URL=" $2; print "AWS_ENDPOINT_URL=" $2 }
    $1 == "FLYWHEEL_TEST_S3_ACCESS_KEY" { print "AWS_ACCESS_KEY_ID=" $2 }
    $1 ~ /^FLYWHEEL_TEST_S3_SECRET/ { print "AWS_SECRET_ACCESS_KEY=" substr($0, index($0, "=") + 1) }
    $1 == "FLYWHEEL_TEST_S3_REGION" { print "AWS_DEFAULT_REGION=" $2 }
    $1 == "FLYWHEEL_TEST_ARGILLA_URL" { print "FLYWHEEL_ARGILLA_URL=" $2 }
    $1 == "FLYWHEEL_TEST_ARGILLA_API_KEY" { print "FLYWHEEL_ARGILLA_API_KEY=" $2 }
  ' "$file"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  restart) restart "${2:-}" ;;
  env)
    [[ -f "$ENV_FILE" ]] || die "$ENV_FILE is missing: run deploy/stack.sh up first"
    cat "$ENV_FILE"
    ;;
  health) health ;;
  *)
    echo "usage: $0 {up|down|restart NAME|env|health}" >&2
    exit 2
    ;;
esac
