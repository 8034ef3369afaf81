#!/usr/bin/env bash
# A real Argilla stack on loopback, without Docker: argilla-server 2.8.0 (own virtualenv) + its rq worker,
# Redis (Debian's redis-server, our own process) and OpenSearch 2.19 assembled from Maven Central
# (integ-test-zip distribution + the k-NN plugin + a lang-painless module folder built from its jars).
#
#   deploy/argilla.sh fetch    install/download everything once into $FLYWHEEL_CACHE (default ~/.cache/flywheel)
#   deploy/argilla.sh start    start redis, opensearch, argilla-server and its worker on free 127.0.0.1 ports
#   deploy/argilla.sh health   check every process and the HTTP API; exit 0 when all are up
#   deploy/argilla.sh env      print the FLYWHEEL_TEST_ARGILLA_* lines of the running stack
#   deploy/argilla.sh stop     stop the processes by the PIDs in their pidfiles (TERM, wait, KILL)
#   deploy/argilla.sh stop-server / start-server
#                              stop or start argilla-server alone (same port, database and keys), leaving
#                              OpenSearch, Redis and the worker up: for tests of a client outliving a server restart
#   deploy/argilla.sh clean    stop, then delete the run state (database, search data, keys)
#
# Run state lives in $FLYWHEEL_RUN_DIR/argilla (default <repo>/.run/argilla): *.pid, logs/, argilla.db,
# opensearch/ (config, data, logs; owned by the search user), redis/, tmp/, state.env (generated keys and
# passwords, kept so that a restart reuses the database) and argilla.env (the FLYWHEEL_TEST_ARGILLA_* lines).
#
# OpenSearch refuses to run as root: as root the script creates a system user (FLYWHEEL_SEARCH_USER, default
# flywheel-search) and runs the node as that user; as any other user it runs as that user. Security is off
# because the integ-test-zip distribution has no security plugin at all; the node binds to 127.0.0.1 only.
#
# Knobs: FLYWHEEL_OPENSEARCH_VERSION (2.19.1: the k-NN plugin is published for 2.19.1.0 and its descriptor
# pins the exact server version), FLYWHEEL_OPENSEARCH_HEAP (512m), FLYWHEEL_OPENSEARCH_JAVA_HOME (a Java
# 11-23: OpenSearch 2.x needs the security manager, removed in Java 24), FLYWHEEL_ARGILLA_PYTHON (python3),
# FLYWHEEL_ARGILLA_START_TIMEOUT (180 s per service).
set -euo pipefail

ARGILLA_SERVER_VERSION="2.8.0"
OPENSEARCH_VERSION="${FLYWHEEL_OPENSEARCH_VERSION:-2.19.1}"
KNN_VERSION="${FLYWHEEL_OPENSEARCH_KNN_VERSION:-$OPENSEARCH_VERSION.0}"
OPENSEARCH_HEAP="${FLYWHEEL_OPENSEARCH_HEAP:-512m}"
SEARCH_USER="${FLYWHEEL_SEARCH_USER:-flywheel-search}"
BASE_PYTHON="${FLYWHEEL_ARGILLA_PYTHON:-python3}"
START_TIMEOUT="${FLYWHEEL_ARGILLA_START_TIMEOUT:-180}"
# Pinned: Maven 3.8 would otherwise resolve a bare `dependency:` prefix to the old 2.8 plugin.
MVN_DEP_PLUGIN="org.apache.maven.plugins:maven-dependency-plugin:3.8.1"

DEPLOY_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(dirname "$DEPLOY_DIR")"
HELPERS="$DEPLOY_DIR/argilla" # pom.xml, bootstrap.py, lang-painless/ descriptor and policy
RUN_DIR="$(realpath -m "${FLYWHEEL_RUN_DIR:-$REPO_DIR/.run}")"
CACHE_DIR="$(realpath -m "${FLYWHEEL_CACHE:-$HOME/.cache/flywheel}")"

A="$RUN_DIR/argilla"
LOGS="$A/logs"
# OpenSearch's directory (home copy, config, data, logs) is $A/opensearch, unless the search user cannot reach
# the run dir (a parent without o+x, e.g. under /root): then one under /var/tmp/flywheel-search, recorded here.
OSDIR_FILE="$A/opensearch.dir"
OSDIR="$A/opensearch"
[[ -f "$OSDIR_FILE" ]] && OSDIR="$(<"$OSDIR_FILE")"
VENV="$CACHE_DIR/argilla/venv-argilla-server-$ARGILLA_SERVER_VERSION"
OS_CACHE="$CACHE_DIR/argilla/opensearch-$OPENSEARCH_VERSION-knn-$KNN_VERSION"
OS_HOME="$OSDIR/home" # a copy of OS_CACHE the search user can read (~/.cache is usually private to root)
STATE="$A/state.env"
PORTS="$A/ports.env"
ENV_FILE="$A/argilla.env"
DB_FILE="$A/argilla.db"

# Each service: pidfile, log, and a string of its command line that proves a recorded PID is still ours
# (from setsid's exec to the service's own: OpenSearch's is first bin/opensearch, then the JVM's).
REDIS_PID="$A/redis.pid" REDIS_LOG="$LOGS/redis.log" REDIS_MARK="--dir $A/redis"
OS_PID="$A/opensearch.pid" OS_LOG="$LOGS/opensearch.out" OS_MARK="$OS_HOME"
SERVER_PID="$A/server.pid" SERVER_LOG="$LOGS/server.log" SERVER_MARK="$VENV/bin/python -m argilla_server start"
WORKER_PID="$A/worker.pid" WORKER_LOG="$LOGS/worker.log" WORKER_MARK="$VENV/bin/python -m argilla_server worker"

# ---------------------------------------------------------------------------------------------- helpers
log() { printf '[argilla] %s\n' "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}

ar_free_ports() { # N [PREFERRED...]: N distinct free loopback ports (the preferred ones where still free),
  # all held open until every one is chosen
  python3 - "$@" <<'PY'
import socket, sys
n, preferred = int(sys.argv[1]), [int(p) for p in sys.argv[2:]]
socks = []
for i in range(n):
    s = socket.socket()
    try:
        # SO_REUSEADDR, as the servers themselves bind: a port whose old connections linger in TIME_WAIT
        # is free for them; one with a listener is not.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", preferred[i] if i < len(preferred) else 0))
    except OSError:
        s.close()
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
PY
}

ar_token() { # N: N random [a-z0-9] characters from the kernel's CSPRNG
  python3 -c 'import secrets, string, sys
print("".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(int(sys.argv[1]))))' "$1"
}

ar_alive() { # PID: alive and not a zombie
  local st
  kill -0 "$1" 2>/dev/null || return 1
  st="$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null || true)"
  [[ -n "$st" && "$st" != Z ]]
}

ar_pid() { # PIDFILE MARKER: print the recorded PID if alive and its command line contains MARKER
  local pid
  [[ -f "$1" ]] || return 1
  pid="$(<"$1")"
  [[ "$pid" =~ ^[0-9]+$ ]] && ar_alive "$pid" || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$2" || return 1
  printf '%s\n' "$pid"
}

ar_start_bg() { # PIDFILE LOG CMD...: detached (own session = own process group), PID recorded
  local pidfile="$1" logfile="$2"
  shift 2
  # setsid execs in place (a child of a non-interactive shell is never a group leader): $! is the service.
  setsid "$@" >>"$logfile" 2>&1 </dev/null &
  printf '%s\n' "$!" >"$pidfile"
}

ar_group_left() { # PGID: PIDs still in that process group
  ps -e -o pid=,pgid= | awk -v g="$1" '$2 == g && $1 != g {print $1}'
}

ar_stop() { # NAME PIDFILE MARKER GRACE: TERM the recorded PID, wait, KILL; then what is left of its group
  local name="$1" pidfile="$2" marker="$3" grace="$4" pid i left t0
  t0="$(date +%s%N)"
  if ! pid="$(ar_pid "$pidfile" "$marker")"; then
    [[ -f "$pidfile" ]] && log "$name: not running (stale pidfile removed)"
    rm -f "$pidfile"
    return 0
  fi
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < grace * 10; i++)); do
    ar_alive "$pid" || break
    sleep 0.1
  done
  if ar_alive "$pid"; then
    log "$name: pid $pid ignored TERM for ${grace}s, sending KILL"
    kill -KILL "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
      ar_alive "$pid" || break
      sleep 0.1
    done
  fi
  # The process was started as the leader of its own group (setsid): children it left behind (the rq
  # worker's forked work horses) are in that group, which is ours alone.
  left="$(ar_group_left "$pid")"
  if [[ -n "$left" ]]; then
    log "$name: stopping what is left of its process group: $(echo "$left" | tr '\n' ' ')"
    kill -TERM -- "-$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
      [[ -z "$(ar_group_left "$pid")" ]] && break
      sleep 0.1
    done
    kill -KILL -- "-$pid" 2>/dev/null || true
  fi
  ar_alive "$pid" && die "$name: pid $pid is still alive"
  rm -f "$pidfile"
  log "$name: stopped (pid $pid, $(ar_elapsed "$t0")s)"
}

ar_tail() { # LOG: show the end of a log on failure
  [[ -f "$1" ]] || return 0
  log "---- last 40 lines of $1 ----"
  tail -n 40 "$1" >&2
  log "---- end of $1 ----"
}

ar_wait() { # NAME PIDFILE MARKER LOG CMD...: retry CMD until it succeeds; fail fast if the process died
  # (MARKER is not checked: see below)
  local name="$1" pidfile="$2" logfile="$4"
  shift 4
  local deadline=$((SECONDS + START_TIMEOUT))
  until "$@" >/dev/null 2>&1; do
    # Alive is enough here: the process was started just now, and until setsid has exec'd the service its
    # command line is still the shell's, without the marker (redis once failed to start on that).
    if ! ar_alive "$(<"$pidfile")"; then
      log "$name: the process exited before it became ready"
      ar_tail "$logfile"
      return 1
    fi
    if ((SECONDS >= deadline)); then
      log "$name: not ready after ${START_TIMEOUT}s"
      ar_tail "$logfile"
      return 1
    fi
    sleep 0.5
  done
}

ar_elapsed() { # START_NANOS: seconds since, with one decimal
  awk -v a="$1" -v b="$(date +%s%N)" 'BEGIN {printf "%.1f", (b - a) / 1e9}'
}

ar_java_major() { # JAVA_HOME: its feature version (17, 21, ...)
  "$1/bin/java" -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = //p' |
    sed 's/^1\.//; s/\..*//'
}

ar_java_home() { # a Java that OpenSearch 2.x runs on (11 to 23)
  local cand major java
  java="$(command -v java || true)"
  for cand in "${FLYWHEEL_OPENSEARCH_JAVA_HOME:-}" "${JAVA_HOME:-}" \
    ${java:+"$(dirname "$(dirname "$(readlink -f "$java")")")"} /usr/lib/jvm/*; do
    [[ -n "$cand" && -x "$cand/bin/java" ]] || continue
    major="$(ar_java_major "$cand")"
    if [[ "$major" =~ ^[0-9]+$ ]] && ((major >= 11 && major <= 23)); then
      printf '%s\n' "$cand"
      return 0
    fi
  done
  die "no Java 11-23 found for OpenSearch $OPENSEARCH_VERSION (set FLYWHEEL_OPENSEARCH_JAVA_HOME)"
}

# --------------------------------------------------------------------------------------------- fetch
fetch_venv() {
  # The stamp names what was installed, so a new version or constraints file reinstalls.
  local want
  want="argilla-server==$ARGILLA_SERVER_VERSION click<8.2 $(sha256sum "$HELPERS/constraints.txt" | cut -c1-16)"
  if [[ -f "$VENV/.flywheel-installed" && "$(<"$VENV/.flywheel-installed")" == "$want" ]] &&
    "$VENV/bin/python" -c "" 2>/dev/null; then
    return 0
  fi
  log "installing argilla-server $ARGILLA_SERVER_VERSION into $VENV"
  rm -rf "$VENV"
  mkdir -p "$(dirname "$VENV")"
  "$BASE_PYTHON" -m venv "$VENV"
  # click<8.2: newer click breaks argilla-server's typer command line. The constraints pin the rest to the
  # set this script was tested with (the server's own pins are loose).
  "$VENV/bin/python" -m pip install -q -c "$HELPERS/constraints.txt" \
    "argilla-server==$ARGILLA_SERVER_VERSION" "click<8.2"
  "$VENV/bin/python" -c "import argilla_server" || die "argilla-server does not import in $VENV"
  printf '%s' "$want" >"$VENV/.flywheel-installed"
}

fetch_redis() {
  command -v redis-server >/dev/null && command -v redis-cli >/dev/null && return 0
  [[ "$(id -u)" == 0 ]] || die "redis-server is missing; install Debian's redis-server package (needs root)"
  log "installing Debian's redis-server"
  apt-get update -q >"$CACHE_DIR/argilla/apt-update.log" 2>&1 || {
    tail -20 "$CACHE_DIR/argilla/apt-update.log" >&2
    die "apt-get update failed"
  }
  # The package's own service is not used (and a container's policy-rc.d keeps it from starting).
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends redis-server \
    >"$CACHE_DIR/argilla/apt-install.log" 2>&1 || {
    tail -20 "$CACHE_DIR/argilla/apt-install.log" >&2
    die "apt-get install redis-server failed"
  }
}

ar_unzip() { # ZIP DEST
  if command -v unzip >/dev/null; then
    unzip -q -o "$1" -d "$2"
  else
    python3 -m zipfile -e "$1" "$2"
  fi
}

fetch_opensearch() {
  local stamp="opensearch=$OPENSEARCH_VERSION knn=$KNN_VERSION"
  if [[ -f "$OS_CACHE/.flywheel-assembled" && "$(<"$OS_CACHE/.flywheel-assembled")" == "$stamp" ]]; then
    return 0
  fi
  command -v mvn >/dev/null || die "mvn not found; Maven is needed once to fetch OpenSearch from Maven Central"
  log "fetching OpenSearch $OPENSEARCH_VERSION, k-NN $KNN_VERSION and lang-painless from Maven Central"
  mkdir -p "$CACHE_DIR/argilla"
  local stage
  stage="$(mktemp -d "$CACHE_DIR/argilla/.opensearch-stage.XXXXXX")"
  mvn -B -q -f "$HELPERS/pom.xml" "-Dopensearch.version=$OPENSEARCH_VERSION" "-Dknn.version=$KNN_VERSION" \
    "$MVN_DEP_PLUGIN:copy-dependencies" -DoutputDirectory="$stage/artifacts" >"$stage/mvn.log" 2>&1 || {
    tail -30 "$stage/mvn.log" >&2
    die "mvn could not fetch the OpenSearch artifacts (log: $stage/mvn.log)"
  }
  local art="$stage/artifacts" home="$stage/opensearch-$OPENSEARCH_VERSION"
  ar_unzip "$art/opensearch-$OPENSEARCH_VERSION.zip" "$stage"
  [[ -d "$home/modules/transport-netty4" ]] || die "unexpected layout of the integ-test-zip distribution"
  chmod +x "$home/bin/"* # python's zipfile does not keep modes

  # lang-painless is published only as jars: assemble the module folder the distribution would have.
  local painless="$home/modules/lang-painless"
  mkdir -p "$painless"
  cp "$art/lang-painless-$OPENSEARCH_VERSION.jar" "$art/opensearch-scripting-painless-spi-$OPENSEARCH_VERSION.jar" \
    "$art"/antlr4-runtime-*.jar "$art"/asm-*.jar "$painless/"
  sed "s/@OPENSEARCH_VERSION@/$OPENSEARCH_VERSION/g" "$HELPERS/lang-painless/plugin-descriptor.properties" \
    >"$painless/plugin-descriptor.properties"
  cp "$HELPERS/lang-painless/plugin-security.policy" "$painless/"

  # The k-NN plugin zip is the plugin folder itself (its descriptor names lang-painless as extended plugin).
  mkdir -p "$home/plugins/opensearch-knn"
  ar_unzip "$art/opensearch-knn-$KNN_VERSION.zip" "$home/plugins/opensearch-knn"
  grep -q "^opensearch.version=$OPENSEARCH_VERSION\$" "$home/plugins/opensearch-knn/plugin-descriptor.properties" ||
    die "k-NN $KNN_VERSION is not built for OpenSearch $OPENSEARCH_VERSION"

  printf '%s' "$stamp" >"$home/.flywheel-assembled"
  rm -rf "$OS_CACHE"
  mv "$home" "$OS_CACHE"
  rm -rf "$stage"
}

cmd_fetch() {
  mkdir -p "$CACHE_DIR/argilla"
  local t0
  t0="$(date +%s%N)"
  fetch_redis
  fetch_opensearch
  fetch_venv
  log "fetch: ready in $(ar_elapsed "$t0")s (cache: $CACHE_DIR/argilla)"
}

# --------------------------------------------------------------------------------------------- start
ensure_search_user() {
  [[ "$(id -u)" == 0 ]] || return 0
  id -u "$SEARCH_USER" >/dev/null 2>&1 && return 0
  log "creating system user $SEARCH_USER (OpenSearch refuses to run as root)"
  useradd --system --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$SEARCH_USER"
}

# The command prefix that runs (execs, no fork) a command as the search user when we are root.
AS_SEARCH_USER=()
if [[ "$(id -u)" == 0 ]]; then
  AS_SEARCH_USER=(setpriv "--reuid=$SEARCH_USER" "--regid=$SEARCH_USER" --init-groups --)
fi

load_or_create_state() {
  if [[ ! -f "$STATE" ]]; then
    (
      umask 077
      {
        echo "OWNER_USERNAME=flywheel-owner"
        echo "OWNER_PASSWORD=$(ar_token 20)"
        echo "OWNER_API_KEY=owner.$(ar_token 40)"
        echo "ANNOTATOR_USERNAME=flywheel-annotator"
        echo "ANNOTATOR_PASSWORD=$(ar_token 20)"
        echo "ANNOTATOR_API_KEY=annotator.$(ar_token 40)"
        echo "AUTH_SECRET_KEY=$(ar_token 64)"
      } >"$STATE"
    )
  fi
  # shellcheck disable=SC1090
  source "$STATE"
}

choose_opensearch_dir() {
  OSDIR="$A/opensearch"
  if [[ "$(id -u)" == 0 ]] && ! "${AS_SEARCH_USER[@]}" test -x "$A"; then
    OSDIR="/var/tmp/flywheel-search/$(printf '%s' "$A" | sha256sum | cut -c1-16)"
    log "$SEARCH_USER cannot reach $A: OpenSearch's files go to $OSDIR"
    install -d -m 755 /var/tmp/flywheel-search
  fi
  printf '%s\n' "$OSDIR" >"$OSDIR_FILE"
  OS_HOME="$OSDIR/home"
  OS_MARK="$OS_HOME"
}

prepare_opensearch_dirs() { # HTTP_PORT TRANSPORT_PORT
  mkdir -p "$OSDIR"/{config,data,logs,tmp}
  local have="" want
  want="$(<"$OS_CACHE/.flywheel-assembled")"
  [[ -f "$OS_HOME/.flywheel-assembled" ]] && have="$(<"$OS_HOME/.flywheel-assembled")"
  if [[ "$have" != "$want" ]]; then
    rm -rf "$OS_HOME"
    cp -a "$OS_CACHE" "$OS_HOME"
    chmod -R a+rX "$OS_HOME"
  fi
  cp "$OS_HOME/config/log4j2.properties" "$OSDIR/config/"
  # The distribution's JVM options with a small heap and absolute paths for dumps and GC logs.
  sed -e "s/^-Xms.*/-Xms$OPENSEARCH_HEAP/" -e "s/^-Xmx.*/-Xmx$OPENSEARCH_HEAP/" \
    -e "s|HeapDumpPath=data|HeapDumpPath=$OSDIR/data|" -e "s|ErrorFile=logs/|ErrorFile=$OSDIR/logs/|" \
    -e "s|file=logs/gc.log:utctime,pid,tags:filecount=32,filesize=64m|file=$OSDIR/logs/gc.log:utctime,pid,tags:filecount=2,filesize=16m|" \
    "$OS_HOME/config/jvm.options" >"$OSDIR/config/jvm.options"
  mkdir -p "$OSDIR/config/jvm.options.d"
  cat >"$OSDIR/config/opensearch.yml" <<EOF
# Written by deploy/argilla.sh start: one node for Argilla, loopback only, no security plugin installed.
cluster.name: flywheel-argilla
node.name: flywheel-argilla-0
path.data: $OSDIR/data
path.logs: $OSDIR/logs
network.host: 127.0.0.1
http.port: $1
transport.port: $2
discovery.type: single-node
# a nearly full disk must not turn the test indices read-only
cluster.routing.allocation.disk.threshold_enabled: false
EOF
  if [[ "$(id -u)" == 0 ]]; then
    chown -R "$SEARCH_USER:$SEARCH_USER" "$OSDIR/config" "$OSDIR/data" "$OSDIR/logs" "$OSDIR/tmp"
  fi
  "${AS_SEARCH_USER[@]}" test -w "$OSDIR/data" ||
    die "$SEARCH_USER cannot write $OSDIR/data"
}

argilla_env() { # sets ARGILLA_ENV: the `env NAME=VALUE ...` prefix of every argilla-server process
  ARGILLA_ENV=(env \
    "ARGILLA_HOME_PATH=$A/home" \
    "ARGILLA_DATABASE_URL=sqlite+aiosqlite:///$DB_FILE?check_same_thread=False" \
    "ARGILLA_SEARCH_ENGINE=opensearch" \
    "ARGILLA_ELASTICSEARCH=http://127.0.0.1:$OS_HTTP_PORT" \
    "ARGILLA_REDIS_URL=redis://127.0.0.1:$REDIS_PORT/0" \
    "ARGILLA_AUTH_SECRET_KEY=$AUTH_SECRET_KEY" \
    "ARGILLA_ENABLE_TELEMETRY=0" \
    "ARGILLA_SHOW_HUGGINGFACE_SPACE_PERSISTENT_STORAGE_WARNING=false" \
    "HF_HUB_OFFLINE=1" \
    "HF_HUB_DISABLE_TELEMETRY=1" \
    "TMPDIR=$A/tmp")
}

redis_ok() { [[ "$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null)" == PONG ]]; }
opensearch_ok() {
  curl -sf --max-time 5 "http://127.0.0.1:$OS_HTTP_PORT/_cluster/health?wait_for_status=yellow&timeout=2s" |
    grep -q '"status":"\(green\|yellow\)"'
}
server_ok() {
  curl -sf --max-time 5 -H "X-Argilla-Api-Key: $OWNER_API_KEY" "http://127.0.0.1:$ARGILLA_PORT/api/v1/me" |
    grep -q "\"username\":\"$OWNER_USERNAME\""
}
worker_ok() { # the worker pool's work horse has registered with rq
  local n
  n="$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" scard rq:workers 2>/dev/null || echo 0)"
  [[ "$n" =~ ^[0-9]+$ ]] && ((n >= 1))
}

write_env_file() {
  (
    umask 077
    cat >"$ENV_FILE" <<EOF
FLYWHEEL_TEST_ARGILLA_URL=http://127.0.0.1:$ARGILLA_PORT
FLYWHEEL_TEST_ARGILLA_API_KEY=$OWNER_API_KEY
FLYWHEEL_TEST_ARGILLA_ANNOTATOR_API_KEY=$ANNOTATOR_API_KEY
FLYWHEEL_TEST_ARGILLA_ANNOTATOR_USERNAME=$ANNOTATOR_USERNAME
EOF
  )
}

all_running() {
  ar_pid "$REDIS_PID" "$REDIS_MARK" >/dev/null && ar_pid "$OS_PID" "$OS_MARK" >/dev/null &&
    ar_pid "$SERVER_PID" "$SERVER_MARK" >/dev/null && ar_pid "$WORKER_PID" "$WORKER_MARK" >/dev/null
}

any_running() {
  ar_pid "$REDIS_PID" "$REDIS_MARK" >/dev/null || ar_pid "$OS_PID" "$OS_MARK" >/dev/null ||
    ar_pid "$SERVER_PID" "$SERVER_MARK" >/dev/null || ar_pid "$WORKER_PID" "$WORKER_MARK" >/dev/null
}

cmd_start() {
  mkdir -p "$A"
  if [[ -f "$PORTS" ]] && all_running; then
    # shellcheck disable=SC1090
    source "$PORTS"
    load_or_create_state
    if cmd_health >/dev/null 2>&1; then
      write_env_file
      log "already running: http://127.0.0.1:$ARGILLA_PORT (env: $ENV_FILE)"
      return 0
    fi
  fi
  if any_running; then
    log "a partial stack is running: stopping it first"
    cmd_stop
  fi

  cmd_fetch
  local t0
  t0="$(date +%s%N)"
  # A start that fails half-way stops what it started (the logs stay).
  trap 'start_failed $?' EXIT
  ensure_search_user
  cd "$A"
  mkdir -p "$LOGS" "$A/redis" "$A/home"
  rm -rf "$A/tmp"
  mkdir -p "$A/tmp" # argilla-server copies its front end into a new temp dir at every start
  rm -f "$ENV_FILE"
  load_or_create_state
  # The ports of the previous start where they are still free, so that exported settings stay valid.
  local -a previous=()
  if [[ -f "$PORTS" ]]; then
    mapfile -t previous < <(sed -n 's/^\(REDIS_PORT\|OS_HTTP_PORT\|OS_TRANSPORT_PORT\|ARGILLA_PORT\)=//p' "$PORTS")
  fi
  read -r REDIS_PORT OS_HTTP_PORT OS_TRANSPORT_PORT ARGILLA_PORT <<<"$(ar_free_ports 4 "${previous[@]}")"
  printf 'REDIS_PORT=%s\nOS_HTTP_PORT=%s\nOS_TRANSPORT_PORT=%s\nARGILLA_PORT=%s\n' \
    "$REDIS_PORT" "$OS_HTTP_PORT" "$OS_TRANSPORT_PORT" "$ARGILLA_PORT" >"$PORTS"
  argilla_env

  # 1. OpenSearch (the slowest) first, as the search user. bin/opensearch execs java; setpriv and env exec
  #    too: the recorded PID is the JVM's.
  choose_opensearch_dir
  prepare_opensearch_dirs "$OS_HTTP_PORT" "$OS_TRANSPORT_PORT"
  local java_home
  java_home="$(ar_java_home)"
  ar_start_bg "$OS_PID" "$OS_LOG" "${AS_SEARCH_USER[@]}" env \
    "OPENSEARCH_JAVA_HOME=$java_home" "OPENSEARCH_PATH_CONF=$OSDIR/config" "OPENSEARCH_TMPDIR=$OSDIR/tmp" \
    "HOME=$OSDIR" "$OS_HOME/bin/opensearch"

  # 2. Redis, with its own directory and no persistence (rq's queues are transient). set-proc-title no keeps
  #    the command line (the pidfile marker) as it was given.
  ar_start_bg "$REDIS_PID" "$REDIS_LOG" redis-server --bind 127.0.0.1 --port "$REDIS_PORT" \
    --dir "$A/redis" --daemonize no --save "" --appendonly no --protected-mode yes --set-proc-title no

  # 3. Meanwhile: migrate the database and create the two users (once per run state).
  local boot_pid="" users_stamp="$A/home/.flywheel-users"
  if [[ ! -f "$DB_FILE" || ! -f "$users_stamp" ]]; then
    "${ARGILLA_ENV[@]}" "$VENV/bin/python" "$HELPERS/bootstrap.py" \
      "$OWNER_USERNAME:owner:$OWNER_PASSWORD:$OWNER_API_KEY" \
      "$ANNOTATOR_USERNAME:annotator:$ANNOTATOR_PASSWORD:$ANNOTATOR_API_KEY" >"$LOGS/bootstrap.log" 2>&1 </dev/null &
    boot_pid=$!
  fi

  ar_wait redis "$REDIS_PID" "$REDIS_MARK" "$REDIS_LOG" redis_ok || die "redis did not start"
  if [[ -n "$boot_pid" ]]; then
    wait "$boot_pid" || {
      ar_tail "$LOGS/bootstrap.log"
      die "database migration / user creation failed"
    }
    touch "$users_stamp"
    log "database migrated, users created ($(ar_elapsed "$t0")s)"
  fi
  ar_wait opensearch "$OS_PID" "$OS_MARK" "$OS_LOG" opensearch_ok || die "opensearch did not start"
  log "opensearch ready on 127.0.0.1:$OS_HTTP_PORT ($(ar_elapsed "$t0")s)"

  # 4. argilla-server and its rq worker (one work horse).
  ar_start_bg "$SERVER_PID" "$SERVER_LOG" "${ARGILLA_ENV[@]}" "$VENV/bin/python" -m argilla_server start \
    --host 127.0.0.1 --port "$ARGILLA_PORT"
  ar_start_bg "$WORKER_PID" "$WORKER_LOG" "${ARGILLA_ENV[@]}" "$VENV/bin/python" -m argilla_server worker \
    --num-workers 1
  ar_wait argilla-server "$SERVER_PID" "$SERVER_MARK" "$SERVER_LOG" server_ok || die "argilla-server did not start"
  ar_wait argilla-worker "$WORKER_PID" "$WORKER_MARK" "$WORKER_LOG" worker_ok || die "the rq worker did not start"
  write_env_file
  trap - EXIT
  log "argilla ready at http://127.0.0.1:$ARGILLA_PORT in $(ar_elapsed "$t0")s (env: $ENV_FILE)"
}

start_failed() { # STATUS
  [[ "$1" == 0 ]] && return 0
  log "start failed: stopping what was started (logs: $LOGS)"
  cmd_stop || true
}

# ------------------------------------------------------------------------------------ stop, health, env
cmd_stop() {
  local t0
  t0="$(date +%s%N)"
  ar_stop argilla-worker "$WORKER_PID" "$WORKER_MARK" 20
  ar_stop argilla-server "$SERVER_PID" "$SERVER_MARK" 20
  ar_stop opensearch "$OS_PID" "$OS_MARK" 60
  ar_stop redis "$REDIS_PID" "$REDIS_MARK" 20
  rm -rf "$A/tmp"
  log "stopped in $(ar_elapsed "$t0")s"
}

cmd_stop_server() {
  ar_stop argilla-server "$SERVER_PID" "$SERVER_MARK" 20
}

cmd_start_server() {
  [[ -f "$PORTS" && -f "$STATE" ]] || die "the stack was never started here ($PORTS missing): run start"
  # shellcheck disable=SC1090
  source "$PORTS"
  load_or_create_state
  if ar_pid "$SERVER_PID" "$SERVER_MARK" >/dev/null; then
    log "argilla-server: already running"
    return 0
  fi
  if ! ar_pid "$REDIS_PID" "$REDIS_MARK" >/dev/null || ! ar_pid "$OS_PID" "$OS_MARK" >/dev/null; then
    die "redis or opensearch is down: run start for the whole stack"
  fi
  local t0
  t0="$(date +%s%N)"
  argilla_env
  # Its own temp dir, emptied at each start: every start copies the 14 MB front end into it.
  rm -rf "$A/tmp/server"
  mkdir -p "$A/tmp/server" "$LOGS"
  ar_start_bg "$SERVER_PID" "$SERVER_LOG" "${ARGILLA_ENV[@]}" "TMPDIR=$A/tmp/server" "$VENV/bin/python" -m \
    argilla_server start --host 127.0.0.1 --port "$ARGILLA_PORT"
  ar_wait argilla-server "$SERVER_PID" "$SERVER_MARK" "$SERVER_LOG" server_ok || die "argilla-server did not start"
  log "argilla-server ready at http://127.0.0.1:$ARGILLA_PORT in $(ar_elapsed "$t0")s"
}

cmd_health() {
  [[ -f "$PORTS" && -f "$STATE" ]] || {
    log "not started ($PORTS missing)"
    return 1
  }
  # shellcheck disable=SC1090
  source "$PORTS"
  # shellcheck disable=SC1090
  source "$STATE"
  local bad=0 name pidfile mark check pid
  for name in redis opensearch argilla-server argilla-worker; do
    case "$name" in
      redis) pidfile=$REDIS_PID mark=$REDIS_MARK check=redis_ok ;;
      opensearch) pidfile=$OS_PID mark=$OS_MARK check=opensearch_ok ;;
      argilla-server) pidfile=$SERVER_PID mark=$SERVER_MARK check=server_ok ;;
      argilla-worker) pidfile=$WORKER_PID mark=$WORKER_MARK check=worker_ok ;;
    esac
    if ! pid="$(ar_pid "$pidfile" "$mark")"; then
      echo "$name: down"
      bad=1
    elif ! "$check"; then
      echo "$name: pid $pid, not answering"
      bad=1
    else
      echo "$name: ok (pid $pid)"
    fi
  done
  echo "url: http://127.0.0.1:$ARGILLA_PORT  opensearch: http://127.0.0.1:$OS_HTTP_PORT  redis: 127.0.0.1:$REDIS_PORT"
  return "$bad"
}

cmd_env() {
  [[ -f "$ENV_FILE" ]] || die "no $ENV_FILE: run deploy/argilla.sh start first"
  all_running || die "the Argilla stack is not running: run deploy/argilla.sh start"
  cat "$ENV_FILE"
}

cmd_clean() {
  cmd_stop
  [[ "$OSDIR" != "$A/opensearch" ]] && rm -rf "$OSDIR"
  rm -rf "$A"
  log "removed $A"
}

case "${1:-}" in
  fetch) cmd_fetch ;;
  start) cmd_start ;;
  stop) cmd_stop ;;
  stop-server) cmd_stop_server ;;
  start-server) cmd_start_server ;;
  health) cmd_health ;;
  env) cmd_env ;;
  clean) cmd_clean ;;
  *)
    echo "usage: $0 {fetch|start|stop|stop-server|start-server|health|env|clean}" >&2
    exit 2
    ;;
esac
