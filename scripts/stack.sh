#!/usr/bin/env bash
# The local stack without Docker: a real Apache Kafka broker (KRaft, from the Maven Central jars) and
# Debian's redis-server. ClickHouse needs no process: chDB runs the engine inside the rollup service.
#
#   scripts/stack.sh start|stop|status
#
# Idempotent: `start` leaves exactly one broker and one Redis, and waits until both answer.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE="${SPENDSTREAM_STACK_DIR:-$ROOT/.stack}"
KAFKA_PORT="${KAFKA_PORT:-9092}"
KAFKA_CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-9093}"
REDIS_PORT="${REDIS_PORT:-6379}"
# The jar cache can be shared between stacks (tests start private brokers next to the shared one).
KAFKA_LIBS="${SPENDSTREAM_KAFKA_LIBS:-$STATE/kafka/libs}"
KAFKA_DATA="$STATE/kafka/data"
KAFKA_PID="$STATE/kafka/broker.pid"
REDIS_DIR="$STATE/redis"

log() { printf '[stack] %s\n' "$*" >&2; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_for() { # wait_for SECONDS DESCRIPTION COMMAND...
  local deadline=$((SECONDS + $1)) what=$2; shift 2
  until "$@"; do
    if ((SECONDS >= deadline)); then log "$what did not become ready"; return 1; fi
    sleep 0.2
  done
}

fetch_kafka() {
  if [[ -f "$KAFKA_LIBS/.complete" ]]; then return; fi
  command -v java >/dev/null || { log "java (17+) is required for the Kafka broker"; exit 1; }
  command -v mvn >/dev/null || { log "mvn is required to fetch the Kafka jars"; exit 1; }
  log "fetching the Apache Kafka broker jars from Maven Central"
  mkdir -p "$KAFKA_LIBS"
  mvn -q -B -f "$ROOT/scripts/kafka/pom.xml" dependency:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$KAFKA_LIBS"
  touch "$KAFKA_LIBS/.complete"
}

kafka_running() { [[ -f "$KAFKA_PID" ]] && kill -0 "$(cat "$KAFKA_PID")" 2>/dev/null; }

broker_ready() { # the broker answers metadata requests, not just TCP
  java -cp "$KAFKA_LIBS/*" -Dlog4j2.configurationFile="$ROOT/scripts/kafka/log4j2.properties" \
    org.apache.kafka.tools.BrokerApiVersionsCommand --bootstrap-server "127.0.0.1:$KAFKA_PORT" >/dev/null 2>&1
}

start_kafka() {
  if kafka_running; then log "kafka already running (pid $(cat "$KAFKA_PID"))"; return; fi
  if port_open "$KAFKA_PORT"; then log "something already listens on 127.0.0.1:$KAFKA_PORT; using it"; return; fi
  fetch_kafka
  mkdir -p "$KAFKA_DATA"
  local cfg="$STATE/kafka/server.properties"
  sed -e "s#@DATA@#$KAFKA_DATA#" -e "s#@PORT@#$KAFKA_PORT#" -e "s#@CONTROLLER_PORT@#$KAFKA_CONTROLLER_PORT#" \
    "$ROOT/scripts/kafka/server.properties.in" >"$cfg"
  local java_cp=(java -cp "$KAFKA_LIBS/*" -Dlog4j2.configurationFile="$ROOT/scripts/kafka/log4j2.properties")
  if [[ ! -f "$KAFKA_DATA/meta.properties" ]]; then
    log "formatting the broker storage (once)"
    "${java_cp[@]}" kafka.tools.StorageTool format -t "$("${java_cp[@]}" kafka.tools.StorageTool random-uuid)" \
      -c "$cfg" >/dev/null
  fi
  log "starting kafka on 127.0.0.1:$KAFKA_PORT"
  # Every partition holds several open segment files; a test run creates thousands of partitions (each test
  # deletes its own, but deletion is asynchronous), so give the broker the hard limit, not the soft default.
  ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
  nohup "${java_cp[@]}" -Xms512m -Xmx1g -XX:+UseG1GC -Djava.awt.headless=true \
    kafka.Kafka "$cfg" >"$STATE/kafka/broker.log" 2>&1 &
  echo $! >"$KAFKA_PID"
  wait_for 90 "kafka" broker_ready || { tail -n 40 "$STATE/kafka/broker.log" >&2; exit 1; }
  log "kafka ready"
}

stop_kafka() {
  if ! kafka_running; then rm -f "$KAFKA_PID"; return; fi
  local pid; pid="$(cat "$KAFKA_PID")"
  log "stopping kafka (pid $pid)"
  kill -s "${KAFKA_STOP_SIGNAL:-TERM}" "$pid" 2>/dev/null || true
  wait_for 60 "kafka shutdown" bash -c "! kill -0 $pid 2>/dev/null" || kill -9 "$pid" || true
  rm -f "$KAFKA_PID"
}

redis_bin() { command -v redis-server || true; }

start_redis() {
  if port_open "$REDIS_PORT"; then log "redis already answers on 127.0.0.1:$REDIS_PORT"; return; fi
  if [[ -z "$(redis_bin)" ]]; then
    log "installing Debian's redis-server"
    if [[ $EUID -eq 0 ]]; then SUDO=(); else SUDO=(sudo); fi
    "${SUDO[@]}" apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq redis-server >/dev/null
  fi
  mkdir -p "$REDIS_DIR"
  log "starting redis on 127.0.0.1:$REDIS_PORT"
  "$(redis_bin)" --port "$REDIS_PORT" --bind 127.0.0.1 --daemonize yes --dir "$REDIS_DIR" \
    --pidfile "$REDIS_DIR/redis.pid" --logfile "$REDIS_DIR/redis.log" --appendonly yes --save ""
  wait_for 30 "redis" port_open "$REDIS_PORT"
  log "redis ready"
}

stop_redis() {
  if [[ -f "$REDIS_DIR/redis.pid" ]] && kill -0 "$(cat "$REDIS_DIR/redis.pid")" 2>/dev/null; then
    log "stopping redis"
    kill "$(cat "$REDIS_DIR/redis.pid")"
    rm -f "$REDIS_DIR/redis.pid"
  fi
}

mkdir -p "$STATE/kafka"
case "${1:-}" in
  start) start_redis; start_kafka ;;
  stop) stop_kafka; stop_redis ;;
  start-kafka) start_kafka ;;
  stop-kafka) stop_kafka ;;
  start-redis) start_redis ;;
  stop-redis) stop_redis ;;
  fetch) fetch_kafka ;;
  status)
    kafka_running && echo "kafka: running (pid $(cat "$KAFKA_PID"))" || echo "kafka: stopped"
    port_open "$REDIS_PORT" && echo "redis: running" || echo "redis: stopped" ;;
  *) echo "usage: $0 start|stop|status|start-kafka|stop-kafka|start-redis|stop-redis|fetch" >&2; exit 2 ;;
esac
