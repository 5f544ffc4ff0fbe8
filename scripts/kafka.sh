#!/usr/bin/env bash
# A real, single-node Apache Kafka (KRaft broker + controller) for tests and `tidemark dev --kafka`.
#
#   scripts/kafka.sh fetch                 resolve the pinned Kafka jars from Maven Central (cached; quick when done)
#   scripts/kafka.sh start [port] [dir]    format (once) and start a broker on 127.0.0.1:<port>; waits until it accepts
#   scripts/kafka.sh stop [dir]            stop the broker whose pid file is in <dir> (TERM, then KILL after 30 s)
#   scripts/kafka.sh status [dir]          exit 0 and print the bootstrap address if it runs, exit 3 if not
#
# Environment (arguments win):
#   KAFKA_PORT             broker port (default 9092)
#   KAFKA_CONTROLLER_PORT  KRaft controller port (default: broker port + 1)
#   KAFKA_DATA_DIR         data dir: server.properties, logs, pid file, broker.log (default ~/.cache/tidemark/kafka-data)
#   KAFKA_HEAP_OPTS        JVM heap flags (default -Xms256m -Xmx1g)
#   KAFKA_START_TIMEOUT    seconds to wait for the broker to accept connections (default 90)
#   KAFKA_WATCH_PID        if set, the broker is killed when that process exits (tests pass their own pid)
#   TIDEMARK_KAFKA_HOME    where the jars live (default ~/.cache/tidemark/kafka-<version>; outside the repo so
#                          a fresh clone re-uses them, and Maven's own cache, ~/.m2, keeps the downloads)
# Docs: docs/kafka.md.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# Pinned: Kafka 3.9.x runs on Java 11+ (we use the machine's Java 17). Change here and in scripts/kafka/pom.xml.
KAFKA_VERSION=3.9.2
cache_root="${XDG_CACHE_HOME:-$HOME/.cache}/tidemark"
kafka_home="${TIDEMARK_KAFKA_HOME:-$cache_root/kafka-$KAFKA_VERSION}"
libs="$kafka_home/libs"

die() {
  echo "kafka.sh: $*" >&2
  exit 1
}

need() {
  command -v "$1" >/dev/null 2>&1 || die "$1 is required ($2)"
}

fetch() {
  [[ -f "$kafka_home/.complete" ]] && return 0
  need java "Java 17 runs the broker"
  need mvn "Maven resolves the Kafka jars from Maven Central"
  mkdir -p "$kafka_home"
  # Several test files may fetch at once: one resolves, the others wait for it.
  exec 9>"$kafka_home/.lock"
  need flock "util-linux"
  flock 9
  if [[ ! -f "$kafka_home/.complete" ]]; then
    echo "kafka.sh: fetching Apache Kafka $KAFKA_VERSION jars from Maven Central into $libs" >&2
    local tmp="$kafka_home/libs.tmp.$$"
    rm -rf "$tmp"
    mvn -B -q -f "$here/kafka/pom.xml" -Dkafka.version="$KAFKA_VERSION" \
      dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$tmp" >&2 ||
      die "mvn could not resolve org.apache.kafka:kafka_2.13:$KAFKA_VERSION (network? ~/.m2/settings.xml?)"
    [[ -f "$tmp/kafka_2.13-$KAFKA_VERSION.jar" ]] || die "kafka_2.13-$KAFKA_VERSION.jar missing after mvn"
    rm -rf "$libs"
    mv "$tmp" "$libs"
    touch "$kafka_home/.complete"
  fi
  flock -u 9
}

data_dir() {
  echo "${1:-${KAFKA_DATA_DIR:-$cache_root/kafka-data}}"
}

is_running() {
  local pidfile="$1/kafka.pid"
  [[ -f "$pidfile" ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null
}

accepts() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

start() {
  local port="${1:-${KAFKA_PORT:-9092}}"
  local dir
  dir="$(data_dir "${2:-}")"
  local cport="${KAFKA_CONTROLLER_PORT:-$((port + 1))}"
  local timeout="${KAFKA_START_TIMEOUT:-90}"
  fetch
  mkdir -p "$dir"
  dir="$(cd "$dir" && pwd)"
  if is_running "$dir"; then
    die "a broker already runs from $dir (pid $(cat "$dir/kafka.pid")); run: $0 stop $dir"
  fi
  if accepts "$port"; then die "port $port is already in use"; fi
  if accepts "$cport"; then die "controller port $cport is already in use (set KAFKA_CONTROLLER_PORT)"; fi
  cat >"$dir/server.properties" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$cport
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$dir/logs
num.partitions=1
# Topics are created on purpose: the ingester checks the partition count, and a typo must not make a topic.
auto.create.topics.enable=false
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
group.initial.rebalance.delay.ms=0
EOF
  cat >"$dir/log4j.properties" <<EOF
log4j.rootLogger=INFO, file
log4j.appender.file=org.apache.log4j.FileAppender
log4j.appender.file.File=$dir/broker.log
log4j.appender.file.layout=org.apache.log4j.PatternLayout
log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka=INFO
log4j.logger.org.apache.kafka=INFO
EOF
  local jvm=(java ${KAFKA_HEAP_OPTS:--Xms256m -Xmx1g} -XX:+UseG1GC -Djava.awt.headless=true
    "-Dlog4j.configuration=file:$dir/log4j.properties" -cp "$libs/*")
  if [[ ! -f "$dir/logs/meta.properties" ]]; then
    # A fresh random cluster id (Kafka's UUID: 16 random bytes, unpadded base64url).
    local id
    id="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')"
    "${jvm[@]}" kafka.tools.StorageTool format -t "$id" -c "$dir/server.properties" >"$dir/format.log" 2>&1 ||
      die "formatting $dir failed: $(cat "$dir/format.log")"
  fi
  nohup "${jvm[@]}" kafka.Kafka "$dir/server.properties" >"$dir/stdout.log" 2>&1 </dev/null &
  local pid=$!
  echo "$pid" >"$dir/kafka.pid"
  if [[ -n "${KAFKA_WATCH_PID:-}" ]]; then
    # Tests pass their own pid: if that process dies without stopping the broker (a killed test run), the
    # broker is killed too instead of lingering on a CI machine.
    (
      while kill -0 "$KAFKA_WATCH_PID" 2>/dev/null && kill -0 "$pid" 2>/dev/null; do sleep 2; done
      kill -KILL "$pid" 2>/dev/null || true
    ) </dev/null >/dev/null 2>&1 &
    disown
  fi
  local deadline=$((SECONDS + timeout))
  until accepts "$port"; do
    if ! is_running "$dir"; then
      rm -f "$dir/kafka.pid"
      die "the broker exited during startup; see $dir/broker.log and $dir/stdout.log: $(tail -5 "$dir/stdout.log")"
    fi
    if ((SECONDS >= deadline)); then
      stop "$dir"
      die "the broker did not accept connections on 127.0.0.1:$port within ${timeout}s; see $dir/broker.log"
    fi
    sleep 0.2
  done
  echo "127.0.0.1:$port"
}

stop() {
  local dir
  dir="$(data_dir "${1:-}")"
  local pidfile="$dir/kafka.pid"
  if ! is_running "$dir"; then
    rm -f "$pidfile"
    return 0
  fi
  local pid
  pid="$(cat "$pidfile")"
  kill -TERM "$pid" 2>/dev/null || true
  # A controlled shutdown takes a few seconds; past 30 s the data is test data, so KILL is fine.
  for _ in $(seq 1 150); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.2
  done
  kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
  rm -f "$pidfile"
}

status() {
  local dir
  dir="$(data_dir "${1:-}")"
  if is_running "$dir"; then
    sed -n 's/^advertised.listeners=PLAINTEXT:\/\///p' "$dir/server.properties"
    return 0
  fi
  echo "not running ($dir)" >&2
  return 3
}

cmd="${1:-}"
shift || true
case "$cmd" in
fetch)
  fetch
  echo "$libs"
  ;;
start) start "$@" ;;
stop) stop "$@" ;;
status) status "$@" ;;
*)
  echo "usage: $0 fetch | start [port] [data-dir] | stop [data-dir] | status [data-dir]" >&2
  exit 2
  ;;
esac
