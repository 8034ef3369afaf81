# shellcheck shell=bash
# Shared helpers for deploy/*.sh. Sourced, never run.
#
# Layout (all overridable through the environment):
#   FLYWHEEL_CACHE    downloaded artifacts, kept between runs   (default ~/.cache/flywheel)
#   FLYWHEEL_RUN_DIR  per-service logs, pidfiles, data          (default <repo>/.run)
#   FLYWHEEL_PYTHON   interpreter with kafka-python and boto3   (default <repo>/.venv/bin/python)
#
# Processes are started in the background with their PID in a pidfile, and stopped by that PID only:
# several stacks (other engineers, CI) may run on one machine, so nothing is ever killed by name.

# These are read by the scripts that source this file.
# shellcheck disable=SC2034
DEPLOY_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(dirname "$DEPLOY_DIR")"
RUN_DIR="${FLYWHEEL_RUN_DIR:-$REPO_DIR/.run}"
CACHE_DIR="${FLYWHEEL_CACHE:-$HOME/.cache/flywheel}"
PYTHON="${FLYWHEEL_PYTHON:-$REPO_DIR/.venv/bin/python}"
JAVA="${JAVA_HOME:+$JAVA_HOME/bin/}java"
# Pinned, so every machine runs the same plugin (a bare `dependency:` prefix takes whatever is newest).
MVN_DEP_PLUGIN="org.apache.maven.plugins:maven-dependency-plugin:3.8.1"
LOG_TAG="${LOG_TAG:-deploy}"

log() { printf '[%s] %s\n' "$LOG_TAG" "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}

# Print N distinct free loopback TCP ports on one line. All sockets are held open until every port is
# chosen, so the kernel cannot hand out the same port twice within one call.
free_ports() {
  python3 - "${1:-1}" <<'PY'
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
PY
}

# Random token of [a-z0-9] (or upper-case with "upper"), from the kernel's CSPRNG.
random_token() {
  python3 -c 'import secrets, string, sys
alphabet = (string.ascii_uppercase if sys.argv[2] == "upper" else string.ascii_lowercase) + string.digits
print("".join(secrets.choice(alphabet) for _ in range(int(sys.argv[1]))))' "$1" "${2:-lower}"
}

require_java17() {
  command -v "$JAVA" >/dev/null || die "java not found (set JAVA_HOME); Java 17+ is required"
  local major
  major="$("$JAVA" -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = //p')"
  [[ "${major%%.*}" -ge 17 ]] || die "Java 17+ is required, $JAVA is $major"
}

require_python() {
  [[ -x "$PYTHON" ]] || die "$PYTHON not found: create the venv (pip install -e '.[dev]') or set FLYWHEEL_PYTHON"
}

# proc_stat PID: print "STATE PPID PGRP" from /proc (the command name before them may contain spaces).
proc_stat() {
  local line state ppid pgrp _
  line="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
  read -r state ppid pgrp _ <<<"${line##*) }"
  printf '%s %s %s
' "$state" "$ppid" "$pgrp"
}

# pid_alive PID: true while the process exists and is not a zombie waiting to be reaped.
pid_alive() {
  local state _
  read -r state _ < <(proc_stat "$1") || return 1
  [[ "$state" != Z ]]
}

# pidfile_pid PIDFILE MARKER: print the recorded PID if that process is alive and its command line contains
# MARKER (a path unique to this run), so a recycled PID of an unrelated process is never mistaken for ours.
pidfile_pid() {
  local pidfile="$1" marker="$2" pid
  [[ -f "$pidfile" ]] || return 1
  pid="$(<"$pidfile")"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  pid_alive "$pid" || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$marker" || return 1
  printf '%s\n' "$pid"
}

# start_bg PIDFILE LOGFILE CMD...: run CMD detached from this shell (own session, no stdin, output to the
# log so it never holds a caller's pipe open) and record its PID. setsid execs in place here (a
# non-interactive script's child is never a process-group leader), so $! is the service's own PID.
start_bg() {
  local pidfile="$1" logfile="$2"
  shift 2
  setsid "$@" >>"$logfile" 2>&1 </dev/null &
  printf '%s\n' "$!" >"$pidfile"
}

# stop_pidfile NAME PIDFILE MARKER [GRACE_SECONDS]: TERM the recorded PID, wait, then KILL.
# A process started by start_bg leads its own process group (the group id is the recorded PID), so the
# signals go to that group: helpers it spawned (workers, wrapper shells) stop with it. Nothing else is
# ever signalled: no names, no patterns.
stop_pidfile() {
  local name="$1" pidfile="$2" marker="$3" grace="${4:-20}" pid target i _ pgrp
  if ! pid="$(pidfile_pid "$pidfile" "$marker")"; then
    if [[ -f "$pidfile" ]]; then
      log "$name: not running (stale pidfile removed)"
    else
      log "$name: not running"
    fi
    rm -f "$pidfile"
    return 0
  fi
  target="$pid"
  read -r _ _ pgrp < <(proc_stat "$pid") || true
  [[ "${pgrp:-}" == "$pid" ]] && target="-$pid"
  log "$name: stopping pid $pid"
  kill -TERM -- "$target" 2>/dev/null || true
  for ((i = 0; i < grace * 10; i++)); do
    pid_alive "$pid" || break
    sleep 0.1
  done
  if pid_alive "$pid"; then
    log "$name: pid $pid ignored TERM for ${grace}s, sending KILL"
    kill -KILL -- "$target" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
      pid_alive "$pid" || break
      sleep 0.1
    done
  fi
  pid_alive "$pid" && die "$name: pid $pid is still alive"
  # Group members that outlived their leader would hold ports and files: end them too.
  if [[ "$target" == -* ]]; then
    kill -KILL -- "$target" 2>/dev/null || true
  fi
  rm -f "$pidfile"
  log "$name: stopped"
}

# Print the end of a service log after a failure, so CI output shows why without a second step.
log_tail() {
  local logfile="$1" lines="${2:-40}"
  [[ -f "$logfile" ]] || return 0
  log "---- last $lines lines of $logfile ----"
  tail -n "$lines" "$logfile" >&2
  log "---- end of $logfile ----"
}

# wait_until NAME TIMEOUT PIDFILE MARKER LOGFILE CMD...: retry CMD (quietly) until it succeeds. Fails fast
# if the service process dies (MARKER is not checked: see below), and on timeout; either way with the tail of the service log and what the
# last try of CMD said.
wait_until() {
  local name="$1" timeout="$2" pidfile="$3" logfile="$5"
  shift 5
  local deadline=$((SECONDS + timeout)) out
  until out="$("$@" 2>&1)"; do
    # Alive is enough here: the process was started just now, and until setsid has exec'd the service its
    # command line is still the shell's, without the marker (Argilla's redis once failed to start on that).
    if ! pid_alive "$(<"$pidfile")"; then
      log_tail "$logfile"
      log "$name: the process exited before it became ready"
      return 1
    fi
    if ((SECONDS >= deadline)); then
      log_tail "$logfile"
      log "$name: not ready after ${timeout}s; waited for: $*"
      [[ -n "$out" ]] && log "$name: its last answer: $out"
      return 1
    fi
    sleep 0.5
  done
}

# tcp_open PORT: true once something accepts TCP connections on 127.0.0.1:PORT (bash's /dev/tcp, no tools).
tcp_open() {
  # shellcheck disable=SC2016 # $1 is expanded by the inner bash, on purpose
  timeout 2 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1"' _ "$1"
}

# http_ok URL: true once URL answers at all (any HTTP status: an S3 endpoint answers 403 without a signature).
http_ok() {
  curl -s -o /dev/null --max-time 3 "$1"
}

wait_tcp() { # NAME PORT TIMEOUT PIDFILE MARKER LOGFILE
  wait_until "$1" "$3" "$4" "$5" "$6" tcp_open "$2"
}

wait_http() { # NAME URL TIMEOUT PIDFILE MARKER LOGFILE
  wait_until "$1" "$3" "$4" "$5" "$6" http_ok "$2"
}
