#!/usr/bin/env bash
# Fetch (once, cached), format (once) and run a single-node Apache Kafka 3.9 broker in KRaft mode.
# usage: infra/kafka.sh fetch|start|stop|status
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
KAFKA_VERSION=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$here/kafka/pom.xml")
CACHE=${STREAMREC_CACHE_DIR:-$HOME/.cache/streamrec}
LIBS="$CACHE/kafka-$KAFKA_VERSION/libs"
RUN=${STREAMREC_RUN_DIR:-$root/.run}
PORT=${STREAMREC_KAFKA_PORT:-19092}
CONTROLLER_PORT=${STREAMREC_KAFKA_CONTROLLER_PORT:-19093}
HEAP=${STREAMREC_KAFKA_HEAP:-768m}
DIR="$RUN/kafka"
PIDFILE="$DIR/kafka.pid"

need_tools() {
  command -v java >/dev/null && command -v mvn >/dev/null && return
  echo "kafka.sh: installing a JRE and Maven from Debian" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq default-jre-headless maven >/dev/null
}

fetch() {
  [ -f "$LIBS/.complete" ] && return
  need_tools
  echo "kafka.sh: resolving org.apache.kafka:kafka_2.13:$KAFKA_VERSION from Maven Central into $LIBS" >&2
  rm -rf "$LIBS" && mkdir -p "$LIBS"
  mvn -q -B -f "$here/kafka/pom.xml" dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$LIBS"
  touch "$LIBS/.complete"
}

running() { [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; }

java_run() {
  java -Xms256m -Xmx"$HEAP" -XX:+UseG1GC -Dlog4j.configuration="file:$here/kafka/log4j.properties" \
    -Dkafka.logs.dir="$DIR/logs" -cp "$LIBS/*" "$@"
}

configure() {
  mkdir -p "$DIR/data" "$DIR/logs"
  sed -e "s#@PORT@#$PORT#g" -e "s#@CONTROLLER_PORT@#$CONTROLLER_PORT#g" -e "s#@DATA_DIR@#$DIR/data#g" \
    "$here/kafka/server.properties.in" > "$DIR/server.properties"
  if [ ! -f "$DIR/data/meta.properties" ]; then
    local id; id=$(java_run kafka.tools.StorageTool random-uuid)
    java_run kafka.tools.StorageTool format -t "$id" -c "$DIR/server.properties" >"$DIR/logs/format.log"
  fi
}

start() {
  if running; then echo "kafka: already running (pid $(cat "$PIDFILE")) on 127.0.0.1:$PORT"; return; fi
  fetch && configure
  nohup bash -c "$(declare -f java_run); here='$here' DIR='$DIR' HEAP='$HEAP' LIBS='$LIBS'; \
    java_run kafka.Kafka '$DIR/server.properties'" >"$DIR/logs/stdout.log" 2>&1 &
  echo $! >"$PIDFILE"
  for _ in $(seq 1 120); do
    if port_open; then echo "kafka: up on 127.0.0.1:$PORT (logs $DIR/logs)"; return; fi
    running || { echo "kafka: failed to start; tail of $DIR/logs:" >&2; tail -20 "$DIR/logs/stdout.log" "$DIR/logs/server.log" >&2 || true; exit 1; }
    sleep 0.5
  done
  echo "kafka: not listening after 60 s (logs $DIR/logs)" >&2; exit 1
}

stop() {
  if ! running; then echo "kafka: not running"; rm -f "$PIDFILE"; return; fi
  local pid; pid=$(cat "$PIDFILE")
  pkill -TERM -P "$pid" 2>/dev/null || true; kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  pkill -KILL -P "$pid" 2>/dev/null || true; kill -KILL "$pid" 2>/dev/null || true
  rm -f "$PIDFILE"; echo "kafka: stopped"
}

status() {
  if running && port_open; then echo "kafka: running (pid $(cat "$PIDFILE")) on 127.0.0.1:$PORT, logs $DIR/logs"
  else echo "kafka: not running"; return 1; fi
}

case "${1:-}" in
  fetch) fetch ;; start) start ;; stop) stop ;; status) status ;;
  *) echo "usage: $0 fetch|start|stop|status" >&2; exit 2 ;;
esac
