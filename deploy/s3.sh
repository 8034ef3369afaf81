#!/usr/bin/env bash
# S3Proxy (an S3 API over the local filesystem) on loopback, from Maven Central, no Docker.
#
#   deploy/s3.sh fetch    download the self-contained jar once into $FLYWHEEL_CACHE/s3proxy-<ver>/
#   deploy/s3.sh start    start with fresh random keys and an empty store, create the test bucket
#   deploy/s3.sh health   a signed boto3 list_buckets; exit 0 when the server authenticates and answers
#   deploy/s3.sh stop     stop the server by the PID in its pidfile
#   deploy/s3.sh env      print the FLYWHEEL_TEST_S3_* lines (endpoint, keys, bucket; deploy/stack.sh gathers them)
#
# Run state lives in $FLYWHEEL_RUN_DIR/s3: s3proxy.conf, s3proxy.log, s3proxy.pid, data/ (the objects), env.
set -euo pipefail

LOG_TAG=s3
# shellcheck source=deploy/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# Newest release on Maven Central on 2026-11-27; its classes target Java 17 (class file version 61).
S3PROXY_VERSION="${FLYWHEEL_S3PROXY_VERSION:-4.1.0}"
S3_HEAP="${FLYWHEEL_S3_HEAP:--Xms64m -Xmx512m}"
S3_BUCKET="${FLYWHEEL_S3_BUCKET:-flywheel-test}"
START_TIMEOUT="${FLYWHEEL_S3_START_TIMEOUT:-60}"

HOME_DIR="$CACHE_DIR/s3proxy-$S3PROXY_VERSION"
JAR="$HOME_DIR/s3proxy-$S3PROXY_VERSION-jar-with-dependencies.jar"
SDIR="$RUN_DIR/s3"
PIDFILE="$SDIR/s3proxy.pid"
LOGFILE="$SDIR/s3proxy.log"
CONF="$SDIR/s3proxy.conf" # its path is on the java command line: the marker that proves a PID is ours

fetch() {
  if [[ -f "$HOME_DIR/.complete" ]]; then
    log "cached: $JAR"
    return 0
  fi
  command -v mvn >/dev/null || die "mvn not found; Maven is needed once to fetch S3Proxy"
  log "fetching s3proxy $S3PROXY_VERSION (jar-with-dependencies) from Maven Central"
  mkdir -p "$HOME_DIR"
  # Run where there is no pom.xml: dependency:copy then works on the artifact alone.
  if ! (cd "$HOME_DIR" && mvn -B -Dstyle.color=never "$MVN_DEP_PLUGIN:copy" \
    -Dartifact="org.gaul:s3proxy:$S3PROXY_VERSION:jar:jar-with-dependencies" \
    -DoutputDirectory="$HOME_DIR" >"$HOME_DIR/fetch.log" 2>&1); then
    log_tail "$HOME_DIR/fetch.log"
    die "maven could not fetch s3proxy $S3PROXY_VERSION"
  fi
  [[ -f "$JAR" ]] || die "fetch finished but $JAR is missing"
  touch "$HOME_DIR/.complete" # written last, so an interrupted download is redone
  log "fetched $JAR"
}

running_pid() { pidfile_pid "$PIDFILE" "$CONF"; }

# probe [BUCKET]: signed list_buckets, creating BUCKET if given. The keys are read from the run dir's env
# file and handed to the probe through its environment.
probe() {
  local endpoint key secret bucket="${1:-}"
  endpoint="$(sed -n 's/^FLYWHEEL_TEST_S3_ENDPOINT=//p' "$SDIR/env")"
  key="$(sed -n 's/^FLYWHEEL_TEST_S3_ACCESS_KEY=//p' "$SDIR/env")"
  secret="$(sed -n 's/^FLYWHEEL_TEST_S3_SECRET_KEY=//p' "$SDIR/env")"
  FLYWHEEL_S3_ACCESS_KEY="$key" FLYWHEEL_S3_SECRET_KEY="$secret" \
    "$PYTHON" "$DEPLOY_DIR/probe.py" s3 "$endpoint" ${bucket:+"$bucket"}
}

health() {
  running_pid >/dev/null || {
    log "not running"
    return 1
  }
  require_python
  probe "" # no bucket: a health check changes nothing
}

start() {
  local keep="${1:-}"
  require_java17
  require_python
  if running_pid >/dev/null; then
    log "already running (pid $(running_pid)) at $(sed -n 's/^FLYWHEEL_TEST_S3_ENDPOINT=//p' "$SDIR/env")"
    wait_until s3 "$START_TIMEOUT" "$PIDFILE" "$CONF" "$LOGFILE" probe "$S3_BUCKET"
    return 0
  fi
  [[ -f "$HOME_DIR/.complete" ]] || fetch
  if [[ "$keep" == keep && -f "$CONF" && -f "$SDIR/env" ]]; then
    # a restart: the same data, port and keys (clients and .run/stack.env keep working)
    start_server "$(sed -n 's/^FLYWHEEL_TEST_S3_ENDPOINT=//p' "$SDIR/env")"
    return
  fi
  # Every start is an empty store with new keys: test data never outlives a stop.
  rm -rf "$SDIR"
  mkdir -p "$SDIR/data"
  chmod 700 "$SDIR"
  local port key secret endpoint
  read -r port < <(free_ports 1)
  endpoint="http://127.0.0.1:$port"
  key="FLY$(random_token 17 upper)"
  secret="$(random_token 40)"
  (
    umask 077 # the conf and env files hold the secret
    cat >"$CONF" <<EOF
# Written by deploy/s3.sh start. Signed requests only (AWS SigV2 or SigV4), path-style, loopback only.
s3proxy.endpoint=$endpoint
s3proxy.authorization=aws-v2-or-v4
s3proxy.identity=$key
s3proxy.credential=$secret
jclouds.provider=filesystem
jclouds.filesystem.basedir=$SDIR/data
EOF
    cat >"$SDIR/env" <<EOF
FLYWHEEL_TEST_S3_ENDPOINT=$endpoint
FLYWHEEL_TEST_S3_ACCESS_KEY=$key
FLYWHEEL_TEST_S3_SECRET_KEY=$secret
FLYWHEEL_TEST_S3_BUCKET=$S3_BUCKET
FLYWHEEL_TEST_S3_REGION=us-east-1
EOF
  )
  start_server "$endpoint"
}

start_server() {
  local endpoint="$1" heap
  read -ra heap <<<"$S3_HEAP"
  start_bg "$PIDFILE" "$LOGFILE" "$JAVA" "${heap[@]}" -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true \
    -jar "$JAR" --properties "$CONF"
  log "started pid $(<"$PIDFILE"), waiting for $endpoint"
  # A server that never got ready is stopped here, so a failed start leaves nothing running.
  if ! wait_http s3 "$endpoint/" "$START_TIMEOUT" "$PIDFILE" "$CONF" "$LOGFILE" ||
    ! wait_until s3 "$START_TIMEOUT" "$PIDFILE" "$CONF" "$LOGFILE" probe "$S3_BUCKET"; then
    stop
    return 1
  fi
  log "ready at $endpoint, bucket $S3_BUCKET (log: $LOGFILE)"
}

stop() {
  stop_pidfile s3 "$PIDFILE" "$CONF" 20
}

case "${1:-}" in
  fetch) fetch ;;
  start) start ;;
  restart) stop && start keep ;;
  stop) stop ;;
  health) health ;;
  env)
    running_pid >/dev/null || die "not running: run deploy/s3.sh start first"
    cat "$SDIR/env"
    ;;
  *)
    echo "usage: $0 {fetch|start|restart|stop|health|env}" >&2
    exit 2
    ;;
esac
