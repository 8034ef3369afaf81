#!/usr/bin/env bash
# Apache Kafka (KRaft, one combined broker+controller node) on loopback, from Maven Central jars, no Docker.
#
#   deploy/kafka.sh fetch    download the broker jars once into $FLYWHEEL_CACHE/kafka-<ver>/lib
#   deploy/kafka.sh start    format a fresh log dir and start the node on free 127.0.0.1 ports
#   deploy/kafka.sh health   a kafka-python admin round trip; exit 0 when the broker serves metadata
#   deploy/kafka.sh stop     stop the node by the PID in its pidfile
#   deploy/kafka.sh resume   start a stopped node again on its ports, with its data (tests that stop Kafka)
#   deploy/kafka.sh restart  stop, then resume
#   deploy/kafka.sh env      print FLYWHEEL_TEST_KAFKA_BOOTSTRAP=127.0.0.1:PORT (deploy/stack.sh gathers it)
#
# Run state lives in $FLYWHEEL_RUN_DIR/kafka: server.properties, kafka.log, kafka.pid, data/, env.
# The CLI tools are on the same classpath, e.g.
#   java -cp "$FLYWHEEL_CACHE/kafka-4.4.0/lib/*" org.apache.kafka.tools.TopicCommand --bootstrap-server ADDR --list
set -euo pipefail

LOG_TAG=kafka
# shellcheck source=deploy/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

KAFKA_VERSION="${FLYWHEEL_KAFKA_VERSION:-4.4.0}" # newest 4.x served by Maven Central on 2026-11-25
SLF4J_VERSION="${FLYWHEEL_SLF4J_VERSION:-2.0.20}"
KAFKA_HEAP="${FLYWHEEL_KAFKA_HEAP:--Xms256m -Xmx768m}"
START_TIMEOUT="${FLYWHEEL_KAFKA_START_TIMEOUT:-90}"

HOME_DIR="$CACHE_DIR/kafka-$KAFKA_VERSION"
LIB_DIR="$HOME_DIR/lib"
KDIR="$RUN_DIR/kafka"
PIDFILE="$KDIR/kafka.pid"
LOGFILE="$KDIR/kafka.log"
PROPS="$KDIR/server.properties" # its path is on the java command line: the marker that proves a PID is ours

fetch() {
  # The marker file is written last, so an interrupted download is redone rather than half-used.
  if [[ -f "$HOME_DIR/.complete" ]]; then
    log "cached: $LIB_DIR"
    return 0
  fi
  command -v mvn >/dev/null || die "mvn not found; Maven is needed once to fetch the Kafka jars"
  log "fetching kafka_2.13 $KAFKA_VERSION and its runtime dependencies from Maven Central"
  mkdir -p "$HOME_DIR"
  rm -rf "$LIB_DIR"
  # kafka_2.13 ships no logging backend, so slf4j-simple is added, with slf4j-api 2 named directly (Kafka
  # pulls api 1.7, which cannot see a 2.x backend and would log nothing). kafka-tools brings the CLI classes
  # (TopicCommand, ConsumerGroupCommand) but not Connect's REST server (Jetty, Jersey), which they never use.
  cat >"$HOME_DIR/pom.xml" <<EOF
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>flywheel.deploy</groupId>
  <artifactId>kafka-runtime</artifactId>
  <version>$KAFKA_VERSION</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>$KAFKA_VERSION</version></dependency>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka-tools</artifactId><version>$KAFKA_VERSION</version>
      <exclusions><exclusion><groupId>org.apache.kafka</groupId><artifactId>connect-runtime</artifactId></exclusion></exclusions>
    </dependency>
    <dependency><groupId>org.slf4j</groupId><artifactId>slf4j-api</artifactId><version>$SLF4J_VERSION</version></dependency>
    <dependency><groupId>org.slf4j</groupId><artifactId>slf4j-simple</artifactId><version>$SLF4J_VERSION</version></dependency>
  </dependencies>
</project>
EOF
  # Maven's output goes to a log (it prints colour codes even in batch mode); shown only if it fails.
  if ! mvn -B -Dstyle.color=never -f "$HOME_DIR/pom.xml" "$MVN_DEP_PLUGIN:copy-dependencies" \
    -DincludeScope=runtime -DoutputDirectory="$LIB_DIR" >"$HOME_DIR/fetch.log" 2>&1; then
    log_tail "$HOME_DIR/fetch.log"
    die "maven could not fetch kafka $KAFKA_VERSION"
  fi
  compgen -G "$LIB_DIR/kafka_2.13-$KAFKA_VERSION.jar" >/dev/null || die "fetch finished but $LIB_DIR has no kafka jar"
  touch "$HOME_DIR/.complete"
  log "fetched $(find "$LIB_DIR" -name '*.jar' | wc -l) jars into $LIB_DIR"
}

running_pid() { pidfile_pid "$PIDFILE" "$PROPS"; }

bootstrap() { cat "$KDIR/bootstrap"; }

probe() { "$PYTHON" "$DEPLOY_DIR/probe.py" kafka "$(bootstrap)"; }

health() {
  running_pid >/dev/null || {
    log "not running"
    return 1
  }
  require_python
  probe
}

write_properties() {
  local port="$1" cport="$2"
  cat >"$PROPS" <<EOF
# Written by deploy/kafka.sh start: one KRaft node that is both broker and controller, loopback only.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$cport
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$KDIR/data
# Tests create topics on the fly and exercise partitioning; a single node can only hold one replica.
num.partitions=3
auto.create.topics.enable=true
default.replication.factor=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=3
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=3
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
# A consumer group's first join would otherwise wait 3 s for more members.
group.initial.rebalance.delay.ms=0
EOF
}

# The JVM's options, into the JAVA_OPTS array (start and resume run the node the same way).
set_java_opts() {
  local heap
  read -ra heap <<<"$KAFKA_HEAP"
  JAVA_OPTS=(-server "${heap[@]}" -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:+ExitOnOutOfMemoryError
    -Djava.awt.headless=true -Dorg.slf4j.simpleLogger.showDateTime=true
    -Dorg.slf4j.simpleLogger.dateTimeFormat=HH:mm:ss.SSS -cp "$LIB_DIR/*")
}

start() {
  require_java17
  require_python
  if running_pid >/dev/null; then
    log "already running (pid $(running_pid)) at $(bootstrap)"
    wait_until kafka "$START_TIMEOUT" "$PIDFILE" "$PROPS" "$LOGFILE" probe
    return 0
  fi
  [[ -f "$HOME_DIR/.complete" ]] || fetch
  # Every start is a fresh single-node cluster: test data never outlives a stop.
  rm -rf "$KDIR"
  mkdir -p "$KDIR/data"
  local port cport cluster_id
  read -r port cport < <(free_ports 2)
  write_properties "$port" "$cport"
  # A cluster id is 16 random bytes in URL-safe base64; making it here saves a JVM start. It is passed as
  # --cluster-id=ID: one id in 64 starts with "-", which the tool's parser takes for an option after -t.
  cluster_id="$(python3 -c 'import base64, uuid; print(base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("="))')"
  set_java_opts
  if ! "$JAVA" "${JAVA_OPTS[@]}" kafka.tools.StorageTool format --cluster-id="$cluster_id" -c "$PROPS" >>"$LOGFILE" 2>&1; then
    log "storage format failed"
    log_tail "$LOGFILE"
    return 1
  fi
  printf '127.0.0.1:%s\n' "$port" >"$KDIR/bootstrap"
  printf 'FLYWHEEL_TEST_KAFKA_BOOTSTRAP=127.0.0.1:%s\n' "$port" >"$KDIR/env"
  start_bg "$PIDFILE" "$LOGFILE" "$JAVA" "${JAVA_OPTS[@]}" kafka.Kafka "$PROPS"
  log "started pid $(<"$PIDFILE"), waiting for 127.0.0.1:$port"
  # A node that never got ready is stopped here, so a failed start leaves nothing running.
  if ! wait_tcp kafka "$port" "$START_TIMEOUT" "$PIDFILE" "$PROPS" "$LOGFILE" ||
    ! wait_until kafka "$START_TIMEOUT" "$PIDFILE" "$PROPS" "$LOGFILE" probe; then
    stop
    return 1
  fi
  log "ready at 127.0.0.1:$port (log: $LOGFILE)"
}

stop() {
  stop_pidfile kafka "$PIDFILE" "$PROPS" 30
}

# Start the node `start` made again, after a `stop`: same ports, same data, so what was acknowledged before
# the stop is still there (a test stops Kafka mid-load and checks that nothing acknowledged was lost).
resume() {
  require_java17
  require_python
  [[ -f "$PROPS" && -d "$KDIR/data" ]] || die "nothing to resume in $KDIR: run deploy/kafka.sh start first"
  if running_pid >/dev/null; then
    log "already running (pid $(running_pid)) at $(bootstrap)"
    return 0
  fi
  local port
  port="$(bootstrap)"
  port="${port##*:}"
  set_java_opts
  start_bg "$PIDFILE" "$LOGFILE" "$JAVA" "${JAVA_OPTS[@]}" kafka.Kafka "$PROPS"
  log "resumed pid $(<"$PIDFILE"), waiting for 127.0.0.1:$port"
  if ! wait_tcp kafka "$port" "$START_TIMEOUT" "$PIDFILE" "$PROPS" "$LOGFILE" ||
    ! wait_until kafka "$START_TIMEOUT" "$PIDFILE" "$PROPS" "$LOGFILE" probe; then
    stop
    return 1
  fi
  log "ready again at 127.0.0.1:$port"
}

case "${1:-}" in
  fetch) fetch ;;
  start) start ;;
  stop) stop ;;
  resume) resume ;;
  restart) stop && resume ;;
  health) health ;;
  env)
    running_pid >/dev/null || die "not running: run deploy/kafka.sh start first"
    cat "$KDIR/env"
    ;;
  *)
    echo "usage: $0 {fetch|start|stop|resume|restart|health|env}" >&2
    exit 2
    ;;
esac
